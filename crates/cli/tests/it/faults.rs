//! Faults inside the outage window: every one ends with the server safe and the truth told.
//! The lab world is the judge.

use serde_json::Value;

use crate::common::{self, NEW, Scratch, code, item, stderr};

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
    let mut n = 1;
    loop {
        let s = Scratch::new();
        lab_with_faults(
            &s,
            "[[fault]]\nserver = \"se1.dublin.demo.example\"\nstep = \"install-update\"\nexit_code = 3010\n",
        );
        let args = common::apply_args(&["--lab", "lab"], &[SE], &[]);
        let o = common::bin()
            .current_dir(s.path())
            .args(&args)
            .env(common::KILL_ENV, n.to_string())
            .output()
            .unwrap();
        if o.status.code() == Some(0) {
            assert!(n > 10, "the procedure has more commit points than {n}");
            break;
        }
        let r = s.run(&["resume", "--state", "state.db"]);
        assert_eq!(code(&r), 0, "resume after kill at {n}: {}", stderr(&r));
        assert_se_patched(&s.lab_json("lab"), SE);
        n += 1;
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
