//! From a run's journal and audit log to a [`Report`]. Pure: the same records give the same
//! report.

use std::collections::{BTreeMap, HashMap, HashSet};

use sfbpatch_engine::policy::RESILIENCY_THRESHOLD;
use sfbpatch_engine::{
    AuditEntry, JournalEntry, Millis, Record, RunId, RunRecord, ServerState, ServerStatus,
    StepState, TargetSpec, fold,
};
use sfbpatch_plan::{Build, ServerKind, ServerPlan, StepId};
use sfbpatch_topology::{Deployment, SqlInstanceName, TopologyError};

use crate::intervals::{self, Window};
use crate::model::*;

/// Why a report cannot be built. Codes are stable (`docs/report.md`).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The topology text recorded with the run no longer reads, so its pools cannot be mapped
    /// to their back ends.
    #[error("the topology recorded with run {run} ({origin}) cannot be read: {error}")]
    Topology {
        run: RunId,
        origin: String,
        error: TopologyError,
    },
    /// A journal or audit record of another run was passed in.
    #[error("a {what} of run {found} was given for the report of run {run}")]
    ForeignRecord {
        run: RunId,
        found: RunId,
        what: &'static str,
    },
}

impl ReportError {
    pub fn code(&self) -> &'static str {
        match self {
            ReportError::Topology { .. } => "SFB-R001",
            ReportError::ForeignRecord { .. } => "SFB-R002",
        }
    }
}

/// Builds the report of `run` from its whole journal and audit log, as the store returns them.
///
/// Times are seconds since `run.created_at` on the target's clock; for a run over SSH that
/// clock is wall-clock Unix time, so the run's start and end (and each approval) are also given
/// as RFC 3339 instants in UTC. Whatever is still open
/// (a step in flight, an outage of an interrupted run) is measured up to the last journal
/// record. Per pool, the back end is unavailable while every one of its machines is out of
/// service (from the start of `stop-cs-services` to the end of `start-cs-services` or of the
/// recovery); the part of each unavailability beyond 30 minutes is time in resiliency mode.
/// Pools and their back-end machines are derived again from the topology text recorded with the
/// run, so pools sharing a back end are each affected.
pub fn build(
    run: &RunRecord,
    journal: &[JournalEntry],
    audit: &[AuditEntry],
) -> Result<Report, ReportError> {
    if let Some(e) = journal.iter().find(|e| e.run != run.id) {
        return Err(ReportError::ForeignRecord {
            run: run.id,
            found: e.run,
            what: "journal record",
        });
    }
    if let Some(e) = audit.iter().find(|e| e.run != run.id) {
        return Err(ReportError::ForeignRecord {
            run: run.id,
            found: e.run,
            what: "audit record",
        });
    }
    let spec = &run.spec;
    let deployment = sfbpatch_topology::load(&spec.topology_snapshot, &spec.topology_origin)
        .map_err(|error| ReportError::Topology {
            run: run.id,
            origin: spec.topology_origin.clone(),
            error,
        })?;

    let origin = run.created_at;
    let now = journal
        .iter()
        .map(|e| e.at)
        .max()
        .unwrap_or(origin)
        .max(origin);
    let clock = Clock { origin };
    let wall = match spec.target {
        TargetSpec::Ssh { .. } => ClockKind::Wall,
        TargetSpec::Lab { .. } => ClockKind::Lab,
    };
    let instant = |at: Millis| (wall == ClockKind::Wall).then(|| rfc3339(at)).flatten();

    let plans = &spec.plan.servers;
    let statuses = fold(plans, journal);
    let traces = trace(plans, journal);

    let servers: Vec<ServerReport> = plans
        .iter()
        .zip(&statuses)
        .zip(&traces)
        .map(|((plan, status), trace)| {
            server_report(plan, status, trace, &spec.plan.package.version, now, clock)
        })
        .collect();
    let failures = plans
        .iter()
        .zip(&statuses)
        .zip(&traces)
        .filter(|((_, s), _)| matches!(s.state, ServerState::Failed | ServerState::Skipped))
        .map(|((plan, status), trace)| failure_report(run, plan, status, trace, clock))
        .collect();
    let pools = pool_reports(&deployment, plans, &statuses, now, clock);

    Ok(Report {
        schema_version: SCHEMA_VERSION,
        run: RunSummary {
            id: run.id,
            state: run.state,
            makespan_seconds: clock.seconds(now),
            created_at_seconds: run.created_at as f64 / 1000.0,
            package: spec.plan.package.name.clone(),
            package_version: spec.plan.package.version.to_string(),
            operator: spec.operator.clone(),
            topology_origin: spec.topology_origin.clone(),
            target: serde_json::to_value(&spec.target).unwrap_or(serde_json::Value::Null),
            resiliency_after_seconds: RESILIENCY_THRESHOLD as f64 / 1000.0,
            approvals: journal
                .iter()
                .filter_map(|e| match &e.record {
                    Record::WaveApproved { wave, by } => Some(Approval {
                        wave: *wave,
                        by: by.clone(),
                        at_seconds: clock.seconds(e.at),
                        at: instant(e.at),
                    }),
                    _ => None,
                })
                .collect(),
            clock: wall,
            started_at: instant(origin),
            ended_at: run.state.is_finished().then(|| instant(now)).flatten(),
        },
        servers,
        pools,
        failures,
        databases: journal
            .iter()
            .rev()
            .find_map(|e| match &e.record {
                Record::DatabasesChecked { databases } => Some(databases.clone()),
                _ => None,
            })
            .unwrap_or_default(),
        audit: audit
            .iter()
            .map(|a| AuditLine {
                at_seconds: clock.seconds(a.at),
                operator: a.operator.clone(),
                server: a.server.clone(),
                step: a.step.clone(),
                command: a.command.clone(),
                exit_code: a.exit_code,
                output_excerpt: a.output_excerpt.clone(),
            })
            .collect(),
    })
}

