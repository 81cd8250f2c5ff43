//! Every JSON output and the event stream against its JSON Schema (docs/schema/, and the plan's
//! beside its types), with a real draft 2020-12 validator (the `jsonschema` crate). Each check
//! also feeds the validator a broken copy of the document, which it must refuse, so that no
//! validation passes vacuously. And the end-of-run summary's pool figures, which come from the
//! journal, against the report's, the status's and the lab's own record.

use std::collections::BTreeSet;

use jsonschema::Validator;
use serde_json::{Value, json};

use crate::common::{self, Scratch, code, item, repo, stderr, stdout};

const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// The schema of every JSON output, by the name tests use.
const SCHEMAS: [(&str, &str); 9] = [
    ("topology", "docs/schema/topology.schema.json"),
    ("plan", "crates/plan/schema/plan.schema.json"),
    ("probe", "docs/schema/probe.schema.json"),
    ("status", "docs/schema/status.schema.json"),
    ("report", "docs/schema/report.schema.json"),
    ("lab-show", "docs/schema/lab-show.schema.json"),
    ("policy-check", "docs/schema/policy-check.schema.json"),
    ("summary", "docs/schema/summary.schema.json"),
    ("events", "docs/schema/events.schema.json"),
];

fn read_schema(name: &str) -> Value {
    let (_, path) = SCHEMAS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no schema named {name}"));
    let path = repo().join(path);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A compiled schema.
struct Schema {
    name: &'static str,
    validator: Validator,
}

impl Schema {
    fn new(name: &'static str) -> Self {
        let validator = jsonschema::draft202012::new(&read_schema(name))
            .unwrap_or_else(|e| panic!("schema {name} does not compile: {e}"));
        Schema { name, validator }
    }

    /// The validator's complaints about `doc`, one line each.
    fn errors(&self, doc: &Value) -> Vec<String> {
        self.validator
            .iter_errors(doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }

    /// `doc` is valid.
    #[track_caller]
    fn valid(&self, doc: &Value) {
        let errors = self.errors(doc);
        assert!(
            errors.is_empty(),
            "the {} schema refuses the document:\n  {}\n{doc:#}",
            self.name,
            errors.join("\n  ")
        );
    }

    /// `doc` is valid, and the copy `break_it` spoils is refused.
    #[track_caller]
    fn checked(&self, doc: &Value, break_it: impl FnOnce(&mut Value)) {
        self.valid(doc);
        let mut broken = doc.clone();
        break_it(&mut broken);
        assert_ne!(&broken, doc, "the breakage changed nothing");
        assert!(
            !self.errors(&broken).is_empty(),
            "the {} schema accepts a broken document:\n{broken:#}",
            self.name
        );
    }
}

/// `doc` is valid against schema `name`.
#[track_caller]
fn assert_valid(name: &'static str, doc: &Value) {
    Schema::new(name).valid(doc);
}

/// `doc` is valid against schema `name`, and the copy `break_it` spoils is refused.
#[track_caller]
fn assert_valid_and_checked(name: &'static str, doc: &Value, break_it: impl FnOnce(&mut Value)) {
    Schema::new(name).checked(doc, break_it);
}

fn json_of(o: &std::process::Output, what: &str) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}\n{}", stdout(o), stderr(o)))
}

fn run_json(s: &Scratch, args: &[&str], codes: &[i32]) -> Value {
    let o = s.run(args);
    assert!(
        codes.contains(&code(&o)),
        "{args:?} exited {}: {}",
        code(&o),
        stderr(&o)
    );
    json_of(&o, &args.join(" "))
}

fn status_json(s: &Scratch) -> Value {
    run_json(
        s,
        &["status", "--state", "state.db", "--format", "json"],
        &[0],
    )
}

fn report_json(s: &Scratch) -> Value {
    run_json(
        s,
        &["report", "--state", "state.db", "--format", "json"],
        &[0],
    )
}

