//! The scheduler's promises, checked on generated fleets with random step durations and
//! failures, run in-process against the lab: never more than N servers in outage (overall and
//! per site), never two servers of one back end at once, never two Front End servers of a pool
//! (or two upgrade domains) out at once, a back end after its Front End servers, never both
//! pools of a pair in outage, nothing started that cannot finish in the window, and the failure
//! budget exactly as documented. Each property is read back from the journal and, where the lab
//! records it, from the lab world itself (`lab show`): on labs whose step durations vary per
//! server (`LabOptions::variance`), so the predictions the scheduler works from are wrong.

use std::collections::HashMap;

use proptest::prelude::*;
use sfbpatch_engine::{
    Engine, Identity, Millis, NoObserver, Record, RunPolicy, RunSpec, RunState, ServerState, Store,
    TargetSpec, fold,
    policy::{FrontEndBatch, Window, default_duration},
};
use sfbpatch_lab::LabOptions;
use sfbpatch_plan::{Installer, PlanPolicy, StepId};

#[derive(Debug, Clone)]
struct Case {
    pools: usize,
    seed: u64,
    max_parallel: u32,
    per_site: Option<u32>,
    pair: bool,
    /// (server index, step, minutes)
    slow: Vec<(usize, usize, u32)>,
    /// server indices whose installer fails
    failing: Vec<usize>,
    max_failures: Option<u32>,
    max_failure_percent: Option<f64>,
    window: Option<(u64, u64)>,
    /// The lab's duration variance seed.
    variance: Option<u64>,
    upgrade_domains: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        3usize..14,
        any::<u64>(),
        1u32..5,
        prop::option::of(1u32..3),
        any::<bool>(),
        prop::collection::vec((0usize..40, 0usize..11, 1u32..45), 0..8),
        prop::collection::vec(0usize..40, 0..4),
        prop::option::of(0u32..3),
        prop::option::of(5.0f64..60.0),
        prop::option::of((0u64..120, 60u64..400)),
        (prop::option::of(any::<u64>()), any::<bool>()),
    )
        .prop_map(
            |(
                pools,
                seed,
                max_parallel,
                per_site,
                pair,
                slow,
                failing,
                max_failures,
                pct,
                window,
                (variance, upgrade_domains),
            )| Case {
                pools,
                seed,
                max_parallel,
                per_site,
                pair,
                slow,
                failing,
                max_failures,
                max_failure_percent: pct,
                window,
                variance,
                upgrade_domains,
            },
        )
}

struct Ran {
    policy: RunPolicy,
    plan: sfbpatch_plan::Plan,
    state: RunState,
    statuses: Vec<sfbpatch_engine::ServerStatus>,
    failed_at: Vec<Millis>,
    /// The lab world after the run.
    world: sfbpatch_lab::LabSnapshot,
}