/// Wall-clock Unix milliseconds as RFC 3339 in UTC (`2026-12-04T21:03:15Z`, with milliseconds
/// when there are any).
fn rfc3339(unix_ms: Millis) -> Option<String> {
    let ms = i64::try_from(unix_ms).ok()?;
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(|t| t.to_string())
}

/// Target-clock milliseconds to seconds since the run's creation.
#[derive(Debug, Clone, Copy)]
struct Clock {
    origin: Millis,
}

impl Clock {
    fn seconds(self, at: Millis) -> f64 {
        at.saturating_sub(self.origin) as f64 / 1000.0
    }

    fn span(self, start: Millis, end: Millis) -> Span {
        Span {
            start_seconds: self.seconds(start),
            end_seconds: self.seconds(end.max(start)),
        }
    }

    fn interval(self, w: &Window) -> Interval {
        Interval {
            start_seconds: self.seconds(w.start),
            end_seconds: (!w.open).then(|| self.seconds(w.end)),
            seconds: w.len() as f64 / 1000.0,
        }
    }
}

/// What the status fold does not keep: exit codes and outputs per step, reboots, the recovery,
/// and the step a server stopped at.
#[derive(Debug, Default)]
struct Trace {
    /// The first pre-flight's build: `Some(None)` when it found no Skype for Business build.
    preflight_build: Option<Option<Build>>,
    last_at: Option<Millis>,
    last_step: Option<StepId>,
    exit_codes: BTreeMap<StepId, Option<i32>>,
    outputs: BTreeMap<StepId, String>,
    reboots: Vec<(Millis, Millis)>,
    recovery: Option<(Millis, Millis, String)>,
}

fn trace(plans: &[ServerPlan], journal: &[JournalEntry]) -> Vec<Trace> {
    let index: HashMap<String, usize> = plans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.fqdn.key(), i))
        .collect();
    let mut out: Vec<Trace> = plans.iter().map(|_| Trace::default()).collect();
    for entry in journal {
        let Some(&i) = index.get(&entry.server.to_ascii_lowercase()) else {
            continue;
        };
        let t = &mut out[i];
        let since = t.last_at.unwrap_or(entry.at);
        match &entry.record {
            Record::Preflight { facts } => {
                t.preflight_build.get_or_insert(facts.build);
            }
            Record::StepIntent { step, .. } => t.last_step = Some(*step),
            Record::StepResult {
                step,
                exit_code,
                output,
                ..
            } => {
                t.last_step = Some(*step);
                t.exit_codes.insert(*step, *exit_code);
                t.outputs.insert(*step, output.clone());
            }
            Record::StepProbed { step, facts, .. } => {
                t.last_step = Some(*step);
                t.outputs.insert(*step, facts.clone());
            }
            Record::Rebooted { .. } => t.reboots.push((since, entry.at)),
            Record::Recovered { output } => t.recovery = Some((since, entry.at, output.clone())),
            _ => {}
        }
        t.last_at = Some(entry.at);
    }
    out
}

