//! `report` after runs on the lab: its numbers are the lab world's own (`lab show`) and the
//! status's, its HTML shows every server, and headless Chromium renders it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Scratch, code, stderr, stdout};

const SERVERS: [&str; 13] = crate::common::DEMO_SERVERS;

const POOLS: [&str; 5] = [
    "fepool1.berlin.demo.example",
    "fepool2.berlin.demo.example",
    "fepool3.dublin.demo.example",
    "se1.dublin.demo.example",
    "se2.dublin.demo.example",
];

const LONG_INSTALL: &str = "[[fault]]\nserver = \"se1.dublin.demo.example\"\nstep = \"install-update\"\nduration_minutes = 40\n";

const FAILED_UPDATE: &str = "[[fault]]\nserver = \"se2.dublin.demo.example\"\nstep = \"update-databases\"\nexit_code = 1603\n";

/// A lab of the demo topology with `faults`, patched by one `apply` with `extra` flags.
fn patched(faults: &str, extra: &[&str]) -> Scratch {
    let s = Scratch::new();
    let mut init = vec!["lab", "init", "lab", "--topology", "demo-topology.xml"];
    if !faults.is_empty() {
        s.write("faults.toml", faults);
        init.extend(["--faults", "faults.toml"]);
    }
    let o = s.run(&init);
    assert_eq!(code(&o), 0, "lab init: {}", stderr(&o));
    let mut apply = vec![
        "apply",
        "demo-topology.xml",
        "--package",
        "demo-package.toml",
        "--lab",
        "lab",
        "--state",
        "state.db",
        "--yes",
    ];
    apply.extend(extra);
    let o = s.run(&apply);
    assert!(
        matches!(code(&o), 0 | 1),
        "apply: {} {}",
        code(&o),
        stderr(&o)
    );
    s
}

fn report_json(s: &Scratch) -> Value {
    let o = s.run(&["report", "--state", "state.db", "--format", "json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("report json")
}

fn find<'a>(list: &'a Value, fqdn: &str) -> &'a Value {
    list.as_array()
        .expect("array")
        .iter()
        .find(|v| v["fqdn"] == fqdn)
        .unwrap_or_else(|| panic!("{fqdn} in {list}"))
}

/// Total length of a list of lab intervals (`{"start", "end"}` in seconds).
fn total(intervals: &Value) -> f64 {
    intervals
        .as_array()
        .expect("intervals")
        .iter()
        .map(|i| i["end"].as_f64().expect("closed interval") - i["start"].as_f64().unwrap())
        .sum()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

/// Every number of the report against what the lab recorded and what `status` says.
fn assert_matches_lab_and_status(s: &Scratch, report: &Value) {
    let lab = s.lab_json("lab");
    let status = s.status_json("state.db");
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["run"]["id"], status["run"]["id"]);
    assert_eq!(report["run"]["state"], status["run"]["state"]);

    let servers = report["servers"].as_array().unwrap();
    assert_eq!(servers.len(), SERVERS.len());
    for fqdn in SERVERS {
        let r = find(&report["servers"], fqdn);
        let st = find(&status["servers"], fqdn);
        assert_eq!(r["state"], st["state"], "{fqdn}");
        assert_eq!(r["pool"], st["pool"], "{fqdn}");
        assert_eq!(r["outage_seconds"], st["outage_seconds"], "{fqdn}");
        let start = r["start_seconds"].as_f64().unwrap();
        let end = r["end_seconds"].as_f64().unwrap();
        // An AlwaysOn node whose databases its partner updates has nothing to do: start = end.
        assert!(0.0 <= start && start <= end, "{r}");
        assert!(end <= report["run"]["makespan_seconds"].as_f64().unwrap());
    }

    let pools = report["pools"].as_array().unwrap();
    assert_eq!(pools.len(), POOLS.len());
    for fqdn in POOLS {
        let r = find(&report["pools"], fqdn);
        let l = find(&lab["pools"], fqdn);
        let lab_resiliency = total(&l["resiliency_intervals"]);
        let ours = r["resiliency_seconds"].as_f64().unwrap();
        assert!(close(ours, lab_resiliency), "{fqdn}: {ours} vs lab {l}");
        let unavailable = r["unavailable_seconds"].as_f64().unwrap();
        let lab_outage = total(&l["outage_intervals"]);
        assert!(
            close(unavailable, lab_outage),
            "{fqdn}: {unavailable} vs lab {l}"
        );
    }
}