fn run(case: &Case) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let installer = dir.path().join("SkypeServerUpdateInstaller.exe");
    std::fs::write(
        &installer,
        include_bytes!("../../assets/SkypeServerUpdateInstaller.exe"),
    )
    .unwrap();
    let mut package =
        sfbpatch_plan::parse_manifest(include_str!("../../assets/demo-package.toml"), "pkg")
            .unwrap();
    package.installer = Installer::Path(installer.display().to_string());
    let text = sfbpatch_topology::generate(case.pools, case.seed);
    let deployment = sfbpatch_topology::load(&text, "generated").unwrap();
    let plan = sfbpatch_plan::plan(&deployment, &package, &PlanPolicy::default()).unwrap();
    let n = plan.servers.len();

    let mut faults = String::new();
    let mut seen = std::collections::HashSet::new();
    for &(s, step, minutes) in &case.slow {
        if !seen.insert((s % n, step)) {
            continue;
        }
        let server = &plan.servers[s % n].fqdn;
        let step = StepId::ALL[step];
        faults += &format!(
            "[[fault]]\nserver = \"{server}\"\nstep = \"{step}\"\nduration_minutes = {minutes}\n"
        );
    }
    let mut failing_seen = std::collections::HashSet::new();
    for &s in &case.failing {
        if !failing_seen.insert(s % n) {
            continue;
        }
        let server = &plan.servers[s % n].fqdn;
        faults += &format!(
            "[[fault]]\nserver = \"{server}\"\nstep = \"install-update\"\nexit_code = 1603\ntimes = 0\n"
        );
    }
    let faults = sfbpatch_lab::parse_faults(&faults, "faults.toml").unwrap();
    let lab = sfbpatch_lab::init(
        &dir.path().join("lab"),
        &deployment,
        &LabOptions {
            faults,
            variance: case.variance,
            ..LabOptions::default()
        },
    )
    .unwrap();

    let pools: Vec<String> = {
        let mut v: Vec<String> = plan.servers.iter().map(|s| s.pool.to_string()).collect();
        v.dedup();
        v
    };
    let pairs = if case.pair && pools.len() >= 2 {
        vec![[pools[0].clone(), pools[1].clone()]]
    } else {
        Vec::new()
    };
    let windows = case
        .window
        .map(|(open, len)| {
            vec![Window {
                opens_at: open * 60_000,
                closes_at: (open + len) * 60_000,
            }]
        })
        .unwrap_or_default();
    let policy = RunPolicy {
        max_parallel: case.max_parallel,
        max_parallel_per_site: case.per_site,
        max_failures: case.max_failures,
        max_failure_percent: case.max_failure_percent,
        continue_on_failure: case.max_failures.is_none(),
        accept_resiliency: true,
        pairs,
        windows,
        front_end_batch: if case.upgrade_domains {
            FrontEndBatch::UpgradeDomain
        } else {
            FrontEndBatch::Server
        },
        ..RunPolicy::default()
    };
    let mut store = sfbpatch_store::SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let spec = RunSpec {
        topology_origin: "generated".into(),
        topology_snapshot: text,
        operator: lab.operator().to_string(),
        plan: plan.clone(),
        policy: policy.clone(),
        target: TargetSpec::Lab {
            dir: dir.path().join("lab").display().to_string(),
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
        identity: Identity {
            holder: "test".into(),
            host: "localhost".into(),
            pid: std::process::id(),
            instance: "test#1.0".into(),
        },
        cancel: None,
    };
    let outcome = engine.start(spec).unwrap();
    let journal = store.journal(outcome.run).unwrap();
    let statuses = fold(&plan.servers, &journal);
    let failed_at = journal
        .iter()
        .filter(|e| {
            matches!(
                e.record,
                Record::ServerFinished {
                    outcome: sfbpatch_engine::ServerOutcome::Failed,
                    ..
                }
            )
        })
        .map(|e| e.at)
        .collect();
    Ran {
        policy,
        plan,
        state: outcome.state,
        statuses,
        failed_at,
        world: lab.show().unwrap(),
    }
}

/// The most intervals open at once.
fn max_overlap(mut intervals: Vec<(Millis, Millis)>) -> usize {
    let mut events: Vec<(Millis, i32)> = Vec::new();
    for (a, b) in intervals.drain(..) {
        if b > a {
            events.push((a, 1));
            events.push((b, -1));
        }
    }
    // Ends before starts at the same instant: [a, b) intervals.
    events.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    max as usize
}

fn outage(s: &sfbpatch_engine::ServerStatus) -> Option<(Millis, Millis)> {
    Some((s.outage_started_at?, s.outage_ended_at?))
}

/// A lab interval in milliseconds (open ones up to the end of time).
fn ms(i: &sfbpatch_lab::Interval) -> (Millis, Millis) {
    let at = |s: f64| (s * 1000.0).round() as Millis;
    (at(i.start), i.end.map_or(Millis::MAX, at))
}

