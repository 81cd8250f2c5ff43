//! The lab's integration tests: they drive the lab target step by step and assert the state of
//! the simulated world.

mod common;
mod faults;
mod procedure;
mod rules;
mod world;
