//! The lab as a [`Target`] and a [`Clock`]: every step, probe, reboot and recovery is one
//! SQLite transaction on the shared world (two when the lab runs at a real-time speed: one to
//! start the operation, one to finish it after the wait).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use sfbpatch_engine::{
    Clock, DatabaseState, Fence, MachineFacts, Millis, Probe, ProbeVerdict, ServerLock,
    StepOutcome, StepRequest, Target, TargetError,
};
use sfbpatch_plan::{Action, Installer, Package, ServerKind, ServerPlan, StepId};

use crate::db::{self, Server};
use crate::frontend;
use crate::lab::Shared;
use crate::machine;
use crate::rules::{self, MINUTE};
use crate::steps::{self, apply, probe};

/// One step to carry out or probe, without the rest of a plan: what a separate process (such
/// as `sfbpatch lab shell`) can rebuild from a single request.
#[derive(Debug, Clone, Copy)]
pub struct StepCall<'a> {
    /// The server's FQDN (any ASCII case): faults are the server's.
    pub server: &'a str,
    /// Where the step runs: the server, or the machine the plan runs it on (`run_on`).
    pub host: &'a str,
    pub step: StepId,
    pub action: &'a Action,
    pub package: &'a Package,
    /// How long before a hung step gives up.
    pub timeout: Millis,
    /// The controller making the call, checked against the server's lock.
    pub fence: Option<Fence<'a>>,
}

impl<'a> StepCall<'a> {
    pub fn from_request(req: &StepRequest<'a>) -> Self {
        StepCall {
            server: req.server.fqdn.as_str(),
            host: req.host.as_str(),
            step: req.step.id,
            action: &req.step.action,
            package: req.package,
            timeout: req.timeout,
            fence: Some(req.fence),
        }
    }
}

/// An operation as the server sees it: whose lock guards it, where it runs, what it is
/// called while it runs, and the controller behind it.
#[derive(Debug, Clone, Copy)]
struct OpRef<'a> {
    /// The server whose lock the call must pass.
    locked: i64,
    /// The machine the command runs on.
    host: i64,
    /// The step's name, or `restart` / `recovery`.
    what: &'a str,
    fence: Option<Fence<'a>>,
}

/// Carries out steps on the lab's servers. Cheap to clone; every clone shares one connection.
#[derive(Clone)]
pub struct LabTarget {
    shared: Arc<Shared>,
    /// Whether `stage-update` of a controller file copies it to the server itself (in
    /// process), or finds it there, uploaded over SFTP beforehand (`lab shell` behind sshd).
    uploads: bool,
}

/// The lab's virtual clock, shared by every process that opens the lab.
#[derive(Clone)]
pub struct LabClock {
    shared: Arc<Shared>,
}

/// What the faults decided for one attempt of a step.
#[derive(Debug, Clone)]
enum Disposition {
    Run,
    Exit {
        code: i32,
        fault: i64,
    },
    Hang,
    DiskFull {
        fault: i64,
    },
    /// Another installation runs on the server until then: the installer exits 1618.
    InstallerRunning {
        until: i64,
    },
    /// The SQL Server the step updates is down until then.
    SqlDown {
        sql_server: String,
        until: i64,
    },
    /// The SQL Server fails over during the update.
    SqlFailover {
        fault: i64,
    },
    /// The session is lost after a minute; the installer runs on until `start + minutes`.
    InstallerOutlives {
        fault: i64,
        run_ms: i64,
    },
}

/// A step after its start: what the faults decided, and the server as it was then.
struct Begun {
    disposition: Disposition,
    server: Server,
}

/// The outcome a transaction hands back: a step result, or a target error after committing
/// what the attempt changed (a fault that fired, an unreachable period that began).
type Attempt<T> = Result<T, TargetError>;

struct Started<P> {
    start: i64,
    duration: i64,
    payload: P,
    /// The `running` row while the command runs between two transactions.
    running: Option<i64>,
}

/// When an operation ran (virtual milliseconds), and whether its end runs in the transaction
/// that began it (so what `begin` read is still current).
#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    end: i64,
    same_transaction: bool,
}

struct ActiveFault {
    id: i64,
    idx: i64,
    kind: String,
    value: i64,
    remaining: Option<i64>,
}