#[test]
fn report_json_matches_the_lab_and_the_status() {
    let s = patched("", &[]);
    let report = report_json(&s);
    assert_eq!(report["run"]["state"], "succeeded");
    assert_matches_lab_and_status(&s, &report);
    for fqdn in POOLS {
        assert_eq!(find(&report["pools"], fqdn)["resiliency_seconds"], 0.0);
    }
    // Each Enterprise back end, the AlwaysOn group too, was unavailable only while its
    // databases were updated (6 minutes); every Front End server was patched behind failover.
    for fqdn in &POOLS[..3] {
        let p = find(&report["pools"], fqdn);
        assert_eq!(p["unavailable_seconds"], 360.0, "{p}");
        assert_eq!(
            p["front_ends_patched"],
            p["front_ends"].as_array().unwrap().len()
        );
    }
    let ag = find(&report["pools"], "fepool3.dublin.demo.example");
    assert_eq!(
        ag["servers"],
        serde_json::json!([
            "sqlag-n1.dublin.demo.example",
            "sqlag-n2.dublin.demo.example"
        ])
    );
    assert_eq!(
        ag["front_ends"],
        serde_json::json!(["fe31.dublin.demo.example", "fe32.dublin.demo.example"])
    );
    assert_eq!(report["failures"], serde_json::json!([]));
    assert!(!report["audit"].as_array().unwrap().is_empty());
    // Every store of the deployment, as the run-level Test-CsDatabase read it: all current, the
    // same the status lists.
    let databases = report["databases"].as_array().unwrap();
    assert_eq!(databases.len(), 35);
    for d in databases {
        assert_eq!(d["installed_version"], d["expected_version"], "{d}");
    }
    assert_eq!(report["databases"], s.status_json("state.db")["databases"]);
}

