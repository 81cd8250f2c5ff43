//! Engine overhead on the lab with `--speed 0`: N servers applied end to end, SQLite
//! durability on (WAL, synchronous = NORMAL: commits survive a process crash) for the state store and the lab world.
//!
//! `cargo bench -p sfbpatch --bench engine [-- SERVERS]` (default 1000).

mod support;

use std::time::Instant;

use sfbpatch_engine::{Engine, NoObserver, RunPolicy, RunSpec, RunState, TargetSpec};
use sfbpatch_lab::LabOptions;

fn main() {
    let servers: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let package = support::package(dir.path());
    let (topology, deployment, plan) = support::fleet(servers, 42, &package);
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
        wall: &sfbpatch_engine::SystemClock,
        observer: &mut observer,
        identity: support::identity(),
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
        support::peak_rss_mb()
    );
}
