//! The faults real nights bring, one by one: the lab world's end state and the reason shown.
//! The outcomes are the ones docs/lab.md documents for each fault kind.

use serde_json::Value;

use crate::common::{self, NEW, Scratch, code, item, stderr};
use crate::frontend::kill_at_every_append;

const SE: &str = "se1.dublin.demo.example";
const OLD: &str = "7.0.2046.0";
const POOL2: &str = "fepool2.berlin.demo.example";

/// A lab with `faults`, and `apply --only ONLY` on it: the exit code and stderr.
fn apply_with(faults: &str, only: &str) -> (Scratch, i32, String) {
    let s = Scratch::new();
    s.write("faults.toml", faults);
    s.lab_init("lab", &["--faults", "faults.toml"]);
    let o = s.run(&common::apply_args(&["--lab", "lab"], &[only], &[]));
    let err = stderr(&o);
    (s, code(&o), err)
}

fn reason(s: &Scratch, fqdn: &str) -> String {
    let status = s.status_json("state.db");
    item(&status, "servers", "fqdn", fqdn)["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn server<'a>(lab: &'a Value, fqdn: &str) -> &'a Value {
    item(lab, "servers", "fqdn", fqdn)
}

/// The pool's back-end unavailability in minutes, summed, and whether users were in
/// resiliency mode.
fn pool_outage(lab: &Value, pool: &str) -> (f64, bool) {
    let p = item(lab, "pools", "fqdn", pool);
    let total = p["outage_intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["end"].as_f64().unwrap() - i["start"].as_f64().unwrap()) / 60.0)
        .sum();
    (
        total,
        !p["resiliency_intervals"].as_array().unwrap().is_empty(),
    )
}

fn all_running(s: &Value) -> bool {
    s["w3svc"] == "running"
        && s["services"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["state"] == "running")
}

fn databases_current(lab: &Value, sql: &str) -> bool {
    item(lab, "sql_instances", "sql_server_fqdn", sql)["stores"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["version"] == d["expected_version"])
}

#[test]
fn a_restart_pending_before_the_run_is_refused_before_any_outage() {
    let (s, code, err) = apply_with(
        &format!("[[fault]]\nserver = \"{SE}\"\nreboot_pending = true\n"),
        SE,
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        reason(&s, SE),
        "pre-flight: a restart is pending on se1.dublin.demo.example; restart it, then run again \
         (nothing was changed)"
    );
    let lab = s.lab_json("lab");
    let sv = server(&lab, SE);
    assert_eq!(sv["installer_runs"], 0);
    assert_eq!(sv["reboot_pending"], true);
    assert!(all_running(sv), "{sv}");
    assert_eq!(pool_outage(&lab, SE).0, 0.0);
}

#[test]
fn a_server_already_out_of_service_is_left_as_found() {
    let (s, code, err) = apply_with(
        &format!("[[fault]]\nserver = \"{SE}\"\nout_of_service = true\n"),
        SE,
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        reason(&s, SE),
        "pre-flight: se1.dublin.demo.example is already out of service (0 of 15 Skype for \
         Business services running, W3SVC present); sfbpatch leaves a server it finds out of \
         service as it is: find out why, bring it back (Start-CsWindowsService, or \
         Invoke-CsComputerFailBack), then run again; nothing was changed"
    );
    let lab = s.lab_json("lab");
    let sv = server(&lab, SE);
    assert_eq!(sv["installer_runs"], 0);
    assert_eq!(sv["installed_build"], OLD);
    assert!(
        sv["services"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["state"] == "stopped"),
        "{sv}"
    );
}

#[test]
fn a_front_end_already_out_of_service_keeps_its_pool_from_losing_quorum() {
    // fe12 is down before the run: taking fe11 out too would leave 1 of 3 active.
    let (s, code, err) = apply_with(
        "[[fault]]\nserver = \"fe12.berlin.demo.example\"\nout_of_service = true\n",
        "fepool1.berlin.demo.example",
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        reason(&s, "fe11.berlin.demo.example").starts_with(
            "check-fabric-state exited with code 1: Get-CsUpgradeDomainInfo: PoolUpgradeState \
             InsufficientActiveFrontEnds: the pool would fall below quorum"
        ),
        "{}",
        reason(&s, "fe11.berlin.demo.example")
    );
    let lab = s.lab_json("lab");
    for fe in ["fe11.berlin.demo.example", "fe13.berlin.demo.example"] {
        let sv = server(&lab, fe);
        assert_eq!(sv["installer_runs"], 0, "{sv}");
        assert!(all_running(sv), "{sv}");
    }
    let fe = &item(&lab, "pools", "fqdn", "fepool1.berlin.demo.example")["front_ends"];
    assert_eq!(fe["in_service"], 2, "{fe}");
    assert_eq!(
        fe["in_service_over_time"],
        serde_json::json!([[0.0, 2]]),
        "{fe}"
    );
    assert_eq!(fe["down_intervals"], serde_json::json!([]), "{fe}");
}

#[test]
fn a_full_disk_at_install_time_rolls_back_and_the_server_is_recovered_on_its_old_build() {
    let (s, code, err) = apply_with(
        &format!("[[fault]]\nserver = \"{SE}\"\nstep = \"install-update\"\ndisk_full = true\n"),
        SE,
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        reason(&s, SE),
        "install-update exited with code 1603: SkypeServerUpdateInstaller: Error 1603: There is \
         not enough space on the disk (lab fault 1); the installation was rolled back: build \
         7.0.2046.0 stays installed. Free space on the system drive (the log is in %TEMP% on the \
         server)"
    );
    let lab = s.lab_json("lab");
    let sv = server(&lab, SE);
    assert_eq!(sv["installed_build"], OLD);
    assert_eq!(sv["installer_runs"], 0);
    assert!(all_running(sv), "{sv}");
    let (outage, resiliency) = pool_outage(&lab, SE);
    assert!(outage < 30.0 && !resiliency, "{outage}");
}

#[test]
fn a_sql_server_down_during_the_update_is_tried_twice_then_the_databases_are_said_behind() {
    let (s, code, err) = apply_with(
        &format!(
            "[[fault]]\nserver = \"{SE}\"\nstep = \"update-databases\"\nsql_down_minutes = 10\n"
        ),
        SE,
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("update-databases will retry (attempt 2)"),
        "{err}"
    );
    let why = reason(&s, SE);
    assert!(
        why.starts_with(
            "update-databases exited with code 1 after 2 attempts: Install-CsDatabase : A \
             network-related or instance-specific error occurred while establishing a connection \
             to SQL Server se1.dublin.demo.example."
        ),
        "{why}"
    );
    assert!(
        why.ends_with(
            "databases behind: build 7.0.2046.553 is installed but its databases are not \
             updated; finish with `Install-CsDatabase -Update -LocalDatabases` on \
             se1.dublin.demo.example, or apply again with --only se1.dublin.demo.example (the \
             pre-flight skips what is done: only the database step runs)"
        ),
        "{why}"
    );
    let lab = s.lab_json("lab");
    let sv = server(&lab, SE);
    assert_eq!(sv["installed_build"], NEW);
    assert_eq!(sv["installer_runs"], 1);
    assert!(all_running(sv), "{sv}");
    assert!(!databases_current(&lab, SE));
}

#[test]
fn a_sql_server_back_within_the_retry_finishes_the_update() {
    let (s, code, err) = apply_with(
        "[[fault]]\nserver = \"sqlbe2.berlin.demo.example\"\nstep = \"update-databases\"\nsql_down_minutes = 0.3\n",
        POOL2,
    );
    assert_eq!(code, 0, "{err}");
    let lab = s.lab_json("lab");
    assert!(databases_current(&lab, "sqlbe2.berlin.demo.example"));
    let status = s.status_json("state.db");
    let be = item(&status, "servers", "fqdn", "sqlbe2.berlin.demo.example");
    assert_eq!(item(be, "steps", "id", "update-databases")["attempts"], 2);
    // The back end was out while SQL Server was down and while the update ran: 0.3 + 6 min.
    let (outage, resiliency) = pool_outage(&lab, POOL2);
    assert!((outage - 6.3).abs() < 0.05, "{outage}");
    assert!(!resiliency);
}

#[test]
fn a_sql_failover_in_the_middle_of_the_update_is_finished_by_the_second_attempt() {
    let (s, code, err) = apply_with(
        "[[fault]]\nserver = \"sqlbe2.berlin.demo.example\"\nstep = \"update-databases\"\nsql_failover = true\n",
        POOL2,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("update-databases FAILED, exit 1 (6.0 min)"),
        "{err}"
    );
    let lab = s.lab_json("lab");
    assert!(databases_current(&lab, "sqlbe2.berlin.demo.example"));
    let (outage, resiliency) = pool_outage(&lab, POOL2);
    assert!((outage - 12.0).abs() < 0.05, "{outage}");
    assert!(!resiliency);
    for fe in ["fe21.berlin.demo.example", "fe22.berlin.demo.example"] {
        assert_eq!(server(&lab, fe)["installer_runs"], 1);
    }
}

#[test]
fn an_installer_that_outlives_its_session_is_waited_for_and_never_started_twice() {
    let (s, code, err) = apply_with(
        &format!(
            "[[fault]]\nserver = \"{SE}\"\nstep = \"install-update\"\ninstaller_outlives_minutes = 14\n"
        ),
        SE,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("install-update is still running on the server; waiting for it to finish"),
        "{err}"
    );
    let lab = s.lab_json("lab");
    let sv = server(&lab, SE);
    assert_eq!(sv["installed_build"], NEW);
    assert_eq!(sv["installer_runs"], 1);
    assert!(all_running(sv), "{sv}");
    let (outage, resiliency) = pool_outage(&lab, SE);
    assert!(outage < 30.0 && !resiliency, "{outage}");
}

#[test]
fn a_retry_that_meets_an_installation_in_progress_waits_for_it() {
    // The session is lost and the controller dies at every commit point after it: whoever
    // comes next meets the installer still running (1618 or a probe that says so).
    let args = common::apply_args(&["--lab", "lab"], &[SE], &[]);
    kill_at_every_append(
        10,
        || {
            let s = Scratch::new();
            s.write(
                "faults.toml",
                &format!(
                    "[[fault]]\nserver = \"{SE}\"\nstep = \"install-update\"\ninstaller_outlives_minutes = 14\n"
                ),
            );
            s.lab_init("lab", &["--faults", "faults.toml"]);
            s
        },
        &args,
        |s, n| {
            let lab = s.lab_json("lab");
            let sv = server(&lab, SE);
            assert_eq!(sv["installed_build"], NEW, "kill at {n}");
            assert_eq!(sv["installer_runs"], 1, "kill at {n}");
            assert!(all_running(sv), "kill at {n}: {sv}");
        },
    );
}

#[test]
fn a_probe_that_fails_once_is_read_again_and_one_that_keeps_failing_never_runs_the_installer() {
    let (s, code, err) = apply_with(
        &format!("[[fault]]\nserver = \"{SE}\"\nstep = \"install-update\"\nprobe_fails = true\n"),
        SE,
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("could not read the state of se1.dublin.demo.example"));
    assert_eq!(server(&s.lab_json("lab"), SE)["installer_runs"], 1);

    let (s, code, err) = apply_with(
        &format!(
            "[[fault]]\nserver = \"{SE}\"\nstep = \"install-update\"\nprobe_fails = true\ntimes = 0\n"
        ),
        SE,
    );
    assert_eq!(code, 1, "{err}");
    let why = reason(&s, SE);
    assert!(
        why.starts_with(
            "install-update was not run: the server could not be probed first (it must not run \
             twice): could not read the state of se1.dublin.demo.example"
        ),
        "{why}"
    );
    assert!(why.contains("the outage budget left"), "{why}");
    let lab = s.lab_json("lab");
    let sv = server(&lab, SE);
    assert_eq!(sv["installer_runs"], 0);
    assert_eq!(sv["installed_build"], OLD);
    assert!(all_running(sv), "{sv}");
    let (outage, resiliency) = pool_outage(&lab, SE);
    assert!(outage < 30.0 && !resiliency, "{outage}");
}

#[test]
fn a_restart_that_hangs_is_probed_and_a_server_that_never_comes_back_is_said_to_be_out() {
    let faults = |minutes: u32| {
        format!(
            "[[fault]]\nserver = \"{SE}\"\nstep = \"install-update\"\nexit_code = 3010\n\n\
             [[fault]]\nserver = \"{SE}\"\nrestart_minutes = {minutes}\n"
        )
    };
    // Back after 24 minutes: past the restart's 20-minute timeout, found by the probes.
    let (s, code, err) = apply_with(&faults(24), SE);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: se1.dublin.demo.example: outage"),
        "the operator is told: {err}"
    );
    let lab = s.lab_json("lab");
    let sv = server(&lab, SE);
    assert_eq!(sv["installed_build"], NEW);
    assert_eq!(sv["installer_runs"], 1);
    assert_eq!(sv["reboot_pending"], false);
    assert!(all_running(sv), "{sv}");

    // Not back for two hours: the reason says the server is left out of service.
    let (s, code, err) = apply_with(&faults(120), SE);
    assert_eq!(code, 1, "{err}");
    let why = reason(&s, SE);
    assert!(
        why.starts_with(
            "the restart the installer asked for: step restart on se1.dublin.demo.example did not \
             finish within 20.0 min; the outcome is unknown and the server could not be probed \
             since: server se1.dublin.demo.example is unreachable"
        ),
        "{why}"
    );
    assert!(
        why.contains(
            "recovery did not bring se1.dublin.demo.example back into service: recovery could not \
             run: server se1.dublin.demo.example is unreachable"
        ),
        "{why}"
    );
    // The world counts the pool out until the server answers again.
    let (outage, resiliency) = pool_outage(&s.lab_json("lab"), SE);
    assert!(outage > 120.0 && resiliency, "{outage}");
}

#[test]
fn a_recovery_that_hangs_is_reported_with_the_server_left_out() {
    let (s, code, err) = apply_with(
        &format!(
            "[[fault]]\nserver = \"{SE}\"\nstep = \"start-w3svc\"\nexit_code = 1\ntimes = 0\n\n\
             [[fault]]\nserver = \"{SE}\"\nrecovery_minutes = 40\n"
        ),
        SE,
    );
    assert_eq!(code, 1, "{err}");
    let why = reason(&s, SE);
    assert!(
        why.starts_with("start-w3svc exited with code 1 after 3 attempts"),
        "{why}"
    );
    assert!(
        why.ends_with(
            "recovery did not bring se1.dublin.demo.example back into service: recovery could not \
             run: step recovery on se1.dublin.demo.example did not finish within 15.0 min"
        ),
        "{why}"
    );
}

#[test]
fn killed_at_every_commit_point_with_every_recoverable_fault_every_server_ends_patched_once() {
    let faults = format!(
        "[[fault]]\nserver = \"{SE}\"\nstep = \"install-update\"\nexit_code = 3010\n\n\
         [[fault]]\nserver = \"{SE}\"\nstep = \"stop-cs-services\"\nexit_code = 1\n\n\
         [[fault]]\nserver = \"{SE}\"\nstep = \"stop-w3svc\"\nopen_shells = 1\n\n\
         [[fault]]\nserver = \"{SE}\"\nstep = \"install-update\"\nprobe_fails = true\n\n\
         [[fault]]\nserver = \"{SE}\"\nstep = \"start-w3svc\"\nunreachable_minutes = 1\n\n\
         [[fault]]\nserver = \"fe21.berlin.demo.example\"\nstep = \"check-fabric-state\"\nbusy = true\n\n\
         [[fault]]\nserver = \"fe21.berlin.demo.example\"\nstep = \"install-update\"\nexit_code = 1618\n\n\
         [[fault]]\nserver = \"fe22.berlin.demo.example\"\nstep = \"install-update\"\ninstaller_outlives_minutes = 13\n\n\
         [[fault]]\nserver = \"sqlbe2.berlin.demo.example\"\nstep = \"update-databases\"\nsql_failover = true\n"
    );
    let args = common::apply_args(&["--lab", "lab"], &[SE, POOL2], &[]);
    kill_at_every_append(
        60,
        || {
            let s = Scratch::new();
            s.write("faults.toml", &faults);
            s.lab_init("lab", &["--faults", "faults.toml"]);
            s
        },
        &args,
        |s, n| {
            let lab = s.lab_json("lab");
            for fqdn in [SE, "fe21.berlin.demo.example", "fe22.berlin.demo.example"] {
                let sv = server(&lab, fqdn);
                assert_eq!(sv["installed_build"], NEW, "kill at {n}: {sv}");
                assert_eq!(sv["installer_runs"], 1, "kill at {n}: {sv}");
                assert_eq!(sv["reboot_pending"], false, "kill at {n}: {sv}");
                assert!(all_running(sv), "kill at {n}: {sv}");
            }
            assert!(databases_current(&lab, SE), "kill at {n}");
            assert!(
                databases_current(&lab, "sqlbe2.berlin.demo.example"),
                "kill at {n}"
            );
            // The Standard Edition server's restart (exit 3010) alone takes its window past
            // 30 minutes; the Enterprise pool's users never notice.
            let (outage, resiliency) = pool_outage(&lab, POOL2);
            assert!(!resiliency, "kill at {n}: {POOL2} out {outage:.1} min");
        },
    );
}
