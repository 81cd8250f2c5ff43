//! A rollout over a generated fleet in the lab at `--speed 0`: wall time, peak memory, and the
//! simulated makespan against its lower bound
//! max(longest single server, total outage work / parallelism, longest chain forced by the
//! serial rules: a pool's Front End servers one at a time, then its back end's machines one at a
//! time once every Front End server of every pool on that back end has finished).
//!
//! `cargo bench -p sfbpatch --bench rollout [-- SERVERS PARALLEL]` (default 10000 servers, 50).

mod support;

use std::collections::HashMap;
use std::time::Instant;

use sfbpatch_engine::{
    Engine, Millis, NoObserver, RunPolicy, RunSpec, RunState, TargetSpec, policy::default_duration,
};
use sfbpatch_lab::LabOptions;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let servers = args.first().copied().unwrap_or(10_000);
    let parallel = args.get(1).copied().unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let package = support::package(dir.path());
    let (topology, deployment, plan) = support::fleet(servers, 7, &package);
    let n = plan.servers.len();
    let lab_dir = dir.path().join("lab");
    let lab = sfbpatch_lab::init(&lab_dir, &deployment, &LabOptions::default()).unwrap();

    // Lower bound from the lab's default durations.
    let runs = |st: &sfbpatch_plan::PlannedStep| {
        st.not_applicable.is_none()
            && !matches!(st.action, sfbpatch_plan::Action::DatabasesUpdatedBy { .. })
    };
    let total = |s: &sfbpatch_plan::ServerPlan| -> Millis {
        s.steps
            .iter()
            .filter(|st| runs(st))
            .map(|st| default_duration(st.id))
            .sum()
    };
    let outage = |s: &sfbpatch_plan::ServerPlan| -> Millis {
        s.steps
            .iter()
            .filter(|st| st.in_outage && runs(st))
            .map(|st| default_duration(st.id))
            .sum()
    };
    let longest = plan.servers.iter().map(total).max().unwrap();
    let work: Millis = plan.servers.iter().map(outage).sum();
    // Front End chains per pool; a back end's chain starts when its longest pool chain ends.
    let mut pool_chain: HashMap<String, Millis> = HashMap::new();
    let mut backend_of_pool: HashMap<String, String> = HashMap::new();
    let mut backend_work: HashMap<String, Millis> = HashMap::new();
    let mut chain = 0;
    for s in &plan.servers {
        match s.kind {
            sfbpatch_plan::ServerKind::FrontEnd => {
                *pool_chain.entry(s.pool.key()).or_default() += total(s);
                backend_of_pool.insert(s.pool.key(), s.sql_server_fqdn.key());
            }
            sfbpatch_plan::ServerKind::StandardEdition => chain = chain.max(total(s)),
            _ => *backend_work.entry(s.sql_server_fqdn.key()).or_default() += total(s),
        }
    }
    let mut backend_start: HashMap<String, Millis> = HashMap::new();
    for (pool, fe) in &pool_chain {
        let start = backend_start
            .entry(backend_of_pool[pool].clone())
            .or_default();
        *start = (*start).max(*fe);
        chain = chain.max(*fe);
    }
    for (sql, work) in &backend_work {
        chain = chain.max(backend_start.get(sql).copied().unwrap_or(0) + work);
    }
    let bound = longest.max(work / parallel as Millis).max(chain);

    let mut store = sfbpatch_store::SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let spec = RunSpec {
        topology_origin: "generated".into(),
        topology_snapshot: topology,
        operator: lab.operator().to_string(),
        plan,
        policy: RunPolicy {
            max_parallel: parallel as u32,
            ..RunPolicy::default()
        },
        target: TargetSpec::Lab {
            dir: lab_dir.display().to_string(),
        },
    };
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
    let wall = t.elapsed();
    if outcome.state != RunState::Succeeded {
        for s in outcome.servers.iter().filter(|s| !s.is_success()).take(5) {
            eprintln!(
                "{} {:?}: {}",
                s.fqdn,
                s.state,
                s.reason.as_deref().unwrap_or("")
            );
        }
        panic!("the rollout ended {:?}", outcome.state);
    }
    let makespan = outcome.finished_at;
    println!(
        "rollout: {n} servers, {parallel} in outage at once: {:.2} s wall, peak RSS {:.0} MB; simulated makespan {:.1} min, lower bound {:.1} min (longest server {:.1}, outage work/parallelism {:.1}, longest pool chain {:.1}): {:+.2}%",
        wall.as_secs_f64(),
        support::peak_rss_mb(),
        makespan as f64 / 60_000.0,
        bound as f64 / 60_000.0,
        longest as f64 / 60_000.0,
        (work / parallel as Millis) as f64 / 60_000.0,
        chain as f64 / 60_000.0,
        (makespan as f64 / bound as f64 - 1.0) * 100.0
    );
}
