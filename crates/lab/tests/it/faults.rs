//! Each fault kind, as the engine would meet it.

use sfbpatch_engine::{Clock, ProbeVerdict, TargetError};
use sfbpatch_lab::{Interval, LabError, LabOptions, PoolMode};
use sfbpatch_plan::StepId;

use crate::common::*;

fn fault(server: &str, step: &str, kind: &str) -> String {
    format!("[[fault]]\nserver = \"{server}\"\nstep = \"{step}\"\n{kind}\n")
}

#[test]
fn exit_code_fires_on_the_first_attempts_without_effect() {
    let f = fixture_with_faults(&fault(
        EE,
        "stop-cs-services",
        "exit_code = 1603\ntimes = 2",
    ));
    let plan = ee_plan(&f, Variant::Configured);
    ok(&f, &plan, StepId::CheckAdminRole);
    ok(&f, &plan, StepId::StageUpdate);
    for _ in 0..2 {
        let outcome = exec(&f, &plan, StepId::StopCsServices).unwrap();
        assert_eq!(
            (outcome.exit_code, outcome.output.as_str()),
            (
                1603,
                "stop-cs-services failed with exit code 1603 (lab fault 1); nothing changed"
            )
        );
        assert!(f.lab.server(EE).unwrap().in_service);
    }
    // Each failed attempt took the step's two minutes.
    assert_eq!(f.now_seconds(), 246.0 + 240.0);
    ok(&f, &plan, StepId::StopCsServices);
    assert_eq!(
        f.pool("pool1.contoso.com").outage_intervals,
        vec![Interval {
            start: 486.0,
            end: None
        }]
    );
}

#[test]
fn exit_code_with_times_zero_fires_on_every_attempt() {
    let f = fixture_with_faults(&fault(SE, "verify", "exit_code = 2\ntimes = 0"));
    let plan = se_plan(&f, Variant::Local);
    for _ in 0..5 {
        assert_eq!(exec(&f, &plan, StepId::Verify).unwrap().exit_code, 2);
    }
}

#[test]
fn exit_3010_applies_the_update_and_a_reboot_completes_it() {
    let f = fixture_with_faults(&fault(EE, "install-update", "exit_code = 3010"));
    let plan = ee_plan(&f, Variant::Configured);
    for id in &StepId::ALL[..5] {
        ok(&f, &plan, *id);
    }
    let outcome = exec(&f, &plan, StepId::InstallUpdate).unwrap();
    assert_eq!(outcome.exit_code, 3010);
    assert_eq!(
        outcome.output,
        "SkypeServerUpdateInstaller: installed 7.0.2046.553 (was 7.0.2046.0); the installer \
         restarted 16 services; a restart is required to complete the update (exit 3010)"
    );
    let s = f.server(EE);
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
    let reboot = f.target.reboot_server(EE).expect("the server comes back");
    assert_eq!(
        reboot.output,
        "sql1.contoso.com restarted (the pending restart is done); W3SVC and 16 services started \
         on build 7.0.2046.553"
    );
    assert_eq!(f.now_seconds(), before + 300.0);
    let s = f.server(EE);
    assert!(!s.reboot_pending);
    assert!(s.services.iter().all(|svc| svc.loaded_build == NEW));
    assert_eq!(s.w3svc.as_str(), "running");

    for id in &StepId::ALL[6..] {
        ok(&f, &plan, *id);
    }
    assert_updated(&f, EE);
    assert_databases_current(&f, EE, "rtc");
    // The restart and the failed verify kept the back end away for 5 + 1 more minutes: the
    // outage runs from 246 s to 246 + 25.2 min + 6 min = 2118 s, past the 30 minutes.
    let pool = f.pool("pool1.contoso.com");
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
    let f = fixture_with_faults(&fault(EE, "stop-w3svc", "hang = true"));
    let plan = ee_plan(&f, Variant::Configured);
    for id in &StepId::ALL[..3] {
        ok(&f, &plan, *id);
    }
    let err = exec(&f, &plan, StepId::StopW3svc).unwrap_err();
    assert_eq!(
        err,
        TargetError::TimedOut {
            server: EE.to_string(),
            step: "stop-w3svc".to_string(),
            after_ms: TIMEOUT,
        }
    );
    assert_eq!(f.now_seconds(), 366.0 + 3600.0);
    assert_eq!(f.server(EE).w3svc.as_str(), "running");
    assert_eq!(
        probe(&f, &plan, StepId::StopW3svc).unwrap().verdict,
        ProbeVerdict::NotDone
    );
    for id in &StepId::ALL[3..] {
        ok(&f, &plan, *id);
    }
    assert_updated(&f, EE);
    // An hour lost inside the outage window puts the pool into resiliency mode.
    let pool = f.pool("pool1.contoso.com");
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
    let plan = se_plan(&f, Variant::Local);
    for id in &StepId::ALL[..5] {
        ok(&f, &plan, *id);
    }
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
        f.target.recover_server(SE),
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
    for id in &StepId::ALL[5..] {
        ok(&f, &plan, *id);
    }
    assert_updated(&f, SE);
}

