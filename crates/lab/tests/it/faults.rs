//! Each fault kind, as the engine would meet it.

use sfbpatch_engine::{Clock, ProbeVerdict, TargetError};
use sfbpatch_lab::{FaultKind, Interval, LabError, LabOptions, PoolMode};
use sfbpatch_plan::StepId;

use crate::common::*;

#[test]
fn exit_code_fires_on_the_first_attempts_without_effect() {
    let f = fixture_with_faults(&fault(
        SE,
        "stop-cs-services",
        "exit_code = 1603\ntimes = 2",
    ));
    let plan = f.plan_for(SE);
    run_until(&f, &plan, StepId::StopCsServices);
    for _ in 0..2 {
        let outcome = exec(&f, &plan, StepId::StopCsServices).unwrap();
        assert_eq!(
            (outcome.exit_code, outcome.output.as_str()),
            (
                1603,
                "stop-cs-services failed with exit code 1603 (lab fault 1); nothing changed"
            )
        );
        assert!(f.lab.server(SE).unwrap().in_service);
    }
    // Each failed attempt took the step's two minutes.
    assert_eq!(f.now_seconds(), 246.0 + 240.0);
    ok(&f, &plan, StepId::StopCsServices);
    assert_eq!(
        f.pool(SE).outage_intervals,
        vec![Interval {
            start: 486.0,
            end: None
        }]
    );
}

#[test]
fn exit_code_with_times_zero_fires_on_every_attempt() {
    let f = fixture_with_faults(&fault(SE, "verify", "exit_code = 2\ntimes = 0"));
    let plan = f.plan_for(SE);
    for _ in 0..5 {
        assert_eq!(exec(&f, &plan, StepId::Verify).unwrap().exit_code, 2);
    }
}

#[test]
fn a_fault_follows_the_server_wherever_its_step_runs() {
    // sql1's database step runs on fe1c; the fault is sql1's.
    let f = fixture_with_faults(&fault(EE, "update-databases", "duration_minutes = 35"));
    patch_pool(&f, POOL1);
    assert_databases_current(&f, EE, "rtc");
    let pool = f.pool(POOL1);
    assert_eq!(pool.outage_intervals.len(), 1);
    let outage = pool.outage_intervals[0];
    assert_eq!(outage.seconds(0.0), minutes(35.0));
    // 35 minutes without the back end: the last 5 in resiliency mode.
    assert_eq!(
        pool.resiliency_intervals,
        vec![Interval {
            start: outage.start + minutes(30.0),
            end: outage.end
        }]
    );
    // fe1c's own steps kept their usual length.
    assert_sql_only(&f, EE);
}

#[test]
fn exit_3010_applies_the_update_and_a_reboot_completes_it() {
    let f = fixture_with_faults(&fault(SE, "install-update", "exit_code = 3010"));
    let plan = f.plan_for(SE);
    run_until(&f, &plan, StepId::InstallUpdate);
    let outcome = exec(&f, &plan, StepId::InstallUpdate).unwrap();
    assert_eq!(outcome.exit_code, 3010);
    assert_eq!(
        outcome.output,
        "SkypeServerUpdateInstaller: installed 7.0.2046.553 (was 7.0.2046.0); the installer \
         restarted 15 services; a restart is required to complete the update (exit 3010)"
    );
    let s = f.server(SE);
    assert_eq!((s.installed_build, s.installer_runs), (NEW, 1));
    assert!(s.reboot_pending);
    assert!(s.services.iter().all(|svc| svc.loaded_build == OLD));
    assert_eq!(
        probe(&f, &plan, StepId::InstallUpdate).unwrap().verdict,
        ProbeVerdict::Done
    );
    // Until the restart, a started service still loads the old files.
    let verify = exec(&f, &plan, StepId::Verify).unwrap();
    assert_eq!(verify.exit_code, 1);
    assert!(
        verify
            .output
            .contains("- a restart is pending (installer exit 3010)"),
        "{}",
        verify.output
    );

    let before = f.now_seconds();
    let reboot = f
        .target
        .reboot_server(SE, 15 * 60_000)
        .expect("the server comes back");
    assert_eq!(
        reboot.output,
        "se01.contoso.com restarted (the pending restart is done); W3SVC and 15 services started \
         on build 7.0.2046.553"
    );
    assert_eq!(f.now_seconds(), before + 300.0);
    let s = f.server(SE);
    assert!(!s.reboot_pending);
    assert!(s.services.iter().all(|svc| svc.loaded_build == NEW));
    assert_eq!(s.w3svc.as_str(), "running");

    run_from(&f, &plan, StepId::StopCsServicesGac);
    assert_updated(&f, SE);
    assert_databases_current(&f, SE, "rtc");
    // The restart and the failed verify kept the server away for 5 + 1 more minutes: the
    // outage runs from 246 s to 246 + 25.2 min + 6 min = 2118 s, past the 30 minutes.
    let pool = f.pool(SE);
    assert_eq!(
        pool.outage_intervals,
        vec![Interval {
            start: 246.0,
            end: Some(2118.0)
        }]
    );
    assert_eq!(
        pool.resiliency_intervals,
        vec![Interval {
            start: 2046.0,
            end: Some(2118.0)
        }]
    );
}

