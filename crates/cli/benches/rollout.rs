//! Rollouts over generated fleets in the lab at `--speed 0`: the simulated makespan against its
//! lower bound, wall time and peak memory.
//!
//! The lower bound is the largest of: the longest single server; the summed outage windows over
//! the parallelism; the longest chain the serial rules force (a pool's Front End servers one at a
//! time, then its back end's machines one at a time once every Front End server of every pool on
//! that back end has finished). It is computed from the durations the lab really took (the
//! journal's step times), so on a lab with variance it measures the schedule, not the
//! predictions; how far the predictions missed is reported beside it.
//!
//! - `cargo bench -p sfbpatch --bench rollout [-- POOLS]`: the table, for 120 and 1,000
//!   generated pools (seed 7; or POOLS pools) at `--max-parallel` 4, 8 and 16, each on a lab
//!   whose steps take the engine's predicted times (`exact`) and on one with per-server variance
//!   (`varied:1`, `sfbpatch lab init --variance 1`).
//! - `cargo bench -p sfbpatch --bench rollout -- SERVERS PARALLEL`: one run over the fewest
//!   generated pools with at least SERVERS servers (wall time and memory at scale).

mod support;

use std::collections::HashMap;

use sfbpatch_engine::{Millis, RunPolicy, RunState, ServerStatus, policy::default_duration};
use sfbpatch_lab::LabOptions;
use sfbpatch_plan::{Plan, ServerKind, ServerPlan};
use sfbpatch_topology::Deployment;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let package = support::package(dir.path());
    if let [servers, parallel, ..] = args[..] {
        let (topology, deployment, plan) = support::fleet(servers, 7, &package);
        let r = rollout(
            dir.path(),
            &topology,
            &deployment,
            plan,
            parallel,
            LabOptions::default(),
        );
        println!(
            "rollout: {} servers, {parallel} in outage at once: {:.2} s wall, peak RSS {:.0} MB; {}",
            r.servers,
            r.wall_s,
            support::peak_rss_mb(),
            r.makespan_line()
        );
        return;
    }
    println!(
        "makespan and lower bound in simulated minutes; prediction errors in % of the actual time"
    );
    println!(
        "{:>5} {:>7} {:>3} {:>8} {:>9} {:>9} {:>7} {:>7} {:>8} {:>6} {:>12} {:>12} {:>6}",
        "pools",
        "servers",
        "par",
        "lab",
        "makespan",
        "bound",
        "ratio",
        "longest",
        "work/par",
        "chain",
        "outage err",
        "total err",
        "wall s"
    );
    let pool_counts = match args[..] {
        [pools] => vec![pools],
        _ => vec![120, 1000],
    };
    for pools in pool_counts {
        let topology = sfbpatch_topology::generate(pools, 7);
        let deployment = sfbpatch_topology::load(&topology, "generated").unwrap();
        let plan =
            sfbpatch_plan::plan(&deployment, &package, &sfbpatch_plan::PlanPolicy::default())
                .unwrap();
        for parallel in [4, 8, 16] {
            for variance in [None, Some(1)] {
                let sub = dir.path().join(format!("{pools}-{parallel}-{variance:?}"));
                std::fs::create_dir_all(&sub).unwrap();
                let options = LabOptions {
                    variance,
                    ..LabOptions::default()
                };
                let r = rollout(
                    &sub,
                    &topology,
                    &deployment,
                    plan.clone(),
                    parallel,
                    options,
                );
                let error = |(mean, max): (f64, f64)| format!("{mean:.1}/{max:.1}");
                println!(
                    "{pools:>5} {:>7} {parallel:>3} {:>8} {:>9} {:>9} {:>7.4} {:>7} {:>8} {:>6} {:>12} {:>12} {:>6.1}",
                    r.servers,
                    variance.map_or("exact".to_string(), |v| format!("varied:{v}")),
                    minutes(r.makespan),
                    minutes(r.bound.value()),
                    r.ratio(),
                    minutes(r.bound.longest),
                    minutes(r.bound.work / parallel as Millis),
                    minutes(r.bound.chain),
                    error(r.outage_error),
                    error(r.total_error),
                    r.wall_s,
                );
            }
        }
    }
}

fn minutes(ms: Millis) -> String {
    format!("{:.1}", ms as f64 / 60_000.0)
}

/// The parts of the lower bound, from per-server durations.
struct Bound {
    longest: Millis,
    work: Millis,
    chain: Millis,
    parallel: Millis,
}

impl Bound {
    fn value(&self) -> Millis {
        self.longest.max(self.work / self.parallel).max(self.chain)
    }