impl LabTarget {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        LabTarget {
            shared,
            uploads: true,
        }
    }

    /// The target as a host behind sshd sees it: a controller's installer is not copied by the
    /// step, it must already be at the staging destination (uploaded over SFTP).
    pub fn receiving_uploads(mut self) -> Self {
        self.uploads = false;
        self
    }

    /// The installer `stage-update` stages, as the server gets it: the SHA-256 of the file at
    /// the destination (after copying a controller's file there, when this target uploads),
    /// or why there is none.
    fn staged_hash(
        &self,
        server: &str,
        source: &Installer,
        destination: &str,
    ) -> Option<Result<String, String>> {
        let dir = &self.shared.dir;
        let file = |windows: &str| crate::files::server_file(dir, server, windows);
        Some(match source {
            Installer::Url(_) => return None,
            Installer::Server(path) => file(path).and_then(|p| self.shared.hash_file(&p)),
            Installer::Path(path) => file(destination).and_then(|dest| {
                if self.uploads {
                    upload(Path::new(path), &dest)?;
                }
                self.shared
                    .hash_file(&dest)
                    .map_err(|e| format!("{destination} was not uploaded to the server ({e})"))
            }),
        })
    }

    fn server_id(&self, fqdn: &str) -> Result<i64, TargetError> {
        self.shared.server_id(fqdn).ok_or_else(|| {
            TargetError::Refused(format!(
                "server '{fqdn}' is not part of the lab in {}",
                self.shared.dir.display()
            ))
        })
    }

    fn db_failure(&self, server: &str, e: rusqlite::Error) -> TargetError {
        TargetError::Unreachable {
            server: server.to_string(),
            reason: format!(
                "the lab database {} failed: {e}",
                self.shared.db_path.display()
            ),
        }
    }

    /// Runs an operation that takes simulated time. `begin` reads the world at the start and
    /// says how long the operation takes; `end` applies its effect at `start + duration`. At
    /// speed 0 both run in one transaction; otherwise the real wait happens between two.
    fn timed<P>(
        &self,
        server: &str,
        op: OpRef<'_>,
        begin: impl FnOnce(&Transaction<'_>, i64) -> rusqlite::Result<Attempt<(i64, P)>>,
        end: impl FnOnce(&Transaction<'_>, P, Window) -> rusqlite::Result<Attempt<StepOutcome>>,
    ) -> Result<StepOutcome, TargetError> {
        let shared = &self.shared;
        let ended = std::cell::Cell::new(None);
        // In simulated time the engine orders operations itself: nothing sleeps.
        let speed = if self.shared.event_driven() {
            0.0
        } else {
            self.shared.speed
        };
        let started = |tx: &Transaction<'_>| -> rusqlite::Result<Attempt<Started<P>>> {
            if let Some(refused) = fenced(tx, op)? {
                return Ok(Err(refused));
            }
            let start = shared.op_time(tx)?;
            db::advance_to(tx, start)?;
            let (duration, payload) = match begin(tx, start)? {
                Ok(begun) => begun,
                Err(e) => return Ok(Err(e)),
            };
            // Between two transactions the command runs on the server, for all to see.
            let running = if speed > 0.0 {
                tx.prepare_cached(
                    "INSERT INTO running (server_id, what, pid, start_ms, end_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    op.host,
                    op.what,
                    std::process::id(),
                    start,
                    start.saturating_add(duration)
                ])?;
                Some(tx.last_insert_rowid())
            } else {
                None
            };
            Ok(Ok(Started {
                start,
                duration,
                payload,
                running,
            }))
        };
        let finish = |tx: &Transaction<'_>, s: Started<P>, same_transaction: bool| {
            if let Some(id) = s.running {
                tx.prepare_cached("DELETE FROM running WHERE id = ?1")?
                    .execute([id])?;
            }
            let window = Window {
                start: s.start,
                end: s.start.saturating_add(s.duration),
                same_transaction,
            };
            let outcome = end(tx, s.payload, window)?;
            db::advance_to(tx, window.end)?;
            shared.event_ended(window.end);
            ended.set(Some(window.end));
            Ok(outcome)
        };
        let result = if speed <= 0.0 {
            self.shared.write(|tx| match started(tx)? {
                Ok(s) => finish(tx, s, true),
                Err(e) => Ok(Err(e)),
            })
        } else {
            match self.shared.write(started) {
                Ok(Ok(s)) => {
                    real_sleep(s.duration, speed);
                    self.shared.write(|tx| finish(tx, s, false))
                }
                Ok(Err(e)) => Ok(Err(e)),
                Err(e) => Err(e),
            }
        };
        let mut outcome = result.unwrap_or_else(|e| Err(self.db_failure(server, e)))?;
        outcome.ended_at = ended.get().map(|end| u64::try_from(end).unwrap_or(0));
        Ok(outcome)
    }

    /// Carries out one step on the world.
    pub fn execute_step(&self, call: &StepCall<'_>) -> Result<StepOutcome, TargetError> {
        let fault_id = self.server_id(call.server)?;
        let id = self.server_id(call.host)?;
        check_action(call.step, call.action)?;
        let installer_hash = match call.action {
            Action::StageUpdate {
                source,
                destination,
                ..
            } => self.staged_hash(call.server, source, destination),
            _ => None,
        };
        let has_faults = self
            .shared
            .fault_steps
            .contains(&(fault_id, call.step))
            .then_some(fault_id);
        let shared = &self.shared;
        let op = OpRef {
            locked: fault_id,
            host: id,
            what: call.step.as_str(),
            fence: call.fence,
        };
        self.timed(
            call.host,
            op,
            |tx, now| begin_step(tx, id, call, has_faults, shared.variance, now),
            |tx, begun, window| {
                // After a real-time wait, another process may have changed the server.
                let server = if window.same_transaction {
                    begun.server
                } else {
                    Server::load(tx, id)?
                };
                finish_step(
                    tx,
                    shared,
                    call,
                    begun.disposition,
                    server,
                    installer_hash.as_ref(),
                    window,
                )
            },
        )
    }

    /// Reads the server's state and says whether the step's effect is there. Takes no time.
    pub fn probe_step(&self, call: &StepCall<'_>) -> Result<Probe, TargetError> {
        let id = self.server_id(call.host)?;
        check_action(call.step, call.action)?;
        let initial = self.shared.initial_build;
        let fault_id = self.server_id(call.server)?;
        let shared = &self.shared;
        let what = format!("probe {}", call.step);
        let op = OpRef {
            locked: fault_id,
            host: id,
            what: &what,
            fence: call.fence,
        };
        let running_op = OpRef {
            what: call.step.as_str(),
            ..op
        };
        let read = |tx: &Transaction<'_>| {
            if let Some(refused) = fenced(tx, op)? {
                return Ok(Err(refused));
            }
            let now = shared.op_time(tx)?;
            let server = Server::load(tx, id)?;
            if let Some(until) = server.unreachable_at(now) {
                return Ok(Err(unreachable(&server, until, now)));
            }
            if let Some((pid, start, end)) = running(tx, running_op)? {
                return Ok(Ok(Probe {
                    verdict: ProbeVerdict::Running,
                    facts: format!(
                        "{} is still running on {} (lab process {pid}, since {:.1} min, \
                         due to end at {:.1} min on the lab clock)",
                        call.step,
                        server.fqdn,
                        start as f64 / MINUTE as f64,
                        end as f64 / MINUTE as f64
                    ),
                }));
            }
            if let Some(f) = active_faults(tx, fault_id, call.step)?
                .iter()
                .find(|f| f.kind == "probe_fails")
            {
                fire(tx, f)?;
                return Ok(Err(TargetError::ReadFailed {
                    server: server.fqdn.clone(),
                    reason: format!(
                        "Get-CsWindowsService : The RPC server is unavailable. (lab fault {}: \
                         the probe of {} could not read the server)",
                        f.idx, call.step
                    ),
                }));
            }
            probe(tx, call, &server, initial, now).map(Ok)
        };
        // A probe that fires a fault, or that the server logs (a controller's), writes.
        let result =
            if call.fence.is_some() || self.shared.fault_steps.contains(&(fault_id, call.step)) {
                self.shared.write(read)
            } else {
                self.shared.read(read)
            };
        result.map_err(|e| self.db_failure(call.server, e))?
    }

    /// Restarts a server: takes 5 simulated minutes, clears a pending reboot, and starts
    /// W3SVC and the Skype for Business services on the installed build.
    ///
    /// A `restart_minutes` fault makes the restart take that long; past `timeout` the call
    /// answers `TimedOut` and the server is unreachable until the restart ends.
    pub fn reboot_server(&self, fqdn: &str, timeout: Millis) -> Result<StepOutcome, TargetError> {
        self.reboot_as(fqdn, timeout, None)
    }

    /// [`LabTarget::reboot_server`] for a controller, whose fence the server's lock checks.
    pub fn reboot_as(
        &self,
        fqdn: &str,
        timeout: Millis,
        fence: Option<Fence<'_>>,
    ) -> Result<StepOutcome, TargetError> {
        let id = self.server_id(fqdn)?;
        let op = OpRef {
            locked: id,
            host: id,
            what: "restart",
            fence,
        };
        self.timed(
            fqdn,
            op,
            |tx, now| {
                let server = Server::load(tx, id)?;
                if let Some(until) = server.unreachable_at(now) {
                    return Ok(Err(unreachable(&server, until, now)));
                }
                if let Some(until) = server.installer_running_at(now) {
                    return Ok(Ok((
                        0,
                        Operation::Refused(installer_busy(&server, until, now)),
                    )));
                }
                let slow = machine_fault(tx, id, "restart")?;
                Ok(Ok(timed_operation(
                    db::ms(rules::REBOOT_DURATION),
                    slow,
                    timeout,
                )))
            },
            |tx, operation, window| {
                let mut server = Server::load(tx, id)?;
                let hung = match operation {
                    Operation::Refused(message) => {
                        return Ok(Ok(StepOutcome::exit(
                            1,
                            format!("Restart-Computer: not restarted: {message}"),
                        )));
                    }
                    Operation::Hung { lasts } => Some(window.start.saturating_add(lasts)),
                    Operation::Run => None,
                };
                let before = server.clone();
                let was_pending = server.reboot_pending;
                server.reboot_pending = false;
                server.previous = server.installed;
                server.open_shells = 0;
                server.w3svc = server.w3svc_present;
                // Services disabled by failover do not start with Windows.
                let started = if server.failed_over {
                    0
                } else {
                    for s in &mut server.services {
                        s.running = true;
                        s.loaded = server.installed;
                    }
                    server.services.len()
                };
                if let Some(until) = hung {
                    return hang_until(tx, server, &before, window, until, "restart", timeout);
                }
                settle(tx, &mut server, &before, window)?;
                Ok(Ok(StepOutcome::ok(format!(
                    "{} restarted{}; W3SVC and {started} services started on build {}",
                    server.fqdn,
                    if was_pending {
                        " (the pending restart is done)"
                    } else {
                        ""
                    },
                    server.installed
                ))))
            },
        )
    }

    /// After a failure: starts W3SVC, and starts (or restarts, when they run on old
    /// assemblies) the Skype for Business services unless a restart is pending. Exit 0 when
    /// the server is back in service, 1 otherwise (the output says why).
    ///
    /// A `recovery_minutes` fault makes it take that long; past `timeout` the call answers
    /// `TimedOut` and the server is unreachable until the recovery ends.
    pub fn recover_server(&self, fqdn: &str, timeout: Millis) -> Result<StepOutcome, TargetError> {
        self.recover_as(fqdn, timeout, None)
    }

    /// [`LabTarget::recover_server`] for a controller, whose fence the server's lock checks.
    pub fn recover_as(
        &self,
        fqdn: &str,
        timeout: Millis,
        fence: Option<Fence<'_>>,
    ) -> Result<StepOutcome, TargetError> {
        let id = self.server_id(fqdn)?;
        let op = OpRef {
            locked: id,
            host: id,
            what: "recovery",
            fence,
        };
        self.timed(
            fqdn,
            op,
            |tx, now| {
                let server = Server::load(tx, id)?;
                if let Some(until) = server.unreachable_at(now) {
                    return Ok(Err(unreachable(&server, until, now)));
                }
                if let Some(until) = server.installer_running_at(now) {
                    return Ok(Ok((
                        0,
                        Operation::Refused(installer_busy(&server, until, now)),
                    )));
                }
                let slow = machine_fault(tx, id, "recovery")?;
                let mut duration = 0;
                if !server.w3svc && server.w3svc_present {
                    duration += rules::RECOVER_W3SVC_DURATION;
                }
                if server.failed_over && !server.reboot_pending {
                    duration += rules::step_duration(StepId::Failback);
                }
                let files = server.files_build();
                if !server.reboot_pending
                    && !server.failed_over
                    && server
                        .services
                        .iter()
                        .any(|s| !s.running || s.loaded != files)
                {
                    duration += rules::RECOVER_SERVICES_DURATION;
                }
                Ok(Ok(timed_operation(db::ms(duration), slow, timeout)))
            },
            |tx, operation, window| {
                let mut server = Server::load(tx, id)?;
                let hung = match operation {
                    Operation::Refused(message) => {
                        return Ok(Ok(StepOutcome::exit(
                            1,
                            format!(
                                "nothing done: {message}; {} is still out of service",
                                server.fqdn
                            ),
                        )));
                    }
                    Operation::Hung { lasts } => Some(window.start.saturating_add(lasts)),
                    Operation::Run => None,
                };
                let before = server.clone();
                let mut done = Vec::new();
                if !server.w3svc && server.w3svc_present {
                    server.w3svc = true;
                    done.push("started W3SVC".to_string());
                }
                if server.reboot_pending {
                    done.push(format!(
                        "left the services as they are: a restart is pending (installer exit 3010) \
                         and build {} loads only after it",
                        server.installed
                    ));
                    if server.failed_over {
                        done.push(format!(
                            "left failed over: {} must restart first, so its users stay on the \
                             pool's other Front End servers",
                            server.fqdn
                        ));
                    }
                } else if server.failed_over {
                    // Its services are disabled: failback enables and starts them, and returns
                    // the server to its pool.
                    let started = server.start_services();
                    server.failed_over = false;
                    done.push(format!(
                        "Invoke-CsComputerFailBack -ComputerName {}: started {} services on build \
                         {}; returned to its pool",
                        server.fqdn,
                        started.len(),
                        server.files_build()
                    ));
                } else {
                    let files = server.files_build();
                    let mut restarted = Vec::new();
                    for s in server.services.iter_mut() {
                        if s.running && s.loaded != files {
                            s.loaded = files;
                            restarted.push(s.name.clone());
                        }
                    }
                    if !restarted.is_empty() {
                        done.push(format!(
                            "restarted {} services that ran on old assemblies: {}",
                            restarted.len(),
                            restarted.join(", ")
                        ));
                    }
                    let started = server.start_services();
                    if !started.is_empty() {
                        done.push(format!(
                            "started {} services on build {}: {}",
                            started.len(),
                            files,
                            started.join(", ")
                        ));
                    }
                }
                if let Some(until) = hung {
                    return hang_until(tx, server, &before, window, until, "recovery", timeout);
                }
                settle(tx, &mut server, &before, window)?;
                if done.is_empty() {
                    done.push("nothing to do: W3SVC and every service were running".to_string());
                }
                let (exit_code, state) = if server.in_service {
                    (0, "back in service")
                } else {
                    (1, "still out of service")
                };
                Ok(Ok(StepOutcome::exit(
                    exit_code,
                    format!("{}; {} is {state}", done.join("; "), server.fqdn),
                )))
            },
        )
    }
}

