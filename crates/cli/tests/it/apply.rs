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
    assert_eq!(s["failed_over"], false, "{fqdn}: back in its pool");
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

const ALL: [&str; 13] = common::DEMO_SERVERS;

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
    // Each Enterprise back end, the AlwaysOn group included, was unavailable exactly while its
    // databases were updated (6.0 simulated minutes), once; the Front End servers went out
    // behind failover, at no cost to the pool.
    for name in [
        "fepool1.berlin.demo.example",
        "fepool2.berlin.demo.example",
        "fepool3.dublin.demo.example",
    ] {
        let ivs = pool(&lab, name)["outage_intervals"].as_array().unwrap();
        assert_eq!(ivs.len(), 1, "{name}: {ivs:?}");
        let len = ivs[0]["end"].as_f64().unwrap() - ivs[0]["start"].as_f64().unwrap();
        assert!((len - 360.0).abs() < 1.0, "{name}: {ivs:?}");
    }
    // A Standard Edition server is out for its whole window (25.2 simulated minutes).
    let iv = &pool(&lab, "se1.dublin.demo.example")["outage_intervals"][0];
    let len = iv["end"].as_f64().unwrap() - iv["start"].as_f64().unwrap();
    assert!((len - 1512.0).abs() < 1.0, "{iv}");

    let status = s.status_json("state.db");
    assert_eq!(status["run"]["state"], "succeeded");
    // What a SQL-only machine lacks; the AlwaysOn node whose databases its partner updates
    // has nothing else to do either.
    const SQL_ONLY: [&str; 8] = [
        "stage-update",
        "stop-cs-services",
        "stop-w3svc",
        "close-management-shells",
        "install-update",
        "stop-cs-services-gac",
        "start-w3svc",
        "start-cs-services",
    ];
    for fqdn in ALL {
        let sv = status_server(&status, fqdn);
        assert_eq!(sv["state"], "succeeded", "{sv}");
        let not_applicable: Vec<&str> = sv["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|st| st["state"] == "not-applicable")
            .map(|st| st["id"].as_str().unwrap())
            .collect();
        let (steps, expected): (usize, Vec<&str>) = match fqdn {
            // Failback, not Start-CsWindowsService, starts the services failover disabled.
            f if f.starts_with("fe") => (13, vec!["start-cs-services"]),
            f if f.starts_with("se") => (11, vec![]),
            "sqlag-n1.dublin.demo.example" => {
                let mut v = vec!["check-admin-role"];
                v.extend(SQL_ONLY);
                v.push("verify");
                (11, v)
            }
            _ => (11, SQL_ONLY.to_vec()),
        };
        assert_eq!(sv["steps"].as_array().unwrap().len(), steps, "{fqdn}");
        assert_eq!(not_applicable, expected, "{fqdn}");
        for st in sv["steps"].as_array().unwrap() {
            assert!(
                st["state"] == "succeeded" || st["state"] == "not-applicable",
                "{fqdn} {st}"
            );
        }
    }
    assert!(stdout(&o).contains("run 1 succeeded"), "{}", stdout(&o));
    // Status shows pools, not only servers.
    let fepool1 = item(&status, "pools", "fqdn", "fepool1.berlin.demo.example");
    assert_eq!(
        fepool1,
        &serde_json::json!({
            "fqdn": "fepool1.berlin.demo.example",
            "front_ends": 3,
            "front_ends_patched": 3,
            "machines": 1,
            "machines_succeeded": 1,
            "longest_outage_seconds": 360.0,
        })
    );
    let text = stdout(&s.run(&["status", "--state", "state.db"]));
    for line in [
        "  sqlbe1.berlin.demo.example               succeeded  all steps done (8 not applicable), \
         outage 6.0 min",
        "  fepool1.berlin.demo.example              Front End servers 3/3 patched; back end 1/1 \
         done, longest outage 6.0 min",
        "  se1.dublin.demo.example                  server 1/1 done, longest outage 25.2 min",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
}

/// A Front End server whose installer fails inside its window: recovered and failed back,
/// the pool never below quorum and no user affected; the run stops before the next server
/// leaves its pool.
#[test]
fn installer_failure_recovers_the_server_and_stops_the_run() {
    const FE11: &str = "fe11.berlin.demo.example";
    let s = Scratch::new();
    lab_init(
        &s,
        Some(
            "[[fault]]\nserver = \"fe11.berlin.demo.example\"\nstep = \"install-update\"\nexit_code = 1603\n",
        ),
        &[],
    );
    let before = s.lab_json("lab");
    let o = apply(&s, &[], &[]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let lab = s.lab_json("lab");
    assert_in_service_on_old_build(&lab, FE11);
    for other in ["fe12.berlin.demo.example", "fe21.berlin.demo.example"] {
        assert_eq!(server(&lab, other), server(&before, other), "{other}");
    }
    assert_eq!(
        server(&lab, "sqlbe1.berlin.demo.example"),
        server(&before, "sqlbe1.berlin.demo.example"),
        "the back end is untouched"
    );
    let fepool1 = pool(&lab, "fepool1.berlin.demo.example");
    assert_eq!(fepool1["front_ends"]["in_service"], 3, "{fepool1}");
    assert_eq!(
        fepool1["front_ends"]["down_intervals"],
        serde_json::json!([])
    );
    assert_eq!(
        fepool1["front_ends"]["user_impact_intervals"],
        serde_json::json!([])
    );
    assert_eq!(fepool1["outage_intervals"], serde_json::json!([]));

    let status = s.status_json("state.db");
    assert_eq!(status["run"]["state"], "failed");
    let fe11 = status_server(&status, FE11);
    assert_eq!(fe11["state"], "failed");
    assert!(
        fe11["reason"]
            .as_str()
            .unwrap()
            .starts_with("install-update exited with code 1603"),
        "{fe11}"
    );
    assert_eq!(
        step(fe11, "install-update")["attempts"],
        1,
        "1603 is not retried"
    );
    // The other pool's first Front End server had started beside it; it stops before it
    // leaves its pool.
    let fe21 = status_server(&status, "fe21.berlin.demo.example");
    assert_eq!(fe21["state"], "skipped", "{fe21}");
    assert!(
        fe21["reason"].as_str().unwrap().starts_with(
            "stopped before failover: the failure budget is spent (1 of 13 servers failed)"
        ),
        "{fe21}"
    );
    assert_eq!(
        status_server(&status, "se1.dublin.demo.example")["state"],
        "pending"
    );
}

/// With one failure allowed, a Standard Edition server that fails (and is recovered on its old
/// build) does not stop the run: every other machine is patched.
#[test]
fn max_failures_lets_the_run_continue() {
    let s = Scratch::new();
    lab_init(
        &s,
        Some(
            "[[fault]]\nserver = \"se1.dublin.demo.example\"\nstep = \"install-update\"\nexit_code = 1603\n",
        ),
        &[],
    );
    let o = apply(&s, &[], &["--max-failures", "1"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let lab = s.lab_json("lab");
    assert_in_service_on_old_build(&lab, "se1.dublin.demo.example");
    for fqdn in ALL.iter().filter(|f| **f != "se1.dublin.demo.example") {
        assert_patched(&lab, fqdn);
    }
    let status = s.status_json("state.db");
    assert_eq!(
        status_server(&status, "se1.dublin.demo.example")["state"],
        "failed"
    );
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

/// The lab knows sqlbe1 as a SQL-only back end; this inventory claims it is a Standard
/// Edition server, so the plan would install the update and run `Install-CsDatabase -Update
/// -LocalDatabases` there. The pre-flight finds nothing of Skype for Business on the machine
/// and stops before any outage.
#[test]
fn a_machine_the_topology_misdescribes_is_stopped_at_the_pre_flight() {
    let s = Scratch::new();
    lab_init(&s, None, &[]);
    s.write(
        "wrong.toml",
        "[[site]]\nname = \"Berlin\"\n\n[[pool]]\nfqdn = \"sqlbe1.berlin.demo.example\"\nsite = \"Berlin\"\nedition = \"standard\"\n",
    );
    let before = s.lab_json("lab");
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
    assert_eq!(
        be1["reason"],
        "pre-flight: the plan installs the update on sqlbe1.berlin.demo.example \
         (standard-edition), but it has no Skype for Business components (no Management Shell, \
         no installed build, SQL Server only): the topology does not describe this machine; \
         nothing was changed"
    );
    for st in be1["steps"].as_array().unwrap() {
        assert_eq!(st["state"], "pending", "{st}");
    }
    assert_eq!(s.lab_json("lab"), before, "nothing changed in the world");
}

#[test]
fn resume_with_nothing_to_resume_is_refused() {
    let s = Scratch::new();
    let o = s.run(&["resume", "--state", "state.db"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("there is no state store at sqlite:state.db: the file does not exist"),
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

/// Kill the process at every journal append of a run over an Enterprise pool (two Front End
/// servers behind failover, then its SQL-only back end) and a Standard Edition server, resume
/// until done, and check the world each time: never a second installer run, never a server
/// left half-done or failed over, never the pool below quorum or its users affected.
#[test]
fn crash_at_every_commit_point_then_resume() {
    let only = ["fepool2.berlin.demo.example", "se1.dublin.demo.example"];
    let machines = [
        "fe21.berlin.demo.example",
        "fe22.berlin.demo.example",
        "sqlbe2.berlin.demo.example",
        "se1.dublin.demo.example",
    ];
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
        for fqdn in machines {
            assert_patched(&lab, fqdn);
        }
        assert_stores_current(
            &lab,
            &["sqlbe2.berlin.demo.example", "se1.dublin.demo.example"],
        );
        let front_ends = &pool(&lab, "fepool2.berlin.demo.example")["front_ends"];
        assert_eq!(
            front_ends["down_intervals"],
            serde_json::json!([]),
            "kill at {n}"
        );
        assert_eq!(
            front_ends["user_impact_intervals"],
            serde_json::json!([]),
            "kill at {n}"
        );
        let status = s.status_json("state.db");
        assert_eq!(status["run"]["state"], "succeeded", "kill at {n}");
        if !killed {
            assert!(n > 80, "a four-server run has more commit points than {n}");
            break;
        }
        n += 1;
    }
}

/// Real SIGKILLs at timed points of a run in (sped-up) lab time: a pool's Front End servers
/// and back end, and a Standard Edition server.
#[test]
fn sigkill_at_timed_points_then_resume() {
    let only = ["fepool2.berlin.demo.example", "se2.dublin.demo.example"];
    let machines = [
        "fe21.berlin.demo.example",
        "fe22.berlin.demo.example",
        "sqlbe2.berlin.demo.example",
        "se2.dublin.demo.example",
    ];
    for delay_ms in [150u64, 400, 700, 1000, 1300] {
        let s = Scratch::new();
        // About 90 simulated minutes in ~2.7 s.
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
        for fqdn in machines {
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
    // The refused run left no empty run behind: the newest is still the first.
    let newest = s.status_json("state.db");
    assert_eq!(newest["run"]["id"], 1, "{newest}");
    assert_eq!(newest["run"]["state"], "running", "{newest}");
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

/// A lab's own database given as --state is refused and left byte for byte as it was: no
/// store table is added to it.
#[test]
fn a_lab_database_is_not_taken_for_a_state_store() {
    let s = Scratch::new();
    lab_init(&s, None, &[]);
    let db = s.path().join("lab").join(sfbpatch_lab::LAB_DB);
    let before = std::fs::read(&db).unwrap();
    for args in [
        vec!["status", "--state", "lab/lab.db"],
        vec!["resume", "--state", "lab/lab.db"],
        apply_args(&[], &[])
            .into_iter()
            .map(|a| if a == "state.db" { "lab/lab.db" } else { a })
            .collect(),
    ] {
        let o = s.run(&args);
        assert_eq!(code(&o), 5, "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(
                "lab/lab.db: it is not an sfbpatch state store (it holds the tables accounts, \
                 command_log, databases, faults, front_end_samples, ...: a lab's lab.db?); \
                 nothing was changed: give --state a file of its own"
            ),
            "{args:?}: {}",
            stderr(&o)
        );
        assert_eq!(
            std::fs::read(&db).unwrap(),
            before,
            "{args:?} changed lab.db"
        );
    }
}

/// A run that is not in the store is refused (exit 3) the same way by every command that takes
/// a run.
#[test]
fn a_run_that_does_not_exist_is_refused_alike_everywhere() {
    let s = Scratch::new();
    lab_init(&s, None, &[]);
    let o = apply(&s, &["se1.dublin.demo.example"], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for args in [
        vec!["approve", "99", "--state", "state.db"],
        vec!["status", "--run", "99", "--state", "state.db"],
        vec![
            "report", "--run", "99", "--state", "state.db", "--format", "json",
        ],
        vec!["resume", "--run", "99", "--state", "state.db"],
    ] {
        let o = s.run(&args);
        assert_eq!(code(&o), 3, "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("run 99 does not exist in the state store"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}
