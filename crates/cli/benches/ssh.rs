//! The SSH target against the in-process lab target, over loopback SSH: real sshd instances
//! (scripts/sshd-lab.sh, one per server) whose ForceCommand is `sfbpatch lab shell`.
//!
//! Three targets run the same plan through the engine on the wall clock: the lab in-process;
//! `sfbpatch lab shell` run as a local process per call, with the script a Windows host would
//! get (what the SSH target costs without SSH: a process per call and the lab's database
//! shared between processes); and the SSH target.
//!
//! 1. Per-step overhead: a few servers one at a time, lab at speed 0 (steps take no simulated
//!    time): the cost of one target call.
//! 2. A fleet: SERVERS Standard Edition servers, CONNECTIONS SSH connections and as many
//!    servers in their outage window at once, the lab at SPEED (simulated seconds per real
//!    second) so that steps take real time; the mean step time and the wall time over SSH
//!    against in-process. The goal: no more than 2x the in-process step time.
//!
//! `cargo bench -p sfbpatch --bench ssh [-- SERVERS CONNECTIONS SPEED [GRACE_MS]]` (default 50
//! 10 600, and the target's default idle grace).
//! The figures are printed; nothing is asserted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sfbpatch_engine::{
    Engine, Event, Identity, Millis, Observer, Probe, RunPolicy, RunSpec, RunState, StepOutcome,
    StepRequest, Target, TargetError, TargetSpec,
};
use sfbpatch_lab::LabOptions;
use sfbpatch_plan::{Installer, Plan, PlanPolicy};
use sfbpatch_ssh::config::{Endpoint, Identity as Key};
use sfbpatch_ssh::{MemoryHostKeys, SshOptions, SshTarget};

/// Counts the calls that reach a target.
struct Counted<'a> {
    inner: &'a (dyn Target + Sync),
    calls: AtomicU64,
}

impl Target for Counted<'_> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn execute(&self, req: &StepRequest<'_>) -> Result<StepOutcome, TargetError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.execute(req)
    }
    fn probe(&self, req: &StepRequest<'_>) -> Result<Probe, TargetError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.probe(req)
    }
    fn reboot(&self, req: &StepRequest<'_>) -> Result<StepOutcome, TargetError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.reboot(req)
    }
    fn recover(&self, req: &StepRequest<'_>) -> Result<StepOutcome, TargetError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.recover(req)
    }
    fn preflight(
        &self,
        server: &sfbpatch_plan::ServerPlan,
    ) -> Result<sfbpatch_engine::MachineFacts, TargetError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.preflight(server)
    }
}

/// `sfbpatch lab shell` as a local process per call: the lab stand-in without SSH.
struct LocalShell {
    lab: PathBuf,
}

impl LocalShell {
    fn call(
        &self,
        op: sfbpatch_remote::Operation,
        req: &StepRequest<'_>,
    ) -> Result<sfbpatch_remote::ScriptResult, TargetError> {
        let script = sfbpatch_remote::script_for(op, req.server, req.step, req.package)
            .map_err(|e| TargetError::Refused(e.to_string()))?;
        let o = Command::new(env!("CARGO_BIN_EXE_sfbpatch"))
            .args(["lab", "shell", "--lab"])
            .arg(&self.lab)
            .args(["--host", req.server.fqdn.as_str()])
            .env("SSH_ORIGINAL_COMMAND", script.command_line())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| TargetError::Refused(e.to_string()))?;
        script
            .parse_result(&String::from_utf8_lossy(&o.stdout))
            .map_err(|e| TargetError::Refused(e.to_string()))
    }
}

fn outcome(r: sfbpatch_remote::ScriptResult) -> StepOutcome {
    StepOutcome::exit(r.exit_code, r.output)
}

impl Target for LocalShell {
    fn kind(&self) -> &'static str {
        "lab-shell"
    }
    fn execute(&self, req: &StepRequest<'_>) -> Result<StepOutcome, TargetError> {
        self.call(sfbpatch_remote::Operation::Execute, req)
            .map(outcome)
    }
    fn probe(&self, req: &StepRequest<'_>) -> Result<Probe, TargetError> {
        let r = self.call(sfbpatch_remote::Operation::Probe, req)?;
        Ok(Probe {
            verdict: if r.done == Some(true) {
                sfbpatch_engine::ProbeVerdict::Done
            } else {
                sfbpatch_engine::ProbeVerdict::NotDone
            },
            facts: r.facts.to_string(),
        })
    }
    fn reboot(&self, req: &StepRequest<'_>) -> Result<StepOutcome, TargetError> {
        self.call(sfbpatch_remote::Operation::Reboot, req)
            .map(outcome)
    }
    fn recover(&self, req: &StepRequest<'_>) -> Result<StepOutcome, TargetError> {
        self.call(sfbpatch_remote::Operation::Recover, req)
            .map(outcome)
    }
    fn preflight(
        &self,
        server: &sfbpatch_plan::ServerPlan,
    ) -> Result<sfbpatch_engine::MachineFacts, TargetError> {
        let lab =
            sfbpatch_lab::Lab::open(&self.lab).map_err(|e| TargetError::Refused(e.to_string()))?;
        lab.target().preflight_server(server.fqdn.as_str())
    }
}