/// `apply` of the demo on the lab `lab` with `extra` flags, as `--format json`: its summary.
fn apply_summary(s: &Scratch, extra: &[&str], codes: &[i32]) -> Value {
    let mut args = common::apply_args(&["--lab", "lab"], &[], extra);
    args.extend(["--format", "json"]);
    run_json(s, &args, codes)
}

/// A fault file: install-update of se1 takes 40 minutes (the pool's users pass the 30-minute
/// line), its first attempt meets another installation (a retry), se2's installer asks for a
/// restart, fe22's start-w3svc fails inside its outage window (recovery, failure, a skipped
/// back end), fe11's installer hangs once (timeout, probe, retry).
const FAULTS: &str = "\
[[fault]]
server = \"se1.dublin.demo.example\"
step = \"install-update\"
exit_code = 1618
times = 1

[[fault]]
server = \"se1.dublin.demo.example\"
step = \"stop-w3svc\"
duration_minutes = 40

[[fault]]
server = \"se2.dublin.demo.example\"
step = \"install-update\"
exit_code = 3010

[[fault]]
server = \"fe22.berlin.demo.example\"
step = \"start-w3svc\"
exit_code = 1
times = 0

[[fault]]
server = \"fe11.berlin.demo.example\"
step = \"install-update\"
hang = true
times = 1
";

fn faulty_lab() -> Scratch {
    let s = Scratch::new();
    s.write("faults.toml", FAULTS);
    s.lab_init("lab", &["--faults", "faults.toml"]);
    s
}

fn close(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-6,
        _ => a == b,
    }
}

/// Total length of `lab show` intervals, seconds.
fn lab_total(intervals: &Value) -> f64 {
    intervals
        .as_array()
        .expect("intervals")
        .iter()
        .map(|i| i["end"].as_f64().expect("closed") - i["start"].as_f64().unwrap())
        .sum()
}

#[test]
fn every_schema_is_a_draft_2020_12_schema_and_the_readme_lists_it() {
    let readme = std::fs::read_to_string(repo().join("docs/schema/README.md")).unwrap();
    for (name, path) in SCHEMAS {
        let schema = read_schema(name);
        assert_eq!(schema["$schema"], DRAFT_2020_12, "{path}");
        if let Err(e) = jsonschema::meta::validate(&schema) {
            panic!("{path} is not a valid draft 2020-12 schema: {e}");
        }
        Schema::new(name);
        let file = path.rsplit('/').next().unwrap();
        assert!(
            readme.contains(file),
            "docs/schema/README.md does not list {file}"
        );
    }
    // The meta-schema check itself refuses a broken schema.
    assert!(jsonschema::meta::validate(&json!({"type": "no-such-type"})).is_err());
}

#[test]
fn topology_plan_and_probe_outputs_match_their_schemas() {
    let s = Scratch::new();
    let mut shown = 0;
    for entry in std::fs::read_dir(common::fixture("")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("bad-") || name.ends_with(".md") {
            continue;
        }
        let path = path.display().to_string();
        let o = s.run(&["topology", "show", &path, "--format", "json"]);
        if code(&o) != 0 {
            // Not a topology by itself (a fixture that needs others); the bad ones are named so.
            continue;
        }
        let doc = json_of(&o, &name);
        assert_valid("topology", &doc);
        shown += 1;
    }
    assert!(shown >= 5, "only {shown} topology fixtures were shown");
    let topology = run_json(
        &s,
        &["topology", "show", "demo-topology.xml", "--format", "json"],
        &[0],
    );
    assert_valid_and_checked("topology", &topology, |d| d["schema_version"] = json!(99));

    for extra in [
        &[][..],
        &["--sfb-components-on", "sqlbe1.berlin.demo.example"][..],
    ] {
        let mut args = vec![
            "plan",
            "demo-topology.xml",
            "--package",
            "demo-package.toml",
            "--format",
            "json",
        ];
        args.extend(extra);
        let plan = run_json(&s, &args, &[0]);
        assert_valid_and_checked("plan", &plan, |d| {
            d["servers"][0]["kind"] = json!("mainframe");
        });
    }

    s.lab_init("lab", &[]);
    let probe = run_json(
        &s,
        &[
            "probe",
            "demo-topology.xml",
            "--package",
            "demo-package.toml",
            "--lab",
            "lab",
            "--state",
            "state.db",
            "--format",
            "json",
        ],
        &[0],
    );
    assert_valid_and_checked("probe", &probe, |d| {
        d["machines"][0]["read"] = json!("yes");
    });
}

