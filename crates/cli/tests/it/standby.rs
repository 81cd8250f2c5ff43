//! `sfbpatch standby`: a second controller takes a run over when its controller dies, within
//! seconds, and exactly one of several standbys does.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, Scratch, code, item};

fn standby(s: &Scratch, state: &str) -> Child {
    standby_named(s, state, &[])
}

fn standby_named(s: &Scratch, state: &str, extra: &[&str]) -> Child {
    let mut args = vec!["standby", "--state", state, "--run", "1", "--poll", "1"];
    args.extend(extra);
    spawn(s, &args, true)
}

/// `sfbpatch ARGS` in the scratch directory, its output piped (or dropped).
fn spawn(s: &Scratch, args: &[&str], piped: bool) -> Child {
    let out = || if piped { Stdio::piped() } else { Stdio::null() };
    common::bin()
        .current_dir(s.path())
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(out())
        .stderr(out())
        .spawn()
        .unwrap()
}

#[test]
fn a_standby_takes_over_a_run_whose_controller_died_and_only_one_does() {
    takeover(&Scratch::new(), "state.db");
}

#[test]
#[ignore = "needs PostgreSQL: scripts/test installs it and runs this"]
fn a_standby_takes_over_a_run_whose_controller_died_postgresql() {
    let Some(pg) = crate::store_outage::OwnPostgres::start(57500) else {
        return;
    };
    takeover(&Scratch::new(), &pg.url);
}

