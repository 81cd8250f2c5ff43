//! The dispatcher: walks the plan server by server, step by step, with the journal as the
//! commit point of everything it does.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

use sfbpatch_plan::{Action, PlannedStep, ServerPlan, StepId};

use crate::event::{Event, Observer};
use crate::policy::{self, ERROR_SUCCESS_REBOOT_REQUIRED, UNREACHABLE_ATTEMPTS};
use crate::status::{ServerState, ServerStatus, StepState, fold};
use crate::store::{
    AuditEntry, Lease, Record, RunId, RunRecord, RunSpec, RunState, Scope, ServerOutcome,
    StepResultKind, Store, StoreError,
};
use crate::target::{
    Clock, Millis, Probe, ProbeVerdict, StepOutcome, StepRequest, Target, TargetError,
};

/// How long a lease lives without renewal (wall clock).
pub const LEASE_TTL: Millis = 10 * 60 * 1000;

/// Output kept in the journal and the audit log, per step.
pub const OUTPUT_EXCERPT: usize = 4000;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "pool {pool} is leased by run {} ({} on {}, pid {}) until {}; wait for it, or break a stale lease with `sfbpatch unlock {pool}`",
        lease.run, lease.holder, lease.host, lease.pid, lease.expires_at
    )]
    Leased { pool: String, lease: Lease },
    #[error("the lease on pool {pool} was taken over by run {by}; stopping before the next step")]
    LeaseLost { pool: String, by: RunId },
    #[error("run {run} is {state} and cannot be resumed", state = state.as_str())]
    NotResumable { run: RunId, state: RunState },
}

impl EngineError {
    /// Stable code for documentation and scripts.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Store(_) => "SFB-E001",
            EngineError::Leased { .. } => "SFB-E002",
            EngineError::LeaseLost { .. } => "SFB-E003",
            EngineError::NotResumable { .. } => "SFB-E004",
        }
    }
}

/// Who is running the engine, for leases and the audit log.
#[derive(Debug, Clone)]
pub struct Identity {
    pub holder: String,
    pub host: String,
    pub pid: u32,
}

/// The end of a run (or of this process's part of it).
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub run: RunId,
    pub state: RunState,
    pub servers: Vec<ServerStatus>,
    /// Target-clock time at the end.
    pub finished_at: Millis,
}

pub struct Engine<'a> {
    pub store: &'a mut dyn Store,
    pub target: &'a dyn Target,
    /// The target's clock (virtual for the lab).
    pub clock: &'a dyn Clock,
    /// Wall clock, for lease expiry.
    pub wall: &'a dyn Clock,
    pub observer: &'a mut dyn Observer,
    pub identity: Identity,
    /// Set from outside (Ctrl-C): no new server starts; the current one finishes.
    pub cancel: Option<&'a AtomicBool>,
}

struct StepFailure {
    reason: String,
}

impl<'a> Engine<'a> {
    /// Record a new run and carry it out.
    pub fn start(&mut self, spec: RunSpec) -> Result<RunOutcome, EngineError> {
        let pools = pools_of(&spec);
        let now = self.wall.now();
        for lease in self.store.leases()? {
            if pools.contains(&lease.pool.to_ascii_lowercase()) && lease.expires_at > now {
                return Err(EngineError::Leased {
                    pool: lease.pool.clone(),
                    lease,
                });
            }
        }
        let id = self.store.create_run(&spec, self.clock.now())?;
        let run = self.store.run(id)?;
        self.execute(run, false)
    }

    /// Continue a run that did not finish: every completed step stays done, an in-flight step
    /// is probed before anything else happens on its server.
    pub fn resume(&mut self, id: RunId) -> Result<RunOutcome, EngineError> {
        let run = self.store.run(id)?;
        if run.state.is_finished() {
            return Err(EngineError::NotResumable {
                run: id,
                state: run.state,
            });
        }
        self.store.set_run_state(id, RunState::Running)?;
        self.execute(run, true)
    }

