//! Enterprise pools as they really run (SPEC.md sections 5 and 6): Front End servers one at a
//! time behind failover, a SQL-only back end updated from a patched Front End server, and the
//! faults of the pool procedure. Every test asserts the lab world, not the tool's claims.

use serde_json::Value;

use crate::common::{self, NEW, OLD, Scratch, code, item, stderr};

const POOL: &str = "fepool1.berlin.demo.example";
const FES: [&str; 3] = [
    "fe11.berlin.demo.example",
    "fe12.berlin.demo.example",
    "fe13.berlin.demo.example",
];
const SQL: &str = "sqlbe1.berlin.demo.example";

fn lab_with_faults(s: &Scratch, faults: &str) {
    if faults.is_empty() {
        s.lab_init("lab", &[]);
    } else {
        s.write("faults.toml", faults);
        s.lab_init("lab", &["--faults", "faults.toml"]);
    }
}

fn apply_pool(s: &Scratch, extra: &[&str]) -> std::process::Output {
    s.run(&common::apply_args(&["--lab", "lab"], &[POOL], extra))
}

fn server<'a>(v: &'a Value, fqdn: &str) -> &'a Value {
    item(v, "servers", "fqdn", fqdn)
}

fn pool<'a>(lab: &'a Value, fqdn: &str) -> &'a Value {
    item(lab, "pools", "fqdn", fqdn)
}

fn step<'a>(status_server: &'a Value, id: &str) -> &'a Value {
    item(status_server, "steps", "id", id)
}

/// On the new build, every service running on new assemblies, back in its pool.
fn assert_front_end_patched(lab: &Value, fqdn: &str) {
    let s = server(lab, fqdn);
    assert_eq!(s["kind"], "front-end", "{s}");
    assert_eq!(s["installed_build"], NEW, "{fqdn}: {s}");
    assert_eq!(s["installer_runs"], 1, "{fqdn}: {s}");
    assert_eq!(s["failed_over"], false, "{fqdn}: {s}");
    assert_eq!(s["w3svc"], "running", "{fqdn}");
    for svc in s["services"].as_array().unwrap() {
        assert_eq!(svc["state"], "running", "{fqdn} {svc}");
        assert_eq!(svc["loaded_build"], NEW, "{fqdn} {svc}");
    }
}

/// Untouched or recovered: old build, in its pool, everything running.
fn assert_front_end_on_old_build(lab: &Value, fqdn: &str) {
    let s = server(lab, fqdn);
    assert_eq!(s["installed_build"], OLD, "{fqdn}: {s}");
    assert_eq!(s["failed_over"], false, "{fqdn}: {s}");
    assert_eq!(s["w3svc"], "running", "{fqdn}");
    for svc in s["services"].as_array().unwrap() {
        assert_eq!(svc["state"], "running", "{fqdn} {svc}");
        assert_eq!(svc["loaded_build"], OLD, "{fqdn} {svc}");
    }
}

/// A SQL Server machine that never ran a Skype for Business command.
fn assert_sql_only_untouched(lab: &Value, fqdn: &str) {
    let s = server(lab, fqdn);
    assert_eq!(s["kind"], "back-end", "{s}");
    assert_eq!(s["runs"]["sfb_services"], false, "{s}");
    assert_eq!(s["runs"]["iis"], false, "{s}");
    assert_eq!(s["runs"]["sql_server"], true, "{s}");
    assert_eq!(s["installer_runs"], 0, "{s}");
    assert_eq!(s["refused_commands"], 0, "{s}");
    assert_eq!(s["w3svc"], "not-installed", "{s}");
    assert_eq!(s["services"].as_array().unwrap().len(), 0, "{s}");
}

fn databases_current(lab: &Value, sql: &str) -> bool {
    let instance = item(lab, "sql_instances", "sql_server_fqdn", sql);
    instance["stores"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["version"] == d["expected_version"])
}

fn empty(v: &Value) -> bool {
    v.as_array().is_some_and(|a| a.is_empty())
}