#[test]
fn policy_check_matches_its_schema_and_gives_the_budget_in_seconds_too() {
    let s = Scratch::new();
    s.write(
        "rollout.toml",
        "max_parallel = 4\nmax_parallel_per_site = 2\norder = [\"standard-edition\", \"back-end\"]\n\
         waves = \"1,5,25%\"\npause_after_canary = true\ncontinue_on_failure = true\nmax_failures = 3\n\
         max_failure_percent = 10\noutage_budget_minutes = 20\nfront_end_batch = \"upgrade-domain\"\n\n\
         [window]\nstart = \"22:00\"\nend = \"05:00\"\ntimezone = \"Europe/Berlin\"\n\n\
         [[pair]]\npools = [\"fepool1.berlin.demo.example\", \"fepool2.berlin.demo.example\"]\n",
    );
    s.write("empty.toml", "");
    let full = run_json(
        &s,
        &["policy", "check", "rollout.toml", "--format", "json"],
        &[0],
    );
    assert_eq!(full["schema_version"], 1);
    assert_eq!(full["outage_budget_minutes"], 20.0);
    assert_eq!(full["outage_budget_seconds"], 1200.0);
    assert_valid_and_checked("policy-check", &full, |d| {
        d["front_end_batch"] = json!("pool");
    });
    assert_valid_and_checked("policy-check", &full, |d| {
        d["waves"][2] = json!({"percent": 25.0, "servers": 3});
    });
    let empty = run_json(
        &s,
        &["policy", "check", "empty.toml", "--format", "json"],
        &[0],
    );
    assert_eq!(empty["outage_budget_seconds"], 1800.0);
    assert_valid_and_checked("policy-check", &empty, |d| {
        d.as_object_mut().unwrap().remove("schema_version");
    });
}

