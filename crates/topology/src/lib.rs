//! Reads Skype for Business topologies into one model and derives every pool's back end.

mod model;
mod names;

pub use model::*;
pub use names::{Fqdn, NameError, SqlInstanceName};