#[test]
fn a_40_minute_install_puts_its_pool_in_resiliency_mode_for_23_2_minutes() {
    // Two servers in their outage window at once: the journal interleaves them.
    let s = patched(LONG_INSTALL, &["--max-parallel", "2"]);
    let report = report_json(&s);
    assert_matches_lab_and_status(&s, &report);
    let pool = find(&report["pools"], "se1.dublin.demo.example");
    assert!(
        close(pool["resiliency_seconds"].as_f64().unwrap(), 1392.0),
        "{pool}"
    );
    let server = find(&report["servers"], "se1.dublin.demo.example");
    assert!(
        close(server["outage_seconds"].as_f64().unwrap(), 53.2 * 60.0),
        "{server}"
    );
    for fqdn in POOLS.iter().filter(|p| **p != "se1.dublin.demo.example") {
        assert_eq!(
            find(&report["pools"], fqdn)["resiliency_seconds"],
            0.0,
            "{fqdn}"
        );
    }

    let o = s.run(&["report", "--state", "state.db", "--format", "text"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("users in resiliency mode 23.2 min"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn report_html_shows_every_server_and_pool() {
    let s = patched(
        &format!("{LONG_INSTALL}{FAILED_UPDATE}"),
        &["--max-failures", "1"],
    );
    let o = s.run(&["report", "--state", "state.db", "--html", "out.html"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("out.html"), "{}", stderr(&o));
    assert!(stdout(&o).is_empty(), "HTML goes to the file only");
    let html = std::fs::read_to_string(s.path().join("out.html")).expect("out.html");
    assert!(html.starts_with("<!DOCTYPE html>"));
    for fqdn in SERVERS {
        assert!(
            html.contains(&format!("<g class=\"row\" data-server=\"{fqdn}\"")),
            "timeline row for {fqdn}"
        );
        // The name may wrap after each dot in a narrow column.
        assert!(
            html.contains(&format!(
                "<tr data-server=\"{fqdn}\"><td class=\"name\">{}<span",
                fqdn.replace('.', ".<wbr/>")
            )),
            "servers table row for {fqdn}"
        );
    }
    for fqdn in POOLS {
        assert!(
            html.contains(&format!("<tr data-pool=\"{fqdn}\"")),
            "{fqdn}"
        );
    }
    // Every server with an outage window has it drawn with its 30-minute line (the AlwaysOn
    // node whose databases its partner updates has none).
    let json = s.run(&["report", "--state", "state.db", "--format", "json"]);
    let json: Value = serde_json::from_slice(&json.stdout).expect("json");
    let with_window = json["servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["outage_seconds"].is_number())
        .count();
    assert_eq!(with_window, SERVERS.len() - 1);
    assert_eq!(html.matches("class=\"limit-30\"").count(), with_window);
    assert!(html.contains("yes: 23.2 min"));
    // The failure, with its reason and output.
    assert!(html.contains("<article class=\"failure\" data-server=\"se2.dublin.demo.example\">"));
    assert!(html.contains("lab fault 2"));
    assert!(!html.contains("<script"));

    // HTML and JSON in one call.
    let o = s.run(&[
        "report",
        "--state",
        "state.db",
        "--html",
        "again.html",
        "--format",
        "json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let json: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(json["run"]["state"], "failed");
    assert_eq!(json["failures"][0]["server"], "se2.dublin.demo.example");
    assert_eq!(json["failures"][0]["step"], "update-databases");
    assert_eq!(json["failures"][0]["exit_code"], 1603);
    assert!(s.path().join("again.html").exists());
}

#[test]
fn report_refuses_without_a_run_and_needs_an_output() {
    let s = Scratch::new();
    let o = s.run(&["report", "--state", "empty.db", "--format", "json"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("there is no state store at sqlite:empty.db: the file does not exist"),
        "{}",
        stderr(&o)
    );
    drop(sfbpatch_store::open(&s.path().join("empty.db").display().to_string()).unwrap());
    let o = s.run(&["report", "--state", "empty.db", "--format", "json"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("there is no run"), "{}", stderr(&o));

    let o = s.run(&["report", "--state", "empty.db"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("--html"), "{}", stderr(&o));

    let o = s.run(&["report", "--state", "empty.db", "--format", "yaml"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
}

#[test]
fn report_on_a_run_that_does_not_exist_is_refused_and_writes_nothing() {
    let s = patched("", &["--only", "se1.dublin.demo.example"]);
    let o = s.run(&[
        "report", "--state", "state.db", "--run", "99", "--html", "out.html",
    ]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(!s.path().join("out.html").exists());

    // An explicit run; the plan covered one server, so one server and one pool.
    let o = s.run(&[
        "report", "--state", "state.db", "--run", "1", "--format", "json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let json: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["servers"].as_array().unwrap().len(), 1);
    assert_eq!(json["pools"].as_array().unwrap().len(), 1);
    assert_eq!(json["pools"][0]["fqdn"], "se1.dublin.demo.example");

    // A folder that does not exist is bad input.
    let o = s.run(&[
        "report",
        "--state",
        "state.db",
        "--html",
        "no/such/dir/out.html",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
}

pub(crate) fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// A lab of the demo topology with a long install and a failed database update, patched with
/// a canary wave that waits for approval: `apply` stops after the canary, `approve`, `resume`
/// does the rest (and fails one server).
fn patched_with_approval() -> Scratch {
    let s = Scratch::new();
    s.write("faults.toml", &format!("{LONG_INSTALL}{FAILED_UPDATE}"));
    let o = s.run(&[
        "lab",
        "init",
        "lab",
        "--topology",
        "demo-topology.xml",
        "--faults",
        "faults.toml",
    ]);
    assert_eq!(code(&o), 0, "lab init: {}", stderr(&o));
    let o = s.run(&[
        "apply",
        "demo-topology.xml",
        "--package",
        "demo-package.toml",
        "--lab",
        "lab",
        "--state",
        "state.db",
        "--yes",
        "--max-parallel",
        "2",
        "--max-failures",
        "1",
        "--waves",
        "1",
        "--pause-after-canary",
    ]);
    assert_eq!(code(&o), 4, "apply stops after the canary: {}", stderr(&o));
    let o = s.run(&["approve", "1", "--state", "state.db"]);
    assert_eq!(code(&o), 0, "approve: {}", stderr(&o));
    let o = s.run(&["resume", "--state", "state.db"]);
    assert_eq!(
        code(&o),
        1,
        "resume ends with a failed server: {}",
        stderr(&o)
    );
    s
}

/// Runs headless Chromium with `args` on `page` (a fresh profile each time, nothing from the
/// network), within 120 seconds; returns its stderr.
fn run_chromium(browser: &Path, args: &[String], page: &Path) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "chromium: {status}\n{err}");
    err
}

/// The width and height of a PNG file (IHDR, big-endian, right after the signature and the
/// chunk header), after checking it is one and that something was drawn.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG file");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    (width, height)
}

/// The pages of a PDF: its `/Type /Page` objects (not `/Pages`, the page tree's nodes).
fn pdf_pages(pdf: &[u8]) -> usize {
    let mut pages = 0;
    let mut rest = pdf;
    while let Some(i) = rest.windows(5).position(|w| w == b"/Type") {
        rest = &rest[i + 5..];
        let name = rest.trim_ascii_start();
        if let Some(after) = name.strip_prefix(b"/Page")
            && !after.first().is_some_and(|c| c.is_ascii_alphanumeric())
        {
            pages += 1;
        }
    }
    pages
}

#[test]
fn pdf_pages_counts_pages_not_page_trees() {
    let pdf = b"1 0 obj << /Type /Pages /Kids [2 0 R 3 0 R] >> 2 0 obj <</Type/Page>> \
                3 0 obj << /Type  /Page /Parent 1 0 R >> 4 0 obj << /Type /PageLabel >>";
    assert_eq!(pdf_pages(pdf), 2);
}

/// Renders the report of a run with a canary wave approved and a failure in headless Chromium:
/// a screenshot at a desktop width and one at a phone's (the timeline keeps every step's
/// number: it scrolls rather than shrinks), and the printed page, on Letter (Chromium's
/// default) and on A4, in at most 6 pages: the audit trail is an appendix that prints only
/// when opened. Keeps the screenshots, the page and the PDFs in the target folder for people
/// to look at.
#[test]
#[ignore = "needs Chromium: scripts/test installs it and runs this"]
fn report_renders_in_headless_chromium() {
    let Some(browser) = sfbpatch_testkit::need(
        chromium(),
        "chromium is not installed (scripts/chromium.sh, run by scripts/test, installs it)",
    ) else {
        return;
    };
    let s = patched_with_approval();
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target folder")
        .to_path_buf();
    let page = target.join("report-screenshot.html");
    let shot = target.join("report-screenshot.png");
    let narrow = target.join("report-screenshot-narrow.png");
    let letter = target.join("report-screenshot.pdf");
    let a4_page = target.join("report-screenshot-a4.html");
    let a4 = target.join("report-screenshot-a4.pdf");
    for f in [&shot, &narrow, &letter, &a4] {
        let _ = std::fs::remove_file(f);
    }
    let o = s.run(&[
        "report",
        "--state",
        "state.db",
        "--html",
        page.to_str().expect("UTF-8 path"),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let html = std::fs::read_to_string(&page).expect("the page");
    assert!(html.contains("canary wave approved by "), "the approval");
    assert!(html.contains("<details class=\"appendix\" id=\"audit\">"));
    assert!(html.contains("Exit code 1603 (ERROR_INSTALL_FAILURE)"));

    let err = run_chromium(
        &browser,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1400,1000".to_string(),
        ],
        &page,
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}\n{err}", shot.display()));
    assert_eq!(png_size(&png), (1400, 1000));
    // A blank page compresses to a few kilobytes; the report's text, tables and timeline don't.
    assert!(png.len() > 50_000, "{} bytes: nothing drawn?", png.len());

    let err = run_chromium(
        &browser,
        &[
            format!("--screenshot={}", narrow.display()),
            "--window-size=420,900".to_string(),
        ],
        &page,
    );
    let png = std::fs::read(&narrow).unwrap_or_else(|e| panic!("{}: {e}\n{err}", narrow.display()));
    assert_eq!(png_size(&png), (420, 900));
    assert!(png.len() > 20_000, "{} bytes: nothing drawn?", png.len());

    // Printed: on Letter, Chromium's default paper, and on A4.
    std::fs::write(
        &a4_page,
        html.replacen("</style>", "@page { size: A4; }\n</style>", 1),
    )
    .expect("the A4 page");
    for (source, pdf) in [(&page, &letter), (&a4_page, &a4)] {
        let err = run_chromium(
            &browser,
            &[format!("--print-to-pdf={}", pdf.display())],
            source,
        );
        let bytes = std::fs::read(pdf).unwrap_or_else(|e| panic!("{}: {e}\n{err}", pdf.display()));
        assert!(bytes.starts_with(b"%PDF-"), "a PDF file");
        let pages = pdf_pages(&bytes);
        eprintln!("{}: {pages} page(s)", pdf.display());
        assert!(
            (1..=6).contains(&pages),
            "{}: {pages} pages for a demo-sized run",
            pdf.display()
        );
    }
    eprintln!(
        "screenshots of the report: {} and {}",
        shot.display(),
        narrow.display()
    );
}
