//! What the benchmarks share: the demo package with its stand-in installer, generated fleets,
//! peak memory.

use std::path::Path;
use std::time::{Duration, Instant};

use sfbpatch_engine::{
    Engine, Identity, NoObserver, RunOutcome, RunPolicy, RunSpec, Store, TargetSpec,
};
use sfbpatch_lab::Lab;
use sfbpatch_plan::{Installer, Package, Plan, PlanPolicy};
use sfbpatch_topology::Deployment;

/// Peak resident memory of this process, in MB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// What this process has written so far: bytes handed to `write` calls, and bytes sent to the
/// storage device (`/proc/self/io`; zero on a file system in memory).
#[allow(dead_code)] // not every bench reads it
pub fn written() -> (u64, u64) {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("wchar:"), field("write_bytes:"))
}

/// Writes what the page cache holds back to disk (`sync`), so that a measurement does not pay
/// for the writes of what came before it.
#[allow(dead_code)] // not every bench writes much
pub fn settle_disk() {
    let _ = std::process::Command::new("sync").status();
}

/// The demo package, its installer written into `dir`.
pub fn package(dir: &Path) -> Package {
    let installer = dir.join("SkypeServerUpdateInstaller.exe");
    std::fs::write(
        &installer,
        include_bytes!("../../assets/SkypeServerUpdateInstaller.exe"),
    )
    .unwrap();
    let mut package =
        sfbpatch_plan::parse_manifest(include_str!("../../assets/demo-package.toml"), "pkg")
            .unwrap();
    package.installer = Installer::Path(installer.display().to_string());
    package
}

/// A generated deployment planned for at least `servers` servers, cut after whole back ends.
/// A generated deployment of the fewest pools whose plan has at least `servers` machines, and
/// that plan, whole: every pool with its Front End servers, back end and the store SQL Servers
/// it uses (a plan cut in the middle would leave databases behind, and the run would fail the
/// final database check, as it should).
pub fn fleet(servers: usize, seed: u64, package: &Package) -> (String, Deployment, Plan) {
    let make = |pools: usize| {
        let text = sfbpatch_topology::generate(pools, seed);
        let deployment = sfbpatch_topology::load(&text, "generated").unwrap();
        let plan = sfbpatch_plan::plan(&deployment, package, &PlanPolicy::default()).unwrap();
        (text, deployment, plan)
    };
    let (mut low, mut high) = (1, 1);
    while make(high).2.servers.len() < servers {
        low = high + 1;
        high *= 2;
    }
    while low < high {
        let mid = (low + high) / 2;
        if make(mid).2.servers.len() >= servers {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    make(high)
}

pub fn identity() -> Identity {
    Identity {
        holder: "bench".into(),
        host: "localhost".into(),
        pid: std::process::id(),
        instance: "test#1.0".into(),
    }
}

/// `plan` applied to the lab in `lab_dir` with `store` and `policy`, as `sfbpatch apply` would
/// (speed 0, no observer): the outcome and the wall time the run took.
#[allow(dead_code)] // not every bench runs a plan
pub fn apply_on_lab(
    store: &mut dyn Store,
    lab: &Lab,
    lab_dir: &Path,
    topology: String,
    plan: Plan,
    policy: RunPolicy,
) -> (RunOutcome, Duration) {
    let spec = RunSpec {
        topology_origin: "generated".into(),
        topology_snapshot: topology,
        operator: lab.operator().to_string(),
        plan,
        policy,
        target: TargetSpec::Lab {
            dir: lab_dir.display().to_string(),
        },
    };
    let target = lab.target();
    let clock = lab.clock();
    let mut observer = NoObserver;
    let mut engine = Engine {
        store,
        target: &target,
        clock: &clock,
        wall: &sfbpatch_engine::SystemClock,
        observer: &mut observer,
        identity: identity(),
        cancel: None,
    };
    let t = Instant::now();
    let outcome = engine.start(spec).unwrap();
    (outcome, t.elapsed())
}