/// A run with retries, a restart, a probe, a failure with its recovery, a skipped server and a
/// pool in resiliency mode: the summary, the status, the report and `lab show` each match their
/// schema, and the summary's pool figures (from the journal) are the report's and the lab's.
#[test]
fn a_lab_run_s_summary_status_report_and_lab_show_match_their_schemas_and_agree() {
    let s = faulty_lab();
    let before = run_json(&s, &["lab", "show", "lab", "--format", "json"], &[0]);
    assert_eq!(before["schema_version"], 1);
    assert_valid_and_checked("lab-show", &before, |d| {
        d["servers"][0]["w3svc"] = json!("paused");
    });

    let summary = apply_summary(&s, &["--continue-on-failure"], &[1]);
    assert_eq!(summary["schema_version"], 1);
    assert_eq!(summary["run"]["state"], "failed");
    assert_eq!(summary["availability_from"], "lab");
    assert_eq!(summary["lab_differences"], json!([]), "{summary:#}");
    assert_valid_and_checked("summary", &summary, |d| {
        d["availability_from"] = json!("guess");
    });
    assert_valid_and_checked("summary", &summary, |d| {
        d["pools"][0]["unavailable"] = json!([{"start_seconds": 1.0}]);
    });

    let status = status_json(&s);
    assert_valid_and_checked("status", &status, |d| d["run"]["state"] = json!("finished"));
    let report = report_json(&s);
    assert_valid_and_checked("report", &report, |d| {
        d["servers"][0]["state"] = json!("done");
    });
    let lab = run_json(&s, &["lab", "show", "lab", "--format", "json"], &[0]);
    assert_valid("lab-show", &lab);

    // Every server: one outage window in summary, status and report.
    for sv in summary["servers"].as_array().unwrap() {
        let fqdn = sv["fqdn"].as_str().unwrap();
        let st = item(&status, "servers", "fqdn", fqdn);
        let r = item(&report, "servers", "fqdn", fqdn);
        assert_eq!(sv["state"], st["state"], "{fqdn}");
        assert!(
            close(&sv["outage_seconds"], &st["outage_seconds"]),
            "{fqdn}"
        );
        assert!(close(&sv["outage_seconds"], &r["outage_seconds"]), "{fqdn}");
    }
    // Every pool: the summary's figures are the report's, and the lab recorded the same.
    let start = summary["run"]["created_at_seconds"].as_f64().unwrap();
    for p in summary["pools"].as_array().unwrap() {
        let fqdn = p["fqdn"].as_str().unwrap();
        let r = item(&report, "pools", "fqdn", fqdn);
        assert!(
            close(&p["outage_seconds"], &r["unavailable_seconds"]),
            "{fqdn}"
        );
        assert!(
            close(&p["resiliency_seconds"], &r["resiliency_seconds"]),
            "{fqdn}"
        );
        assert_eq!(p["unavailable"], r["unavailable"], "{fqdn}");
        assert_eq!(p["resiliency"], r["resiliency"], "{fqdn}");
        let l = item(&lab, "pools", "fqdn", fqdn);
        let outage = lab_total(&l["outage_intervals"]);
        let resiliency = lab_total(&l["resiliency_intervals"]);
        assert!(
            (p["outage_seconds"].as_f64().unwrap() - outage).abs() < 1e-6,
            "{fqdn}: summary {p} vs lab {l}"
        );
        assert!(
            (p["resiliency_seconds"].as_f64().unwrap() - resiliency).abs() < 1e-6,
            "{fqdn}: summary {p} vs lab {l}"
        );
        // The windows themselves, on the lab's clock.
        let windows: Vec<(f64, f64)> = p["unavailable"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    start + w["start_seconds"].as_f64().unwrap(),
                    start + w["end_seconds"].as_f64().unwrap(),
                )
            })
            .collect();
        let recorded: Vec<(f64, f64)> = l["outage_intervals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["start"].as_f64().unwrap(), i["end"].as_f64().unwrap()))
            .collect();
        assert_eq!(windows, recorded, "{fqdn}");
        if let Some(fe) = l.get("front_ends") {
            assert!(
                (p["down_seconds"].as_f64().unwrap() - lab_total(&fe["down_intervals"])).abs()
                    < 1e-6
            );
        }
    }
    // The pool past the 30-minute line: its users in resiliency mode for the rest of its one
    // window.
    let se1 = item(&summary, "pools", "fqdn", "se1.dublin.demo.example");
    let outage = se1["outage_seconds"].as_f64().unwrap();
    assert!(outage > 1800.0, "{se1}");
    assert!(
        (se1["resiliency_seconds"].as_f64().unwrap() - (outage - 1800.0)).abs() < 1e-6,
        "{se1}"
    );
}