#[test]
fn a_hang_times_out_without_effect_and_the_clock_runs_on() {
    let f = fixture_with_faults(&fault(SE, "stop-w3svc", "hang = true"));
    let plan = f.plan_for(SE);
    run_until(&f, &plan, StepId::StopW3svc);
    let err = exec(&f, &plan, StepId::StopW3svc).unwrap_err();
    assert_eq!(
        err,
        TargetError::TimedOut {
            server: SE.to_string(),
            step: "stop-w3svc".to_string(),
            after_ms: TIMEOUT,
        }
    );
    assert_eq!(f.now_seconds(), 366.0 + 3600.0);
    assert_eq!(f.server(SE).w3svc.as_str(), "running");
    assert_eq!(
        probe(&f, &plan, StepId::StopW3svc).unwrap().verdict,
        ProbeVerdict::NotDone
    );
    run_from(&f, &plan, StepId::StopW3svc);
    assert_updated(&f, SE);
    // An hour lost inside the outage window puts the pool into resiliency mode.
    let pool = f.pool(SE);
    assert_eq!(
        pool.outage_intervals,
        vec![Interval {
            start: 246.0,
            end: Some(5358.0)
        }]
    );
    assert_eq!(
        pool.resiliency_intervals,
        vec![Interval {
            start: 2046.0,
            end: Some(5358.0)
        }]
    );
}

#[test]
fn an_unreachable_server_answers_again_once_the_clock_passes() {
    let f = fixture_with_faults(&fault(SE, "install-update", "unreachable_minutes = 10"));
    let plan = f.plan_for(SE);
    run_until(&f, &plan, StepId::InstallUpdate);
    let at = f.lab.now().unwrap();
    let err = exec(&f, &plan, StepId::InstallUpdate).unwrap_err();
    assert!(
        matches!(&err, TargetError::Unreachable { server, .. } if server == SE),
        "{err}"
    );
    assert!(err.outcome_unknown());
    assert_eq!(
        f.lab.now().unwrap(),
        at,
        "an unanswered attempt takes no time"
    );
    assert_eq!(
        f.lab.server(SE).unwrap().unreachable_until,
        Some(at as f64 / 1000.0 + 600.0)
    );
    assert!(matches!(
        probe(&f, &plan, StepId::InstallUpdate),
        Err(TargetError::Unreachable { .. })
    ));
    assert!(matches!(
        f.target.recover_server(SE, 15 * 60_000),
        Err(TargetError::Unreachable { .. })
    ));
    assert!(matches!(
        f.target.preflight_server(SE),
        Err(TargetError::Unreachable { .. })
    ));

    let clock = f.lab.clock();
    clock.sleep(5 * 60_000);
    assert_eq!(clock.now(), at + 300_000);
    assert!(matches!(
        exec(&f, &plan, StepId::InstallUpdate),
        Err(TargetError::Unreachable { .. })
    ));
    clock.sleep(5 * 60_000);
    assert_eq!(
        probe(&f, &plan, StepId::InstallUpdate).unwrap().verdict,
        ProbeVerdict::NotDone
    );
    run_from(&f, &plan, StepId::InstallUpdate);
    assert_updated(&f, SE);
}

