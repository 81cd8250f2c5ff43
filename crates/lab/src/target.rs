//! The lab as a [`Target`] and a [`Clock`]: every step, probe, reboot and recovery is one
//! SQLite transaction on the shared world (two when the lab runs at a real-time speed: one to
//! start the operation, one to finish it after the wait).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::json;
use sfbpatch_engine::{
    Clock, DatabaseState, MachineFacts, Millis, Probe, ProbeVerdict, ServerLock, StepOutcome,
    StepRequest, Target, TargetError,
};
use sfbpatch_plan::{Action, Build, Installer, Package, ServerKind, ServerPlan, StepId};

use crate::db::{self, BuildCol, Server};
use crate::frontend;
use crate::lab::Shared;
use crate::machine::{self, Missing};
use crate::rules::{self, MINUTE};

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
        }
    }
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
#[derive(Debug, Clone, Copy)]
enum Disposition {
    Run,
    Exit { code: i32, fault: i64 },
    Hang,
    DiskFull { fault: i64 },
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
        begin: impl FnOnce(&Transaction<'_>, i64) -> rusqlite::Result<Attempt<(i64, P)>>,
        end: impl FnOnce(&Transaction<'_>, P, Window) -> rusqlite::Result<Attempt<StepOutcome>>,
    ) -> Result<StepOutcome, TargetError> {
        let started = |tx: &Transaction<'_>| -> rusqlite::Result<Attempt<Started<P>>> {
            let start = db::now(tx)?;
            Ok(begin(tx, start)?.map(|(duration, payload)| Started {
                start,
                duration,
                payload,
            }))
        };
        let finish = |tx: &Transaction<'_>, s: Started<P>, same_transaction: bool| {
            let window = Window {
                start: s.start,
                end: s.start.saturating_add(s.duration),
                same_transaction,
            };
            let outcome = end(tx, s.payload, window)?;
            db::advance_to(tx, window.end)?;
            Ok(outcome)
        };
        // Engine-paced worlds do not sleep in operations (see `Shared::pacer`).
        let speed = if self.shared.paced() {
            0.0
        } else {
            self.shared.speed
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
        result.unwrap_or_else(|e| Err(self.db_failure(server, e)))
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
        self.timed(
            call.host,
            |tx, now| begin_step(tx, id, call, has_faults, now),
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
        let result = self.shared.read(|tx| {
            let now = db::now(tx)?;
            let server = Server::load(tx, id)?;
            if let Some(until) = server.unreachable_at(now) {
                return Ok(Err(unreachable(&server, until, now)));
            }
            probe(tx, call, &server, initial).map(Ok)
        });
        result.map_err(|e| self.db_failure(call.server, e))?
    }

    /// Restarts a server: takes 5 simulated minutes, clears a pending reboot, and starts
    /// W3SVC and the Skype for Business services on the installed build.
    pub fn reboot_server(&self, fqdn: &str) -> Result<StepOutcome, TargetError> {
        let id = self.server_id(fqdn)?;
        self.timed(
            fqdn,
            |tx, now| {
                let server = Server::load(tx, id)?;
                if let Some(until) = server.unreachable_at(now) {
                    return Ok(Err(unreachable(&server, until, now)));
                }
                Ok(Ok((db::ms(rules::REBOOT_DURATION), ())))
            },
            |tx, (), window| {
                let mut server = Server::load(tx, id)?;
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
    pub fn recover_server(&self, fqdn: &str) -> Result<StepOutcome, TargetError> {
        let id = self.server_id(fqdn)?;
        self.timed(
            fqdn,
            |tx, now| {
                let server = Server::load(tx, id)?;
                if let Some(until) = server.unreachable_at(now) {
                    return Ok(Err(unreachable(&server, until, now)));
                }
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
                Ok(Ok((db::ms(duration), ())))
            },
            |tx, (), window| {
                let mut server = Server::load(tx, id)?;
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
                settle(tx, &mut server, &before, window)?;
                if done.is_empty() {
                    done.push("nothing to do: W3SVC and every service were running".to_string());
                }
                let (exit_code, state) = if server.in_service {
                    (0, "back in service")
                } else {
                    (1, "still out of service")
                };
                Ok(Ok(StepOutcome {
                    exit_code,
                    output: format!("{}; {} is {state}", done.join("; "), server.fqdn),
                }))
            },
        )
    }
}

fn real_sleep(duration: i64, speed: f64) {
    if duration > 0 && speed > 0.0 {
        let seconds = duration as f64 / 1000.0 / speed;
        if seconds.is_finite() {
            std::thread::sleep(Duration::from_secs_f64(seconds));
        }
    }
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

fn default_duration(call: &StepCall<'_>) -> i64 {
    match call.action {
        Action::DatabasesUpdatedBy { .. } => 0,
        _ => db::ms(rules::step_duration(call.step)),
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
    now: i64,
) -> rusqlite::Result<Attempt<(i64, Begun)>> {
    let mut server = Server::load(tx, id)?;
    if let Some(until) = server.unreachable_at(now) {
        return Ok(Err(unreachable(&server, until, now)));
    }
    let mut duration = default_duration(call);
    let mut disposition = Disposition::Run;
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
                disposition = Disposition::Exit {
                    code: i32::try_from(f.value).unwrap_or(1),
                    fault: f.idx,
                };
            } else if let Some(f) = find("disk_full") {
                fire(tx, f)?;
                disposition = Disposition::DiskFull { fault: f.idx };
            }
            if let Some(f) = find("duration") {
                fire(tx, f)?;
                duration = f.value;
            }
        }
        server.save(tx, &before)?;
    }
    // Reset-CsPoolRegistrarState runs first when the fabric shows missing replicas.
    if let (
        Disposition::Run,
        Action::CheckFabricState {
            reset_missing_replicas: true,
            ..
        },
        Some(pool),
    ) = (disposition, call.action, server.pool_id)
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
    let outcome = match disposition {
        Disposition::Hang => Err(TargetError::TimedOut {
            server: server.fqdn.clone(),
            step: call.step.as_str().to_string(),
            after_ms: call.timeout,
        }),
        Disposition::Exit { code, fault }
            if call.step == StepId::CheckFabricState && code == sfbpatch_plan::POOL_BUSY_EXIT =>
        {
            Ok(StepOutcome {
                exit_code: code,
                output: format!(
                    "PoolUpgradeState: Busy (lab fault {fault}): the pool is still moving routing \
                     groups; ask again in 10 minutes"
                ),
            })
        }
        Disposition::Exit { code, fault }
            if !(call.step == StepId::InstallUpdate && code == 3010) =>
        {
            Ok(StepOutcome {
                exit_code: code,
                output: format!(
                    "{} failed with exit code {code} (lab fault {fault}); nothing changed",
                    call.step
                ),
            })
        }
        Disposition::DiskFull { fault } => Ok(StepOutcome {
            exit_code: 112,
            output: format!(
                "There is not enough space on the disk (lab fault {fault}): the installer was \
                 not staged; nothing else changed"
            ),
        }),
        // Exit 3010 from the installer: the update is applied and a restart is pending.
        Disposition::Exit { .. } => Ok(apply(tx, shared, call, &mut server, installer_hash, true)?),
        Disposition::Run => Ok(apply(tx, shared, call, &mut server, installer_hash, false)?),
    };
    // The back end is unavailable to its pools while Install-CsDatabase updates it.
    // A hung update holds the databases too, until it is given up.
    let held = matches!(disposition, Disposition::Hang)
        || outcome.as_ref().is_ok_and(|o| o.exit_code == 0);
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

fn fail(output: impl Into<String>) -> StepOutcome {
    StepOutcome {
        exit_code: 1,
        output: output.into(),
    }
}

/// The effect of a step that runs. `reboot_exit`: the installer exits 3010.
fn apply(
    tx: &Transaction<'_>,
    shared: &Shared,
    call: &StepCall<'_>,
    server: &mut Server,
    installer_hash: Option<&Result<String, String>>,
    reboot_exit: bool,
) -> rusqlite::Result<StepOutcome> {
    if let Some(missing) = machine::lacks(server, call.action) {
        server.refused_commands += 1;
        return Ok(not_there(server, call.action, missing));
    }
    let outcome = match call.action {
        Action::CheckAdminRole => check_admin_role(tx, &shared.operator)?,
        Action::CheckFabricState {
            pool,
            readiness,
            reset_missing_replicas,
        } => check_fabric_state(
            tx,
            server,
            pool.as_str(),
            *readiness,
            *reset_missing_replicas,
        )?,
        Action::Failover { computer } => failover(tx, server, computer.as_str())?,
        Action::Failback { computer } => failback(server, computer.as_str()),
        Action::StageUpdate {
            source,
            sha256,
            destination,
        } => stage(server, source, sha256, destination, installer_hash),
        Action::StopCsServices => {
            let stopped = server.stop_services();
            if stopped.is_empty() {
                StepOutcome::ok("Stop-CsWindowsService: no Skype for Business service was running")
            } else {
                StepOutcome::ok(format!(
                    "Stop-CsWindowsService: stopped {} services: {}",
                    stopped.len(),
                    stopped.join(", ")
                ))
            }
        }
        Action::StopW3svc => {
            let was = std::mem::replace(&mut server.w3svc, false);
            StepOutcome::ok(if was {
                "The World Wide Web Publishing Service service was stopped successfully."
            } else {
                "The World Wide Web Publishing Service service is not started."
            })
        }
        Action::CloseManagementShells => {
            let n = std::mem::replace(&mut server.open_shells, 0);
            StepOutcome::ok(match n {
                0 => "no Management Shell session was open".to_string(),
                1 => "closed 1 Management Shell session".to_string(),
                n => format!("closed {n} Management Shell sessions"),
            })
        }
        Action::InstallUpdate { path } => install(tx, server, path, call.package, reboot_exit)?,
        Action::StartW3svc => {
            let was = std::mem::replace(&mut server.w3svc, true);
            StepOutcome::ok(if was {
                "The World Wide Web Publishing Service service is already running."
            } else {
                "The World Wide Web Publishing Service service was started successfully."
            })
        }
        Action::UpdateConfiguredDatabases {
            sql_server_fqdn,
            exclude_collocated_stores,
        } => update_configured(
            tx,
            server,
            sql_server_fqdn.as_str(),
            *exclude_collocated_stores,
        )?,
        Action::UpdateLocalDatabases => update_local(tx, server)?,
        Action::DatabasesUpdatedBy { server: by } => StepOutcome::ok(format!(
            "nothing to do here: the back end's databases are updated from {by} once every node has the update"
        )),
        Action::StartCsServices if server.failed_over => fail(format!(
            "Start-CsWindowsService : Cannot start service RTCSRV on computer '{}': the service \
             is disabled (Invoke-CsComputerFailOver disabled the Skype for Business services; \
             Invoke-CsComputerFailBack enables and starts them)",
            server.fqdn
        )),
        Action::StartCsServices => {
            let started = server.start_services();
            if started.is_empty() {
                StepOutcome::ok("Start-CsWindowsService: every service was already running")
            } else {
                StepOutcome::ok(format!(
                    "Start-CsWindowsService: started {} services on build {}: {}",
                    started.len(),
                    server.files_build(),
                    started.join(", ")
                ))
            }
        }
        Action::Verify {
            build,
            sql_server_fqdn,
            sql_instance,
            check_databases,
            local_databases,
            check_services,
            fabric_pool,
        } => {
            let check = match (*check_databases, *local_databases) {
                (false, _) => DatabaseCheck::None,
                (true, true) => DatabaseCheck::Local,
                (true, false) => {
                    DatabaseCheck::Configured(sql_server_fqdn.as_str(), sql_instance.as_str())
                }
            };
            let mut outcome = verify(
                tx,
                server,
                *build,
                check,
                *check_services,
                shared.initial_build,
            )?;
            if let Some(pool) = fabric_pool {
                verify_fabric(tx, server, pool.as_str(), &mut outcome)?;
            }
            outcome
        }
    };
    Ok(outcome)
}

/// What a machine answers when told to run something it does not have: PowerShell's "not
/// recognized" for a cmdlet of a module that is not installed, `net`'s "service name is
/// invalid" for a service that does not exist.
fn not_there(server: &Server, action: &Action, missing: Missing) -> StepOutcome {
    let command = machine::command_word(action);
    match missing {
        Missing::Service => StepOutcome {
            exit_code: 2,
            output: format!(
                "{command} on {}: The service name is invalid. (IIS is not installed on this machine)",
                server.fqdn
            ),
        },
        Missing::Module => fail(format!(
            "{command} : The term '{command}' is not recognized as the name of a cmdlet, function, \
             script file, or operable program ({} has no Skype for Business Management Shell)",
            server.fqdn
        )),
        Missing::Components => fail(format!(
            "SkypeServerUpdateInstaller on {}: no Skype for Business Server component is \
             installed on this machine; nothing to update",
            server.fqdn
        )),
    }
}

/// The pool a Front End server belongs to, checked against the name the step gives.
fn pool_of(
    tx: &Connection,
    server: &Server,
    pool: &str,
) -> rusqlite::Result<Result<i64, StepOutcome>> {
    let Some(id) = server.pool_id else {
        return Ok(Err(fail(format!(
            "{} is not a Front End server of an Enterprise pool",
            server.fqdn
        ))));
    };
    let name = frontend::pool_fqdn(tx, id)?;
    if !name.eq_ignore_ascii_case(pool) {
        return Ok(Err(fail(format!(
            "{} is a Front End server of pool {name}, not of {pool}",
            server.fqdn
        ))));
    }
    Ok(Ok(id))
}

/// `Get-CsPoolFabricState` and the pool's upgrade readiness, run on a Front End server of the
/// pool about to lose it.
fn check_fabric_state(
    tx: &Connection,
    server: &Server,
    pool: &str,
    readiness: sfbpatch_plan::Readiness,
    reset: bool,
) -> rusqlite::Result<StepOutcome> {
    let pool_id = match pool_of(tx, server, pool)? {
        Ok(id) => id,
        Err(outcome) => return Ok(outcome),
    };
    let mut lines = Vec::new();
    if frontend::missing_replicas(tx, pool_id)? {
        if !reset {
            let members = frontend::members(tx, pool_id)?;
            return Ok(fail(format!(
                "{}\npool {pool} has missing replicas: recover it first \
                 (Reset-CsPoolRegistrarState -PoolFqdn {pool} -ResetType QuorumLossRecovery); \
                 no server of the pool is patched",
                frontend::fabric_state(&members, true)
            )));
        }
        frontend::clear_missing_replicas(tx, pool_id)?;
        lines.push(format!(
            "Reset-CsPoolRegistrarState -PoolFqdn {pool} -ResetType QuorumLossRecovery: the \
             routing groups' replicas were rebuilt"
        ));
    }
    let members = frontend::members(tx, pool_id)?;
    lines.push(frontend::fabric_state(&members, false));
    let i = members.iter().position(|m| m.id == server.id).unwrap_or(0);
    let cmdlet = readiness.cmdlet();
    match frontend::leaving_refused(&members, i) {
        Some(why) if members.len() > 1 => {
            lines.push(format!(
                "{cmdlet}: PoolUpgradeState InsufficientActiveFrontEnds: {why}"
            ));
            Ok(fail(lines.join("\n")))
        }
        _ => {
            lines.push(format!(
                "{cmdlet}: PoolUpgradeState Ready; {} of {} Front End servers active",
                members.iter().filter(|m| m.active).count(),
                members.len()
            ));
            Ok(StepOutcome::ok(lines.join("\n")))
        }
    }
}

/// `Invoke-CsComputerFailOver`: moves the server's routing groups to the pool's other Front
/// End servers, stops its services and takes it out of the pool; refused when that would
/// leave a routing group without an active replica or the pool below quorum.
fn failover(tx: &Connection, server: &mut Server, computer: &str) -> rusqlite::Result<StepOutcome> {
    if !server.fqdn.eq_ignore_ascii_case(computer) {
        return Ok(fail(format!(
            "Invoke-CsComputerFailOver -ComputerName {computer} was sent to {}",
            server.fqdn
        )));
    }
    let Some(pool_id) = server.pool_id else {
        return Ok(fail(format!(
            "{} is not a Front End server of an Enterprise pool",
            server.fqdn
        )));
    };
    if server.failed_over {
        return Ok(StepOutcome::ok(format!(
            "Invoke-CsComputerFailOver: {computer} is already out of its pool"
        )));
    }
    if frontend::missing_replicas(tx, pool_id)? {
        return Ok(fail(format!(
            "Invoke-CsComputerFailOver -ComputerName {computer}: refused: the pool has missing replicas"
        )));
    }
    let members = frontend::members(tx, pool_id)?;
    let i = members.iter().position(|m| m.id == server.id).unwrap_or(0);
    if let Some(why) = frontend::leaving_refused(&members, i) {
        return Ok(fail(format!(
            "Invoke-CsComputerFailOver -ComputerName {computer}: refused: {why}; nothing changed"
        )));
    }
    let stopped = server.stop_services();
    server.failed_over = true;
    Ok(StepOutcome::ok(format!(
        "Invoke-CsComputerFailOver -ComputerName {computer}: its routing groups moved to the pool's \
         other Front End servers; stopped {} services; the server is out of the pool",
        stopped.len()
    )))
}

/// `Invoke-CsComputerFailBack`: starts the server's services and returns it to its pool.
fn failback(server: &mut Server, computer: &str) -> StepOutcome {
    if !server.fqdn.eq_ignore_ascii_case(computer) {
        return fail(format!(
            "Invoke-CsComputerFailBack -ComputerName {computer} was sent to {}",
            server.fqdn
        ));
    }
    if server.reboot_pending {
        return fail(format!(
            "Invoke-CsComputerFailBack -ComputerName {computer}: refused: a restart is pending"
        ));
    }
    if !server.failed_over {
        return StepOutcome::ok(format!(
            "Invoke-CsComputerFailBack: {computer} is a member of its pool already"
        ));
    }
    let started = server.start_services();
    server.failed_over = false;
    StepOutcome::ok(format!(
        "Invoke-CsComputerFailBack -ComputerName {computer}: started {} services; the server is \
         back in its pool on build {}",
        started.len(),
        server.files_build()
    ))
}

/// `verify` on a Front End server: the pool's fabric is healthy again with the server in it.
fn verify_fabric(
    tx: &Connection,
    server: &Server,
    pool: &str,
    outcome: &mut StepOutcome,
) -> rusqlite::Result<()> {
    let pool_id = match pool_of(tx, server, pool)? {
        Ok(id) => id,
        Err(o) => {
            *outcome = o;
            return Ok(());
        }
    };
    let members = frontend::members(tx, pool_id)?;
    let missing = frontend::missing_replicas(tx, pool_id)?;
    let me_active = members.iter().any(|m| m.id == server.id && m.active);
    let mut problems = Vec::new();
    if missing {
        problems.push(format!(
            "Get-CsPoolFabricState: pool {pool} has missing replicas"
        ));
    }
    if !me_active {
        problems.push(format!(
            "Get-CsPoolFabricState: {} holds no active replica (failed over, or its services are stopped)",
            server.fqdn
        ));
    }
    if problems.is_empty() {
        outcome.output.push_str(&format!(
            "\nGet-CsPoolFabricState: pool {pool} healthy, {} of {} Front End servers active",
            members.iter().filter(|m| m.active).count(),
            members.len()
        ));
    } else if outcome.exit_code == 0 {
        *outcome = fail(format!(
            "verification failed on {}:\n{}",
            server.fqdn,
            problems
                .iter()
                .map(|p| format!("- {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    } else {
        for p in problems {
            outcome.output.push_str(&format!("\n- {p}"));
        }
    }
    Ok(())
}

fn check_admin_role(tx: &Connection, operator: &str) -> rusqlite::Result<StepOutcome> {
    let groups: Vec<String> = tx
        .prepare_cached("SELECT grp FROM accounts WHERE account = ?1 ORDER BY grp")?
        .query_map([operator], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let held: Vec<&str> = groups
        .iter()
        .map(String::as_str)
        .filter(|g| ["CsAdministrator", "RTCUniversalServerAdmins"].contains(g))
        .collect();
    Ok(if held.is_empty() {
        fail(format!(
            "{operator} is not a member of CsAdministrator or RTCUniversalServerAdmins: \
             act as an account that holds one of these roles"
        ))
    } else {
        StepOutcome::ok(format!("{operator} is a member of {}", held.join(", ")))
    })
}

fn stage(
    server: &mut Server,
    source: &Installer,
    sha256: &str,
    destination: &str,
    installer_hash: Option<&Result<String, String>>,
) -> StepOutcome {
    let path = match source {
        Installer::Url(url) => {
            return fail(format!(
                "the lab cannot download; use a local installer file (the package names {url})"
            ));
        }
        Installer::Path(path) => path,
        Installer::Server(path) => path,
    };
    match installer_hash {
        None => fail(format!("cannot read the installer {path}")),
        Some(Err(e)) => fail(format!("cannot read the installer {path}: {e}")),
        Some(Ok(actual)) if !actual.eq_ignore_ascii_case(sha256) => fail(format!(
            "SHA-256 mismatch for {path}: the package expects {}, the file has {actual}; \
             nothing was staged",
            sha256.to_ascii_lowercase()
        )),
        Some(Ok(actual)) => {
            server.staged_path = Some(destination.to_string());
            server.staged_sha256 = Some(actual.clone());
            StepOutcome::ok(format!(
                "copied {path} to {destination} on {}, SHA-256 {actual} matches the package, extracted",
                server.fqdn
            ))
        }
    }
}

fn install(
    tx: &Connection,
    server: &mut Server,
    path: &str,
    package: &Package,
    reboot_exit: bool,
) -> rusqlite::Result<StepOutcome> {
    let staged = server
        .staged_path
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case(path))
        && server
            .staged_sha256
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case(&package.sha256));
    if !staged {
        return Ok(fail(format!(
            "the installer was not staged: {path} is missing or is not the package's file \
             (stage-update first)"
        )));
    }
    if package.version < server.installed {
        return Ok(fail(format!(
            "build {} is installed, newer than the package's {}: nothing installed",
            server.installed, package.version
        )));
    }
    let mut in_use: Vec<String> = server.running_services().map(|s| s.name.clone()).collect();
    if server.w3svc {
        in_use.push("W3SVC".to_string());
    }
    match server.open_shells {
        0 => {}
        1 => in_use.push("1 open Management Shell".to_string()),
        n => in_use.push(format!("{n} open Management Shells")),
    }
    if !in_use.is_empty() {
        return Ok(fail(format!("files in use: {}", in_use.join(", "))));
    }

    let mut record = tx.prepare_cached(
        "INSERT OR IGNORE INTO schemas (build, store, version) VALUES (?1, ?2, ?3)",
    )?;
    for (store, version) in &package.schema_versions {
        record.execute(params![BuildCol(package.version), store.as_str(), version])?;
    }
    let old = server.files_build();
    server.previous = old;
    server.installed = package.version;
    server.installer_runs += 1;
    server.reboot_pending = reboot_exit;
    // The installer restarts the services it stopped; they load the assemblies that were in
    // memory before the global assembly cache changed. Services disabled by failover stay
    // stopped.
    let restarted = if server.failed_over {
        0
    } else {
        for s in server.services.iter_mut() {
            s.running = true;
            s.loaded = old;
        }
        server.services.len()
    };
    let mut output = format!(
        "SkypeServerUpdateInstaller: installed {} (was {old}); the installer restarted \
         {restarted} services",
        package.version,
    );
    if server.failed_over {
        output.push_str(" (the others are disabled: the server is failed over)");
    }
    if reboot_exit {
        output.push_str("; a restart is required to complete the update (exit 3010)");
    }
    Ok(StepOutcome {
        exit_code: if reboot_exit { 3010 } else { 0 },
        output,
    })
}

/// Brings every database of `instances` to the schema of `build` (never back). Returns one
/// line per database changed.
fn update_instances(
    tx: &Connection,
    instances: &[db::Instance],
    build: Build,
) -> rusqlite::Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut update = tx.prepare_cached(
        "UPDATE databases SET build = ?1, version = ?2 WHERE instance_id = ?3 AND ord = ?4",
    )?;
    for instance in instances {
        for d in db::databases(tx, instance.id)? {
            if build > d.build {
                let version = db::schema_version(tx, d.store, build)?;
                update.execute(params![BuildCol(build), version, instance.id, d.ord])?;
                lines.push(format!(
                    "  {} {}: {} -> {version}",
                    instance.label(),
                    d.name,
                    d.version
                ));
            }
        }
    }
    Ok(lines)
}

fn databases_output(command: &str, build: Build, lines: Vec<String>) -> String {
    if lines.is_empty() {
        format!(
            "{command}: every database already has the schema of build {build}; nothing changed"
        )
    } else {
        format!(
            "{command}: updated {} databases to the schema of build {build}\n{}",
            lines.len(),
            lines.join("\n")
        )
    }
}

fn update_configured(
    tx: &Connection,
    server: &Server,
    sql_server_fqdn: &str,
    exclude_collocated: bool,
) -> rusqlite::Result<StepOutcome> {
    let instances = db::instances_on(tx, sql_server_fqdn)?;
    if instances.is_empty() {
        return Ok(fail(format!(
            "Install-CsDatabase: the topology has no SQL Server {sql_server_fqdn}; nothing changed"
        )));
    }
    if instances.iter().any(|i| i.standard_edition) {
        return Ok(fail(format!(
            "Install-CsDatabase: {sql_server_fqdn} is a Standard Edition server's own SQL Server: \
             use -LocalDatabases on a Standard Edition server; nothing changed"
        )));
    }
    let mut output = String::new();
    if !exclude_collocated {
        for i in instances.iter().filter(|i| !i.collocated.is_empty()) {
            let stores: Vec<String> = i
                .collocated
                .iter()
                .map(|s| format!("{} ({})", s.as_str(), s.databases().join(", ")))
                .collect();
            output.push_str(&format!(
                "WARNING: collocated stores on {}: {}. They must be installed from the local \
                 computer; -ExcludeCollocatedStores suppresses this warning.\n",
                i.label(),
                stores.join(", ")
            ));
        }
    }
    let lines = update_instances(tx, &instances, server.installed)?;
    output.push_str(&databases_output(
        &format!(
            "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn {sql_server_fqdn}"
        ),
        server.installed,
        lines,
    ));
    Ok(StepOutcome::ok(output))
}

/// The instances on a Standard Edition server's own cluster; none for a back-end server.
fn local_instances(tx: &Connection, server: &Server) -> rusqlite::Result<Vec<db::Instance>> {
    if server.kind != ServerKind::StandardEdition {
        return Ok(Vec::new());
    }
    let backend = db::instance_by_id(tx, server.backend_id)?;
    db::instances_on(tx, &backend.sql_server_fqdn)
}

/// The instances whose databases the server's services use: `Test-CsDatabase -LocalService`
/// checks these whatever the server's role, so a wrong update variant shows up in `verify`.
fn serving_instances(tx: &Connection, server: &Server) -> rusqlite::Result<Vec<db::Instance>> {
    let backend = db::instance_by_id(tx, server.backend_id)?;
    db::instances_on(tx, &backend.sql_server_fqdn)
}

fn update_local(tx: &Connection, server: &Server) -> rusqlite::Result<StepOutcome> {
    const COMMAND: &str = "Install-CsDatabase -Update -LocalDatabases";
    if server.kind != ServerKind::StandardEdition {
        return Ok(StepOutcome::ok(format!(
            "{COMMAND}: {} is not a Standard Edition server; its local databases hold \
             none of the back end's stores: no back-end database changed",
            server.fqdn
        )));
    }
    let instances = local_instances(tx, server)?;
    let lines = update_instances(tx, &instances, server.installed)?;
    Ok(StepOutcome::ok(databases_output(
        COMMAND,
        server.installed,
        lines,
    )))
}

/// Which databases `verify` checks.
enum DatabaseCheck<'a> {
    None,
    /// `Test-CsDatabase -ConfiguredDatabases`: one instance of the back end.
    Configured(&'a str, &'a str),
    /// `Test-CsDatabase -LocalService`: the instances on a Standard Edition server's own
    /// cluster (none on a back-end server).
    Local,
}

fn verify(
    tx: &Connection,
    server: &Server,
    build: Build,
    databases: DatabaseCheck<'_>,
    check_services: bool,
    initial: Build,
) -> rusqlite::Result<StepOutcome> {
    let mut problems = Vec::new();
    let mut good = Vec::new();
    if server.installed == build {
        good.push(format!("Get-CsServerPatchVersion: {build}"));
    } else {
        problems.push(format!(
            "Get-CsServerPatchVersion: build {} is installed, the package is {build}",
            server.installed
        ));
    }
    if server.reboot_pending {
        problems.push("a restart is pending (installer exit 3010)".to_string());
    }
    let stopped: Vec<&str> = server
        .services
        .iter()
        .filter(|s| !s.running && check_services)
        .map(|s| s.name.as_str())
        .collect();
    if !stopped.is_empty() {
        problems.push(format!(
            "Get-CsWindowsService: {} services stopped: {}",
            stopped.len(),
            stopped.join(", ")
        ));
    }
    let stale: Vec<String> = server
        .services
        .iter()
        .filter(|s| check_services && s.running && s.loaded != server.installed)
        .map(|s| format!("{} ({})", s.name, s.loaded))
        .collect();
    if !stale.is_empty() {
        problems.push(format!(
            "Get-CsWindowsService: {} services run on old assemblies while {} is installed: {}",
            stale.len(),
            server.installed,
            stale.join(", ")
        ));
    }
    if check_services {
        if stopped.is_empty() && stale.is_empty() {
            good.push(format!(
                "Get-CsWindowsService: {} services running on {}",
                server.services.len(),
                server.installed
            ));
        }
        if server.w3svc {
            good.push("W3SVC: running".to_string());
        } else {
            problems.push("W3SVC is stopped".to_string());
        }
    }
    let instances = match databases {
        DatabaseCheck::None => Vec::new(),
        DatabaseCheck::Local => serving_instances(tx, server)?,
        DatabaseCheck::Configured(sql_server_fqdn, instance_name) => {
            match db::instance_named(tx, sql_server_fqdn, instance_name)? {
                Some(instance) => vec![instance],
                None => {
                    problems.push(format!(
                        "Test-CsDatabase: the topology has no SQL Server instance \
                         {sql_server_fqdn}\\{instance_name}"
                    ));
                    Vec::new()
                }
            }
        }
    };
    if let DatabaseCheck::Configured(sql_server_fqdn, _) = databases {
        let newest = instances
            .iter()
            .map(|i| db::databases(tx, i.id))
            .collect::<rusqlite::Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .map(|d| d.build)
            .max();
        if let Some(newest) = newest {
            for (fe, fe_build) in frontend::behind_databases(tx, sql_server_fqdn, newest)? {
                problems.push(format!(
                    "Front End server {fe} runs build {fe_build} while the databases on \
                     {sql_server_fqdn} have the schema of build {newest}"
                ));
            }
        }
    }
    for instance in &instances {
        let (count, behind) = db::databases_behind(tx, instance, initial)?;
        if behind.is_empty() {
            good.push(format!(
                "Test-CsDatabase {}: {count} databases, InstalledVersion = ExpectedVersion",
                instance.label()
            ));
        }
        for b in behind {
            problems.push(format!(
                "Test-CsDatabase {} {}: InstalledVersion {}, ExpectedVersion {}, Succeed False",
                b.instance, b.database, b.installed, b.expected
            ));
        }
    }
    Ok(if problems.is_empty() {
        StepOutcome::ok(good.join("\n"))
    } else {
        fail(format!(
            "verification failed on {}:\n{}",
            server.fqdn,
            problems
                .iter()
                .map(|p| format!("- {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        ))
    })
}

/// Whether the step's effect is present, and the facts read.
fn probe(
    tx: &Connection,
    call: &StepCall<'_>,
    server: &Server,
    initial: Build,
) -> rusqlite::Result<Probe> {
    let running = server.running_services().count();
    let files = server.files_build();
    let on_files = server
        .services
        .iter()
        .filter(|s| s.running && s.loaded == files)
        .count();
    let mut facts = json!({
        "server": server.fqdn,
        "installed_build": server.installed.to_string(),
        "services": server.services.len(),
        "services_running": running,
        "services_on_installed_build": server
            .services
            .iter()
            .filter(|s| s.running && s.loaded == server.installed)
            .count(),
        "w3svc": if server.w3svc { "running" } else { "stopped" },
        "open_shells": server.open_shells,
        "reboot_pending": server.reboot_pending,
    });
    facts["failed_over"] = json!(server.failed_over);
    let done = match call.action {
        Action::CheckAdminRole
        | Action::CloseManagementShells
        | Action::Verify { .. }
        | Action::CheckFabricState { .. } => false,
        Action::Failover { .. } => server.failed_over,
        Action::Failback { .. } => !server.failed_over,
        Action::StageUpdate {
            sha256,
            destination,
            ..
        } => {
            facts["staged_path"] = json!(server.staged_path);
            facts["staged_sha256"] = json!(server.staged_sha256);
            server
                .staged_path
                .as_deref()
                .is_some_and(|p| p.eq_ignore_ascii_case(destination))
                && server
                    .staged_sha256
                    .as_deref()
                    .is_some_and(|h| h.eq_ignore_ascii_case(sha256))
        }
        Action::StopCsServices => running == 0,
        Action::StopW3svc => !server.w3svc,
        Action::StartW3svc => server.w3svc,
        Action::InstallUpdate { .. } => server.installed >= call.package.version,
        Action::StartCsServices => on_files == server.services.len(),
        Action::DatabasesUpdatedBy { .. } => true,
        Action::UpdateConfiguredDatabases {
            sql_server_fqdn, ..
        } => {
            let instances = db::instances_on(tx, sql_server_fqdn.as_str())?;
            if instances.is_empty() || instances.iter().any(|i| i.standard_edition) {
                facts["databases_behind"] = json!(null);
                false
            } else {
                let behind = behind_count(tx, &instances, initial)?;
                facts["databases_behind"] = json!(behind);
                behind == 0
            }
        }
        Action::UpdateLocalDatabases => {
            let instances = local_instances(tx, server)?;
            let behind = behind_count(tx, &instances, initial)?;
            facts["databases_behind"] = json!(behind);
            behind == 0
        }
    };
    Ok(Probe {
        verdict: if done {
            ProbeVerdict::Done
        } else {
            ProbeVerdict::NotDone
        },
        facts: facts.to_string(),
    })
}

fn behind_count(
    tx: &Connection,
    instances: &[db::Instance],
    initial: Build,
) -> rusqlite::Result<usize> {
    let mut behind = 0;
    for instance in instances {
        behind += db::databases_behind(tx, instance, initial)?.1.len();
    }
    Ok(behind)
}

impl Target for LabTarget {
    fn kind(&self) -> &'static str {
        "lab"
    }

    fn execute(&self, req: &StepRequest<'_>) -> Result<StepOutcome, TargetError> {
        self.execute_step(&StepCall::from_request(req))
    }

    fn probe(&self, req: &StepRequest<'_>) -> Result<Probe, TargetError> {
        self.probe_step(&StepCall::from_request(req))
    }

    fn reboot(&self, req: &StepRequest<'_>) -> Result<StepOutcome, TargetError> {
        self.reboot_server(req.server.fqdn.as_str())
    }

    fn recover(&self, req: &StepRequest<'_>) -> Result<StepOutcome, TargetError> {
        self.recover_server(req.server.fqdn.as_str())
    }

    fn preflight(&self, server: &ServerPlan) -> Result<MachineFacts, TargetError> {
        self.preflight_server(server.fqdn.as_str())
    }

    fn lock_server(
        &self,
        server: &ServerPlan,
        holder: &str,
        now_ms: Millis,
        until_ms: Millis,
    ) -> Result<Option<ServerLock>, TargetError> {
        self.lock(server.fqdn.as_str(), holder, now_ms, until_ms)
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
    /// expired; returns that lock then.
    pub fn lock(
        &self,
        fqdn: &str,
        holder: &str,
        now_ms: Millis,
        until_ms: Millis,
    ) -> Result<Option<ServerLock>, TargetError> {
        let id = self.server_id(fqdn)?;
        let (now, until) = (db::ms(now_ms), db::ms(until_ms));
        self.shared
            .write(|tx| {
                let held: Option<(String, i64)> = tx
                    .prepare_cached(
                        "SELECT holder, expires_at FROM server_locks WHERE server_id = ?1",
                    )?
                    .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                if let Some((other, expires)) = held
                    && other != holder
                    && expires > now
                {
                    return Ok(Some(ServerLock {
                        holder: other,
                        expires_at: u64::try_from(expires).unwrap_or(0),
                    }));
                }
                tx.prepare_cached(
                    "INSERT INTO server_locks (server_id, holder, expires_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (server_id) DO UPDATE SET holder = ?2, expires_at = ?3",
                )?
                .execute(params![id, holder, until])?;
                Ok(None)
            })
            .map_err(|e| self.db_failure(fqdn, e))
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

    /// What a machine runs, read without changing anything. Takes no time.
    pub fn preflight_server(&self, fqdn: &str) -> Result<MachineFacts, TargetError> {
        let id = self.server_id(fqdn)?;
        let result = self.shared.read(|tx| {
            let now = db::now(tx)?;
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
    fn is_virtual(&self) -> bool {
        true
    }

    fn set(&self, at: Millis) {
        self.shared.set_now(at);
    }

    /// The world's clock. If the lab database cannot be read, the last value this process
    /// read.
    fn now(&self) -> Millis {
        self.shared
            .now()
            .unwrap_or_else(|_| self.shared.last_now.load(Ordering::Relaxed))
    }

    /// Advances the world's clock by `duration` (at a real-time speed, after sleeping
    /// `duration / speed`; concurrent sleeps then overlap instead of adding up).
    fn sleep(&self, duration: Millis) {
        let speed = self.shared.speed;
        let d = db::ms(duration);
        let advanced = if speed > 0.0 {
            let start = db::ms(self.now());
            real_sleep(d, speed);
            self.shared
                .write(|tx| db::advance_to(tx, start.saturating_add(d)))
        } else {
            self.shared.write(|tx| {
                let now = db::now(tx)?;
                db::advance_to(tx, now.saturating_add(d))
            })
        };
        if let Ok(now) = advanced {
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
