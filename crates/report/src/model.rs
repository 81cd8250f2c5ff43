//! The report's data: what [`crate::build`] computes and what the JSON contract
//! (`docs/schema/report.schema.json`) and the HTML page show.
//!
//! Field order is part of the contract: the fields every consumer relies on come first in each
//! object, extra fields follow. Within schema version 1 fields are only added.

use serde::Serialize;
use sfbpatch_engine::{RunId, RunState, ServerState, StepState};
use sfbpatch_plan::{ServerKind, StepId};

/// The version of the JSON contract.
pub const SCHEMA_VERSION: u32 = 1;

/// A whole run, ready to render. Times are seconds of the target's clock since the run was
/// created: wall-clock time for runs over SSH ([`ClockKind::Wall`], so they also have calendar
/// dates), the lab's virtual clock for lab runs ([`ClockKind::Lab`], offsets only).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub run: RunSummary,
    /// Every planned server, in plan order.
    pub servers: Vec<ServerReport>,
    /// Every pool whose back end has at least one planned server, in topology order.
    pub pools: Vec<PoolReport>,
    /// Servers that failed or were skipped, in plan order.
    pub failures: Vec<FailureReport>,
    /// The audit trail, in the order it was written.
    pub audit: Vec<AuditLine>,
    /// Every database of the deployment as the run-level `Test-CsDatabase` after the last
    /// server read it (installed and expected version); empty until that check ran.
    pub databases: Vec<sfbpatch_engine::DatabaseState>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub id: RunId,
    pub state: RunState,
    /// From the run's creation to the last journal record.
    pub makespan_seconds: f64,
    /// The target clock's reading when the run was created, in seconds: every other time in
    /// the report counts from it (the lab's virtual clock, or the Unix epoch over SSH).
    pub created_at_seconds: f64,
    /// The package's name and build.
    pub package: String,
    pub package_version: String,
    /// The account that acted on the servers.
    pub operator: String,
    /// Where the topology was read from.
    pub topology_origin: String,
    /// The target the run drove, as recorded (`{"kind": "lab", "dir": ...}`, ...).
    pub target: serde_json::Value,
    /// How long a back end may be unavailable before users go into resiliency mode.
    pub resiliency_after_seconds: f64,
    /// Approvals of canary waves (`sfbpatch approve`).
    pub approvals: Vec<Approval>,
    /// Which clock the times are on.
    pub clock: ClockKind,
    /// When the run started, RFC 3339 in UTC (`2026-12-04T21:03:15Z`); `None` for a lab run,
    /// whose virtual clock has no calendar in the run's records.
    pub started_at: Option<String>,
    /// When the run ended (its last journal record), RFC 3339 in UTC; `None` while it has not
    /// ended, and for a lab run.
    pub ended_at: Option<String>,
}

/// The clock a run's journal was written on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClockKind {
    /// Wall-clock Unix milliseconds (real servers over SSH): every time is a calendar instant.
    Wall,
    /// The lab's virtual clock (milliseconds since the lab's creation): times are shown as
    /// offsets from the run's start, "lab time".
    Lab,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Approval {
    /// The wave approved, counted from 0 as the engine does: 0 is the canary wave.
    pub wave: u32,
    pub by: String,
    pub at_seconds: f64,
    /// The same instant, RFC 3339 in UTC; `None` for a lab run.
    pub at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerReport {
    pub fqdn: String,
    pub pool: String,
    pub state: ServerState,
    /// When the server started; `None` if it never did (pending, or skipped before starting).
    pub start_seconds: Option<f64>,
    /// When it finished (succeeded, failed or skipped); `None` while it has not.
    pub end_seconds: Option<f64>,
    /// The outage window's length: from the start of `stop-cs-services` to the end of
    /// `start-cs-services` or of the recovery after a failure; up to the last journal record
    /// while it is still open. `None` if the server never entered it.
    pub outage_seconds: Option<f64>,
    pub site: String,
    pub role: ServerKind,
    /// The back end's SQL Server FQDN (the AlwaysOn listener for availability groups).
    pub sql_server_fqdn: String,
    pub outage_start_seconds: Option<f64>,
    /// `None` while the outage is open (or if there was none).
    pub outage_end_seconds: Option<f64>,
    /// Why the server failed or was skipped.
    pub reason: Option<String>,
    /// The outage went past the run's outage budget.
    pub budget_exceeded: bool,
    pub steps: Vec<StepReport>,
    /// Restarts the installer asked for.
    pub reboots: Vec<Span>,
    /// The recovery after a failure inside the outage window (W3SVC and services back).
    pub recovery: Option<Recovery>,
    /// The Skype for Business build the pre-flight read before anything changed; `None`
    /// before the pre-flight, or on a machine without Skype for Business components.
    pub build_before: Option<String>,
    /// The build the server ended on, when known: see `build_after_from`.
    pub build_after: Option<String>,
    /// How `build_after` is known; `None` when it is not (the installer ran but `verify` did
    /// not pass, or the server has not finished).
    pub build_after_from: Option<BuildSource>,
}

/// How a server's build after the run is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuildSource {
    /// `verify` passed: `Get-CsServerPatchVersion` showed the package's build.
    Verify,
    /// Nothing was installed (the server was already current, the installer never started,
    /// or the machine has nothing to install): the build the pre-flight read.
    Preflight,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    pub id: StepId,
    pub state: StepState,
    pub attempts: u32,
    /// Start of the first attempt.
    pub start_seconds: Option<f64>,
    /// End of the last attempt (or of the probe that found it done).
    pub end_seconds: Option<f64>,
    /// The last attempt's exit code, when the target returned one.
    pub exit_code: Option<i32>,
    /// The step lies inside the outage window.
    pub in_outage: bool,
}