#[test]
fn open_shells_make_the_installer_fail_until_closed() {
    let f = fixture_with_faults(&fault(FE1A, "install-update", "open_shells = 2"));
    let plan = f.plan_for(FE1A);
    run_until(&f, &plan, StepId::InstallUpdate);
    let outcome = exec(&f, &plan, StepId::InstallUpdate).unwrap();
    assert_eq!(
        (outcome.exit_code, outcome.output.as_str()),
        (1, "files in use: 2 open Management Shells")
    );
    assert_eq!(f.server(FE1A).open_shells, 2);
    assert_eq!(
        ok(&f, &plan, StepId::CloseManagementShells),
        "closed 2 Management Shell sessions"
    );
    // The fault opened them once, just before the first attempt.
    run_from(&f, &plan, StepId::InstallUpdate);
    assert_updated(&f, FE1A);
}

#[test]
fn shells_opened_before_the_close_step_are_closed_by_it() {
    let f = fixture_with_faults(&fault(SE, "close-management-shells", "open_shells = 1"));
    let plan = f.plan_for(SE);
    run_until(&f, &plan, StepId::CloseManagementShells);
    assert_eq!(
        ok(&f, &plan, StepId::CloseManagementShells),
        "closed 1 Management Shell session"
    );
    run_from(&f, &plan, StepId::InstallUpdate);
    assert_updated(&f, SE);
}

#[test]
fn a_full_disk_fails_staging_every_time_before_any_outage() {
    let f = fixture_with_faults(&fault(FE1A, "stage-update", "disk_full = true"));
    let plan = f.plan_for(FE1A);
    ok(&f, &plan, StepId::CheckAdminRole);
    for _ in 0..3 {
        let outcome = exec(&f, &plan, StepId::StageUpdate).unwrap();
        assert_eq!(
            (outcome.exit_code, outcome.output.as_str()),
            (
                112,
                "There is not enough space on the disk (lab fault 1): the installer was not \
                 staged; nothing else changed"
            )
        );
    }
    let detail = f.lab.server(FE1A).unwrap();
    assert_eq!(detail.staged, None);
    assert!(detail.in_service);
    assert!(!detail.server.failed_over);
    assert_eq!(f.front_ends(POOL1).in_service, 3);
}

#[test]
fn a_long_step_makes_a_resiliency_interval_of_the_right_length() {
    let f = fixture_with_faults(&fault(SE, "install-update", "duration_minutes = 40"));
    run_all(&f, &f.plan_for(SE));
    assert_updated(&f, SE);
    // 25.2 minutes with a 12-minute install; 53.2 with a 40-minute one.
    let pool = f.pool(SE);
    let end = 246.0 + minutes(53.2);
    assert_eq!(
        pool.outage_intervals,
        vec![Interval {
            start: 246.0,
            end: Some(end)
        }]
    );
    assert_eq!(
        pool.resiliency_intervals,
        vec![Interval {
            start: 246.0 + minutes(30.0),
            end: Some(end)
        }]
    );
    assert_eq!(pool.resiliency_intervals[0].seconds(0.0), minutes(23.2));
    assert_eq!(pool.mode, PoolMode::Normal);
}

#[test]
fn a_long_install_on_a_front_end_costs_users_nothing() {
    let f = fixture_with_faults(&fault(FE1B, "install-update", "duration_minutes = 90"));
    run_all(&f, &f.plan_for(FE1B));
    assert_updated(&f, FE1B);
    let pool = f.pool(POOL1);
    assert_eq!(pool.outage_intervals, vec![]);
    assert_eq!(pool.resiliency_intervals, vec![]);
    let fe = pool.front_ends.unwrap();
    assert_eq!(fe.down_intervals, vec![]);
    assert_eq!(fe.user_impact_intervals, vec![]);
    // Out of the pool from the failover's start (276 s) to the failback's end.
    assert_eq!(
        fe.in_service_over_time,
        vec![(0.0, 3), (276.0, 2), (1848.0 + minutes(78.0), 3)]
    );
}