/// The server's outage window, up to `now` while it is open.
fn outage_window(status: &ServerStatus, now: Millis) -> Option<Window> {
    let start = status.outage_started_at?;
    match status.outage_ended_at {
        Some(end) => Window::new(start, end, false),
        None => Window::new(start, now, true),
    }
}

/// The build a server ended on and how that is known: the package's when `verify` passed; the
/// pre-flight's when nothing was installed (already current, the installer never started, or
/// nothing to install on the machine); otherwise unknown.
fn build_after(
    plan: &ServerPlan,
    status: &ServerStatus,
    trace: &Trace,
    package: &Build,
) -> (Option<String>, Option<BuildSource>) {
    let before = trace.preflight_build;
    let unchanged = || match before {
        Some(build) => (build.map(|b| b.to_string()), Some(BuildSource::Preflight)),
        None => (None, None),
    };
    let install = status.find_step(StepId::InstallUpdate);
    let nothing_to_install = plan
        .find_step(StepId::InstallUpdate)
        .is_none_or(|st| st.not_applicable.is_some())
        || install.is_some_and(|st| st.state == StepState::NotApplicable);
    if nothing_to_install || status.state == ServerState::AlreadyCurrent {
        return unchanged();
    }
    if status
        .find_step(StepId::Verify)
        .is_some_and(|st| st.state == StepState::Succeeded)
    {
        return (Some(package.to_string()), Some(BuildSource::Verify));
    }
    if install.is_some_and(|st| st.started_at.is_none()) && status.is_finished() {
        return unchanged();
    }
    (None, None)
}

fn server_report(
    plan: &ServerPlan,
    status: &ServerStatus,
    trace: &Trace,
    package: &Build,
    now: Millis,
    clock: Clock,
) -> ServerReport {
    let (build_after, build_after_from) = build_after(plan, status, trace, package);
    let steps = status
        .steps
        .iter()
        .map(|st| {
            let finished = !matches!(st.state, StepState::Pending | StepState::Running);
            StepReport {
                id: st.id,
                state: st.state,
                attempts: st.attempts,
                start_seconds: st.started_at.map(|at| clock.seconds(at)),
                end_seconds: st.ended_at.filter(|_| finished).map(|at| clock.seconds(at)),
                exit_code: trace.exit_codes.get(&st.id).copied().flatten(),
                in_outage: plan.steps.iter().any(|p| p.id == st.id && p.in_outage),
            }
        })
        .collect();
    ServerReport {
        fqdn: status.fqdn.clone(),
        pool: status.pool.clone(),
        state: status.state,
        start_seconds: status.started_at.map(|at| clock.seconds(at)),
        end_seconds: status.finished_at.map(|at| clock.seconds(at)),
        outage_seconds: status.outage_ms(now).map(|ms| ms as f64 / 1000.0),
        site: plan.site.clone(),
        role: plan.kind,
        sql_server_fqdn: plan.sql_server_fqdn.to_string(),
        outage_start_seconds: status.outage_started_at.map(|at| clock.seconds(at)),
        outage_end_seconds: status.outage_ended_at.map(|at| clock.seconds(at)),
        reason: status.reason.clone(),
        budget_exceeded: status.budget_exceeded,
        steps,
        reboots: trace
            .reboots
            .iter()
            .map(|&(start, end)| clock.span(start, end))
            .collect(),
        recovery: trace.recovery.as_ref().map(|(start, end, output)| {
            let span = clock.span(*start, *end);
            Recovery {
                start_seconds: span.start_seconds,
                end_seconds: span.end_seconds,
                output: output.clone(),
            }
        }),
        build_before: trace.preflight_build.flatten().map(|b| b.to_string()),
        build_after,
        build_after_from,
    }
}

