//! The lab: a simulated Skype for Business deployment whose state lives in SQLite
//! (`DIR/lab.db`), so that separate processes act on one world.
//!
//! The lab enforces the rules the update procedure exists for: the installer fails while
//! files are in use, services restarted by the installer keep old assemblies until they are
//! stopped again, database schemas follow only the right `Install-CsDatabase` variant, and a
//! back end unavailable for more than 30 minutes puts its pool into resiliency mode. Every
//! operation takes simulated time on a virtual clock. `docs/lab.md` states every rule.
//!
//! [`init`] creates a lab from a [`Deployment`](sfbpatch_topology::Deployment); [`Lab::open`]
//! opens it again; [`Lab::target`] and [`Lab::clock`] give the engine its
//! [`Target`](sfbpatch_engine::Target) and [`Clock`](sfbpatch_engine::Clock); [`Lab::show`]
//! reads the world.

mod db;
mod error;
mod faults;
mod files;
mod frontend;
mod lab;
mod machine;
mod process;
pub mod rules;
mod snapshot;
mod steps;
mod target;

pub use error::LabError;
pub use faults::{Fault, FaultKind, parse_faults};
pub use files::{FILES_DIR, server_file};
pub use lab::{LAB_DB, Lab, LabOptions, LoggedCommand, ServerDetail, init};
pub use process::process_alive;
pub use snapshot::{
    DatabaseSnapshot, FrontEnds, Interval, LabSnapshot, PoolMode, PoolSnapshot, Runs,
    ServerSnapshot, ServiceSnapshot, ServiceState, SqlInstanceSnapshot, render_text,
};
pub use target::{LabClock, LabTarget, StepCall};
