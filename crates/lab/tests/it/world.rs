//! One world on disk: other handles and other processes see it; `show` has a fixed shape; the
//! clock; creating and opening labs.

use std::time::{Duration, Instant};

use sfbpatch_engine::{Clock, Target};
use sfbpatch_lab::{Lab, LabError, LabOptions, render_text};
use sfbpatch_plan::{Build, StepId};
use sfbpatch_topology::{Deployment, SourceFormat};

use crate::common::*;

#[test]
fn another_handle_sees_the_same_world() {
    let f = fixture();
    let plan = ee_plan(&f, Variant::Configured);
    for id in &StepId::ALL[..4] {
        ok(&f, &plan, *id);
    }
    let other = Lab::open(&f.dir()).unwrap();
    assert_eq!(other.show().unwrap(), f.show());
    assert_eq!(other.now().unwrap(), f.lab.now().unwrap());

    // Carry on from the other handle; the first sees the result.
    let other_target = other.target();
    for id in &StepId::ALL[4..] {
        let outcome = other_target.execute(&request(&f, &plan, *id)).unwrap();
        assert_eq!(outcome.exit_code, 0, "{id}: {}", outcome.output);
    }
    assert_updated(&f, EE);
    assert_eq!(f.lab.now().unwrap(), 1_818_000);
    assert_eq!(f.lab.clock().now(), other.clock().now());
}

/// Run in a child process by [`another_process_sees_the_same_world`].
#[test]
#[ignore = "runs as a child of another_process_sees_the_same_world"]
fn child_process_stops_w3svc() {
    let Ok(dir) = std::env::var("SFBPATCH_LAB_CHILD_DIR") else {
        return;
    };
    let lab = Lab::open(std::path::Path::new(&dir)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (installer, sha256) = write_installer(tmp.path());
    let package = package_for(&installer, &sha256);
    let plan = server_plan(
        &package,
        SE,
        SE,
        sfbpatch_plan::ServerKind::StandardEdition,
        (SE, "rtc"),
        Variant::Local,
    );
    let outcome = lab
        .target()
        .execute(&sfbpatch_engine::StepRequest {
            run_id: 1,
            server: &plan,
            step: plan.step(StepId::StopW3svc),
            package: &package,
            operator: "LAB\\sfbadmin",
            attempt: 1,
            timeout: TIMEOUT,
        })
        .unwrap();
    assert_eq!(outcome.exit_code, 0);
}

#[test]
fn another_process_sees_the_same_world() {
    let f = fixture();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "world::child_process_stops_w3svc",
            "--ignored",
            "--test-threads=1",
        ])
        .env("SFBPATCH_LAB_CHILD_DIR", f.dir())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let s = f.server(SE);
    assert_eq!(s.w3svc.as_str(), "stopped");
    assert_eq!(f.lab.now().unwrap(), 30_000);
    assert_eq!(f.pool(SE).outage_intervals[0].start, 0.0);
}

#[test]
fn show_has_the_documented_shape() {
    let f = fixture();
    run_all(&f, &se_plan(&f, Variant::Local));
    let json = serde_json::to_value(f.show()).unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&json), ["pools", "servers", "sql_instances"]);
    let server = &json["servers"][4];
    assert_eq!(
        keys(server),
        [
            "fqdn",
            "installed_build",
            "installer_runs",
            "open_shells",
            "reboot_pending",
            "services",
            "w3svc"
        ]
    );
    assert_eq!(
        server["services"][0],
        serde_json::json!({"name": "RTCSRV", "state": "running", "loaded_build": "7.0.2046.553"})
    );
    assert_eq!(server["w3svc"], "running");
    assert_eq!(server["installed_build"], "7.0.2046.553");
    assert_eq!(server["installer_runs"], 1);
    assert_eq!(server["reboot_pending"], false);
    assert_eq!(
        json["sql_instances"][0]["stores"][0],
        serde_json::json!({"store": "user", "database": "rtcxds", "version": "15.2046.0",
                           "expected_version": "15.2046.0"})
    );
    assert_eq!(
        keys(&json["sql_instances"][0]),
        ["instance", "sql_server_fqdn", "stores"]
    );
    assert_eq!(
        json["pools"][3],
        serde_json::json!({"fqdn": "se01.contoso.com", "mode": "normal",
                           "outage_intervals": [{"start": 246.0, "end": 1758.0}],
                           "resiliency_intervals": []})
    );
    // It reads back.
    let back: sfbpatch_lab::LabSnapshot = serde_json::from_value(json).unwrap();
    assert_eq!(back.servers, f.show().servers);
}

