//! The lab's integration tests: they drive the lab target step by step, the way the engine
//! would (the planner's plan, `not_applicable` steps skipped, `run_on` honoured), and assert the
//! state of the simulated world.

mod common;
mod faults;
mod frontend;
mod machines;
mod procedure;
mod public;
mod rules;
mod world;
