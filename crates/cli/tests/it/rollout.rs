//! Rollouts through the binary: policy files, parallel outage slots, pairs, canary waves with
//! approval, maintenance windows. Each asserts the lab world or the journal-derived report.

use serde_json::Value;

use crate::common::{self, Scratch, code, item, stderr, stdout};

fn lab_init(s: &Scratch) {
    s.lab_init("lab", &[]);
}

fn apply(s: &Scratch, extra: &[&str]) -> std::process::Output {
    s.run(&common::apply_args(&["--lab", "lab"], &[], extra))
}

/// A daily window (`HH:MM-HH:MM`, UTC) opening `in_minutes` from now, `minutes` long.
fn window_from_now(in_minutes: u64, minutes: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let open = (now / 60 + in_minutes) % 1440;
    let close = (open + minutes) % 1440;
    format!(
        "{:02}:{:02}-{:02}:{:02}",
        open / 60,
        open % 60,
        close / 60,
        close % 60
    )
}

fn intervals(lab: &Value, pool: &str) -> Vec<(f64, f64)> {
    item(lab, "pools", "fqdn", pool)["outage_intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["start"].as_f64().unwrap(), i["end"].as_f64().unwrap()))
        .collect()
}

fn overlap(a: &[(f64, f64)], b: &[(f64, f64)]) -> bool {
    a.iter().any(|x| b.iter().any(|y| x.0 < y.1 && y.0 < x.1))
}

fn builds(lab: &Value) -> Vec<(String, String)> {
    lab["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["fqdn"].as_str().unwrap().to_string(),
                s["installed_build"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn policy_check_prints_the_policy_and_rejects_bad_files() {
    let s = Scratch::new();
    s.write(
        "rollout.toml",
        "max_parallel = 4\nmax_parallel_per_site = 2\norder = [\"standard-edition\", \"back-end\"]\nwaves = \"1,5,25%\"\npause_after_canary = true\ncontinue_on_failure = true\nmax_failures = 3\n\n[window]\nstart = \"22:00\"\nend = \"05:00\"\ntimezone = \"Europe/Berlin\"\n\n[[pair]]\npools = [\"fepool1.berlin.demo.example\", \"fepool2.berlin.demo.example\"]\n",
    );
    let o = s.run(&["policy", "check", "rollout.toml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    for line in [
        "parallel              4 server(s) in outage at once, 2 per site",
        "failure budget        stop after more than 3 failed server(s)",
        "order                 standard-edition, then back-end",
        "front end servers     one per pool at a time",
        "waves                 1, 5, 25%, then the rest (pause for approval after the first)",
        "maintenance window    22:00-05:00 Europe/Berlin",
        "paired pools          fepool1.berlin.demo.example and fepool2.berlin.demo.example never in outage together",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let o = s.run(&["policy", "check", "rollout.toml", "--format", "json"]);
    let json: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["max_parallel"], 4);
    assert_eq!(json["waves"][2]["percent"], 25.0);

    s.write("bad.toml", "max_parallel = 2\nmax_paralel = 3\n");
    let o = s.run(&["policy", "check", "bad.toml"]);
    assert_eq!(code(&o), 2);
    let err = stderr(&o);
    assert!(
        err.contains("bad.toml:2:1: unknown field `max_paralel`") && err.contains("[SFB-C001]"),
        "{err}"
    );

    s.write("waves.toml", "waves = \"1,0\"\n");
    let o = s.run(&["policy", "check", "waves.toml"]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains(
            "waves.toml: waves: '0' is not a positive number of servers or a percentage [SFB-C002]"
        ),
        "{}",
        stderr(&o)
    );

    s.write(
        "tz.toml",
        "[window]\nstart = \"22:00\"\nend = \"05:00\"\ntimezone = \"Mars/Olympus\"\n",
    );
    let o = s.run(&["policy", "check", "tz.toml"]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("timezone 'Mars/Olympus'"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn parallel_slots_overlap_pools_but_never_the_nodes_of_one_back_end_or_a_pair() {
    let s = Scratch::new();
    lab_init(&s);
    s.write(
        "pairs.toml",
        "[[pair]]\npools = [\"fepool1.berlin.demo.example\", \"fepool2.berlin.demo.example\"]\n",
    );
    let o = apply(&s, &["--max-parallel", "3", "--policy", "pairs.toml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let lab = s.lab_json("lab");
    for fqdn in crate::common::DEMO_SERVERS {
        crate::common::assert_patched(&lab, fqdn);
    }
    // Each pool's outage windows (its Front End servers' and its back end's), from the report.
    let report = s.run(&["report", "--state", "state.db", "--format", "json"]);
    assert_eq!(code(&report), 0, "{}", stderr(&report));
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    let windows = |pool: &str| -> Vec<(f64, f64)> {
        report["servers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|sv| sv["pool"] == pool && sv["outage_start_seconds"].is_number())
            .map(|sv| {
                (
                    sv["outage_start_seconds"].as_f64().unwrap(),
                    sv["outage_end_seconds"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let overlap = |a: &[(f64, f64)], b: &[(f64, f64)]| {
        a.iter().any(|x| b.iter().any(|y| x.0 < y.1 && y.0 < x.1))
    };
    let p1 = windows("fepool1.berlin.demo.example");
    let p2 = windows("fepool2.berlin.demo.example");
    let p3 = windows("fepool3.dublin.demo.example");
    let se1 = windows("se1.dublin.demo.example");
    let se2 = windows("se2.dublin.demo.example");
    assert!(!overlap(&p1, &p2), "paired pools overlapped: {p1:?} {p2:?}");
    // Within a pool, one machine at a time.
    for p in [&p1, &p2, &p3] {
        for (i, x) in p.iter().enumerate() {
            assert!(
                !overlap(&[*x], &p[i + 1..]),
                "one pool overlapped itself: {p:?}"
            );
        }
    }
    // Three slots: other pools did overlap.
    assert!(
        overlap(&p3, &p1) || overlap(&p3, &p2) || overlap(&se1, &se2) || overlap(&se1, &p1),
        "nothing ran in parallel"
    );
    // The paired pools must run one machine after another: the run takes hardly longer than
    // their chain (one at a time everything would add the other pools' hour and more).
    let chain: f64 = p1.iter().chain(&p2).map(|(a, b)| b - a).sum();
    let makespan = report["run"]["makespan_seconds"].as_f64().unwrap();
    assert!(
        makespan < chain * 1.1,
        "makespan {makespan} for a chain of {chain}"
    );
}

#[test]
fn a_canary_wave_waits_for_approval() {
    let s = Scratch::new();
    lab_init(&s);
    let o = apply(&s, &["--waves", "1", "--pause-after-canary"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("run 1 awaits approval of its canary wave: `sfbpatch approve 1`"),
        "{}",
        stderr(&o)
    );
    let status = s.status_json("state.db");
    assert_eq!(status["run"]["state"], "awaiting-approval");
    let lab = s.lab_json("lab");
    let patched: Vec<_> = builds(&lab)
        .into_iter()
        .filter(|(_, b)| b == "7.0.2046.553")
        .collect();
    assert_eq!(patched.len(), 1, "only the canary: {patched:?}");
    // The longest chain goes first: the first Front End server of the largest pool.
    assert_eq!(patched[0].0, "fe11.berlin.demo.example");

    // Resume without approval changes nothing.
    let r = s.run(&["resume", "--state", "state.db"]);
    assert_eq!(code(&r), 4, "{}", stderr(&r));
    assert_eq!(
        builds(&s.lab_json("lab"))
            .iter()
            .filter(|(_, b)| b == "7.0.2046.553")
            .count(),
        1
    );

    let a = s.run(&["approve", "1", "--state", "state.db"]);
    assert_eq!(code(&a), 0, "{}", stderr(&a));
    let again = s.run(&["approve", "1", "--state", "state.db"]);
    assert_eq!(code(&again), 3, "{}", stderr(&again));
    assert!(
        stderr(&again).contains("run 1 has no wave waiting for approval [SFB-E005]"),
        "{}",
        stderr(&again)
    );
    let r = s.run(&["resume", "--state", "state.db"]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let lab = s.lab_json("lab");
    for fqdn in crate::common::DEMO_SERVERS {
        crate::common::assert_patched(&lab, fqdn);
    }
}

#[test]
fn nothing_starts_outside_the_maintenance_window() {
    let s = Scratch::new();
    lab_init(&s);
    // A one-hour window opening two hours from now (UTC): the run waits for it, fits two
    // servers of about 30 minutes each, and leaves the rest for the next night.
    let window = window_from_now(120, 60);
    let o = apply(&s, &["--window", &window, "--timezone", "UTC"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the maintenance window cannot fit another server"),
        "{}",
        stderr(&o)
    );
    let report = s.run(&["report", "--state", "state.db", "--format", "json"]);
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    let started: Vec<&Value> = report["servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["start_seconds"].is_number())
        .collect();
    assert!(!started.is_empty() && started.len() < 13, "{started:?}");
    let lab = s.lab_json("lab");
    let mut finished = 0;
    for server in &started {
        let start = server["start_seconds"].as_f64().unwrap();
        // Opened between 119 and 120 minutes from now; closes 60 minutes later.
        assert!(start >= 119.0 * 60.0, "{server}");
        match server["end_seconds"].as_f64() {
            Some(end) => {
                assert!(end <= 181.0 * 60.0, "{server}");
                // A SQL-only back end has no build of its own to install.
                if server["role"] != "back-end" {
                    finished += 1;
                }
            }
            // Started, but its outage would not have fit in what was left of the window: it
            // stays in service before its outage, for the next night.
            None => {
                assert!(server["outage_start_seconds"].is_null(), "{server}");
                let fqdn = server["fqdn"].as_str().unwrap();
                let machine = crate::common::item(&lab, "servers", "fqdn", fqdn);
                assert_eq!(machine["installed_build"], "7.0.2046.0", "{machine}");
                assert_eq!(machine["failed_over"], false, "{machine}");
                for svc in machine["services"].as_array().unwrap() {
                    assert_eq!(svc["state"], "running", "{fqdn} {svc}");
                }
            }
        }
    }
    assert!(finished > 0, "{started:?}");
    assert_eq!(s.status_json("state.db")["run"]["state"], "interrupted");

    // `resume` waits for the next night's window and goes on there.
    let patched = |s: &Scratch| {
        builds(&s.lab_json("lab"))
            .into_iter()
            .filter(|(_, b)| b == "7.0.2046.553")
            .count()
    };
    let before = patched(&s);
    assert_eq!(before, finished);
    let r = s.run(&["resume", "--state", "state.db"]);
    assert!(code(&r) == 4 || code(&r) == 0, "{}", stderr(&r));
    assert!(patched(&s) > before, "{}", stderr(&r));
}

#[test]
fn pools_the_topology_pairs_are_never_out_together() {
    let s = Scratch::new();
    std::fs::copy(
        crate::common::fixture("paired.xml"),
        s.path().join("paired.xml"),
    )
    .unwrap();
    let o = s.run(&["lab", "init", "lab", "--topology", "paired.xml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let show = s.run(&["topology", "show", "paired.xml"]);
    assert!(
        stdout(&show).contains("  paired     fepool2.berlin.demo.example (disaster recovery)"),
        "{}",
        stdout(&show)
    );
    let o = s.run(&[
        "apply",
        "paired.xml",
        "--package",
        "demo-package.toml",
        "--lab",
        "lab",
        "--state",
        "state.db",
        "--yes",
        "--max-parallel",
        "3",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let lab = s.lab_json("lab");
    let p1 = intervals(&lab, "fepool1.berlin.demo.example");
    let p2 = intervals(&lab, "fepool2.berlin.demo.example");
    assert!(!p1.is_empty() && !p2.is_empty());
    assert!(!overlap(&p1, &p2), "paired pools overlapped: {p1:?} {p2:?}");
}

/// A rehearsal on the lab: the canary runs when tonight's window opens; after `approve` the
/// rest goes on in the same night, however much later (in real time) `resume` is typed. Every
/// process places the window on the lab's own calendar, not on its own start.
#[test]
fn a_canary_approved_and_resumed_in_a_rehearsal_stays_in_the_same_night() {
    let s = Scratch::new();
    lab_init(&s);
    // A five-hour window opening two hours from now (UTC).
    let window = window_from_now(120, 300);
    let only = [
        "--only",
        "se1.dublin.demo.example",
        "--only",
        "se2.dublin.demo.example",
    ];
    let mut args = vec!["--window", window.as_str(), "--timezone", "UTC"];
    args.extend(["--waves", "1", "--pause-after-canary"]);
    args.extend(only);
    let o = apply(&s, &args);
    // Paused for approval (exit 4: the run goes on with `resume`).
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("awaits approval"), "{}", stderr(&o));
    // Some real time passes before the operator approves and resumes.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let a = s.run(&["approve", "1", "--state", "state.db"]);
    assert_eq!(code(&a), 0, "{}", stderr(&a));
    let r = s.run(&["resume", "--state", "state.db"]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));

    let report = s.run(&["report", "--state", "state.db", "--format", "json"]);
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    let start = |fqdn: &str| {
        item(&report, "servers", "fqdn", fqdn)["start_seconds"]
            .as_f64()
            .unwrap()
    };
    let end = |fqdn: &str| {
        item(&report, "servers", "fqdn", fqdn)["end_seconds"]
            .as_f64()
            .unwrap()
    };
    let (canary, rest) = if start("se1.dublin.demo.example") < start("se2.dublin.demo.example") {
        ("se1.dublin.demo.example", "se2.dublin.demo.example")
    } else {
        ("se2.dublin.demo.example", "se1.dublin.demo.example")
    };
    // The canary at the window's opening, two hours after the run was created.
    assert!((start(canary) - 7200.0).abs() < 120.0, "{}", start(canary));
    // The rest right after the canary, in the same window (not a day later).
    assert!(start(rest) >= end(canary), "{report}");
    assert!(
        start(rest) - end(canary) < 600.0,
        "{} {}",
        start(rest),
        end(canary)
    );
    assert!(end(rest) < 7200.0 + 300.0 * 60.0, "{}", end(rest));
}

/// Every server's out-of-service intervals in the lab world, by FQDN.
fn out_of_service(lab: &Value) -> Vec<(String, Vec<(f64, f64)>)> {
    lab["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let iv = s["out_of_service"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| (i["start"].as_f64().unwrap(), i["end"].as_f64().unwrap()))
                .collect();
            (s["fqdn"].as_str().unwrap().to_string(), iv)
        })
        .collect()
}

#[test]
fn on_a_lab_with_variance_the_world_sees_the_slots_and_the_front_end_rule_kept() {
    let varied_run = || {
        let s = Scratch::new();
        s.lab_init("lab", &["--variance", "11"]);
        let o = apply(&s, &["--max-parallel", "3"]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        s.lab_json("lab")
    };
    let lab = varied_run();
    for fqdn in crate::common::DEMO_SERVERS {
        crate::common::assert_patched(&lab, fqdn);
    }
    let out = out_of_service(&lab);
    // The servers' own durations: no two Front End servers took the same time out.
    let mut lengths: Vec<f64> = out
        .iter()
        .filter(|(f, _)| f.starts_with("fe"))
        .flat_map(|(_, iv)| iv.iter().map(|(a, b)| b - a))
        .collect();
    let n = lengths.len();
    lengths.sort_by(f64::total_cmp);
    lengths.dedup();
    assert!(n >= 4 && lengths.len() == n, "{lengths:?}");
    // Never more than three out of service at once, as the world saw it.
    let mut edges: Vec<(f64, i32)> = out
        .iter()
        .flat_map(|(_, iv)| iv.iter().flat_map(|&(a, b)| [(a, 1), (b, -1)]))
        .collect();
    edges.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    let (mut now, mut most) = (0, 0);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    assert!((2..=3).contains(&most), "at most {most} out at once");
    // One Front End server of a pool out at a time: no quorum lost, no session dropped.
    for pool in lab["pools"].as_array().unwrap() {
        let Some(fe) = pool["front_ends"].as_object() else {
            continue;
        };
        assert_eq!(fe["down_intervals"], serde_json::json!([]), "{pool}");
        assert_eq!(fe["user_impact_intervals"], serde_json::json!([]), "{pool}");
        // The demo's pool fepoolN has the Front End servers feN1, feN2, ...
        let number = &pool["fqdn"].as_str().unwrap()["fepool".len()..]
            .split_once('.')
            .unwrap()
            .0;
        let members: Vec<&(String, Vec<(f64, f64)>)> = out
            .iter()
            .filter(|(f, _)| f.starts_with(&format!("fe{number}")))
            .collect();
        assert!(members.len() >= 2, "{pool}");
        for (i, (a, x)) in members.iter().enumerate() {
            for (b, y) in &members[i + 1..] {
                assert!(!overlap(x, y), "{a} {x:?} and {b} {y:?} out together");
            }
        }
    }
    // The lab keeps its seed: the same seed, the same night.
    assert_eq!(out_of_service(&varied_run()), out);
}