    fn take_leases(&mut self, run: &RunRecord) -> Result<(), EngineError> {
        let now = self.wall.now();
        for pool in pools_of(&run.spec) {
            let lease = Lease {
                pool: pool.clone(),
                run: run.id,
                holder: self.identity.holder.clone(),
                host: self.identity.host.clone(),
                pid: self.identity.pid,
                expires_at: now + LEASE_TTL,
            };
            if let Some(held) = self.store.acquire_lease(&lease, now)? {
                return Err(if held.run == run.id {
                    EngineError::LeaseLost { pool, by: held.run }
                } else {
                    EngineError::Leased { pool, lease: held }
                });
            }
        }
        Ok(())
    }

    fn renew_lease(&mut self, run: RunId, pool: &str) -> Result<(), EngineError> {
        let now = self.wall.now();
        let lease = Lease {
            pool: pool.to_ascii_lowercase(),
            run,
            holder: self.identity.holder.clone(),
            host: self.identity.host.clone(),
            pid: self.identity.pid,
            expires_at: now + LEASE_TTL,
        };
        match self.store.acquire_lease(&lease, now)? {
            None => Ok(()),
            Some(held) => Err(EngineError::LeaseLost {
                pool: pool.to_string(),
                by: held.run,
            }),
        }
    }

    fn execute(&mut self, run: RunRecord, resumed: bool) -> Result<RunOutcome, EngineError> {
        if let Err(e) = self.take_leases(&run) {
            if !resumed {
                self.store.set_run_state(run.id, RunState::Failed)?;
            }
            return Err(e);
        }
        let result = self.drive(&run, resumed);
        // Leases go whatever happened; a crash leaves them to expire or to `unlock`.
        self.store.release_leases(run.id)?;
        result
    }

    fn drive(&mut self, run: &RunRecord, resumed: bool) -> Result<RunOutcome, EngineError> {
        let servers = &run.spec.plan.servers;
        let journal = self.store.journal(run.id)?;
        let mut statuses = fold(servers, &journal);
        self.observer.on_event(&Event::RunStarted {
            run: run.id,
            servers: servers.len(),
            resumed,
            at: self.clock.now(),
        });

        let mut interrupted = false;
        for i in 0..servers.len() {
            if statuses[i].is_finished() {
                continue;
            }
            // A server already started is always carried to its end: none is abandoned
            // mid-outage. Budgets and interrupts only keep new servers from starting.
            if statuses[i].state == ServerState::Pending {
                let failed = statuses
                    .iter()
                    .filter(|s| s.state == ServerState::Failed)
                    .count();
                if failed > run.spec.policy.max_failures as usize {
                    break;
                }
                if self.cancelled() {
                    interrupted = true;
                    break;
                }
            }
            self.run_server(run, &servers[i], &mut statuses[i])?;
        }
        let state = final_state(&statuses, interrupted);
        self.store.set_run_state(run.id, state)?;
        let at = self.clock.now();
        self.observer.on_event(&Event::RunFinished {
            run: run.id,
            state,
            at,
        });
        Ok(RunOutcome {
            run: run.id,
            state,
            servers: statuses,
            finished_at: at,
        })
    }

    fn cancelled(&self) -> bool {
        self.cancel.is_some_and(|c| c.load(Ordering::SeqCst))
    }

    /// Append records for one server, fold them into its status, optionally with an audit line.
    fn record(
        &mut self,
        run: &RunRecord,
        plan: &ServerPlan,
        status: &mut ServerStatus,
        records: &[Record],
        audit: Option<&AuditEntry>,
    ) -> Result<Millis, EngineError> {
        let at = self.clock.now();
        let scope = Scope {
            run: run.id,
            server: plan.fqdn.as_str(),
            role: plan.role,
        };
        self.store.append(at, &scope, records, audit)?;
        for r in records {
            status.apply(at, r);
        }
        Ok(at)
    }

