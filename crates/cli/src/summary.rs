//! The end-of-run summary: per server outcome and outage, per pool user impact.

use std::fmt::Write as _;

use serde::Serialize;
use sfbpatch_engine::{RunOutcome, RunRecord};
use sfbpatch_lab::Lab;

use crate::output::minutes;

#[derive(Debug, Serialize)]
pub struct Summary {
    pub run: RunJson,
    pub servers: Vec<ServerJson>,
    pub pools: Vec<PoolJson>,
    /// Where the pools' figures come from: `lab` (the simulated world's own record) or
    /// `journal` (real servers: back-end unavailability and resiliency from the journal, as the
    /// report computes them; quorum and dropped sessions are not measured).
    pub availability_from: &'static str,
}

/// The record of each pool's availability the summary reads.
pub enum Availability<'a> {
    Lab(&'a Lab),
    Journal(Box<sfbpatch_report::Report>),
}

#[derive(Debug, Serialize)]
pub struct RunJson {
    pub id: i64,
    pub state: &'static str,
    pub makespan_seconds: f64,
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
    /// Time the pool's back end was unavailable during this run.
    pub outage_seconds: f64,
    /// Time the pool's users were in resiliency mode during this run.
    pub resiliency_seconds: f64,
    /// Enterprise pools: Front End servers of the run that ended on the new build, of those
    /// planned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub front_ends_patched: Option<(usize, usize)>,
    /// Time the pool was below quorum, and time users' sessions were dropped (a Front End
    /// server stopped without failover), during this run.
    pub down_seconds: f64,
    pub user_impact_seconds: f64,
}

impl Summary {
    pub fn new(
        outcome: &RunOutcome,
        run: &RunRecord,
        availability: &Availability<'_>,
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
        let mut pools: Vec<PoolJson> = Vec::new();
        for s in &outcome.servers {
            if !pools.iter().any(|p| p.fqdn.eq_ignore_ascii_case(&s.pool)) {
                pools.push(PoolJson {
                    fqdn: s.pool.clone(),
                    outage_seconds: 0.0,
                    resiliency_seconds: 0.0,
                    front_ends_patched: None,
                    down_seconds: 0.0,
                    user_impact_seconds: 0.0,
                });
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
        if let Availability::Journal(report) = availability {
            for pool in &mut pools {
                if let Some(p) = report
                    .pools
                    .iter()
                    .find(|p| p.fqdn.eq_ignore_ascii_case(&pool.fqdn))
                {
                    pool.outage_seconds = p.unavailable_seconds;
                    pool.resiliency_seconds = p.resiliency_seconds;
                }
            }
        }
        if let Availability::Lab(lab) = availability {
            // The lab's own record of availability is the truth; count what falls in this run.
            let snapshot = lab.show()?;
            let from = start as f64 / 1000.0;
            for pool in &mut pools {
                if let Some(p) = snapshot
                    .pools
                    .iter()
                    .find(|p| p.fqdn.eq_ignore_ascii_case(&pool.fqdn))
                {
                    pool.outage_seconds = overlap(&p.outage_intervals, from);
                    pool.resiliency_seconds = overlap(&p.resiliency_intervals, from);
                    if let Some(fe) = &p.front_ends {
                        pool.down_seconds = overlap(&fe.down_intervals, from);
                        pool.user_impact_seconds = overlap(&fe.user_impact_intervals, from);
                    }
                }
            }
        }
        Ok(Summary {
            run: RunJson {
                id: outcome.run,
                state: outcome.state.as_str(),
                makespan_seconds: secs(outcome.finished_at.saturating_sub(start)),
            },
            servers,
            pools,
            availability_from: match availability {
                Availability::Lab(_) => "lab",
                Availability::Journal(_) => "journal",
            },
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
        let _ = writeln!(
            s,
            "\n{:<40} {:<16} {:<15} {:>10}  reason",
            "server", "kind", "outcome", "window"
        );
        for server in &self.servers {
            let _ = writeln!(
                s,
                "{:<40} {:<16} {:<15} {:>10}  {}",
                server.fqdn,
                server.kind,
                server.state,
                server
                    .outage_seconds
                    .map(|o| minutes((o * 1000.0) as u64))
                    .unwrap_or_else(|| "-".into()),
                server.reason.as_deref().unwrap_or("")
            );
        }
        let _ = writeln!(
            s,
            "\n{:<40} {:>11} {:>12}  user impact",
            "pool", "front ends", "back end out"
        );
        let m = |seconds: f64| minutes((seconds * 1000.0) as u64);
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
                "{:<40} {:>11} {:>12}  {}",
                pool.fqdn,
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
        .sum()
}