#[test]
fn the_pool_is_in_resiliency_mode_while_a_long_outage_lasts() {
    let f = fixture_with_faults(&fault(SE, "install-update", "duration_minutes = 45"));
    let plan = f.plan_for(SE);
    run_until(&f, &plan, StepId::StopCsServicesGac);
    let pool = f.pool(SE);
    assert_eq!(pool.mode, PoolMode::Resiliency);
    assert_eq!(
        pool.resiliency_intervals,
        vec![Interval {
            start: 2046.0,
            end: None
        }]
    );
}

#[test]
fn missing_replicas_stop_the_pool_before_any_server_leaves_it() {
    let f = fixture_with_faults(&fault(
        FE1B,
        "check-fabric-state",
        "missing_replicas = true",
    ));
    let plan = f.plan_for(FE1A);
    run_until(&f, &plan, StepId::CheckFabricState);
    let outcome = exec(&f, &plan, StepId::CheckFabricState).unwrap();
    assert_eq!(
        (outcome.exit_code, outcome.output),
        (
            1,
            format!(
                "Get-CsPoolFabricState: 12 routing groups; missing replicas: the fabric lost \
                 replicas of some routing groups (run Reset-CsPoolRegistrarState -ResetType \
                 QuorumLossRecovery)\n{POOL1_ROUTING_GROUPS}\n\
                 pool pool1.contoso.com has missing replicas: recover it first \
                 (Reset-CsPoolRegistrarState -PoolFqdn pool1.contoso.com -ResetType \
                 QuorumLossRecovery); no server of the pool is patched"
            )
        )
    );
    // A failover sent anyway is refused too.
    let failover = exec(&f, &plan, StepId::Failover).unwrap();
    assert_eq!(
        (failover.exit_code, failover.output.as_str()),
        (
            1,
            "Invoke-CsComputerFailOver -ComputerName fe1a.contoso.com: refused: the pool has \
             missing replicas"
        )
    );
    let fe = f.front_ends(POOL1);
    assert_eq!(fe.in_service, 3);
    assert_eq!(fe.in_service_over_time, vec![(0.0, 3)]);
    assert!(!f.server(FE1A).failed_over);
    // Other pools are not concerned.
    ok(&f, &f.plan_for(FE2A), StepId::CheckFabricState);
}

#[test]
fn missing_replicas_are_reset_when_the_policy_allows_it() {
    let mut f = fixture_with_faults(&fault(
        FE1A,
        "check-fabric-state",
        "missing_replicas = true",
    ));
    f.policy.reset_missing_replicas = true;
    let plan = f.plan_for(FE1A);
    run_until(&f, &plan, StepId::CheckFabricState);
    let before = f.now_seconds();
    let output = ok(&f, &plan, StepId::CheckFabricState);
    assert!(
        output.starts_with(
            "Reset-CsPoolRegistrarState -PoolFqdn pool1.contoso.com -ResetType \
             QuorumLossRecovery: the routing groups' replicas were rebuilt\n\
             Get-CsPoolFabricState: 12 routing groups, every replica active\n"
        ),
        "{output}"
    );
    assert!(
        output.ends_with(
            "Get-CsUpgradeDomainInfo: PoolUpgradeState Ready; 3 of 3 Front End servers active"
        ),
        "{output}"
    );
    // The check (30 s) and the reset (5 min).
    assert_eq!(f.now_seconds(), before + 30.0 + 300.0);
    run_from(&f, &plan, StepId::Failover);
    assert_updated(&f, FE1A);
    // Reset once: the next server's check finds the fabric healthy.
    let next = f.plan_for(FE1B);
    run_until(&f, &next, StepId::CheckFabricState);
    let output = ok(&f, &next, StepId::CheckFabricState);
    assert!(output.starts_with("Get-CsPoolFabricState: 12 routing groups, every replica active\n"));
}

