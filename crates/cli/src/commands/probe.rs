//! `sfbpatch probe`: the pre-flight of every planned machine, read without changing anything.

use serde::Serialize;
use sfbpatch_engine::MachineFacts;

use crate::cli::{DataFormat, ProbeArgs};
use crate::commands::apply::{open_target, plan_at, verdict};
use crate::exit::{CmdResult, Exit};
use crate::{input, output};

/// One machine's answer, as `--format json` prints it.
#[derive(Debug, Serialize)]
struct Row {
    fqdn: String,
    pool: String,
    kind: &'static str,
    /// What the machine runs; absent when it could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    facts: Option<MachineFacts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    product_line: Option<&'static str>,
    /// What a run would do there, or why the machine could not be read.
    verdict: String,
    /// False when the machine could not be read.
    read: bool,
}

#[derive(Debug, Serialize)]
struct Document {
    schema_version: u32,
    package_build: String,
    machines: Vec<Row>,
}

pub fn run(args: ProbeArgs) -> CmdResult {
    let (text, deployment) = input::topology(&args.topology)?;
    let package = input::package(&args.package)?;
    let plan = plan_at(&deployment, package, &args.only, &args.planning, &args.at)?;
    let (opened, _) = open_target(
        &args.at,
        &args.topology,
        &text,
        &plan,
        &args.state.state,
        false,
    )?;
    let target = opened.target();
    let rows: Vec<Row> = plan
        .servers
        .iter()
        .map(|server| {
            let (facts, verdict, read) = match target.preflight(server) {
                Ok(f) => {
                    let v = verdict(&f, plan.package.version);
                    (Some(f), v, true)
                }
                Err(e) => (None, format!("cannot tell: {e}"), false),
            };
            Row {
                fqdn: server.fqdn.to_string(),
                pool: server.pool.to_string(),
                kind: server.kind.as_str(),
                product_line: facts.as_ref().and_then(MachineFacts::product_line),
                facts,
                verdict,
                read,
            }
        })
        .collect();
    let unread = rows.iter().filter(|r| !r.read).count();
    match args.format {
        DataFormat::Json => output::json(&Document {
            schema_version: 1,
            package_build: plan.package.version.to_string(),
            machines: rows,
        })?,
        DataFormat::Text => output::data(&render(&rows, &plan.package))?,
    }
    if unread > 0 {
        output::note(&format!(
            "{unread} of {} machine(s) could not be read; nothing was changed",
            plan.servers.len()
        ));
        return Ok(Exit::RunFailed);
    }
    output::note(&format!(
        "read {} machine(s); nothing was changed",
        plan.servers.len()
    ));
    Ok(Exit::Success)
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn render(rows: &[Row], package: &sfbpatch_plan::Package) -> String {
    use std::fmt::Write as _;
    let mut s = format!("Package: {} {}\n", package.name, package.version);
    for r in rows {
        let _ = writeln!(s, "\n{} ({}, pool {})", r.fqdn, r.kind, r.pool);
        if let Some(f) = &r.facts {
            let build = match (f.build, r.product_line) {
                (Some(b), Some(line)) => format!("{b} ({line})"),
                (Some(b), None) => b.to_string(),
                (None, _) => "none (no Skype for Business components)".to_string(),
            };
            let _ = writeln!(s, "  build:            {build}");
            let _ = writeln!(
                s,
                "  services:         {} present, {} running{}",
                f.services.len(),
                f.services_running,
                if f.services.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", f.services.join(", "))
                }
            );
            let _ = writeln!(s, "  IIS (W3SVC):      {}", yes_no(f.w3svc));
            let _ = writeln!(s, "  Management Shell: {}", yes_no(f.management_shell));
            let _ = writeln!(s, "  SQL Server:       {}", yes_no(f.sql_server));
            let _ = writeln!(s, "  restart pending:  {}", yes_no(f.reboot_pending));
        }
        let _ = writeln!(s, "  => {}", r.verdict);
    }
    s
}
