//! Engine overhead on the lab with `--speed 0`: N servers applied end to end, SQLite
//! durability on (WAL, synchronous = NORMAL: commits survive a process crash) for the state store and the lab world.
//!
//! `cargo bench -p sfbpatch --bench engine [-- SERVERS]` (default 1000).

mod support;

use std::time::Instant;

use sfbpatch_engine::{RunPolicy, RunState};
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
    let steps = plan.servers.len() * 11;
    let (outcome, run) = support::apply_on_lab(
        &mut store,
        &lab,
        &lab_dir,
        topology,
        plan,
        RunPolicy::default(),
    );
    assert_eq!(outcome.state, RunState::Succeeded);
    println!(
        "engine: {servers} servers ({steps} steps) applied in {:.2} s with speed 0; {:.0} us per step (journal + lab); lab init {:.2} s; peak RSS {:.0} MB",
        run.as_secs_f64(),
        run.as_secs_f64() * 1e6 / steps as f64,
        init.as_secs_f64(),
        support::peak_rss_mb()
    );
}
