//! The state store goes away in the middle of a night: the run holds every server at its next
//! step boundary and goes on by itself when the store is back. Real PostgreSQL servers, started
//! (and stopped) by scripts/test-services.sh.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, Scratch, assert_patched, code, item, repo, stderr};

/// A PostgreSQL server of this test's own (others' tests keep theirs), stopped when dropped.
pub struct OwnPostgres {
    pub url: String,
    dir: String,
}

impl OwnPostgres {
    /// A server on the first free port from `port` (each test its own range: a server stopped
    /// for a while must find its port free when it starts again).
    pub fn start(port: u16) -> Option<OwnPostgres> {
        Self::start_with(false, port)
    }

    /// With `tls`, a server that accepts TLS connections only; its CA is `cert("ca.crt")`.
    fn start_with(tls: bool, port: u16) -> Option<OwnPostgres> {
        let o = Command::new("bash")
            .arg(repo().join("scripts/test-services.sh"))
            .env_remove("SFBPATCH_TEST_POSTGRES_URL")
            .env_remove("SFBPATCH_TEST_SERVICES_DIR")
            .env("SFBPATCH_TEST_PG_TLS", if tls { "1" } else { "0" })
            .env("SFBPATCH_TEST_PG_PORT", port.to_string())
            .stdin(Stdio::null())
            .output()
            .expect("bash runs");
        if !o.status.success() {
            sfbpatch_testkit::missing(format!(
                "PostgreSQL could not be started: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
            return None;
        }
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let value = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .map(|v| v.trim_matches('\'').to_string())
                .unwrap_or_else(|| panic!("{name} in {out}"))
        };
        Some(OwnPostgres {
            url: value("SFBPATCH_TEST_POSTGRES_URL"),
            dir: value("SFBPATCH_TEST_SERVICES_DIR"),
        })
    }

    /// A certificate file in the server's TLS folder (`ca.crt`, `other-ca.crt`).
    fn cert(&self, name: &str) -> String {
        format!("{}/tls/{name}", self.dir)
    }

    /// Runs `scripts/test-services.sh COMMAND` on this server; its stdout.
    fn script(&self, command: &str) -> String {
        let o = Command::new("bash")
            .arg(repo().join("scripts/test-services.sh"))
            .arg(command)
            .env("SFBPATCH_TEST_SERVICES_DIR", &self.dir)
            .stdin(Stdio::null())
            .output()
            .expect("bash runs");
        assert!(
            o.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Stops the server for `seconds`, then starts it again (blocks meanwhile).
    fn pause(&self, seconds: u32) {
        let o = Command::new("bash")
            .arg(repo().join("scripts/test-services.sh"))
            .args(["pause", &seconds.to_string()])
            .env("SFBPATCH_TEST_SERVICES_DIR", &self.dir)
            .stdin(Stdio::null())
            .output()
            .expect("bash runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

/// `apply_args` with the state store at `state` instead of `state.db`.
pub fn with_state<'a>(args: &mut [&'a str], state: &'a str) {
    let i = args.iter().position(|a| *a == "--state").unwrap();
    args[i + 1] = state;
}

/// The run's report from `state`: it succeeded, and every step carried out has an audit row
/// per attempt.
fn report_of(s: &Scratch, state: &str) -> serde_json::Value {
    let report = s.run(&["report", "--state", state, "--format", "json"]);
    assert_eq!(code(&report), 0, "{}", stderr(&report));
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["run"]["state"], "succeeded");
    let audit = report["audit"].as_array().unwrap();
    for server in report["servers"].as_array().unwrap() {
        let fqdn = server["fqdn"].as_str().unwrap();
        for step in server["steps"].as_array().unwrap() {
            let attempts = step["attempts"].as_u64().unwrap_or(0);
            if step["state"] != "succeeded" || attempts == 0 || step["id"] == "update-databases" {
                continue;
            }
            let rows = audit
                .iter()
                .filter(|a| a["server"] == fqdn && a["step"] == step["id"])
                .count() as u64;
            assert!(
                rows >= attempts,
                "{fqdn} {}: {rows} audit rows for {attempts} attempts",
                step["id"]
            );
        }
    }
    report
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("scripts/test-services.sh"))
            .arg("stop")
            .env("SFBPATCH_TEST_SERVICES_DIR", &self.dir)
            .stdin(Stdio::null())
            .output();
    }
}

/// `apply` of pool 2 and se2 on a real-time lab (about 90 simulated minutes in ~30 s) with its
/// state at `state`; `during` runs meanwhile, from 5 s in. The run must complete by itself and
/// patch every server once; its stderr.
fn run_through(state: &str, during: impl FnOnce()) -> String {
    let s = Scratch::new();
    s.lab_init("lab", &["--speed", "180"]);
    let mut args = common::apply_args(
        &["--lab", "lab"],
        &["fepool2.berlin.demo.example", "se2.dublin.demo.example"],
        &["--store-outage-limit", "120"],
    );
    with_state(&mut args, state);
    let apply = common::bin()
        .current_dir(s.path())
        .args(&args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    during();
    let o = apply.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(code(&o), 0, "{err}");
    let lab = s.lab_json("lab");
    for fqdn in [
        "fe21.berlin.demo.example",
        "fe22.berlin.demo.example",
        "sqlbe2.berlin.demo.example",
        "se2.dublin.demo.example",
    ] {
        assert_patched(&lab, fqdn);
    }
    // Every command that ran has its audit row: each step carried out, once per attempt.
    let report = report_of(&s, state);
    for server in report["servers"].as_array().unwrap() {
        assert_eq!(server["state"], "succeeded", "{server}");
    }
    let se2 = item(&report, "servers", "fqdn", "se2.dublin.demo.example");
    assert!(
        se2["outage_seconds"].as_f64().unwrap() < 30.0 * 60.0,
        "{se2}"
    );
    err
}

#[test]
#[ignore = "needs PostgreSQL: scripts/test installs it and runs this"]
fn postgresql_stopped_for_20_s_mid_run_the_run_completes_by_itself() {
    let Some(pg) = OwnPostgres::start(56100) else {
        return;
    };
    // Into the run (the first servers are inside their steps), then 20 s without the store.
    let err = run_through(&pg.url, || {
        let started = Instant::now();
        pg.pause(20);
        assert!(started.elapsed() >= Duration::from_secs(20));
    });
    assert!(
        err.contains("warning: state store unreachable for"),
        "{err}"
    );
    assert!(err.contains("state store reachable again after"), "{err}");
}

/// `resume` while the run's controller is alive and renewing is refused, naming it; once that
/// process is gone, `resume` takes its leases over and finishes the run.
fn a_second_controller_of_a_live_run_is_refused(s: &Scratch, state: &str) {
    s.lab_init("lab", &["--speed", "300"]);
    let mut args = common::apply_args(&["--lab", "lab"], &["se1.dublin.demo.example"], &[]);
    with_state(&mut args, state);
    let mut first = common::bin()
        .current_dir(s.path())
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "the first run did not start");
        let o = s.run(&["status", "--state", state, "--format", "json"]);
        if code(&o) == 0 && String::from_utf8_lossy(&o.stdout).contains("\"running\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = s.run(&["resume", "--state", state]);
    assert_eq!(code(&second), 3, "{}", stderr(&second));
    let err = stderr(&second);
    assert!(
        err.contains("is leased by run 1")
            && err.contains(&format!("pid {}", first.id()))
            && err.contains("[SFB-E002]"),
        "{err}"
    );
    // The first one never noticed: it goes on. Killed, its leases go to the next resume.
    first.kill().unwrap();
    first.wait().unwrap();
    let third = s.run(&["resume", "--state", state]);
    assert_eq!(code(&third), 0, "{}", stderr(&third));
    assert!(
        stderr(&third).contains(&format!(
            "run 1's controller (pid {} on this host) is gone",
            first.id()
        )),
        "{}",
        stderr(&third)
    );
    assert_patched(&s.lab_json("lab"), "se1.dublin.demo.example");
}

#[test]
fn resume_is_refused_while_the_run_s_controller_lives_sqlite() {
    let s = Scratch::new();
    a_second_controller_of_a_live_run_is_refused(&s, "state.db");
}

#[test]
#[ignore = "needs PostgreSQL: scripts/test installs it and runs this"]
fn resume_is_refused_while_the_run_s_controller_lives_postgresql() {
    let Some(pg) = OwnPostgres::start(56300) else {
        return;
    };
    let s = Scratch::new();
    a_second_controller_of_a_live_run_is_refused(&s, &pg.url);
}

/// TLS to the state store: refused without it when the server requires it, refused with a CA
/// that did not sign the server's certificate, and a whole run with the right one.
#[test]
#[ignore = "needs PostgreSQL: scripts/test installs it and runs this"]
fn the_state_store_over_tls_is_verified_against_its_ca() {
    let Some(pg) = OwnPostgres::start_with(true, 57100) else {
        return;
    };
    let s = Scratch::new();
    let state = |query: &str| format!("{}?{query}", pg.url);

    let o = s.run(&["status", "--state", &state("sslmode=disable")]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no encryption (the server accepts only TLS connections: drop sslmode=disable) [SFB-S001]"),
        "{}",
        stderr(&o)
    );
    let wrong = state(&format!(
        "sslmode=verify-full&sslrootcert={}",
        pg.cert("other-ca.crt")
    ));
    let o = s.run(&["status", "--state", &wrong]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(
        stderr(&o)
            .contains("error performing TLS handshake: invalid peer certificate: UnknownIssuer"),
        "{}",
        stderr(&o)
    );

    let right = state(&format!(
        "sslmode=verify-full&sslrootcert={}",
        pg.cert("ca.crt")
    ));
    s.lab_init("lab", &[]);
    let mut args = common::apply_args(&["--lab", "lab"], &["se1.dublin.demo.example"], &[]);
    with_state(&mut args, &right);
    let o = s.run(&args);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_patched(&s.lab_json("lab"), "se1.dublin.demo.example");
    // Encrypted without checking the certificate (libpq's `require`) reads the same run.
    let status = s.run(&[
        "status",
        "--state",
        &state("sslmode=require"),
        "--format",
        "json",
    ]);
    assert_eq!(code(&status), 0, "{}", stderr(&status));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["run"]["state"], "succeeded");
}

/// A two-node PostgreSQL (a primary and its synchronous streaming replica on loopback ports):
/// the primary fails mid-run and the replica is promoted; the controller, given both hosts
/// with `target_session_attrs=read-write`, reconnects to the new primary and the run completes
/// with nothing committed lost.
#[test]
#[ignore = "needs PostgreSQL: scripts/test installs it and runs this"]
fn the_primary_fails_mid_run_and_the_run_completes_on_the_promoted_replica() {
    let Some(pg) = OwnPostgres::start(56500) else {
        return;
    };
    let replica_port = pg
        .script("replica")
        .trim()
        .strip_prefix("export SFBPATCH_TEST_REPLICA_PORT=")
        .expect("the replica's port")
        .to_string();
    // postgres://postgres@127.0.0.1:P/db -> both hosts, the writable one wanted.
    let (head, db) = pg.url.rsplit_once('/').unwrap();
    let url = format!("{head},127.0.0.1:{replica_port}/{db}?target_session_attrs=read-write");
    // The journal on the new primary has every step and audit row: no gap where the
    // primary failed (run_through checks them there).
    run_through(&url, || {
        pg.script("failover");
    });
}

/// `status` and `report` with a role that may only read the store: opening it runs no DDL. A
/// database without a store is refused as such, and nothing is created in it.
#[test]
#[ignore = "needs PostgreSQL: scripts/test installs it and runs this"]
fn a_read_only_role_reads_status_and_reports() {
    let Some(pg) = OwnPostgres::start(57300) else {
        return;
    };
    let s = Scratch::new();
    let (head, db) = pg.url.rsplit_once('/').unwrap();
    let port = head.rsplit_once(':').unwrap().1;
    let psql = |sql: &str| {
        let bin = std::fs::read_to_string(format!("{}/bin", pg.dir)).unwrap();
        let o = Command::new(format!("{}/psql", bin.trim()))
            .args([
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                port,
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    psql("CREATE ROLE auditor LOGIN");
    let auditor = pg.url.replacen("postgres@", "auditor@", 1);
    // Nothing has run: refused, and the database stays empty.
    let o = s.run(&["status", "--state", &auditor]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "the database holds no sfbpatch state store (nothing has run with it): give the \
             --state of an earlier apply, or set SFBPATCH_STATE [SFB-S006]"
        ),
        "{}",
        stderr(&o)
    );

    s.lab_init("lab", &[]);
    let mut args = common::apply_args(&["--lab", "lab"], &["se1.dublin.demo.example"], &[]);
    with_state(&mut args, &pg.url);
    let o = s.run(&args);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    psql(
        "GRANT USAGE ON SCHEMA public TO auditor; GRANT SELECT ON ALL TABLES IN SCHEMA public TO auditor",
    );
    let o = s.run(&["status", "--state", &auditor, "--format", "json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(status["run"]["state"], "succeeded");
    let o = s.run(&["report", "--state", &auditor, "--format", "json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // It may read, not run: an apply with it is refused by the database.
    let mut args = common::apply_args(&["--lab", "lab"], &["se2.dublin.demo.example"], &[]);
    with_state(&mut args, &auditor);
    let o = s.run(&args);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("permission denied"), "{}", stderr(&o));
}
