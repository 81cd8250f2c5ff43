//! One world on disk: other handles and other processes see it; `show` has a fixed shape; the
//! clock; creating and opening labs.

use std::time::{Duration, Instant};

use sfbpatch_engine::{Clock, Millis, Target};
use sfbpatch_lab::{Lab, LabError, LabOptions, render_text, rules};
use sfbpatch_plan::{Build, PlanPolicy, StepId};
use sfbpatch_topology::{Deployment, SourceFormat};

use crate::common::*;

#[test]
fn another_handle_sees_the_same_world() {
    let f = fixture();
    let plan = f.plan_for(SE);
    run_until(&f, &plan, StepId::CloseManagementShells);
    let other = Lab::open(&f.dir()).unwrap();
    assert_eq!(other.show().unwrap(), f.show());
    assert_eq!(other.now().unwrap(), f.lab.now().unwrap());

    // Carry on from the other handle; the first sees the result.
    let other_target = other.target();
    for id in applicable(&plan)
        .into_iter()
        .skip_while(|id| *id != StepId::CloseManagementShells)
    {
        let outcome = other_target.execute(&request(&f, &plan, id)).unwrap();
        assert_eq!(outcome.exit_code, 0, "{id}: {}", outcome.output);
    }
    assert_updated(&f, SE);
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
    let plan = sfbpatch_plan::plan(&deployment(), &package, &PlanPolicy::default()).unwrap();
    let se = plan.servers.iter().find(|s| s.fqdn.as_str() == SE).unwrap();
    let outcome = lab
        .target()
        .execute(&sfbpatch_engine::StepRequest {
            run_id: 1,
            server: se,
            step: se.step(StepId::StopW3svc),
            host: &se.fqdn,
            package: &package,
            operator: "LAB\\sfbadmin",
            attempt: 1,
            timeout: TIMEOUT,
            at: 0,
            fence: sfbpatch_engine::Fence {
                holder: "test",
                generation: 1,
            },
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

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn show_has_the_documented_shape() {
    let f = fixture();
    run_all(&f, &f.plan_for(SE));
    run_until(&f, &f.plan_for(FE1A), StepId::StopCsServices);
    let json = serde_json::to_value(f.show()).unwrap();
    assert_eq!(keys(&json), ["pools", "servers", "sql_instances"]);
    let server_keys = [
        "failed_over",
        "fqdn",
        "installed_build",
        "installer_runs",
        "kind",
        "open_shells",
        "out_of_service",
        "reboot_pending",
        "refused_commands",
        "runs",
        "services",
        "w3svc",
    ];

    // A Front End server: its upgrade domain, failed over.
    let fe = &json["servers"][0];
    let mut with_domain = server_keys.to_vec();
    with_domain.push("upgrade_domain");
    with_domain.sort();
    assert_eq!(keys(fe), with_domain);
    assert_eq!(fe["fqdn"], FE1A);
    assert_eq!(fe["kind"], "front-end");
    assert_eq!(fe["upgrade_domain"], "UpgradeDomain1");
    assert_eq!(fe["failed_over"], true);
    assert_eq!(
        fe["runs"],
        serde_json::json!({"sfb_services": true, "iis": true, "management_shell": true,
                           "sql_server": false})
    );
    assert_eq!(
        fe["services"][0],
        serde_json::json!({"name": "RTCSRV", "state": "stopped", "loaded_build": "7.0.2046.0"})
    );

    // A SQL Server machine of a back end: no services, no IIS.
    let sql = &json["servers"][3];
    assert_eq!(keys(sql), server_keys);
    assert_eq!(sql["fqdn"], EE);
    assert_eq!(sql["kind"], "back-end");
    assert_eq!(sql["w3svc"], "not-installed");
    assert_eq!(sql["services"], serde_json::json!([]));
    assert_eq!(sql["refused_commands"], 0);
    assert_eq!(
        sql["runs"],
        serde_json::json!({"sfb_services": false, "iis": false, "management_shell": false,
                           "sql_server": true})
    );
    assert_eq!(json["servers"][12]["kind"], "store");

    // The Standard Edition server, patched.
    let se = &json["servers"][11];
    assert_eq!(keys(se), server_keys);
    assert_eq!(se["kind"], "standard-edition");
    assert_eq!(
        se["services"][0],
        serde_json::json!({"name": "RTCSRV", "state": "running", "loaded_build": "7.0.2046.553"})
    );
    assert_eq!(se["w3svc"], "running");
    assert_eq!(se["installed_build"], "7.0.2046.553");
    assert_eq!(se["installer_runs"], 1);
    assert_eq!(se["reboot_pending"], false);

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
        serde_json::json!({"fqdn": "se01.contoso.com", "edition": "standard", "mode": "normal",
                           "outage_intervals": [{"start": 246.0, "end": 1758.0}],
                           "resiliency_intervals": []})
    );
    // fe1a left pool1 at 1818 + 276 s.
    assert_eq!(
        json["pools"][0],
        serde_json::json!({"fqdn": "pool1.contoso.com", "edition": "enterprise",
                           "mode": "normal", "outage_intervals": [], "resiliency_intervals": [],
                           "front_ends": {"total": 3, "in_service": 2, "quorum": 2,
                                          "quorum_among": 3,
                                          "in_service_over_time": [[0.0, 3], [2094.0, 2]],
                                          "down_intervals": [], "user_impact_intervals": []}})
    );
    // It reads back.
    let back: sfbpatch_lab::LabSnapshot = serde_json::from_value(json).unwrap();
    assert_eq!(back.servers, f.show().servers);
    assert_eq!(back.pools, f.show().pools);
}

/// One pool of two Front End servers on a SQL-only back end, and a Standard Edition server.
const SMALL: &str = r#"
[[site]]
name = "Redmond"

[[pool]]
fqdn = "pool.contoso.com"
machines = ["fe0.contoso.com", "fe1.contoso.com"]
backend = "sql.contoso.com"

[[pool]]
fqdn = "se01.contoso.com"
edition = "standard"
"#;

#[test]
fn text_form() {
    let f = fixture_with(&load(SMALL), LabOptions::default());
    // A failed-over Front End server after the install (its services disabled, stopped), and
    // a Standard Edition server whose installer restarted its services on old assemblies.
    let fe = f.plan_for("fe0.contoso.com");
    run_until(&f, &fe, StepId::StopCsServicesGac);
    let se = f.plan_for("se01.contoso.com");
    run_until(&f, &se, StepId::StopCsServicesGac);
    let sql = f.plan_for("sql.contoso.com");
    // A command the SQL Server machine cannot run.
    let mut on_sql = sql.clone();
    on_sql.steps.iter_mut().for_each(|s| s.run_on = None);
    assert_eq!(
        exec(&f, &on_sql, StepId::StopCsServices).unwrap().exit_code,
        1
    );
    assert_eq!(
        render_text(&f.show()),
        "lab clock: 0:45:06

servers
  fe0.contoso.com (front-end; runs Skype for Business services, IIS, Management Shell)
    build 7.0.2046.553  installer runs 1  W3SVC stopped  open shells 0  FAILED OVER
    stopped on 7.0.2046.0: RTCSRV RTCCLSAGT RTCHA RTCMEDSRV RTCATS RTCASMCU \
RTCAVMCU RTCIMMCU RTCDATAMCU RTCCAA RTCCAS RTCRGS RTCXMPPTGW REPLICA FTA
  fe1.contoso.com (front-end; runs Skype for Business services, IIS, Management Shell)
    build 7.0.2046.0  installer runs 0  W3SVC running  open shells 0
    running on 7.0.2046.0: RTCSRV RTCCLSAGT RTCHA RTCMEDSRV RTCATS RTCASMCU \
RTCAVMCU RTCIMMCU RTCDATAMCU RTCCAA RTCCAS RTCRGS RTCXMPPTGW REPLICA FTA
  sql.contoso.com (back-end; runs SQL Server)
    build -  installer runs 0  W3SVC not installed  open shells 0  REFUSED COMMANDS 1
  se01.contoso.com (standard-edition; runs Skype for Business services, IIS, Management Shell, SQL Server)
    build 7.0.2046.553  installer runs 1  W3SVC stopped  open shells 0
    running on 7.0.2046.0  (old assemblies): RTCSRV RTCCLSAGT RTCHA RTCMEDSRV RTCATS RTCASMCU \
RTCAVMCU RTCIMMCU RTCDATAMCU RTCCAA RTCCAS RTCRGS RTCXMPPTGW REPLICA FTA

SQL instances
  sql.contoso.com
    rtcxds       user                 installed 15.2046.0      expected 15.2046.553    BEHIND
    rtcshared    user                 installed 15.2046.0      expected 15.2046.553    BEHIND
    rtcab        user                 installed 15.2046.0      expected 15.2046.553    BEHIND
    rgsconfig    application          installed 6.2046.0       expected 6.2046.553     BEHIND
    rgsdyn       application          installed 6.2046.0       expected 6.2046.553     BEHIND
    cpsdyn       application          installed 6.2046.0       expected 6.2046.553     BEHIND
  se01.contoso.com\\rtc
    rtcxds       user                 installed 15.2046.0      expected 15.2046.553    BEHIND
    rtcshared    user                 installed 15.2046.0      expected 15.2046.553    BEHIND
    rtcab        user                 installed 15.2046.0      expected 15.2046.553    BEHIND
    rgsconfig    application          installed 6.2046.0       expected 6.2046.553     BEHIND
    rgsdyn       application          installed 6.2046.0       expected 6.2046.553     BEHIND
    cpsdyn       application          installed 6.2046.0       expected 6.2046.553     BEHIND

pools
  pool.contoso.com  normal  outages 0 (0 min)  resiliency 0 (0 min)
    front ends 1/2 in service (quorum 1 of the first 2)  down 0 min  user impact 0 min
  se01.contoso.com  outage  outages 1 (16.7 min)  resiliency 0 (0 min)
    outage 0:28:24 .. now
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
    assert_eq!(Lab::open(&f.dir()).unwrap().servers().unwrap(), ALL_SERVERS);

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
        "the deployment cannot be simulated: it has no Skype for Business server to patch \
         [SFB-L007]"
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
            sfb_components: vec!["SQL1.contoso.com".to_string()],
            epoch_unix_ms: 1_796_000_000_000,
            variance: Some(u64::MAX - 4),
        },
    );
    let lab = Lab::open(&f.dir()).unwrap();
    assert_eq!(lab.epoch_unix_ms(), 1_796_000_000_000);
    assert_eq!(
        lab.variance(),
        Some(u64::MAX - 4),
        "every bit of the seed kept"
    );
    assert_eq!(lab.speed(), 120.0);
    assert_eq!(lab.operator(), "LAB\\rtcadmin");
    assert_eq!(lab.initial_build(), Build([6, 0, 9319, 881]));
    let s = f.server(FE1A);
    assert_eq!(s.installed_build, Build([6, 0, 9319, 881]));
    assert_eq!(databases(&f, EE, "rtc")[0].1, "15.9319.881");
    assert!(f.server(EE).runs.management_shell, "matched ignoring case");
    assert!(!f.server(EE_COLLOCATED).runs.management_shell);
    assert_eq!(lab.servers().unwrap(), ALL_SERVERS);
    assert_eq!(lab.target().kind(), "lab");
}

#[test]
fn with_variance_each_server_takes_its_own_time_and_a_rerun_the_same() {
    let varied = |seed| {
        fixture_with(
            &deployment(),
            LabOptions {
                variance: Some(seed),
                ..LabOptions::default()
            },
        )
    };
    // How long each step took on each server (the clock set to 0 before each, as the
    // engine sets it to an operation's start).
    let times = |f: &Fixture| -> Vec<Millis> {
        let clock = f.lab.clock();
        let mut times = Vec::new();
        for server in [SE, FE1A, FE1B] {
            for step in [StepId::CheckAdminRole, StepId::StageUpdate] {
                clock.set(0);
                ok(f, &f.plan_for(server), step);
                times.push(clock.now());
            }
        }
        times
    };
    let first = times(&varied(9));
    let expected: Vec<Millis> = [SE, FE1A, FE1B]
        .iter()
        .flat_map(|s| {
            [StepId::CheckAdminRole, StepId::StageUpdate]
                .map(|step| rules::varied_step_duration(9, s, step))
        })
        .collect();
    assert_eq!(first, expected);
    assert_ne!(first[1], rules::step_duration(StepId::StageUpdate));
    assert_ne!(first[1], first[3], "two servers, two times");
    // The same seed, the same world; a lab opened again keeps its seed.
    let again = varied(9);
    assert_eq!(Lab::open(&again.dir()).unwrap().variance(), Some(9));
    assert_eq!(times(&again), first);
    assert_ne!(times(&varied(10)), first);
    // Without variance, the table's times.
    let exact = times(&fixture());
    assert_eq!(exact[1], rules::step_duration(StepId::StageUpdate));
    assert_eq!(exact[1], exact[3]);
}

#[test]
fn the_clock_advances_by_sleeps_and_steps() {
    let f = fixture();
    let clock = f.lab.clock();
    assert_eq!(clock.now(), 0);
    clock.sleep(1_500);
    assert_eq!(clock.now(), 1_500);
    ok(&f, &f.plan_for(FE1A), StepId::CheckAdminRole);
    assert_eq!(clock.now(), 7_500);
    // A step run elsewhere takes its time all the same.
    ok(&f, &f.plan_for(EE), StepId::CheckAdminRole);
    assert_eq!(clock.now(), 13_500);
    // The engine sets the clock to each operation's own start.
    clock.set(2_000);
    ok(&f, &f.plan_for(SE), StepId::CheckAdminRole);
    assert_eq!(clock.now(), 8_000);
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
    let fe = f.plan_for(FE1A);
    let se = f.plan_for(SE);
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| ok(&f, &fe, StepId::StopCsServices));
        s.spawn(|| ok(&f, &se, StepId::StopCsServices));
    });
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(390), "{elapsed:?}");
    // The world's time runs with the wall clock: both ran for 120 s of simulated time,
    // side by side, from when they started (the fixture took a few simulated seconds).
    let start = f.pool(SE).outage_intervals[0].start;
    let impact = f.front_ends(POOL1).user_impact_intervals[0].start;
    assert!(
        start < 60.0 && (impact - start).abs() < 60.0,
        "{start} {impact}"
    );
    let now = f.lab.now().unwrap() as f64 / 1000.0;
    assert!(now >= start + 120.0 && now < start + 240.0, "{start} {now}");
    // Sleeping takes real time, and the clock never goes back.
    let before = f.lab.now().unwrap();
    let started = Instant::now();
    f.lab.clock().sleep(60_000);
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert!(f.lab.now().unwrap() >= before + 60_000);
}