thread_local! {
    /// The engine's time for the call this thread carries out (see [`Shared::op_time`]).
    pub(crate) static REQUESTED_AT: std::cell::Cell<Option<i64>> =
        const { std::cell::Cell::new(None) };
}

/// The refusal of a call whose controller is older than the one the server's lock names.
/// Every call of a controller is logged on the machine it runs on, refused or not.
fn fenced(tx: &Connection, op: OpRef<'_>) -> rusqlite::Result<Option<TargetError>> {
    let Some(fence) = op.fence else {
        return Ok(None);
    };
    let current: Option<i64> = tx
        .prepare_cached("SELECT generation FROM server_locks WHERE server_id = ?1 AND holder = ?2")?
        .query_row(params![op.locked, fence.holder], |r| r.get(0))
        .optional()?;
    let current = current.map_or(0, |g| u64::try_from(g).unwrap_or(0));
    let refused = current > fence.generation;
    tx.prepare_cached(
        "INSERT INTO command_log (server_id, what, holder, generation, at_ms, refused)
         VALUES (?1, ?2, ?3, ?4, (SELECT now_ms FROM lab), ?5)",
    )?
    .execute(params![
        op.host,
        op.what,
        fence.holder,
        i64::try_from(fence.generation).unwrap_or(i64::MAX),
        refused
    ])?;
    if !refused {
        return Ok(None);
    }
    let server: String = tx
        .prepare_cached("SELECT fqdn FROM servers WHERE id = ?1")?
        .query_row([op.locked], |r| r.get(0))?;
    Ok(Some(TargetError::Fenced {
        server,
        held: fence.generation,
        current,
    }))
}

