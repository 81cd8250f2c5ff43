//! The [`Store`] trait: where runs, the write-ahead journal, leases and the audit log live.
//! SQLite is the default implementation, PostgreSQL the other; both pass one contract suite.

use serde::{Deserialize, Serialize};
use sfbpatch_plan::{Plan, ServerKind, StepId};

use crate::policy::RunPolicy;
use crate::target::Millis;

pub type RunId = i64;

/// Which target a run drives, so that `resume` can reopen it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum TargetSpec {
    /// The simulated lab in this directory.
    Lab { dir: String },
    /// Real servers over SSH; `connections` is the connections file, if any.
    Ssh { connections: Option<String> },
}

/// Everything a run needs, written when it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Where the topology was read from, and its text as read.
    pub topology_origin: String,
    pub topology_snapshot: String,
    pub plan: Plan,
    pub policy: RunPolicy,
    pub target: TargetSpec,
    /// The account acting on the servers.
    pub operator: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    Running,
    Succeeded,
    Failed,
    /// Stopped before it finished (a crash, an interrupt, a closing maintenance window);
    /// `resume` continues it.
    Interrupted,
    /// The canary wave is done; `sfbpatch approve` lets the rest start on `resume`.
    AwaitingApproval,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Interrupted => "interrupted",
            RunState::AwaitingApproval => "awaiting-approval",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            RunState::Running,
            RunState::Succeeded,
            RunState::Failed,
            RunState::Interrupted,
            RunState::AwaitingApproval,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    pub fn is_finished(self) -> bool {
        matches!(self, RunState::Succeeded | RunState::Failed)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: RunId,
    pub spec: RunSpec,
    pub state: RunState,
    /// Target-clock time the run was created.
    pub created_at: Millis,
}

/// How a step attempt ended, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepResultKind {
    Succeeded,
    Failed,
    /// The outcome is not known (connection lost, timed out): a probe decides next.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerOutcome {
    Succeeded,
    Failed,
    Skipped,
    /// The pre-flight found the server on the package's build, in service, with nothing left
    /// to finish: nothing ran and it had no outage.
    AlreadyCurrent,
}

/// One journal record. Writing it is the commit point of what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum Record {
    ServerStarted {
        predicted_outage_ms: Millis,
    },
    /// What the pre-flight probe found on the machine, before anything changed on it.
    Preflight {
        facts: crate::target::MachineFacts,
    },
    /// The step has nothing to act on here (the plan says so, or the pre-flight found the
    /// machine without its object); it is not run and counts as neither done nor failed.
    StepNotApplicable {
        step: StepId,
        reason: String,
    },
    /// Written before a step is carried out. The step's command is the plan's (in the run's
    /// spec, and on the audit line of its result): the intent records only which step and
    /// attempt. `command` is what journals of earlier versions hold; it is not written now.
    StepIntent {
        step: StepId,
        attempt: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        command: Option<String>,
    },
    /// Written after the step returned.
    StepResult {
        step: StepId,
        attempt: u32,
        result: StepResultKind,
        exit_code: Option<i32>,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        output: String,
        duration_ms: Millis,
    },
    /// A probe's finding for a step whose outcome was unknown.
    StepProbed {
        step: StepId,
        done: bool,
        facts: String,
    },
    Rebooted {
        output: String,
    },
    Recovered {
        output: String,
    },
    OutageBudgetExceeded {
        budget_ms: Millis,
    },
    ServerFinished {
        outcome: ServerOutcome,
        reason: Option<String>,
    },
    /// The operator asked for the server, which ended failed (or skipped because of a failure),
    /// to be tried again (`sfbpatch retry`): it is pending again. Every step it completed
    /// stays done, except the steps of its outage window that the recovery after the failure
    /// undid (the update installed and databases updated stay done); the pre-flight reads it
    /// again before anything runs. `by` is the operator, `at_unix_ms` the wall-clock time
    /// they asked (the entry's own time is on the target's clock).
    ServerRetried {
        by: String,
        at_unix_ms: Millis,
    },
    /// Run-level (server `""`): `Test-CsDatabase` over every SQL Server after the last server;
    /// a database behind its expected version fails the run.
    DatabasesChecked {
        databases: Vec<crate::target::DatabaseState>,
    },
    /// Run-level (server `""`): the canary wave was approved; later waves may start.
    WaveApproved {
        wave: u32,
        by: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Assigned by the store, increasing.
    pub seq: i64,
    pub run: RunId,
    pub server: String,
    /// Target-clock time.
    pub at: Millis,
    pub record: Record,
}