#[test]
fn a_thousand_servers_take_little_time() {
    let f = fixture_with(&many_standard_edition(1000), LabOptions::default());
    let plan = f.plan();
    assert_eq!(plan.servers.len(), 1000);
    let started = Instant::now();
    for server in &plan.servers {
        run_all(&f, server);
    }
    let elapsed = started.elapsed();
    eprintln!(
        "1000 servers x 11 steps: {elapsed:?} ({:?} per step)",
        elapsed / 11_000
    );
    let snapshot = f.show();
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

#[test]
fn a_server_s_detail_names_each_field_once() {
    let f = fixture();
    let detail = f.lab.server(FE1A).unwrap();
    let json = serde_json::to_string(&detail).unwrap();
    assert_eq!(json.matches("\"kind\":").count(), 1, "{json}");
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["kind"], "front-end");
    assert_eq!(value["pools"], serde_json::json!([POOL1]));
    assert_eq!(value["backend_sql_server_fqdn"], EE);
    assert_eq!(value["in_service"], true);
    assert_eq!(f.lab.server(EE).unwrap().pools, [POOL1]);
    assert_eq!(f.lab.server(SE).unwrap().pools, [SE]);
    assert_eq!(f.lab.server(MON).unwrap().pools, Vec::<String>::new());
}
