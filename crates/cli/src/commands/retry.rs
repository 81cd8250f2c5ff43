//! `sfbpatch retry SERVER`: try a failed server again.
//!
//! It only writes the journal: a `ServerRetried` record for the server (and for the servers
//! its failure skipped), in one transaction, and the run back to resumable when it had ended
//! failed. `sfbpatch resume` then patches it, with every flag of a resume (`--connections`,
//! `--format`, `--controller-name`) and with the probes a resume makes; nothing is sent to a
//! server here. Several servers may be marked before one resume.

use std::collections::BTreeSet;

use anyhow::anyhow;
use sfbpatch_engine::{
    Append, AuditEntry, Clock, Record, RunState, ServerState, ServerStatus, TargetSpec, fold,
};
use sfbpatch_plan::ServerPlan;

use crate::cli::RetryArgs;
use crate::exit::{CmdResult, Exit, Failure};
use crate::output::{self, printable};

use super::apply::{SystemClock, open_existing_store, operator_name};

/// Why a skipped server is pending again along with the one retried, if it is.
fn skipped_because(
    plans: &[ServerPlan],
    statuses: &[ServerStatus],
    retried: usize,
    i: usize,
    others_failed: bool,
) -> bool {
    if i == retried || statuses[i].state != ServerState::Skipped {
        return false;
    }
    // Another server of its pool or back end: stopped after the failure.
    if plans[i].serial_key() == plans[retried].serial_key() {
        return true;
    }
    // A server that waits for the retried one, however indirectly.
    let mut waits_for: BTreeSet<usize> = BTreeSet::new();
    let mut todo = vec![i];
    while let Some(j) = todo.pop() {
        for before in &plans[j].after {
            if let Some(k) = plans.iter().position(|p| p.fqdn == *before)
                && waits_for.insert(k)
            {
                todo.push(k);
            }
        }
    }
    if waits_for.contains(&retried) {
        return true;
    }
    // Stopped in flight because this failure spent the failure budget: with no other failed
    // server left, nothing spends it now.
    !others_failed
        && statuses[i]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("the failure budget is spent"))
}

/// The resume to run next, as typed: a store URL (which may carry a password) is not repeated.
fn resume_command(state: &str) -> String {
    if state.contains("://") {
        "sfbpatch resume --state ... (the same store)".to_string()
    } else if state == "sfbpatch.db" {
        "sfbpatch resume".to_string()
    } else {
        format!("sfbpatch resume --state {}", printable(state))
    }
}