#[test]
fn open_shells_make_the_installer_fail_until_closed() {
    let f = fixture_with_faults(&fault(EE, "install-update", "open_shells = 2"));
    let plan = ee_plan(&f, Variant::Configured);
    for id in &StepId::ALL[..5] {
        ok(&f, &plan, *id);
    }
    let outcome = exec(&f, &plan, StepId::InstallUpdate).unwrap();
    assert_eq!(
        (outcome.exit_code, outcome.output.as_str()),
        (1, "files in use: 2 open Management Shells")
    );
    assert_eq!(f.server(EE).open_shells, 2);
    assert_eq!(
        ok(&f, &plan, StepId::CloseManagementShells),
        "closed 2 Management Shell sessions"
    );
    // The fault opened them once, just before the first attempt.
    ok(&f, &plan, StepId::InstallUpdate);
    for id in &StepId::ALL[6..] {
        ok(&f, &plan, *id);
    }
    assert_updated(&f, EE);
}

#[test]
fn shells_opened_before_the_close_step_are_closed_by_it() {
    let f = fixture_with_faults(&fault(SE, "close-management-shells", "open_shells = 1"));
    let plan = se_plan(&f, Variant::Local);
    for id in &StepId::ALL[..4] {
        ok(&f, &plan, *id);
    }
    assert_eq!(
        ok(&f, &plan, StepId::CloseManagementShells),
        "closed 1 Management Shell session"
    );
    for id in &StepId::ALL[5..] {
        ok(&f, &plan, *id);
    }
    assert_updated(&f, SE);
}

#[test]
fn a_full_disk_fails_staging_every_time_before_any_outage() {
    let f = fixture_with_faults(&fault(EE, "stage-update", "disk_full = true"));
    let plan = ee_plan(&f, Variant::Configured);
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
    let detail = f.lab.server(EE).unwrap();
    assert_eq!(detail.staged, None);
    assert!(detail.in_service);
    assert_eq!(f.pool("pool1.contoso.com").outage_intervals, vec![]);
}

#[test]
fn a_long_step_makes_a_resiliency_interval_of_the_right_length() {
    let f = fixture_with_faults(&fault(EE, "install-update", "duration_minutes = 40"));
    let plan = ee_plan(&f, Variant::Configured);
    run_all(&f, &plan);
    assert_updated(&f, EE);
    // 25.2 minutes with a 12-minute install; 53.2 with a 40-minute one.
    let pool = f.pool("pool1.contoso.com");
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
fn the_pool_is_in_resiliency_mode_while_a_long_outage_lasts() {
    let f = fixture_with_faults(&fault(SE, "install-update", "duration_minutes = 45"));
    let plan = se_plan(&f, Variant::Local);
    for id in &StepId::ALL[..6] {
        ok(&f, &plan, *id);
    }
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
fn a_fault_naming_an_unknown_server_is_refused_at_init() {
    let faults = sfbpatch_lab::parse_faults(
        &format!(
            "{}\n{}",
            fault(EE, "verify", "hang = true"),
            fault("fe1a.contoso.com", "verify", "hang = true")
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
        "faults.toml:6: fault 2: server 'fe1a.contoso.com' is not a server of this lab (the \
         lab's servers: sql1.contoso.com, sql2.contoso.com, sqlnode1.contoso.com, \
         sqlnode2.contoso.com, se01.contoso.com) [SFB-L006]"
    );
    assert!(!tmp.path().join("lab.db").exists(), "nothing is created");
    assert!(matches!(
        sfbpatch_lab::Lab::open(tmp.path()),
        Err(LabError::NotALab { .. })
    ));
}
