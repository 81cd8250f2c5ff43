//! Faults inside the outage window: every one ends with the server safe and the truth told.
//! The lab world is the judge.

use serde_json::Value;

use crate::common::{self, NEW, Scratch, code, item, stderr};
use crate::frontend::kill_at_every_append;

const SE: &str = "se1.dublin.demo.example";

fn lab_with_faults(s: &Scratch, faults: &str) {
    s.write("faults.toml", faults);
    s.lab_init("lab", &["--faults", "faults.toml"]);
}

fn assert_se_patched(lab: &Value, fqdn: &str) {
    let s = item(lab, "servers", "fqdn", fqdn);
    assert_eq!(s["installed_build"], NEW, "{s}");
    assert_eq!(s["installer_runs"], 1, "{s}");
    assert_eq!(s["reboot_pending"], false, "{s}");
    assert_eq!(s["w3svc"], "running", "{s}");
    for svc in s["services"].as_array().unwrap() {
        assert_eq!(svc["state"], "running", "{s}");
        assert_eq!(svc["loaded_build"], NEW, "{s}");
    }
}

#[test]
fn a_crash_while_an_installer_asks_for_a_restart_still_gets_the_restart() {
    // Kill at every journal append of the server's procedure; the installer answers 3010.
    let args = common::apply_args(&["--lab", "lab"], &[SE], &[]);
    kill_at_every_append(
        10,
        || {
            let s = Scratch::new();
            lab_with_faults(
                &s,
                "[[fault]]\nserver = \"se1.dublin.demo.example\"\nstep = \"install-update\"\nexit_code = 3010\n",
            );
            s
        },
        &args,
        |s, n| {
            assert_se_patched(&s.lab_json("lab"), SE);
            assert_every_command_audited(s, n);
        },
    );
}

/// Every step that ran (or may have: found done by its probe after the kill) has an audit row.
fn assert_every_command_audited(s: &Scratch, n: usize) {
    let report = s.run(&["report", "--state", "state.db", "--format", "json"]);
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    let audit = report["audit"].as_array().unwrap();
    for server in report["servers"].as_array().unwrap() {
        for step in server["steps"].as_array().unwrap() {
            if step["attempts"].as_u64().unwrap_or(0) == 0 || step["id"] == "update-databases" {
                continue;
            }
            assert!(
                audit
                    .iter()
                    .any(|a| a["server"] == server["fqdn"] && a["step"] == step["id"]),
                "kill at {n}: {} {} has no audit row",
                server["fqdn"],
                step["id"]
            );
        }
    }
}

