//! Folding a run's journal into per-server status. The journal is the only source of truth:
//! status, resume and reports are all computed from it with [`ServerStatus::apply`].

use serde::Serialize;
use sfbpatch_plan::{ServerKind, ServerPlan, StepId};

use crate::store::{JournalEntry, Record, ServerOutcome, StepResultKind};
use crate::target::{MachineFacts, Millis};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
    /// On the package's build and in service already: nothing ran.
    AlreadyCurrent,
}

impl ServerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Pending => "pending",
            ServerState::Running => "running",
            ServerState::Succeeded => "succeeded",
            ServerState::Failed => "failed",
            ServerState::Skipped => "skipped",
            ServerState::AlreadyCurrent => "already-current",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepState {
    Pending,
    /// Intent recorded, no result: in flight, or interrupted (a probe decides on resume).
    Running,
    /// The last attempt's outcome is unknown: a probe decides.
    Unknown,
    Succeeded,
    Failed,
    /// The machine has nothing for the step to act on; it is not run.
    NotApplicable,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Unknown => "unknown",
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            StepState::NotApplicable => "not-applicable",
        }
    }

    /// Done with: succeeded, or not applicable.
    pub fn is_settled(self) -> bool {
        matches!(self, StepState::Succeeded | StepState::NotApplicable)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepStatus {
    pub id: StepId,
    pub state: StepState,
    /// Why the step is not applicable, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub attempts: u32,
    /// When the first attempt started and the last one ended (target clock).
    pub started_at: Option<Millis>,
    pub ended_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerStatus {
    pub fqdn: String,
    pub pool: String,
    pub kind: ServerKind,
    pub state: ServerState,
    pub reason: Option<String>,
    pub steps: Vec<StepStatus>,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// Start of `stop-cs-services`.
    pub outage_started_at: Option<Millis>,
    /// End of `start-cs-services`, or of the recovery after a failure.
    pub outage_ended_at: Option<Millis>,
    pub budget_exceeded: bool,
    pub last_output: Option<String>,
    /// What the pre-flight probe found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preflight: Option<MachineFacts>,
    /// The steps of the outage window, in order (from the plan).
    #[serde(skip)]
    pub outage_steps: Vec<StepId>,
    /// Whether a step of the outage window is known to have run (a result, or a probe that
    /// found it done). Until then, an attempt a probe finds without effect (its controller
    /// died, or it hung) never took the server out: the window opens with the next attempt.
    #[serde(skip)]
    pub outage_took_effect: bool,
}

impl ServerStatus {
    pub fn new(plan: &ServerPlan) -> Self {
        ServerStatus {
            fqdn: plan.fqdn.to_string(),
            pool: plan.pool.to_string(),
            kind: plan.kind,
            state: ServerState::Pending,
            reason: None,
            steps: plan
                .steps
                .iter()
                .map(|s| StepStatus {
                    id: s.id,
                    state: StepState::Pending,
                    reason: None,
                    attempts: 0,
                    started_at: None,
                    ended_at: None,
                })
                .collect(),
            started_at: None,
            finished_at: None,
            outage_started_at: None,
            outage_ended_at: None,
            budget_exceeded: false,
            last_output: None,
            preflight: None,
            outage_took_effect: false,
            outage_steps: plan
                .steps
                .iter()
                .filter(|s| s.in_outage)
                .map(|s| s.id)
                .collect(),
        }
    }

    pub fn step(&self, id: StepId) -> &StepStatus {
        self.find_step(id).expect("status has every planned step")
    }

    /// The status of a step, if the server's procedure has it.
    pub fn find_step(&self, id: StepId) -> Option<&StepStatus> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// Whether `step` closes the outage window: the last step of the window.
    fn ends_outage(&self, step: StepId) -> bool {
        self.outage_steps.last() == Some(&step)
    }

    fn step_mut(&mut self, id: StepId) -> &mut StepStatus {
        self.steps
            .iter_mut()
            .find(|s| s.id == id)
            .expect("status has every planned step")
    }

    /// Ended well: succeeded, or found current.
    pub fn is_success(&self) -> bool {
        matches!(
            self.state,
            ServerState::Succeeded | ServerState::AlreadyCurrent
        )
    }

    pub fn is_finished(&self) -> bool {
        matches!(
            self.state,
            ServerState::Succeeded
                | ServerState::Failed
                | ServerState::Skipped
                | ServerState::AlreadyCurrent
        )
    }

    /// Outage so far (or in all, once ended), measured on the target clock.
    pub fn outage_ms(&self, now: Millis) -> Option<Millis> {
        let start = self.outage_started_at?;
        Some(self.outage_ended_at.unwrap_or(now).saturating_sub(start))
    }

    pub fn in_outage(&self) -> bool {
        self.outage_started_at.is_some() && self.outage_ended_at.is_none()
    }

    /// The server is to be tried again: pending, what it completed kept. A failure inside the
    /// outage window was followed by the recovery, which brought the server back (W3SVC and
    /// services started, failed back): the window's steps that took it out or changed its
    /// services run again, while the installer's and the database update's results stay (the
    /// installer is probed before any attempt in any case). A failed step is pending again;
    /// a step whose outcome is unknown stays so, to be probed first. The pre-flight reads the
    /// machine again: whatever made it fail may have changed.
    fn retry(&mut self) {
        let recovered = self.outage_ended_at.is_some()
            && self
                .outage_steps
                .last()
                .is_some_and(|last| !self.step(*last).state.is_settled());
        let window = self.outage_steps.clone();
        for s in &mut self.steps {
            let undone = recovered
                && window.contains(&s.id)
                && s.state == StepState::Succeeded
                && !matches!(s.id, StepId::InstallUpdate | StepId::UpdateDatabases);
            if s.state == StepState::Failed || undone {
                s.state = StepState::Pending;
            }
        }
        self.state = ServerState::Pending;
        self.reason = None;
        self.finished_at = None;
        self.preflight = None;
        self.outage_started_at = None;
        self.outage_ended_at = None;
        self.outage_took_effect = false;
        self.budget_exceeded = false;
    }

    /// Fold one journal record into the status.
    pub fn apply(&mut self, at: Millis, record: &Record) {
        match record {
            Record::ServerStarted { .. } => {
                self.state = ServerState::Running;
                self.started_at.get_or_insert(at);
            }
            Record::Preflight { facts } => self.preflight = Some(facts.clone()),
            Record::StepNotApplicable { step, reason } => {
                if self.ends_outage(*step) && self.in_outage() {
                    self.outage_ended_at = Some(at);
                }
                let s = self.step_mut(*step);
                s.state = StepState::NotApplicable;
                s.reason = Some(reason.clone());
            }
            Record::StepIntent { step, attempt, .. } => {
                if self.outage_started_at.is_none() && self.outage_steps.contains(step) {
                    self.outage_started_at = Some(at);
                }
                let s = self.step_mut(*step);
                s.state = StepState::Running;
                s.attempts = s.attempts.max(*attempt);
                s.started_at.get_or_insert(at);
            }
            Record::StepResult {
                step,
                result,
                output,
                ..
            } => {
                let s = self.step_mut(*step);
                s.state = match result {
                    StepResultKind::Succeeded => StepState::Succeeded,
                    StepResultKind::Failed => StepState::Failed,
                    StepResultKind::Unknown => StepState::Unknown,
                };
                s.ended_at = Some(at);
                if *result != StepResultKind::Unknown && self.outage_steps.contains(step) {
                    self.outage_took_effect = true;
                }
                if self.ends_outage(*step)
                    && *result == StepResultKind::Succeeded
                    && self.outage_started_at.is_some()
                {
                    self.outage_ended_at = Some(at);
                }
                self.last_output = Some(output.clone());
            }
            Record::StepProbed { step, done, .. } => {
                let in_window = self.outage_steps.contains(step);
                if in_window && *done {
                    self.outage_took_effect = true;
                } else if in_window && !self.outage_took_effect && *step != StepId::UpdateDatabases
                {
                    // A database update makes its back end unavailable while it runs, done or
                    // not; the other steps take a server out only by their effect.
                    self.outage_started_at = None;
                }
                let s = self.step_mut(*step);
                if *done {
                    s.state = StepState::Succeeded;
                    s.ended_at = Some(at);
                    if self.ends_outage(*step) && self.outage_started_at.is_some() {
                        self.outage_ended_at = Some(at);
                    }
                } else {
                    s.state = StepState::Pending;
                }
            }
            Record::Rebooted { .. } => {}
            Record::Recovered { output } => {
                if self.in_outage() {
                    self.outage_ended_at = Some(at);
                }
                self.last_output = Some(output.clone());
            }
            Record::OutageBudgetExceeded { .. } => self.budget_exceeded = true,
            Record::WaveApproved { .. } | Record::DatabasesChecked { .. } => {}
            Record::ServerRetried { .. } => self.retry(),
            Record::ServerFinished { outcome, reason } => {
                self.state = match outcome {
                    ServerOutcome::Succeeded => ServerState::Succeeded,
                    ServerOutcome::Failed => ServerState::Failed,
                    ServerOutcome::Skipped => ServerState::Skipped,
                    ServerOutcome::AlreadyCurrent => ServerState::AlreadyCurrent,
                };
                self.reason = reason.clone();
                self.finished_at = Some(at);
            }
        }
    }
}

/// Every planned server's status after the given journal.
pub fn fold(servers: &[ServerPlan], journal: &[JournalEntry]) -> Vec<ServerStatus> {
    let mut out: Vec<ServerStatus> = servers.iter().map(ServerStatus::new).collect();
    let index: std::collections::HashMap<String, usize> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| (s.fqdn.key(), i))
        .collect();
    for entry in journal {
        if let Some(&i) = index.get(&entry.server.to_ascii_lowercase()) {
            out[i].apply(entry.at, &entry.record);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use sfbpatch_plan::{PlanPolicy, ServerPlan, StepId, parse_manifest, plan};

    use super::*;
    use crate::store::{Record, ServerOutcome, StepResultKind};

    const INVENTORY: &str = r#"
[[site]]
name = "Lab"

[[pool]]
fqdn = "se.lab.example.com"
site = "Lab"
product = "2019"
edition = "standard"
"#;

    fn se() -> ServerPlan {
        let deployment = sfbpatch_topology::load(INVENTORY, "lab.toml").unwrap();
        let package = parse_manifest(include_str!("../tests/fixtures/cu.toml"), "cu.toml").unwrap();
        let plan = plan(&deployment, &package, &PlanPolicy::default()).unwrap();
        plan.servers.into_iter().next().unwrap()
    }

    fn facts() -> MachineFacts {
        MachineFacts {
            services: vec!["RTCSRV".into()],
            services_running: 1,
            w3svc: true,
            management_shell: true,
            sql_server: true,
            build: None,
            reboot_pending: false,
            in_service: true,
        }
    }

    /// The server's journal up to `failing`, which fails; the recovery runs when the failure
    /// is inside the outage window, as the executor does.
    fn failed_at(plan: &ServerPlan, failing: StepId) -> ServerStatus {
        let mut s = ServerStatus::new(plan);
        let mut at = 0;
        let mut apply = |s: &mut ServerStatus, r: Record| {
            at += 1000;
            s.apply(at, &r);
        };
        apply(
            &mut s,
            Record::ServerStarted {
                predicted_outage_ms: 0,
            },
        );
        apply(&mut s, Record::Preflight { facts: facts() });
        for step in &plan.steps {
            let result = if step.id == failing {
                StepResultKind::Failed
            } else {
                StepResultKind::Succeeded
            };
            apply(
                &mut s,
                Record::StepIntent {
                    step: step.id,
                    attempt: 1,
                    command: None,
                },
            );
            apply(
                &mut s,
                Record::StepResult {
                    step: step.id,
                    attempt: 1,
                    result,
                    exit_code: Some(i32::from(step.id == failing)),
                    output: String::new(),
                    duration_ms: 0,
                },
            );
            if step.id == failing {
                break;
            }
        }
        if s.in_outage() {
            apply(
                &mut s,
                Record::Recovered {
                    output: "started W3SVC".into(),
                },
            );
        }
        apply(
            &mut s,
            Record::ServerFinished {
                outcome: ServerOutcome::Failed,
                reason: Some(format!("{failing} exited with code 1")),
            },
        );
        assert_eq!(s.state, ServerState::Failed);
        s
    }

    fn retried(mut s: ServerStatus) -> ServerStatus {
        s.apply(
            99_000,
            &Record::ServerRetried {
                by: "alice".into(),
                at_unix_ms: 1_800_000_000_000,
            },
        );
        s
    }

    fn state(s: &ServerStatus, id: StepId) -> StepState {
        s.step(id).state
    }

    #[test]
    fn a_server_failed_at_the_installer_is_pending_with_its_steps_before_the_window_done() {
        let plan = se();
        let s = retried(failed_at(&plan, StepId::InstallUpdate));
        assert_eq!(s.state, ServerState::Pending);
        assert_eq!((s.reason.as_deref(), s.finished_at), (None, None));
        assert_eq!(s.preflight, None, "the pre-flight reads it again");
        assert_eq!((s.outage_started_at, s.outage_ended_at), (None, None));
        assert!(!s.is_finished());
        assert_eq!(state(&s, StepId::CheckAdminRole), StepState::Succeeded);
        assert_eq!(state(&s, StepId::StageUpdate), StepState::Succeeded);
        // The recovery started what the window had stopped: stopped again before the installer.
        assert_eq!(state(&s, StepId::StopCsServices), StepState::Pending);
        assert_eq!(state(&s, StepId::StopW3svc), StepState::Pending);
        assert_eq!(state(&s, StepId::InstallUpdate), StepState::Pending);
        assert_eq!(
            s.step(StepId::InstallUpdate).attempts,
            1,
            "attempts are kept"
        );
        assert_eq!(state(&s, StepId::Verify), StepState::Pending);
    }

    #[test]
    fn an_installed_update_stays_done_when_a_later_step_of_the_window_failed() {
        let plan = se();
        let s = retried(failed_at(&plan, StepId::UpdateDatabases));
        assert_eq!(state(&s, StepId::InstallUpdate), StepState::Succeeded);
        assert_eq!(state(&s, StepId::UpdateDatabases), StepState::Pending);
        assert_eq!(state(&s, StepId::StopCsServices), StepState::Pending);
        assert_eq!(state(&s, StepId::StartW3svc), StepState::Pending);
        assert_eq!(state(&s, StepId::StageUpdate), StepState::Succeeded);
    }

    #[test]
    fn a_failure_after_the_window_leaves_every_completed_step_done() {
        let plan = se();
        let before = failed_at(&plan, StepId::Verify);
        assert!(before.outage_ended_at.is_some());
        let s = retried(before);
        for step in &plan.steps {
            let want = if step.id == StepId::Verify {
                StepState::Pending
            } else {
                StepState::Succeeded
            };
            assert_eq!(state(&s, step.id), want, "{}", step.id);
        }
        // The window opens again only if a step of it runs again.
        assert_eq!(s.outage_ms(100_000), None);
    }

    #[test]
    fn fold_makes_a_retried_server_pending_again_after_the_run() {
        let plan = se();
        let server = plan.fqdn.to_string();
        let entry = |seq: i64, record: Record| crate::store::JournalEntry {
            seq,
            run: 1,
            server: server.clone(),
            at: seq as u64 * 1000,
            record,
        };
        let journal = vec![
            entry(
                1,
                Record::ServerStarted {
                    predicted_outage_ms: 0,
                },
            ),
            entry(
                2,
                Record::ServerFinished {
                    outcome: ServerOutcome::Failed,
                    reason: Some("pre-flight: a restart is pending".into()),
                },
            ),
            entry(
                3,
                Record::ServerRetried {
                    by: "alice".into(),
                    at_unix_ms: 0,
                },
            ),
        ];
        let statuses = fold(std::slice::from_ref(&plan), &journal);
        assert_eq!(statuses[0].state, ServerState::Pending);
        assert_eq!(
            statuses[0].started_at,
            Some(1000),
            "its first start is kept"
        );
    }
}
