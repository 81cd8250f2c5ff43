//! The per-server executor driven directly, answer by answer, as the dispatcher would: what it
//! asks of the target for each answer a target can give, and the state it leaves the server in.

use sfbpatch_plan::{Build, PlanPolicy, ServerPlan, StepId, parse_manifest, plan};

use super::*;
use crate::{NoObserver, RunPolicy, RunRecord, RunSpec, RunState, ServerState, TargetSpec, fold};

const INVENTORY: &str = r#"
[[site]]
name = "Lab"

[[pool]]
fqdn = "se.lab.example.com"
site = "Lab"
product = "2019"
edition = "standard"

[[pool]]
fqdn = "pool.lab.example.com"
site = "Lab"
product = "2019"
machines = ["fe1.lab.example.com", "fe2.lab.example.com", "fe3.lab.example.com"]
backend = "sql.lab.example.com"
"#;

const MANIFEST: &str = include_str!("../tests/fixtures/cu.toml");

const OLD: Build = Build([7, 0, 2046, 0]);

fn run() -> RunRecord {
    let deployment = sfbpatch_topology::load(INVENTORY, "lab.toml").unwrap();
    let package = parse_manifest(MANIFEST, "cu.toml").unwrap();
    let plan = plan(&deployment, &package, &PlanPolicy::default()).unwrap();
    RunRecord {
        id: 1,
        spec: RunSpec {
            topology_origin: "lab.toml".into(),
            topology_snapshot: INVENTORY.into(),
            plan,
            policy: RunPolicy::default(),
            target: TargetSpec::Lab { dir: "lab".into() },
            operator: "LAB\\admin".into(),
        },
        state: RunState::Running,
        created_at: 0,
    }
}

fn server<'r>(run: &'r RunRecord, fqdn: &str) -> &'r ServerPlan {
    run.spec
        .plan
        .servers
        .iter()
        .find(|s| s.fqdn.as_str() == fqdn)
        .unwrap()
}

/// What a Standard Edition or Front End server's pre-flight reads before the update.
fn facts() -> MachineFacts {
    MachineFacts {
        services: vec!["RTCSRV".into(), "REPLICA".into()],
        services_running: 2,
        w3svc: true,
        management_shell: true,
        sql_server: true,
        build: Some(OLD),
        reboot_pending: false,
        in_service: true,
    }
}

/// A target error as the answer to `call`.
fn error(call: Call, e: TargetError) -> Input {
    match call {
        Call::Preflight => Input::Facts(Err(e)),
        Call::Probe => Input::Probe(Err(e)),
        Call::Execute | Call::Reboot | Call::Recover => Input::Outcome(Err(e)),
    }
}

fn ok() -> Input {
    Input::Outcome(Ok(StepOutcome::exit(0, "done")))
}

fn probe(done: bool) -> Input {
    Input::Probe(Ok(Probe {
        verdict: if done {
            ProbeVerdict::Done
        } else {
            ProbeVerdict::NotDone
        },
        facts: "{}".into(),
    }))
}

/// Drives the executor of `fqdn` from its start: `answer` gives the target's answer to each
/// call (`None`: the ordinary one: the pre-flight's `facts()`, every step succeeding, every
/// probe "not done"). Returns each call as (call, step id) and the server's status at the end.
fn drive(
    run: &RunRecord,
    fqdn: &str,
    answer: impl FnMut(Call, StepId, u32) -> Option<Input>,
) -> (Vec<(Call, StepId)>, ServerStatus) {
    drive_predicted(run, fqdn, 25 * 60_000, answer)
}

