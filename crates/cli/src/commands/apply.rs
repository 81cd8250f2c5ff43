//! `sfbpatch apply` and `sfbpatch resume`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::anyhow;
use sfbpatch_engine::{
    Clock, Engine, Identity, Millis, RunOutcome, RunPolicy, RunSpec, RunState, Store, TargetSpec,
};
use sfbpatch_lab::Lab;

use crate::cli::{ApplyArgs, ResumeArgs, RunFormat, RunOptions};
use crate::exit::{CmdResult, Exit, Failure};
use crate::{input, output, progress, summary};

/// Wall-clock time, for leases.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as Millis)
    }
    fn sleep(&self, duration: Millis) {
        std::thread::sleep(std::time::Duration::from_millis(duration));
    }
}

pub fn identity() -> Identity {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let holder = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".into());
    Identity {
        holder,
        host,
        pid: std::process::id(),
    }
}

pub fn open_store(location: &str) -> Result<Box<dyn Store>, Failure> {
    let store = sfbpatch_store::open(location).map_err(Failure::internal)?;
    Ok(crate::crash::wrap(store))
}

pub fn open_lab(dir: &Path) -> Result<Lab, Failure> {
    Lab::open(dir).map_err(Failure::bad_input)
}

/// The engine's policy from the policy file and the flags. Pool pairs are named as the plan
/// names pools (a back end shared by several pools is planned under the first of them).
pub fn policy(
    run: &RunOptions,
    plan: &sfbpatch_plan::Plan,
    deployment: &sfbpatch_topology::Deployment,
    clock_now: Millis,
) -> Result<RunPolicy, Failure> {
    let (file, origin) = match &run.policy {
        Some(path) => (crate::policy::load(path)?, path.display().to_string()),
        None => (
            crate::policy::PolicyFile::default(),
            "command line".to_string(),
        ),
    };
    let rollout = crate::policy::rollout(&file, run, &origin)?;
    let mut policy = rollout.run_policy(clock_now, SystemClock.now() as i64)?;
    let mut pairs = Vec::new();
    for [a, b] in &policy.pairs {
        let planned = |name: &str| -> Result<Vec<String>, Failure> {
            let pool = deployment.pool(name).ok_or_else(|| {
                Failure::bad_input(anyhow!(
                    "{origin}: pair names pool {name}, which is not in the topology [SFB-C003]"
                ))
            })?;
            Ok(plan
                .servers
                .iter()
                .filter(|s| s.sql_server_fqdn == pool.backend.sql_server_fqdn)
                .map(|s| s.pool.to_string())
                .collect())
        };
        for x in planned(a)? {
            for y in planned(b)? {
                if !x.eq_ignore_ascii_case(&y) {
                    pairs.push([x.clone(), y]);
                }
            }
        }
    }
    pairs.dedup();
    policy.pairs = pairs;
    Ok(policy)
}

/// Ctrl-C: no new server starts, servers in flight finish; a second Ctrl-C stops at once
/// (the journal keeps everything done so far, `resume` continues).
pub fn interrupt_flag() -> &'static AtomicBool {
    static FLAG: AtomicBool = AtomicBool::new(false);
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if FLAG.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            output::note(
                "interrupted: no new server starts; servers in flight finish (Ctrl-C again to stop now, then `sfbpatch resume`)",
            );
        });
    });
    &FLAG
}