/// The lab's record is compared with the journal, and a difference is said: a SQL Server that
/// goes down by itself during the update makes its pools unavailable in the lab, which the
/// journal cannot see.
#[test]
fn the_summary_says_when_the_lab_saw_an_outage_the_journal_did_not() {
    let s = Scratch::new();
    s.write(
        "faults.toml",
        "[[fault]]\nserver = \"sqlbe2.berlin.demo.example\"\nstep = \"update-databases\"\nsql_down_minutes = 10\n",
    );
    s.lab_init("lab", &["--faults", "faults.toml"]);
    let mut args = common::apply_args(&["--lab", "lab"], &["fepool2.berlin.demo.example"], &[]);
    args.extend(["--format", "json"]);
    let o = s.run(&args);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let summary = json_of(&o, "apply");
    assert_valid("summary", &summary);
    let differences = summary["lab_differences"].as_array().unwrap();
    assert_eq!(differences.len(), 1, "{summary:#}");
    let d = differences[0].as_str().unwrap();
    assert!(
        d.starts_with("pool fepool2.berlin.demo.example: back end unavailable 0.000 s in 0 window(s) by the journal, 600.000 s in 1 by the lab"),
        "{d}"
    );
    assert!(
        stderr(&o).contains(
            "warning: the journal's back-end figures differ from the lab's own record: pool fepool2.berlin.demo.example"
        ),
        "{}",
        stderr(&o)
    );
    // The summary's figure is still the journal's, as the report's.
    let pool = item(&summary, "pools", "fqdn", "fepool2.berlin.demo.example");
    let report = report_json(&s);
    let r = item(&report, "pools", "fqdn", "fepool2.berlin.demo.example");
    assert!(close(&pool["outage_seconds"], &r["unavailable_seconds"]));
}

/// Every line of `--format jsonl` is one event of the schema; together the runs below show
/// every kind a lab run can (the store's and Ctrl-C's need a store outage or a signal).
#[test]
fn the_event_stream_matches_its_schema() {
    let events_schema = Schema::new("events");
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut check = |s: &Scratch, o: &std::process::Output| -> Vec<Value> {
        let text = stdout(o);
        let events: Vec<Value> = text
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object ({e}): {l}"))
            })
            .collect();
        assert!(!events.is_empty(), "{}", stderr(o));
        for e in &events {
            events_schema.valid(e);
            seen.insert(e["event"].as_str().unwrap().to_string());
        }
        // Every `at` is milliseconds of the lab's clock: the run starts at its creation...
        let report = report_json(s);
        let started = events.iter().find(|e| e["event"] == "run-started").unwrap();
        let created = report["run"]["created_at_seconds"].as_f64().unwrap() * 1000.0;
        assert_eq!(started["at"].as_f64().unwrap(), created);
        assert_eq!(started["run_created_at"].as_f64().unwrap(), created);
        assert_eq!(started["wall_clock"], false);
        events
    };

    let s = faulty_lab();
    let mut args = common::apply_args(&["--lab", "lab"], &[], &["--continue-on-failure"]);
    args.extend(["--format", "jsonl"]);
    let o = s.run(&args);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let events = check(&s, &o);
    // ... and each server's outage, in milliseconds, is the status's in seconds.
    let status = status_json(&s);
    for e in events.iter().filter(|e| e["event"] == "server-finished") {
        let st = item(&status, "servers", "fqdn", e["server"].as_str().unwrap());
        match e["outage_ms"].as_u64() {
            Some(ms) => assert_eq!(
                (st["outage_seconds"].as_f64().unwrap() * 1000.0).round() as u64,
                ms,
                "{e}"
            ),
            None => assert!(st["outage_seconds"].is_null(), "{e}"),
        }
    }
    for e in events.iter().filter(|e| e["event"] == "outage-ended") {
        let st = item(&status, "servers", "fqdn", e["server"].as_str().unwrap());
        let (start, end) = (
            st["outage_started_at"].as_f64().unwrap(),
            st["outage_ended_at"].as_f64().unwrap(),
        );
        assert_eq!(e["at"].as_f64().unwrap(), end * 1000.0, "{e}");
        assert_eq!(
            e["duration_ms"].as_f64().unwrap(),
            ((end - start) * 1000.0).round(),
            "{e}"
        );
    }
    // A broken event is refused: an unknown kind, a kind without its fields, a time in
    // seconds.
    let finished = events
        .iter()
        .find(|e| e["event"] == "server-finished")
        .unwrap();
    assert_valid_and_checked("events", finished, |e| e["event"] = json!("server-done"));
    assert_valid_and_checked("events", finished, |e| {
        e.as_object_mut().unwrap().remove("outcome");
    });
    assert_valid_and_checked("events", finished, |e| e["at"] = json!(12.5));
    assert_valid_and_checked("events", finished, |e| e["outcome"] = json!("fine"));

    // A canary wave that waits for approval.
    let s = Scratch::new();
    s.lab_init("lab", &[]);
    let mut args = common::apply_args(
        &["--lab", "lab"],
        &[],
        &["--waves", "1", "--pause-after-canary"],
    );
    args.extend(["--format", "jsonl"]);
    let o = s.run(&args);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    check(&s, &o);

    // A maintenance window nothing fits in.
    let s = Scratch::new();
    s.lab_init("lab", &[]);
    let mut args = common::apply_args(
        &["--lab", "lab"],
        &["se1.dublin.demo.example"],
        &["--window", "00:00-00:10"],
    );
    args.extend(["--format", "jsonl"]);
    let o = s.run(&args);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    check(&s, &o);

    let expected: BTreeSet<String> = [
        "run-started",
        "server-started",
        "step-started",
        "step-finished",
        "step-probed",
        "step-retrying",
        "rebooted",
        "outage-started",
        "outage-ended",
        "outage-budget-exceeded",
        "outage-budget-at-risk",
        "recovered",
        "server-finished",
        "awaiting-approval",
        "window-closed",
        "databases-checked",
        "run-finished",
    ]
    .iter()
    .map(|k| k.to_string())
    .collect();
    let missing: Vec<&String> = expected.difference(&seen).collect();
    assert!(missing.is_empty(), "no {missing:?} event in the runs");
    // Every kind the schema knows is one of the engine's, and the other way round (above).
    let schema = read_schema("events");
    let kinds: BTreeSet<String> = schema["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            k["properties"]["event"]["const"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(kinds.is_superset(&seen), "{seen:?} vs {kinds:?}");
}