/// [`drive`] with the outage the dispatcher predicts for the server.
fn drive_predicted(
    run: &RunRecord,
    fqdn: &str,
    predicted_outage: Millis,
    mut answer: impl FnMut(Call, StepId, u32) -> Option<Input>,
) -> (Vec<(Call, StepId)>, ServerStatus) {
    let plan = server(run, fqdn);
    let index = run
        .spec
        .plan
        .servers
        .iter()
        .position(|s| s.fqdn == plan.fqdn)
        .unwrap();
    let status = fold(&run.spec.plan.servers, &[]).swap_remove(index);
    let mut exec = Executor::new(plan, status, predicted_outage);
    let mut observer = NoObserver;
    let mut journal = Vec::new();
    let mut now = 0;
    let mut input = Input::Start;
    let mut calls = Vec::new();
    for _ in 0..200 {
        let mut cx = Cx {
            journal: &mut journal,
            observer: &mut observer,
            run,
            now,
        };
        let want = exec.next(&mut cx, input).unwrap();
        now += 1_000;
        input = match want {
            Want::Done => return (calls, exec.status),
            Want::Wait(ms) => {
                now += ms;
                Input::Waited
            }
            Want::OutageSlot => Input::SlotGranted,
            Want::Call {
                call,
                step,
                attempt,
            } => {
                let id = plan.steps[step].id;
                calls.push((call, id));
                answer(call, id, attempt).unwrap_or_else(|| match call {
                    Call::Preflight => Input::Facts(Ok(facts())),
                    Call::Probe => probe(false),
                    _ => ok(),
                })
            }
        };
    }
    panic!("{fqdn}: the executor did not finish in 200 transitions: {calls:?}");
}

fn executed(calls: &[(Call, StepId)]) -> Vec<StepId> {
    calls
        .iter()
        .filter(|(c, _)| *c == Call::Execute)
        .map(|(_, id)| *id)
        .collect()
}

#[test]
fn a_standard_edition_server_runs_the_seed_s_steps_in_order() {
    let run = run();
    let (calls, status) = drive(&run, "se.lab.example.com", |_, _, _| None);
    assert_eq!(calls[0].0, Call::Preflight);
    assert_eq!(executed(&calls), StepId::SEED);
    // The installer is probed first: it runs at most once per server.
    let install = calls
        .iter()
        .position(|c| *c == (Call::Execute, StepId::InstallUpdate))
        .unwrap();
    assert_eq!(calls[install - 1], (Call::Probe, StepId::InstallUpdate));
    assert_eq!(status.state, ServerState::Succeeded);
    assert!(status.outage_started_at.is_some() && status.outage_ended_at.is_some());
}

#[test]
fn a_front_end_server_runs_its_pool_procedure_and_leaves_the_services_to_failback() {
    let run = run();
    let (calls, status) = drive(&run, "fe1.lab.example.com", |_, _, _| None);
    let expected: Vec<StepId> = StepId::FRONT_END
        .into_iter()
        .filter(|id| *id != StepId::StartCsServices)
        .collect();
    assert_eq!(executed(&calls), expected);
    assert_eq!(status.state, ServerState::Succeeded);
    assert_eq!(
        status
            .steps
            .iter()
            .find(|s| s.id == StepId::StartCsServices)
            .unwrap()
            .state,
        StepState::NotApplicable
    );
}

#[test]
fn the_pre_flight_refuses_before_any_step() {
    let run = run();
    let cases: [(MachineFacts, &str); 3] = [
        (
            MachineFacts {
                reboot_pending: true,
                ..facts()
            },
            "pre-flight: a restart is pending on se.lab.example.com",
        ),
        (
            MachineFacts {
                build: Some(Build([6, 0, 9319, 0])),
                ..facts()
            },
            "pre-flight: se.lab.example.com runs Skype for Business Server 2015 (build 6.0.9319.0)",
        ),
        (
            MachineFacts {
                services: Vec::new(),
                services_running: 0,
                management_shell: false,
                build: None,
                ..facts()
            },
            "pre-flight: the plan installs the update on se.lab.example.com (standard-edition), \
             but it has no Skype for Business components",
        ),
    ];
    for (read, reason) in cases {
        let (calls, status) = drive(&run, "se.lab.example.com", |call, _, _| {
            (call == Call::Preflight).then(|| Input::Facts(Ok(read.clone())))
        });
        assert_eq!(
            calls,
            [(Call::Preflight, StepId::CheckAdminRole)],
            "{reason}"
        );
        assert_eq!(status.state, ServerState::Failed);
        assert!(
            status.reason.as_deref().unwrap_or("").starts_with(reason),
            "{:?}",
            status.reason
        );
        assert!(status.outage_started_at.is_none(), "{reason}");
    }
}

