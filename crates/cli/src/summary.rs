//! The end-of-run summary: per server outcome and outage, per pool user impact.
//!
//! Each pool's back-end figures (time unavailable, time in resiliency mode, the windows) come
//! from the run's journal for every target, computed by the report (`sfbpatch_report::build`),
//! so that the summary, `status` and `report` agree. On a lab the lab's own record is read as
//! well: for what the journal cannot tell (time below quorum, dropped sessions), and as a check
//! that the journal's figures are the world's.
//!
//! The JSON form is a contract: `docs/schema/summary.schema.json`.

use std::fmt::Write as _;

use serde::Serialize;
use sfbpatch_engine::{RunOutcome, RunRecord};
use sfbpatch_lab::Lab;
use sfbpatch_report::{Interval, Report};

use crate::output::minutes;

/// The version of the JSON contract.
pub const SCHEMA_VERSION: u32 = 1;

/// How far (seconds) a journal figure may be from the lab's before the check reports it: the
/// rounding of milliseconds to seconds, nothing more.
const TOLERANCE_SECONDS: f64 = 0.0005;

#[derive(Debug, Serialize)]
pub struct Summary {
    pub schema_version: u32,
    pub run: RunJson,
    pub servers: Vec<ServerJson>,
    pub pools: Vec<PoolJson>,
    /// `lab`: the run drove a lab; back-end figures come from the journal and were checked
    /// against the lab's own record, time below quorum and dropped sessions come from the lab.
    /// `journal`: real servers; back-end figures come from the journal, quorum and dropped
    /// sessions are not measured (0).
    pub availability_from: &'static str,
    /// Lab runs: where the journal's figures differ from the lab's own record (empty when they
    /// agree). Absent for real servers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lab_differences: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
pub struct RunJson {
    pub id: i64,
    pub state: &'static str,
    pub makespan_seconds: f64,
    /// The target clock's reading when the run was created, in seconds (the lab's virtual
    /// clock, or Unix time over SSH): the pools' windows count from it.
    pub created_at_seconds: f64,
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
}

#[derive(Debug, Serialize)]
pub struct PoolJson {
    pub fqdn: String,
    /// Time the pool's back end was unavailable during this run (the report's
    /// `unavailable_seconds`).
    pub outage_seconds: f64,
    /// Time the pool's users were in resiliency mode during this run.
    pub resiliency_seconds: f64,
    /// Enterprise pools: Front End servers of the run that ended on the new build, of those
    /// planned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub front_ends_patched: Option<(usize, usize)>,
    /// Time the pool was below quorum, and time users' sessions were dropped (a Front End
    /// server stopped without failover), during this run: measured in the lab only.
    pub down_seconds: f64,
    pub user_impact_seconds: f64,
    /// When the back end was unavailable, and the part of each such window beyond 30 minutes:
    /// seconds since the run's creation, as in the report.
    pub unavailable: Vec<Interval>,
    pub resiliency: Vec<Interval>,
}

impl Summary {
    /// The summary of `outcome`, with the pools' figures from `report` (the run's journal) and,
    /// on a lab, `lab`'s record of what the journal cannot tell and of what it can, to compare.
    pub fn new(
        outcome: &RunOutcome,
        run: &RunRecord,
        report: &Report,
        lab: Option<&Lab>,
    ) -> anyhow::Result<Self> {
        let start = run.created_at;
        let servers = outcome
            .servers
            .iter()
            .map(|s| ServerJson {
                fqdn: s.fqdn.clone(),
                pool: s.pool.clone(),
                kind: s.kind.as_str(),
                state: s.state.as_str(),
                reason: s.reason.clone(),
                outage_seconds: s.outage_ms(outcome.finished_at).map(secs),
            })
            .collect();
        let empty = |fqdn: &str| PoolJson {
            fqdn: fqdn.to_string(),
            outage_seconds: 0.0,
            resiliency_seconds: 0.0,
            front_ends_patched: None,
            down_seconds: 0.0,
            user_impact_seconds: 0.0,
            unavailable: Vec::new(),
            resiliency: Vec::new(),
        };
        let mut pools: Vec<PoolJson> = Vec::new();
        for s in &outcome.servers {
            if !pools.iter().any(|p| p.fqdn.eq_ignore_ascii_case(&s.pool)) {
                pools.push(empty(&s.pool));
            }
            if s.kind == sfbpatch_plan::ServerKind::FrontEnd
                && let Some(pool) = pools
                    .iter_mut()
                    .find(|p| p.fqdn.eq_ignore_ascii_case(&s.pool))
            {
                let (done, all) = pool.front_ends_patched.get_or_insert((0, 0));
                *all += 1;
                if s.is_success() {
                    *done += 1;
                }
            }
        }
        // Pools the plan names after another pool sharing their back end are affected too.
        for p in &report.pools {
            if !pools.iter().any(|q| q.fqdn.eq_ignore_ascii_case(&p.fqdn)) {
                let mut pool = empty(&p.fqdn);
                if !p.front_ends.is_empty() {
                    pool.front_ends_patched = Some((p.front_ends_patched, p.front_ends.len()));
                }
                pools.push(pool);
            }
        }
        for pool in &mut pools {
            if let Some(p) = report
                .pools
                .iter()
                .find(|p| p.fqdn.eq_ignore_ascii_case(&pool.fqdn))
            {
                pool.outage_seconds = p.unavailable_seconds;
                pool.resiliency_seconds = p.resiliency_seconds;
                pool.unavailable = p.unavailable.clone();
                pool.resiliency = p.resiliency.clone();
            }
        }
        let lab_differences = match lab {
            Some(lab) => {
                let snapshot = lab.show()?;
                let from = start as f64 / 1000.0;
                let mut differences = Vec::new();
                for pool in &mut pools {
                    let Some(p) = snapshot
                        .pools
                        .iter()
                        .find(|p| p.fqdn.eq_ignore_ascii_case(&pool.fqdn))
                    else {
                        continue;
                    };
                    if let Some(fe) = &p.front_ends {
                        pool.down_seconds = overlap(&fe.down_intervals, from);
                        pool.user_impact_seconds = overlap(&fe.user_impact_intervals, from);
                    }
                    differences.extend(compare(pool, p, from));
                }
                if !differences.is_empty() {
                    crate::output::note(&format!(
                        "warning: the journal's back-end figures differ from the lab's own record: {}",
                        differences.join("; ")
                    ));
                }
                Some(differences)
            }
            None => None,
        };
        Ok(Summary {
            schema_version: SCHEMA_VERSION,
            run: RunJson {
                id: outcome.run,
                state: outcome.state.as_str(),
                makespan_seconds: secs(outcome.finished_at.saturating_sub(start)),
                created_at_seconds: secs(start),
            },
            servers,
            pools,
            availability_from: if lab.is_some() { "lab" } else { "journal" },
            lab_differences,
        })
    }

    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "run {} {} in {}",
            self.run.id,
            self.run.state,
            minutes((self.run.makespan_seconds * 1000.0) as u64)
        );
        let w = crate::output::name_column(self.servers.iter().map(|s| s.fqdn.as_str()));
        let _ = writeln!(
            s,
            "\n{:<w$} {:<16} {:<15} {:>10}  reason",
            "server", "kind", "outcome", "window"
        );
        for server in &self.servers {
            let _ = writeln!(
                s,
                "{:<w$} {:<16} {:<15} {:>10}  {}",
                crate::output::printable(&server.fqdn),
                server.kind,
                server.state,
                server
                    .outage_seconds
                    .map(|o| minutes((o * 1000.0) as u64))
                    .unwrap_or_else(|| "-".into()),
                server.reason.as_deref().unwrap_or("")
            );
        }
        let w = crate::output::name_column(self.pools.iter().map(|p| p.fqdn.as_str()));
        let _ = writeln!(
            s,
            "\n{:<w$} {:>11} {:>12}  user impact",
            "pool", "front ends", "back end out"
        );
        let m = |seconds: f64| minutes((seconds * 1000.0).round() as u64);
        for pool in &self.pools {
            let mut impact = Vec::new();
            if pool.resiliency_seconds > 0.0 {
                impact.push(format!(
                    "users in resiliency mode for {}",
                    m(pool.resiliency_seconds)
                ));
            }
            if pool.down_seconds > 0.0 {
                impact.push(format!("pool below quorum for {}", m(pool.down_seconds)));
            }
            if pool.user_impact_seconds > 0.0 {
                impact.push(format!(
                    "sessions dropped for {}",
                    m(pool.user_impact_seconds)
                ));
            }
            if impact.is_empty() {
                impact.push("none".to_string());
            }
            let _ = writeln!(
                s,
                "{:<w$} {:>11} {:>12}  {}",
                crate::output::printable(&pool.fqdn),
                pool.front_ends_patched
                    .map(|(done, all)| format!("{done}/{all} on build"))
                    .unwrap_or_else(|| "-".to_string()),
                m(pool.outage_seconds),
                impact.join("; ")
            );
        }
        if self.availability_from == "journal" {
            s.push_str(
                "\nBack-end figures come from the journal (the step windows sfbpatch recorded); \
                 whether a pool fell below quorum or dropped sessions is not measured on real \
                 servers.\n",
            );
        }
        for difference in self.lab_differences.iter().flatten() {
            let _ = writeln!(s, "\nwarning: journal and lab differ: {difference}");
        }
        s
    }
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Seconds of the intervals that lie after `from`.
fn overlap(intervals: &[sfbpatch_lab::Interval], from: f64) -> f64 {
    intervals
        .iter()
        .map(|i| {
            let end = i.end.unwrap_or(i.start);
            (end - i.start.max(from)).max(0.0)
        })
        .sum::<f64>()
        // An empty sum is -0.0.
        + 0.0
}