/// One line of the append-only audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub run: RunId,
    /// Target-clock time.
    pub at: Millis,
    pub operator: String,
    pub server: String,
    pub step: String,
    pub command: Option<String>,
    pub exit_code: Option<i32>,
    pub output_excerpt: String,
}

/// A lease: one active run per pool, held by one controller instance of that run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub pool: String,
    pub run: RunId,
    /// The operator the controller runs as.
    pub holder: String,
    /// The controller's name (`--controller-name`, by default its host name).
    pub host: String,
    /// The controller's process id on that host (shown; liveness comes from renewal).
    pub pid: u32,
    /// Wall-clock milliseconds since the Unix epoch.
    pub expires_at: Millis,
    /// The controller instance (fresh for every process): only it renews the lease.
    #[serde(default)]
    pub instance: String,
    /// The run's generation when this instance claimed it ([`Store::claim_run`]); 0 before.
    #[serde(default)]
    pub generation: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open state store {location}: {reason}")]
    Open { location: String, reason: String },
    #[error(
        "state store {location} was written by a newer sfbpatch (schema {found}, this build knows {known})"
    )]
    SchemaTooNew {
        location: String,
        found: i64,
        known: i64,
    },
    #[error("state store query failed: {0}")]
    Query(String),
    #[error("state store holds a record this build cannot read: {0}")]
    Corrupt(String),
    #[error("run {0} does not exist in the state store")]
    NoSuchRun(RunId),
    #[error("there is no state store at {location}: {reason}")]
    NoStore { location: String, reason: String },
    #[error("state store {location} is damaged: {reason}")]
    Damaged { location: String, reason: String },
    /// The store cannot be reached now (connection lost, server restarting, database busy or
    /// an I/O error): the same request may succeed later.
    #[error("state store unreachable: {0}")]
    Unavailable(String),
    /// Another controller instance claimed the run after this one: this handle's appends and
    /// state changes for the run are refused.
    #[error(
        "run {run} was taken over by controller {by} (generation {current}); this controller \
         holds generation {held} and may no longer write to the run"
    )]
    Fenced {
        run: RunId,
        held: u64,
        current: u64,
        by: String,
    },
}

impl StoreError {
    /// Stable code for documentation and scripts (docs/errors-engine.md).
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Open { .. } => "SFB-S001",
            StoreError::SchemaTooNew { .. } => "SFB-S002",
            StoreError::Query(_) => "SFB-S003",
            StoreError::Corrupt(_) => "SFB-S004",
            StoreError::NoSuchRun(_) => "SFB-S005",
            StoreError::NoStore { .. } => "SFB-S006",
            StoreError::Damaged { .. } => "SFB-S007",
            StoreError::Unavailable(_) => "SFB-S008",
            StoreError::Fenced { .. } => "SFB-S009",
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// A request that a run stop at its next step boundary (what Ctrl-C does to its controller),
/// written to the store by someone other than the controller (`sfbpatch serve`). It applies to
/// the controller that held the run when it was asked ([`Store::claim_run`]'s generation): a
/// later `resume` claims the run anew and is not stopped by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopRequest {
    /// The run's generation when the stop was asked.
    pub generation: u64,
    /// Who asked.
    pub by: String,
    /// Target-clock time of the request (the time of its audit line).
    pub at: Millis,
}

/// Earlier runs' step durations for one role, used to predict outage windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepStat {
    pub step: StepId,
    pub samples: u64,
    pub mean_ms: Millis,
}