/// The command `op` names while it runs on its machine, started by a lab process that still
/// carries it: (pid, start, end). Rows of processes that are gone are ignored: the command
/// died with its session.
fn running(tx: &Connection, op: OpRef<'_>) -> rusqlite::Result<Option<(u32, i64, i64)>> {
    let rows: Vec<(i64, u32, i64, i64)> = tx
        .prepare_cached(
            "SELECT id, pid, start_ms, end_ms FROM running WHERE server_id = ?1 AND what = ?2",
        )?
        .query_map(params![op.host, op.what], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows
        .into_iter()
        .find(|&(_, pid, _, _)| crate::process::process_alive(pid))
        .map(|(_, pid, start, end)| (pid, start, end)))
}

/// Runs `f` with the request's time as the time its operation starts.
fn at_request<T>(req: &StepRequest<'_>, f: impl FnOnce() -> T) -> T {
    REQUESTED_AT.with(|at| at.set(Some(db::ms(req.at))));
    let value = f();
    REQUESTED_AT.with(|at| at.set(None));
    value
}

fn real_sleep(duration: i64, speed: f64) {
    if duration > 0 && speed > 0.0 {
        let seconds = duration as f64 / 1000.0 / speed;
        if seconds.is_finite() {
            std::thread::sleep(Duration::from_secs_f64(seconds));
        }
    }
}

/// A restart or recovery that outlasted its call: the server does not answer, and counts as
/// back in service only, until `until`.
fn hang_until(
    tx: &Transaction<'_>,
    mut server: Server,
    before: &Server,
    window: Window,
    until: i64,
    operation: &str,
    timeout: Millis,
) -> rusqlite::Result<Attempt<StepOutcome>> {
    server.unreachable_until = Some(until);
    let window = Window {
        end: until,
        ..window
    };
    settle(tx, &mut server, before, window)?;
    Ok(Err(TargetError::TimedOut {
        server: server.fqdn.clone(),
        step: operation.to_string(),
        after_ms: timeout,
    }))
}

/// A restart or recovery as its start decided it.
enum Operation {
    Run,
    /// It takes longer than the call's timeout: the server comes back `lasts` after its start.
    Hung {
        lasts: i64,
    },
    /// It cannot start (an installation is in progress).
    Refused(String),
}