/// Step durations as the engine measured them.
#[derive(Default)]
struct Steps {
    durations: Vec<Millis>,
}

impl Observer for Steps {
    fn on_event(&mut self, event: &Event) {
        if let Event::StepFinished { duration_ms, .. } = event {
            self.durations.push(*duration_ms);
        }
    }
}

impl Steps {
    fn mean(&self) -> f64 {
        self.durations.iter().sum::<Millis>() as f64 / self.durations.len().max(1) as f64
    }
}

struct Measured {
    wall_s: f64,
    calls: u64,
    mean_step_ms: f64,
}

fn run(
    plan: &Plan,
    target: &(dyn Target + Sync),
    parallel: u32,
    state: &Path,
    topology: &str,
) -> Measured {
    let mut store = sfbpatch_store::SqliteStore::open(state).unwrap();
    let counted = Counted {
        inner: target,
        calls: AtomicU64::new(0),
    };
    let mut steps = Steps::default();
    let spec = RunSpec {
        topology_origin: "bench".into(),
        topology_snapshot: topology.to_string(),
        operator: "LAB\\sfbadmin".into(),
        plan: plan.clone(),
        policy: RunPolicy {
            max_parallel: parallel,
            ..RunPolicy::default()
        },
        target: TargetSpec::Ssh { connections: None },
    };
    let mut engine = Engine {
        store: &mut store,
        target: &counted,
        clock: &sfbpatch_engine::SystemClock,
        wall: &sfbpatch_engine::SystemClock,
        observer: &mut steps,
        identity: Identity {
            holder: "bench".into(),
            host: "localhost".into(),
            pid: std::process::id(),
            instance: "bench#1.0".into(),
        },
        cancel: None,
    };
    let t = Instant::now();
    let outcome = engine.start(spec).unwrap();
    let wall_s = t.elapsed().as_secs_f64();
    assert_eq!(outcome.state, RunState::Succeeded, "{:?}", outcome.servers);
    Measured {
        wall_s,
        calls: counted.calls.load(Ordering::Relaxed),
        mean_step_ms: steps.mean(),
    }
}

/// One sshd per server for `lab`; FQDN -> port. `None` when sshd cannot be had.
fn start_sshd(dir: &Path, lab: &Path, servers: &[String]) -> Option<BTreeMap<String, u16>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/sshd-lab.sh");
    let o = Command::new("bash")
        .arg(&script)
        .arg("start")
        .arg("--dir")
        .arg(dir.join("sshd"))
        .arg("--lab")
        .arg(lab)
        .arg("--bin")
        .arg(env!("CARGO_BIN_EXE_sfbpatch"))
        .arg("--authorized-keys")
        .arg(dir.join("id_ed25519.pub"))
        .arg("--owner")
        .arg(std::process::id().to_string())
        .args(servers)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if !o.status.success() {
        eprintln!(
            "ssh bench skipped: sshd could not be started: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
        return None;
    }
    Some(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[0].to_string(), f[2].parse().unwrap())
            })
            .collect(),
    )
}

fn stop_sshd(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/sshd-lab.sh");
    let _ = Command::new("bash")
        .arg(script)
        .arg("stop")
        .arg("--dir")
        .arg(dir.join("sshd"))
        .stdin(Stdio::null())
        .output();
}

fn ssh_target(
    dir: &Path,
    ports: &BTreeMap<String, u16>,
    connections: usize,
    grace: Option<std::time::Duration>,
) -> SshTarget {
    let user = Command::new("id").arg("-un").output().unwrap();
    let user = String::from_utf8_lossy(&user.stdout).trim().to_string();
    let endpoints = ports
        .iter()
        .map(|(fqdn, port)| Endpoint {
            server: fqdn.clone(),
            host: "127.0.0.1".into(),
            port: *port,
            user: user.clone(),
            identity: Key::File(dir.join("id_ed25519")),
            host_key: None,
        })
        .collect();
    SshTarget::new(
        endpoints,
        Box::new(MemoryHostKeys::default()),
        SshOptions {
            max_connections: connections,
            accept_new_host_keys: true,
            idle_grace: grace.unwrap_or(SshOptions::default().idle_grace),
            ..SshOptions::default()
        },
    )
    .unwrap()
}

fn lab(dir: &Path, name: &str, deployment: &sfbpatch_topology::Deployment, speed: f64) -> PathBuf {
    let path = dir.join(name);
    sfbpatch_lab::init(
        &path,
        deployment,
        &LabOptions {
            speed,
            ..LabOptions::default()
        },
    )
    .unwrap();
    path
}

