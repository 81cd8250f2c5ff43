//! `sfbpatch status` and `sfbpatch unlock`.

use std::borrow::Cow;
use std::fmt::Write as _;

use anyhow::anyhow;
use serde::Serialize;
use sfbpatch_engine::{RunRecord, RunState, ServerStatus, Store, fold};

use crate::cli::{DataFormat, StatusArgs, UnlockArgs};
use crate::exit::{CmdResult, Exit, Failure};
use crate::output::{self, duration_secs, expiry, printable};

use super::apply::{SystemClock, confirm, open_existing_store};
use sfbpatch_engine::Clock;

/// The stable JSON contract of `status` (`docs/schema/status.schema.json`).
#[derive(Debug, Serialize)]
pub struct StatusJson {
    pub schema_version: u32,
    pub run: RunJson,
    pub servers: Vec<ServerJson>,
    /// Each pool of the run, in plan order: its Front End servers and its back-end machines.
    pub pools: Vec<PoolJson>,
    /// Every database of the deployment as the run-level `Test-CsDatabase` after the last server
    /// read it (installed and expected version); absent until that check ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub databases: Option<Vec<sfbpatch_engine::DatabaseState>>,
}

#[derive(Debug, Serialize)]
pub struct RunJson {
    pub id: i64,
    pub state: &'static str,
}

#[derive(Debug, Serialize)]
pub struct ServerJson {
    pub fqdn: String,
    pub pool: String,
    /// `standard-edition`, `front-end`, `back-end` or `store`.
    pub kind: &'static str,
    pub state: &'static str,
    pub reason: Option<String>,
    pub outage_seconds: Option<f64>,
    /// Target-clock seconds when the outage window opened and closed.
    pub outage_started_at: Option<f64>,
    pub outage_ended_at: Option<f64>,
    /// What the pre-flight probe found, once it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preflight: Option<sfbpatch_engine::MachineFacts>,
    /// The end of the last step's output (or the recovery's).
    pub last_output: Option<String>,
    pub steps: Vec<StepJson>,
}

