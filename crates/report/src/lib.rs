//! Run reports: what happened to every server, how long each pool's users were in resiliency
//! mode, what failed and why, and every command run, computed from the run's write-ahead journal
//! and audit log alone.
//!
//! - [`build`] folds a run's records into a [`Report`]. Pure: no I/O, no clock; the same records
//!   give the same report. Its JSON form (serde) is a stable contract,
//!   `docs/schema/report.schema.json`.
//! - [`render_html`] (in this computer's time zone) and [`render_html_in`] (in a given one)
//!   render a report as one self-contained HTML page (inline CSS and SVG, no script, nothing
//!   loaded from anywhere): a header, a timeline per server with each outage window against the
//!   30-minute line, the user impact per pool, each server's build before and after, the
//!   failures with what to do next, and the audit trail as an appendix that prints only when
//!   opened. A run over SSH shows dates and times with their UTC offset; a lab run, offsets from
//!   its start in lab time.
//! - [`render_timeline`] (and [`render_timeline_in`]) render the page's timeline alone, an HTML
//!   fragment for a page of its own (the live dashboard), which also needs [`TIMELINE_CSS`].
//! - [`EXIT_CODES`]: the glossary of the update installer's usual exit codes the hints use.
//!
//! The 30-minute rule (SPEC.md section 2): a pool's back end is unavailable while every machine
//! of it is out of service (one machine, a Standard Edition server, or all nodes of an AlwaysOn
//! availability group at once); users go into resiliency mode for the part of an unavailability
//! beyond 30 minutes. A machine is out of service during its outage window, from the start of
//! `stop-cs-services` to the end of `start-cs-services` or of the recovery after a failure.

mod build;
mod hints;
mod html;
mod intervals;
mod model;

pub use build::{ReportError, build};
pub use hints::{EXIT_CODES, ExitCode, exit_code};
pub use html::{TIMELINE_CSS, render_html, render_html_in, render_timeline, render_timeline_in};
pub use model::*;

#[cfg(test)]
mod tests;