#[test]
fn a_pool_is_patched_one_front_end_at_a_time_behind_failover() {
    let s = Scratch::new();
    lab_with_faults(&s, "");
    let o = apply_pool(&s, &["--max-parallel", "4"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let lab = s.lab_json("lab");
    for fe in FES {
        assert_front_end_patched(&lab, fe);
    }
    assert_sql_only_untouched(&lab, SQL);
    assert!(databases_current(&lab, SQL), "{lab}");
    let p = pool(&lab, POOL);
    let fe = &p["front_ends"];
    assert_eq!(fe["total"], 3, "{p}");
    assert_eq!(fe["in_service"], 3, "{p}");
    assert_eq!(fe["quorum"], 2, "{p}");
    assert!(
        empty(&fe["down_intervals"]),
        "the pool never fell below quorum: {p}"
    );
    assert!(
        empty(&fe["user_impact_intervals"]),
        "failover first: no user impact: {p}"
    );
    // Never fewer than two of three in service: one server at a time.
    let counts: Vec<u64> = fe["in_service_over_time"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[1].as_u64().unwrap())
        .collect();
    assert_eq!(counts.iter().min(), Some(&2), "{counts:?}");
    assert_eq!(counts.iter().filter(|c| **c == 2).count(), 3, "{counts:?}");
    // The back end was unavailable only while Install-CsDatabase ran: 6 simulated minutes.
    let outages = p["outage_intervals"].as_array().unwrap();
    assert_eq!(outages.len(), 1, "{p}");
    let len = outages[0]["end"].as_f64().unwrap() - outages[0]["start"].as_f64().unwrap();
    assert!((len - 360.0).abs() < 1.0, "{p}");

    let status = s.status_json("state.db");
    assert_eq!(status["run"]["state"], "succeeded");
    // One Front End server out of the pool at a time: each failover after the previous failback.
    let window = |fqdn: &str| {
        let sv = server(&status, fqdn);
        (
            step(sv, "failover")["started_at"].as_f64().unwrap(),
            step(sv, "failback")["ended_at"].as_f64().unwrap(),
        )
    };
    for pair in FES.windows(2) {
        assert!(window(pair[0]).1 <= window(pair[1]).0, "{pair:?}");
    }
    // The database step after every Front End server, run from one of them.
    let be = server(&status, SQL);
    assert_eq!(be["kind"], "back-end");
    let db = step(be, "update-databases");
    assert_eq!(db["state"], "succeeded", "{be}");
    assert!(db["started_at"].as_f64().unwrap() >= window(FES[2]).1);
    for id in [
        "stage-update",
        "stop-cs-services",
        "stop-w3svc",
        "close-management-shells",
        "install-update",
        "stop-cs-services-gac",
        "start-w3svc",
        "start-cs-services",
    ] {
        let st = step(be, id);
        assert_eq!(st["state"], "not-applicable", "{id}: {st}");
        assert!(st["reason"].is_string(), "{st}");
    }
    // The pre-flight read the back end as SQL only.
    assert_eq!(be["preflight"]["sql_server"], true, "{be}");
    assert_eq!(be["preflight"]["services"], serde_json::json!([]), "{be}");
}

#[test]
fn missing_replicas_leave_the_pool_unpatched_and_say_why() {
    let s = Scratch::new();
    lab_with_faults(
        &s,
        "[[fault]]\nserver = \"fe11.berlin.demo.example\"\nstep = \"check-fabric-state\"\nmissing_replicas = true\n",
    );
    let o = apply_pool(&s, &["--continue-on-failure", "--max-failures", "5"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let lab = s.lab_json("lab");
    for fe in FES {
        assert_front_end_on_old_build(&lab, fe);
    }
    assert_sql_only_untouched(&lab, SQL);
    let status = s.status_json("state.db");
    let fe11 = server(&status, FES[0]);
    assert_eq!(fe11["state"], "failed", "{fe11}");
    let reason = fe11["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("check-fabric-state exited with code 1: pool fepool1.berlin.demo.example has missing replicas: recover it first"),
        "{reason}"
    );
    // The failure came before any outage: the server never left its pool.
    assert!(fe11["outage_started_at"].is_null(), "{fe11}");
    for fe in &FES[1..] {
        let sv = server(&status, fe);
        assert_eq!(sv["state"], "skipped", "{sv}");
        assert_eq!(
            sv["reason"],
            format!(
                "not started: pool {POOL} was stopped after {} failed: {reason}",
                FES[0]
            ),
        );
    }
    let be = server(&status, SQL);
    assert_eq!(be["state"], "skipped", "{be}");
    assert!(
        be["reason"]
            .as_str()
            .unwrap()
            .starts_with("not started: fe11.berlin.demo.example (front-end) must run the new build first and ended failed"),
        "{be}"
    );
}

#[test]
fn reset_missing_replicas_recovers_the_pool_first() {
    let s = Scratch::new();
    lab_with_faults(
        &s,
        "[[fault]]\nserver = \"fe11.berlin.demo.example\"\nstep = \"check-fabric-state\"\nmissing_replicas = true\n",
    );
    let o = apply_pool(&s, &["--reset-missing-replicas"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let lab = s.lab_json("lab");
    for fe in FES {
        assert_front_end_patched(&lab, fe);
    }
    assert!(databases_current(&lab, SQL));
}

#[test]
fn a_busy_pool_is_asked_again_after_ten_minutes() {
    let s = Scratch::new();
    lab_with_faults(
        &s,
        "[[fault]]\nserver = \"fe12.berlin.demo.example\"\nstep = \"check-fabric-state\"\nbusy = true\ntimes = 2\n",
    );
    let o = apply_pool(&s, &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let status = s.status_json("state.db");
    let check = step(server(&status, FES[1]), "check-fabric-state");
    assert_eq!(check["attempts"], 3, "{check}");
    let waited = check["ended_at"].as_f64().unwrap() - check["started_at"].as_f64().unwrap();
    assert!(waited >= 20.0 * 60.0, "two 10-minute waits: {check}");
    let lab = s.lab_json("lab");
    for fe in FES {
        assert_front_end_patched(&lab, fe);
    }
}

#[test]
fn three_busy_answers_stop_the_pool() {
    let s = Scratch::new();
    lab_with_faults(
        &s,
        "[[fault]]\nserver = \"fe11.berlin.demo.example\"\nstep = \"check-fabric-state\"\nbusy = true\ntimes = 0\n",
    );
    let o = apply_pool(&s, &[]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let status = s.status_json("state.db");
    let fe11 = server(&status, FES[0]);
    assert_eq!(
        fe11["reason"],
        "pool fepool1.berlin.demo.example answered Busy 3 times, 10 minutes apart: a pool problem; the pool is not patched"
    );
    let lab = s.lab_json("lab");
    for fe in FES {
        assert_front_end_on_old_build(&lab, fe);
    }
}

#[test]
fn an_installer_failure_on_a_front_end_fails_it_back_and_keeps_quorum() {
    let s = Scratch::new();
    lab_with_faults(
        &s,
        "[[fault]]\nserver = \"fe12.berlin.demo.example\"\nstep = \"install-update\"\nexit_code = 1603\n",
    );
    let o = apply_pool(&s, &[]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let lab = s.lab_json("lab");
    assert_front_end_patched(&lab, FES[0]);
    // Recovered on its old build and returned to the pool.
    let fe12 = server(&lab, FES[1]);
    assert_eq!(fe12["installer_runs"], 0, "{fe12}");
    assert_front_end_on_old_build(&lab, FES[1]);
    assert_front_end_on_old_build(&lab, FES[2]);
    assert_sql_only_untouched(&lab, SQL);
    let p = pool(&lab, POOL);
    assert!(empty(&p["front_ends"]["down_intervals"]), "{p}");
    assert!(empty(&p["front_ends"]["user_impact_intervals"]), "{p}");
    assert_eq!(p["front_ends"]["in_service"], 3, "{p}");
    let status = s.status_json("state.db");
    let sv = server(&status, FES[1]);
    assert_eq!(sv["state"], "failed");
    assert!(
        sv["reason"]
            .as_str()
            .unwrap()
            .starts_with("install-update exited with code 1603"),
        "{sv}"
    );
    assert!(
        sv["last_output"].as_str().unwrap().contains(
            "Invoke-CsComputerFailBack -ComputerName fe12.berlin.demo.example: started 16 \
             services on build 7.0.2046.0; returned to its pool"
        ),
        "{sv}"
    );
    // The failure budget (none by default) stopped the run: nothing else started.
    assert_eq!(status["run"]["state"], "failed");
    assert_eq!(server(&status, FES[2])["state"], "pending");
    assert_eq!(server(&status, SQL)["state"], "pending");
}

#[test]
fn a_failback_that_keeps_failing_is_recovered_and_reported() {
    let s = Scratch::new();
    lab_with_faults(
        &s,
        "[[fault]]\nserver = \"fe11.berlin.demo.example\"\nstep = \"failback\"\nexit_code = 1\ntimes = 3\n",
    );
    let o = apply_pool(&s, &[]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let status = s.status_json("state.db");
    let sv = server(&status, FES[0]);
    assert_eq!(sv["state"], "failed", "{sv}");
    assert_eq!(step(sv, "failback")["attempts"], 3, "{sv}");
    assert!(
        sv["reason"]
            .as_str()
            .unwrap()
            .starts_with("failback exited with code 1 after 3 attempts"),
        "{sv}"
    );
    // The recovery returned it to the pool on the new build: no server is left out.
    let lab = s.lab_json("lab");
    assert_front_end_patched(&lab, FES[0]);
    assert_eq!(pool(&lab, POOL)["front_ends"]["in_service"], 3);
}

#[test]
fn a_refused_failover_changes_nothing() {
    let s = Scratch::new();
    lab_with_faults(
        &s,
        "[[fault]]\nserver = \"fe11.berlin.demo.example\"\nstep = \"failover\"\nexit_code = 1\n",
    );
    let o = apply_pool(&s, &[]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let status = s.status_json("state.db");
    let sv = server(&status, FES[0]);
    assert_eq!(
        step(sv, "failover")["attempts"],
        1,
        "a refused failover is not retried blind"
    );
    assert!(
        sv["reason"]
            .as_str()
            .unwrap()
            .starts_with("failover exited with code 1"),
        "{sv}"
    );
    let lab = s.lab_json("lab");
    for fe in FES {
        assert_front_end_on_old_build(&lab, fe);
    }
    assert!(empty(
        &pool(&lab, POOL)["front_ends"]["user_impact_intervals"]
    ));
}

#[test]
fn a_crash_at_every_commit_of_a_pool_resumes_without_repeating_a_failover() {
    // Kill at each journal append of a two-server pool and its back end (pre-flight to the
    // database check), resume, and check the world: both servers patched once and back in
    // their pool, the databases current, no user impact.
    const POOL2: &str = "fepool2.berlin.demo.example";
    const POOL2_FES: [&str; 2] = ["fe21.berlin.demo.example", "fe22.berlin.demo.example"];
    let args = common::apply_args(&["--lab", "lab"], &[POOL2], &[]);
    kill_at_every_append(
        20,
        || {
            let s = Scratch::new();
            lab_with_faults(&s, "");
            s
        },
        &args,
        |s, n| {
            let lab = s.lab_json("lab");
            for fe in POOL2_FES {
                assert_front_end_patched(&lab, fe);
            }
            assert!(
                databases_current(&lab, "sqlbe2.berlin.demo.example"),
                "kill at {n}"
            );
            let p = pool(&lab, POOL2);
            assert!(
                empty(&p["front_ends"]["user_impact_intervals"]),
                "kill at {n}: {p}"
            );
            assert!(
                empty(&p["front_ends"]["down_intervals"]),
                "kill at {n}: {p}"
            );
            let status = s.status_json("state.db");
            for fe in POOL2_FES {
                let sv = server(&status, fe);
                assert!(
                    step(sv, "failover")["attempts"].as_u64().unwrap() <= 1,
                    "kill at {n}: {sv}"
                );
            }
        },
    );
}

/// Kills `sfbpatch ARGS` at its journal append 1, 2, 3... (a fresh scratch from `setup` each
/// time), resumes, and calls `check` on the world, until a run no longer reaches the append;
/// there must be more than `min` of them.
pub fn kill_at_every_append(
    min: usize,
    setup: impl Fn() -> Scratch,
    args: &[&str],
    check: impl Fn(&Scratch, usize),
) {
    let mut n = 1;
    loop {
        let s = setup();
        let o = common::bin()
            .current_dir(s.path())
            .args(args)
            .env(common::KILL_ENV, n.to_string())
            .output()
            .unwrap();
        if o.status.code() == Some(0) {
            assert!(n > min, "the procedure has more commit points than {n}");
            return;
        }
        let r = s.run(&["resume", "--state", "state.db"]);
        assert_eq!(code(&r), 0, "resume after kill at {n}: {}", stderr(&r));
        check(&s, n);
        n += 1;
    }
}

#[test]
fn upgrade_domains_go_one_at_a_time_with_their_servers_together() {
    let s = Scratch::new();
    s.write(
        "ud.toml",
        r#"[[pool]]
fqdn = "pool.contoso.com"
site = "Redmond"
machines = [
  { fqdn = "fe1.contoso.com", upgrade_domain = "UD1" },
  { fqdn = "fe2.contoso.com", upgrade_domain = "UD1" },
  { fqdn = "fe3.contoso.com", upgrade_domain = "UD2" },
  { fqdn = "fe4.contoso.com", upgrade_domain = "UD2" },
]
backend = "sql.contoso.com"
"#,
    );
    let o = s.run(&["lab", "init", "lab", "--topology", "ud.toml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = s.run(&[
        "apply",
        "ud.toml",
        "--package",
        "demo-package.toml",
        "--lab",
        "lab",
        "--state",
        "state.db",
        "--yes",
        "--max-parallel",
        "4",
        "--front-end-batch",
        "upgrade-domain",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let lab = s.lab_json("lab");
    let p = pool(&lab, "pool.contoso.com");
    assert!(empty(&p["front_ends"]["down_intervals"]), "{p}");
    assert!(empty(&p["front_ends"]["user_impact_intervals"]), "{p}");
    // Two out at once (one upgrade domain), never three.
    let counts: Vec<u64> = p["front_ends"]["in_service_over_time"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[1].as_u64().unwrap())
        .collect();
    assert_eq!(counts.iter().min(), Some(&2), "{counts:?}");
    let status = s.status_json("state.db");
    let window = |fqdn: &str| {
        let sv = server(&status, fqdn);
        (
            step(sv, "failover")["started_at"].as_f64().unwrap(),
            step(sv, "failback")["ended_at"].as_f64().unwrap(),
        )
    };
    // fe1 and fe2 overlap; UD2 starts after UD1 ended.
    assert!(window("fe2.contoso.com").0 < window("fe1.contoso.com").1);
    let ud1_end = window("fe1.contoso.com").1.max(window("fe2.contoso.com").1);
    assert!(window("fe3.contoso.com").0 >= ud1_end);
    assert!(window("fe4.contoso.com").0 >= ud1_end);
}

#[test]
fn a_second_controller_with_another_state_file_is_refused_by_the_server_s_own_lock() {
    let s = Scratch::new();
    lab_with_faults(&s, "");
    // Controller A dies inside fe11's procedure (after its pre-flight took the lock).
    let args = common::apply_args(&["--lab", "lab"], &[POOL], &[]);
    let o = common::bin()
        .current_dir(s.path())
        .args(&args)
        .env(common::KILL_ENV, "12")
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0), "killed");
    let before = s.lab_json("lab");
    // Controller B, another state file, the same servers.
    let mut other = common::apply_args(&["--lab", "lab"], &[POOL], &[]);
    let i = other.iter().position(|a| *a == "state.db").unwrap();
    other[i] = "other.db";
    let o = s.run(&other);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let status = s.status_json("other.db");
    let fe11 = server(&status, FES[0]);
    assert_eq!(fe11["state"], "failed", "{fe11}");
    let reason = fe11["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("pre-flight: could not read what fe11.berlin.demo.example runs: server fe11.berlin.demo.example is locked by another controller ("),
        "{reason}"
    );
    assert!(
        reason.contains("sqlite:state.db~") && reason.contains("#run1)"),
        "{reason}"
    );
    let after = s.lab_json("lab");
    assert_eq!(
        server(&before, FES[0]),
        server(&after, FES[0]),
        "B changed nothing on the locked server"
    );
    // A's own resume takes its lock again and finishes.
    let r = s.run(&["resume", "--state", "state.db"]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let lab = s.lab_json("lab");
    for fe in FES {
        assert_front_end_patched(&lab, fe);
    }
}