#[test]
fn an_installer_failure_inside_the_window_is_recovered_and_fails_the_server() {
    let run = run();
    let (calls, status) = drive(&run, "se.lab.example.com", |call, id, _| {
        (call == Call::Execute && id == StepId::InstallUpdate).then(|| {
            Input::Outcome(Ok(StepOutcome::exit(
                1603,
                "fatal error during installation",
            )))
        })
    });
    let install = calls
        .iter()
        .position(|c| *c == (Call::Execute, StepId::InstallUpdate))
        .unwrap();
    // 1603 is not retried: recovery follows at once, and nothing after the installer runs.
    assert_eq!(calls[install + 1].0, Call::Recover, "{calls:?}");
    assert_eq!(calls.len(), install + 2, "{calls:?}");
    let reason = failed_reason(&status);
    assert!(
        reason.starts_with("install-update exited with code 1603"),
        "{reason}"
    );
    assert!(
        status.outage_ended_at.is_some(),
        "the recovery closed the window"
    );
}

#[test]
fn a_lost_connection_is_probed_before_anything_runs_again() {
    let run = run();
    let mut lost = false;
    let (calls, status) = drive(&run, "se.lab.example.com", |call, id, _| {
        if call == Call::Execute && id == StepId::StopW3svc && !lost {
            lost = true;
            return Some(error(
                call,
                TargetError::Unreachable {
                    server: "se.lab.example.com".into(),
                    reason: "connection reset".into(),
                },
            ));
        }
        // Once it answers again, the probe finds the step's effect there.
        (call == Call::Probe && id == StepId::StopW3svc).then(|| probe(true))
    });
    let lost_at = calls
        .iter()
        .position(|c| *c == (Call::Execute, StepId::StopW3svc))
        .unwrap();
    assert_eq!(
        calls[lost_at + 1],
        (Call::Probe, StepId::StopW3svc),
        "{calls:?}"
    );
    // Done already: stop-w3svc is not run again.
    assert_eq!(
        calls
            .iter()
            .filter(|c| **c == (Call::Execute, StepId::StopW3svc))
            .count(),
        1
    );
    assert_eq!(status.state, ServerState::Succeeded);
}

#[test]
fn an_installer_that_asks_for_a_restart_gets_one() {
    let run = run();
    let (calls, status) = drive(&run, "se.lab.example.com", |call, id, _| {
        (call == Call::Execute && id == StepId::InstallUpdate)
            .then(|| Input::Outcome(Ok(StepOutcome::exit(3010, "a restart is required"))))
    });
    let install = calls
        .iter()
        .position(|c| *c == (Call::Execute, StepId::InstallUpdate))
        .unwrap();
    assert_eq!(calls[install + 1].0, Call::Reboot, "{calls:?}");
    assert_eq!(status.state, ServerState::Succeeded);
}

#[test]
fn an_update_already_installed_is_not_installed_again() {
    let run = run();
    let (calls, status) = drive(&run, "se.lab.example.com", |call, id, _| {
        (call == Call::Probe && id == StepId::InstallUpdate).then(|| probe(true))
    });
    assert!(
        !executed(&calls).contains(&StepId::InstallUpdate),
        "{calls:?}"
    );
    assert!(calls.contains(&(Call::Probe, StepId::InstallUpdate)));
    assert_eq!(status.state, ServerState::Succeeded);
}

#[test]
fn another_installation_in_progress_is_waited_for_and_tried_again() {
    let run = run();
    let mut attempts = Vec::new();
    let (calls, status) = drive(&run, "se.lab.example.com", |call, id, attempt| {
        if call == Call::Execute && id == StepId::InstallUpdate {
            attempts.push(attempt);
            if attempt == 1 {
                return Some(Input::Outcome(Ok(StepOutcome::exit(
                    1618,
                    "another installation is in progress",
                ))));
            }
        }
        None
    });
    assert_eq!(attempts, [1, 2], "{calls:?}");
    assert_eq!(status.state, ServerState::Succeeded);
    let install = status
        .steps
        .iter()
        .find(|s| s.id == StepId::InstallUpdate)
        .unwrap();
    assert_eq!(install.attempts, 2);
}

