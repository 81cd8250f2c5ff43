//! `sfbpatch retry SERVER`: a failed server is tried again by the next `resume`, with what it
//! completed kept; the lab world shows the installer ran exactly as needed.

use serde_json::Value;

use crate::common::{self, DEMO_SERVERS, NEW, OLD, Scratch, assert_patched, code, item, stderr};

const FE: &str = "fe11.berlin.demo.example";
const SE1: &str = "se1.dublin.demo.example";

/// The first attempt of the installer on `server` fails with 1603 (rolled back, no effect).
fn lab_failing_once(s: &Scratch, server: &str) {
    s.write(
        "faults.toml",
        &format!(
            "[[fault]]\nserver = \"{server}\"\nstep = \"install-update\"\nexit_code = 1603\ntimes = 1\n"
        ),
    );
    s.lab_init("lab", &["--faults", "faults.toml"]);
}

fn server_state(status: &Value, fqdn: &str) -> String {
    item(status, "servers", "fqdn", fqdn)["state"]
        .as_str()
        .unwrap()
        .to_string()
}

fn step<'a>(status: &'a Value, fqdn: &str, id: &str) -> &'a Value {
    item(item(status, "servers", "fqdn", fqdn), "steps", "id", id)
}

#[test]
fn a_front_end_server_that_failed_once_is_patched_by_retry_and_resume() {
    let s = Scratch::new();
    lab_failing_once(&s, FE);
    let o = s.run(&common::apply_args(&["--lab", "lab"], &[], &[]));
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let status = s.status_json("state.db");
    assert_eq!(status["run"]["state"], "failed");
    assert_eq!(server_state(&status, FE), "failed");
    let reason = item(&status, "servers", "fqdn", FE)["reason"]
        .as_str()
        .unwrap();
    assert!(reason.contains("1603"), "{reason}");
    // The failed attempt changed nothing, and the recovery failed the server back.
    let lab = s.lab_json("lab");
    let fe = item(&lab, "servers", "fqdn", FE);
    assert_eq!(
        (
            fe["installed_build"].as_str(),
            fe["installer_runs"].as_u64()
        ),
        (Some(OLD), Some(0))
    );
    assert_eq!(fe["failed_over"], false, "{fe}");

    // resume alone refuses: the run ended.
    let o = s.run(&["resume", "--state", "state.db"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("already failed"), "{}", stderr(&o));

    let o = s.run(&["retry", FE, "--state", "state.db"]);
    let err = stderr(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(
        err.contains(&format!("{FE} is marked to be tried again in run 1"))
            && err.contains("`sfbpatch resume --state state.db` patches it")
            && err.contains(
                "steps that stay done: check-admin-role, stage-update, check-fabric-state;"
            ),
        "{err}"
    );
    let status = s.status_json("state.db");
    assert_eq!(status["run"]["state"], "interrupted", "resumable again");
    assert_eq!(server_state(&status, FE), "pending");
    assert_eq!(item(&status, "servers", "fqdn", FE)["reason"], Value::Null);
    assert_eq!(step(&status, FE, "stage-update")["state"], "succeeded");
    // The recovery failed it back: failover runs again; the installer is tried again.
    assert_eq!(step(&status, FE, "failover")["state"], "pending");
    assert_eq!(step(&status, FE, "install-update")["state"], "pending");
    for fqdn in DEMO_SERVERS {
        assert_ne!(server_state(&status, fqdn), "failed", "{fqdn}");
        assert_ne!(
            server_state(&status, fqdn),
            "skipped",
            "{fqdn}: skipped because of it"
        );
    }
    // Nothing ran yet.
    assert_eq!(
        item(&s.lab_json("lab"), "servers", "fqdn", FE)["installer_runs"],
        0
    );

    let o = s.run(&["resume", "--state", "state.db"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let status = s.status_json("state.db");
    assert_eq!(status["run"]["state"], "succeeded");
    let lab = s.lab_json("lab");
    for fqdn in DEMO_SERVERS {
        // On the new build, installed exactly once (the failed attempt had no effect).
        assert_patched(&lab, fqdn);
    }
    assert_eq!(item(&lab, "servers", "fqdn", FE)["installed_build"], NEW);
    let fe = item(&status, "servers", "fqdn", FE);
    assert_eq!(step(&status, FE, "install-update")["attempts"], 2, "{fe}");
    assert_eq!(
        step(&status, FE, "stage-update")["attempts"],
        1,
        "staged once: {fe}"
    );

    // The audit trail says who asked.
    let report = s.run(&["report", "--state", "state.db", "--format", "json"]);
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    let retry = report["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["step"] == "retry")
        .unwrap_or_else(|| panic!("an audit line for the retry: {}", report["audit"]));
    assert_eq!(retry["server"], FE);
    assert_eq!(retry["command"], format!("sfbpatch retry {FE}"));

    // Nothing left to retry.
    let o = s.run(&["retry", FE, "--state", "state.db"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("{FE} did not fail in run 1: it is succeeded")),
        "{}",
        stderr(&o)
    );
}

#[test]
fn retry_refuses_what_it_cannot_retry_and_names_it() {
    let s = Scratch::new();
    lab_failing_once(&s, SE1);
    // No run yet.
    let o = s.run(&["retry", SE1, "--state", "state.db"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    let o = s.run(&common::apply_args(
        &["--lab", "lab"],
        &[SE1, "se2.dublin.demo.example"],
        &["--continue-on-failure", "--max-failures", "1"],
    ));
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let status = s.status_json("state.db");
    assert_eq!(server_state(&status, SE1), "failed");
    assert_eq!(
        server_state(&status, "se2.dublin.demo.example"),
        "succeeded"
    );

    // A server that is not in the run: bad input, named, with the run's servers.
    let o = s.run(&["retry", "se9.dublin.demo.example", "--state", "state.db"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("server se9.dublin.demo.example is not in run 1; its servers are: ")
            && stderr(&o).contains(SE1),
        "{}",
        stderr(&o)
    );
    // One that did not fail: refused.
    let o = s.run(&["retry", "SE2.dublin.demo.example", "--state", "state.db"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "se2.dublin.demo.example did not fail in run 1: it is succeeded; there is nothing to try again"
        ),
        "{}",
        stderr(&o)
    );
    // A run that does not exist: refused, like every --run.
    let o = s.run(&["retry", SE1, "--state", "state.db", "--run", "42"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));

    // The failed one, by any spelling; twice is refused, saying what to do.
    let o = s.run(&["retry", "Se1.Dublin.Demo.Example", "--state", "state.db"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = s.run(&["retry", SE1, "--state", "state.db"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("already marked to be tried again"),
        "{}",
        stderr(&o)
    );

    let o = s.run(&["resume", "--state", "state.db"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let lab = s.lab_json("lab");
    assert_patched(&lab, SE1);
    assert_patched(&lab, "se2.dublin.demo.example");
    let status = s.status_json("state.db");
    assert_eq!(status["run"]["state"], "succeeded");
    // se2 was not touched again.
    assert_eq!(
        step(&status, "se2.dublin.demo.example", "install-update")["attempts"],
        1
    );
}

#[test]
fn a_run_or_store_that_does_not_exist_is_refused_with_3_everywhere() {
    let s = Scratch::new();
    s.lab_init("lab", &[]);
    let o = s.run(&common::apply_args(&["--lab", "lab"], &[SE1], &[]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for args in [
        vec!["approve", "99"],
        vec!["report", "--run", "42", "--format", "json"],
        vec!["status", "--run", "42"],
        vec!["resume", "--run", "42"],
        vec!["retry", SE1, "--run", "42"],
    ] {
        let mut with_state = args.clone();
        with_state.extend(["--state", "state.db"]);
        let o = s.run(&with_state);
        assert_eq!(code(&o), 3, "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("does not exist"),
            "{args:?}: {}",
            stderr(&o)
        );
        // And no store at all.
        let mut nowhere = args.clone();
        nowhere.extend(["--state", "nowhere.db"]);
        let o = s.run(&nowhere);
        assert_eq!(code(&o), 3, "{args:?}: {}", stderr(&o));
    }
}
