//! `sfbpatch standby`: a second controller that watches a run and takes it over when its
//! controller stops renewing its leases (its process died, its host went away, it froze): then
//! an ordinary `resume`, which probes before it acts. Of several standbys exactly one wins: the
//! store grants an expired lease to one controller only.

use std::time::Duration;

use anyhow::anyhow;
use sfbpatch_engine::{Clock, RunState, SystemClock};

use crate::cli::{ResumeArgs, StandbyArgs};
use crate::commands::apply::{open_existing_store, resume};
use crate::commands::status::process_alive;
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
    let host = crate::commands::apply::identity().host;
    let mut took_over = false;
    loop {
        let (id, look) = look(&args, &host)?;
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

fn look(args: &StandbyArgs, host: &str) -> Result<(i64, Look), Failure> {
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
    let now = SystemClock.now();
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
    if let Some(dead) = leases
        .iter()
        .find(|l| l.host == host && !process_alive(l.pid))
    {
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
