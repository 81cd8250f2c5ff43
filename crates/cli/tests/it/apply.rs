//! `apply`, `resume`, `status`, `unlock` against the lab. Every test asserts the simulated
//! world's end state (`lab show`), not only what the engine says about itself.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, OLD, Scratch, assert_patched, code, item, stderr, stdout};

fn lab_init(s: &Scratch, faults: Option<&str>, extra: &[&str]) {
    let mut args = Vec::new();
    if let Some(f) = faults {
        s.write("faults.toml", f);
        args.extend(["--faults", "faults.toml"]);
    }
    args.extend(extra);
    s.lab_init("lab", &args);
}

fn apply_args<'a>(only: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    common::apply_args(&["--lab", "lab"], only, extra)
}

fn server<'a>(lab: &'a Value, fqdn: &str) -> &'a Value {
    item(lab, "servers", "fqdn", fqdn)
}

fn pool<'a>(lab: &'a Value, fqdn: &str) -> &'a Value {
    item(lab, "pools", "fqdn", fqdn)
}

fn status_server<'a>(status: &'a Value, fqdn: &str) -> &'a Value {
    item(status, "servers", "fqdn", fqdn)
}

fn step<'a>(server: &'a Value, id: &str) -> &'a Value {
    item(server, "steps", "id", id)
}

fn apply(s: &Scratch, only: &[&str], extra: &[&str]) -> std::process::Output {
    s.run(&apply_args(only, extra))
}

/// The server is untouched or recovered: old build, everything running on it.
fn assert_in_service_on_old_build(lab: &Value, fqdn: &str) {
    let s = server(lab, fqdn);
    assert_eq!(s["installed_build"], OLD, "{fqdn}: {s}");
    assert_eq!(s["installer_runs"], 0, "{fqdn}");
    assert_eq!(s["w3svc"], "running", "{fqdn}");
    for svc in s["services"].as_array().unwrap() {
        assert_eq!(svc["state"], "running", "{fqdn} {svc}");
        assert_eq!(svc["loaded_build"], OLD, "{fqdn} {svc}");
    }
}

/// Every database of every listed back end is at the version the installed build expects.
fn assert_stores_current(lab: &Value, sql_servers: &[&str]) {
    let mut seen = 0;
    for inst in lab["sql_instances"].as_array().unwrap() {
        let fqdn = inst["sql_server_fqdn"].as_str().unwrap();
        if !sql_servers.iter().any(|s| s.eq_ignore_ascii_case(fqdn)) {
            continue;
        }
        for st in inst["stores"].as_array().unwrap() {
            seen += 1;
            assert_eq!(st["version"], st["expected_version"], "{fqdn}: {st}");
        }
    }
    assert!(seen > 0, "no databases found for {sql_servers:?}");
}

const ALL: [&str; 6] = [
    "sqlbe1.berlin.demo.example",
    "sqlbe2.berlin.demo.example",
    "sqlag-n1.dublin.demo.example",
    "sqlag-n2.dublin.demo.example",
    "se1.dublin.demo.example",
    "se2.dublin.demo.example",
];

const SQL: [&str; 5] = [
    "sqlbe1.berlin.demo.example",
    "sqlbe2.berlin.demo.example",
    "sqlag.dublin.demo.example",
    "se1.dublin.demo.example",
    "se2.dublin.demo.example",
];

