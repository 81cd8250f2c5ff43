//! The [`Target`] trait: where steps are carried out (the lab simulator, or real servers over
//! SSH). One contract, one contract test suite.

use sfbpatch_plan::{Package, PlannedStep, ServerPlan};

/// Milliseconds: virtual ones for the lab, wall-clock ones for real targets.
pub type Millis = u64;

/// Everything a target needs to carry out or probe one step on one server.
#[derive(Debug, Clone, Copy)]
pub struct StepRequest<'a> {
    pub run_id: i64,
    pub server: &'a ServerPlan,
    pub step: &'a PlannedStep,
    /// Where the step runs: `step.run_on`, or the server itself.
    pub host: &'a sfbpatch_topology::Fqdn,
    pub package: &'a Package,
    /// The account acting on the server.
    pub operator: &'a str,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// After this long the step counts as hung: the target gives up and answers
    /// [`TargetError::TimedOut`].
    pub timeout: Millis,
    /// The engine's clock when it makes the call: a target that keeps its own time (the lab)
    /// starts the operation then.
    pub at: Millis,
    /// Who makes the call: the server's lock holder and the generation of its claim.
    pub fence: Fence<'a>,
}

/// The controller behind a call, as the server's lock knows it: the run (its lock holder,
/// [`crate::server_lock_holder`]) and the generation of the controller's claim on the run. A
/// server whose lock shows a newer generation of the same holder refuses the call
/// ([`TargetError::Fenced`]): another controller took the run over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence<'a> {
    pub holder: &'a str,
    pub generation: u64,
}

/// What a step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    /// 0 = success. For `install-update`, 3010 = success, reboot required.
    pub exit_code: i32,
    /// The end of the step's output, capped by the target.
    pub output: String,
    /// When the operation ended by the target's own clock, if it keeps one (the lab): the
    /// engine records the result at that time rather than when the call returned.
    pub ended_at: Option<Millis>,
}

impl StepOutcome {
    pub fn ok(output: impl Into<String>) -> Self {
        Self::exit(0, output)
    }

    /// An outcome with `exit_code`, its time left to the engine.
    pub fn exit(exit_code: i32, output: impl Into<String>) -> Self {
        StepOutcome {
            exit_code,
            output: output.into(),
            ended_at: None,
        }
    }
}

/// What a probe found about a step whose outcome the journal does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeVerdict {
    /// The server's state shows the step's effect: do not run it again.
    Done,
    /// The server's state shows the step did not take effect: it may run.
    NotDone,
    /// The step's command is still running on the server (an installer that outlived its
    /// session): wait for it, neither run it again nor go on.
    Running,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub verdict: ProbeVerdict,
    /// The facts read (build, service states, database versions), for the journal.
    pub facts: String,
}

/// What a machine runs, read before anything changes on it (the pre-flight probe): the
/// engine decides from it which planned steps have nothing to act on, and refuses a server
/// that must be restarted first.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct MachineFacts {
    /// The Skype for Business Windows services present (`Get-CsWindowsService`), by name.
    pub services: Vec<String>,
    /// Of those, the ones running.
    pub services_running: usize,
    /// IIS (W3SVC) is installed.
    pub w3svc: bool,
    /// The Skype for Business Management Shell module is installed.
    pub management_shell: bool,
    /// A SQL Server instance runs on the machine.
    pub sql_server: bool,
    /// The installed Skype for Business build (`Get-CsServerPatchVersion`), if any component is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<sfbpatch_plan::Build>,
    /// Windows has a restart pending.
    pub reboot_pending: bool,
    /// Every service present runs on the installed build and W3SVC (where present) runs.
    pub in_service: bool,
}

impl MachineFacts {
    /// The product line of the installed build (`Lync Server 2013`, `Skype for Business
    /// Server 2015`, `Skype for Business Server 2019`), when known.
    pub fn product_line(&self) -> Option<&'static str> {
        match self.build?.0[0] {
            5 => Some("Lync Server 2013"),
            6 => Some("Skype for Business Server 2015"),
            7 => Some("Skype for Business Server 2019"),
            _ => None,
        }
    }
}

/// A server's lock as the machine keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerLock {
    /// The controller's run: `<state store>#<run id>`.
    pub holder: String,
    /// The generation of the claim of the controller that took the lock last.
    #[serde(default)]
    pub generation: u64,
    /// Wall-clock milliseconds since the Unix epoch.
    pub expires_at: Millis,
}

/// One database as `Test-CsDatabase` reports it, for the run-level check after the last server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DatabaseState {
    pub sql_server_fqdn: String,
    /// `""` for the default instance.
    pub sql_instance: String,
    /// The store kind (`user`, `monitoring`, ...).
    pub store: String,
    pub database: String,
    pub installed_version: String,
    pub expected_version: String,
}

impl DatabaseState {
    pub fn is_current(&self) -> bool {
        self.installed_version == self.expected_version
    }

    /// `server\instance database`, as messages name it.
    pub fn label(&self) -> String {
        if self.sql_instance.is_empty() {
            format!("{} {}", self.sql_server_fqdn, self.database)
        } else {
            format!(
                "{}\\{} {}",
                self.sql_server_fqdn, self.sql_instance, self.database
            )
        }
    }
}

