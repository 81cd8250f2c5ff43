//! `sfbpatch report`: a run's report as one self-contained HTML file, as JSON
//! (`docs/schema/report.schema.json`), or as a short text summary.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::anyhow;
use sfbpatch_engine::Store;
use sfbpatch_report::Report;

use crate::cli::{DataFormat, ReportArgs};
use crate::exit::{CmdResult, Exit, Failure};
use crate::output;

use super::apply::open_existing_store;
use super::status::effective_state;

pub fn run(args: ReportArgs) -> CmdResult {
    let store = open_existing_store(&args.state.state)?;
    let report = report(store.as_ref(), args.run)?;
    if let Some(path) = &args.html {
        write_file(path, &sfbpatch_report::render_html(&report))?;
        output::note(&format!(
            "wrote the report of run {} to {}",
            report.run.id,
            path.display()
        ));
    }
    match args.format {
        Some(DataFormat::Json) => output::json(&report)?,
        Some(DataFormat::Text) => output::data(&render_text(&report))?,
        None => {}
    }
    Ok(Exit::Success)
}

/// The report of run `id`, or of the newest run.
fn report(store: &dyn Store, id: Option<i64>) -> Result<Report, Failure> {
    let mut run = match id {
        Some(id) => store.run(id)?,
        None => store
            .latest_run()?
            .ok_or_else(|| Failure::refused(anyhow!("there is no run in {}", store.location())))?,
    };
    let journal = store.journal(run.id)?;
    let audit = store.audit(run.id)?;
    // A run recorded as running whose process is gone was interrupted.
    run.state = effective_state(&run, store)?;
    sfbpatch_report::build(&run, &journal, &audit)
        .map_err(|e| Failure::internal(anyhow!("{e} [{}]", e.code())))
}

/// Writes through a temporary file beside `path`, so that a reader never sees half a report.
fn write_file(path: &Path, text: &str) -> Result<(), Failure> {
    let cannot =
        |e: std::io::Error| Failure::bad_input(anyhow!("cannot write {}: {e}", path.display()));
    let name = path.file_name().ok_or_else(|| {
        Failure::bad_input(anyhow!("--html {} is not a file name", path.display()))
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, text).map_err(cannot)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        cannot(e)
    })
}

fn minutes(seconds: f64) -> String {
    output::minutes(output::millis(seconds))
}

/// An RFC 3339 instant of the report in this computer's time zone, with its UTC offset
/// (`2026-12-04 22:03:15 +01:00`).
fn local(instant: &str) -> String {
    match instant.parse::<jiff::Timestamp>() {
        Ok(t) => t
            .to_zoned_datetime(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S %:z")
            .to_string(),
        Err(_) => instant.to_string(),
    }
}

fn render_text(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "run {} {}: {} server(s), makespan {}",
        r.run.id,
        r.run.state.as_str(),
        r.servers.len(),
        minutes(r.run.makespan_seconds)
    );
    match (&r.run.started_at, &r.run.ended_at) {
        (Some(start), Some(end)) => {
            let _ = writeln!(s, "started {}, ended {}", local(start), local(end));
        }
        (Some(start), None) => {
            let _ = writeln!(s, "started {}", local(start));
        }
        _ => {
            let _ = writeln!(s, "times in lab time: offsets from the run's start");
        }
    }
    let w = crate::output::name_column(r.servers.iter().map(|s| s.fqdn.as_str()));
    for server in &r.servers {
        let outage = server
            .outage_seconds
            .map(|o| format!("outage {}", minutes(o)))
            .unwrap_or_else(|| "no outage".to_string());
        let _ = writeln!(
            s,
            "  {:<w$} {:<10} {outage}",
            crate::output::printable(&server.fqdn),
            server.state.as_str()
        );
    }
    let _ = writeln!(s, "pools");
    let w = crate::output::name_column(r.pools.iter().map(|p| p.fqdn.as_str()));
    for pool in &r.pools {
        let impact = if pool.resiliency_seconds > 0.0 {
            format!(
                "users in resiliency mode {}",
                minutes(pool.resiliency_seconds)
            )
        } else {
            "no resiliency mode".to_string()
        };
        let _ = writeln!(
            s,
            "  {:<w$} back end unavailable {}, {impact}",
            crate::output::printable(&pool.fqdn),
            minutes(pool.unavailable_seconds)
        );
    }
    for f in &r.failures {
        let _ = writeln!(
            s,
            "{} {}: {}",
            f.server,
            f.state.as_str(),
            f.reason.as_deref().unwrap_or("no reason recorded")
        );
        if let Some(e) = &f.hint.exit_code {
            let _ = writeln!(
                s,
                "  exit code {} ({}): {}; {}",
                e.code, e.name, e.meaning, e.action
            );
        }
        if let Some(logs) = &f.hint.logs {
            let _ = writeln!(s, "  installer logs: {logs}");
        }
        let _ = writeln!(s, "  retry: {}", f.hint.retry);
    }
    s
}
