//! The end-of-run summary of a run over SSH (`lab shell` behind a real sshd per server, as in
//! ssh.rs): its pool figures come from the journal, are the ones `status` and `report` give, and
//! are the windows the lab recorded, on the clock each keeps.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::{self, Scratch, code, item, repo, stderr, stdout};

/// The lab runs at this many simulated seconds per real second: its record of an outage, divided
/// by it, is the real time the outage took, which the journal measures on the controller.
const SPEED: f64 = 600.0;

const SE1: &str = "se1.dublin.demo.example";
const POOL2: &str = "fepool2.berlin.demo.example";
/// The servers of the run: a Standard Edition server (its own back end), and an Enterprise
/// pool's Front End servers with their SQL-only back end.
const HOSTS: [&str; 4] = [
    SE1,
    "fe21.berlin.demo.example",
    "fe22.berlin.demo.example",
    "sqlbe2.berlin.demo.example",
];

/// The sshd instances of the test (scripts/sshd-lab.sh), stopped when dropped.
struct Sshd {
    dir: PathBuf,
    /// FQDN -> port.
    ports: Vec<(String, u16)>,
}

impl Sshd {
    /// One sshd per host for the lab `lab` of `s`; `None` (after saying so) without sshd.
    fn start(s: &Scratch, lab: &str, hosts: &[&str]) -> Option<Sshd> {
        let script = repo().join("scripts/sshd-lab.sh");
        let found = Command::new("bash")
            .arg(&script)
            .arg("find")
            .stdin(Stdio::null())
            .output()
            .expect("bash runs");
        if !found.status.success() {
            sfbpatch_testkit::missing(String::from_utf8_lossy(&found.stderr).trim());
            return None;
        }
        let key = s.path().join("id_ed25519");
        let o = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "sfbpatch-test", "-f"])
            .arg(&key)
            .stdin(Stdio::null())
            .output()
            .expect("ssh-keygen runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let dir = s.path().join("sshd");
        let o = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg("--dir")
            .arg(&dir)
            .arg("--lab")
            .arg(s.path().join(lab))
            .arg("--bin")
            .arg(env!("CARGO_BIN_EXE_sfbpatch"))
            .arg("--authorized-keys")
            .arg(key.with_extension("pub"))
            .arg("--owner")
            .arg(std::process::id().to_string())
            .args(hosts)
            .stdin(Stdio::null())
            .output()
            .expect("bash runs");
        let mut sshd = Sshd {
            dir,
            ports: Vec::new(),
        };
        assert!(
            o.status.success(),
            "sshd-lab.sh start: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(f.len(), 4, "sshd-lab.sh printed {line:?}");
            sshd.ports.push((f[0].to_string(), f[2].parse().unwrap()));
        }
        Some(sshd)
    }

    /// A connections file for these hosts.
    fn connections(&self) -> String {
        let user = Command::new("id").arg("-un").output().unwrap();
        let user = String::from_utf8_lossy(&user.stdout).trim().to_string();
        let mut text = format!("[defaults]\nuser = \"{user}\"\nidentity_file = \"id_ed25519\"\n");
        for (fqdn, port) in &self.ports {
            text.push_str(&format!(
                "\n[[server]]\nfqdn = \"{fqdn}\"\nhost = \"127.0.0.1\"\nport = {port}\n"
            ));
        }
        text
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("scripts/sshd-lab.sh"))
            .arg("stop")
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output();
    }
}