    fn request<'r>(
        &self,
        run: &'r RunRecord,
        plan: &'r ServerPlan,
        step: &'r PlannedStep,
        attempt: u32,
    ) -> StepRequest<'r> {
        StepRequest {
            run_id: run.id,
            server: plan,
            step,
            package: &run.spec.plan.package,
            operator: &run.spec.operator,
            attempt,
            timeout: policy::retry_rule(step.id).timeout,
        }
    }

    /// Predicted outage for a server: earlier runs' mean durations for its role, the defaults
    /// where no run measured a step.
    pub fn predict_outage(
        &self,
        run: &RunRecord,
        plan: &ServerPlan,
    ) -> Result<Millis, EngineError> {
        let stats = self.store.step_stats(plan.role, run.id)?;
        Ok(plan
            .steps
            .iter()
            .filter(|s| s.in_outage)
            .map(|s| {
                stats
                    .iter()
                    .find(|st| st.step == s.id && st.samples > 0)
                    .map_or_else(|| policy::default_duration(s.id), |st| st.mean_ms)
            })
            .sum())
    }

    fn run_server(
        &mut self,
        run: &RunRecord,
        plan: &ServerPlan,
        status: &mut ServerStatus,
    ) -> Result<(), EngineError> {
        let pool = plan.pool.to_string();
        if status.state == ServerState::Pending {
            let predicted = self.predict_outage(run, plan)?;
            let budget = run.spec.policy.outage_budget_ms;
            if predicted > budget && !run.spec.policy.accept_resiliency {
                let reason = format!(
                    "predicted outage {} exceeds the outage budget {}; users of pool {pool} would go into resiliency mode (pass --accept-resiliency to start it anyway)",
                    minutes(predicted),
                    minutes(budget)
                );
                return self.finish(run, plan, status, ServerOutcome::Skipped, Some(reason));
            }
            let at = self.record(
                run,
                plan,
                status,
                &[Record::ServerStarted {
                    predicted_outage_ms: predicted,
                }],
                None,
            )?;
            self.observer.on_event(&Event::ServerStarted {
                server: plan.fqdn.to_string(),
                pool: pool.clone(),
                predicted_outage_ms: predicted,
                at,
            });
        }

        for step in &plan.steps {
            if status.step(step.id).state == StepState::Succeeded {
                continue;
            }
            self.renew_lease(run.id, &pool)?;
            if let Err(failure) = self.run_step(run, plan, step, status)? {
                if status.in_outage() {
                    self.recover(run, plan, step, status)?;
                }
                return self.finish(
                    run,
                    plan,
                    status,
                    ServerOutcome::Failed,
                    Some(failure.reason),
                );
            }
            self.check_budget(run, plan, status)?;
        }
        self.finish(run, plan, status, ServerOutcome::Succeeded, None)
    }

    fn finish(
        &mut self,
        run: &RunRecord,
        plan: &ServerPlan,
        status: &mut ServerStatus,
        outcome: ServerOutcome,
        reason: Option<String>,
    ) -> Result<(), EngineError> {
        let at = self.record(
            run,
            plan,
            status,
            &[Record::ServerFinished {
                outcome,
                reason: reason.clone(),
            }],
            None,
        )?;
        self.observer.on_event(&Event::ServerFinished {
            server: plan.fqdn.to_string(),
            pool: plan.pool.to_string(),
            outcome,
            reason,
            outage_ms: status.outage_ms(at),
            at,
        });
        Ok(())
    }

    fn check_budget(
        &mut self,
        run: &RunRecord,
        plan: &ServerPlan,
        status: &mut ServerStatus,
    ) -> Result<(), EngineError> {
        let budget = run.spec.policy.outage_budget_ms;
        let now = self.clock.now();
        if status.in_outage() && !status.budget_exceeded {
            let elapsed = status.outage_ms(now).unwrap_or(0);
            if elapsed > budget {
                let at = self.record(
                    run,
                    plan,
                    status,
                    &[Record::OutageBudgetExceeded { budget_ms: budget }],
                    None,
                )?;
                self.observer.on_event(&Event::OutageBudgetExceeded {
                    server: plan.fqdn.to_string(),
                    pool: plan.pool.to_string(),
                    budget_ms: budget,
                    elapsed_ms: elapsed,
                    at,
                });
            }
        }
        Ok(())
    }

    fn recover(
        &mut self,
        run: &RunRecord,
        plan: &ServerPlan,
        step: &PlannedStep,
        status: &mut ServerStatus,
    ) -> Result<(), EngineError> {
        let req = self.request(run, plan, step, 0);
        let output = match self.target.recover(&req) {
            Ok(o) => o.output,
            Err(e) => format!("recovery could not run: {e}"),
        };
        let at = self.record(
            run,
            plan,
            status,
            &[Record::Recovered {
                output: excerpt(&output),
            }],
            None,
        )?;
        self.observer.on_event(&Event::Recovered {
            server: plan.fqdn.to_string(),
            output,
            at,
        });
        if let Some(duration_ms) = status.outage_ms(at) {
            self.observer.on_event(&Event::OutageEnded {
                server: plan.fqdn.to_string(),
                pool: plan.pool.to_string(),
                duration_ms,
                at,
            });
        }
        Ok(())
    }

    /// Carry one step to success or failure. The outer `Result` is for engine errors (the
    /// store), the inner one for the step.
    fn run_step(
        &mut self,
        run: &RunRecord,
        plan: &ServerPlan,
        step: &PlannedStep,
        status: &mut ServerStatus,
    ) -> Result<Result<(), StepFailure>, EngineError> {
        let rule = policy::retry_rule(step.id);
        let mut attempt = status.step(step.id).attempts;

        // Interrupted before: the journal does not know the outcome, the server does.
        if matches!(
            status.step(step.id).state,
            StepState::Running | StepState::Unknown
        ) {
            match self.probe_until_reachable(run, plan, step, status, attempt)? {
                Ok(true) => return Ok(Ok(())),
                Ok(false) => {}
                Err(failure) => return Ok(Err(failure)),
            }
        }

        if let Action::DatabasesUpdatedBy { server } = &step.action {
            let output = format!(
                "databases of {} are updated once, by {server}, after every node has the update",
                plan.sql_server_fqdn
            );
            attempt += 1;
            self.record(
                run,
                plan,
                status,
                &[
                    Record::StepIntent {
                        step: step.id,
                        attempt,
                        command: None,
                    },
                    Record::StepResult {
                        step: step.id,
                        attempt,
                        result: StepResultKind::Succeeded,
                        exit_code: None,
                        output,
                        duration_ms: 0,
                    },
                ],
                None,
            )?;
            return Ok(Ok(()));
        }

        loop {
            attempt += 1;
            // The installer runs once per server: whatever the journal says, if the server
            // already has the build, it is not run again.
            if step.id == StepId::InstallUpdate {
                let req = self.request(run, plan, step, attempt);
                if let Ok(probe) = self.target.probe(&req)
                    && probe.verdict == ProbeVerdict::Done
                {
                    self.record_probe(run, plan, status, step, &probe)?;
                    return Ok(Ok(()));
                }
            }
            if step.id == StepId::StopCsServices && status.outage_started_at.is_none() {
                self.observer.on_event(&Event::OutageStarted {
                    server: plan.fqdn.to_string(),
                    pool: plan.pool.to_string(),
                    at: self.clock.now(),
                });
            }
            let started = self.record(
                run,
                plan,
                status,
                &[Record::StepIntent {
                    step: step.id,
                    attempt,
                    command: step.command.clone(),
                }],
                None,
            )?;
            self.observer.on_event(&Event::StepStarted {
                server: plan.fqdn.to_string(),
                step: step.id,
                attempt,
                command: step.command.clone(),
                at: started,
            });
            let req = self.request(run, plan, step, attempt);
            let result = self.target.execute(&req);
            let duration = self.clock.now().saturating_sub(started);
            match result {
                Ok(outcome) => {
                    let reboot = step.id == StepId::InstallUpdate
                        && outcome.exit_code == ERROR_SUCCESS_REBOOT_REQUIRED;
                    let ok = outcome.exit_code == 0 || reboot;
                    self.record_result(run, plan, status, step, attempt, &outcome, ok, duration)?;
                    if ok {
                        if reboot {
                            return self.reboot(run, plan, step, status, attempt);
                        }
                        if step.id == StepId::StartCsServices {
                            self.observer.on_event(&Event::OutageEnded {
                                server: plan.fqdn.to_string(),
                                pool: plan.pool.to_string(),
                                duration_ms: status.outage_ms(self.clock.now()).unwrap_or(0),
                                at: self.clock.now(),
                            });
                        }
                        return Ok(Ok(()));
                    }
                    let code = outcome.exit_code;
                    if rule.retries_exit(code) && attempt < rule.max_attempts {
                        self.wait_retry(plan, step, attempt, format!("exit code {code}"));
                        continue;
                    }
                    return Ok(Err(StepFailure {
                        reason: format!(
                            "{} exited with code {code}{}: {}",
                            step.id,
                            if attempt > 1 {
                                format!(" after {attempt} attempts")
                            } else {
                                String::new()
                            },
                            last_line(&outcome.output)
                        ),
                    }));
                }
                Err(e) if e.outcome_unknown() => {
                    let message = e.to_string();
                    self.record(
                        run,
                        plan,
                        status,
                        &[Record::StepResult {
                            step: step.id,
                            attempt,
                            result: StepResultKind::Unknown,
                            exit_code: None,
                            output: message.clone(),
                            duration_ms: duration,
                        }],
                        Some(&self.audit(run, plan, step, None, &message)),
                    )?;
                    self.observer.on_event(&Event::StepFinished {
                        server: plan.fqdn.to_string(),
                        step: step.id,
                        attempt,
                        exit_code: None,
                        succeeded: false,
                        duration_ms: duration,
                        at: self.clock.now(),
                    });
                    let limit = if matches!(e, TargetError::Unreachable { .. }) {
                        UNREACHABLE_ATTEMPTS
                    } else {
                        rule.max_attempts.max(2)
                    };
                    self.wait_retry(plan, step, attempt, message.clone());
                    match self.probe_until_reachable(run, plan, step, status, attempt)? {
                        Ok(true) => return Ok(Ok(())),
                        Ok(false) if attempt < limit => continue,
                        Ok(false) => {
                            return Ok(Err(StepFailure {
                                reason: format!(
                                    "{} failed after {attempt} attempts: {message}",
                                    step.id
                                ),
                            }));
                        }
                        Err(failure) => return Ok(Err(failure)),
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    self.record(
                        run,
                        plan,
                        status,
                        &[Record::StepResult {
                            step: step.id,
                            attempt,
                            result: StepResultKind::Failed,
                            exit_code: None,
                            output: message.clone(),
                            duration_ms: duration,
                        }],
                        Some(&self.audit(run, plan, step, None, &message)),
                    )?;
                    return Ok(Err(StepFailure { reason: message }));
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record_result(
        &mut self,
        run: &RunRecord,
        plan: &ServerPlan,
        status: &mut ServerStatus,
        step: &PlannedStep,
        attempt: u32,
        outcome: &StepOutcome,
        ok: bool,
        duration: Millis,
    ) -> Result<(), EngineError> {
        let output = excerpt(&outcome.output);
        let audit = self.audit(run, plan, step, Some(outcome.exit_code), &output);
        let at = self.record(
            run,
            plan,
            status,
            &[Record::StepResult {
                step: step.id,
                attempt,
                result: if ok {
                    StepResultKind::Succeeded
                } else {
                    StepResultKind::Failed
                },
                exit_code: Some(outcome.exit_code),
                output,
                duration_ms: duration,
            }],
            Some(&audit),
        )?;
        self.observer.on_event(&Event::StepFinished {
            server: plan.fqdn.to_string(),
            step: step.id,
            attempt,
            exit_code: Some(outcome.exit_code),
            succeeded: ok,
            duration_ms: duration,
            at,
        });
        Ok(())
    }

    fn record_probe(
        &mut self,
        run: &RunRecord,
        plan: &ServerPlan,
        status: &mut ServerStatus,
        step: &PlannedStep,
        probe: &Probe,
    ) -> Result<(), EngineError> {
        let done = probe.verdict == ProbeVerdict::Done;
        let at = self.record(
            run,
            plan,
            status,
            &[Record::StepProbed {
                step: step.id,
                done,
                facts: excerpt(&probe.facts),
            }],
            None,
        )?;
        self.observer.on_event(&Event::StepProbed {
            server: plan.fqdn.to_string(),
            step: step.id,
            done,
            at,
        });
        Ok(())
    }

    /// Probe a step whose outcome is unknown, waiting while the server is unreachable.
    /// `Ok(true)`: done; `Ok(false)`: not done, may run.
    fn probe_until_reachable(
        &mut self,
        run: &RunRecord,
        plan: &ServerPlan,
        step: &PlannedStep,
        status: &mut ServerStatus,
        attempt: u32,
    ) -> Result<Result<bool, StepFailure>, EngineError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let req = self.request(run, plan, step, attempt);
            match self.target.probe(&req) {
                Ok(probe) => {
                    self.record_probe(run, plan, status, step, &probe)?;
                    return Ok(Ok(probe.verdict == ProbeVerdict::Done));
                }
                Err(e) if e.outcome_unknown() && tries < UNREACHABLE_ATTEMPTS => {
                    self.wait_retry(plan, step, tries, e.to_string());
                }
                Err(e) => {
                    return Ok(Err(StepFailure {
                        reason: format!(
                            "the outcome of {} is unknown and the server could not be probed: {e}",
                            step.id
                        ),
                    }));
                }
            }
        }
    }

    fn reboot(
        &mut self,
        run: &RunRecord,
        plan: &ServerPlan,
        step: &PlannedStep,
        status: &mut ServerStatus,
        attempt: u32,
    ) -> Result<Result<(), StepFailure>, EngineError> {
        let req = self.request(run, plan, step, attempt);
        match self.target.reboot(&req) {
            Ok(outcome) => {
                let at = self.record(
                    run,
                    plan,
                    status,
                    &[Record::Rebooted {
                        output: excerpt(&outcome.output),
                    }],
                    Some(&self.audit(run, plan, step, Some(outcome.exit_code), "Restart-Computer")),
                )?;
                self.observer.on_event(&Event::Rebooted {
                    server: plan.fqdn.to_string(),
                    at,
                });
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(StepFailure {
                reason: format!("the reboot the installer asked for failed: {e}"),
            })),
        }
    }

    fn wait_retry(&mut self, plan: &ServerPlan, step: &PlannedStep, attempt: u32, reason: String) {
        let wait = policy::backoff(attempt, plan.fqdn.as_str());
        self.observer.on_event(&Event::StepRetrying {
            server: plan.fqdn.to_string(),
            step: step.id,
            attempt: attempt + 1,
            wait_ms: wait,
            reason,
        });
        self.clock.sleep(wait);
    }

    fn audit(
        &self,
        run: &RunRecord,
        plan: &ServerPlan,
        step: &PlannedStep,
        exit_code: Option<i32>,
        output: &str,
    ) -> AuditEntry {
        AuditEntry {
            run: run.id,
            at: self.clock.now(),
            operator: run.spec.operator.clone(),
            server: plan.fqdn.to_string(),
            step: step.id.to_string(),
            command: step.command.clone(),
            exit_code,
            output_excerpt: excerpt_short(output),
        }
    }
}

fn final_state(statuses: &[ServerStatus], interrupted: bool) -> RunState {
    if interrupted {
        return RunState::Interrupted;
    }
    if statuses.iter().all(|s| s.state == ServerState::Succeeded) {
        RunState::Succeeded
    } else {
        RunState::Failed
    }
}

fn pools_of(spec: &RunSpec) -> BTreeSet<String> {
    spec.plan.servers.iter().map(|s| s.pool.key()).collect()
}

fn minutes(ms: Millis) -> String {
    format!("{:.1} min", ms as f64 / 60_000.0)
}

fn last_line(output: &str) -> &str {
    output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no output)")
        .trim()
}

/// The end of the output, where errors are.
pub fn excerpt(s: &str) -> String {
    tail(s, OUTPUT_EXCERPT)
}

fn excerpt_short(s: &str) -> String {
    tail(s, 500)
}

fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..])
}
