//! `sfbpatch apply` and `sfbpatch resume`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::anyhow;
use sfbpatch_engine::{
    Clock, Engine, Identity, Millis, RunOutcome, RunPolicy, RunSpec, RunState, Store, Target,
    TargetSpec,
};
use sfbpatch_lab::{Lab, LabClock, LabTarget};
use sfbpatch_ssh::{SshError, SshTarget};

use crate::cli::{ApplyArgs, ResumeArgs, RunFormat, RunOptions, SshArgs, TargetArgs, TargetChoice};
use crate::exit::{CmdResult, Exit, Failure};
use crate::{input, output, progress, summary};

pub use sfbpatch_engine::SystemClock;

/// This machine's host name.
pub fn this_host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The operator: `USER` (`USERNAME` on Windows, `LOGNAME`), else the numeric user id.
pub fn operator_name() -> String {
    ["USER", "USERNAME", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .or_else(|| {
            let status = std::fs::read_to_string("/proc/self/status").ok()?;
            let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
            Some(format!("uid {}", uid.split_whitespace().next()?))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// This controller: the operator, the controller's name (`--controller-name`, by default the
/// host name) and a fresh instance id.
pub fn identity(controller_name: Option<&str>) -> Identity {
    use std::hash::{BuildHasher, Hasher};
    let host = controller_name.map_or_else(this_host, str::to_string);
    let pid = std::process::id();
    // Randomly keyed per process: two instances never share an id, even with one pid.
    let mut nonce = std::collections::hash_map::RandomState::new().build_hasher();
    nonce.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    Identity {
        holder: operator_name(),
        instance: Identity::new_instance(&host, pid, nonce.finish() & 0xffff_ffff),
        host,
        pid,
    }
}

pub fn open_store(location: &str) -> Result<Box<dyn Store>, Failure> {
    let store = sfbpatch_store::open(location)?;
    Ok(crate::crash::wrap(store))
}

/// The store of earlier runs, for commands that only look at or continue them: a SQLite file
/// that does not exist or holds no store is refused (exit 3) and left as it is.
pub fn open_existing_store(location: &str) -> Result<Box<dyn Store>, Failure> {
    let store = sfbpatch_store::open_existing(location).map_err(|e| match e {
        sfbpatch_engine::StoreError::NoStore { .. } => Failure::refused(anyhow!(
            "{e}: give the --state of an earlier apply, or set SFBPATCH_STATE [{}]",
            e.code()
        )),
        e => Failure::from(e),
    })?;
    Ok(crate::crash::wrap(store))
}

/// Whether `lease` belongs to a controller of this machine (named after it) whose process
/// is gone: its lease need not be waited out. Liveness otherwise comes from renewal only.
pub fn held_by_a_dead_local_controller(lease: &sfbpatch_engine::Lease) -> bool {
    lease.host == this_host()
        && lease.pid != std::process::id()
        && !super::status::process_alive(lease.pid)
}

/// The run's controller died on this host (its process is gone): its leases are taken over at
/// once instead of after they expire. A controller alive, or on another host, keeps them:
/// `resume` is then refused naming it (one live controller per run).
fn take_over_from_a_dead_controller(
    store: &mut dyn Store,
    run: sfbpatch_engine::RunId,
) -> Result<(), Failure> {
    for lease in store.leases()? {
        // Broken only if the dead controller still holds it: another standby that saw the
        // same dead holder may have taken the lease a moment ago.
        if lease.run == run
            && held_by_a_dead_local_controller(&lease)
            && store
                .break_lease_held_by(&lease.pool, &lease.instance)?
                .is_some()
        {
            output::note(&format!(
                "run {run}'s controller (pid {} on this host) is gone: its lease on {} is taken over",
                lease.pid, lease.pool
            ));
        }
    }
    Ok(())
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
    unix_now_ms: i64,
) -> Result<RunPolicy, Failure> {
    let (file, origin) = match &run.policy {
        Some(path) => (crate::policy::load(path)?, path.display().to_string()),
        None => (
            crate::policy::PolicyFile::default(),
            "command line".to_string(),
        ),
    };
    let rollout = crate::policy::rollout(&file, run, &origin)?;
    let mut policy = rollout.run_policy(clock_now, unix_now_ms)?;
    policy.store_outage_limit_ms = run.store_outage_limit * 1000;
    policy.lease_ttl_ms = run.lease_ttl * 1000;
    let mut pairs = Vec::new();
    // Pairs the topology shows, then the policy file's.
    let mut named: Vec<[String; 2]> = deployment
        .pools
        .iter()
        .filter_map(|p| Some([p.fqdn.to_string(), p.paired_with.as_ref()?.to_string()]))
        .collect();
    named.extend(policy.pairs.iter().cloned());
    for [a, b] in &named {
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
    pairs.sort();
    pairs.dedup();
    policy.pairs = pairs;
    Ok(policy)
}

/// Ctrl-C: no new server starts or goes out of service, servers in their outage finish; a
/// second Ctrl-C stops at once, saying so, with the exit code of an interrupted run (4): the
/// journal keeps everything done so far, and `resume` probes the servers that were in flight
/// before anything runs again.
pub fn interrupt_flag() -> &'static AtomicBool {
    static FLAG: AtomicBool = AtomicBool::new(false);
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if FLAG.swap(true, Ordering::SeqCst) {
                // Said even with -q: the operator must know the run did not end by itself.
                tracing::info!("second Ctrl-C: stopped at once");
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "stopped at once: servers in flight were left where they are; `sfbpatch resume` probes them"
                );
                std::process::exit(Exit::Interrupted as i32);
            }
            // The first one is told by the engine's `StopRequested` event, in the run's own
            // display (a line above the bars, or a JSON line).
        });
    });
    &FLAG
}