#[test]
fn a_database_step_that_fails_after_the_install_says_so_and_a_second_apply_finishes_it() {
    let s = Scratch::new();
    lab_with_faults(
        &s,
        "[[fault]]\nserver = \"se1.dublin.demo.example\"\nstep = \"update-databases\"\nexit_code = 1\n",
    );
    let o = s.run(&common::apply_args(&["--lab", "lab"], &[SE], &[]));
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let status = s.status_json("state.db");
    let sv = item(&status, "servers", "fqdn", SE);
    let reason = sv["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("update-databases exited with code 1"),
        "{reason}"
    );
    assert!(
        reason.ends_with(
            "databases behind: build 7.0.2046.553 is installed but its databases are not updated; \
             finish with `Install-CsDatabase -Update -LocalDatabases` on se1.dublin.demo.example, \
             or apply again with --only se1.dublin.demo.example (the pre-flight skips what is \
             done: only the database step runs)"
        ),
        "{reason}"
    );
    // Recovered: in service on the new build, its databases behind.
    let lab = s.lab_json("lab");
    let server = item(&lab, "servers", "fqdn", SE);
    assert_eq!(server["installed_build"], NEW);
    let local = item(&lab, "sql_instances", "sql_server_fqdn", SE);
    assert!(
        local["stores"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["version"] != d["expected_version"]),
        "{local}"
    );
    let outages_before = item(&lab, "pools", "fqdn", SE)["outage_intervals"]
        .as_array()
        .unwrap()
        .len();

    // The second apply runs only the database step: one short outage, no installer run.
    let o = s.run(&common::apply_args(&["--lab", "lab"], &[SE], &[]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let lab = s.lab_json("lab");
    assert_se_patched(&lab, SE);
    let local = item(&lab, "sql_instances", "sql_server_fqdn", SE);
    assert!(
        local["stores"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["version"] == d["expected_version"]),
        "{local}"
    );
    let outages = item(&lab, "pools", "fqdn", SE)["outage_intervals"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(outages.len(), outages_before + 1);
    let last = outages.last().unwrap();
    let len = last["end"].as_f64().unwrap() - last["start"].as_f64().unwrap();
    assert!(
        (len - 360.0).abs() < 1.0,
        "only the 6-minute database step: {last}"
    );
    let status = s.status_json("state.db");
    let sv = item(&status, "servers", "fqdn", SE);
    assert_eq!(
        item(sv, "steps", "id", "install-update")["state"],
        "not-applicable"
    );
    assert_eq!(
        item(sv, "steps", "id", "update-databases")["state"],
        "succeeded"
    );
}

/// The pool's outage intervals in minutes, and whether it was ever in resiliency mode.
fn outage_minutes(lab: &Value, pool: &str) -> (Vec<f64>, bool) {
    let p = item(lab, "pools", "fqdn", pool);
    let outages = p["outage_intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["end"].as_f64().unwrap() - i["start"].as_f64().unwrap()) / 60.0)
        .collect();
    (
        outages,
        !p["resiliency_intervals"].as_array().unwrap().is_empty(),
    )
}

#[test]
fn a_hung_installer_is_cut_at_the_budget_and_not_retried_inside_the_window() {
    for times in ["1", "0"] {
        let s = Scratch::new();
        lab_with_faults(
            &s,
            &format!(
                "[[fault]]\nserver = \"se1.dublin.demo.example\"\nstep = \"install-update\"\nhang = true\ntimes = {times}\n"
            ),
        );
        let o = s.run(&common::apply_args(&["--lab", "lab"], &[SE], &[]));
        assert_eq!(code(&o), 1, "{}", stderr(&o));
        let lab = s.lab_json("lab");
        let (outages, resiliency) = outage_minutes(&lab, SE);
        assert_eq!(outages.len(), 1, "{outages:?}");
        assert!(outages[0] < 30.0, "hang times={times}: {outages:?}");
        assert!(!resiliency, "hang times={times}");
        // Recovered on the old build, the installer never run twice.
        let server = item(&lab, "servers", "fqdn", SE);
        assert_eq!(server["installer_runs"], 0, "{server}");
        assert_eq!(server["w3svc"], "running");
        let status = s.status_json("state.db");
        let sv = item(&status, "servers", "fqdn", SE);
        assert_eq!(item(sv, "steps", "id", "install-update")["attempts"], 1);
        assert!(
            sv["reason"].as_str().unwrap().contains(
                "did not finish within 15.8 min; the outage budget left (1.0 min) cannot hold \
                 another attempt (predicted 12.0 min), so it is not retried inside the window"
            ),
            "{sv}"
        );
    }
}

#[test]
fn a_hung_database_update_ends_before_the_30_minute_line() {
    let s = Scratch::new();
    lab_with_faults(
        &s,
        "[[fault]]\nserver = \"sqlbe2.berlin.demo.example\"\nstep = \"update-databases\"\nhang = true\ntimes = 0\n",
    );
    let o = s.run(&common::apply_args(
        &["--lab", "lab"],
        &["fepool2.berlin.demo.example"],
        &[],
    ));
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let lab = s.lab_json("lab");
    let (outages, resiliency) = outage_minutes(&lab, "fepool2.berlin.demo.example");
    assert!(!resiliency, "{outages:?}");
    // Held by the hung update until its timeout, a minute short of the line.
    assert_eq!(outages.len(), 1, "{outages:?}");
    assert!((outages[0] - 29.0).abs() < 0.1, "{outages:?}");
    assert!(
        stderr(&o).contains("Test-CsDatabase: 9 database(s) behind their expected version"),
        "{}",
        stderr(&o)
    );
}

/// Killed at random moments of a real-time run (operations sleeping their share, several
/// servers side by side), then resumed: `status`, `report` and the lab world agree on when
/// every server's outage began and ended, to the second.
#[test]
fn after_kills_at_real_time_speed_status_report_and_the_world_agree_on_every_outage() {
    use std::process::Stdio;
    use std::time::Duration;
    let only = ["fepool2.berlin.demo.example", "se2.dublin.demo.example"];
    let args = common::apply_args(&["--lab", "lab"], &only, &["--max-parallel", "2"]);
    // Deterministic "random" moments, spread over the ~2.5 s run.
    let mut seed: u64 = 0x5eed_1234;
    for _ in 0..4 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let delay = 150 + (seed >> 33) % 2200;
        let s = Scratch::new();
        s.lab_init("lab", &["--speed", "2000"]);
        let mut child = common::bin()
            .current_dir(s.path())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
        let r = s.run(&["resume", "--state", "state.db"]);
        if code(&r) == 3 {
            // Killed before the run was recorded: start it again.
            let o = s.run(&args);
            assert_eq!(code(&o), 0, "{}", stderr(&o));
        } else {
            assert!(
                code(&r) == 0 || stderr(&r).contains("already succeeded"),
                "killed after {delay} ms: {}",
                stderr(&r)
            );
        }
        let status = s.status_json("state.db");
        let report: Value = serde_json::from_slice(
            &s.run(&["report", "--state", "state.db", "--format", "json"])
                .stdout,
        )
        .unwrap();
        let lab = s.lab_json("lab");
        for fqdn in [
            "fe21.berlin.demo.example",
            "fe22.berlin.demo.example",
            "se2.dublin.demo.example",
        ] {
            let st = item(&status, "servers", "fqdn", fqdn);
            let rp = item(&report, "servers", "fqdn", fqdn);
            let out = item(&lab, "servers", "fqdn", fqdn)["out_of_service"]
                .as_array()
                .unwrap()
                .clone();
            assert_eq!(out.len(), 1, "killed after {delay} ms: {fqdn} {out:?}");
            let (start, end) = (
                out[0]["start"].as_f64().unwrap(),
                out[0]["end"].as_f64().unwrap(),
            );
            let close = |a: &Value, b: f64| (a.as_f64().unwrap() - b).abs() < 1.0;
            // The report counts from the run's creation on the same clock.
            let origin = report["run"]["created_at_seconds"].as_f64().unwrap();
            let (start, end) = (start - origin, end - origin);
            assert!(
                close(&st["outage_started_at"], start + origin)
                    && close(&st["outage_ended_at"], end + origin),
                "killed after {delay} ms: {fqdn}: status {st} world {start}-{end} (+{origin})"
            );
            assert!(
                close(&rp["outage_start_seconds"], start) && close(&rp["outage_end_seconds"], end),
                "killed after {delay} ms: {fqdn}: report {rp} world {start}-{end}"
            );
            assert_eq!(
                item(&lab, "servers", "fqdn", fqdn)["installer_runs"],
                1,
                "killed after {delay} ms: {fqdn}"
            );
        }
    }
}

/// The first step of the window hangs without effect: the server never left service, so the
/// window opens with the next attempt and the budget is whole for it; hanging every time, the
/// server fails without ever going out.
#[test]
fn a_hung_first_window_step_leaves_the_server_in_service_and_is_tried_again() {
    for (times, code_expected) in [("1", 0), ("0", 1)] {
        let s = Scratch::new();
        lab_with_faults(
            &s,
            &format!(
                "[[fault]]\nserver = \"{SE}\"\nstep = \"stop-cs-services\"\nhang = true\ntimes = {times}\n"
            ),
        );
        let o = s.run(&common::apply_args(&["--lab", "lab"], &[SE], &[]));
        assert_eq!(code(&o), code_expected, "times={times}: {}", stderr(&o));
        let lab = s.lab_json("lab");
        let (outages, resiliency) = outage_minutes(&lab, SE);
        assert!(!resiliency);
        let status = s.status_json("state.db");
        let sv = item(&status, "servers", "fqdn", SE);
        if code_expected == 0 {
            // One window, from the attempt that took effect: the usual 25.2 minutes.
            assert_eq!(outages.len(), 1, "{outages:?}");
            assert!((outages[0] - 25.2).abs() < 0.05, "{outages:?}");
            assert!((sv["outage_seconds"].as_f64().unwrap() / 60.0 - 25.2).abs() < 0.05);
            assert_se_patched(&lab, SE);
        } else {
            assert!(outages.is_empty(), "never out of service: {outages:?}");
            assert!(sv["outage_seconds"].is_null(), "{sv}");
            assert_eq!(item(&lab, "servers", "fqdn", SE)["installer_runs"], 0);
            assert!(
                sv["reason"]
                    .as_str()
                    .unwrap()
                    .starts_with("stop-cs-services failed after 3 attempts"),
                "{sv}"
            );
        }
    }
}