/// The scheduler's promises as the lab world recorded them: when each Standard Edition and
/// Front End server was out of service, and when each pool's back end was unavailable.
fn world_keeps_the_promises(r: &Ran) -> Result<(), TestCaseError> {
    let servers = &r.plan.servers;
    let plan_of = |fqdn: &str| {
        servers
            .iter()
            .find(|s| s.fqdn.as_str().eq_ignore_ascii_case(fqdn))
    };
    // Per SQL Server, when it was updated: its pools' back-end outages (a back end several
    // pools share is one machine out, once).
    let mut backend: HashMap<String, Vec<(Millis, Millis)>> = HashMap::new();
    for pool in r.world.pools.iter().filter(|p| p.front_ends.is_some()) {
        let Some(fe) = servers
            .iter()
            .find(|s| s.pool.as_str().eq_ignore_ascii_case(&pool.fqdn))
        else {
            continue;
        };
        let iv = backend.entry(fe.sql_server_fqdn.key()).or_default();
        for i in &pool.outage_intervals {
            if !iv.contains(&ms(i)) {
                iv.push(ms(i));
            }
        }
    }
    // Every server of the plan out of service, with its plan.
    let mut out: Vec<(&sfbpatch_plan::ServerPlan, (Millis, Millis))> = Vec::new();
    for w in &r.world.servers {
        if let Some(p) = plan_of(&w.fqdn) {
            out.extend(w.out_of_service.iter().map(|i| (p, ms(i))));
        }
    }
    for (sql, iv) in &backend {
        if let Some(p) = servers.iter().find(|s| {
            s.kind == sfbpatch_plan::ServerKind::BackEnd && s.sql_server_fqdn.key() == *sql
        }) {
            out.extend(iv.iter().map(|&i| (p, i)));
        }
    }

    // Never more than N out of service at once.
    let all: Vec<_> = out.iter().map(|(_, i)| *i).collect();
    prop_assert!(
        max_overlap(all) <= r.policy.max_parallel as usize,
        "the lab saw more than {} servers out of service at once",
        r.policy.max_parallel
    );

    for pool in &r.world.pools {
        let Some(front_ends) = &pool.front_ends else {
            continue;
        };
        // The Front End rule: one server (or one upgrade domain) of a pool out at a time, so
        // the pool never lost quorum and no user's session was dropped.
        let fe: Vec<&(&sfbpatch_plan::ServerPlan, (Millis, Millis))> = out
            .iter()
            .filter(|(p, _)| {
                p.kind == sfbpatch_plan::ServerKind::FrontEnd
                    && p.pool.as_str().eq_ignore_ascii_case(&pool.fqdn)
            })
            .collect();
        for (k, (a, x)) in fe.iter().enumerate() {
            for (b, y) in &fe[k + 1..] {
                if x.0 < y.1 && y.0 < x.1 {
                    let same_domain = r.policy.front_end_batch == FrontEndBatch::UpgradeDomain
                        && a.upgrade_domain.is_some()
                        && a.upgrade_domain == b.upgrade_domain;
                    prop_assert!(
                        same_domain,
                        "{} {x:?} and {} {y:?} of {} out together",
                        a.fqdn,
                        b.fqdn,
                        pool.fqdn
                    );
                }
            }
        }
        prop_assert!(
            front_ends.down_intervals.is_empty(),
            "{} lost quorum",
            pool.fqdn
        );
        prop_assert!(
            front_ends.user_impact_intervals.is_empty(),
            "{} dropped sessions",
            pool.fqdn
        );
        // Its back end only after its Front End servers are back.
        let last_fe = fe.iter().map(|(_, i)| i.1).max().unwrap_or(0);
        for i in &pool.outage_intervals {
            prop_assert!(
                ms(i).0 >= last_fe,
                "{}: back end out at {:?} before its Front End servers ended at {last_fe}",
                pool.fqdn,
                ms(i)
            );
        }
    }

    // Never both pools of a pair out.
    for [a, b] in &r.policy.pairs {
        let of = |pool: &str| -> Vec<(Millis, Millis)> {
            out.iter()
                .filter(|(p, _)| p.pool.as_str().eq_ignore_ascii_case(pool))
                .map(|(_, i)| *i)
                .collect()
        };
        for x in of(a) {
            for y in of(b) {
                prop_assert!(
                    x.1 <= y.0 || y.1 <= x.0,
                    "the lab saw {a} {x:?} and {b} {y:?} out together"
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_scheduler_keeps_its_promises(case in case()) {
        let r = run(&case);
        let servers = &r.plan.servers;
        let started: Vec<usize> = (0..servers.len()).filter(|&i| r.statuses[i].started_at.is_some()).collect();

        // Never more than N in outage, overall and per site.
        let all: Vec<_> = r.statuses.iter().filter_map(outage).collect();
        prop_assert!(max_overlap(all) <= r.policy.max_parallel as usize);
        if let Some(per_site) = r.policy.max_parallel_per_site {
            let mut by_site: HashMap<&str, Vec<(Millis, Millis)>> = HashMap::new();
            for (i, s) in r.statuses.iter().enumerate() {
                if let Some(o) = outage(s) {
                    by_site.entry(&servers[i].site).or_default().push(o);
                }
            }
            for (site, iv) in by_site {
                prop_assert!(max_overlap(iv) <= per_site as usize, "site {site}");
            }
        }

        // Never two servers of one back end in flight at once.
        let mut by_backend: HashMap<String, Vec<(Millis, Millis)>> = HashMap::new();
        for &i in &started {
            let s = &r.statuses[i];
            by_backend
                .entry(servers[i].sql_server_fqdn.key())
                .or_default()
                .push((s.started_at.unwrap(), s.finished_at.unwrap_or(Millis::MAX)));
        }
        for (backend, iv) in by_backend {
            prop_assert!(max_overlap(iv) <= 1, "back end {backend}");
        }

        // Never both pools of a pair in outage.
        for [a, b] in &r.policy.pairs {
            let of = |pool: &str| -> Vec<(Millis, Millis)> {
                (0..servers.len())
                    .filter(|&i| servers[i].pool.as_str().eq_ignore_ascii_case(pool))
                    .filter_map(|i| outage(&r.statuses[i]))
                    .collect()
            };
            for x in of(a) {
                for y in of(b) {
                    prop_assert!(x.1 <= y.0 || y.1 <= x.0, "{a} {x:?} and {b} {y:?} overlap");
                }
            }
        }

        // Nothing started that cannot finish in the window, and no outage window opened that
        // cannot close in it (by the prediction: the steps that take time on the machine).
        if !r.policy.windows.is_empty() {
            let takes_time = |s: &&sfbpatch_plan::PlannedStep| {
                s.not_applicable.is_none()
                    && !matches!(s.action, sfbpatch_plan::Action::DatabasesUpdatedBy { .. })
            };
            for &i in &started {
                let at = r.statuses[i].started_at.unwrap();
                let predicted: Millis = servers[i].steps.iter().filter(takes_time).map(|s| default_duration(s.id)).sum();
                prop_assert!(
                    r.policy.windows.iter().any(|w| w.opens_at <= at && at + predicted <= w.closes_at),
                    "{} started at {at} with {predicted} ms predicted, outside {:?}",
                    servers[i].fqdn, r.policy.windows
                );
                if let Some(out) = r.statuses[i].outage_started_at {
                    let rest: Millis = servers[i]
                        .steps
                        .iter()
                        .filter(takes_time)
                        .skip_while(|s| !s.in_outage)
                        .map(|s| default_duration(s.id))
                        .sum();
                    prop_assert!(
                        r.policy.windows.iter().any(|w| w.opens_at <= out && out + rest <= w.closes_at),
                        "{} went out of service at {out} with {rest} ms predicted, outside {:?}",
                        servers[i].fqdn, r.policy.windows
                    );
                }
            }
        }

        // The failure budget: once more failures than allowed have happened, no server starts;
        // until then the run goes on.
        let total = servers.len();
        let exceeded_at = (1..=r.failed_at.len())
            .find(|&k| r.policy.failure_budget_exceeded(k, total))
            .map(|k| r.failed_at[k - 1]);
        match exceeded_at {
            Some(t) => {
                prop_assert_eq!(r.state, RunState::Failed);
                for &i in &started {
                    prop_assert!(r.statuses[i].started_at.unwrap() <= t, "{} started after the budget was spent", servers[i].fqdn);
                }
            }
            None if r.policy.windows.is_empty() => {
                // No stop: every server ran to an end.
                for (i, s) in r.statuses.iter().enumerate() {
                    prop_assert!(s.is_finished(), "{} was left {:?}", servers[i].fqdn, s.state);
                    prop_assert!(s.state != ServerState::Pending);
                }
            }
            None => {}
        }

        world_keeps_the_promises(&r)?;
    }
}

/// Whole runs (no faults, no window) on labs whose durations vary, over several generated
/// fleets: every server ends succeeded, and the world saw every promise kept.
#[test]
fn varied_labs_see_every_promise_kept() {
    for (seed, max_parallel, upgrade_domains) in
        [(1, 2, false), (2, 3, true), (3, 4, false), (4, 5, true)]
    {
        let case = Case {
            pools: 12,
            seed,
            max_parallel,
            per_site: None,
            pair: true,
            slow: Vec::new(),
            failing: Vec::new(),
            max_failures: None,
            max_failure_percent: None,
            window: None,
            variance: Some(seed * 31),
            upgrade_domains,
        };
        let r = run(&case);
        assert_eq!(r.state, RunState::Succeeded, "seed {seed}");
        assert!(r.statuses.iter().all(|s| s.state == ServerState::Succeeded));
        // The lab's durations are not the predictions: some outage took longer than predicted.
        let predicted_outage = |i: usize| -> Millis {
            r.plan.servers[i]
                .steps
                .iter()
                .filter(|s| s.in_outage && s.not_applicable.is_none())
                .filter(|s| !matches!(s.action, sfbpatch_plan::Action::DatabasesUpdatedBy { .. }))
                .map(|s| default_duration(s.id))
                .sum()
        };
        assert!(
            (0..r.statuses.len()).any(|i| outage(&r.statuses[i])
                .is_some_and(|(a, b)| b - a > predicted_outage(i) + 60_000)),
            "seed {seed}: every outage took its predicted time"
        );
        if let Err(e) = world_keeps_the_promises(&r) {
            panic!("seed {seed}: {e}");
        }
    }
}