/// A closed span of time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Span {
    pub start_seconds: f64,
    pub end_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recovery {
    pub start_seconds: f64,
    pub end_seconds: f64,
    pub output: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolReport {
    pub fqdn: String,
    /// How long the pool's users were in resiliency mode: the part of each unavailability of
    /// the back end beyond 30 minutes.
    pub resiliency_seconds: f64,
    pub site: String,
    /// The back end: `sql.example.com` or `sql.example.com\instance`.
    pub backend: String,
    pub always_on: bool,
    /// The back end's machines (the Standard Edition server itself); a back end of several
    /// machines is unavailable while none of them is in service, and while its databases are
    /// updated.
    pub servers: Vec<String>,
    /// The pool's Front End servers in the run (none for a Standard Edition server).
    pub front_ends: Vec<String>,
    /// Of those, the ones that ended patched.
    pub front_ends_patched: usize,
    /// Total time the back end was unavailable.
    pub unavailable_seconds: f64,
    pub unavailable: Vec<Interval>,
    pub resiliency: Vec<Interval>,
    /// Every Front End server of the pool in the topology, in the run or not, in the pool's
    /// order (as `Get-CsComputer -PoolFqdn` lists them: pool quorum counts the first of them,
    /// [`sfbpatch_topology::quorum`]); none for a Standard Edition server. For a pool the
    /// topology no longer has, the Front End servers of the run.
    pub front_ends_in_pool: Vec<String>,
}

/// A span of time that may still be open at the end of the journal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub start_seconds: f64,
    /// `None` while it lasts.
    pub end_seconds: Option<f64>,
    /// Its length, up to the last journal record while it is open.
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureReport {
    pub server: String,
    pub pool: String,
    pub state: ServerState,
    /// The step the server stopped at; `None` when it was skipped before any step.
    pub step: Option<StepId>,
    pub at_seconds: Option<f64>,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    /// The stopping step's last output (or the probe's findings).
    pub output: Option<String>,
    pub recovery_output: Option<String>,
    /// What to do next.
    pub hint: Hint,
}

/// What to do about a failed or skipped server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hint {
    /// What the exit code means as the update installer (Windows Installer) uses it, when it
    /// is one of the codes in [`crate::EXIT_CODES`].
    pub exit_code: Option<ExitCodeHint>,
    /// Where the update installer's logs lie on the server, when the failure concerns the
    /// installer.
    pub logs: Option<String>,
    /// How to patch this one server again once the cause is fixed.
    pub retry: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExitCodeHint {
    pub code: i32,
    /// The Windows error constant (`ERROR_INSTALL_FAILURE`).
    pub name: String,
    pub meaning: String,
    /// What to do about it.
    pub action: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditLine {
    pub at_seconds: f64,
    pub operator: String,
    pub server: String,
    pub step: String,
    pub command: Option<String>,
    pub exit_code: Option<i32>,
    pub output_excerpt: String,
}