#[test]
fn a_refusal_before_the_window_fails_the_server_without_an_outage() {
    let run = run();
    let (calls, status) = drive(&run, "se.lab.example.com", |call, id, _| {
        (call == Call::Execute && id == StepId::CheckAdminRole)
            .then(|| error(call, TargetError::Refused("no such account".into())))
    });
    assert_eq!(executed(&calls), [StepId::CheckAdminRole], "{calls:?}");
    assert!(!calls.iter().any(|(c, _)| *c == Call::Recover), "{calls:?}");
    assert_eq!(status.state, ServerState::Failed);
    assert!(status.outage_started_at.is_none());
    assert!(
        status
            .reason
            .as_deref()
            .unwrap()
            .contains("no such account"),
        "{:?}",
        status.reason
    );
}

#[test]
fn a_probe_that_cannot_reach_the_server_is_asked_again_not_guessed() {
    let run = run();
    let mut lost = false;
    let mut failed_probes = 0;
    let (calls, status) = drive(&run, "se.lab.example.com", |call, id, _| {
        if call == Call::Execute && id == StepId::StopW3svc && !lost {
            lost = true;
            return Some(error(
                call,
                TargetError::Unreachable {
                    server: "se.lab.example.com".into(),
                    reason: "connection reset".into(),
                },
            ));
        }
        if call == Call::Probe && id == StepId::StopW3svc {
            if failed_probes < 2 {
                failed_probes += 1;
                return Some(error(
                    call,
                    TargetError::Unreachable {
                        server: "se.lab.example.com".into(),
                        reason: "no route to host".into(),
                    },
                ));
            }
            return Some(probe(true));
        }
        None
    });
    let probes = calls
        .iter()
        .filter(|c| **c == (Call::Probe, StepId::StopW3svc))
        .count();
    assert_eq!(probes, 3, "{calls:?}");
    // Never run again while its outcome was unknown.
    assert_eq!(
        calls
            .iter()
            .filter(|c| **c == (Call::Execute, StepId::StopW3svc))
            .count(),
        1
    );
    assert_eq!(status.state, ServerState::Succeeded);
}

#[test]
fn a_server_that_never_answers_again_ends_unknown_not_rerun() {
    let run = run();
    let (calls, status) = drive(&run, "se.lab.example.com", |call, id, _| {
        (id == StepId::StopW3svc && matches!(call, Call::Execute | Call::Probe)).then(|| {
            error(
                call,
                TargetError::Unreachable {
                    server: "se.lab.example.com".into(),
                    reason: "no route to host".into(),
                },
            )
        })
    });
    assert_eq!(
        calls
            .iter()
            .filter(|c| **c == (Call::Execute, StepId::StopW3svc))
            .count(),
        1,
        "{calls:?}"
    );
    assert_ne!(status.state, ServerState::Succeeded);
    let step = status
        .steps
        .iter()
        .find(|s| s.id == StepId::StopW3svc)
        .unwrap();
    assert_eq!(step.state, StepState::Unknown, "{status:?}");
}

/// The reason of a server that must have failed.
fn failed_reason(status: &ServerStatus) -> &str {
    assert_eq!(status.state, ServerState::Failed, "{:?}", status.reason);
    status
        .reason
        .as_deref()
        .expect("a failed server has a reason")
}

fn verdict(v: ProbeVerdict) -> Input {
    Input::Probe(Ok(Probe {
        verdict: v,
        facts: "{}".into(),
    }))
}

fn position(calls: &[(Call, StepId)], call: (Call, StepId)) -> Vec<usize> {
    calls
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == call)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn after_1618_the_next_attempt_probes_first() {
    let run = run();
    let (calls, status) = drive(&run, "se.lab.example.com", |call, id, attempt| {
        (call == Call::Execute && id == StepId::InstallUpdate && attempt == 1)
            .then(|| Input::Outcome(Ok(StepOutcome::exit(1618, "another installation"))))
    });
    let executes = position(&calls, (Call::Execute, StepId::InstallUpdate));
    let probes = position(&calls, (Call::Probe, StepId::InstallUpdate));
    assert_eq!(executes.len(), 2, "{calls:?}");
    // Probed before the first attempt and again between the two.
    assert!(
        probes.iter().any(|&p| executes[0] < p && p < executes[1]),
        "{calls:?}"
    );
    assert_eq!(status.state, ServerState::Succeeded);
}