/// The lab's intervals from `from` on (seconds of its clock), cut at `from`, with those that
/// touch or overlap joined and empty ones left out, as the report keeps its windows.
fn lab_windows(intervals: &[sfbpatch_lab::Interval], from: f64) -> Vec<(f64, Option<f64>)> {
    let mut clipped: Vec<(f64, Option<f64>)> = intervals
        .iter()
        .filter(|i| i.end.is_none_or(|end| end > from))
        .map(|i| (i.start.max(from), i.end))
        .filter(|(start, end)| end.is_none_or(|end| end - start >= TOLERANCE_SECONDS))
        .collect();
    clipped.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out: Vec<(f64, Option<f64>)> = Vec::new();
    for (start, end) in clipped {
        if let Some(last) = out.last_mut() {
            match last.1 {
                // Still open: it covers everything after it.
                None => continue,
                Some(last_end) if start <= last_end + TOLERANCE_SECONDS => {
                    last.1 = end.map(|e| e.max(last_end));
                    continue;
                }
                Some(_) => {}
            }
        }
        out.push((start, end));
    }
    out
}

/// Where the journal's figures of `pool` differ from the lab's record `lab` of it, from `from`
/// (seconds of the lab's clock) on. A window still open on either side is not compared: the
/// journal measures it up to its last record, the lab up to its clock.
fn compare(pool: &PoolJson, lab: &sfbpatch_lab::PoolSnapshot, from: f64) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |what: &str, journal: &[Interval], lab: &[sfbpatch_lab::Interval]| {
        let lab = lab_windows(lab, from);
        if journal.iter().any(|w| w.end_seconds.is_none()) || lab.iter().any(|w| w.1.is_none()) {
            return;
        }
        let journal: Vec<(f64, f64)> = journal
            .iter()
            .map(|w| {
                (
                    from + w.start_seconds,
                    from + w.end_seconds.unwrap_or(w.start_seconds),
                )
            })
            .collect();
        let lab: Vec<(f64, f64)> = lab
            .iter()
            .map(|&(start, end)| (start, end.unwrap_or(start)))
            .collect();
        let same = journal.len() == lab.len()
            && journal.iter().zip(&lab).all(|(a, b)| {
                (a.0 - b.0).abs() < TOLERANCE_SECONDS && (a.1 - b.1).abs() < TOLERANCE_SECONDS
            });
        if !same {
            let total = |ws: &[(f64, f64)]| ws.iter().map(|w| w.1 - w.0).sum::<f64>() + 0.0;
            out.push(format!(
                "pool {}: {what} {:.3} s in {} window(s) by the journal, {:.3} s in {} by the lab",
                pool.fqdn,
                total(&journal),
                journal.len(),
                total(&lab),
                lab.len()
            ));
        }
    };
    check(
        "back end unavailable",
        &pool.unavailable,
        &lab.outage_intervals,
    );
    check(
        "users in resiliency mode",
        &pool.resiliency,
        &lab.resiliency_intervals,
    );
    out
}