/// Which run and server journal records belong to.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub run: RunId,
    pub server: &'a str,
    pub role: ServerKind,
}

/// One [`Store::append`], held back to be committed with others.
#[derive(Debug, Clone)]
pub struct Append {
    pub at: Millis,
    pub run: RunId,
    pub server: String,
    pub role: ServerKind,
    pub records: Vec<Record>,
    pub audit: Option<AuditEntry>,
}

/// How far a commit survives: what [`Store::set_durability`] asks of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// A commit survives a power loss or an operating-system crash: it is on disk before it
    /// returns (SQLite `synchronous = FULL`, PostgreSQL `synchronous_commit = on`). The
    /// default, and what a run against real servers uses.
    PowerLoss,
    /// A commit survives a crash of the controller's process at any point; a power loss may
    /// take the last commits back (SQLite `synchronous = NORMAL` in WAL mode, PostgreSQL
    /// `synchronous_commit = off`). What a run on the lab uses: the lab's own world commits
    /// this way, and a journal need be no more durable than the world it records.
    ProcessCrash,
}

/// Durable state. Every method that writes commits before it returns, as durably as
/// [`Store::durability`] says.
pub trait Store {
    /// `sqlite:PATH` or `postgres://...`, for messages.
    fn location(&self) -> String;

    fn create_run(&mut self, spec: &RunSpec, at: Millis) -> Result<RunId, StoreError>;
    fn run(&self, id: RunId) -> Result<RunRecord, StoreError>;
    /// The state of run `id` as recorded, without reading its spec: what a reader polling a
    /// run needs.
    fn run_state(&self, id: RunId) -> Result<RunState, StoreError> {
        Ok(self.run(id)?.state)
    }
    /// The newest run, if any.
    fn latest_run(&self) -> Result<Option<RunRecord>, StoreError>;
    fn set_run_state(&mut self, id: RunId, state: RunState) -> Result<(), StoreError>;

    /// Remove a run that never started: one whose journal is empty (a start refused because
    /// another run holds one of its pools). Returns whether it was removed; a run with a
    /// journal is kept.
    fn forget_unstarted_run(&mut self, id: RunId) -> Result<bool, StoreError>;

    /// Append records about one server in one transaction, with an optional audit line in
    /// the same transaction. Successful step results also feed [`Store::step_stats`] for the
    /// server's role.
    fn append(
        &mut self,
        at: Millis,
        scope: &Scope<'_>,
        records: &[Record],
        audit: Option<&AuditEntry>,
    ) -> Result<(), StoreError>;
    /// Several appends, in order; implementations commit them in one transaction.
    fn append_batch(&mut self, batch: &[Append]) -> Result<(), StoreError> {
        for a in batch {
            let scope = Scope {
                run: a.run,
                server: &a.server,
                role: a.role,
            };
            self.append(a.at, &scope, &a.records, a.audit.as_ref())?;
        }
        Ok(())
    }

    /// The whole journal of a run, in order.
    fn journal(&self, run: RunId) -> Result<Vec<JournalEntry>, StoreError>;
    fn audit(&self, run: RunId) -> Result<Vec<AuditEntry>, StoreError>;
    /// The journal records of a run after sequence number `after`, in order: what a reader
    /// that has seen up to `after` has not seen yet.
    fn journal_since(&self, run: RunId, after: i64) -> Result<Vec<JournalEntry>, StoreError> {
        let mut journal = self.journal(run)?;
        journal.retain(|e| e.seq > after);
        Ok(journal)
    }

    /// Ask the run's current controller to stop at its next step boundary: records a
    /// [`StopRequest`] for the run's current generation (replacing an earlier one) and an
    /// audit line naming `by`, in one transaction. Returns the request recorded.
    fn request_stop(&mut self, run: RunId, by: &str, at: Millis)
    -> Result<StopRequest, StoreError>;
    /// The run's stop request, if one was made (for whichever generation).
    fn stop_request(&self, run: RunId) -> Result<Option<StopRequest>, StoreError>;