#[test]
fn text_form() {
    let deployment = Deployment {
        format: SourceFormat::Inventory,
        pools: deployment().pools.into_iter().skip(3).collect(),
        sql_instances: deployment().sql_instances.into_iter().skip(3).collect(),
    };
    let f = fixture_with(&deployment, LabOptions::default());
    let plan = se_plan(&f, Variant::Local);
    for id in &StepId::ALL[..6] {
        ok(&f, &plan, *id);
    }
    assert_eq!(
        render_text(&f.show()),
        "lab clock: 0:18:48

servers
  se01.contoso.com  build 7.0.2046.553  installer runs 1  W3SVC stopped  open shells 0
    running on 7.0.2046.0  (old assemblies): RTCSRV RTCCLSAGT RTCHA RTCMEDSRV RTCATS RTCASMCU \
RTCAVMCU RTCIMMCU RTCDATAMCU RTCCAA RTCCAS RTCRGS RTCXMPPTGW REPLICA FTA

SQL instances
  se01.contoso.com\\rtc
    rtcxds       user                 installed 15.2046.0      expected 15.2046.553    BEHIND
    rtcshared    user                 installed 15.2046.0      expected 15.2046.553    BEHIND
    rtcab        user                 installed 15.2046.0      expected 15.2046.553    BEHIND
    rgsconfig    application          installed 6.2046.0       expected 6.2046.553     BEHIND
    rgsdyn       application          installed 6.2046.0       expected 6.2046.553     BEHIND
    cpsdyn       application          installed 6.2046.0       expected 6.2046.553     BEHIND
  mon.contoso.com\\mon
    LcsCDR       monitoring           installed 12.2046.0      expected 12.2046.553    BEHIND
    QoEMetrics   monitoring           installed 12.2046.0      expected 12.2046.553    BEHIND

pools
  se01.contoso.com  outage  outages 1 (14.7 min)  resiliency 0 (0 min)
    outage 0:04:06 .. now
"
    );
}

#[test]
fn init_refuses_an_existing_lab_and_open_needs_one() {
    let f = fixture();
    let err = sfbpatch_lab::init(&f.dir(), &deployment(), &LabOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, LabError::AlreadyExists { .. }), "{err}");
    assert_eq!(err.code(), "SFB-L002");
    // The existing world is untouched.
    assert_eq!(Lab::open(&f.dir()).unwrap().servers().unwrap().len(), 5);

    let empty = tempfile::tempdir().unwrap();
    let err = Lab::open(empty.path()).err().unwrap();
    assert_eq!(err.code(), "SFB-L003");
    std::fs::write(empty.path().join("lab.db"), b"").unwrap();
    assert_eq!(Lab::open(empty.path()).err().unwrap().code(), "SFB-L003");
    std::fs::write(empty.path().join("lab.db"), [b'x'; 4096]).unwrap();
    assert_eq!(Lab::open(empty.path()).err().unwrap().code(), "SFB-L003");
}

#[test]
fn init_checks_its_options_and_the_deployment() {
    let tmp = tempfile::tempdir().unwrap();
    let err = sfbpatch_lab::init(
        tmp.path(),
        &deployment(),
        &LabOptions {
            speed: -1.0,
            ..LabOptions::default()
        },
    )
    .err()
    .unwrap();
    assert_eq!(err.code(), "SFB-L010");
    let empty = Deployment {
        format: SourceFormat::Inventory,
        pools: vec![],
        sql_instances: vec![],
    };
    let err = sfbpatch_lab::init(tmp.path(), &empty, &LabOptions::default())
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "the deployment cannot be simulated: it has no Back End Server or Standard Edition \
         server to patch [SFB-L007]"
    );
}