#[test]
fn an_installer_still_running_is_waited_for_and_never_started_again() {
    let run = run();
    let mut probes = 0;
    let (calls, status) = drive(&run, "se.lab.example.com", |call, id, _| {
        if call == Call::Probe && id == StepId::InstallUpdate {
            probes += 1;
            return Some(verdict(if probes <= 3 {
                ProbeVerdict::Running
            } else {
                ProbeVerdict::Done
            }));
        }
        None
    });
    assert!(
        !executed(&calls).contains(&StepId::InstallUpdate),
        "{calls:?}"
    );
    assert_eq!(probes, 4);
    assert_eq!(status.state, ServerState::Succeeded);
}

#[test]
fn an_installer_running_past_its_timeout_fails_the_server_without_a_second_run() {
    let run = run();
    let (calls, status) = drive(&run, "se.lab.example.com", |call, id, _| {
        (call == Call::Probe && id == StepId::InstallUpdate).then(|| verdict(ProbeVerdict::Running))
    });
    assert!(
        !executed(&calls).contains(&StepId::InstallUpdate),
        "{calls:?}"
    );
    assert_eq!(status.state, ServerState::Failed);
    let reason = status.reason.unwrap();
    assert!(
        reason.starts_with("install-update is still running on se.lab.example.com after 61.0 min of waiting; it was not started again"),
        "{reason}"
    );
    // Inside its outage window: the server is recovered.
    assert_eq!(calls.last().unwrap().0, Call::Recover, "{calls:?}");
}

#[test]
fn a_probe_that_cannot_read_is_read_again_and_the_installer_runs_once() {
    let run = run();
    let mut failed = 0;
    let (calls, status) = drive(&run, "se.lab.example.com", |call, id, _| {
        if call == Call::Probe && id == StepId::InstallUpdate && failed < 2 {
            failed += 1;
            return Some(error(
                call,
                TargetError::ReadFailed {
                    server: "se.lab.example.com".into(),
                    reason: "The RPC server is unavailable".into(),
                },
            ));
        }
        None
    });
    assert_eq!(
        position(&calls, (Call::Probe, StepId::InstallUpdate)).len(),
        3
    );
    assert_eq!(
        position(&calls, (Call::Execute, StepId::InstallUpdate)).len(),
        1
    );
    assert_eq!(status.state, ServerState::Succeeded);
}

#[test]
fn a_probe_that_never_reads_keeps_the_installer_from_running_at_all() {
    let run = run();
    let (calls, status) = drive(&run, "se.lab.example.com", |call, id, _| {
        (call == Call::Probe && id == StepId::InstallUpdate).then(|| {
            error(
                call,
                TargetError::ReadFailed {
                    server: "se.lab.example.com".into(),
                    reason: "The RPC server is unavailable".into(),
                },
            )
        })
    });
    assert!(
        !executed(&calls).contains(&StepId::InstallUpdate),
        "{calls:?}"
    );
    let reason = failed_reason(&status);
    assert!(
        reason.starts_with("install-update was not run: the server could not be probed first"),
        "{reason}"
    );
    assert_eq!(calls.last().unwrap().0, Call::Recover);
}

/// The installer answers 3010, every restart times out, and the probes after it read
/// `after_restart` (before the installer: not done).
fn restarts_time_out(after_restart: &str) -> (Vec<(Call, StepId)>, ServerStatus) {
    let run = run();
    let mut probes = 0;
    drive(&run, "se.lab.example.com", |call, id, _| match call {
        Call::Execute if id == StepId::InstallUpdate => Some(Input::Outcome(Ok(
            StepOutcome::exit(3010, "a restart is required"),
        ))),
        Call::Reboot => Some(error(
            call,
            TargetError::TimedOut {
                server: "se.lab.example.com".into(),
                step: "restart".into(),
                after_ms: 20 * 60_000,
            },
        )),
        Call::Probe if id == StepId::InstallUpdate => {
            probes += 1;
            Some(Input::Probe(Ok(Probe {
                verdict: if probes == 1 {
                    ProbeVerdict::NotDone
                } else {
                    ProbeVerdict::Done
                },
                facts: after_restart.into(),
            })))
        }
        _ => None,
    })
}

