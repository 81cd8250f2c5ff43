//! A run at scale: a generated deployment of 11,000 servers (the fewest generated pools with at
//! least that many, Front End pools included) applied in the lab at `--speed 0` with the SQLite
//! state store (WAL; `synchronous = NORMAL`, as a lab run asks, `Target::durability`), then its
//! report. Prints the run's wall time, peak memory and bytes written, the state store's size per step (the file with
//! its write-ahead log after a checkpoint, over the plan's steps) and the journal's, the HTML
//! report's size and build time, and how long headless Chromium takes to render it (skipped,
//! with a message, when Chromium is not installed: `bash scripts/chromium.sh`).
//!
//! `cargo bench -p sfbpatch --bench scale [-- SERVERS]` (default 11000; fewer for quick runs).
//! `SFBPATCH_SCALE_HTML=FILE` keeps a copy of the report. The figures depend on the disk: run it
//! with `TMPDIR` on the disk the state store will use.
//! The lab gives each server its own folders (its disks); on ext4, a run started within five
//! minutes of an earlier one's end pays for the thousands of folders that one's clean-up
//! deleted (the inode allocator skips recently deleted inodes, `recently_deleted` in a
//! profile): let the disk rest between runs.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sfbpatch_engine::{Record, RunPolicy, RunState, Store};
use sfbpatch_lab::LabOptions;

fn main() {
    let servers: Option<usize> = std::env::args().skip(1).find_map(|a| a.parse().ok());
    let dir = tempfile::tempdir().unwrap();
    let package = support::package(dir.path());
    let t = Instant::now();
    let (topology, deployment, plan) = support::fleet(servers.unwrap_or(11_000), 42, &package);
    let n = plan.servers.len();
    let steps: usize = plan.servers.iter().map(|s| s.steps.len()).sum();
    println!(
        "scale: {n} servers, {steps} planned steps; generated and planned in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let lab_dir = dir.path().join("lab");
    let t = Instant::now();
    let lab = sfbpatch_lab::init(&lab_dir, &deployment, &LabOptions::default()).unwrap();
    println!("scale: lab init {:.2} s", t.elapsed().as_secs_f64());
    drop(deployment);

    let state = dir.path().join("state.db");
    let mut store = sfbpatch_store::SqliteStore::open(&state).unwrap();
    support::settle_disk();
    let before = support::written();
    let (outcome, run_time) = support::apply_on_lab(
        &mut store,
        &lab,
        &lab_dir,
        topology,
        plan,
        RunPolicy::default(),
    );
    assert_eq!(outcome.state, RunState::Succeeded);
    let after = support::written();
    println!(
        "scale: apply {:.2} s ({:.0} us per step); peak RSS {:.0} MB; written {:.0} MB \
         ({:.0} MB to the device)",
        run_time.as_secs_f64(),
        run_time.as_secs_f64() * 1e6 / steps as f64,
        support::peak_rss_mb(),
        (after.0 - before.0) as f64 / 1e6,
        (after.1 - before.1) as f64 / 1e6,
    );

    let run = store.latest_run().unwrap().unwrap();
    let journal = store.journal(run.id).unwrap();
    let audit = store.audit(run.id).unwrap();
    let journal_bytes: usize = journal
        .iter()
        .map(|e| serde_json::to_string(&e.record).unwrap().len())
        .sum();
    let results = journal
        .iter()
        .filter(|e| matches!(e.record, Record::StepResult { .. }))
        .count();
    // Closing the last connection checkpoints the write-ahead log into the file.
    drop(store);
    let store_bytes = file_len(&state) + file_len(&with_suffix(&state, "-wal"));
    println!(
        "scale: state store {:.1} MB, {:.0} bytes per step ({} journal records, {} step results); \
         journal records {:.0} bytes per step",
        store_bytes as f64 / 1e6,
        store_bytes as f64 / steps as f64,
        journal.len(),
        results,
        journal_bytes as f64 / steps as f64,
    );

    let t = Instant::now();
    let report = sfbpatch_report::build(&run, &journal, &audit).unwrap();
    let html = sfbpatch_report::render_html(&report);
    let built = t.elapsed();
    drop((journal, audit, report));
    let page = dir.path().join("report.html");
    std::fs::write(&page, &html).unwrap();
    // To look at the page afterwards: SFBPATCH_SCALE_HTML=FILE keeps a copy.
    if let Some(keep) = std::env::var_os("SFBPATCH_SCALE_HTML") {
        std::fs::write(&keep, &html).unwrap();
    }
    println!(
        "scale: HTML report {:.1} MB, built in {:.2} s; peak RSS {:.0} MB",
        html.len() as f64 / 1e6,
        built.as_secs_f64(),
        support::peak_rss_mb()
    );
    drop(html);

    support::settle_disk();
    match chromium() {
        None => println!(
            "scale: Chromium is not installed (bash scripts/chromium.sh): render time not measured"
        ),
        Some(browser) => match render(&browser, &page, dir.path()) {
            Ok(took) => println!(
                "scale: headless Chromium rendered the report in {:.2} s",
                took.as_secs_f64()
            ),
            Err(e) => println!("scale: headless Chromium did not render the report: {e}"),
        },
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// Headless Chromium loads `page`, lays it out and paints a screenshot: the time it took, or
/// why it failed (it is given 120 seconds).
fn render(browser: &Path, page: &Path, scratch: &Path) -> Result<Duration, String> {
    let profile = scratch.join("chromium-profile");
    let shot = scratch.join("report.png");
    let t = Instant::now();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", browser.display()))?;
    let deadline = t + Duration::from_secs(120);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() && shot.is_file() => return Ok(t.elapsed()),
            Ok(Some(status)) => return Err(format!("{} exited with {status}", browser.display())),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("still rendering after 120 s".into());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
}
