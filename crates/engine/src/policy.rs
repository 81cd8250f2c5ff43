//! How a run behaves: outage budget, failure budget, retries and timeouts per step kind.

use serde::{Deserialize, Serialize};
use sfbpatch_plan::StepId;

use crate::target::Millis;

pub const MINUTE: Millis = 60_000;

/// The line after which a pool's users go into resiliency mode (SPEC.md section 2).
pub const RESILIENCY_THRESHOLD: Millis = 30 * MINUTE;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunPolicy {
    /// The longest outage a server may be predicted to cause before it starts.
    pub outage_budget_ms: Millis,
    /// Start servers whose predicted outage exceeds the budget anyway.
    pub accept_resiliency: bool,
    /// Failed servers tolerated; one more stops the run (no new server starts). `None` with
    /// `continue_on_failure`: no absolute limit.
    pub max_failures: Option<u32>,
    /// Failed servers tolerated as a percentage of the run's servers.
    #[serde(default)]
    pub max_failure_percent: Option<f64>,
    /// Keep going past an isolated failure, within the failure budget.
    #[serde(default)]
    pub continue_on_failure: bool,
    /// Servers in their outage window at once, overall.
    #[serde(default = "one")]
    pub max_parallel: u32,
    /// Servers in their outage window at once, per site.
    #[serde(default)]
    pub max_parallel_per_site: Option<u32>,
    /// Which roles go first; servers keep plan order within a role.
    #[serde(default)]
    pub order: Vec<sfbpatch_plan::ServerKind>,
    /// Canary waves: each must finish before the next starts; the servers left over form the
    /// last wave.
    #[serde(default)]
    pub waves: Vec<WaveSize>,
    /// After the first wave, wait for `sfbpatch approve`.
    #[serde(default)]
    pub pause_after_canary: bool,
    /// How many Front End servers of one pool may be out at once.
    #[serde(default)]
    pub front_end_batch: FrontEndBatch,
    /// Pools (as named in the plan) that are paired for disaster recovery: never both in
    /// their outage window at once.
    #[serde(default)]
    pub pairs: Vec<[String; 2]>,
    /// Maintenance windows on the target's clock: a server starts only if its predicted
    /// completion fits one. Empty: always.
    #[serde(default)]
    pub windows: Vec<Window>,
    /// The daily window the `windows` were placed from (e.g. `22:00-05:00 Europe/Berlin`), so
    /// that `resume` can place the next one.
    #[serde(default)]
    pub window_spec: Option<String>,
    /// How long the state store may stay unreachable (wall clock) before the run stops; until
    /// then every server is held at its next step boundary.
    #[serde(default = "store_outage_limit")]
    pub store_outage_limit_ms: Millis,
    /// How long a controller's lease on a pool lives without renewal (renewed every third of
    /// it): how soon a standby may take over after the controller stops.
    #[serde(default = "lease_ttl")]
    pub lease_ttl_ms: Millis,
}

fn lease_ttl() -> Millis {
    crate::engine::LEASE_TTL
}

fn store_outage_limit() -> Millis {
    STORE_OUTAGE_LIMIT
}

/// The default for [`RunPolicy::store_outage_limit_ms`]: five minutes.
pub const STORE_OUTAGE_LIMIT: Millis = 5 * MINUTE;

/// Front End servers of one pool out at once (SPEC.md section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FrontEndBatch {
    /// One server at a time, as Microsoft documents.
    #[default]
    Server,
    /// The servers of one upgrade domain together, one upgrade domain at a time.
    UpgradeDomain,
}

fn one() -> u32 {
    1
}

/// A wave's size: a number of servers, or a percentage of the run's servers (rounded up).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WaveSize {
    Servers(u32),
    Percent(f64),
}

impl WaveSize {
    pub fn of(self, total: usize) -> usize {
        match self {
            WaveSize::Servers(n) => n as usize,
            WaveSize::Percent(p) => ((total as f64) * p / 100.0).ceil() as usize,
        }
    }
}

/// A maintenance window `[opens_at, closes_at)` on the target's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub opens_at: Millis,
    pub closes_at: Millis,
}

impl Default for RunPolicy {
    fn default() -> Self {
        RunPolicy {
            outage_budget_ms: RESILIENCY_THRESHOLD,
            accept_resiliency: false,
            max_failures: Some(0),
            max_failure_percent: None,
            continue_on_failure: false,
            max_parallel: 1,
            max_parallel_per_site: None,
            order: Vec::new(),
            waves: Vec::new(),
            pause_after_canary: false,
            front_end_batch: FrontEndBatch::default(),
            pairs: Vec::new(),
            windows: Vec::new(),
            window_spec: None,
            store_outage_limit_ms: STORE_OUTAGE_LIMIT,
            lease_ttl_ms: crate::engine::LEASE_TTL,
        }
    }
}

impl RunPolicy {
    /// Whether `failed` failures out of `total` servers exceed the failure budget.
    ///
    /// Without `continue_on_failure` and without explicit limits, the first failure does.
    pub fn failure_budget_exceeded(&self, failed: usize, total: usize) -> bool {
        if failed == 0 {
            return false;
        }
        let absolute = self.max_failures.is_some_and(|max| failed > max as usize);
        let percent = self
            .max_failure_percent
            .is_some_and(|p| (failed as f64) * 100.0 > p * (total.max(1) as f64));
        absolute || percent
    }
}

/// Retry rules for one step kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryRule {
    /// Attempts in all, the first included, for non-zero exit codes that [`RetryRule::retries_exit`] accepts.
    pub max_attempts: u32,
    /// Exit codes worth another attempt; empty with `any_exit` false means none.
    pub transient_exits: &'static [i32],
    pub any_exit: bool,
    pub timeout: Millis,
}

