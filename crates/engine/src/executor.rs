//! One server's procedure as a state machine. The executor never calls the target, waits or
//! reads a clock: it tells the dispatcher what it wants next ([`Want`]) and is fed the answer
//! ([`Input`]). It writes the journal through [`Cx`] at the time the dispatcher gives it, so the
//! same executor runs in simulated time (the lab) and in real time (threads for real servers).

use sfbpatch_plan::{Action, PlannedStep, ServerPlan, StepId};

use crate::engine::{EngineError, excerpt};
use crate::event::{Event, Observer};
use crate::policy::{self, ERROR_SUCCESS_REBOOT_REQUIRED, UNREACHABLE_ATTEMPTS};
use crate::status::{ServerState, ServerStatus, StepState};
use crate::store::{Append, AuditEntry, Record, RunRecord, ServerOutcome, StepResultKind};
use crate::target::{MachineFacts, Millis, Probe, ProbeVerdict, StepOutcome, TargetError};

/// What the dispatcher carries out for an executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Read what the machine runs (once, before its first step).
    Preflight,
    Execute,
    Probe,
    Reboot,
    Recover,
}

/// What an executor wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Carry out a call to the target for `step`.
    Call {
        call: Call,
        step: usize,
        attempt: u32,
    },
    /// Let this much time pass (retry backoff), then come back.
    Wait(Millis),
    /// The server is ready to enter its outage window; come back when a slot is granted.
    OutageSlot,
    /// The server is finished.
    Done,
}

/// The answer to the last [`Want`]: each call answers with its own type, so an executor
/// cannot be handed a probe where it waits for a step's outcome.
#[derive(Debug)]
pub enum Input {
    Start,
    /// The answer to [`Call::Preflight`].
    Facts(Result<MachineFacts, TargetError>),
    /// The answer to [`Call::Execute`], [`Call::Reboot`] and [`Call::Recover`].
    Outcome(Result<StepOutcome, TargetError>),
    /// The answer to [`Call::Probe`].
    Probe(Result<Probe, TargetError>),
    Waited,
    SlotGranted,
    /// The server's outage reaches the budget now (the dispatcher's timer): journal and tell
    /// it at the moment, not at the end of the step that is running.
    BudgetLine,
}

impl Input {
    /// The refusal of a server whose lock a newer controller of the run holds, if that is
    /// what the call got.
    pub fn fenced(&self) -> Option<&TargetError> {
        let e = match self {
            Input::Facts(Err(e)) => e,
            Input::Outcome(Err(e)) => e,
            Input::Probe(Err(e)) => e,
            _ => return None,
        };
        matches!(e, TargetError::Fenced { .. }).then_some(e)
    }
}

/// Why a probe was asked for.
#[derive(Debug, Clone)]
enum ProbeFor {
    /// The journal shows the step in flight from an earlier process.
    Resume,
    /// The last attempt's outcome is unknown.
    Unknown { limit: u32, message: String },
    /// Before an attempt that must not run twice (the installer): a first probe failed.
    BeforeAttempt,
}

#[derive(Debug, Clone)]
enum State {
    Begin,
    Preflight,
    PreInstallProbe {
        i: usize,
        attempt: u32,
    },
    Slot {
        i: usize,
        attempt: u32,
    },
    Exec {
        i: usize,
        attempt: u32,
        started: Millis,
    },
    RetryWait {
        i: usize,
        attempt: u32,
    },
    ProbeWait {
        i: usize,
        attempt: u32,
        tries: u32,
        why: ProbeFor,
    },
    Probing {
        i: usize,
        attempt: u32,
        tries: u32,
        why: ProbeFor,
    },
    Reboot {
        i: usize,
    },
    Recover {
        reason: String,
        outcome: ServerOutcome,
    },
    Done,
}

/// The journal, the observer and the time, lent by the dispatcher for one transition. What is
/// recorded is committed by the dispatcher when the transition ends, before anything it asks
/// for is carried out: write-ahead, with one commit per transition.
pub struct Cx<'c> {
    pub journal: &'c mut Vec<Append>,
    pub observer: &'c mut dyn Observer,
    pub run: &'c RunRecord,
    pub now: Millis,
}

pub struct Executor<'p> {
    pub plan: &'p ServerPlan,
    pub status: ServerStatus,
    state: State,
    /// Set by the dispatcher when the run stops (failure budget): a server that has not yet
    /// installed the update stops at the next step boundary, recovering if in outage.
    pub abort: Option<String>,
    /// Predicted outage, from earlier runs.
    pub predicted_outage: Millis,
    /// Predicted time from the server's start to its end (for estimates people read).
    pub predicted_duration: Millis,
    /// Set by the dispatcher for a server that must not start (a server it depends on did not
    /// finish, or its pool was stopped): it ends skipped with this reason.
    pub skip: Option<String>,
    /// The step whose effect was probed absent just before this attempt.
    pre_probed: Option<usize>,
    /// How long the step being carried out may take before it counts as hung: its rule's
    /// timeout, cut inside a users-facing outage window to what the outage budget leaves.
    pub execute_timeout: Millis,
    /// Since when probes have found the step's command still running on the server.
    running_since: Option<Millis>,
    /// Restarts asked for in this process.
    reboots: u32,
    /// Whether the operator was told that the outage budget is at risk while waiting.
    budget_warned: bool,
    /// Whether the dispatcher holds an outage slot for this server (granted, or kept for it
    /// when resumed inside its window). It keeps it until the window ends or the server
    /// finishes, even when a probe shows that the window has not taken effect yet.
    pub slot_held: bool,
}

struct Failure(String);

/// Restarts one process asks for on one server before it gives up.
const MAX_RESTARTS: u32 = 2;