/// Waits until se1's outage window is open (it opens after about 4 simulated minutes).
fn wait_inside_the_window(s: &Scratch, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "the run never entered its window"
        );
        let o = s.run(&["status", "--state", state, "--format", "json"]);
        if code(&o) == 0 {
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            if !item(&v, "servers", "fqdn", "se1.dublin.demo.example")["outage_started_at"]
                .is_null()
            {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The controller SIGKILLed inside its outage window, two standbys watching: exactly one
/// carries the run on, within seconds.
fn takeover(s: &Scratch, state: &str) {
    // One simulated minute per real second: the outage window is about 25 s.
    s.lab_init("lab", &["--speed", "60"]);
    let mut args = common::apply_args(
        &["--lab", "lab"],
        &["se1.dublin.demo.example"],
        &["--lease-ttl", "6"],
    );
    crate::store_outage::with_state(&mut args, state);
    let mut first = spawn(s, &args, false);
    wait_inside_the_window(s, state);
    let standbys = [standby(s, state), standby(s, state)];
    std::thread::sleep(Duration::from_secs(2));
    let _ = Command::new("kill")
        .args(["-KILL", &first.id().to_string()])
        .status();
    let _ = first.wait();
    let killed = Instant::now();

    let outputs: Vec<_> = standbys
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let finished_in = killed.elapsed();
    let stderrs: Vec<String> = outputs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .collect();
    for o in &outputs {
        assert_eq!(code(o), 0, "{stderrs:?}");
    }
    // Exactly one of them carried the run on.
    let carried: Vec<&String> = stderrs
        .iter()
        .filter(|e| e.contains("run 1: resuming"))
        .collect();
    assert_eq!(carried.len(), 1, "{stderrs:?}");
    assert!(
        carried[0].contains("its controller (pid")
            && carried[0].contains("is gone; taking it over"),
        "{}",
        carried[0]
    );
    for e in &stderrs {
        assert!(e.contains("run 1 is succeeded"), "{e}");
    }
    assert!(finished_in < Duration::from_secs(60), "{finished_in:?}");

    // Patched once; the users' outage grew by no more than the takeover (seconds here).
    let lab = s.lab_json("lab");
    common::assert_patched(&lab, "se1.dublin.demo.example");
    let pool = item(&lab, "pools", "fqdn", "se1.dublin.demo.example");
    let out: f64 = pool["outage_intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["end"].as_f64().unwrap() - i["start"].as_f64().unwrap())
        .sum();
    assert!(out / 60.0 < 30.0, "{out} s");
    assert!(pool["resiliency_intervals"].as_array().unwrap().is_empty());
}

#[test]
fn a_paused_controller_stops_without_touching_a_server_after_a_standby_took_over() {
    paused_controller(&Scratch::new(), "state.db");
}

#[test]
#[ignore = "needs PostgreSQL: scripts/test installs it and runs this"]
fn a_paused_controller_stops_without_touching_a_server_after_a_standby_took_over_postgresql() {
    let Some(pg) = crate::store_outage::OwnPostgres::start(57520) else {
        return;
    };
    paused_controller(&Scratch::new(), &pg.url);
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal}");
}

/// Controller A (a host of its own, by name) is frozen (SIGSTOP) inside its outage window; a
/// standby, B, takes the run over once A's short leases expire; A is woken (SIGCONT) while B
/// works. A stops at once with the reason, and the servers' own logs show that nothing of
/// A's reached them after B's claim: B finishes the run and the server is patched once.
fn paused_controller(s: &Scratch, state: &str) {
    s.lab_init("lab", &["--speed", "60"]);
    let mut args = common::apply_args(
        &["--lab", "lab"],
        &["se1.dublin.demo.example"],
        &["--lease-ttl", "3", "--controller-name", "ctl-a"],
    );
    crate::store_outage::with_state(&mut args, state);
    let first = spawn(s, &args, true);
    wait_inside_the_window(s, state);
    signal(&first, "-STOP");
    let second = standby_named(s, state, &["--controller-name", "ctl-b"]);

    // B's claim reaches the server as its lock, at generation 2.
    let lab = sfbpatch_lab::Lab::open(&s.path().join("lab")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lab
        .command_log()
        .unwrap()
        .iter()
        .any(|c| c.generation == Some(2))
    {
        assert!(Instant::now() < deadline, "the standby never took over");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    signal(&first, "-CONT");

    let first = first.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&first.stderr);
    assert_eq!(code(&first), 3, "{said}");
    assert!(
        (said.contains("took run 1 over") && said.contains("[SFB-E008]"))
            || (said.contains("was taken over by controller ctl-b#")
                && said.contains("[SFB-E003]")),
        "{said}"
    );
    assert!(
        said.contains("this controller stops here without touching"),
        "{said}"
    );
    let second = second.wait_with_output().unwrap();
    let told = String::from_utf8_lossy(&second.stderr);
    assert_eq!(code(&second), 0, "{told}");
    assert!(told.contains("run 1 is succeeded"), "{told}");

    // The servers' logs: nothing of generation 1 after the first call of generation 2, not
    // even a refused call.
    let log = lab.command_log().unwrap();
    let claimed = log.iter().position(|c| c.generation == Some(2)).unwrap();
    let late: Vec<_> = log[claimed..]
        .iter()
        .filter(|c| c.generation != Some(2))
        .collect();
    assert!(late.is_empty(), "calls after the takeover: {late:#?}");
    assert!(log.iter().all(|c| !c.refused), "{log:#?}");
    assert!(
        log[..claimed].iter().all(|c| c.generation == Some(1)),
        "{log:#?}"
    );
    common::assert_patched(&s.lab_json("lab"), "se1.dublin.demo.example");
    // The audit log: every command once, none from A after B's claim.
    let o = s.run(&["report", "--state", state, "--format", "json"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let audit = report["audit"].as_array().expect("audit rows");
    let mut runs = std::collections::BTreeMap::<&str, usize>::new();
    for a in audit.iter().filter(|a| !a["command"].is_null()) {
        *runs.entry(a["step"].as_str().unwrap()).or_default() += 1;
    }
    assert!(
        runs.values().all(|&n| n == 1),
        "a command ran twice: {runs:?}"
    );
    assert!(runs.contains_key("install-update"), "{runs:?}");
    eprintln!("A said: {said}\nB said: {told}");
}

/// `apply --standby` on a second controller, started before the first one's run exists: it
/// waits for that run, stands by for it, and carries it on when its controller is killed.
#[test]
fn apply_standby_waits_for_the_run_and_takes_it_over() {
    let s = Scratch::new();
    s.lab_init("lab", &["--speed", "60"]);
    let args = common::apply_args(
        &["--lab", "lab"],
        &["se1.dublin.demo.example"],
        &["--lease-ttl", "3", "--controller-name", "ctl-a"],
    );
    let mut standby_args = common::apply_args(
        &["--lab", "lab"],
        &["se1.dublin.demo.example"],
        &["--standby", "--poll", "1", "--controller-name", "ctl-b"],
    );
    standby_args.retain(|a| *a != "--yes");
    let second = spawn(&s, &standby_args, true);
    std::thread::sleep(Duration::from_secs(2));
    let mut first = spawn(&s, &args, false);
    wait_inside_the_window(&s, "state.db");
    signal(&first, "-KILL");
    let _ = first.wait();
    let second = second.wait_with_output().unwrap();
    let told = String::from_utf8_lossy(&second.stderr);
    assert_eq!(code(&second), 0, "{told}");
    assert!(
        told.contains("waiting for a run on these servers to stand by for")
            && told.contains("standing by for run 1")
            && told.contains("stopped renewing its leases")
            && told.contains("run 1 is succeeded"),
        "{told}"
    );
    common::assert_patched(&s.lab_json("lab"), "se1.dublin.demo.example");
}