#[derive(Debug, Serialize)]
pub struct PoolJson {
    pub fqdn: String,
    /// Its Front End servers in the run, and how many ended patched.
    pub front_ends: usize,
    pub front_ends_patched: usize,
    /// Its other machines in the run (back end, store, Standard Edition server), and how many
    /// ended succeeded.
    pub machines: usize,
    pub machines_succeeded: usize,
    /// The longest outage window among those machines (the back end's database update, a
    /// Standard Edition server's window), seconds.
    pub longest_outage_seconds: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct StepJson {
    pub id: &'static str,
    pub state: &'static str,
    pub attempts: u32,
    /// Why the step is not applicable, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Target-clock seconds when the first attempt started and the last one ended.
    pub started_at: Option<f64>,
    pub ended_at: Option<f64>,
}

/// A run recorded as running whose leases are gone, expired, or held by a process of this host
/// that no longer exists, was interrupted.
pub fn effective_state(run: &RunRecord, store: &dyn Store) -> Result<RunState, Failure> {
    if run.state != RunState::Running {
        return Ok(run.state);
    }
    let leases = store.leases()?;
    // Expiry is judged on the clock leases are written on (the store's, when it has one).
    let now = store.clock_ms()?.unwrap_or_else(|| SystemClock.now());
    let alive = leases.iter().any(|l| {
        l.run == run.id
            && l.expires_at > now
            && !crate::commands::apply::held_by_a_dead_local_controller(l)
    });
    Ok(if alive {
        RunState::Running
    } else {
        RunState::Interrupted
    })
}

pub use sfbpatch_lab::process_alive;

pub fn run(args: StatusArgs) -> CmdResult {
    let store = open_existing_store(&args.state.state)?;
    let run = match args.run {
        Some(id) => store.run(id)?,
        None => store
            .latest_run()?
            .ok_or_else(|| Failure::refused(anyhow!("there is no run in {}", store.location())))?,
    };
    let journal = store.journal(run.id)?;
    let servers = fold(&run.spec.plan.servers, &journal);
    let state = effective_state(&run, &*store)?;
    let now = journal.last().map_or(run.created_at, |e| e.at);
    let json = StatusJson {
        schema_version: 1,
        run: RunJson {
            id: run.id,
            state: state.as_str(),
        },
        pools: pools_json(&servers, now),
        servers: servers.iter().map(|s| server_json(s, now)).collect(),
        databases: journal.iter().rev().find_map(|e| match &e.record {
            sfbpatch_engine::Record::DatabasesChecked { databases } => Some(databases.clone()),
            _ => None,
        }),
    };
    match args.format {
        DataFormat::Json => output::json(&json)?,
        DataFormat::Text => {
            let mut text = render_text(&json, store.as_ref());
            text.push_str(&leases_text(run.id, &*store)?);
            output::data(&text)?
        }
    }
    Ok(Exit::Success)
}

/// The run's leases, for people: each pool's holder (the operator, else the user id), its
/// controller and process, and when the lease lapses as local time with the seconds left.
fn leases_text(run: sfbpatch_engine::RunId, store: &dyn Store) -> Result<String, Failure> {
    let leases: Vec<sfbpatch_engine::Lease> = store
        .leases()?
        .into_iter()
        .filter(|l| l.run == run)
        .collect();
    if leases.is_empty() {
        return Ok(String::new());
    }
    let now = store.clock_ms()?.unwrap_or_else(|| SystemClock.now());
    let mut s = String::from("\nleases\n");
    let w = output::name_column(leases.iter().map(|l| l.pool.as_str()));
    for l in &leases {
        let gone = if crate::commands::apply::held_by_a_dead_local_controller(l) {
            ", gone"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "  {:<w$} held by {} (controller {}, pid {}{gone}) until {}",
            printable(&l.pool),
            holder(&l.holder),
            printable(&l.host),
            l.pid,
            expiry(l.expires_at, now)
        );
    }
    Ok(s)
}

/// A lease holder as recorded, or what is known of it: a controller without `USER` recorded
/// its user id.
fn holder(recorded: &str) -> Cow<'_, str> {
    if recorded.trim().is_empty() {
        Cow::Borrowed("an unnamed operator")
    } else {
        printable(recorded)
    }
}

fn pools_json(servers: &[ServerStatus], now: u64) -> Vec<PoolJson> {
    let mut pools: Vec<PoolJson> = Vec::new();
    for s in servers {
        let i = match pools
            .iter()
            .position(|p| p.fqdn.eq_ignore_ascii_case(&s.pool))
        {
            Some(i) => i,
            None => {
                pools.push(PoolJson {
                    fqdn: s.pool.clone(),
                    front_ends: 0,
                    front_ends_patched: 0,
                    machines: 0,
                    machines_succeeded: 0,
                    longest_outage_seconds: None,
                });
                pools.len() - 1
            }
        };
        let p = &mut pools[i];
        let succeeded = s.state == sfbpatch_engine::ServerState::Succeeded;
        if s.kind == sfbpatch_plan::ServerKind::FrontEnd {
            p.front_ends += 1;
            p.front_ends_patched += usize::from(succeeded);
        } else {
            p.machines += 1;
            p.machines_succeeded += usize::from(succeeded);
            if let Some(o) = s.outage_ms(now).map(secs) {
                p.longest_outage_seconds = Some(p.longest_outage_seconds.map_or(o, |l| l.max(o)));
            }
        }
    }
    pools
}

use crate::output::secs;

fn server_json(s: &ServerStatus, now: u64) -> ServerJson {
    ServerJson {
        fqdn: s.fqdn.clone(),
        pool: s.pool.clone(),
        kind: s.kind.as_str(),
        state: s.state.as_str(),
        reason: s.reason.clone(),
        outage_seconds: s.outage_ms(now).map(secs),
        outage_started_at: s.outage_started_at.map(secs),
        outage_ended_at: s.outage_ended_at.map(secs),
        preflight: s.preflight.clone(),
        last_output: s.last_output.clone(),
        steps: s
            .steps
            .iter()
            .map(|st| StepJson {
                id: st.id.as_str(),
                state: st.state.as_str(),
                attempts: st.attempts,
                reason: st.reason.clone(),
                started_at: st.started_at.map(secs),
                ended_at: st.ended_at.map(secs),
            })
            .collect(),
    }
}

