//! Package manifests and the planner. Pure: no I/O, no clock, no environment. The same inputs
//! always give the same plan.

mod model;

pub use model::*;