impl RetryRule {
    pub fn retries_exit(&self, code: i32) -> bool {
        self.any_exit || self.transient_exits.contains(&code)
    }
}

/// Windows Installer: another installation is already in progress.
pub const ERROR_INSTALL_ALREADY_RUNNING: i32 = 1618;
/// Installer exit code meaning success with a reboot required.
pub const ERROR_SUCCESS_REBOOT_REQUIRED: i32 = 3010;

/// How long a probe (or the pre-flight) may take: it only reads, so a hung probe is an
/// unreachable server, not a reason to wait another step's timeout.
pub const PROBE_TIMEOUT: Millis = 2 * MINUTE;

/// How long a restart may take before it counts as hung (the server may still come back:
/// it is probed then).
pub const REBOOT_TIMEOUT: Millis = 20 * MINUTE;

/// How long a recovery may take.
pub const RECOVER_TIMEOUT: Millis = 15 * MINUTE;

/// How often a step found still running on the server (an installer) is probed again.
pub const RUNNING_POLL: Millis = MINUTE;

/// Attempts allowed while a server is unreachable, whatever the step.
pub const UNREACHABLE_ATTEMPTS: u32 = 8;

pub fn retry_rule(step: StepId) -> RetryRule {
    use StepId::*;
    match step {
        StopCsServices
        | StopCsServicesGac
        | StopW3svc
        | StartW3svc
        | StartCsServices
        | CloseManagementShells => RetryRule {
            max_attempts: 3,
            transient_exits: &[],
            any_exit: true,
            timeout: 15 * MINUTE,
        },
        InstallUpdate => RetryRule {
            max_attempts: 3,
            transient_exits: &[ERROR_INSTALL_ALREADY_RUNNING],
            any_exit: false,
            timeout: 60 * MINUTE,
        },
        StageUpdate => RetryRule {
            max_attempts: 1,
            transient_exits: &[],
            any_exit: false,
            timeout: 60 * MINUTE,
        },
        // Install-CsDatabase -Update changes only what is behind: a second attempt after a
        // lost connection (SQL Server restarting or failing over) finishes what the first left.
        UpdateDatabases => RetryRule {
            max_attempts: 2,
            transient_exits: &[],
            any_exit: true,
            timeout: 60 * MINUTE,
        },
        CheckAdminRole | Verify => RetryRule {
            max_attempts: 1,
            transient_exits: &[],
            any_exit: false,
            timeout: 15 * MINUTE,
        },
        // `Busy` three times means a pool problem (SPEC.md section 6).
        CheckFabricState => RetryRule {
            max_attempts: 3,
            transient_exits: &[sfbpatch_plan::POOL_BUSY_EXIT],
            any_exit: false,
            timeout: 15 * MINUTE,
        },
        // A refused failover leaves the server in the pool: nothing to retry blind.
        Failover => RetryRule {
            max_attempts: 1,
            transient_exits: &[],
            any_exit: false,
            timeout: 30 * MINUTE,
        },
        Failback => RetryRule {
            max_attempts: 3,
            transient_exits: &[],
            any_exit: true,
            timeout: 30 * MINUTE,
        },
    }
}

/// How long to wait before attempt `attempt + 1` of `step`: a pool that answers `Busy` is
/// asked again after 10 minutes (SPEC.md section 6); everything else backs off
/// ([`backoff`]).
pub fn retry_wait(step: StepId, exit_code: Option<i32>, attempt: u32, salt: &str) -> Millis {
    if step == StepId::CheckFabricState && exit_code == Some(sfbpatch_plan::POOL_BUSY_EXIT) {
        return 10 * MINUTE;
    }
    backoff(attempt, salt)
}

/// Backoff before attempt `attempt + 1`: 30 s doubling, capped at 5 min, with a jitter of up
/// to a fifth derived from `salt` (deterministic, so virtual-time runs repeat exactly).
pub fn backoff(attempt: u32, salt: &str) -> Millis {
    let base = (30_000u64 << attempt.saturating_sub(1).min(10)).min(5 * MINUTE);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in salt.bytes().chain(attempt.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    base + h % (base / 5 + 1)
}

/// Simulated durations the lab uses by default, and the engine's prediction when no earlier
/// run has measured a step.
pub fn default_duration(step: StepId) -> Millis {
    use StepId::*;
    let tenths_of_minutes = match step {
        CheckAdminRole => 1,
        StageUpdate => 40,
        CheckFabricState => 5,
        Failover => 50,
        Failback => 50,
        StopCsServices => 20,
        StopW3svc => 5,
        CloseManagementShells => 2,
        InstallUpdate => 120,
        StopCsServicesGac => 10,
        StartW3svc => 5,
        UpdateDatabases => 60,
        StartCsServices => 30,
        Verify => 10,
    };
    tenths_of_minutes * MINUTE / 10
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b1 = backoff(1, "s");
        assert!((30_000..=36_000).contains(&b1), "{b1}");
        let b2 = backoff(2, "s");
        assert!((60_000..=72_000).contains(&b2), "{b2}");
        let b9 = backoff(9, "s");
        assert!((300_000..=360_000).contains(&b9), "{b9}");
        assert_eq!(backoff(3, "x"), backoff(3, "x"));
    }

    #[test]
    fn default_outage_is_under_the_line() {
        let outage: Millis = StepId::SEED[2..10]
            .iter()
            .map(|s| default_duration(*s))
            .sum();
        assert_eq!(outage, 252 * MINUTE / 10);
        assert!(outage < RESILIENCY_THRESHOLD);
    }
}
