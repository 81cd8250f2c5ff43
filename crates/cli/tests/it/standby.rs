//! `sfbpatch standby`: a second controller takes a run over when its controller dies, within
//! seconds, and exactly one of several standbys does.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, Scratch, code, item};

fn standby(s: &Scratch, state: &str) -> Child {
    common::bin()
        .current_dir(s.path())
        .args(["standby", "--state", state, "--run", "1", "--poll", "1"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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
    let mut first = common::bin()
        .current_dir(s.path())
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Inside the outage window (it opens after about 4 simulated minutes).
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
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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