impl<'p> Executor<'p> {
    pub fn new(plan: &'p ServerPlan, status: ServerStatus, predicted_outage: Millis) -> Self {
        Executor {
            plan,
            status,
            state: State::Begin,
            abort: None,
            predicted_outage,
            predicted_duration: predicted_outage,
            skip: None,
            pre_probed: None,
            execute_timeout: 0,
            running_since: None,
            reboots: 0,
            budget_warned: false,
            slot_held: false,
        }
    }

    /// Advance until the executor needs something from the dispatcher.
    pub fn next(&mut self, cx: &mut Cx<'_>, input: Input) -> Result<Want, EngineError> {
        let state = std::mem::replace(&mut self.state, State::Done);
        let want = self.transition(cx, state, input)?;
        Ok(want)
    }

    fn transition(
        &mut self,
        cx: &mut Cx<'_>,
        state: State,
        input: Input,
    ) -> Result<Want, EngineError> {
        match (state, input) {
            (State::Begin, _) => self.begin(cx),
            (State::Preflight, Input::Facts(result)) => self.preflighted(cx, result),
            (State::PreInstallProbe { i, attempt }, Input::Probe(result)) => match result {
                Ok(probe) if probe.verdict == ProbeVerdict::NotDone => {
                    self.record_probe(cx, i, &probe, None)?;
                    self.pre_probed = Some(i);
                    self.attempt(cx, i, attempt)
                }
                // Done, still running, or unreadable: the general probe path decides.
                result => self.probed(cx, i, attempt, 0, ProbeFor::BeforeAttempt, result),
            },
            (State::Slot { i, attempt }, Input::SlotGranted) => {
                self.slot_held = true;
                cx.observer.on_event(&Event::OutageStarted {
                    server: self.plan.fqdn.to_string(),
                    pool: self.plan.pool.to_string(),
                    at: cx.now,
                });
                self.execute(cx, i, attempt)
            }
            (
                State::Exec {
                    i,
                    attempt,
                    started,
                },
                Input::Outcome(result),
            ) => self.executed(cx, i, attempt, started, result),
            // The run stopped while the server waited for an outage slot.
            (State::Slot { i, .. }, Input::Waited) => self.enter(cx, i),
            (State::RetryWait { i, attempt }, Input::Waited) => self.attempt(cx, i, attempt + 1),
            (
                State::ProbeWait {
                    i,
                    attempt,
                    tries,
                    why,
                },
                Input::Waited,
            ) => {
                self.state = State::Probing {
                    i,
                    attempt,
                    tries: tries + 1,
                    why,
                };
                Ok(Want::Call {
                    call: Call::Probe,
                    step: i,
                    attempt,
                })
            }
            (
                State::Probing {
                    i,
                    attempt,
                    tries,
                    why,
                },
                Input::Probe(result),
            ) => self.probed(cx, i, attempt, tries, why, result),
            (State::Reboot { i }, Input::Outcome(Err(e))) if e.outcome_unknown() => {
                // The restart did not answer in time: the server may still be coming back.
                // Probe the installation (it tells a pending restart) before anything else.
                let message = format!("the restart the installer asked for: {e}");
                let attempt = self.status.step(StepId::InstallUpdate).attempts;
                let wait = self.backoff(cx, StepId::InstallUpdate, 1, message.clone());
                self.state = State::ProbeWait {
                    i,
                    attempt,
                    tries: 0,
                    why: ProbeFor::Unknown {
                        limit: attempt,
                        message,
                    },
                };
                Ok(Want::Wait(wait))
            }
            (State::Reboot { i }, Input::Outcome(result)) => match result {
                Ok(outcome) => {
                    let audit = self.audit(cx, i, Some(outcome.exit_code), "Restart-Computer");
                    self.record(
                        cx,
                        &[Record::Rebooted {
                            output: excerpt(&outcome.output),
                        }],
                        Some(&audit),
                    )?;
                    cx.observer.on_event(&Event::Rebooted {
                        server: self.plan.fqdn.to_string(),
                        at: cx.now,
                    });
                    self.enter(cx, i + 1)
                }
                Err(e) => self.fail(
                    cx,
                    Failure(format!("the reboot the installer asked for failed: {e}")),
                ),
            },
            (State::Recover { reason, outcome }, Input::Outcome(result)) => {
                let (output, back) = match result {
                    Ok(o) => (o.output, o.exit_code == 0),
                    Err(e) => (format!("recovery could not run: {e}"), false),
                };
                // Tell that the server is not safe: the reason is what the operator reads.
                let reason = if back {
                    reason
                } else {
                    format!(
                        "{reason}; recovery did not bring {} back into service: {}",
                        self.plan.fqdn,
                        why(&output)
                    )
                };
                self.record(
                    cx,
                    &[Record::Recovered {
                        output: excerpt(&output),
                    }],
                    None,
                )?;
                cx.observer.on_event(&Event::Recovered {
                    server: self.plan.fqdn.to_string(),
                    output,
                    at: cx.now,
                });
                if let Some(duration_ms) = self.status.outage_ms(cx.now) {
                    cx.observer.on_event(&Event::OutageEnded {
                        server: self.plan.fqdn.to_string(),
                        pool: self.plan.pool.to_string(),
                        duration_ms,
                        at: cx.now,
                    });
                }
                self.finish(cx, outcome, Some(reason))
            }
            (State::Done, _) => Ok(Want::Done),
            // The dispatcher answers each call with its own input: anything else is a bug in
            // it. Stop the run rather than guess (the journal holds everything done so far).
            (state, input) => Err(EngineError::Protocol(format!(
                "executor of {} in {state:?} got {input:?}",
                self.plan.fqdn
            ))),
        }
    }