#[test]
fn a_busy_pool_answers_75_then_ready() {
    let f = fixture_with_faults(&fault(FE1A, "check-fabric-state", "busy = true\ntimes = 2"));
    let plan = f.plan_for(FE1A);
    run_until(&f, &plan, StepId::CheckFabricState);
    let start = f.now_seconds();
    for _ in 0..2 {
        let outcome = exec(&f, &plan, StepId::CheckFabricState).unwrap();
        assert_eq!(
            (outcome.exit_code, outcome.output.as_str()),
            (
                75,
                "PoolUpgradeState: Busy (lab fault 1): the pool is still moving routing groups; \
                 ask again in 10 minutes"
            )
        );
        assert_eq!(outcome.exit_code, sfbpatch_plan::POOL_BUSY_EXIT);
    }
    let output = ok(&f, &plan, StepId::CheckFabricState);
    assert!(
        output.ends_with(
            "Get-CsUpgradeDomainInfo: PoolUpgradeState Ready; 3 of 3 Front End servers active"
        ),
        "{output}"
    );
    // Three checks of 30 s; the engine, not the lab, waits between them.
    assert_eq!(f.now_seconds(), start + 90.0);
    assert!(!f.server(FE1A).failed_over);
}

#[test]
fn new_fault_kinds_are_read_and_checked() {
    let faults = sfbpatch_lab::parse_faults(
        &format!(
            "{}\n{}",
            fault(FE1A, "check-fabric-state", "missing_replicas = true"),
            fault(FE1B, "check-fabric-state", "busy = true\ntimes = 3")
        ),
        "faults.toml",
    )
    .unwrap();
    assert_eq!(
        faults.iter().map(|f| f.kind.clone()).collect::<Vec<_>>(),
        [FaultKind::MissingReplicas, FaultKind::Busy { times: 3 }]
    );
    let err =
        sfbpatch_lab::parse_faults(&fault(FE1A, "failover", "busy = true"), "f.toml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "f.toml:4: fault 1: busy applies to step check-fabric-state, not failover [SFB-L005]"
    );
    let err =
        sfbpatch_lab::parse_faults(&fault(FE1A, "verify", "missing_replicas = true"), "f.toml")
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "f.toml:4: fault 1: missing_replicas applies to step check-fabric-state, not verify \
         [SFB-L005]"
    );
    let err = sfbpatch_lab::parse_faults(
        &fault(
            FE1A,
            "check-fabric-state",
            "missing_replicas = true\ntimes = 2",
        ),
        "f.toml",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "f.toml:5: fault 1: times applies to exit_code, hang, busy, sql_failover and probe_fails \
         faults, not to missing_replicas [SFB-L005]"
    );
}

#[test]
fn a_fault_naming_an_unknown_server_is_refused_at_init() {
    let faults = sfbpatch_lab::parse_faults(
        &format!(
            "{}\n{}",
            fault(EE, "verify", "hang = true"),
            fault("edge01.contoso.com", "verify", "hang = true")
        ),
        "faults.toml",
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let err = sfbpatch_lab::init(
        tmp.path(),
        &deployment(),
        &LabOptions {
            faults,
            ..LabOptions::default()
        },
    )
    .err()
    .unwrap();
    assert_eq!(err.code(), "SFB-L006");
    assert_eq!(
        err.to_string(),
        "faults.toml:6: fault 2: server 'edge01.contoso.com' is not a server of this lab (the \
         lab's servers: fe1a.contoso.com, fe1b.contoso.com, fe1c.contoso.com, sql1.contoso.com, \
         fe2a.contoso.com, fe2b.contoso.com, sql2.contoso.com, fe3a.contoso.com, \
         fe3b.contoso.com, sqlnode1.contoso.com, ...) [SFB-L006]"
    );
    assert!(!tmp.path().join("lab.db").exists(), "nothing is created");
    assert!(matches!(
        sfbpatch_lab::Lab::open(tmp.path()),
        Err(LabError::NotALab { .. })
    ));
}