fn failure_report(
    run: &RunRecord,
    plan: &ServerPlan,
    status: &ServerStatus,
    trace: &Trace,
    clock: Clock,
) -> FailureReport {
    let step = trace.last_step;
    let exit_code = step.and_then(|s| trace.exit_codes.get(&s).copied().flatten());
    FailureReport {
        server: plan.fqdn.to_string(),
        pool: plan.pool.to_string(),
        state: status.state,
        step,
        at_seconds: status.finished_at.map(|at| clock.seconds(at)),
        reason: status.reason.clone(),
        exit_code,
        output: step.and_then(|s| trace.outputs.get(&s).cloned()),
        recovery_output: trace.recovery.as_ref().map(|(_, _, o)| o.clone()),
        hint: crate::hints::hint(run, plan, status.state, step, exit_code),
    }
}

fn backend_label(fqdn: &str, instance: &SqlInstanceName) -> String {
    if instance.is_default() {
        fqdn.to_string()
    } else {
        format!("{fqdn}\\{instance}")
    }
}

/// Each pool with a planned machine (a Front End server, a back-end machine, the Standard
/// Edition server), with the times its back end was unavailable and its users in resiliency
/// mode, as the lab counts them: a back end of several machines is unavailable while none of
/// them is in service, and any back end while `Install-CsDatabase` updates it (from wherever it
/// runs). A SQL Server machine without Skype for Business components never leaves service: its
/// SQL Server runs throughout, and its outage window is that update.
fn pool_reports(
    deployment: &Deployment,
    plans: &[ServerPlan],
    statuses: &[ServerStatus],
    now: Millis,
    clock: Clock,
) -> Vec<PoolReport> {
    let windows: HashMap<String, Vec<Window>> = plans
        .iter()
        .zip(statuses)
        .map(|(p, s)| (p.fqdn.key(), outage_window(s, now).into_iter().collect()))
        .collect();
    // Each back end's database updates (`Install-CsDatabase -Update -ConfiguredDatabases`),
    // wherever they ran from, by SQL Server FQDN.
    let mut db_updates: HashMap<String, Vec<Window>> = HashMap::new();
    for (plan, status) in plans.iter().zip(statuses) {
        let Some(sfbpatch_plan::Action::UpdateConfiguredDatabases {
            sql_server_fqdn, ..
        }) = plan.find_step(StepId::UpdateDatabases).map(|st| &st.action)
        else {
            continue;
        };
        let Some(step) = status
            .steps
            .iter()
            .find(|st| st.id == StepId::UpdateDatabases)
        else {
            continue;
        };
        // An update that failed (at once, as Install-CsDatabase does when it cannot start)
        // held nothing; one that succeeded, still runs or was lost did.
        if matches!(step.state, StepState::Failed | StepState::NotApplicable) {
            continue;
        }
        let Some(start) = step.started_at else {
            continue;
        };
        let finished = !matches!(step.state, StepState::Pending | StepState::Running);
        let window = match step.ended_at.filter(|_| finished) {
            Some(end) => Window::new(start, end, false),
            None => Window::new(start, now, true),
        };
        db_updates
            .entry(sql_server_fqdn.key())
            .or_default()
            .extend(window);
    }
    let sql_only: HashSet<String> = plans
        .iter()
        .zip(statuses)
        .filter(|(p, s)| is_sql_only(p, s))
        .map(|(p, _)| p.fqdn.key())
        .collect();
    let succeeded: HashSet<String> = plans
        .iter()
        .zip(statuses)
        .filter(|(_, s)| s.state == ServerState::Succeeded)
        .map(|(p, _)| p.fqdn.key())
        .collect();
    let report = |fqdn: String,
                  site: String,
                  (backend, sql_server): (String, String),
                  always_on: bool,
                  machines: Vec<String>,
                  (front_ends, front_ends_in_pool): (Vec<String>, Vec<String>)| {
        let keys: Vec<String> = machines.iter().map(|m| m.to_ascii_lowercase()).collect();
        let out: Vec<Option<&[Window]>> = keys
            .iter()
            .map(|k| {
                if sql_only.contains(k) {
                    None
                } else {
                    windows.get(k).map(Vec::as_slice)
                }
            })
            .collect();
        let mut unavailable = intervals::all_out(&out);
        unavailable.extend(db_updates.get(&sql_server).into_iter().flatten().copied());
        let unavailable = intervals::merge(unavailable);
        let resiliency = intervals::beyond(&unavailable, RESILIENCY_THRESHOLD);
        let total = |ws: &[Window]| ws.iter().map(Window::len).sum::<Millis>() as f64 / 1000.0;
        PoolReport {
            fqdn,
            resiliency_seconds: total(&resiliency),
            site,
            backend,
            always_on,
            servers: machines,
            front_ends_patched: front_ends
                .iter()
                .filter(|f| succeeded.contains(&f.to_ascii_lowercase()))
                .count(),
            front_ends,
            unavailable_seconds: total(&unavailable),
            unavailable: unavailable.iter().map(|w| clock.interval(w)).collect(),
            resiliency: resiliency.iter().map(|w| clock.interval(w)).collect(),
            front_ends_in_pool,
        }
    };

    let mut covered: HashSet<String> = HashSet::new();
    let mut pools = Vec::new();
    for pool in &deployment.pools {
        let planned = |machines: &[sfbpatch_topology::Machine]| -> Vec<String> {
            machines
                .iter()
                .filter(|m| windows.contains_key(&m.fqdn.key()))
                .map(|m| m.fqdn.to_string())
                .collect()
        };
        let machines: Vec<String> = pool
            .backend_machines()
            .iter()
            .map(|m| m.fqdn.to_string())
            .collect();
        // For an Enterprise pool, `pool.machines` are its Front End servers, in its order.
        let (front_ends, front_ends_in_pool) = match pool.edition {
            sfbpatch_topology::Edition::Enterprise => (
                planned(&pool.machines),
                pool.machines.iter().map(|m| m.fqdn.to_string()).collect(),
            ),
            sfbpatch_topology::Edition::Standard => (Vec::new(), Vec::new()),
        };
        let keys: Vec<String> = machines.iter().map(|m| m.to_ascii_lowercase()).collect();
        if front_ends.is_empty() && !keys.iter().any(|k| windows.contains_key(k)) {
            continue;
        }
        covered.extend(keys);
        covered.extend(front_ends.iter().map(|f| f.to_ascii_lowercase()));
        pools.push(report(
            pool.fqdn.to_string(),
            pool.site.clone(),
            (
                backend_label(
                    pool.backend.sql_server_fqdn.as_str(),
                    &pool.backend.sql_instance,
                ),
                pool.backend.sql_server_fqdn.key(),
            ),
            pool.backend.always_on,
            machines,
            (front_ends, front_ends_in_pool),
        ));
    }

    // A planned server the topology does not place in any pool (the file was changed by
    // hand, say): its plan names its pool and back end.
    let mut extra: Vec<(&ServerPlan, Vec<String>, Vec<String>)> = Vec::new();
    for plan in plans.iter().filter(|p| !covered.contains(&p.fqdn.key())) {
        let entry = match extra.iter_mut().find(|(first, _, _)| {
            first.pool == plan.pool && first.sql_server_fqdn == plan.sql_server_fqdn
        }) {
            Some(entry) => entry,
            None => {
                extra.push((plan, Vec::new(), Vec::new()));
                extra.last_mut().expect("just pushed")
            }
        };
        if plan.kind == ServerKind::FrontEnd {
            entry.2.push(plan.fqdn.to_string());
        } else {
            entry.1.push(plan.fqdn.to_string());
        }
    }
    for (plan, machines, front_ends) in extra {
        pools.push(report(
            plan.pool.to_string(),
            plan.site.clone(),
            (
                backend_label(plan.sql_server_fqdn.as_str(), &plan.sql_instance),
                plan.sql_server_fqdn.key(),
            ),
            false,
            machines,
            (front_ends.clone(), front_ends),
        ));
    }
    pools
}

/// A back-end or store SQL Server machine without the Skype for Business components: the plan
/// (or its pre-flight) found nothing to install there.
fn is_sql_only(plan: &ServerPlan, status: &ServerStatus) -> bool {
    matches!(plan.kind, ServerKind::BackEnd | ServerKind::Store)
        && (plan
            .find_step(StepId::InstallUpdate)
            .is_none_or(|st| st.not_applicable.is_some())
            || status
                .steps
                .iter()
                .any(|st| st.id == StepId::InstallUpdate && st.state == StepState::NotApplicable))
}