#[test]
fn a_restart_that_times_out_is_probed_and_not_asked_for_again_once_done() {
    let (calls, status) = restarts_time_out(r#"{"reboot_pending":false}"#);
    assert_eq!(
        position(&calls, (Call::Reboot, StepId::InstallUpdate)).len(),
        1
    );
    assert_eq!(status.state, ServerState::Succeeded, "{:?}", status.reason);
}

#[test]
fn a_restart_that_never_happens_fails_after_two() {
    let (calls, status) = restarts_time_out(r#"{"reboot_pending":true}"#);
    assert_eq!(
        position(&calls, (Call::Reboot, StepId::InstallUpdate)).len(),
        2
    );
    let reason = failed_reason(&status);
    assert!(
        reason.starts_with("se.lab.example.com still waits for a restart after 2 restarts"),
        "{reason}"
    );
}

#[test]
fn a_retry_the_budget_cannot_hold_is_not_made() {
    let mut run = run();
    run.spec.policy.outage_budget_ms = 60_000;
    run.spec.policy.accept_resiliency = false;
    let (calls, status) = drive_predicted(&run, "se.lab.example.com", 0, |call, id, _| {
        (call == Call::Execute && id == StepId::StopW3svc)
            .then(|| Input::Outcome(Ok(StepOutcome::exit(2, "service busy"))))
    });
    // stop-w3svc retries any exit code, but the budget left cannot hold another attempt.
    assert_eq!(
        position(&calls, (Call::Execute, StepId::StopW3svc)).len(),
        1
    );
    let reason = failed_reason(&status);
    assert!(reason.contains("cannot hold another attempt"), "{reason}");
}

#[test]
fn a_first_window_step_found_without_effect_does_not_open_the_window() {
    let run = run();
    let mut lost = false;
    let mut started = Vec::new();
    let (calls, status) = drive(&run, "se.lab.example.com", |call, id, _| {
        if call == Call::Execute && id == StepId::StopCsServices && !lost {
            lost = true;
            return Some(error(
                call,
                TargetError::TimedOut {
                    server: "se.lab.example.com".into(),
                    step: "stop-cs-services".into(),
                    after_ms: 1,
                },
            ));
        }
        if call == Call::Execute && id == StepId::StopCsServices {
            started.push(id);
        }
        None
    });
    assert_eq!(
        position(&calls, (Call::Execute, StepId::StopCsServices)).len(),
        2
    );
    assert_eq!(status.state, ServerState::Succeeded);
    // The window counts from the attempt that took effect: after the first attempt's
    // backoff and probe.
    let first_attempt = status
        .steps
        .iter()
        .find(|s| s.id == StepId::StopCsServices)
        .unwrap()
        .started_at
        .unwrap();
    assert!(status.outage_started_at.unwrap() > first_attempt + 30_000);
}

#[test]
fn an_answer_to_another_call_stops_the_run_instead_of_panicking() {
    let run = run();
    let plan = server(&run, "se.lab.example.com");
    let index = run
        .spec
        .plan
        .servers
        .iter()
        .position(|s| s.fqdn == plan.fqdn)
        .unwrap();
    let status = fold(&run.spec.plan.servers, &[]).swap_remove(index);
    let mut exec = Executor::new(plan, status, 0);
    let mut observer = NoObserver;
    let mut journal = Vec::new();
    let mut cx = Cx {
        journal: &mut journal,
        observer: &mut observer,
        run: &run,
        now: 0,
    };
    let want = exec.next(&mut cx, Input::Start).unwrap();
    assert!(matches!(
        want,
        Want::Call {
            call: Call::Preflight,
            ..
        }
    ));
    // A probe's answer where the pre-flight's was due.
    let err = exec.next(&mut cx, verdict(ProbeVerdict::Done)).unwrap_err();
    assert_eq!(err.code(), "SFB-E006");
    assert!(
        err.to_string()
            .contains("executor of se.lab.example.com in Preflight got Probe")
    );
}

#[test]
fn a_server_found_out_of_service_is_refused_before_anything_runs() {
    let run = run();
    let (calls, status) = drive(&run, "se.lab.example.com", |call, _, _| {
        (call == Call::Preflight).then(|| {
            Input::Facts(Ok(MachineFacts {
                services_running: 0,
                in_service: false,
                ..facts()
            }))
        })
    });
    assert_eq!(calls, [(Call::Preflight, StepId::CheckAdminRole)]);
    let reason = failed_reason(&status);
    assert!(
        reason.starts_with("pre-flight: se.lab.example.com is already out of service (0 of 2"),
        "{reason}"
    );
}
