//! The execution engine. It never touches the terminal, the environment or config files: it
//! reads a plan, drives a [`Target`], records every step in a [`Store`], and reports through
//! typed [`Event`]s.

mod target;

pub use target::*;