    /// Take the lease on `lease.pool` unless another controller instance holds an unexpired
    /// one; returns the holder's lease when refused. A lease held by the same instance of the
    /// same run is renewed (its generation kept). `now` and the expiry are on the store's
    /// clock when it has one ([`Store::clock_ms`]).
    fn acquire_lease(&mut self, lease: &Lease, now: Millis) -> Result<Option<Lease>, StoreError>;
    /// [`Store::acquire_lease`] for each of `leases`, in order, stopping at the first refused
    /// (whose holder it returns). Implementations do it in one transaction, so that a
    /// controller of thousands of pools renews them with one commit, all or none.
    fn acquire_leases(
        &mut self,
        leases: &[Lease],
        now: Millis,
    ) -> Result<Option<Lease>, StoreError> {
        for lease in leases {
            if let Some(held) = self.acquire_lease(lease, now)? {
                return Ok(Some(held));
            }
        }
        Ok(None)
    }
    /// The store's name, made once when it was created: where, and random bits
    /// (`sqlite:state.db~3f9a...`). `None` for a store made before stores had one and opened
    /// only to read.
    fn store_id(&self) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
    /// The store's own clock (wall-clock milliseconds since the Unix epoch), when it has one
    /// that every controller shares (PostgreSQL's): lease expiry is then written and compared
    /// on it, so controllers' clock skew does not move a lease. `None`: each controller's
    /// wall clock (SQLite: one host). Controllers read it before they write or judge a lease.
    fn clock_ms(&self) -> Result<Option<Millis>, StoreError> {
        Ok(None)
    }
    /// Make every later commit of this handle as durable as `durability` asks (a new handle
    /// starts at [`Durability::PowerLoss`]; the setting outlives a reconnection).
    fn set_durability(&mut self, durability: Durability) -> Result<(), StoreError>;
    /// The durability the store's session really has, read back from it.
    fn durability(&self) -> Result<Durability, StoreError>;
    /// Remove the leases `instance` holds for `run` (a newer controller's are kept).
    fn release_leases(&mut self, run: RunId, instance: &str) -> Result<(), StoreError>;
    /// Make `instance`, which holds every lease of `run`, the run's controller: in one
    /// transaction the run's generation goes up by one and is written on those leases.
    /// Returns the new generation, and fences this handle with it: from then on its journal
    /// appends and state changes for the run are refused ([`StoreError::Fenced`]), in the
    /// same transaction, once another instance has claimed the run. A lease of the run held
    /// by another instance refuses the claim the same way.
    fn claim_run(&mut self, run: RunId, instance: &str) -> Result<u64, StoreError>;
    /// Remove the lease on `pool`, whoever holds it; returns what was removed.
    fn break_lease(&mut self, pool: &str) -> Result<Option<Lease>, StoreError>;
    /// Remove the lease on `pool` only if controller `instance` still holds it, in one
    /// statement: two controllers that both saw a dead holder cannot each break the lease the
    /// other has just taken. Returns what was removed.
    fn break_lease_held_by(
        &mut self,
        pool: &str,
        instance: &str,
    ) -> Result<Option<Lease>, StoreError>;
    fn leases(&self) -> Result<Vec<Lease>, StoreError>;

    /// Mean duration of each step that succeeded in runs other than `exclude`, for servers
    /// of `role`.
    fn step_stats(&self, role: ServerKind, exclude: RunId) -> Result<Vec<StepStat>, StoreError>;

    /// The host-key fingerprint pinned for `server` (an FQDN, compared ignoring case), as
    /// OpenSSH prints it (`SHA256:...`), if one was pinned.
    fn host_key(&self, server: &str) -> Result<Option<String>, StoreError>;
    /// Pin `fingerprint` as the host key of `server`, replacing any earlier pin.
    fn pin_host_key(&mut self, server: &str, fingerprint: &str) -> Result<(), StoreError>;
}