/// What the pre-flight says of each planned server, read without changing anything: on the
/// package's build and in service (nothing to do unless its databases are behind), on the build
/// with something to finish, or to patch.
fn dry_run_verdicts(
    target: &(dyn sfbpatch_engine::Target + Sync),
    plan: &sfbpatch_plan::Plan,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::from("\npre-flight (read only):\n");
    let w = output::name_column(plan.servers.iter().map(|s| s.fqdn.as_str()));
    for server in &plan.servers {
        let verdict = match target.preflight(server) {
            Err(e) => format!("cannot tell: {e}"),
            Ok(f) => verdict(&f, plan.package.version),
        };
        let _ = writeln!(
            s,
            "  {:<w$} {}",
            output::printable(server.fqdn.as_str()),
            verdict
        );
    }
    s
}

/// What a run would do on a machine the pre-flight read as `f`.
pub fn verdict(f: &sfbpatch_engine::MachineFacts, package: sfbpatch_plan::Build) -> String {
    match f {
        f if f.reboot_pending => "refused at the pre-flight: a restart is pending".to_string(),
        f if f.build == Some(package) && f.in_service => {
            "already current (on the package's build, in service): no outage; its databases are probed before anything runs".to_string()
        }
        f if f.build == Some(package) => {
            "on the package's build but not in service: only the steps that finish it run".to_string()
        }
        f => match f.build {
            Some(b) => format!("to patch: build {b} installed"),
            None if f.management_shell => "to patch".to_string(),
            None => "no Skype for Business components: only its databases are updated, from another server".to_string(),
        },
    }
}

/// The lab's SQL Server machines that have the Management Shell: the plan runs
/// `Install-CsDatabase` on them rather than from a Front End server.
fn lab_components(dir: &std::path::Path) -> Result<Vec<String>, Failure> {
    let lab = sfbpatch_lab::Lab::open(dir).map_err(Failure::bad_input)?;
    let world = lab.show().map_err(Failure::internal)?;
    Ok(world
        .servers
        .into_iter()
        .filter(|s| {
            matches!(
                s.kind,
                sfbpatch_plan::ServerKind::BackEnd | sfbpatch_plan::ServerKind::Store
            ) && s.runs.management_shell
        })
        .map(|s| s.fqdn)
        .collect())
}

/// The plan of a run against `at`: a lab's SQL Server machines that have the Management Shell
/// count as `--sfb-components-on`.
pub fn plan_at(
    deployment: &sfbpatch_topology::Deployment,
    package: sfbpatch_plan::Package,
    only: &[String],
    planning: &crate::cli::PlanningArgs,
    at: &TargetArgs,
) -> Result<sfbpatch_plan::Plan, Failure> {
    let mut components = planning.sfb_components_on.clone();
    if let (TargetChoice::Lab, Some(dir)) = (at.target, &at.lab) {
        components.extend(lab_components(dir)?);
    }
    super::plan::make_plan(
        deployment,
        package,
        only,
        &components,
        planning.reset_missing_replicas,
    )
}