fn render_text(json: &StatusJson, store: &dyn Store) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "run {} {} ({})",
        json.run.id,
        json.run.state,
        printable(&store.location())
    );
    let w = output::name_column(json.servers.iter().map(|s| s.fqdn.as_str()));
    for server in &json.servers {
        let not_applicable = server
            .steps
            .iter()
            .filter(|st| st.state == "not-applicable")
            .count();
        let current = server
            .steps
            .iter()
            .find(|st| st.state != "succeeded" && st.state != "not-applicable")
            .map(|st| format!("at {} ({})", st.id, st.state))
            .unwrap_or_else(|| match not_applicable {
                0 => "all steps done".into(),
                n => format!("all steps done ({n} not applicable)"),
            });
        let _ = writeln!(
            s,
            "  {:<w$} {:<10} {}{}{}",
            printable(&server.fqdn),
            server.state,
            current,
            server
                .outage_seconds
                .map(|o| format!(", outage {}", duration_secs(o)))
                .unwrap_or_default(),
            server
                .reason
                .as_ref()
                .map(|r| format!("\n      reason: {}", printable(r)))
                .unwrap_or_default()
        );
    }
    s.push_str("\npools\n");
    let w = output::name_column(json.pools.iter().map(|p| p.fqdn.as_str()));
    for p in &json.pools {
        let front_ends = if p.front_ends == 0 {
            String::new()
        } else {
            format!(
                "Front End servers {}/{} patched; ",
                p.front_ends_patched, p.front_ends
            )
        };
        let _ = writeln!(
            s,
            "  {:<w$} {front_ends}{} {}/{} done{}",
            printable(&p.fqdn),
            if p.front_ends == 0 {
                "server"
            } else {
                "back end"
            },
            p.machines_succeeded,
            p.machines,
            p.longest_outage_seconds
                .map(|o| format!(", longest outage {}", duration_secs(o)))
                .unwrap_or_default()
        );
    }
    if json.run.state == "interrupted" {
        s.push_str("\nThe run was interrupted; `sfbpatch resume` continues it.\n");
    }
    s
}

pub fn unlock(args: UnlockArgs) -> CmdResult {
    let mut store = open_existing_store(&args.state.state)?;
    let pool = args.pool.to_ascii_lowercase();
    let Some(lease) = store.leases()?.into_iter().find(|l| l.pool == pool) else {
        output::note(&format!(
            "pool {} holds no lease; nothing to do",
            printable(&args.pool)
        ));
        return Ok(Exit::Success);
    };
    let now = store.clock_ms()?.unwrap_or_else(|| SystemClock.now());
    let held = format!(
        "run {} ({} on {}, pid {}) on pool {}, until {}",
        lease.run,
        holder(&lease.holder),
        printable(&lease.host),
        lease.pid,
        printable(&args.pool),
        expiry(lease.expires_at, now)
    );
    if !args.yes {
        confirm(&format!(
            "Break the lease of {held}? Only do this when that run is not running."
        ))?;
    }
    store.break_lease(&pool)?;
    output::note(&format!("broke the lease of {held}"));
    Ok(Exit::Success)
}

pub fn approve(args: crate::cli::ApproveArgs) -> CmdResult {
    let mut store = open_existing_store(&args.state.state)?;
    let at = store
        .journal(args.run)?
        .last()
        .map_or(store.run(args.run)?.created_at, |e| e.at);
    sfbpatch_engine::Engine::approve(
        &mut *store,
        args.run,
        &crate::commands::apply::operator_name(),
        at,
    )?;
    output::note(&format!(
        "approved the canary wave of run {}; `sfbpatch resume --state {}` starts the rest",
        args.run, args.state.state
    ));
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::process_alive;

    #[test]
    fn a_running_process_is_alive_and_an_ended_one_is_not() {
        assert!(process_alive(std::process::id()));
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .arg("--list")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_alive(pid), "process {pid} ended");
    }
}