/// The duration and kind of a restart or recovery that usually takes `usual`, unless a
/// machine fault (already fired) makes it take `slow`: past `timeout` it hangs.
fn timed_operation(usual: i64, slow: Option<i64>, timeout: Millis) -> (i64, Operation) {
    let Some(slow) = slow else {
        return (usual, Operation::Run);
    };
    let timeout = db::ms(timeout);
    if slow > timeout {
        (timeout, Operation::Hung { lasts: slow })
    } else {
        (slow, Operation::Run)
    }
}

/// Fires the machine fault `kind` of server `id` if it is active: its milliseconds.
fn machine_fault(tx: &Connection, id: i64, kind: &str) -> rusqlite::Result<Option<i64>> {
    let fault = tx
        .prepare_cached(
            "SELECT id, idx, kind, value, remaining FROM faults
             WHERE server_id = ?1 AND step = ?2 AND kind = ?3
               AND (remaining IS NULL OR remaining > 0)
             ORDER BY idx LIMIT 1",
        )?
        .query_row(params![id, crate::lab::MACHINE_STEP, kind], |r| {
            Ok(ActiveFault {
                id: r.get(0)?,
                idx: r.get(1)?,
                kind: r.get(2)?,
                value: r.get(3)?,
                remaining: r.get(4)?,
            })
        })
        .optional()?;
    match fault {
        Some(f) => {
            fire(tx, &f)?;
            Ok(Some(f.value))
        }
        None => Ok(None),
    }
}

fn installer_busy(server: &Server, until: i64, now: i64) -> String {
    format!(
        "another installation is in progress on {} (SkypeServerUpdateInstaller.exe runs {:.1} \
         more simulated minutes)",
        server.fqdn,
        (until - now) as f64 / MINUTE as f64
    )
}

fn unreachable(server: &Server, until: i64, now: i64) -> TargetError {
    TargetError::Unreachable {
        server: server.fqdn.clone(),
        reason: format!(
            "no answer (the lab's fault plan keeps it unreachable for {:.1} more simulated minutes)",
            (until - now) as f64 / MINUTE as f64
        ),
    }
}

/// Whether `action` is the typed form of `step`.
fn check_action(step: StepId, action: &Action) -> Result<(), TargetError> {
    let fits = matches!(
        (step, action),
        (StepId::CheckAdminRole, Action::CheckAdminRole)
            | (StepId::CheckFabricState, Action::CheckFabricState { .. })
            | (StepId::Failover, Action::Failover { .. })
            | (StepId::Failback, Action::Failback { .. })
            | (StepId::StageUpdate, Action::StageUpdate { .. })
            | (
                StepId::StopCsServices | StepId::StopCsServicesGac,
                Action::StopCsServices
            )
            | (StepId::StopW3svc, Action::StopW3svc)
            | (StepId::CloseManagementShells, Action::CloseManagementShells)
            | (StepId::InstallUpdate, Action::InstallUpdate { .. })
            | (StepId::StartW3svc, Action::StartW3svc)
            | (
                StepId::UpdateDatabases,
                Action::UpdateConfiguredDatabases { .. }
                    | Action::UpdateLocalDatabases
                    | Action::DatabasesUpdatedBy { .. }
            )
            | (StepId::StartCsServices, Action::StartCsServices)
            | (StepId::Verify, Action::Verify { .. })
    );
    if fits {
        Ok(())
    } else {
        Err(TargetError::Refused(format!(
            "step {step} cannot carry the action {action:?}"
        )))
    }
}

/// How long a step takes without a fault that says otherwise: the table's time, or with
/// variance (`variance`, the lab's seed) the server's own.
fn default_duration(call: &StepCall<'_>, variance: Option<u64>) -> i64 {
    match (call.action, variance) {
        (Action::DatabasesUpdatedBy { .. }, _) => 0,
        (_, None) => db::ms(rules::step_duration(call.step)),
        (_, Some(seed)) => db::ms(rules::varied_step_duration(
            seed,
            &call.server.to_ascii_lowercase(),
            call.step,
        )),
    }
}

fn active_faults(
    tx: &Connection,
    server_id: i64,
    step: StepId,
) -> rusqlite::Result<Vec<ActiveFault>> {
    let mut stmt = tx.prepare_cached(
        "SELECT id, idx, kind, value, remaining FROM faults
         WHERE server_id = ?1 AND step = ?2 AND (remaining IS NULL OR remaining > 0)
         ORDER BY idx",
    )?;
    stmt.query_map(params![server_id, step.as_str()], |r| {
        Ok(ActiveFault {
            id: r.get(0)?,
            idx: r.get(1)?,
            kind: r.get(2)?,
            value: r.get(3)?,
            remaining: r.get(4)?,
        })
    })?
    .collect()
}

fn fire(tx: &Connection, fault: &ActiveFault) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE faults SET remaining = ?2, fired = fired + 1 WHERE id = ?1")?
        .execute(params![fault.id, fault.remaining.map(|r| r - 1)])?;
    Ok(())
}