/// Why a target could not carry out or probe a step. Distinct from a step that ran and failed
/// (a non-zero [`StepOutcome::exit_code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The server cannot be reached now; the step did not start, or its outcome is unknown.
    #[error("server {server} is unreachable: {reason}")]
    Unreachable { server: String, reason: String },
    /// The step did not finish within its timeout; its outcome is unknown.
    #[error("step {step} on {server} did not finish within {:.1} min", *after_ms as f64 / 60_000.0)]
    TimedOut {
        server: String,
        step: String,
        after_ms: Millis,
    },
    /// The target refused the request for good (authentication, host key, unknown server).
    #[error("{0}")]
    Refused(String),
    /// A probe or pre-flight could not read the server's state (its script failed); nothing
    /// was changed, and reading again may succeed.
    #[error("could not read the state of {server}: {reason}")]
    ReadFailed { server: String, reason: String },
    /// The server's lock shows that a newer controller of the same run holds it: the call was
    /// refused before anything ran.
    #[error(
        "server {server} refused the call: its lock is held by generation {current} of this \
         run's controllers, this controller holds generation {held}"
    )]
    Fenced {
        server: String,
        held: u64,
        current: u64,
    },
}

impl TargetError {
    /// Whether the outcome of the step is unknown (and a probe must decide before anything
    /// else is done).
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            TargetError::Unreachable { .. } | TargetError::TimedOut { .. }
        )
    }
}

/// Where steps run. Implementations must be safe to call again after a crash: `execute` is
/// only called for a step the journal does not show as done, after `probe` said
/// [`ProbeVerdict::NotDone`] for any step whose intent was recorded without a result.
pub trait Target {
    /// `lab` or `ssh`.
    fn kind(&self) -> &'static str;

    /// Carry out one step. Returns once the step has finished (or failed).
    fn execute(&self, req: &StepRequest<'_>) -> Result<StepOutcome, TargetError>;

    /// Read the server's real state and say whether the step's effect is there.
    fn probe(&self, req: &StepRequest<'_>) -> Result<Probe, TargetError>;

    /// Read what the machine runs without changing anything (the pre-flight probe).
    fn preflight(&self, server: &ServerPlan) -> Result<MachineFacts, TargetError>;

    /// How durable the target's own world is. The engine commits the journal of a run on it
    /// no more durably ([`Store::set_durability`](crate::Store::set_durability)): real servers
    /// keep what they did through a power loss of the controller, so the journal must too; the
    /// lab's world commits with `synchronous = NORMAL` and may lose its last changes with the
    /// journal's.
    fn durability(&self) -> crate::store::Durability {
        crate::store::Durability::PowerLoss
    }

    /// Whether the target keeps its own time (the lab): its reads take none, and its
    /// operations say when they ended ([`StepOutcome::ended_at`]).
    fn keeps_own_time(&self) -> bool {
        false
    }

    /// Take the lock a server keeps for the controller patching it (a marker on the machine:
    /// holder, generation and expiry, wall-clock milliseconds). Returns the other holder when
    /// another controller's unexpired lock is there; the same holder takes it again with its
    /// generation, unless the lock shows a newer one ([`TargetError::Fenced`]). Targets that
    /// cannot keep a marker answer `Ok(None)`.
    fn lock_server(
        &self,
        server: &ServerPlan,
        fence: Fence<'_>,
        now_ms: Millis,
        until_ms: Millis,
    ) -> Result<Option<ServerLock>, TargetError> {
        let _ = (server, fence, now_ms, until_ms);
        Ok(None)
    }

    /// Remove this holder's lock from the server (nothing when another holds it).
    fn unlock_server(&self, server: &ServerPlan, holder: &str) -> Result<(), TargetError> {
        let _ = (server, holder);
        Ok(())
    }

    /// `Test-CsDatabase` over every SQL Server of the deployment, after the last server: every
    /// database with its installed and expected version. `None` when the target cannot run it.
    fn databases(
        &self,
        plan: &sfbpatch_plan::Plan,
    ) -> Result<Option<Vec<DatabaseState>>, TargetError> {
        let _ = plan;
        Ok(None)
    }

    /// Restart the server after an installer asked for it (exit 3010) and wait until it is
    /// back. Services set to start automatically come back on their own.
    fn reboot(&self, req: &StepRequest<'_>) -> Result<StepOutcome, TargetError>;

    /// After a failure inside the outage window: bring W3SVC and the Skype for Business
    /// services back where possible. Returns what was done.
    fn recover(&self, req: &StepRequest<'_>) -> Result<StepOutcome, TargetError>;
}

/// The time source the engine runs on. The lab's clock is virtual and shared by every process
/// that opens the lab; real targets use wall-clock time.
pub trait Clock {
    /// Milliseconds since the clock's epoch (the lab's creation, or the Unix epoch).
    fn now(&self) -> Millis;
    /// Let `duration` pass (retry backoff). A virtual clock advances; a real one sleeps.
    fn sleep(&self, duration: Millis);

    /// Whether time is simulated. A virtual clock lets the engine run servers side by side
    /// in simulated time, one operation at a time in time order (a discrete-event
    /// simulation); a real one makes it run them on threads.
    fn is_virtual(&self) -> bool {
        false
    }

    /// Virtual clocks only: the operation the engine starts next happens at `at` (possibly
    /// earlier than the end of another server's operation). Real clocks ignore it.
    fn set(&self, at: Millis) {
        let _ = at;
    }

    /// How long to wait in real time for `duration` of this clock's time to pass.
    fn real_duration(&self, duration: Millis) -> std::time::Duration {
        std::time::Duration::from_millis(duration)
    }
}

/// Wall-clock time (milliseconds since the Unix epoch), for real targets and for leases. The
/// engine never picks a clock itself: callers pass this one or a virtual one.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as Millis)
    }

    fn sleep(&self, duration: Millis) {
        std::thread::sleep(std::time::Duration::from_millis(duration));
    }
}
