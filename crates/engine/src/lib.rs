//! The execution engine. It never touches the terminal, the environment or config files: it
//! reads a plan, drives a [`Target`], records every step in a [`Store`], and reports through
//! typed [`Event`]s. Time comes from an injected [`Clock`] (virtual in the lab) and run ids from
//! the store, so runs on the lab are deterministic.

mod engine;
mod event;
mod executor;
pub mod human;
pub mod policy;
mod status;
mod store;
mod target;

pub use engine::*;
pub use event::*;
pub use policy::RunPolicy;
pub use status::*;
pub use store::*;
pub use target::*;