/// The start of a step: reachability, then the faults for this attempt.
fn begin_step(
    tx: &Transaction<'_>,
    id: i64,
    call: &StepCall<'_>,
    fault_server: Option<i64>,
    variance: Option<u64>,
    now: i64,
) -> rusqlite::Result<Attempt<(i64, Begun)>> {
    let mut server = Server::load(tx, id)?;
    if let Some(until) = server.unreachable_at(now) {
        return Ok(Err(unreachable(&server, until, now)));
    }
    let mut duration = default_duration(call, variance);
    let mut disposition = Disposition::Run;
    // Windows Installer runs one installation at a time.
    if call.step == StepId::InstallUpdate
        && let Some(until) = server.installer_running_at(now)
    {
        return Ok(Ok((
            db::ms(rules::INSTALLER_BUSY_DURATION),
            Begun {
                disposition: Disposition::InstallerRunning { until },
                server,
            },
        )));
    }
    if let Some(fault_server) = fault_server {
        let before = server.clone();
        let faults = active_faults(tx, fault_server, call.step)?;
        let find = |kind: &str| faults.iter().find(|f| f.kind == kind);
        if let Some(f) = find("unreachable") {
            fire(tx, f)?;
            let until = now.saturating_add(f.value);
            server.unreachable_until = Some(until);
            server.save(tx, &before)?;
            return Ok(Err(unreachable(&server, until, now)));
        }
        if let Some(f) = find("open_shells") {
            fire(tx, f)?;
            server.open_shells += f.value;
        }
        if let Some(f) = find("hang") {
            fire(tx, f)?;
            disposition = Disposition::Hang;
            duration = db::ms(call.timeout);
        } else {
            if let Some(f) = find("exit_code") {
                fire(tx, f)?;
                let code = i32::try_from(f.value).unwrap_or(1);
                // Windows Installer refuses at once when another installation runs.
                if call.step == StepId::InstallUpdate && code == 1618 {
                    duration = db::ms(rules::INSTALLER_BUSY_DURATION);
                }
                disposition = Disposition::Exit { code, fault: f.idx };
            } else if let Some(f) = find("disk_full") {
                fire(tx, f)?;
                disposition = Disposition::DiskFull { fault: f.idx };
            } else if let Some(f) = find("sql_failover") {
                fire(tx, f)?;
                disposition = Disposition::SqlFailover { fault: f.idx };
            } else if let Some(f) = find("installer_outlives") {
                fire(tx, f)?;
                disposition = Disposition::InstallerOutlives {
                    fault: f.idx,
                    run_ms: f.value,
                };
                duration = db::ms(MINUTE).min(f.value);
            }
            if let Some(f) = find("sql_down") {
                fire(tx, f)?;
                if let Some(sql) = steps::updated_sql_server(tx, call.action, &server)? {
                    let until = now.saturating_add(f.value);
                    db::set_sql_down(tx, &sql, until)?;
                    db::record_backend_outage(tx, &sql, now, until)?;
                }
            }
            if let Some(f) = find("duration") {
                fire(tx, f)?;
                duration = f.value;
            }
        }
        server.save(tx, &before)?;
    }
    // Install-CsDatabase cannot connect to a SQL Server that is down.
    if call.step == StepId::UpdateDatabases
        && matches!(
            disposition,
            Disposition::Run | Disposition::SqlFailover { .. }
        )
        && let Some(sql) = steps::updated_sql_server(tx, call.action, &server)?
        && let Some(until) = db::sql_down_until(tx, &sql, now)?
    {
        return Ok(Ok((
            db::ms(rules::SQL_CONNECT_TIMEOUT),
            Begun {
                disposition: Disposition::SqlDown {
                    sql_server: sql,
                    until,
                },
                server,
            },
        )));
    }
    // Reset-CsPoolRegistrarState runs first when the fabric shows missing replicas.
    if let (
        Disposition::Run,
        Action::CheckFabricState {
            reset_missing_replicas: true,
            ..
        },
        Some(pool),
    ) = (&disposition, call.action, server.pool_id)
        && frontend::missing_replicas(tx, pool)?
    {
        duration += db::ms(rules::RESET_REGISTRAR_STATE_DURATION);
    }
    Ok(Ok((
        duration,
        Begun {
            disposition,
            server,
        },
    )))
}

