//! `sfbpatch standby`: a second controller that watches a run and takes it over when its
//! controller stops renewing its leases (its process died, its host went away, it froze): then
//! an ordinary `resume`, which probes before it acts. Of several standbys exactly one wins: the
//! store grants an expired lease to one controller only.

use std::time::Duration;

use anyhow::anyhow;
use sfbpatch_engine::{Clock, RunState, SystemClock};

use crate::cli::{ApplyArgs, ResumeArgs, StandbyArgs};
use crate::commands::apply::held_by_a_dead_local_controller;
use crate::commands::apply::{open_existing_store, resume};
use crate::exit::{CmdResult, Exit, Failure};
use crate::output;

/// What the standby found on one look.
enum Look {
    /// The run ended (by its controller, or by this standby).
    Finished(RunState),
    /// Its controller renews its leases.
    Alive,
    /// Nobody holds it: take it over.
    Orphaned(String),
}

pub fn run(args: StandbyArgs, color: bool) -> CmdResult {
    let mut took_over = false;
    loop {
        let (id, look) = look(&args)?;
        match look {
            Look::Finished(state) => {
                output::note(&format!(
                    "run {id} is {}: nothing left to stand by for",
                    state.as_str()
                ));
                return Ok(if took_over && state != RunState::Succeeded {
                    Exit::RunFailed
                } else {
                    Exit::Success
                });
            }
            Look::Alive => {}
            Look::Orphaned(why) => {
                output::note(&format!("run {id}: {why}; taking it over"));
                let result = resume(
                    ResumeArgs {
                        run: Some(id),
                        ..args.resume.clone()
                    },
                    color,
                );
                match result {
                    Ok(exit) => {
                        took_over = true;
                        if exit != Exit::Success {
                            return Ok(exit);
                        }
                    }
                    // Another standby won the lease, or the store was busy with it: keep
                    // watching.
                    Err(f)
                        if f.exit == Exit::Refused
                            || f.error.to_string().contains("[SFB-S008]") =>
                    {
                        output::note(&format!("run {id}: not taken over: {:#}", f.error));
                    }
                    Err(f) => return Err(f),
                }
            }
        }
        std::thread::sleep(Duration::from_secs(args.poll));
    }
}

fn look(args: &StandbyArgs) -> Result<(i64, Look), Failure> {
    let store = open_existing_store(&args.resume.state.state)?;
    let run = match args.resume.run {
        Some(id) => store.run(id)?,
        None => store.latest_run()?.ok_or_else(|| {
            Failure::refused(anyhow!(
                "there is no run to stand by for in {}",
                store.location()
            ))
        })?,
    };
    // Finished, waiting for an approval, or stopped by its operator: not ours to go on with.
    if run.state.is_finished() {
        return Ok((run.id, Look::Finished(run.state)));
    }
    if run.state != RunState::Running {
        return Ok((run.id, Look::Alive));
    }
    let now = store.clock_ms()?.unwrap_or_else(|| SystemClock.now());
    let leases: Vec<_> = store
        .leases()?
        .into_iter()
        .filter(|l| l.run == run.id)
        .collect();
    if leases.is_empty() {
        // Just created and not yet leased, or released at its end: only a run with a journal
        // and no lease at all has lost its controller.
        return Ok((
            run.id,
            if store.journal(run.id)?.is_empty() {
                Look::Alive
            } else {
                Look::Orphaned("no controller holds it".to_string())
            },
        ));
    }
    if let Some(dead) = leases.iter().find(|l| held_by_a_dead_local_controller(l)) {
        return Ok((
            run.id,
            Look::Orphaned(format!(
                "its controller (pid {} on this host) is gone",
                dead.pid
            )),
        ));
    }
    if leases.iter().all(|l| l.expires_at <= now) {
        let ago = leases
            .iter()
            .map(|l| now.saturating_sub(l.expires_at))
            .min()
            .unwrap_or(0);
        return Ok((
            run.id,
            Look::Orphaned(format!(
                "its controller ({} on {}) stopped renewing its leases {:.0} s ago",
                leases[0].holder,
                leases[0].host,
                ago as f64 / 1000.0
            )),
        ));
    }
    Ok((run.id, Look::Alive))
}

/// `apply --standby`: waits for the run another controller starts (or runs) on any of this
/// plan's servers, then stands by for it. A matching run that started after this standby and has
/// already ended ends the wait.
pub fn for_apply(args: &ApplyArgs, plan: &sfbpatch_plan::Plan, color: bool) -> CmdResult {
    let ours: std::collections::BTreeSet<String> = plan
        .servers
        .iter()
        .map(|s| s.fqdn.as_str().to_ascii_lowercase())
        .collect();
    let mut newest_before: Option<i64> = None;
    let mut said = false;
    loop {
        if let Some((id, state)) = matching_run(&args.state.state, &ours, &mut newest_before)? {
            if state.is_finished() {
                output::note(&format!(
                    "run {id} on these servers is {}: nothing left to stand by for",
                    state.as_str()
                ));
                return Ok(Exit::Success);
            }
            output::note(&format!("standing by for run {id}"));
            return run(
                StandbyArgs {
                    resume: ResumeArgs {
                        state: args.state.clone(),
                        run: Some(id),
                        connections: args.at.connections.clone(),
                        controller_name: args.run.controller_name.clone(),
                        ssh: args.at.ssh.clone(),
                        format: args.run.format,
                        serve: args.serve,
                    },
                    poll: args.poll,
                },
                color,
            );
        }
        if !said {
            output::note("waiting for a run on these servers to stand by for");
            said = true;
        }
        std::thread::sleep(Duration::from_secs(args.poll));
    }
}

/// The newest run that patches one of `servers` and is unfinished, or finished but started
/// after the first look (`newest_before`, set then). Looks at the 100 newest runs.
fn matching_run(
    state: &str,
    servers: &std::collections::BTreeSet<String>,
    newest_before: &mut Option<i64>,
) -> Result<Option<(i64, RunState)>, Failure> {
    let store = match open_existing_store(state) {
        Ok(store) => store,
        // No run has created the store yet.
        Err(f) if f.exit == Exit::Refused => {
            newest_before.get_or_insert(0);
            return Ok(None);
        }
        Err(f) => return Err(f),
    };
    let Some(latest) = store.latest_run()? else {
        newest_before.get_or_insert(0);
        return Ok(None);
    };
    let before = *newest_before.get_or_insert(latest.id);
    let mut id = latest.id;
    while id > 0 && latest.id - id < 100 {
        let run = match store.run(id) {
            Ok(run) => run,
            Err(sfbpatch_engine::StoreError::NoSuchRun(_)) => {
                id -= 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let touches = run
            .spec
            .plan
            .servers
            .iter()
            .any(|s| servers.contains(&s.fqdn.as_str().to_ascii_lowercase()));
        if touches && (!run.state.is_finished() || run.id > before) {
            return Ok(Some((run.id, run.state)));
        }
        id -= 1;
    }
    Ok(None)
}