pub fn apply(args: ApplyArgs, color: bool) -> CmdResult {
    if let Some(addr) = args.serve {
        super::serve::check_beside(addr)?;
    }
    let (text, deployment) = input::topology(&args.topology)?;
    let package = input::package(&args.package)?;
    // The package first: a bad manifest or installer is refused before a lab or store opens.
    input::check_installer(&package)?;
    let plan = plan_at(&deployment, package, &args.only, &args.planning, &args.at)?;
    if args.standby {
        return super::standby::for_apply(&args, &plan, color);
    }
    let (opened, target_spec) = open_target(
        &args.at,
        &args.topology,
        &text,
        &plan,
        &args.state.state,
        true,
    )?;
    let clock_now = opened.clock().now();
    let policy = policy(
        &args.run,
        &plan,
        &deployment,
        clock_now,
        opened.calendar_ms(clock_now),
    )?;
    let mut store = open_store(&args.state.state)?;
    let pools: std::collections::BTreeSet<String> =
        plan.servers.iter().map(|s| s.pool.to_string()).collect();

    if args.dry_run {
        output::data(&sfbpatch_plan::render_text(&plan))?;
        output::data(&dry_run_verdicts(opened.target(), &plan))?;
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
    if let Some(addr) = args.serve {
        super::serve::beside_run(&args.state.state, addr)?;
    }
    let spec = RunSpec {
        topology_origin: args.topology.display().to_string(),
        topology_snapshot: text,
        operator: opened.operator(),
        plan,
        policy,
        target: target_spec,
    };
    let outcome = {
        let (target, clock) = (opened.target(), opened.clock());
        let mut observer = progress::observer(args.run.format, color);
        let mut engine = Engine {
            store: &mut *store,
            target,
            clock,
            wall: &SystemClock,
            observer: &mut *observer,
            identity: identity(args.run.controller_name.as_deref()),
            cancel: Some(interrupt_flag()),
        };
        engine.start(spec)?
    };
    finish_run(&outcome, opened.lab(), args.run.format, store.as_ref())
}

/// Where a run's steps go, opened.
pub enum RunTarget {
    Lab {
        lab: Lab,
        target: LabTarget,
        clock: LabClock,
    },
    Ssh(Box<SshTarget>),
}

impl RunTarget {
    fn open_lab(lab: Lab) -> Self {
        RunTarget::Lab {
            target: lab.target(),
            clock: lab.clock(),
            lab,
        }
    }

    pub fn target(&self) -> &(dyn Target + Sync) {
        match self {
            RunTarget::Lab { target, .. } => target,
            RunTarget::Ssh(ssh) => ssh.as_ref(),
        }
    }

    /// The lab's virtual clock, or the wall clock for real servers.
    pub fn clock(&self) -> &(dyn Clock + Sync) {
        match self {
            RunTarget::Lab { clock, .. } => clock,
            RunTarget::Ssh(_) => &SystemClock,
        }
    }

    /// The calendar instant (Unix milliseconds) a reading of this target's clock stands for:
    /// the lab's own calendar (its creation plus virtual time, the same in every process), or
    /// the wall clock's.
    pub fn calendar_ms(&self, clock_now: Millis) -> i64 {
        match self {
            RunTarget::Lab { lab, .. } => lab.epoch_unix_ms() + clock_now as i64,
            RunTarget::Ssh(_) => clock_now as i64,
        }
    }

    pub fn lab(&self) -> Option<&Lab> {
        match self {
            RunTarget::Lab { lab, .. } => Some(lab),
            RunTarget::Ssh(_) => None,
        }
    }

    /// The account acting on the servers: the lab's operator, or the SSH user(s).
    pub fn operator(&self) -> String {
        match self {
            RunTarget::Lab { lab, .. } => lab.operator().to_string(),
            RunTarget::Ssh(ssh) => ssh.users().join(", "),
        }
    }
}

/// The target `apply` (or `probe`) was asked for, checked: every planned server is in the
/// lab, or has connection details, a usable key and a trusted host key that accepts it. With
/// `check_builds`, a lab server on a newer build or another product line than the package is
/// refused (`probe` shows it instead).
pub fn open_target(
    args: &TargetArgs,
    topology: &Path,
    topology_text: &str,
    plan: &sfbpatch_plan::Plan,
    state: &str,
    check_builds: bool,
) -> Result<(RunTarget, TargetSpec), Failure> {
    match args.target {
        TargetChoice::Lab => {
            if args.connections.is_some() || args.ssh.accept_new_host_keys {
                return Err(Failure::bad_input(anyhow!(
                    "--connections and --accept-new-host-keys are for --target ssh"
                )));
            }
            let dir = args
                .lab
                .as_ref()
                .ok_or_else(|| Failure::bad_input(anyhow!("--target lab needs --lab DIR")))?;
            let lab = open_lab(dir)?;
            let mut installed = Vec::with_capacity(plan.servers.len());
            for server in &plan.servers {
                let Ok(detail) = lab.server(server.fqdn.as_str()) else {
                    return Err(Failure::bad_input(anyhow!(
                        "server {} is in the plan but not in the lab at {} (was the lab made from another topology?)",
                        server.fqdn,
                        dir.display()
                    )));
                };
                installed.push((server.fqdn.clone(), detail.server.installed_build));
            }
            if check_builds {
                sfbpatch_plan::check_installed(plan, &installed).map_err(Failure::bad_input)?;
            }
            let spec = TargetSpec::Lab {
                dir: std::path::absolute(dir)
                    .unwrap_or(dir.clone())
                    .display()
                    .to_string(),
            };
            Ok((RunTarget::open_lab(lab), spec))
        }
        TargetChoice::Ssh => {
            if args.lab.is_some() {
                return Err(Failure::bad_input(anyhow!(
                    "--lab is for --target lab; --target ssh reaches the servers themselves"
                )));
            }
            let connections = args
                .connections
                .as_ref()
                .map(|p| std::path::absolute(p).unwrap_or(p.clone()));
            let ssh = ssh_target(
                topology_text,
                &topology.display().to_string(),
                connections.as_deref(),
                plan,
                state,
                &args.ssh,
            )?;
            check_ssh(&ssh)?;
            let spec = TargetSpec::Ssh {
                connections: connections.map(|p| p.display().to_string()),
            };
            Ok((RunTarget::Ssh(Box::new(ssh)), spec))
        }
    }
}

/// The SSH target for `plan`'s servers: connection details from the connections file (if
/// any) over the inventory's, host keys pinned in the state store at `state`.
fn ssh_target(
    topology_text: &str,
    topology_origin: &str,
    connections: Option<&Path>,
    plan: &sfbpatch_plan::Plan,
    state: &str,
    ssh: &SshArgs,
) -> Result<SshTarget, Failure> {
    if ssh.max_connections == 0 {
        return Err(Failure::bad_input(anyhow!(
            "--max-connections must be at least 1"
        )));
    }
    let file = match connections {
        Some(path) => {
            let text = input::read_text(path, "connections file")?;
            let base = path.parent().unwrap_or(Path::new("."));
            Some(
                sfbpatch_ssh::config::parse_connections(&text, &path.display().to_string(), base)
                    .map_err(Failure::bad_input)?,
            )
        }
        None => None,
    };
    // Only an inventory has connection keys; it was read once already, so it reads again.
    let inventory = sfbpatch_topology::read_topology(topology_text, topology_origin)
        .map(|t| t.connections)
        .unwrap_or_default();
    let base = Path::new(topology_origin)
        .parent()
        .unwrap_or(Path::new("."));
    let inventory = sfbpatch_ssh::config::inventory_entries(&inventory, topology_origin, base)
        .map_err(Failure::bad_input)?;
    let endpoints = sfbpatch_ssh::config::endpoints(
        plan.machines().into_iter().map(|fqdn| fqdn.as_str()),
        file.as_ref(),
        &inventory,
    )
    .map_err(Failure::bad_input)?;
    let options = sfbpatch_ssh::SshOptions {
        max_connections: ssh.max_connections,
        accept_new_host_keys: ssh.accept_new_host_keys,
        ..sfbpatch_ssh::SshOptions::default()
    };
    SshTarget::new(endpoints, Box::new(host_key_store(state)?), options).map_err(|e| match e {
        SshError::Identity { .. } | SshError::Agent { .. } => Failure::bad_input(e),
        other => Failure::internal(other),
    })
}

/// A second handle on the state store, for the SSH target's host keys: `Send`, so that the
/// target can be shared by the engine's threads. Opens what `sfbpatch_store::open` opens.
fn host_key_store(location: &str) -> Result<Box<dyn Store + Send>, Failure> {
    let store: Box<dyn Store + Send> =
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            Box::new(sfbpatch_store::PgStore::open(location)?)
        } else {
            let path = location.strip_prefix("sqlite:").unwrap_or(location);
            Box::new(sfbpatch_store::SqliteStore::open(Path::new(path))?)
        };
    Ok(store)
}