/// The end of a step: its effect (unless a fault took its place), the server's service
/// transitions, and the outcome.
fn finish_step(
    tx: &Transaction<'_>,
    shared: &Shared,
    call: &StepCall<'_>,
    disposition: Disposition,
    mut server: Server,
    installer_hash: Option<&Result<String, String>>,
    window: Window,
) -> rusqlite::Result<Attempt<StepOutcome>> {
    let before = server.clone();
    let held = matches!(
        disposition,
        Disposition::Hang | Disposition::SqlFailover { .. }
    );
    let ran = matches!(disposition, Disposition::Run);
    let outcome = match disposition {
        Disposition::Hang => Err(TargetError::TimedOut {
            server: server.fqdn.clone(),
            step: call.step.as_str().to_string(),
            after_ms: call.timeout,
        }),
        Disposition::Exit { code, fault }
            if call.step == StepId::CheckFabricState && code == sfbpatch_plan::POOL_BUSY_EXIT =>
        {
            Ok(StepOutcome::exit(
                code,
                format!(
                    "PoolUpgradeState: Busy (lab fault {fault}): the pool is still moving routing \
                     groups; ask again in 10 minutes"
                ),
            ))
        }
        Disposition::Exit { code, fault }
            if !(call.step == StepId::InstallUpdate && code == 3010) =>
        {
            Ok(StepOutcome::exit(
                code,
                format!(
                    "{} failed with exit code {code} (lab fault {fault}); nothing changed",
                    call.step
                ),
            ))
        }
        Disposition::DiskFull { fault } if call.step == StepId::InstallUpdate => {
            Ok(StepOutcome::exit(
                1603,
                format!(
                    "SkypeServerUpdateInstaller: Error 1603: There is not enough space on the disk \
                 (lab fault {fault}); the installation was rolled back: build {} stays \
                 installed. Free space on the system drive (the log is in %TEMP% on the \
                 server)",
                    server.installed
                ),
            ))
        }
        Disposition::DiskFull { fault } => Ok(StepOutcome::exit(
            112,
            format!(
                "There is not enough space on the disk (lab fault {fault}): the installer was \
                 not staged; nothing else changed"
            ),
        )),
        Disposition::InstallerRunning { until } => Ok(StepOutcome::exit(
            1618,
            format!(
                "SkypeServerUpdateInstaller: Error 1618: Another installation is already in \
                 progress. Complete that installation before proceeding with this install. \
                 ({})",
                installer_busy(&server, until, window.end)
            ),
        )),
        Disposition::SqlDown { sql_server, until } => Ok(StepOutcome::exit(
            1,
            format!(
                "Install-CsDatabase : A network-related or instance-specific error occurred \
                 while establishing a connection to SQL Server {sql_server}. The server was not \
                 found or was not accessible. (lab fault: SQL Server is down for {:.1} more \
                 simulated minutes); nothing changed",
                (until - window.end).max(0) as f64 / MINUTE as f64
            ),
        )),
        Disposition::SqlFailover { fault } => {
            let updated = steps::update_first_behind(tx, call.action, &server)?;
            let rest = match updated {
                Some(db) => format!("; {db} was updated before the failover, the rest was not"),
                None => "; nothing changed".to_string(),
            };
            Ok(StepOutcome::exit(
                1,
                format!(
                    "Install-CsDatabase : A transport-level error has occurred when receiving \
                     results from the server. (lab fault {fault}: SQL Server failed over to its \
                     partner in the middle of the update){rest}"
                ),
            ))
        }
        Disposition::InstallerOutlives { fault, run_ms } => {
            let outcome = apply(tx, shared, call, &mut server, installer_hash, false)?;
            if outcome.exit_code == 0 {
                server.installer_until = Some(window.start.saturating_add(run_ms));
                Err(TargetError::Unreachable {
                    server: server.fqdn.clone(),
                    reason: format!(
                        "the session was lost after {:.1} minutes while \
                         SkypeServerUpdateInstaller.exe ran (lab fault {fault}: the installer \
                         keeps running on the server); the outcome is unknown",
                        (window.end - window.start) as f64 / MINUTE as f64
                    ),
                })
            } else {
                Ok(outcome)
            }
        }
        // Exit 3010 from the installer: the update is applied and a restart is pending.
        Disposition::Exit { .. } => Ok(apply(tx, shared, call, &mut server, installer_hash, true)?),
        Disposition::Run => Ok(apply(tx, shared, call, &mut server, installer_hash, false)?),
    };
    // The back end is unavailable to its pools while Install-CsDatabase updates it.
    // A hung update holds the databases too, until it is given up.
    let held = held || (ran && outcome.as_ref().is_ok_and(|o| o.exit_code == 0));
    if held {
        match call.action {
            Action::UpdateConfiguredDatabases {
                sql_server_fqdn, ..
            } => db::record_backend_outage(tx, sql_server_fqdn.as_str(), window.start, window.end)?,
            Action::UpdateLocalDatabases if server.kind == ServerKind::StandardEdition => {
                let own = db::instance_by_id(tx, server.backend_id)?;
                db::record_backend_outage(tx, &own.sql_server_fqdn, window.start, window.end)?
            }
            _ => {}
        }
    }
    settle(tx, &mut server, &before, window)?;
    Ok(outcome)
}

/// Saves the server and, when it entered or left service, records when: leaving counts from
/// the start of the operation, coming back from its end.
fn settle(
    tx: &Transaction<'_>,
    server: &mut Server,
    before: &Server,
    window: Window,
) -> rusqlite::Result<()> {
    let in_service = server.consistent();
    let changed = in_service != server.in_service;
    server.in_service = in_service;
    server.save(tx, before)?;
    if changed {
        let at = if in_service { window.end } else { window.start };
        db::record_transition(tx, server.id, in_service, at)?;
    }
    if let Some(pool) = server.pool_id
        && server != before
    {
        // Leaving the pool's active servers counts from the start of the operation, joining
        // them from its end (services the installer restarts run from the installer's end).
        let at = match (frontend::is_active(before), frontend::is_active(server)) {
            (false, true) => window.end,
            (true, false) => window.start,
            _ if in_service => window.end,
            _ => window.start,
        };
        frontend::record_pool_state(tx, pool, at)?;
    }
    Ok(())
}

impl Target for LabTarget {
    fn kind(&self) -> &'static str {
        "lab"
    }

    fn execute(&self, req: &StepRequest<'_>) -> Result<StepOutcome, TargetError> {
        at_request(req, || self.execute_step(&StepCall::from_request(req)))
    }

    fn probe(&self, req: &StepRequest<'_>) -> Result<Probe, TargetError> {
        at_request(req, || self.probe_step(&StepCall::from_request(req)))
    }

    fn reboot(&self, req: &StepRequest<'_>) -> Result<StepOutcome, TargetError> {
        at_request(req, || {
            self.reboot_as(req.server.fqdn.as_str(), req.timeout, Some(req.fence))
        })
    }

    fn recover(&self, req: &StepRequest<'_>) -> Result<StepOutcome, TargetError> {
        at_request(req, || {
            self.recover_as(req.server.fqdn.as_str(), req.timeout, Some(req.fence))
        })
    }

    fn keeps_own_time(&self) -> bool {
        true
    }

    /// The lab commits its world with `synchronous = NORMAL` (`db::connect`).
    fn durability(&self) -> sfbpatch_engine::Durability {
        sfbpatch_engine::Durability::ProcessCrash
    }

    fn preflight(&self, server: &ServerPlan) -> Result<MachineFacts, TargetError> {
        self.preflight_server(server.fqdn.as_str())
    }

    fn lock_server(
        &self,
        server: &ServerPlan,
        fence: Fence<'_>,
        now_ms: Millis,
        until_ms: Millis,
    ) -> Result<Option<ServerLock>, TargetError> {
        self.lock(server.fqdn.as_str(), fence, now_ms, until_ms)
    }

    fn unlock_server(&self, server: &ServerPlan, holder: &str) -> Result<(), TargetError> {
        self.unlock(server.fqdn.as_str(), holder)
    }

    /// Every database of the lab with its installed and expected version.
    fn databases(
        &self,
        _plan: &sfbpatch_plan::Plan,
    ) -> Result<Option<Vec<DatabaseState>>, TargetError> {
        let initial = self.shared.initial_build;
        let world = self
            .shared
            .read(|tx| crate::lab::snapshot(tx, initial))
            .map_err(|e| self.db_failure("(every SQL Server)", e))?;
        Ok(Some(
            world
                .sql_instances
                .into_iter()
                .flat_map(|i| {
                    let (server, instance) = (i.sql_server_fqdn, i.instance);
                    i.stores.into_iter().map(move |d| DatabaseState {
                        sql_server_fqdn: server.clone(),
                        sql_instance: instance.clone(),
                        store: d.store.as_str().to_string(),
                        database: d.database,
                        installed_version: d.version,
                        expected_version: d.expected_version,
                    })
                })
                .collect(),
        ))
    }
}