    /// `total` and `outage`: per server (plan order), its duration and its outage window.
    fn of(plan: &Plan, total: &[Millis], outage: &[Millis], parallel: usize) -> Bound {
        let longest = total.iter().copied().max().unwrap_or(0);
        let work: Millis = outage.iter().sum();
        // Front End chains per pool; a back end's chain starts when its longest pool chain ends.
        let mut pool_chain: HashMap<String, Millis> = HashMap::new();
        let mut backend_of_pool: HashMap<String, String> = HashMap::new();
        let mut backend_work: HashMap<String, Millis> = HashMap::new();
        let mut chain = 0;
        for (i, s) in plan.servers.iter().enumerate() {
            match s.kind {
                ServerKind::FrontEnd => {
                    *pool_chain.entry(s.pool.key()).or_default() += total[i];
                    backend_of_pool.insert(s.pool.key(), s.sql_server_fqdn.key());
                }
                ServerKind::StandardEdition => chain = chain.max(total[i]),
                _ => *backend_work.entry(s.sql_server_fqdn.key()).or_default() += total[i],
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
        Bound {
            longest,
            work,
            chain,
            parallel: parallel as Millis,
        }
    }
}

struct Rollout {
    servers: usize,
    makespan: Millis,
    bound: Bound,
    wall_s: f64,
    /// How far the engine's predictions missed, in % of the actual time: mean and max over
    /// the servers, for the outage window and for the summed step times.
    outage_error: (f64, f64),
    total_error: (f64, f64),
}

impl Rollout {
    fn ratio(&self) -> f64 {
        self.makespan as f64 / self.bound.value() as f64
    }

    fn makespan_line(&self) -> String {
        format!(
            "simulated makespan {} min, lower bound {} min (longest server {}, outage work/parallelism {}, longest chain {}): ratio {:.4}",
            minutes(self.makespan),
            minutes(self.bound.value()),
            minutes(self.bound.longest),
            minutes(self.bound.work / self.bound.parallel),
            minutes(self.bound.chain),
            self.ratio()
        )
    }
}

/// The steps that take time on the machine.
fn takes_time(st: &sfbpatch_plan::PlannedStep) -> bool {
    st.not_applicable.is_none()
        && !matches!(st.action, sfbpatch_plan::Action::DatabasesUpdatedBy { .. })
}

/// The engine's prediction for a server on a fresh state store: (outage, total).
fn predicted(s: &ServerPlan) -> (Millis, Millis) {
    let total = s
        .steps
        .iter()
        .filter(|st| takes_time(st))
        .map(|st| default_duration(st.id))
        .sum();
    let outage = s
        .steps
        .iter()
        .filter(|st| st.in_outage && takes_time(st))
        .map(|st| default_duration(st.id))
        .sum();
    (outage, total)
}

/// What a server took: (outage window, summed step times).
fn measured(s: &ServerStatus) -> (Millis, Millis) {
    let outage = match (s.outage_started_at, s.outage_ended_at) {
        (Some(a), Some(b)) => b - a,
        _ => 0,
    };
    let total = s
        .steps
        .iter()
        .filter_map(|st| Some(st.ended_at? - st.started_at?))
        .sum();
    (outage, total)
}

fn rollout(
    dir: &std::path::Path,
    topology: &str,
    deployment: &Deployment,
    plan: Plan,
    parallel: usize,
    options: LabOptions,
) -> Rollout {
    let n = plan.servers.len();
    let lab_dir = dir.join("lab");
    let lab = sfbpatch_lab::init(&lab_dir, deployment, &options).unwrap();
    let mut store = sfbpatch_store::SqliteStore::open(&dir.join("state.db")).unwrap();
    let (outcome, wall) = support::apply_on_lab(
        &mut store,
        &lab,
        &lab_dir,
        topology.to_string(),
        plan.clone(),
        RunPolicy {
            max_parallel: parallel as u32,
            ..RunPolicy::default()
        },
    );
    let wall_s = wall.as_secs_f64();
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
    let (outage, total): (Vec<Millis>, Vec<Millis>) = outcome.servers.iter().map(measured).unzip();
    let guesses: Vec<(Millis, Millis)> = plan.servers.iter().map(predicted).collect();
    let error = |actual: &[Millis], guess: &dyn Fn(usize) -> Millis| -> (f64, f64) {
        let misses: Vec<f64> = (0..n)
            .filter(|&i| actual[i] > 0)
            .map(|i| (guess(i) as f64 - actual[i] as f64).abs() * 100.0 / actual[i] as f64)
            .collect();
        let max = misses.iter().copied().fold(0.0, f64::max);
        (misses.iter().sum::<f64>() / misses.len().max(1) as f64, max)
    };
    Rollout {
        servers: n,
        makespan: outcome.finished_at,
        outage_error: error(&outage, &|i| guesses[i].0),
        total_error: error(&total, &|i| guesses[i].1),
        bound: Bound::of(&plan, &total, &outage, parallel),
        wall_s,
    }
}