/// Connect to every server before anything runs: an unknown or changed host key is refused
/// (exit 3), a server that cannot be reached or refuses the key fails the check (exit 5).
fn check_ssh(ssh: &SshTarget) -> Result<(), Failure> {
    let failed: Vec<SshError> = ssh
        .check()
        .into_iter()
        .filter_map(|(_, r)| r.err())
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    let host_keys = failed.iter().all(|e| {
        matches!(
            e,
            SshError::HostKeyUnknown { .. } | SshError::HostKeyChanged { .. }
        )
    });
    let mut message = format!(
        "{} server(s) failed the SSH check; nothing was changed",
        failed.len()
    );
    for e in &failed {
        message.push_str(&format!("\n  - {e}"));
    }
    Err(if host_keys {
        Failure::refused(anyhow!(message))
    } else {
        Failure::internal(anyhow!(message))
    })
}

pub fn resume(args: ResumeArgs, color: bool) -> CmdResult {
    if let Some(addr) = args.serve {
        super::serve::check_beside(addr)?;
    }
    let mut store = open_existing_store(&args.state.state)?;
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
    if args.connections.is_some() && matches!(run.spec.target, TargetSpec::Lab { .. }) {
        return Err(Failure::bad_input(anyhow!(
            "--connections: run {} patches a lab, not servers over SSH",
            run.id
        )));
    }
    take_over_from_a_dead_controller(&mut *store, run.id)?;
    if let Some(addr) = args.serve {
        super::serve::beside_run(&args.state.state, addr)?;
    }
    let opened = match &run.spec.target {
        TargetSpec::Lab { dir } => RunTarget::open_lab(open_lab(Path::new(dir))?),
        TargetSpec::Ssh { connections } => RunTarget::Ssh(Box::new(ssh_target(
            &run.spec.topology_snapshot,
            &run.spec.topology_origin,
            args.connections
                .as_deref()
                .or(connections.as_deref().map(Path::new)),
            &run.spec.plan,
            &args.state.state,
            &args.ssh,
        )?)),
    };
    let outcome = {
        let (target, clock) = (opened.target(), opened.clock());
        let mut observer = progress::observer(args.format, color);
        let mut engine = Engine {
            store: &mut *store,
            target,
            clock,
            wall: &SystemClock,
            observer: &mut *observer,
            identity: identity(args.controller_name.as_deref()),
            cancel: Some(interrupt_flag()),
        };
        let windows = match &run.spec.policy.window_spec {
            Some(spec) => {
                // The window open now (or the next), and the night after it: what no longer
                // fits tonight waits for tomorrow's.
                let daily = crate::policy::DailyWindow::parse_spec(spec)?;
                let now = clock.now();
                let window = daily.next(now, opened.calendar_ms(now))?;
                let end = window.closes_at;
                let after = daily.next(end, opened.calendar_ms(end))?;
                Some(vec![window, after])
            }
            None => None,
        };
        engine.resume_with(run.id, windows)?
    };
    finish_run(&outcome, opened.lab(), args.format, store.as_ref())
}

pub fn finish(outcome: &RunOutcome, lab: &Lab, format: RunFormat, store: &dyn Store) -> CmdResult {
    finish_run(outcome, Some(lab), format, store)
}

/// The summary and the exit code; with the lab, the lab's own record of outages.
pub fn finish_run(
    outcome: &RunOutcome,
    lab: Option<&Lab>,
    format: RunFormat,
    store: &dyn Store,
) -> CmdResult {
    let run = store.run(outcome.run)?;
    // The pools' figures from the journal, as the report computes them, whatever the target;
    // a lab's own record is compared with them.
    let report =
        sfbpatch_report::build(&run, &store.journal(run.id)?, &[]).map_err(Failure::internal)?;
    let summary = summary::Summary::new(outcome, &run, &report, lab).map_err(Failure::internal)?;
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