#[test]
fn options_are_kept() {
    let f = fixture_with(
        &deployment(),
        LabOptions {
            build: Build([6, 0, 9319, 881]),
            speed: 120.0,
            operator: "LAB\\rtcadmin".to_string(),
            faults: vec![],
        },
    );
    let lab = Lab::open(&f.dir()).unwrap();
    assert_eq!(lab.speed(), 120.0);
    assert_eq!(lab.operator(), "LAB\\rtcadmin");
    assert_eq!(lab.initial_build(), Build([6, 0, 9319, 881]));
    let s = f.server(EE);
    assert_eq!(s.installed_build, Build([6, 0, 9319, 881]));
    assert_eq!(databases(&f, EE, "rtc")[0].1, "15.9319.881");
    assert_eq!(
        lab.servers().unwrap(),
        vec![EE, EE_COLLOCATED, NODE1, NODE2, SE]
    );
    assert_eq!(lab.target().kind(), "lab");
}

#[test]
fn the_clock_advances_by_sleeps_and_steps() {
    let f = fixture();
    let clock = f.lab.clock();
    assert_eq!(clock.now(), 0);
    clock.sleep(1_500);
    assert_eq!(clock.now(), 1_500);
    ok(
        &f,
        &ee_plan(&f, Variant::Configured),
        StepId::CheckAdminRole,
    );
    assert_eq!(clock.now(), 7_500);
}

#[test]
fn at_a_real_time_speed_steps_take_real_time_and_overlap() {
    // 600 simulated seconds per real second: stopping services (2 min) takes 0.2 s.
    let f = fixture_with(
        &deployment(),
        LabOptions {
            speed: 600.0,
            ..LabOptions::default()
        },
    );
    let ee = ee_plan(&f, Variant::Configured);
    let se = se_plan(&f, Variant::Local);
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| ok(&f, &ee, StepId::StopCsServices));
        s.spawn(|| ok(&f, &se, StepId::StopCsServices));
    });
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(390), "{elapsed:?}");
    // Both ran from 0 to 120 s of simulated time.
    assert_eq!(f.lab.now().unwrap(), 120_000);
    for pool in ["pool1.contoso.com", SE] {
        assert_eq!(f.pool(pool).outage_intervals[0].start, 0.0);
    }
    let started = Instant::now();
    f.lab.clock().sleep(60_000);
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(f.lab.now().unwrap(), 180_000);
}

#[test]
fn a_thousand_servers_take_little_time() {
    let deployment = many_standard_edition(1000);
    let tmp = tempfile::tempdir().unwrap();
    let (installer, sha256) = write_installer(tmp.path());
    let package = package_for(&installer, &sha256);
    let lab =
        sfbpatch_lab::init(&tmp.path().join("lab"), &deployment, &LabOptions::default()).unwrap();
    let target = lab.target();
    let plans: Vec<_> = deployment
        .pools
        .iter()
        .map(|p| {
            server_plan(
                &package,
                p.fqdn.as_str(),
                p.fqdn.as_str(),
                sfbpatch_plan::ServerKind::StandardEdition,
                (p.fqdn.as_str(), "rtc"),
                Variant::Local,
            )
        })
        .collect();
    let started = Instant::now();
    for plan in &plans {
        for id in StepId::ALL {
            let outcome = target
                .execute(&sfbpatch_engine::StepRequest {
                    run_id: 1,
                    server: plan,
                    step: plan.step(id),
                    package: &package,
                    operator: "LAB\\sfbadmin",
                    attempt: 1,
                    timeout: TIMEOUT,
                })
                .unwrap();
            assert_eq!(outcome.exit_code, 0, "{id}: {}", outcome.output);
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "1000 servers x 11 steps: {elapsed:?} ({:?} per step)",
        elapsed / 11_000
    );
    let snapshot = lab.show().unwrap();
    assert!(
        snapshot
            .servers
            .iter()
            .all(|s| s.installed_build == NEW && s.installer_runs == 1)
    );
    assert!(
        snapshot
            .sql_instances
            .iter()
            .flat_map(|i| &i.stores)
            .all(|d| d.version == d.expected_version)
    );
}

#[test]
fn handles_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Lab>();
    send_sync::<sfbpatch_lab::LabTarget>();
    send_sync::<sfbpatch_lab::LabClock>();
}