#[test]
fn applies_every_variant_end_to_end() {
    let s = Scratch::new();
    lab_init(&s, None, &[]);
    let o = apply(&s, &[], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let lab = s.lab_json("lab");
    for fqdn in ALL {
        assert_patched(&lab, fqdn);
    }
    assert_stores_current(&lab, &SQL);
    for p in lab["pools"].as_array().unwrap() {
        assert_eq!(
            p["resiliency_intervals"].as_array().unwrap().len(),
            0,
            "{p}"
        );
        assert_eq!(p["mode"], "normal", "{p}");
    }
    // The AlwaysOn back end stayed available: one node was always in service.
    assert_eq!(
        pool(&lab, "fepool3.dublin.demo.example")["outage_intervals"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // A single back end was unavailable for exactly the outage window (25.2 simulated minutes).
    let iv = &pool(&lab, "fepool1.berlin.demo.example")["outage_intervals"][0];
    let len = iv["end"].as_f64().unwrap() - iv["start"].as_f64().unwrap();
    assert!((len - 1512.0).abs() < 1.0, "{iv}");

    let status = s.status_json("state.db");
    assert_eq!(status["run"]["state"], "succeeded");
    for fqdn in ALL {
        let sv = status_server(&status, fqdn);
        assert_eq!(sv["state"], "succeeded", "{sv}");
        assert_eq!(sv["steps"].as_array().unwrap().len(), 11);
        for st in sv["steps"].as_array().unwrap() {
            assert_eq!(st["state"], "succeeded", "{fqdn} {st}");
        }
    }
    assert!(stdout(&o).contains("run 1 succeeded"), "{}", stdout(&o));
}

#[test]
fn installer_failure_recovers_the_server_and_stops_the_run() {
    let s = Scratch::new();
    lab_init(
        &s,
        Some(
            "[[fault]]\nserver = \"sqlbe1.berlin.demo.example\"\nstep = \"install-update\"\nexit_code = 1603\n",
        ),
        &[],
    );
    let o = apply(&s, &[], &[]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let lab = s.lab_json("lab");
    assert_in_service_on_old_build(&lab, "sqlbe1.berlin.demo.example");
    assert_in_service_on_old_build(&lab, "sqlbe2.berlin.demo.example");
    let status = s.status_json("state.db");
    assert_eq!(status["run"]["state"], "failed");
    let be1 = status_server(&status, "sqlbe1.berlin.demo.example");
    assert_eq!(be1["state"], "failed");
    assert!(
        be1["reason"]
            .as_str()
            .unwrap()
            .starts_with("install-update exited with code 1603"),
        "{be1}"
    );
    assert_eq!(
        step(be1, "install-update")["attempts"],
        1,
        "1603 is not retried"
    );
    // The next server had staged while sqlbe1 was in its outage window; it stops there.
    let be2 = status_server(&status, "sqlbe2.berlin.demo.example");
    assert_eq!(be2["state"], "skipped", "{be2}");
    assert!(
        be2["reason"].as_str().unwrap().starts_with(
            "stopped before stop-cs-services: the failure budget is spent (1 of 6 servers failed)"
        ),
        "{be2}"
    );
    assert_eq!(
        status_server(&status, "se1.dublin.demo.example")["state"],
        "pending"
    );
    // The outage ended with the recovery.
    let iv = &pool(&lab, "fepool1.berlin.demo.example")["outage_intervals"][0];
    assert!(iv["end"].is_number(), "{iv}");
}

#[test]
fn max_failures_lets_the_run_continue() {
    let s = Scratch::new();
    lab_init(
        &s,
        Some(
            "[[fault]]\nserver = \"sqlbe1.berlin.demo.example\"\nstep = \"install-update\"\nexit_code = 1603\n",
        ),
        &[],
    );
    let o = apply(&s, &[], &["--max-failures", "1"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let lab = s.lab_json("lab");
    assert_in_service_on_old_build(&lab, "sqlbe1.berlin.demo.example");
    for fqdn in &ALL[1..] {
        assert_patched(&lab, fqdn);
    }
}

#[test]
fn transient_installer_exit_is_retried() {
    let s = Scratch::new();
    lab_init(
        &s,
        Some(
            "[[fault]]\nserver = \"se1.dublin.demo.example\"\nstep = \"install-update\"\nexit_code = 1618\ntimes = 1\n",
        ),
        &[],
    );
    let o = apply(&s, &["se1.dublin.demo.example"], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_patched(&s.lab_json("lab"), "se1.dublin.demo.example");
    let status = s.status_json("state.db");
    let se1 = status_server(&status, "se1.dublin.demo.example");
    assert_eq!(step(se1, "install-update")["attempts"], 2);
}

#[test]
fn a_long_install_puts_users_in_resiliency_mode_and_warns() {
    let s = Scratch::new();
    lab_init(
        &s,
        Some(
            "[[fault]]\nserver = \"se1.dublin.demo.example\"\nstep = \"install-update\"\nduration_minutes = 40\n",
        ),
        &[],
    );
    let o = apply(&s, &["se1.dublin.demo.example"], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("users of pool se1.dublin.demo.example may be in resiliency mode"),
        "{err}"
    );
    let lab = s.lab_json("lab");
    assert_patched(&lab, "se1.dublin.demo.example");
    let p = pool(&lab, "se1.dublin.demo.example");
    let r = &p["resiliency_intervals"].as_array().unwrap()[0];
    // 2 + 0.5 + 0.2 + 40 + 1 + 0.5 + 6 + 3 = 53.2 minutes out; the last 23.2 in resiliency mode.
    let len = r["end"].as_f64().unwrap() - r["start"].as_f64().unwrap();
    assert!((len - 23.2 * 60.0).abs() < 1.0, "{r}");
    assert!(
        stdout(&o).contains("users in resiliency mode for 23.2 min"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_hung_step_is_probed_and_run_again() {
    let s = Scratch::new();
    lab_init(
        &s,
        Some(
            "[[fault]]\nserver = \"se1.dublin.demo.example\"\nstep = \"stop-w3svc\"\nhang = true\n",
        ),
        &[],
    );
    let o = apply(&s, &["se1.dublin.demo.example"], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_patched(&s.lab_json("lab"), "se1.dublin.demo.example");
    let status = s.status_json("state.db");
    assert_eq!(
        step(
            status_server(&status, "se1.dublin.demo.example"),
            "stop-w3svc"
        )["attempts"],
        2
    );
}

#[test]
fn an_unreachable_server_is_waited_for() {
    let s = Scratch::new();
    lab_init(
        &s,
        Some(
            "[[fault]]\nserver = \"se1.dublin.demo.example\"\nstep = \"stage-update\"\nunreachable_minutes = 10\n",
        ),
        &[],
    );
    let o = apply(&s, &["se1.dublin.demo.example"], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_patched(&s.lab_json("lab"), "se1.dublin.demo.example");
    assert!(stderr(&o).contains("unreachable"), "{}", stderr(&o));
}

#[test]
fn an_open_management_shell_makes_the_installer_fail() {
    let s = Scratch::new();
    lab_init(
        &s,
        Some(
            "[[fault]]\nserver = \"se1.dublin.demo.example\"\nstep = \"install-update\"\nopen_shells = 1\n",
        ),
        &[],
    );
    let o = apply(&s, &["se1.dublin.demo.example"], &[]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let lab = s.lab_json("lab");
    assert_eq!(
        server(&lab, "se1.dublin.demo.example")["installed_build"],
        OLD
    );
    let status = s.status_json("state.db");
    let se1 = status_server(&status, "se1.dublin.demo.example");
    assert!(
        se1["reason"].as_str().unwrap().contains("files in use"),
        "{se1}"
    );
}

#[test]
fn a_full_disk_fails_the_server_before_any_outage() {
    let s = Scratch::new();
    lab_init(
        &s,
        Some(
            "[[fault]]\nserver = \"se1.dublin.demo.example\"\nstep = \"stage-update\"\ndisk_full = true\n",
        ),
        &[],
    );
    let o = apply(&s, &["se1.dublin.demo.example"], &[]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let lab = s.lab_json("lab");
    assert_in_service_on_old_build(&lab, "se1.dublin.demo.example");
    assert_eq!(
        pool(&lab, "se1.dublin.demo.example")["outage_intervals"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let status = s.status_json("state.db");
    let se1 = status_server(&status, "se1.dublin.demo.example");
    assert_eq!(se1["state"], "failed");
    assert!(se1["outage_seconds"].is_null(), "{se1}");
}

#[test]
fn an_outage_budget_below_the_prediction_keeps_the_server_out() {
    let s = Scratch::new();
    lab_init(&s, None, &[]);
    let o = apply(&s, &["se1.dublin.demo.example"], &["--outage-budget", "20"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let status = s.status_json("state.db");
    let se1 = status_server(&status, "se1.dublin.demo.example");
    assert_eq!(se1["state"], "skipped");
    assert!(
        se1["reason"]
            .as_str()
            .unwrap()
            .starts_with("predicted outage 25.2 min exceeds the outage budget 20.0 min"),
        "{se1}"
    );
    assert_in_service_on_old_build(&s.lab_json("lab"), "se1.dublin.demo.example");

    let o = apply(
        &s,
        &["se1.dublin.demo.example"],
        &["--outage-budget", "20", "--accept-resiliency"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_patched(&s.lab_json("lab"), "se1.dublin.demo.example");
}

#[test]
fn a_wrong_database_variant_is_caught_by_verify() {
    // The lab knows sqlbe1 as an Enterprise back end; this inventory claims it is a Standard
    // Edition server, so the plan runs `Install-CsDatabase -Update -LocalDatabases` there.
    let s = Scratch::new();
    lab_init(&s, None, &[]);
    s.write(
        "wrong.toml",
        "[[site]]\nname = \"Berlin\"\n\n[[pool]]\nfqdn = \"sqlbe1.berlin.demo.example\"\nsite = \"Berlin\"\nedition = \"standard\"\n",
    );
    let o = s.run(&[
        "apply",
        "wrong.toml",
        "--package",
        "demo-package.toml",
        "--lab",
        "lab",
        "--state",
        "state.db",
        "--yes",
    ]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let status = s.status_json("state.db");
    let be1 = status_server(&status, "sqlbe1.berlin.demo.example");
    assert_eq!(be1["state"], "failed");
    assert_eq!(step(be1, "update-databases")["state"], "succeeded");
    assert_eq!(step(be1, "verify")["state"], "failed");
    assert!(
        be1["reason"].as_str().unwrap().starts_with("verify exited"),
        "{be1}"
    );
    let lab = s.lab_json("lab");
    let inst = lab["sql_instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["sql_server_fqdn"] == "sqlbe1.berlin.demo.example")
        .unwrap();
    assert!(
        inst["stores"]
            .as_array()
            .unwrap()
            .iter()
            .all(|st| st["version"] != st["expected_version"]),
        "the wrong variant leaves every store behind: {inst}"
    );
}

#[test]
fn resume_with_nothing_to_resume_is_refused() {
    let s = Scratch::new();
    let o = s.run(&["resume", "--state", "state.db"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("there is no state store at state.db"),
        "{}",
        stderr(&o)
    );
    // A store with no run in it.
    drop(sfbpatch_store::open(&s.path().join("state.db").display().to_string()).unwrap());
    let o = s.run(&["resume", "--state", "state.db"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("there is no run to resume"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn apply_without_yes_and_without_a_terminal_is_refused() {
    let s = Scratch::new();
    lab_init(&s, None, &[]);
    let args: Vec<&str> = apply_args(&[], &[])
        .into_iter()
        .filter(|a| *a != "--yes")
        .collect();
    let o = crate::common::bin()
        .current_dir(s.path())
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("pass --yes"), "{}", stderr(&o));
    assert_in_service_on_old_build(&s.lab_json("lab"), "se1.dublin.demo.example");
}

/// Kill the process at every journal append of a two-server run, resume until done, and check
/// the world each time: never a second installer run, never a server left half-done.
#[test]
fn crash_at_every_commit_point_then_resume() {
    let only = ["sqlbe2.berlin.demo.example", "se1.dublin.demo.example"];
    let mut n = 1;
    loop {
        let s = Scratch::new();
        lab_init(&s, None, &[]);
        let o = crate::common::bin()
            .current_dir(s.path())
            .args(apply_args(&only, &[]))
            .env(crate::common::KILL_ENV, n.to_string())
            .output()
            .unwrap();
        let killed = o.status.code().is_none();
        if killed {
            // A crashed run is reported as interrupted, then resumed to the end.
            let status = s.status_json("state.db");
            assert_eq!(status["run"]["state"], "interrupted", "kill at {n}");
            let r = s.run(&["resume", "--state", "state.db"]);
            assert_eq!(code(&r), 0, "resume after kill at {n}: {}", stderr(&r));
        } else {
            assert_eq!(code(&o), 0, "{}", stderr(&o));
        }
        let lab = s.lab_json("lab");
        for fqdn in only {
            assert_patched(&lab, fqdn);
        }
        assert_stores_current(
            &lab,
            &["sqlbe2.berlin.demo.example", "se1.dublin.demo.example"],
        );
        let status = s.status_json("state.db");
        assert_eq!(status["run"]["state"], "succeeded", "kill at {n}");
        if !killed {
            assert!(n > 40, "a two-server run has more commit points than {n}");
            break;
        }
        n += 1;
    }
}

/// Real SIGKILLs at timed points of a run in (sped-up) lab time.
#[test]
fn sigkill_at_timed_points_then_resume() {
    let only = ["sqlbe1.berlin.demo.example", "se2.dublin.demo.example"];
    for delay_ms in [150u64, 400, 700, 1000, 1300] {
        let s = Scratch::new();
        // About 62 simulated minutes in ~1.9 s.
        lab_init(&s, None, &["--speed", "2000"]);
        let mut child = crate::common::bin()
            .current_dir(s.path())
            .args(apply_args(&only, &[]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let r = s.run(&["resume", "--state", "state.db"]);
        // Killed before the run was recorded: nothing to resume; start it again.
        if code(&r) == 3
            && (stderr(&r).contains("no run to resume")
                || stderr(&r).contains("there is no state store"))
        {
            let o = apply(&s, &only, &[]);
            assert_eq!(code(&o), 0, "{}", stderr(&o));
        } else {
            assert!(
                code(&r) == 0 || stderr(&r).contains("already succeeded"),
                "resume after {delay_ms} ms: {}",
                stderr(&r)
            );
        }
        let lab = s.lab_json("lab");
        for fqdn in only {
            assert_patched(&lab, fqdn);
        }
    }
}

#[test]
fn a_second_apply_on_a_leased_pool_is_refused_until_unlocked() {
    let s = Scratch::new();
    // Slow enough that the first run is still inside its first server when the second starts.
    lab_init(&s, None, &["--speed", "300"]);
    let mut first = crate::common::bin()
        .current_dir(s.path())
        .args(apply_args(&["se1.dublin.demo.example"], &[]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "the first run did not start");
        let o = s.run(&["status", "--state", "state.db", "--format", "json"]);
        if code(&o) == 0 && stdout(&o).contains("\"running\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = apply(&s, &["se1.dublin.demo.example"], &[]);
    assert_eq!(code(&second), 3, "{}", stderr(&second));
    let err = stderr(&second);
    assert!(
        err.contains("pool se1.dublin.demo.example is leased by run 1")
            && err.contains(&format!("pid {}", first.id())),
        "{err}"
    );
    // The first process dies; its lease stays until broken.
    first.kill().unwrap();
    first.wait().unwrap();
    let again = apply(&s, &["se1.dublin.demo.example"], &[]);
    assert_eq!(code(&again), 3, "{}", stderr(&again));
    let u = s.run(&[
        "unlock",
        "se1.dublin.demo.example",
        "--state",
        "state.db",
        "--yes",
    ]);
    assert_eq!(code(&u), 0, "{}", stderr(&u));
    assert!(
        stderr(&u).contains("broke the lease of run 1"),
        "{}",
        stderr(&u)
    );
    // The interrupted run resumes and the installer still runs once.
    let r = s.run(&["resume", "--state", "state.db"]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert_patched(&s.lab_json("lab"), "se1.dublin.demo.example");
}