impl LabTarget {
    /// Takes the lock `fqdn` keeps for its controller, unless another holder's lock has not
    /// expired (returns that lock then) or the same holder's shows a newer generation
    /// ([`TargetError::Fenced`]). The lock keeps the taker's generation.
    pub fn lock(
        &self,
        fqdn: &str,
        fence: Fence<'_>,
        now_ms: Millis,
        until_ms: Millis,
    ) -> Result<Option<ServerLock>, TargetError> {
        let id = self.server_id(fqdn)?;
        let (now, until) = (db::ms(now_ms), db::ms(until_ms));
        let op = OpRef {
            locked: id,
            host: id,
            what: "lock",
            fence: Some(fence),
        };
        self.shared
            .write(|tx| {
                if let Some(refused) = fenced(tx, op)? {
                    return Ok(Err(refused));
                }
                let held: Option<(String, i64, i64)> = tx
                    .prepare_cached(
                        "SELECT holder, generation, expires_at FROM server_locks
                         WHERE server_id = ?1",
                    )?
                    .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?;
                if let Some((other, generation, expires)) = held
                    && other != fence.holder
                    && expires > now
                {
                    return Ok(Ok(Some(ServerLock {
                        holder: other,
                        generation: u64::try_from(generation).unwrap_or(0),
                        expires_at: u64::try_from(expires).unwrap_or(0),
                    })));
                }
                tx.prepare_cached(
                    "INSERT INTO server_locks (server_id, holder, generation, expires_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (server_id) DO UPDATE SET holder = ?2, generation = ?3,
                     expires_at = ?4",
                )?
                .execute(params![
                    id,
                    fence.holder,
                    i64::try_from(fence.generation).unwrap_or(i64::MAX),
                    until
                ])?;
                Ok(Ok(None))
            })
            .map_err(|e| self.db_failure(fqdn, e))?
    }

    /// Removes `holder`'s lock from `fqdn`.
    pub fn unlock(&self, fqdn: &str, holder: &str) -> Result<(), TargetError> {
        let id = self.server_id(fqdn)?;
        self.shared
            .write(|tx| {
                tx.prepare_cached("DELETE FROM server_locks WHERE server_id = ?1 AND holder = ?2")?
                    .execute(params![id, holder])?;
                Ok(())
            })
            .map_err(|e| self.db_failure(fqdn, e))
    }

    /// The lock `fqdn` keeps for its controller, if any (expired or not), read without
    /// changing anything.
    pub fn lock_holder(&self, fqdn: &str) -> Result<Option<ServerLock>, TargetError> {
        let id = self.server_id(fqdn)?;
        self.shared
            .read(|tx| {
                tx.prepare_cached(
                    "SELECT holder, generation, expires_at FROM server_locks
                     WHERE server_id = ?1",
                )?
                .query_row([id], |r| {
                    Ok(ServerLock {
                        holder: r.get(0)?,
                        generation: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                        expires_at: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                    })
                })
                .optional()
            })
            .map_err(|e| self.db_failure(fqdn, e))
    }

    /// What a machine runs, read without changing anything. Takes no time.
    pub fn preflight_server(&self, fqdn: &str) -> Result<MachineFacts, TargetError> {
        let id = self.server_id(fqdn)?;
        let shared = &self.shared;
        let result = self.shared.read(|tx| {
            let now = shared.op_time(tx)?;
            let server = Server::load(tx, id)?;
            if let Some(until) = server.unreachable_at(now) {
                return Ok(Err(unreachable(&server, until, now)));
            }
            Ok(Ok(machine::facts(&server)))
        });
        result.map_err(|e| self.db_failure(fqdn, e))?
    }
}

impl LabClock {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        LabClock { shared }
    }
}

impl Clock for LabClock {
    /// Simulated time at speed 0; at a real-time speed the world's time runs with the wall
    /// clock and the engine runs servers on threads, each operation sleeping its share.
    fn is_virtual(&self) -> bool {
        self.shared.speed <= 0.0
    }

    fn set(&self, at: Millis) {
        self.shared.set_event(at);
    }

    /// The engine's current event (simulated time), or the world's time. If the lab database
    /// cannot be read, the last value this process read.
    fn now(&self) -> Millis {
        self.shared
            .now()
            .unwrap_or_else(|_| self.shared.last_now.load(Ordering::Relaxed))
    }

    fn real_duration(&self, duration: Millis) -> Duration {
        let speed = self.shared.speed;
        if speed > 0.0 {
            Duration::from_secs_f64(duration as f64 / 1000.0 / speed)
        } else {
            Duration::ZERO
        }
    }

    /// Lets `duration` pass: in simulated time the engine's event moves on; at a real-time
    /// speed, after sleeping `duration / speed`. The world's clock never goes back.
    fn sleep(&self, duration: Millis) {
        let d = db::ms(duration);
        if self.shared.speed > 0.0 {
            real_sleep(d, self.shared.speed);
        }
        let start = db::ms(self.now());
        let end = start.saturating_add(if self.shared.speed > 0.0 { 0 } else { d });
        self.shared.event_ended(end);
        if let Ok(now) = self.shared.write(|tx| db::advance_to(tx, end)) {
            self.shared
                .last_now
                .fetch_max(u64::try_from(now).unwrap_or(0), Ordering::Relaxed);
        }
    }
}

/// The lab's stand-in for sending a controller's file to a server: a copy into the server's
/// files.
fn upload(from: &Path, to: &Path) -> Result<(), String> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("cannot upload {}: {e}", from.display()))
}
