//! What the dashboard shows of a run, computed from the store: the report model
//! ([`sfbpatch_report::build`]) plus what only a live run has (each server's current step and
//! progress, the maintenance window and what remains of it, a canary wave awaiting approval, a
//! stop asked). Its JSON form is `docs/schema/serve-run.schema.json`; the run list's is
//! `docs/schema/serve-runs.schema.json`.

use std::collections::HashSet;

use serde::Serialize;
use sfbpatch_engine::{JournalEntry, Millis, RunRecord, RunState, StepState, Store, StoreError};
use sfbpatch_report::Report;

/// The version of both JSON contracts.
pub const SCHEMA_VERSION: u32 = 1;

/// The state of a run as a reader judges it: the recorded state, or `interrupted` for a run
/// recorded as running whose controller is gone (the binary decides; it knows processes and
/// hosts).
pub type StateOf = dyn Fn(&RunRecord, &dyn Store) -> Result<RunState, StoreError> + Send + Sync;

#[derive(Debug, Clone, Serialize)]
pub struct RunList {
    pub schema_version: u32,
    /// Newest first.
    pub runs: Vec<RunItem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunItem {
    pub id: i64,
    pub state: RunState,
    pub package: String,
    pub package_version: String,
    pub operator: String,
    pub servers: usize,
}

/// One run, live.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    pub schema_version: u32,
    /// The sequence number of the last journal record read: a snapshot with a higher one is
    /// newer.
    pub seq: i64,
    pub run: RunHead,
    pub servers: Vec<ServerView>,
    pub pools: Vec<PoolView>,
    pub failures: Vec<FailureView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunHead {
    pub id: i64,
    pub state: RunState,
    pub package: String,
    pub package_version: String,
    pub operator: String,
    /// `wall` (over SSH) or `lab` (the lab's virtual clock).
    pub clock: sfbpatch_report::ClockKind,
    /// Target-clock seconds from the run's creation to its last journal record: "now" for every
    /// other time of the view.
    pub elapsed_seconds: f64,
    /// The 30-minute line.
    pub resiliency_after_seconds: f64,
    /// The canary wave is done and waits for approval.
    pub awaiting_approval: bool,
    /// Approvals given, with who gave them.
    pub approvals: Vec<sfbpatch_report::Approval>,
    /// The maintenance window in force or next, if the run has any.
    pub window: Option<WindowView>,
    /// A stop asked from outside the controller, with who asked.
    pub stop_requested_by: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowView {
    /// The daily window the windows were placed from, as given (`22:00-05:00 Europe/Berlin`).
    pub spec: Option<String>,
    /// Seconds from the run's creation.
    pub opens_at_seconds: f64,
    pub closes_at_seconds: f64,
    /// Whether it is open at the last journal record, and how much of it remains then.
    pub open: bool,
    pub remaining_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerView {
    pub fqdn: String,
    pub pool: String,
    /// The topology's site of its pool.
    pub site: String,
    pub role: sfbpatch_plan::ServerKind,
    pub state: sfbpatch_engine::ServerState,
    /// The first step not yet done (running, failed, pending), while the server has one.
    pub current_step: Option<sfbpatch_plan::StepId>,
    pub current_step_state: Option<StepState>,
    /// Steps done (succeeded or not applicable) of all its steps.
    pub steps_done: usize,
    pub steps_total: usize,
    /// The outage window so far (or in all, once closed).
    pub outage_seconds: Option<f64>,
    pub outage_open: bool,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PoolView {
    pub fqdn: String,
    pub backend: String,
    /// The back end unavailable now.
    pub backend_unavailable: bool,
    pub unavailable_seconds: f64,
    /// Time the pool's users spent in resiliency mode, and whether they are in it now.
    pub resiliency_seconds: f64,
    pub in_resiliency: bool,
    /// The pool's Front End servers in the run, those in service now (not inside their outage
    /// window) and those patched.
    pub front_ends: usize,
    pub front_ends_in_service: usize,
    pub front_ends_patched: usize,
    /// The pool's Front End servers in the topology, in the run or not (0 for a Standard
    /// Edition server).
    pub front_ends_in_pool: usize,
    /// Pool quorum ([`sfbpatch_topology::quorum`]): how many Front End servers must be in
    /// service among the pool's first `quorum_among` (in the pool's order), and whether as many
    /// are now (a server not in the run counts as in service). `None` for a pool without Front
    /// End servers (a Standard Edition server).
    pub quorum_required: Option<usize>,
    pub quorum_among: Option<usize>,
    pub quorum_kept: Option<bool>,
}

/// A pool's quorum now: servers required, among how many of the first, and whether as many of
/// those are in service. `in_pool` is every Front End server of the pool in the pool's order;
/// `out` tells whether one is out of service now. `None` for a pool without Front End servers.
pub(crate) fn quorum_now(
    in_pool: &[String],
    out: impl Fn(&str) -> bool,
) -> Option<(usize, usize, bool)> {
    if in_pool.is_empty() {
        return None;
    }
    let (required, among) = sfbpatch_topology::quorum(in_pool.len());
    let in_service = in_pool.iter().take(among).filter(|fe| !out(fe)).count();
    Some((required, among, in_service >= required))
}

#[derive(Debug, Clone, Serialize)]
pub struct FailureView {
    pub server: String,
    pub state: sfbpatch_engine::ServerState,
    pub step: Option<sfbpatch_plan::StepId>,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    /// The end of the stopping step's output.
    pub output: Option<String>,
    /// How to patch this one server again once the cause is fixed.
    pub retry: String,
}

/// How much of a failure's output the view keeps: its end, where the error is.
const OUTPUT_EXCERPT: usize = 2000;

fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// The runs of the store, newest first, at most `limit`.
pub fn run_list(
    store: &dyn Store,
    state_of: &StateOf,
    limit: usize,
) -> Result<RunList, StoreError> {
    let mut runs = Vec::new();
    let Some(latest) = store.latest_run()? else {
        return Ok(RunList {
            schema_version: SCHEMA_VERSION,
            runs,
        });
    };
    let mut id = latest.id;
    while id > 0 && runs.len() < limit {
        match store.run(id) {
            Ok(run) => {
                let state = state_of(&run, store)?;
                runs.push(RunItem {
                    id: run.id,
                    state,
                    package: run.spec.plan.package.name.clone(),
                    package_version: run.spec.plan.package.version.to_string(),
                    operator: run.spec.operator.clone(),
                    servers: run.spec.plan.servers.len(),
                });
            }
            // A run that never started is removed; its id stays unused.
            Err(StoreError::NoSuchRun(_)) => {}
            Err(e) => return Err(e),
        }
        id -= 1;
    }
    Ok(RunList {
        schema_version: SCHEMA_VERSION,
        runs,
    })
}

/// The view of `run` (its state as the reader judges it) from its whole journal.
pub fn run_view(
    run: &RunRecord,
    journal: &[JournalEntry],
    stop: Option<&sfbpatch_engine::StopRequest>,
) -> Result<RunView, sfbpatch_report::ReportError> {
    let report = sfbpatch_report::build(run, journal, &[])?;
    Ok(view_of(run, journal, &report, stop))
}

fn secs(ms: Millis) -> f64 {
    ms as f64 / 1000.0
}

fn view_of(
    run: &RunRecord,
    journal: &[JournalEntry],
    report: &Report,
    stop: Option<&sfbpatch_engine::StopRequest>,
) -> RunView {
    let now = journal.last().map_or(run.created_at, |e| e.at);
    let since = |at: Millis| secs(at.saturating_sub(run.created_at));
    let policy = &run.spec.policy;
    let window = policy
        .windows
        .iter()
        .find(|w| w.closes_at > now)
        .map(|w| WindowView {
            spec: policy.window_spec.clone(),
            opens_at_seconds: since(w.opens_at),
            closes_at_seconds: since(w.closes_at),
            open: w.opens_at <= now,
            remaining_seconds: secs(w.closes_at.saturating_sub(now.max(w.opens_at))),
        });
    let servers: Vec<ServerView> = report
        .servers
        .iter()
        .map(|s| {
            let current = if s.state == sfbpatch_engine::ServerState::Running
                || s.state == sfbpatch_engine::ServerState::Failed
            {
                s.steps.iter().find(|st| !st.state.is_settled())
            } else {
                None
            };
            ServerView {
                fqdn: s.fqdn.clone(),
                pool: s.pool.clone(),
                site: s.site.clone(),
                role: s.role,
                state: s.state,
                current_step: current.map(|st| st.id),
                current_step_state: current.map(|st| st.state),
                steps_done: s.steps.iter().filter(|st| st.state.is_settled()).count(),
                steps_total: s.steps.len(),
                outage_seconds: s.outage_seconds,
                outage_open: s.outage_start_seconds.is_some() && s.outage_end_seconds.is_none(),
                reason: s.reason.clone(),
            }
        })
        .collect();
    // The servers inside their outage window now, by lower-case FQDN.
    let out: HashSet<String> = servers
        .iter()
        .filter(|s| s.outage_open)
        .map(|s| s.fqdn.to_ascii_lowercase())
        .collect();
    let is_out = |fqdn: &str| out.contains(&fqdn.to_ascii_lowercase());
    let pools = report
        .pools
        .iter()
        .map(|p| {
            let out_of_service = p.front_ends.iter().filter(|fe| is_out(fe)).count();
            let quorum = quorum_now(&p.front_ends_in_pool, is_out);
            PoolView {
                fqdn: p.fqdn.clone(),
                backend: p.backend.clone(),
                backend_unavailable: p.unavailable.iter().any(|i| i.end_seconds.is_none()),
                unavailable_seconds: p.unavailable_seconds,
                resiliency_seconds: p.resiliency_seconds,
                in_resiliency: p.resiliency.iter().any(|i| i.end_seconds.is_none()),
                front_ends: p.front_ends.len(),
                front_ends_in_service: p.front_ends.len() - out_of_service,
                front_ends_patched: p.front_ends_patched,
                front_ends_in_pool: p.front_ends_in_pool.len(),
                quorum_required: quorum.map(|q| q.0),
                quorum_among: quorum.map(|q| q.1),
                quorum_kept: quorum.map(|q| q.2),
            }
        })
        .collect();
    let failures = report
        .failures
        .iter()
        .map(|f| FailureView {
            server: f.server.clone(),
            state: f.state,
            step: f.step,
            reason: f.reason.clone(),
            exit_code: f.exit_code,
            output: f.output.as_deref().map(|o| tail(o, OUTPUT_EXCERPT)),
            retry: f.hint.retry.clone(),
        })
        .collect();
    RunView {
        schema_version: SCHEMA_VERSION,
        seq: journal.last().map_or(0, |e| e.seq),
        run: RunHead {
            id: run.id,
            state: run.state,
            package: report.run.package.clone(),
            package_version: report.run.package_version.clone(),
            operator: report.run.operator.clone(),
            clock: report.run.clock,
            elapsed_seconds: since(now),
            resiliency_after_seconds: report.run.resiliency_after_seconds,
            awaiting_approval: run.state == RunState::AwaitingApproval,
            approvals: report.run.approvals.clone(),
            window,
            stop_requested_by: stop.map(|s| s.by.clone()),
        },
        servers,
        pools,
        failures,
    }
}

#[cfg(test)]
mod tests {
    use super::{quorum_now, tail};

    fn pool(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("fe{i}.example.com")).collect()
    }

    /// Out of service: the servers named, compared ignoring case.
    fn out<'a>(names: &'a [&'a str]) -> impl Fn(&str) -> bool + 'a {
        move |fqdn: &str| names.iter().any(|n| n.eq_ignore_ascii_case(fqdn))
    }

    #[test]
    fn quorum_counts_the_servers_in_service_among_the_pools_first() {
        // No Front End server: no quorum to keep.
        assert_eq!(quorum_now(&[], out(&[])), None);
        // One server: it must be in service.
        assert_eq!(quorum_now(&pool(1), out(&[])), Some((1, 1, true)));
        assert_eq!(
            quorum_now(&pool(1), out(&["FE1.example.com"])),
            Some((1, 1, false))
        );
        // Four servers: two of four.
        let four = pool(4);
        assert_eq!(
            quorum_now(&four, out(&["fe1.example.com", "fe2.example.com"])),
            Some((2, 4, true))
        );
        assert_eq!(
            quorum_now(
                &four,
                out(&["fe1.example.com", "fe2.example.com", "fe4.example.com"])
            ),
            Some((2, 4, false))
        );
        // Eight servers: four among the first seven, so which servers are out matters. The
        // first four out leave three of the first seven: lost. The last four out leave four of
        // the first seven (the eighth does not count): kept.
        let eight = pool(8);
        let first: Vec<&str> = eight[..4].iter().map(String::as_str).collect();
        let last: Vec<&str> = eight[4..].iter().map(String::as_str).collect();
        assert_eq!(quorum_now(&eight, out(&first)), Some((4, 7, false)));
        assert_eq!(quorum_now(&eight, out(&last)), Some((4, 7, true)));
        // Thirteen servers: seven among the first twelve.
        let thirteen = pool(13);
        let five: Vec<&str> = thirteen[..5].iter().map(String::as_str).collect();
        let six: Vec<&str> = thirteen[..6].iter().map(String::as_str).collect();
        assert_eq!(quorum_now(&thirteen, out(&five)), Some((7, 12, true)));
        assert_eq!(quorum_now(&thirteen, out(&six)), Some((7, 12, false)));
    }

    #[test]
    fn an_output_excerpt_keeps_the_end_on_a_character_boundary() {
        assert_eq!(tail("abc", 3), "abc");
        assert_eq!(tail("abcdef", 3), "…def");
        // 'é' is two bytes: the cut moves past it rather than splitting it.
        assert_eq!(tail("aé", 1), "…");
        assert_eq!(tail("aéb", 2), "…b");
    }
}