    fn begin(&mut self, cx: &mut Cx<'_>) -> Result<Want, EngineError> {
        if self.status.is_finished() {
            return Ok(Want::Done);
        }
        if let Some(reason) = self.skip.take() {
            return self.finish(cx, ServerOutcome::Skipped, Some(reason));
        }
        if self.status.state == ServerState::Pending {
            let budget = cx.run.spec.policy.outage_budget_ms;
            if self.plan.outage_costs_users()
                && self.predicted_outage > budget
                && !cx.run.spec.policy.accept_resiliency
            {
                let reason = format!(
                    "predicted outage {} exceeds the outage budget {}; users of pool {} would go into resiliency mode (pass --accept-resiliency to start it anyway)",
                    minutes(self.predicted_outage),
                    minutes(budget),
                    self.plan.pool
                );
                return self.finish(cx, ServerOutcome::Skipped, Some(reason));
            }
            self.record(
                cx,
                &[Record::ServerStarted {
                    predicted_outage_ms: self.predicted_outage,
                }],
                None,
            )?;
            cx.observer.on_event(&Event::ServerStarted {
                server: self.plan.fqdn.to_string(),
                pool: self.plan.pool.to_string(),
                predicted_outage_ms: self.predicted_outage,
                predicted_duration_ms: self.predicted_duration,
                outage_budget_ms: cx.run.spec.policy.outage_budget_ms,
                at: cx.now,
            });
        }
        if self.status.preflight.is_none() {
            self.state = State::Preflight;
            return Ok(Want::Call {
                call: Call::Preflight,
                step: 0,
                attempt: 0,
            });
        }
        self.enter(cx, 0)
    }

    /// The pre-flight's answer: journal it, refuse a machine that must restart first, and
    /// settle as not applicable the steps whose object the machine does not have.
    fn preflighted(
        &mut self,
        cx: &mut Cx<'_>,
        result: Result<MachineFacts, TargetError>,
    ) -> Result<Want, EngineError> {
        let facts = match result {
            Ok(f) => f,
            Err(e) => {
                return self.fail(
                    cx,
                    Failure(format!(
                        "pre-flight: could not read what {} runs: {e}; nothing was changed",
                        self.plan.fqdn
                    )),
                );
            }
        };
        self.record(
            cx,
            &[Record::Preflight {
                facts: facts.clone(),
            }],
            None,
        )?;
        if facts.reboot_pending {
            return self.fail(
                cx,
                Failure(format!(
                    "pre-flight: a restart is pending on {}; restart it, then run again (nothing was changed)",
                    self.plan.fqdn
                )),
            );
        }
        // A server found out of service that this run did not take out: someone else is at
        // work on it, or it is broken. Leave it as found (a Front End server's pool is already
        // short of one server).
        if !facts.in_service && facts.build != Some(cx.run.spec.plan.package.version) {
            return self.fail(
                cx,
                Failure(format!(
                    "pre-flight: {} is already out of service ({} of {} Skype for Business \
                     services running{}); sfbpatch leaves a server it finds out of service as it \
                     is: find out why, bring it back (Start-CsWindowsService, or \
                     Invoke-CsComputerFailBack), then run again; nothing was changed",
                    self.plan.fqdn,
                    facts.services_running,
                    facts.services.len(),
                    if facts.w3svc { ", W3SVC present" } else { "" }
                )),
            );
        }
        // The machine's own build decides too (the topology may be out of date): never another
        // product line, never a downgrade.
        let package = &cx.run.spec.plan.package;
        if let Some(installed) = facts.build {
            let have = sfbpatch_topology::ProductLine::from_build(installed.0);
            if let (Some(have), Some(want)) = (have, package.product_line())
                && have != want
            {
                return self.fail(
                    cx,
                    Failure(format!(
                        "pre-flight: {} runs {} (build {installed}); the package {} is for \
                         {want}, and an update is never applied to another product line; nothing \
                         was changed",
                        self.plan.fqdn,
                        have.name(),
                        package.name
                    )),
                );
            }
            if installed > package.version {
                return self.fail(
                    cx,
                    Failure(format!(
                        "pre-flight: {} runs build {installed}, newer than the package's {}; \
                         sfbpatch does not downgrade; nothing was changed",
                        self.plan.fqdn, package.version
                    )),
                );
            }
        }
        // The plan installs the update here, but the machine has nothing of Skype for Business:
        // the topology (or inventory) does not describe it. Stop before any outage.
        let installs_here = self
            .plan
            .find_step(StepId::InstallUpdate)
            .is_some_and(|st| st.not_applicable.is_none() && st.run_on.is_none());
        if installs_here && !facts.management_shell && facts.build.is_none() {
            return self.fail(
                cx,
                Failure(format!(
                    "pre-flight: the plan installs the update on {} ({}), but it has no Skype for \
                     Business components (no Management Shell, no installed build{}): the topology \
                     does not describe this machine; nothing was changed",
                    self.plan.fqdn,
                    self.plan.kind.as_str(),
                    if facts.sql_server {
                        ", SQL Server only"
                    } else {
                        ""
                    }
                )),
            );
        }
        let package = cx.run.spec.plan.package.version;
        let current = facts.build == Some(package);
        let mut missing = Vec::new();
        for step in &self.plan.steps {
            if step.not_applicable.is_some() || step.run_on.is_some() {
                continue;
            }
            if current && let Some(reason) = finished_already(step.id, facts.in_service, package) {
                missing.push(Record::StepNotApplicable {
                    step: step.id,
                    reason,
                });
                continue;
            }
            let reason = match step.id {
                StepId::StopCsServices | StepId::StopCsServicesGac | StepId::StartCsServices
                    if facts.services.is_empty() =>
                {
                    Some("the pre-flight found no Skype for Business services on this machine")
                }
                StepId::StopW3svc | StepId::StartW3svc if !facts.w3svc => {
                    Some("the pre-flight found no IIS (W3SVC) on this machine")
                }
                _ => None,
            };
            if let Some(reason) = reason {
                missing.push(Record::StepNotApplicable {
                    step: step.id,
                    reason: reason.to_string(),
                });
            }
        }
        if !missing.is_empty() {
            self.record(cx, &missing, None)?;
        }
        self.enter(cx, 0)
    }

