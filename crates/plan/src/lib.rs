//! Package manifests and the planner. Pure: no I/O, no clock, no environment. The same inputs
//! always give the same plan.
//!
//! - [`parse_manifest`] reads and validates a package manifest (`docs/manifest.md`).
//! - [`plan`] turns a deployment, a package and a [`PlanPolicy`] into a [`Plan`]: the eleven
//!   steps of the update procedure for every server to update, each with its typed [`Action`]
//!   and the exact PowerShell it runs ([`render_command`]).
//! - [`render_text`], [`render_powershell`] and [`json::render_json`] present a plan; the JSON
//!   is a stable contract ([`json`]).
//!
//! Errors carry stable codes (`SFB-M...` for manifests, `SFB-P...` for planning), documented
//! in `docs/errors-plan.md`.

mod checks;
mod command;
pub mod json;
mod manifest;
mod model;
mod pe;
mod planner;
mod render;
mod text;

pub use checks::{CheckError, ServerLine, check_exportable, check_installed, check_product_line};
pub use command::{
    EXTRACT_DIR_NAME, INSTALLER_FILE_NAME, POOL_BUSY_EXIT, extract_dir, ps_quote, render_command,
};
pub use manifest::{
    Location, ManifestError, ManifestErrorKind, is_server_path, manifest_text, parse_manifest,
};
pub use model::*;
pub use pe::{pe_file_version, sample_pe};
pub use planner::{DEFAULT_STAGING_DIR, MirroredBackend, PlanError, PlanPolicy, plan};
pub use render::{render_powershell, render_powershell_server, render_text};
/// Free text (a site name, an upgrade domain) with every character that is not printable
/// written as `\u{..}`, for any text output: it can drive no terminal.
pub use text::clean as printable;