/// A paused canary run: its status (awaiting-approval), its summary, then the resumed run's
/// summary, each valid.
#[test]
fn a_paused_canary_run_and_its_resume_match_their_schemas() {
    let s = Scratch::new();
    s.lab_init("lab", &[]);
    let paused = apply_summary(&s, &["--waves", "1", "--pause-after-canary"], &[4]);
    assert_eq!(paused["run"]["state"], "awaiting-approval");
    assert_valid_and_checked("summary", &paused, |d| {
        d["run"]["state"] = json!("paused");
    });
    let status = status_json(&s);
    assert_eq!(status["run"]["state"], "awaiting-approval");
    assert_valid_and_checked("status", &status, |d| {
        d["servers"][0]["kind"] = json!("edge");
    });
    assert_valid("report", &report_json(&s));

    let o = s.run(&["approve", "1", "--state", "state.db"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let resumed = run_json(
        &s,
        &["resume", "--state", "state.db", "--format", "json"],
        &[0],
    );
    assert_eq!(resumed["run"]["state"], "succeeded");
    assert_eq!(resumed["lab_differences"], json!([]), "{resumed:#}");
    assert_valid("summary", &resumed);
    let status = status_json(&s);
    assert_valid("status", &status);
    assert_valid("report", &report_json(&s));
}

#[test]
fn the_demo_s_summary_matches_its_schema() {
    let s = Scratch::new();
    let summary = run_json(
        &s,
        &["demo", "--speed", "0", "--keep", "demo", "--format", "json"],
        &[0],
    );
    assert_eq!(summary["availability_from"], "lab");
    assert_eq!(summary["lab_differences"], json!([]));
    assert_valid_and_checked("summary", &summary, |d| {
        d["servers"][0]["outage_seconds"] = json!("25 min");
    });
    let lab = run_json(&s, &["lab", "show", "demo/lab", "--format", "json"], &[0]);
    assert_valid("lab-show", &lab);
    for p in summary["pools"].as_array().unwrap() {
        let l = item(&lab, "pools", "fqdn", p["fqdn"].as_str().unwrap());
        assert!(
            (p["outage_seconds"].as_f64().unwrap() - lab_total(&l["outage_intervals"])).abs()
                < 1e-6,
            "{p} vs {l}"
        );
    }
}