pub fn apply(args: ApplyArgs, color: bool) -> CmdResult {
    let (text, deployment) = input::topology(&args.topology)?;
    let package = input::package(&args.package)?;
    let plan = super::plan::make_plan(&deployment, package, &args.only)?;
    let lab = open_lab(&args.lab)?;
    let policy = policy(&args.run, &plan, &deployment, lab.clock().now())?;
    for server in &plan.servers {
        if lab.server(server.fqdn.as_str()).is_err() {
            return Err(Failure::bad_input(anyhow!(
                "server {} is in the plan but not in the lab at {} (was the lab made from another topology?)",
                server.fqdn,
                args.lab.display()
            )));
        }
    }
    let mut store = open_store(&args.state.state)?;
    let pools: std::collections::BTreeSet<String> =
        plan.servers.iter().map(|s| s.pool.to_string()).collect();

    if args.dry_run {
        output::data(&sfbpatch_plan::render_text(&plan))?;
        output::note(&format!(
            "dry run: {} server(s) in {} pool(s) would be patched; nothing was changed",
            plan.servers.len(),
            pools.len()
        ));
        return Ok(Exit::Success);
    }
    if !args.yes {
        confirm(&format!(
            "Patch {} server(s) in {} pool(s) to {} {}?",
            plan.servers.len(),
            pools.len(),
            plan.package.name,
            plan.package.version
        ))?;
    }
    let spec = RunSpec {
        topology_origin: args.topology.display().to_string(),
        topology_snapshot: text,
        operator: lab.operator().to_string(),
        plan,
        policy,
        target: TargetSpec::Lab {
            dir: std::path::absolute(&args.lab)
                .unwrap_or(args.lab.clone())
                .display()
                .to_string(),
        },
    };
    let outcome = {
        let target = lab.target();
        let clock = lab.clock();
        let mut observer = progress::observer(args.run.format, color);
        let mut engine = Engine {
            store: &mut *store,
            target: &target,
            clock: &clock,
            wall: &SystemClock,
            observer: &mut *observer,
            identity: identity(),
            cancel: Some(interrupt_flag()),
        };
        engine.start(spec)?
    };
    finish(&outcome, &lab, args.run.format, store.as_ref())
}

pub fn resume(args: ResumeArgs, color: bool) -> CmdResult {
    let mut store = open_store(&args.state.state)?;
    let run = match args.run {
        Some(id) => store.run(id)?,
        None => store.latest_run()?.ok_or_else(|| {
            Failure::refused(anyhow!("there is no run to resume in {}", store.location()))
        })?,
    };
    if run.state.is_finished() {
        return Err(Failure::refused(anyhow!(
            "run {} already {}; nothing to resume",
            run.id,
            run.state.as_str()
        )));
    }
    let TargetSpec::Lab { dir } = &run.spec.target else {
        return Err(Failure::refused(anyhow!(
            "run {} used a target this build cannot open",
            run.id
        )));
    };
    let lab = open_lab(Path::new(dir))?;
    let outcome = {
        let target = lab.target();
        let clock = lab.clock();
        let mut observer = progress::observer(args.format, color);
        let mut engine = Engine {
            store: &mut *store,
            target: &target,
            clock: &clock,
            wall: &SystemClock,
            observer: &mut *observer,
            identity: identity(),
            cancel: Some(interrupt_flag()),
        };
        engine.resume(run.id)?
    };
    finish(&outcome, &lab, args.format, store.as_ref())
}

pub fn finish(outcome: &RunOutcome, lab: &Lab, format: RunFormat, store: &dyn Store) -> CmdResult {
    let run = store.run(outcome.run)?;
    let summary = summary::Summary::new(outcome, &run, Some(lab)).map_err(Failure::internal)?;
    match format {
        RunFormat::Text => output::data(&summary.render_text())?,
        RunFormat::Json => output::json(&summary)?,
        RunFormat::Jsonl => {}
    }
    Ok(match outcome.state {
        RunState::Succeeded => Exit::Success,
        RunState::Interrupted | RunState::Running => Exit::Interrupted,
        RunState::AwaitingApproval => {
            output::note(&format!(
                "run {0} awaits approval of its canary wave: `sfbpatch approve {0}`, then `sfbpatch resume`",
                outcome.run
            ));
            Exit::Interrupted
        }
        RunState::Failed => Exit::RunFailed,
    })
}

/// Ask on the terminal; refuse when there is none.
pub fn confirm(question: &str) -> Result<(), Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::refused(anyhow!(
            "{question} Not confirmed: there is no terminal to ask on; pass --yes"
        )));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(Failure::internal)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
        Ok(())
    } else {
        Err(Failure::refused(anyhow!(
            "not confirmed; nothing was changed"
        )))
    }
}