    /// Go to step `i`, skipping what is done.
    fn enter(&mut self, cx: &mut Cx<'_>, mut i: usize) -> Result<Want, EngineError> {
        self.check_budget(cx)?;
        let steps = &self.plan.steps;
        loop {
            while i < steps.len() && self.status.step(steps[i].id).state.is_settled() {
                i += 1;
            }
            match steps.get(i).and_then(|s| s.not_applicable.as_ref()) {
                Some(reason) => {
                    let was_in_outage = self.status.in_outage();
                    self.record(
                        cx,
                        &[Record::StepNotApplicable {
                            step: steps[i].id,
                            reason: reason.clone(),
                        }],
                        None,
                    )?;
                    self.outage_may_have_ended(cx, was_in_outage);
                }
                None => break,
            }
        }
        if i == steps.len() {
            let outcome = if self.nothing_ran() {
                ServerOutcome::AlreadyCurrent
            } else {
                ServerOutcome::Succeeded
            };
            return self.finish(cx, outcome, None);
        }
        if let Some(reason) = self.abort.clone()
            && !self.installed()
        {
            let reason = format!("stopped before {}: {reason}", steps[i].id);
            return self.fail_with(cx, reason, ServerOutcome::Skipped);
        }
        let step = &steps[i];
        let st = self.status.step(step.id);
        if matches!(st.state, StepState::Running | StepState::Unknown) {
            let attempt = st.attempts;
            self.state = State::Probing {
                i,
                attempt,
                tries: 1,
                why: ProbeFor::Resume,
            };
            return Ok(Want::Call {
                call: Call::Probe,
                step: i,
                attempt,
            });
        }
        if let Action::DatabasesUpdatedBy { server } = &step.action {
            let attempt = st.attempts + 1;
            let output = format!(
                "databases of {} are updated once, by {server}, after every node has the update",
                self.plan.sql_server_fqdn
            );
            self.record(
                cx,
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
            return self.enter(cx, i + 1);
        }
        let attempt = st.attempts + 1;
        self.attempt(cx, i, attempt)
    }

    /// Whether the server ended without a change: no outage, no step that changes anything
    /// carried out, and something (the pre-flight's build or a probe) showed it current.
    fn nothing_ran(&self) -> bool {
        let on_build = self
            .status
            .preflight
            .as_ref()
            .and_then(|f| f.build)
            .is_some_and(|b| Some(b) == self.plan_build());
        let databases_found_current = self
            .status
            .find_step(StepId::UpdateDatabases)
            .is_some_and(|s| s.state == StepState::Succeeded && s.attempts == 0);
        self.status.outage_started_at.is_none()
            && (on_build || databases_found_current)
            && self.status.steps.iter().all(|s| {
                matches!(s.id, StepId::CheckAdminRole | StepId::Verify)
                    || s.state == StepState::NotApplicable
                    || s.attempts == 0
            })
    }

    fn plan_build(&self) -> Option<sfbpatch_plan::Build> {
        self.plan.steps.iter().find_map(|s| match &s.action {
            sfbpatch_plan::Action::Verify { build, .. } => Some(*build),
            _ => None,
        })
    }

    /// An installer found done by a probe whose server still waits for the restart it asked for
    /// (exit 3010 before a crash): restart it before anything else, as after a 3010 result.
    fn reboot_if_pending(&mut self, i: usize, probe: &Probe) -> Option<Want> {
        if self.plan.steps[i].id != StepId::InstallUpdate || !restart_pending(probe) {
            return None;
        }
        Some(self.reboot(i))
    }

    /// Ask for the restart the installer needs, at most [`MAX_RESTARTS`] times per process.
    fn reboot(&mut self, i: usize) -> Want {
        self.reboots += 1;
        self.state = State::Reboot { i };
        Want::Call {
            call: Call::Reboot,
            step: i,
            attempt: self.status.step(StepId::InstallUpdate).attempts,
        }
    }

    /// When the server stops with the update installed but its database step not done: the
    /// new binaries run on old databases. Says so, with the exact command that finishes it.
    fn databases_left_behind(&self) -> Option<String> {
        if !self.installed() {
            return None;
        }
        let step = self.plan.find_step(StepId::UpdateDatabases)?;
        let command = step.command.as_deref()?;
        if self.status.step(StepId::UpdateDatabases).state.is_settled() {
            return None;
        }
        let host = step.run_on.as_ref().unwrap_or(&self.plan.fqdn);
        Some(format!(
            "databases behind: build {} is installed but its databases are not updated; finish \
             with `{command}` on {host}, or apply again with --only {} (the pre-flight skips what \
             is done: only the database step runs)",
            self.plan_build()
                .map_or_else(String::new, |b| b.to_string()),
            self.plan.fqdn
        ))
    }

    fn installed(&self) -> bool {
        self.status
            .find_step(StepId::InstallUpdate)
            .is_some_and(|s| s.state == StepState::Succeeded)
    }

    /// Tell the observer when the outage window closed with the last transition.
    fn outage_may_have_ended(&self, cx: &mut Cx<'_>, was_in_outage: bool) {
        if was_in_outage && !self.status.in_outage() {
            cx.observer.on_event(&Event::OutageEnded {
                server: self.plan.fqdn.to_string(),
                pool: self.plan.pool.to_string(),
                duration_ms: self.status.outage_ms(cx.now).unwrap_or(0),
                at: cx.now,
            });
        }
    }

    fn attempt(&mut self, cx: &mut Cx<'_>, i: usize, attempt: u32) -> Result<Want, EngineError> {
        let step = &self.plan.steps[i];
        // The installer runs once per server: if the server already has the build, it is not
        // run again, whatever the journal says. A database update that opens the outage window
        // is probed too: databases already current cost no outage.
        let opens_window_with_databases = step.id == StepId::UpdateDatabases
            && step.in_outage
            && self.status.outage_started_at.is_none();
        if (step.id == StepId::InstallUpdate || opens_window_with_databases)
            && self.pre_probed != Some(i)
        {
            self.state = State::PreInstallProbe { i, attempt };
            return Ok(Want::Call {
                call: Call::Probe,
                step: i,
                attempt,
            });
        }
        if step.in_outage && self.status.outage_started_at.is_none() && !self.slot_held {
            self.state = State::Slot { i, attempt };
            return Ok(Want::OutageSlot);
        }
        self.execute(cx, i, attempt)
    }

    /// The outage budget left after this step if the rest of the window takes its predicted
    /// time: what a step may take before the pool's users would pass the 30-minute line.
    fn budget_left(&self, cx: &Cx<'_>, i: usize) -> Option<Millis> {
        let step = &self.plan.steps[i];
        if !step.in_outage
            || !self.plan.outage_costs_users()
            || cx.run.spec.policy.accept_resiliency
        {
            return None;
        }
        let elapsed = self.status.outage_ms(cx.now).unwrap_or(0);
        let after: Millis = self.plan.steps[i + 1..]
            .iter()
            .filter(|s| s.in_outage && s.not_applicable.is_none())
            .filter(|s| !self.status.step(s.id).state.is_settled())
            .map(|s| policy::default_duration(s.id))
            .sum();
        Some(
            cx.run
                .spec
                .policy
                .outage_budget_ms
                .saturating_sub(elapsed + after),
        )
    }

    /// The timeout for carrying out step `i` now: the rule's, or inside a users-facing outage
    /// window what the budget leaves (a minute short of it), but never less than a quarter more
    /// than the step's predicted time. Says so when the budget is at risk.
    fn timeout_for(&self, cx: &mut Cx<'_>, i: usize) -> Millis {
        let step = &self.plan.steps[i];
        let rule = policy::retry_rule(step.id).timeout;
        let Some(left) = self.budget_left(cx, i) else {
            return rule;
        };
        let predicted = policy::default_duration(step.id);
        let floor = predicted + predicted / 4;
        let timeout = left.saturating_sub(policy::MINUTE).max(floor).min(rule);
        if left < floor {
            cx.observer.on_event(&Event::OutageBudgetAtRisk {
                server: self.plan.fqdn.to_string(),
                pool: self.plan.pool.to_string(),
                step: step.id,
                budget_left_ms: left,
                predicted_ms: predicted,
                at: cx.now,
            });
        }
        timeout
    }

    fn execute(&mut self, cx: &mut Cx<'_>, i: usize, attempt: u32) -> Result<Want, EngineError> {
        self.execute_timeout = self.timeout_for(cx, i);
        let step = &self.plan.steps[i];
        self.record(
            cx,
            &[Record::StepIntent {
                step: step.id,
                attempt,
                command: None,
            }],
            None,
        )?;
        cx.observer.on_event(&Event::StepStarted {
            server: self.plan.fqdn.to_string(),
            step: step.id,
            attempt,
            command: step.command.clone(),
            at: cx.now,
        });
        self.state = State::Exec {
            i,
            attempt,
            started: cx.now,
        };
        Ok(Want::Call {
            call: Call::Execute,
            step: i,
            attempt,
        })
    }

    fn executed(
        &mut self,
        cx: &mut Cx<'_>,
        i: usize,
        attempt: u32,
        started: Millis,
        result: Result<StepOutcome, TargetError>,
    ) -> Result<Want, EngineError> {
        let step: &PlannedStep = &self.plan.steps[i];
        let rule = policy::retry_rule(step.id);
        let duration = cx.now.saturating_sub(started);
        match result {
            Ok(outcome) => {
                let reboot = step.id == StepId::InstallUpdate
                    && outcome.exit_code == ERROR_SUCCESS_REBOOT_REQUIRED;
                let ok = outcome.exit_code == 0 || reboot;
                let was_in_outage = self.status.in_outage();
                self.record_result(cx, i, attempt, &outcome, ok, duration)?;
                if ok {
                    self.outage_may_have_ended(cx, was_in_outage);
                    if reboot {
                        return Ok(self.reboot(i));
                    }
                    return self.enter(cx, i + 1);
                }
                let code = outcome.exit_code;
                // Another installation in progress (perhaps ours, from before a crash): never
                // run the installer again blind; the next attempt probes first and waits for it.
                if step.id == StepId::InstallUpdate && code == policy::ERROR_INSTALL_ALREADY_RUNNING
                {
                    self.pre_probed = None;
                }
                if rule.retries_exit(code) && attempt < rule.max_attempts {
                    let wait =
                        policy::retry_wait(step.id, Some(code), attempt, self.plan.fqdn.as_str());
                    match self.budget_left(cx, i) {
                        Some(left) if left < wait + policy::default_duration(step.id) => {
                            let reason = format!(
                                "{} exited with code {code}: {}; the outage budget left ({}) \
                                 cannot hold another attempt (predicted {}), so it is not retried \
                                 inside the window",
                                step.id,
                                why(&outcome.output),
                                minutes(left),
                                minutes(policy::default_duration(step.id))
                            );
                            return self.fail(cx, Failure(reason));
                        }
                        _ => {
                            return self.wait_retry(
                                cx,
                                i,
                                attempt,
                                code,
                                format!("exit code {code}"),
                            );
                        }
                    }
                }
                if step.id == StepId::CheckFabricState && code == sfbpatch_plan::POOL_BUSY_EXIT {
                    return self.fail(
                        cx,
                        Failure(format!(
                            "pool {} answered Busy {attempt} times, 10 minutes apart: a pool problem; the pool is not patched",
                            self.plan.pool
                        )),
                    );
                }
                let reason = format!(
                    "{} exited with code {code}{}: {}",
                    step.id,
                    if attempt > 1 {
                        format!(" after {attempt} attempts")
                    } else {
                        String::new()
                    },
                    why(&outcome.output)
                );
                self.fail(cx, Failure(reason))
            }
            Err(e) if e.outcome_unknown() => {
                let message = e.to_string();
                let audit = self.audit(cx, i, None, &message);
                self.record(
                    cx,
                    &[Record::StepResult {
                        step: step.id,
                        attempt,
                        result: StepResultKind::Unknown,
                        exit_code: None,
                        output: message.clone(),
                        duration_ms: duration,
                    }],
                    Some(&audit),
                )?;
                cx.observer.on_event(&Event::StepFinished {
                    server: self.plan.fqdn.to_string(),
                    step: step.id,
                    attempt,
                    exit_code: None,
                    succeeded: false,
                    duration_ms: duration,
                    at: cx.now,
                });
                let mut limit = if matches!(e, TargetError::Unreachable { .. }) {
                    UNREACHABLE_ATTEMPTS
                } else {
                    rule.max_attempts.max(2)
                };
                // A step that hung inside a users-facing window is not tried again when the
                // budget left cannot hold another run of it: the server is recovered instead.
                let mut message = message;
                if matches!(e, TargetError::TimedOut { .. })
                    && let Some(left) = self.budget_left(cx, i)
                    && left < policy::default_duration(step.id)
                {
                    limit = attempt;
                    message = format!(
                        "{message}; the outage budget left ({}) cannot hold another attempt \
                         (predicted {}), so it is not retried inside the window",
                        minutes(left),
                        minutes(policy::default_duration(step.id))
                    );
                }
                let wait = self.backoff(cx, step.id, attempt, message.clone());
                self.state = State::ProbeWait {
                    i,
                    attempt,
                    tries: 0,
                    why: ProbeFor::Unknown { limit, message },
                };
                Ok(Want::Wait(wait))
            }
            Err(e) => {
                let message = e.to_string();
                let audit = self.audit(cx, i, None, &message);
                self.record(
                    cx,
                    &[Record::StepResult {
                        step: step.id,
                        attempt,
                        result: StepResultKind::Failed,
                        exit_code: None,
                        output: message.clone(),
                        duration_ms: duration,
                    }],
                    Some(&audit),
                )?;
                self.fail(cx, Failure(message))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn probed(
        &mut self,
        cx: &mut Cx<'_>,
        i: usize,
        attempt: u32,
        tries: u32,
        why: ProbeFor,
        result: Result<Probe, TargetError>,
    ) -> Result<Want, EngineError> {
        let step_id = self.plan.steps[i].id;
        match result {
            Ok(probe) if probe.verdict == ProbeVerdict::Running => {
                self.record_probe(cx, i, &probe, None)?;
                self.still_running(cx, i, attempt, why)
            }
            Ok(probe) => {
                self.running_since = None;
                // A command that may have run without its result being journalled (the
                // controller died, the connection or the store went away) gets its audit row
                // now: what the probe saw.
                let lost = probe.verdict == ProbeVerdict::Done
                    && matches!(why, ProbeFor::Resume | ProbeFor::Unknown { .. });
                let audit = lost.then(|| {
                    self.audit(
                        cx,
                        i,
                        None,
                        &format!(
                            "found done by its probe after an interruption (the command's own \
                             output was lost with the controller or the connection): {}",
                            probe.facts
                        ),
                    )
                });
                self.record_probe(cx, i, &probe, audit.as_ref())?;
                if probe.verdict == ProbeVerdict::Done {
                    if step_id == StepId::InstallUpdate
                        && restart_pending(&probe)
                        && self.reboots >= MAX_RESTARTS
                    {
                        return self.fail(
                            cx,
                            Failure(format!(
                                "{} still waits for a restart after {} restarts were asked for; \
                                 restart it by hand, then resume",
                                self.plan.fqdn, self.reboots
                            )),
                        );
                    }
                    if let Some(want) = self.reboot_if_pending(i, &probe) {
                        return Ok(want);
                    }
                    return self.enter(cx, i);
                }
                match why {
                    ProbeFor::BeforeAttempt => {
                        self.pre_probed = Some(i);
                        self.attempt(cx, i, attempt)
                    }
                    ProbeFor::Resume => self.attempt(cx, i, attempt + 1),
                    ProbeFor::Unknown { limit, .. } if attempt < limit => {
                        self.attempt(cx, i, attempt + 1)
                    }
                    // The attempt took no effect and the window never opened (the server
                    // stayed in service): the budget is whole again for the next attempt.
                    ProbeFor::Unknown { .. }
                        if self.plan.steps[i].in_outage
                            && self.status.outage_started_at.is_none()
                            && attempt < policy::retry_rule(step_id).max_attempts.max(2) =>
                    {
                        self.attempt(cx, i, attempt + 1)
                    }
                    ProbeFor::Unknown { message, .. } => self.fail(
                        cx,
                        Failure(format!(
                            "{step_id} failed after {attempt} attempt{}: {message}",
                            if attempt == 1 { "" } else { "s" }
                        )),
                    ),
                }
            }
            // A probe only reads: when it cannot, read again later (never run the step blind).
            Err(e)
                if (e.outcome_unknown() || matches!(e, TargetError::ReadFailed { .. }))
                    && tries < UNREACHABLE_ATTEMPTS =>
            {
                let wait = policy::backoff(tries.max(1), self.plan.fqdn.as_str());
                // Nothing ran yet: when the budget cannot hold more waiting and the step, stop
                // now and bring the server back rather than pass the line.
                if matches!(why, ProbeFor::BeforeAttempt)
                    && let Some(left) = self.budget_left(cx, i)
                    && left < wait + policy::default_duration(step_id)
                {
                    return self.fail(
                        cx,
                        Failure(format!(
                            "{step_id} was not run: the server could not be probed first (it \
                             must not run twice): {e}; the outage budget left ({}) cannot hold \
                             another wait and the step (predicted {})",
                            minutes(left),
                            minutes(policy::default_duration(step_id))
                        )),
                    );
                }
                self.announce_retry(cx, step_id, tries.max(1), wait, e.to_string());
                self.warn_if_budget_at_risk(cx, i, wait);
                self.state = State::ProbeWait {
                    i,
                    attempt,
                    tries,
                    why,
                };
                Ok(Want::Wait(wait))
            }
            Err(e) => self.fail(
                cx,
                Failure(match why {
                    ProbeFor::BeforeAttempt => format!(
                        "{step_id} was not run: the server could not be probed first (it must \
                         not run twice): {e}"
                    ),
                    ProbeFor::Unknown { message, .. } => format!(
                        "{message}; the outcome is unknown and the server could not be probed \
                         since: {e}"
                    ),
                    ProbeFor::Resume => format!(
                        "the outcome of {step_id} is unknown and the server could not be probed: {e}"
                    ),
                }),
            ),
        }
    }

    /// A probe found the step's command still running on the server (an installer that
    /// outlived its session, or the one a crashed controller started): wait for it and probe
    /// again, up to the step's timeout; never start it a second time.
    fn still_running(
        &mut self,
        cx: &mut Cx<'_>,
        i: usize,
        attempt: u32,
        why: ProbeFor,
    ) -> Result<Want, EngineError> {
        let step = self.plan.steps[i].id;
        let since = *self.running_since.get_or_insert(cx.now);
        let waited = cx.now.saturating_sub(since);
        let limit = policy::retry_rule(step).timeout;
        if waited >= limit {
            self.running_since = None;
            return self.fail(
                cx,
                Failure(format!(
                    "{step} is still running on {} after {} of waiting; it was not started again \
                     (it finishes on its own: then resume, or apply again with --only {})",
                    self.plan.fqdn,
                    minutes(waited),
                    self.plan.fqdn
                )),
            );
        }
        self.announce_retry(
            cx,
            step,
            attempt.saturating_sub(1),
            policy::RUNNING_POLL,
            format!("{step} is still running on the server; waiting for it to finish"),
        );
        self.warn_if_budget_at_risk(cx, i, policy::RUNNING_POLL);
        self.state = State::ProbeWait {
            i,
            attempt,
            tries: 0,
            why,
        };
        Ok(Want::Wait(policy::RUNNING_POLL))
    }

    /// Inside a users-facing outage window, tell the operator (once) when waiting `wait` more
    /// and then the rest of the procedure would pass the outage budget.
    fn warn_if_budget_at_risk(&mut self, cx: &mut Cx<'_>, i: usize, wait: Millis) {
        if self.budget_warned {
            return;
        }
        let Some(left) = self.budget_left(cx, i) else {
            return;
        };
        let step = self.plan.steps[i].id;
        let predicted = policy::default_duration(step);
        if left < wait + predicted {
            self.budget_warned = true;
            cx.observer.on_event(&Event::OutageBudgetAtRisk {
                server: self.plan.fqdn.to_string(),
                pool: self.plan.pool.to_string(),
                step,
                budget_left_ms: left,
                predicted_ms: wait + predicted,
                at: cx.now,
            });
        }
    }

    fn wait_retry(
        &mut self,
        cx: &mut Cx<'_>,
        i: usize,
        attempt: u32,
        exit_code: i32,
        reason: String,
    ) -> Result<Want, EngineError> {
        let step = self.plan.steps[i].id;
        let wait = policy::retry_wait(step, Some(exit_code), attempt, self.plan.fqdn.as_str());
        self.announce_retry(cx, step, attempt, wait, reason);
        self.state = State::RetryWait { i, attempt };
        Ok(Want::Wait(wait))
    }

    fn announce_retry(
        &self,
        cx: &mut Cx<'_>,
        step: StepId,
        attempt: u32,
        wait: Millis,
        reason: String,
    ) {
        cx.observer.on_event(&Event::StepRetrying {
            server: self.plan.fqdn.to_string(),
            step,
            attempt: attempt + 1,
            wait_ms: wait,
            reason,
            at: cx.now,
        });
    }

    fn backoff(&self, cx: &mut Cx<'_>, step: StepId, attempt: u32, reason: String) -> Millis {
        let wait = policy::backoff(attempt, self.plan.fqdn.as_str());
        self.announce_retry(cx, step, attempt, wait, reason);
        wait
    }

    fn fail(&mut self, cx: &mut Cx<'_>, failure: Failure) -> Result<Want, EngineError> {
        self.fail_with(cx, failure.0, ServerOutcome::Failed)
    }

    /// End the server with `outcome`, recovering it first when it is inside its outage window.
    fn fail_with(
        &mut self,
        cx: &mut Cx<'_>,
        reason: String,
        outcome: ServerOutcome,
    ) -> Result<Want, EngineError> {
        let reason = match self.databases_left_behind() {
            Some(note) => format!("{reason}; {note}"),
            None => reason,
        };
        if self.status.in_outage() {
            self.state = State::Recover { reason, outcome };
            return Ok(Want::Call {
                call: Call::Recover,
                step: 0,
                attempt: 0,
            });
        }
        self.finish(cx, outcome, Some(reason))
    }

    fn finish(
        &mut self,
        cx: &mut Cx<'_>,
        outcome: ServerOutcome,
        reason: Option<String>,
    ) -> Result<Want, EngineError> {
        self.record(
            cx,
            &[Record::ServerFinished {
                outcome,
                reason: reason.clone(),
            }],
            None,
        )?;
        cx.observer.on_event(&Event::ServerFinished {
            server: self.plan.fqdn.to_string(),
            pool: self.plan.pool.to_string(),
            outcome,
            reason,
            outage_ms: self.status.outage_ms(cx.now),
            at: cx.now,
        });
        self.state = State::Done;
        Ok(Want::Done)
    }

    /// The outage budget line, checked between two inputs (the dispatcher's timer).
    pub fn budget_line(&mut self, cx: &mut Cx<'_>) -> Result<(), EngineError> {
        self.check_budget(cx)
    }

    fn check_budget(&mut self, cx: &mut Cx<'_>) -> Result<(), EngineError> {
        let budget = cx.run.spec.policy.outage_budget_ms;
        if self.plan.outage_costs_users() && self.status.in_outage() && !self.status.budget_exceeded
        {
            let elapsed = self.status.outage_ms(cx.now).unwrap_or(0);
            if elapsed > budget {
                self.record(
                    cx,
                    &[Record::OutageBudgetExceeded { budget_ms: budget }],
                    None,
                )?;
                cx.observer.on_event(&Event::OutageBudgetExceeded {
                    server: self.plan.fqdn.to_string(),
                    pool: self.plan.pool.to_string(),
                    budget_ms: budget,
                    elapsed_ms: elapsed,
                    at: cx.now,
                });
            }
        }
        Ok(())
    }

    fn record(
        &mut self,
        cx: &mut Cx<'_>,
        records: &[Record],
        audit: Option<&AuditEntry>,
    ) -> Result<(), EngineError> {
        cx.journal.push(Append {
            at: cx.now,
            run: cx.run.id,
            server: self.plan.fqdn.to_string(),
            role: self.plan.kind,
            records: records.to_vec(),
            audit: audit.cloned(),
        });
        for r in records {
            self.status.apply(cx.now, r);
        }
        Ok(())
    }

    fn record_result(
        &mut self,
        cx: &mut Cx<'_>,
        i: usize,
        attempt: u32,
        outcome: &StepOutcome,
        ok: bool,
        duration: Millis,
    ) -> Result<(), EngineError> {
        let step = self.plan.steps[i].id;
        let output = excerpt(&outcome.output);
        let audit = self.audit(cx, i, Some(outcome.exit_code), &output);
        self.record(
            cx,
            &[Record::StepResult {
                step,
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
        cx.observer.on_event(&Event::StepFinished {
            server: self.plan.fqdn.to_string(),
            step,
            attempt,
            exit_code: Some(outcome.exit_code),
            succeeded: ok,
            duration_ms: duration,
            at: cx.now,
        });
        Ok(())
    }

    fn record_probe(
        &mut self,
        cx: &mut Cx<'_>,
        i: usize,
        probe: &Probe,
        audit: Option<&AuditEntry>,
    ) -> Result<(), EngineError> {
        let step = self.plan.steps[i].id;
        let done = probe.verdict == ProbeVerdict::Done;
        self.record(
            cx,
            &[Record::StepProbed {
                step,
                done,
                facts: excerpt(&probe.facts),
            }],
            audit,
        )?;
        cx.observer.on_event(&Event::StepProbed {
            server: self.plan.fqdn.to_string(),
            step,
            done,
            running: probe.verdict == ProbeVerdict::Running,
            at: cx.now,
        });
        Ok(())
    }

    fn audit(&self, cx: &Cx<'_>, i: usize, exit_code: Option<i32>, output: &str) -> AuditEntry {
        let step = &self.plan.steps[i];
        AuditEntry {
            run: cx.run.id,
            at: cx.now,
            operator: cx.run.spec.operator.clone(),
            server: self.plan.fqdn.to_string(),
            step: step.id.to_string(),
            command: step.command.clone(),
            exit_code,
            output_excerpt: crate::engine::excerpt_short(output),
        }
    }
}

/// Why a step has nothing to do on a server the pre-flight found on the package's build:
/// staging and installing are done; in service, so is every restart. What may be left is the
/// database update (probed before it runs) and the check.
fn finished_already(step: StepId, in_service: bool, build: sfbpatch_plan::Build) -> Option<String> {
    let always = matches!(
        step,
        StepId::StageUpdate
            | StepId::InstallUpdate
            | StepId::CloseManagementShells
            | StepId::StopCsServicesGac
    );
    let restart = matches!(
        step,
        StepId::CheckFabricState
            | StepId::Failover
            | StepId::StopCsServices
            | StepId::StopW3svc
            | StepId::StartW3svc
            | StepId::StartCsServices
            | StepId::Failback
    );
    if always {
        Some(format!(
            "the pre-flight found build {build} installed already"
        ))
    } else if restart && in_service {
        Some(format!(
            "the pre-flight found build {build} installed and the server in service"
        ))
    } else {
        None
    }
}

pub(crate) use crate::human::minutes;

/// Whether a probe's facts say Windows waits for a restart.
fn restart_pending(probe: &Probe) -> bool {
    serde_json::from_str::<serde_json::Value>(&probe.facts)
        .is_ok_and(|facts| facts["reboot_pending"] == serde_json::Value::Bool(true))
}

/// The part of a failed step's output that says why: every listed problem (`- ...` lines, as
/// `verify` prints them), or the last line.
fn why(output: &str) -> String {
    let problems: Vec<&str> = output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .collect();
    if problems.is_empty() {
        last_line(output).to_string()
    } else {
        problems.join("; ")
    }
}

fn last_line(output: &str) -> &str {
    output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no output)")
        .trim()
}

#[cfg(test)]
#[path = "executor_tests.rs"]
mod tests;
