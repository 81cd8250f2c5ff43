//! Engine overhead on the lab with `--speed 0`: N servers applied end to end, SQLite
//! durability on (WAL, synchronous = FULL) for the state store and the lab world.
//!
//! `cargo bench -p sfbpatch --bench engine [-- SERVERS]` (default 1000).

use std::time::Instant;

use sfbpatch_engine::{
    Clock, Engine, Identity, Millis, NoObserver, RunPolicy, RunSpec, RunState, TargetSpec,
};
use sfbpatch_lab::LabOptions;
use sfbpatch_plan::{Installer, PlanPolicy};

struct Wall;
impl Clock for Wall {
    fn now(&self) -> Millis {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as Millis
    }
    fn sleep(&self, d: Millis) {
        std::thread::sleep(std::time::Duration::from_millis(d));
    }
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let servers: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let installer = dir.path().join("SkypeServerUpdateInstaller.exe");
    let bytes = include_bytes!("../assets/SkypeServerUpdateInstaller.exe");
    std::fs::write(&installer, bytes).unwrap();
    let manifest = include_str!("../assets/demo-package.toml");
    let mut package = sfbpatch_plan::parse_manifest(manifest, "demo-package.toml").unwrap();
    package.installer = Installer::Path(installer.display().to_string());

    // Enough pools for the requested servers.
    let mut pools = servers;
    let (topology, deployment, plan) = loop {
        let text = sfbpatch_topology::generate(pools, 42);
        let deployment = sfbpatch_topology::load(&text, "generated").unwrap();
        let mut plan = sfbpatch_plan::plan(&deployment, &package, &PlanPolicy::default()).unwrap();
        if plan.servers.len() >= servers {
            plan.servers.truncate(servers);
            break (text, deployment, plan);
        }
        pools += pools / 2;
    };
    let lab_dir = dir.path().join("lab");
    let t = Instant::now();
    let lab = sfbpatch_lab::init(&lab_dir, &deployment, &LabOptions::default()).unwrap();
    let init = t.elapsed();

    let mut store = sfbpatch_store::SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let spec = RunSpec {
        topology_origin: "generated".into(),
        topology_snapshot: topology,
        operator: lab.operator().to_string(),
        plan,
        policy: RunPolicy::default(),
        target: TargetSpec::Lab {
            dir: lab_dir.display().to_string(),
        },
    };
    let steps = spec.plan.servers.len() * 11;
    let target = lab.target();
    let clock = lab.clock();
    let mut observer = NoObserver;
    let mut engine = Engine {
        store: &mut store,
        target: &target,
        clock: &clock,
        wall: &Wall,
        observer: &mut observer,
        identity: Identity {
            holder: "bench".into(),
            host: "localhost".into(),
            pid: std::process::id(),
        },
        cancel: None,
    };
    let t = Instant::now();
    let outcome = engine.start(spec).unwrap();
    let run = t.elapsed();
    assert_eq!(outcome.state, RunState::Succeeded);
    println!(
        "engine: {servers} servers ({steps} steps) applied in {:.2} s with speed 0; {:.0} us per step (journal + lab); lab init {:.2} s; peak RSS {:.0} MB",
        run.as_secs_f64(),
        run.as_secs_f64() * 1e6 / steps as f64,
        init.as_secs_f64(),
        peak_rss_mb()
    );
}