fn json(s: &Scratch, args: &[&str]) -> Value {
    let o = s.run(args);
    assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", stdout(&o)))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The lab's record of a pool's back-end outages, joined where they touch: (start, end) in
/// seconds of the lab's clock.
fn lab_windows(pool: &Value) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for i in pool["outage_intervals"].as_array().unwrap() {
        let (start, end) = (f(&i["start"]), f(&i["end"]));
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

#[test]
#[ignore = "needs sshd: scripts/test installs it and runs this"]
fn an_ssh_run_s_summary_gives_the_journal_s_pool_figures_as_status_report_and_the_lab_do() {
    let s = Scratch::new();
    s.lab_init("lab", &["--speed", "600"]);
    let Some(sshd) = Sshd::start(&s, "lab", &HOSTS) else {
        return;
    };
    s.write("conn.toml", &sshd.connections());
    let args = common::apply_args(
        &["--target", "ssh", "--connections", "conn.toml"],
        &[SE1, POOL2],
        &["--accept-new-host-keys", "--format", "json"],
    );
    let o = s.run(&args);
    assert_eq!(code(&o), 0, "{}\n{}", stderr(&o), stdout(&o));
    let summary: Value = serde_json::from_slice(&o.stdout).expect("summary json");
    let status = json(&s, &["status", "--state", "state.db", "--format", "json"]);
    let report = json(&s, &["report", "--state", "state.db", "--format", "json"]);
    let lab = json(&s, &["lab", "show", "lab", "--format", "json"]);

    assert_eq!(summary["schema_version"], 1);
    assert_eq!(summary["run"]["state"], "succeeded");
    assert_eq!(summary["availability_from"], "journal");
    assert!(summary.get("lab_differences").is_none(), "{summary:#}");
    assert_eq!(
        summary["run"]["created_at_seconds"],
        report["run"]["created_at_seconds"]
    );

    // Each server's outage window: the same in the summary, the status and the report.
    for sv in summary["servers"].as_array().unwrap() {
        let fqdn = sv["fqdn"].as_str().unwrap();
        assert_eq!(sv["state"], "succeeded", "{sv}");
        let st = item(&status, "servers", "fqdn", fqdn);
        let r = item(&report, "servers", "fqdn", fqdn);
        assert_eq!(sv["outage_seconds"], st["outage_seconds"], "{fqdn}");
        assert_eq!(sv["outage_seconds"], r["outage_seconds"], "{fqdn}");
    }

    for pool in [SE1, POOL2] {
        let p = item(&summary, "pools", "fqdn", pool);
        let r = item(&report, "pools", "fqdn", pool);
        let st = item(&status, "pools", "fqdn", pool);
        let l = item(&lab, "pools", "fqdn", pool);
        // Not the 0.0 of a summary that read a lab it does not have: the back end was out.
        let out = f(&p["outage_seconds"]);
        assert!(out > 0.0, "{pool}: {p}");
        // The report's figures, to the millisecond.
        assert_eq!(p["outage_seconds"], r["unavailable_seconds"], "{pool}");
        assert_eq!(p["resiliency_seconds"], r["resiliency_seconds"], "{pool}");
        assert_eq!(p["unavailable"], r["unavailable"], "{pool}");
        assert_eq!(p["resiliency"], r["resiliency"], "{pool}");
        // The status's: one machine out at a time, so the back end's unavailability is its
        // longest window (the Standard Edition server's own, the SQL Server's update).
        assert_eq!(p["outage_seconds"], st["longest_outage_seconds"], "{pool}");
        assert_eq!(p["resiliency_seconds"], 0.0, "{pool}");

        // The lab's record: as many windows, none past the 30-minute line on either clock, and
        // each as long on the lab's clock (divided by its speed) as on the controller's, but
        // for the SSH round trips around the steps inside it (the journal's window opens before
        // its first step is sent and closes when the last one's answer is back).
        let recorded = lab_windows(l);
        let windows = p["unavailable"].as_array().unwrap();
        assert_eq!(windows.len(), recorded.len(), "{pool}: {p}\nlab: {l}");
        assert_eq!(l["resiliency_intervals"], serde_json::json!([]), "{pool}");
        assert_eq!(l["mode"], "normal");
        for (w, (start, end)) in windows.iter().zip(&recorded) {
            let journal = f(&w["seconds"]);
            let world = (end - start) / SPEED;
            assert!(
                world <= journal + 0.001,
                "{pool}: the lab's window {world} s (real time) is longer than the journal's {journal} s"
            );
            // About 0.02 s per step on an idle machine; a loaded one gets 0.5 s per step.
            assert!(
                journal <= world + 4.0,
                "{pool}: the journal's window {journal} s is far longer than the lab's {world} s"
            );
        }
    }
    // The Standard Edition server's window is its whole outage: 25.2 simulated minutes,
    // 2.52 s at the lab's speed.
    let se1 = f(&item(&summary, "pools", "fqdn", SE1)["outage_seconds"]);
    assert!(se1 >= 25.2 * 60.0 / SPEED, "{se1}");

    // Real servers keep the wall clock: the report has calendar dates, in UTC in its JSON
    // (the run's, minutes ago) and in local time in its HTML.
    assert_eq!(report["run"]["clock"], "wall");
    let now = jiff::Timestamp::now();
    let mut started = now;
    for key in ["started_at", "ended_at"] {
        let at = report["run"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{key}"));
        let parsed: jiff::Timestamp = at.parse().unwrap_or_else(|e| panic!("{key} {at}: {e}"));
        assert!(at.ends_with('Z'), "{key} {at}");
        let ago = now.as_second() - parsed.as_second();
        assert!((0..600).contains(&ago), "{key} {at} is {ago} s before now");
        if key == "started_at" {
            started = parsed;
        }
    }
    let o = s.run(&["report", "--state", "state.db", "--html", "run.html"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let html = std::fs::read_to_string(s.path().join("run.html")).unwrap();
    let local_today = started
        .to_zoned_datetime(jiff::tz::TimeZone::system())
        .strftime("%Y-%m-%d")
        .to_string();
    assert!(html.contains(&local_today), "no date in the report");
    assert!(
        !html.contains("lab time"),
        "a wall-clock run is not in lab time"
    );
}