fn main() {
    let args: Vec<f64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let servers = args.first().map_or(50, |n| *n as usize);
    let connections = args.get(1).map_or(10, |n| *n as usize);
    let speed = args.get(2).copied().unwrap_or(600.0);
    let grace = args
        .get(3)
        .map(|ms| std::time::Duration::from_secs_f64(ms / 1000.0));

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let installer = d.join("SkypeServerUpdateInstaller.exe");
    std::fs::write(
        &installer,
        include_bytes!("../assets/SkypeServerUpdateInstaller.exe"),
    )
    .unwrap();
    let mut package =
        sfbpatch_plan::parse_manifest(include_str!("../assets/demo-package.toml"), "pkg").unwrap();
    package.installer = Installer::Path(installer.display().to_string());
    let mut topology = String::new();
    for i in 1..=servers {
        topology.push_str(&format!(
            "[[pool]]\nfqdn = \"se{i:03}.bench.example\"\nsite = \"Bench\"\nedition = \"standard\"\n\n"
        ));
    }
    let deployment = sfbpatch_topology::load(&topology, "bench.toml").unwrap();
    let plan = sfbpatch_plan::plan(&deployment, &package, &PlanPolicy::default()).unwrap();
    let names: Vec<String> = plan.servers.iter().map(|s| s.fqdn.to_string()).collect();
    let key = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(d.join("id_ed25519"))
        .stdin(Stdio::null())
        .status();
    if !key.is_ok_and(|s| s.success()) {
        eprintln!("ssh bench skipped: ssh-keygen is not available");
        return;
    }

    // 1. Per-step overhead: a few servers, one at a time, speed 0.
    let few = 5.min(servers);
    let mut small = plan.clone();
    small.servers.truncate(few);
    let local_lab = lab(d, "lab-local-0", &deployment, 0.0);
    let shell_lab = lab(d, "lab-shell-0", &deployment, 0.0);
    let ssh_lab = lab(d, "lab-ssh-0", &deployment, 0.0);
    let Some(ports) = start_sshd(d, &ssh_lab, &names[..few]) else {
        return;
    };
    let opened = sfbpatch_lab::Lab::open(&local_lab).unwrap();
    let local = run(
        &small,
        &opened.target(),
        1,
        &d.join("local-0.db"),
        &topology,
    );
    let shell = LocalShell { lab: shell_lab };
    let process = run(&small, &shell, 1, &d.join("shell-0.db"), &topology);
    let ssh = ssh_target(d, &ports, connections, grace);
    let remote = run(&small, &ssh, 1, &d.join("ssh-0.db"), &topology);
    drop(ssh);
    stop_sshd(d);
    let per = |m: &Measured| m.wall_s * 1000.0 / m.calls as f64;
    println!(
        "ssh per step: {few} servers one at a time, speed 0, {} calls each: in-process \
         {:.2} ms/call; lab shell as a local process {:.2} ms/call; over SSH {:.2} ms/call. \
         SSH adds {:.2} ms per call to the lab stand-in ({:.2} ms over in-process)",
        remote.calls,
        per(&local),
        per(&process),
        per(&remote),
        per(&remote) - per(&process),
        per(&remote) - per(&local),
    );

    // 2. The fleet: steps take real time.
    let local_lab = lab(d, "lab-local", &deployment, speed);
    let shell_lab = lab(d, "lab-shell", &deployment, speed);
    let ssh_lab = lab(d, "lab-ssh", &deployment, speed);
    let Some(ports) = start_sshd(d, &ssh_lab, &names) else {
        return;
    };
    let opened = sfbpatch_lab::Lab::open(&local_lab).unwrap();
    let parallel = connections as u32;
    let local = run(
        &plan,
        &opened.target(),
        parallel,
        &d.join("local.db"),
        &topology,
    );
    let shell = LocalShell { lab: shell_lab };
    let process = run(&plan, &shell, parallel, &d.join("shell.db"), &topology);
    let ssh = ssh_target(d, &ports, connections, grace);
    let remote = run(&plan, &ssh, parallel, &d.join("ssh.db"), &topology);
    let opened_connections = ssh.connections_opened();
    drop(ssh);
    stop_sshd(d);
    println!(
        "ssh fleet: {servers} servers, {connections} connections, {parallel} in outage at once, \
         lab speed {speed}: mean step / wall: in-process {:.0} ms / {:.2} s; lab shell as a \
         local process {:.0} ms / {:.2} s; over SSH {:.0} ms / {:.2} s ({} connections \
         opened). Over SSH against in-process: step time x{:.2}, wall time x{:.2} (goal: step \
         time at most x2); against the local lab shell: step time x{:.2}, wall time x{:.2}",
        local.mean_step_ms,
        local.wall_s,
        process.mean_step_ms,
        process.wall_s,
        remote.mean_step_ms,
        remote.wall_s,
        opened_connections,
        remote.mean_step_ms / local.mean_step_ms,
        remote.wall_s / local.wall_s,
        remote.mean_step_ms / process.mean_step_ms,
        remote.wall_s / process.wall_s,
    );
}