pub fn run(args: RetryArgs) -> CmdResult {
    let mut store = open_existing_store(&args.state.state)?;
    let run = match args.run {
        Some(id) => store.run(id)?,
        None => store
            .latest_run()?
            .ok_or_else(|| Failure::refused(anyhow!("there is no run in {}", store.location())))?,
    };
    let plans = &run.spec.plan.servers;
    let Some(idx) = plans
        .iter()
        .position(|p| p.fqdn.as_str().eq_ignore_ascii_case(args.server.trim()))
    else {
        let names: Vec<&str> = plans.iter().map(|p| p.fqdn.as_str()).collect();
        return Err(Failure::bad_input(anyhow!(
            "server {} is not in run {}; its servers are: {}",
            printable(&args.server),
            run.id,
            names.join(", ")
        )));
    };
    let server = plans[idx].fqdn.as_str();
    let journal = store.journal(run.id)?;
    let statuses = fold(plans, &journal);
    tracing::debug!(
        run = run.id,
        server,
        state = statuses[idx].state.as_str(),
        "retry"
    );

    // One live controller per run: its journal is its own while it runs.
    let state = super::status::effective_state(&run, &*store)?;
    if state == RunState::Running {
        return Err(Failure::refused(anyhow!(
            "run {} is running: its controller is alive and holds its leases (`sfbpatch status \
             --run {0}` names it); retry {server} once that run has stopped",
            run.id
        )));
    }
    let status = &statuses[idx];
    let retried_already = status.state == ServerState::Pending
        && journal
            .iter()
            .rev()
            .find(|e| e.server.eq_ignore_ascii_case(server))
            .is_some_and(|e| matches!(e.record, Record::ServerRetried { .. }));
    if retried_already {
        if run.state.is_finished() {
            // A controller that ended the run after the retry was recorded (it did not see it):
            // the run is resumable again.
            store.set_run_state(run.id, RunState::Interrupted)?;
            output::note(&format!(
                "{server} was already marked to be tried again; run {} is resumable again: `{}` \
                 patches it",
                run.id,
                resume_command(&args.state.state)
            ));
            return Ok(Exit::Success);
        }
        return Err(Failure::refused(anyhow!(
            "{server} is already marked to be tried again in run {}; `{}` patches it",
            run.id,
            resume_command(&args.state.state)
        )));
    }
    if status.state != ServerState::Failed {
        let why = match status.state {
            ServerState::Succeeded | ServerState::AlreadyCurrent => {
                "there is nothing to try again".to_string()
            }
            ServerState::Skipped => format!(
                "it was skipped{}; retry the server whose failure skipped it, and it is tried \
                 again with it",
                status
                    .reason
                    .as_deref()
                    .map(|r| format!(" ({})", printable(r)))
                    .unwrap_or_default()
            ),
            ServerState::Pending | ServerState::Running => {
                "it has not finished: `sfbpatch resume` carries it on".to_string()
            }
            ServerState::Failed => unreachable!("a failed server is retried"),
        };
        return Err(Failure::refused(anyhow!(
            "{server} did not fail in run {}: it is {}; {why}",
            run.id,
            status.state.as_str()
        )));
    }

    let others_failed = statuses
        .iter()
        .enumerate()
        .any(|(i, s)| i != idx && s.state == ServerState::Failed);
    let along: Vec<usize> = (0..plans.len())
        .filter(|&i| skipped_because(plans, &statuses, idx, i, others_failed))
        .collect();
    let by = operator_name();
    let wall = SystemClock.now();
    // The entry's time is on the run's target clock: the lab's stays where the run left it.
    let last = journal.last().map_or(run.created_at, |e| e.at);
    let at = match run.spec.target {
        TargetSpec::Ssh { .. } => wall.max(last),
        TargetSpec::Lab { .. } => last,
    };
    let record = Record::ServerRetried {
        by: by.clone(),
        at_unix_ms: wall,
    };
    let mut batch = Vec::with_capacity(1 + along.len());
    for &i in std::iter::once(&idx).chain(&along) {
        let plan = &plans[i];
        let audit = (i == idx).then(|| AuditEntry {
            run: run.id,
            at,
            operator: by.clone(),
            server: plan.fqdn.to_string(),
            step: "retry".to_string(),
            command: Some(format!("sfbpatch retry {}", plan.fqdn)),
            exit_code: None,
            output_excerpt: format!(
                "marked to be tried again after it failed: {}",
                statuses[i]
                    .reason
                    .as_deref()
                    .unwrap_or("no reason recorded")
            ),
        });
        batch.push(Append {
            at,
            run: run.id,
            server: plan.fqdn.to_string(),
            role: plan.kind,
            records: vec![record.clone()],
            audit,
        });
    }
    store.append_batch(&batch)?;
    if run.state.is_finished() {
        store.set_run_state(run.id, RunState::Interrupted)?;
    }
    tracing::info!(
        run = run.id,
        server,
        along = along.len(),
        by = %by,
        "server marked to be tried again"
    );

    // What the next resume starts from.
    let mut after = status.clone();
    after.apply(at, &record);
    let done: Vec<&str> = after
        .steps
        .iter()
        .filter(|s| s.state.is_settled())
        .map(|s| s.id.as_str())
        .collect();
    let mut message = format!(
        "{server} is marked to be tried again in run {} (it failed: {})",
        run.id,
        printable(status.reason.as_deref().unwrap_or("no reason recorded"))
    );
    if !along.is_empty() {
        let names: Vec<&str> = along.iter().map(|&i| plans[i].fqdn.as_str()).collect();
        message.push_str(&format!(
            "\nalso pending again, skipped because of it: {}",
            names.join(", ")
        ));
    }
    message.push_str(&format!(
        "\nthe pre-flight reads it again first; {}; nothing ran yet: `{}` patches it",
        if done.is_empty() {
            "no step stays done".to_string()
        } else {
            format!("steps that stay done: {}", done.join(", "))
        },
        resume_command(&args.state.state)
    ));
    output::note(&message);
    Ok(Exit::Success)
}
