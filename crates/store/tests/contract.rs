//! One contract every `Store` implementation passes. Each test takes a fresh, empty database
//! and opens as many handles on it as it needs.
//!
//! The PostgreSQL instance runs when `SFBPATCH_TEST_POSTGRES_URL` names a server (each test then
//! works in a schema of its own, dropped afterwards); `scripts/test-services.sh` starts one.

use std::path::PathBuf;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU32, Ordering};

use sfbpatch_engine::{
    AuditEntry, Durability, Lease, Record, RunPolicy, RunSpec, RunState, Scope, ServerOutcome,
    StepResultKind, Store, StoreError, TargetSpec,
};
use sfbpatch_plan::{Build, Installer, Package, Plan, ServerKind, StepId};
use sfbpatch_store::{PgStore, SCHEMA_VERSION, SqliteStore};

fn spec(operator: &str) -> RunSpec {
    RunSpec {
        topology_origin: "topology.xml".into(),
        topology_snapshot: "<Topology/>".into(),
        plan: Plan {
            package: Package {
                name: "CU".into(),
                version: "7.0.2046.553".parse::<Build>().unwrap(),
                installer: Installer::Path("/tmp/SkypeServerUpdateInstaller.exe".into()),
                sha256: "ab".repeat(32),
                schema_versions: Default::default(),
                product: None,
            },
            servers: vec![],
        },
        policy: RunPolicy::default(),
        target: TargetSpec::Lab {
            dir: "/tmp/lab".into(),
        },
        operator: operator.into(),
    }
}

fn scope(run: i64, server: &str) -> Scope<'_> {
    Scope {
        run,
        server,
        role: ServerKind::BackEnd,
    }
}

fn result(step: StepId, ms: u64) -> Record {
    Record::StepResult {
        step,
        attempt: 1,
        result: StepResultKind::Succeeded,
        exit_code: Some(0),
        output: "ok".into(),
        duration_ms: ms,
    }
}

fn lease(pool: &str, run: i64, expires_at: u64) -> Lease {
    Lease {
        pool: pool.into(),
        run,
        holder: format!("holder-{run}"),
        host: "mgmt01".into(),
        pid: 4242,
        expires_at,
        instance: format!("mgmt01#4242.{run:08x}"),
        generation: 0,
    }
}

pub fn runs_round_trip(store: &mut dyn Store) {
    assert!(store.latest_run().unwrap().is_none());
    let a = store.create_run(&spec("LAB\\a"), 10).unwrap();
    let b = store.create_run(&spec("LAB\\b"), 20).unwrap();
    assert!(b > a, "run ids increase");
    let run = store.run(a).unwrap();
    assert_eq!(run.spec, spec("LAB\\a"));
    assert_eq!(run.state, RunState::Running);
    assert_eq!(run.created_at, 10);
    assert_eq!(store.latest_run().unwrap().unwrap().id, b);
    store.set_run_state(a, RunState::Interrupted).unwrap();
    assert_eq!(store.run(a).unwrap().state, RunState::Interrupted);
    assert!(matches!(store.run(9999), Err(StoreError::NoSuchRun(9999))));
    assert!(matches!(
        store.set_run_state(9999, RunState::Failed),
        Err(StoreError::NoSuchRun(9999))
    ));
}

pub fn journal_keeps_order_and_audit(store: &mut dyn Store) {
    let run = store.create_run(&spec("LAB\\a"), 0).unwrap();
    let other = store.create_run(&spec("LAB\\a"), 0).unwrap();
    let intent = Record::StepIntent {
        step: StepId::StopCsServices,
        attempt: 1,
        command: Some("Stop-CsWindowsService".into()),
    };
    let audit = AuditEntry {
        run,
        at: 5,
        operator: "LAB\\a".into(),
        server: "be1.example.com".into(),
        step: "stop-cs-services".into(),
        command: Some("Stop-CsWindowsService".into()),
        exit_code: Some(0),
        output_excerpt: "stopped".into(),
    };
    store
        .append(
            1,
            &scope(run, "be1.example.com"),
            std::slice::from_ref(&intent),
            None,
        )
        .unwrap();
    store
        .append(
            2,
            &scope(other, "x.example.com"),
            &[result(StepId::Verify, 1)],
            None,
        )
        .unwrap();
    store
        .append(
            5,
            &scope(run, "be1.example.com"),
            &[
                result(StepId::StopCsServices, 120_000),
                Record::ServerFinished {
                    outcome: ServerOutcome::Succeeded,
                    reason: None,
                },
            ],
            Some(&audit),
        )
        .unwrap();
    let journal = store.journal(run).unwrap();
    assert_eq!(journal.len(), 3);
    assert!(journal.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(journal[0].record, intent);
    assert_eq!(journal[0].at, 1);
    assert_eq!(journal[1].record, result(StepId::StopCsServices, 120_000));
    assert_eq!(journal[2].server, "be1.example.com");
    assert_eq!(store.audit(run).unwrap(), vec![audit]);
    assert!(store.audit(other).unwrap().is_empty());
    assert_eq!(store.journal(other).unwrap().len(), 1);
}

/// A run that never started is forgotten; one with a journal is kept.
pub fn only_unstarted_runs_are_forgotten(store: &mut dyn Store) {
    let started = store.create_run(&spec("LAB\\a"), 0).unwrap();
    let unstarted = store.create_run(&spec("LAB\\a"), 0).unwrap();
    store
        .append(
            1,
            &scope(started, "be1.example.com"),
            &[Record::StepIntent {
                step: StepId::StopCsServices,
                attempt: 1,
                command: None,
            }],
            None,
        )
        .unwrap();
    assert!(!store.forget_unstarted_run(started).unwrap());
    assert!(store.forget_unstarted_run(unstarted).unwrap());
    assert!(matches!(
        store.run(unstarted),
        Err(StoreError::NoSuchRun(_))
    ));
    assert_eq!(store.latest_run().unwrap().unwrap().id, started);
}

pub fn leases_exclude_other_runs(store: &mut dyn Store) {
    let r1 = store.create_run(&spec("a"), 0).unwrap();
    let r2 = store.create_run(&spec("b"), 0).unwrap();
    assert_eq!(
        store
            .acquire_lease(&lease("Pool1.example.com", r1, 1_000), 0)
            .unwrap(),
        None
    );
    // Another run is refused and told who holds it.
    let held = store
        .acquire_lease(&lease("pool1.EXAMPLE.com", r2, 2_000), 500)
        .unwrap()
        .expect("refused");
    assert_eq!(held.run, r1);
    assert_eq!(held.holder, format!("holder-{r1}"));
    assert_eq!(held.pid, 4242);
    // Another controller of the same run (a second `resume`) is refused while it is live,
    // even from the same host and process id: a lease is its instance's.
    let second = Lease {
        instance: "mgmt01#4242.ffffffff".into(),
        ..lease("pool1.example.com", r1, 2_500)
    };
    let held = store.acquire_lease(&second, 550).unwrap().expect("refused");
    assert_eq!((held.run, held.pid), (r1, 4242));
    // The controller that holds it renews.
    assert_eq!(
        store
            .acquire_lease(&lease("pool1.example.com", r1, 3_000), 600)
            .unwrap(),
        None
    );
    assert_eq!(store.leases().unwrap()[0].expires_at, 3_000);
    // An expired lease is taken over.
    assert_eq!(
        store
            .acquire_lease(&lease("pool1.example.com", r2, 9_000), 3_001)
            .unwrap(),
        None
    );
    assert_eq!(store.leases().unwrap()[0].run, r2);
    // Breaking a holder's lease needs that holder still there: one that saw the old holder
    // cannot break the lease a newer one took since.
    let holder = store.leases().unwrap()[0].instance.clone();
    assert_eq!(
        store
            .break_lease_held_by("pool1.example.com", "gone#1.0")
            .unwrap(),
        None
    );
    assert_eq!(store.leases().unwrap()[0].run, r2);
    let broken = store
        .break_lease_held_by("POOL1.example.com", &holder)
        .unwrap()
        .unwrap();
    assert_eq!(broken.run, r2);
    assert!(store.leases().unwrap().is_empty());
    store
        .acquire_lease(&lease("pool1.example.com", r2, 9_000), 3_001)
        .unwrap();
    // Breaking returns what was removed.
    let broken = store.break_lease("POOL1.example.com").unwrap().unwrap();
    assert_eq!(broken.run, r2);
    assert!(store.leases().unwrap().is_empty());
    assert_eq!(store.break_lease("pool1.example.com").unwrap(), None);
    // Release drops only the run's own leases.
    store
        .acquire_lease(&lease("a.example.com", r1, 9_000), 0)
        .unwrap();
    store
        .acquire_lease(&lease("b.example.com", r2, 9_000), 0)
        .unwrap();
    store.release_leases(r1, "another#1.0").unwrap();
    assert_eq!(
        store.leases().unwrap().len(),
        2,
        "only the instance's own go"
    );
    store
        .release_leases(r1, &lease("a.example.com", r1, 0).instance)
        .unwrap();
    let left: Vec<_> = store
        .leases()
        .unwrap()
        .into_iter()
        .map(|l| l.pool)
        .collect();
    assert_eq!(left, vec!["b.example.com".to_string()]);
}

pub fn step_stats_by_role_excluding_run(store: &mut dyn Store) {
    let r1 = store.create_run(&spec("a"), 0).unwrap();
    let r2 = store.create_run(&spec("a"), 0).unwrap();
    store
        .append(
            0,
            &scope(r1, "a"),
            &[result(StepId::InstallUpdate, 600_000)],
            None,
        )
        .unwrap();
    store
        .append(
            0,
            &scope(r1, "b"),
            &[result(StepId::InstallUpdate, 800_000)],
            None,
        )
        .unwrap();
    store
        .append(
            0,
            &scope(r2, "c"),
            &[result(StepId::InstallUpdate, 5)],
            None,
        )
        .unwrap();
    let se = Scope {
        run: r1,
        server: "se",
        role: ServerKind::StandardEdition,
    };
    store
        .append(0, &se, &[result(StepId::InstallUpdate, 1)], None)
        .unwrap();
    // Failed attempts are not durations of the step.
    store
        .append(
            0,
            &scope(r1, "a"),
            &[Record::StepResult {
                step: StepId::InstallUpdate,
                attempt: 2,
                result: StepResultKind::Failed,
                exit_code: Some(1603),
                output: String::new(),
                duration_ms: 99_999_999,
            }],
            None,
        )
        .unwrap();
    let stats = store.step_stats(ServerKind::BackEnd, r2).unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].step, StepId::InstallUpdate);
    assert_eq!(stats[0].samples, 2);
    assert_eq!(stats[0].mean_ms, 700_000);
}

/// An append that fails leaves nothing behind: records and audit line commit together.
pub fn append_is_all_or_nothing(store: &mut dyn Store) {
    let run = store.create_run(&spec("a"), 0).unwrap();
    let audit = AuditEntry {
        run: run + 1000, // no such run: the audit line cannot be written
        at: 1,
        operator: "a".into(),
        server: "be1".into(),
        step: "verify".into(),
        command: None,
        exit_code: None,
        output_excerpt: String::new(),
    };
    let err = store
        .append(
            1,
            &scope(run, "be1"),
            &[result(StepId::Verify, 7)],
            Some(&audit),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Query(_)), "{err:?}");
    assert!(store.journal(run).unwrap().is_empty());
    assert!(store.audit(run).unwrap().is_empty());
    assert!(store.step_stats(ServerKind::BackEnd, 0).unwrap().is_empty());
}

/// Text is stored as given: any script, quotes, control characters, and in command output (and
/// the topology as read) even NUL, which UTF-16 output read as UTF-8 is full of.
pub fn text_round_trips_exactly(store: &mut dyn Store) {
    let odd = "Ünïcødé 漢字 🚀 \\ \" ' %s $1 \r\n\t\u{1b}[0m".to_string();
    let output = format!("S\0t\0o\0p\0 {odd}");
    let mut s = spec(&format!("LAB\\{odd}"));
    s.topology_snapshot = output.clone();
    let run = store.create_run(&s, 0).unwrap();
    assert_eq!(store.run(run).unwrap().spec, s);
    let record = Record::StepResult {
        step: StepId::Verify,
        attempt: 1,
        result: StepResultKind::Failed,
        exit_code: Some(-1),
        output: output.clone(),
        duration_ms: 1,
    };
    let audit = AuditEntry {
        run,
        at: 2,
        operator: format!("LAB\\{odd}"),
        server: "bé1.example.com".into(),
        step: "verify".into(),
        command: Some(odd.clone()),
        exit_code: Some(i32::MIN),
        output_excerpt: output,
    };
    store
        .append(
            2,
            &scope(run, "bé1.example.com"),
            std::slice::from_ref(&record),
            Some(&audit),
        )
        .unwrap();
    let journal = store.journal(run).unwrap();
    assert_eq!(journal[0].record, record);
    assert_eq!(journal[0].server, "bé1.example.com");
    assert_eq!(store.audit(run).unwrap(), vec![audit]);
}

/// Two handles on one database race for the same pools: every time, exactly one wins, and the
/// other is told that one holds it. Half the pools start with an expired lease of a third run,
/// so taking over is raced too.
pub fn lease_race_has_one_winner(db: &dyn Backend) {
    const ROUNDS: usize = 100;
    let pool = |round: usize| format!("pool{round}.example.com");
    let (stale, r1, r2) = {
        let mut store = db.open();
        let runs = (
            store.create_run(&spec("stale"), 0).unwrap(),
            store.create_run(&spec("a"), 0).unwrap(),
            store.create_run(&spec("b"), 0).unwrap(),
        );
        for round in (1..ROUNDS).step_by(2) {
            assert_eq!(
                store
                    .acquire_lease(&lease(&pool(round), runs.0, 5), 0)
                    .unwrap(),
                None
            );
        }
        runs
    };
    let barrier = Barrier::new(2);
    let outcomes: Vec<Vec<Result<Option<Lease>, String>>> = std::thread::scope(|threads| {
        let contenders: Vec<_> = [r1, r2]
            .into_iter()
            .map(|run| {
                let barrier = &barrier;
                threads.spawn(move || {
                    let mut store = db.open();
                    (0..ROUNDS)
                        .map(|round| {
                            // Errors are kept, not unwrapped, so the other thread never waits
                            // at the barrier for one that panicked.
                            barrier.wait();
                            store
                                .acquire_lease(&lease(&pool(round), run, 1_000_000), 10)
                                .map_err(|e| e.to_string())
                        })
                        .collect()
                })
            })
            .collect();
        contenders.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let held = db.open().leases().unwrap();
    assert_eq!(held.len(), ROUNDS);
    for (round, (a, b)) in outcomes[0].iter().zip(&outcomes[1]).enumerate() {
        let winner = match (a, b) {
            (Ok(None), Ok(Some(seen))) => {
                assert_eq!(seen.run, r1, "round {round}: the loser is shown the winner");
                r1
            }
            (Ok(Some(seen)), Ok(None)) => {
                assert_eq!(seen.run, r2, "round {round}: the loser is shown the winner");
                r2
            }
            other => panic!("round {round}: not exactly one winner: {other:?}"),
        };
        let lease = held.iter().find(|l| l.pool == pool(round)).unwrap();
        assert_eq!(lease.run, winner, "round {round}");
        assert_ne!(lease.run, stale);
    }
}

/// Fencing: a controller instance that claimed a run is refused every append and state
/// change for it, in the same transaction, once another instance claimed it after its lease
/// expired; a claim needs every lease of the run.
pub fn claims_fence_older_controllers(db: &dyn Backend) {
    let mut a = db.open();
    let mut b = db.open();
    let run = a.create_run(&spec("a"), 0).unwrap();
    let other = a.create_run(&spec("a"), 0).unwrap();
    let mine = |instance: &str, pool: &str, expires_at| Lease {
        instance: instance.into(),
        ..lease(pool, run, expires_at)
    };
    let intent = || Record::StepIntent {
        step: StepId::StopCsServices,
        attempt: 1,
        command: None,
    };
    for pool in ["p1", "p2"] {
        assert_eq!(a.acquire_lease(&mine("A", pool, 1_000), 0).unwrap(), None);
    }
    assert_eq!(a.claim_run(run, "A").unwrap(), 1);
    a.append(1, &scope(run, "s1"), &[intent()], None).unwrap();
    // B cannot claim while A holds a lease of the run.
    assert!(matches!(
        b.claim_run(run, "B"),
        Err(StoreError::Fenced { by, .. }) if by == "A"
    ));
    assert!(
        b.acquire_lease(&mine("B", "p1", 9_000), 500)
            .unwrap()
            .is_some()
    );
    // A stops renewing; after expiry B takes both leases and claims the run.
    for pool in ["p1", "p2"] {
        assert_eq!(
            b.acquire_lease(&mine("B", pool, 9_000), 1_000).unwrap(),
            None
        );
    }
    assert_eq!(b.claim_run(run, "B").unwrap(), 2);
    let leases = b.leases().unwrap();
    assert!(
        leases
            .iter()
            .all(|l| l.instance == "B" && l.generation == 2),
        "{leases:?}"
    );
    // A wakes up: refused, and nothing it tried is written.
    let refused = a.append(2, &scope(run, "s1"), &[intent()], None);
    assert!(
        matches!(
            &refused,
            Err(StoreError::Fenced { run: r, held: 1, current: 2, by }) if *r == run && by == "B"
        ),
        "{refused:?}"
    );
    assert_eq!(refused.unwrap_err().code(), "SFB-S009");
    assert!(matches!(
        a.set_run_state(run, RunState::Failed),
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(a.run(run).unwrap().state, RunState::Running);
    // A's renewal is refused, its release leaves B's leases.
    assert!(
        a.acquire_lease(&mine("A", "p1", 20_000), 1_500)
            .unwrap()
            .is_some()
    );
    a.release_leases(run, "A").unwrap();
    assert_eq!(b.leases().unwrap().len(), 2);
    // B's renewal keeps its generation; B writes; A may still write other runs.
    assert_eq!(
        b.acquire_lease(&mine("B", "p1", 30_000), 2_000).unwrap(),
        None
    );
    assert!(b.leases().unwrap().iter().all(|l| l.generation == 2));
    b.append(3, &scope(run, "s1"), &[intent()], None).unwrap();
    b.set_run_state(run, RunState::Succeeded).unwrap();
    a.append(4, &scope(other, "s9"), &[intent()], None).unwrap();
    assert_eq!(a.journal(run).unwrap().len(), 2);
}

/// Host keys: none until pinned; a pin is seen by another handle, under any case of the
/// server's name; pinning again replaces it; servers do not share pins.
pub fn host_keys_pin_and_replace(db: &dyn Backend) {
    const A: &str = "SHA256:Ar9Gq1rIu0dMZ4a6Pq0f0q3n1Y7Yw9D8Ck5x2m4b6cE";
    const B: &str = "SHA256:yN2jz7wT3xQp5kV8rL1sB4dF6gH9jK0mN2pQ4rS6tUv";
    let mut store = db.open();
    assert_eq!(store.host_key("sql1.example.com").unwrap(), None);
    store.pin_host_key("SQL1.Example.com", A).unwrap();
    let other = db.open();
    assert_eq!(
        other.host_key("sql1.example.com").unwrap().as_deref(),
        Some(A)
    );
    assert_eq!(
        other.host_key("SQL1.EXAMPLE.COM").unwrap().as_deref(),
        Some(A)
    );
    assert_eq!(other.host_key("sql2.example.com").unwrap(), None);
    store.pin_host_key("sql1.example.com", B).unwrap();
    store.pin_host_key("sql2.example.com", A).unwrap();
    assert_eq!(
        other.host_key("sql1.example.com").unwrap().as_deref(),
        Some(B)
    );
    assert_eq!(
        other.host_key("sql2.example.com").unwrap().as_deref(),
        Some(A)
    );
}

/// Stop requests: none until asked; a request is seen by another handle (the controller's),
/// carries the run's generation when asked and who asked, replaces an earlier one, and leaves
/// an audit line naming who asked in the same transaction. `journal_since` gives exactly the
/// records after a sequence number.
pub fn stop_requests_name_the_claim_and_are_audited(db: &dyn Backend) {
    let mut controller = db.open();
    let mut dashboard = db.open();
    let run = controller.create_run(&spec("op"), 0).unwrap();
    let other = controller.create_run(&spec("op"), 0).unwrap();
    assert_eq!(controller.stop_request(run).unwrap(), None);
    assert!(matches!(
        dashboard.request_stop(run + 100, "alice", 5),
        Err(StoreError::NoSuchRun(r)) if r == run + 100
    ));
    let lease = Lease {
        instance: "A".into(),
        ..lease("p1", run, 1_000)
    };
    assert_eq!(controller.acquire_lease(&lease, 0).unwrap(), None);
    assert_eq!(controller.claim_run(run, "A").unwrap(), 1);
    let asked = dashboard.request_stop(run, "alice", 7).unwrap();
    assert_eq!(
        asked,
        sfbpatch_engine::StopRequest {
            generation: 1,
            by: "alice".into(),
            at: 7
        }
    );
    assert_eq!(controller.stop_request(run).unwrap(), Some(asked));
    assert_eq!(controller.stop_request(other).unwrap(), None);
    dashboard.request_stop(run, "bob", 9).unwrap();
    assert_eq!(
        controller.stop_request(run).unwrap().map(|r| (r.by, r.at)),
        Some(("bob".to_string(), 9))
    );
    let audit = controller.audit(run).unwrap();
    let lines: Vec<(&str, &str, &str, u64)> = audit
        .iter()
        .map(|a| {
            (
                a.operator.as_str(),
                a.step.as_str(),
                a.server.as_str(),
                a.at,
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("alice", "stop-requested", "", 7),
            ("bob", "stop-requested", "", 9)
        ]
    );
    assert_eq!(audit[0].output_excerpt, sfbpatch_store::STOP_REQUESTED_TEXT);
    // The controller's writes are not fenced by a stop request.
    let intent = |step| Record::StepIntent {
        step,
        attempt: 1,
        command: None,
    };
    controller
        .append(
            10,
            &scope(run, "s1"),
            &[intent(StepId::StopCsServices)],
            None,
        )
        .unwrap();
    controller
        .append(11, &scope(other, "s1"), &[intent(StepId::StopW3svc)], None)
        .unwrap();
    controller
        .append(12, &scope(run, "s2"), &[intent(StepId::StageUpdate)], None)
        .unwrap();
    let journal = dashboard.journal(run).unwrap();
    assert_eq!(journal.len(), 2);
    assert_eq!(dashboard.journal_since(run, 0).unwrap(), journal);
    assert_eq!(
        dashboard.journal_since(run, journal[0].seq).unwrap(),
        journal[1..]
    );
    assert_eq!(dashboard.journal_since(run, journal[1].seq).unwrap(), []);
}

/// Durability is a property of one handle's session: asked, read back from the database,
/// and not shared with another handle; appends commit either way.
pub fn durability_is_per_handle_and_read_back(db: &dyn Backend) {
    let mut controller = db.open();
    let reader = db.open();
    assert_eq!(controller.durability().unwrap(), Durability::PowerLoss);
    controller.set_durability(Durability::ProcessCrash).unwrap();
    assert_eq!(controller.durability().unwrap(), Durability::ProcessCrash);
    assert_eq!(reader.durability().unwrap(), Durability::PowerLoss);
    let run = controller.create_run(&spec("ops"), 0).unwrap();
    controller
        .append(1, &scope(run, "s1"), &[result(StepId::StopW3svc, 5)], None)
        .unwrap();
    assert_eq!(reader.journal(run).unwrap().len(), 1);
    controller.set_durability(Durability::PowerLoss).unwrap();
    assert_eq!(controller.durability().unwrap(), Durability::PowerLoss);
}

/// The contract, once per implementation: each test given a fresh store handle (`store`) or
/// the database to open handles on (`backend`).
macro_rules! contract {
    ($module:ident, $make:expr $(, #[$attr:meta])*) => {
        mod $module {
            use super::*;
            contract!(@tests { $(#[$attr])* } $make,
                store: [runs_round_trip, journal_keeps_order_and_audit, only_unstarted_runs_are_forgotten, leases_exclude_other_runs, step_stats_by_role_excluding_run, append_is_all_or_nothing, text_round_trips_exactly],
                backend: [lease_race_has_one_winner, claims_fence_older_controllers, host_keys_pin_and_replace, stop_requests_name_the_claim_and_are_audited, durability_is_per_handle_and_read_back]);
        }
    };
    (@tests $attrs:tt $make:expr, store: [$($store:ident),*], backend: [$($backend:ident),*]) => {
        $(contract!(@test $attrs $store, { let Some(db) = $make else { return }; super::$store(&mut *db.open()) });)*
        $(contract!(@test $attrs $backend, { let Some(db) = $make else { return }; super::$backend(&*db) });)*
    };
    (@test { $(#[$attr:meta])* } $name:ident, $body:block) => {
        #[test]
        $(#[$attr])*
        fn $name() $body
    };
}

/// One fresh, empty database for one test; every `open` is another handle on it.
pub trait Backend: Sync {
    fn open(&self) -> Box<dyn Store>;
}

struct SqliteDb {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Backend for SqliteDb {
    fn open(&self) -> Box<dyn Store> {
        Box::new(SqliteStore::open(&self.path).unwrap())
    }
}

fn sqlite() -> Option<Box<dyn Backend>> {
    let dir = tempfile::tempdir().unwrap();
    Some(Box::new(SqliteDb {
        path: dir.path().join("state.db"),
        _dir: dir,
    }))
}

/// A schema of its own in the test server's database, dropped when the test ends.
struct PgSchema {
    url: String,
    schema: String,
}

impl PgSchema {
    fn fresh(url: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let schema = format!(
            "sfbpatch_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let db = PgSchema {
            url: url.to_string(),
            schema,
        };
        // A schema of the same name left by an earlier process with this pid is not fresh.
        db.sql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", db.schema))
            .unwrap();
        db
    }

    /// A plain connection working in this schema, to look behind the store's back.
    fn client(&self) -> postgres::Client {
        let mut client = postgres::Client::connect(&self.url, postgres::NoTls).unwrap();
        client
            .batch_execute(&format!("SET search_path TO {}", self.schema))
            .unwrap();
        client
    }

    fn sql(&self, statement: &str) -> Result<(), postgres::Error> {
        let mut client = postgres::Client::connect(&self.url, postgres::NoTls)?;
        client.batch_execute(statement)
    }

    fn url_with_search_path(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-csearch_path%3D{}", self.url, self.schema)
    }
}

impl Backend for PgSchema {
    fn open(&self) -> Box<dyn Store> {
        Box::new(PgStore::open_with_schema(&self.url, &self.schema).unwrap())
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = self.sql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
    }
}

fn postgres_schema() -> Option<PgSchema> {
    match std::env::var("SFBPATCH_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(PgSchema::fresh(&url)),
        _ => {
            sfbpatch_testkit::missing(
                "SFBPATCH_TEST_POSTGRES_URL is not set (scripts/test-services.sh, sourced by scripts/test, starts a server)",
            );
            None
        }
    }
}

fn postgres() -> Option<Box<dyn Backend>> {
    postgres_schema().map(|db| Box::new(db) as Box<dyn Backend>)
}

contract!(sqlite_store, sqlite());

#[test]
#[ignore = "needs PostgreSQL (SFBPATCH_TEST_POSTGRES_URL): scripts/test starts it and runs this"]
fn postgres_durability_outlives_a_new_connection() {
    let Some(db) = postgres_schema() else { return };
    // A name of its own, so that only this store's session is ended.
    let name = db.schema.clone();
    let sep = if db.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}application_name={name}", db.url);
    let mut store = PgStore::open_with_schema(&url, &db.schema).unwrap();
    store.set_durability(Durability::ProcessCrash).unwrap();
    db.sql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{name}'"
    ))
    .unwrap();
    // The first call finds the session gone (and says so); the next connects again with the
    // durability that was asked.
    let first = store.durability();
    assert!(
        matches!(first, Err(StoreError::Unavailable(_))),
        "{first:?}"
    );
    assert_eq!(store.durability().unwrap(), Durability::ProcessCrash);
}
contract!(postgres_store, postgres(), #[ignore = "needs PostgreSQL (SFBPATCH_TEST_POSTGRES_URL): scripts/test starts it and runs this"]);

#[test]
fn sqlite_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let run = {
        let mut s = SqliteStore::open(&path).unwrap();
        let run = s.create_run(&spec("a"), 0).unwrap();
        s.append(3, &scope(run, "a"), &[result(StepId::Verify, 1)], None)
            .unwrap();
        run
    };
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.journal(run).unwrap().len(), 1);
}

#[test]
fn sqlite_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
            [(SCHEMA_VERSION + 1).to_string()],
        )
        .unwrap();
    let err = SqliteStore::open(&path).err().unwrap();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, known, .. }
            if found == SCHEMA_VERSION + 1 && known == SCHEMA_VERSION),
        "{err:?}"
    );
}

#[test]
#[ignore = "needs PostgreSQL (SFBPATCH_TEST_POSTGRES_URL): scripts/test starts it and runs this"]
fn postgres_journal_and_audit_are_append_only() {
    let Some(db) = postgres_schema() else { return };
    let mut store = db.open();
    let run = store.create_run(&spec("a"), 0).unwrap();
    let audit = AuditEntry {
        run,
        at: 1,
        operator: "a".into(),
        server: "be1".into(),
        step: "verify".into(),
        command: None,
        exit_code: Some(0),
        output_excerpt: "ok".into(),
    };
    store
        .append(
            1,
            &scope(run, "be1"),
            &[result(StepId::Verify, 1)],
            Some(&audit),
        )
        .unwrap();
    let mut client = db.client();
    for (statement, what) in [
        (
            "UPDATE journal SET server = 'x'",
            "the journal is append-only",
        ),
        ("DELETE FROM journal", "the journal is append-only"),
        ("TRUNCATE journal", "the journal is append-only"),
        (
            "UPDATE audit SET output = ''",
            "the audit log is append-only",
        ),
        ("DELETE FROM audit", "the audit log is append-only"),
        ("TRUNCATE audit", "the audit log is append-only"),
    ] {
        let err = client.batch_execute(statement).unwrap_err();
        let message = err.as_db_error().map(|e| e.message().to_string());
        assert_eq!(message.as_deref(), Some(what), "{statement}");
    }
    assert_eq!(store.journal(run).unwrap().len(), 1);
    assert_eq!(store.audit(run).unwrap(), vec![audit]);
    // Runs are not append-only.
    store.set_run_state(run, RunState::Succeeded).unwrap();
}

#[test]
#[ignore = "needs PostgreSQL (SFBPATCH_TEST_POSTGRES_URL): scripts/test starts it and runs this"]
fn postgres_refuses_a_newer_schema() {
    let Some(db) = postgres_schema() else { return };
    drop(db.open());
    db.client()
        .execute(
            "UPDATE meta SET value = $1 WHERE key = 'schema_version'",
            &[&(SCHEMA_VERSION + 1).to_string()],
        )
        .unwrap();
    let err = PgStore::open_with_schema(&db.url, &db.schema)
        .err()
        .unwrap();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, known, .. }
            if found == SCHEMA_VERSION + 1 && known == SCHEMA_VERSION),
        "{err:?}"
    );
}

/// The tables belong to an owner role; the controllers connect as a role granted only what a
/// run needs (docs/ha.md, Roles): it runs, and cannot drop the append-only triggers or delete
/// journal lines.
#[test]
#[ignore = "needs PostgreSQL (SFBPATCH_TEST_POSTGRES_URL): scripts/test starts it and runs this"]
fn postgres_a_controller_role_that_owns_nothing_runs_but_cannot_drop_the_triggers() {
    let Some(db) = postgres_schema() else { return };
    drop(db.open());
    let role = format!("sfbpatch_ctl_{}", std::process::id());
    let schema = &db.schema;
    let _ = db.sql(&format!("DROP OWNED BY {role}; DROP ROLE IF EXISTS {role}"));
    db.sql(&format!(
        "CREATE ROLE {role} LOGIN;
         GRANT USAGE ON SCHEMA {schema} TO {role};
         GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA {schema} TO {role};
         GRANT UPDATE, DELETE ON {schema}.leases, {schema}.runs, {schema}.host_keys, {schema}.step_totals TO {role};
         GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {role};"
    ))
    .unwrap();
    let as_role = db
        .url_with_search_path()
        .replacen("://postgres@", &format!("://{role}@"), 1);
    assert_ne!(
        as_role,
        db.url_with_search_path(),
        "the test URL names user postgres"
    );
    let mut store = PgStore::open(&as_role).unwrap();
    let run = store.create_run(&spec("a"), 0).unwrap();
    assert_eq!(
        store.acquire_lease(&lease("p1", run, 9_000), 0).unwrap(),
        None
    );
    assert_eq!(
        store.claim_run(run, &lease("p1", run, 0).instance).unwrap(),
        1
    );
    store
        .append(1, &scope(run, "be1"), &[result(StepId::Verify, 1)], None)
        .unwrap();
    store.pin_host_key("be1", "SHA256:x").unwrap();
    store.set_run_state(run, RunState::Succeeded).unwrap();
    store
        .release_leases(run, &lease("p1", run, 0).instance)
        .unwrap();
    let mut client = postgres::Client::connect(&as_role, postgres::NoTls).unwrap();
    for statement in [
        "DROP TRIGGER journal_append_only ON journal",
        "ALTER TABLE journal DISABLE TRIGGER journal_append_only",
        "DELETE FROM journal",
        "UPDATE audit SET output = ''",
    ] {
        let err = client.batch_execute(statement).unwrap_err();
        let db_error = err.as_db_error().expect("a refusal");
        assert!(
            db_error.message().contains("must be owner")
                || db_error.message().contains("permission denied")
                || db_error.message().contains("append-only"),
            "{statement}: {}",
            db_error.message()
        );
    }
    assert_eq!(store.journal(run).unwrap().len(), 1);
    drop((store, client));
    db.sql(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .unwrap();
}

/// A store made before host keys were pinned (no `host_keys` table) gets the table when it is
/// opened, and keeps its runs.
#[test]
#[ignore = "needs PostgreSQL (SFBPATCH_TEST_POSTGRES_URL): scripts/test starts it and runs this"]
fn postgres_adds_host_keys_to_an_older_store() {
    let Some(db) = postgres_schema() else { return };
    let run = db.open().create_run(&spec("a"), 0).unwrap();
    db.client().batch_execute("DROP TABLE host_keys").unwrap();
    let mut store = db.open();
    assert_eq!(store.host_key("a.example.com").unwrap(), None);
    store
        .pin_host_key(
            "a.example.com",
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
        )
        .unwrap();
    assert_eq!(store.run(run).unwrap().spec, spec("a"));
}

/// Step durations an older store recorded a row each (`step_durations`) count with the totals
/// recorded since: the mean is over every sample.
fn older_durations_count_with_totals(store: &mut dyn Store, legacy: &dyn Fn(&str)) {
    let old = store.create_run(&spec("a"), 0).unwrap();
    let new = store.create_run(&spec("a"), 0).unwrap();
    legacy(&format!(
        "INSERT INTO step_durations (run, role, step, duration_ms) VALUES
         ({old}, 'back-end', 'install-update', 100), ({old}, 'back-end', 'install-update', 200),
         ({old}, 'front-end', 'install-update', 7)"
    ));
    store
        .append(
            0,
            &scope(new, "a"),
            &[result(StepId::InstallUpdate, 600)],
            None,
        )
        .unwrap();
    let stats = store.step_stats(ServerKind::BackEnd, new + 1).unwrap();
    assert_eq!(
        (stats.len(), stats[0].samples, stats[0].mean_ms),
        (1, 3, 300)
    );
    let stats = store.step_stats(ServerKind::BackEnd, old).unwrap();
    assert_eq!((stats[0].samples, stats[0].mean_ms), (1, 600));
}

#[test]
fn sqlite_counts_the_step_durations_of_an_older_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut store = SqliteStore::open(&path).unwrap();
    older_durations_count_with_totals(&mut store, &|sql| {
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
    });
}

#[test]
#[ignore = "needs PostgreSQL (SFBPATCH_TEST_POSTGRES_URL): scripts/test starts it and runs this"]
fn postgres_counts_the_step_durations_of_an_older_store() {
    let Some(db) = postgres_schema() else { return };
    let mut store = db.open();
    older_durations_count_with_totals(&mut *store, &|sql| {
        db.client().batch_execute(sql).unwrap();
    });
}

/// A store made before leases had instances and runs generations gets the columns when a
/// controller opens it; a reader opens it as it is, seeing no instance and generation 0.
#[test]
fn sqlite_adds_fencing_columns_to_an_older_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let run = {
        let mut store = SqliteStore::open(&path).unwrap();
        let run = store.create_run(&spec("a"), 0).unwrap();
        store.acquire_lease(&lease("p1", run, 9_000), 0).unwrap();
        run
    };
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "ALTER TABLE leases DROP COLUMN instance; ALTER TABLE leases DROP COLUMN generation;
             ALTER TABLE runs DROP COLUMN generation; ALTER TABLE runs DROP COLUMN controller;",
        )
        .unwrap();
    let reader = SqliteStore::open_existing(&path).unwrap();
    let seen = reader.leases().unwrap();
    assert_eq!((seen[0].instance.as_str(), seen[0].generation), ("", 0));
    drop(reader);
    let mut store = SqliteStore::open(&path).unwrap();
    store.break_lease("p1").unwrap();
    store.acquire_lease(&lease("p1", run, 9_000), 0).unwrap();
    assert_eq!(
        store.claim_run(run, &lease("p1", run, 0).instance).unwrap(),
        1
    );
    assert_eq!(store.leases().unwrap()[0].generation, 1);
}

#[test]
fn sqlite_adds_host_keys_to_an_older_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let run = SqliteStore::open(&path)
        .unwrap()
        .create_run(&spec("a"), 0)
        .unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("DROP TABLE host_keys")
        .unwrap();
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.host_key("a.example.com").unwrap(), None);
    store
        .pin_host_key(
            "a.example.com",
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
        )
        .unwrap();
    assert_eq!(store.run(run).unwrap().spec, spec("a"));
}

/// `open` takes `postgres://` and `postgresql://` URLs; `options=-csearch_path%3D...` picks the
/// schema, and what one handle wrote another reads.
#[test]
#[ignore = "needs PostgreSQL (SFBPATCH_TEST_POSTGRES_URL): scripts/test starts it and runs this"]
fn postgres_urls_open_the_store_they_name() {
    let Some(db) = postgres_schema() else { return };
    db.sql(&format!("CREATE SCHEMA {}", db.schema)).unwrap();
    let url = db.url_with_search_path();
    let run = {
        let mut store = sfbpatch_store::open(&url).unwrap();
        assert!(
            store.location().starts_with("postgres"),
            "{}",
            store.location()
        );
        let run = store.create_run(&spec("a"), 0).unwrap();
        store
            .append(3, &scope(run, "a"), &[result(StepId::Verify, 1)], None)
            .unwrap();
        run
    };
    let other = url.replacen("postgres://", "postgresql://", 1);
    assert_eq!(
        sfbpatch_store::open(&other)
            .unwrap()
            .journal(run)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(db.open().run(run).unwrap().spec, spec("a"));
}

#[test]
#[ignore = "needs PostgreSQL (SFBPATCH_TEST_POSTGRES_URL): scripts/test starts it and runs this"]
fn postgres_search_path_without_a_schema_is_a_clear_error() {
    let Some(db) = postgres_schema() else { return };
    let err = sfbpatch_store::open(&db.url_with_search_path())
        .err()
        .unwrap();
    let StoreError::Open { reason, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(reason.contains(&db.schema), "{reason}");
    assert!(reason.contains("CREATE SCHEMA"), "{reason}");
}

/// Processes opening a new database at once do not trip over each other creating the tables.
#[test]
#[ignore = "needs PostgreSQL (SFBPATCH_TEST_POSTGRES_URL): scripts/test starts it and runs this"]
fn postgres_concurrent_first_opens() {
    let Some(db) = postgres_schema() else { return };
    std::thread::scope(|threads| {
        let opens: Vec<_> = (0..4)
            .map(|_| threads.spawn(|| PgStore::open_with_schema(&db.url, &db.schema).map(drop)))
            .collect();
        for open in opens {
            open.join().unwrap().unwrap();
        }
    });
    assert!(db.open().latest_run().unwrap().is_none());
}

/// A store's name is made once and kept: the same through another path to the same file,
/// another for another file.
#[test]
fn sqlite_store_ids_are_kept_and_unique() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let id = SqliteStore::open(&path)
        .unwrap()
        .store_id()
        .unwrap()
        .unwrap();
    assert!(
        id.starts_with(&format!("sqlite:{}~", path.display())),
        "{id}"
    );
    let again = dir.path().join(".").join("state.db");
    assert_eq!(
        SqliteStore::open_existing(&again)
            .unwrap()
            .store_id()
            .unwrap(),
        Some(id.clone())
    );
    let other = SqliteStore::open(&dir.path().join("other.db"))
        .unwrap()
        .store_id()
        .unwrap()
        .unwrap();
    assert_ne!(other, id);
}

/// A store made before run specs had their own table (the spec in `runs.spec`): a reader
/// reads the spec where it is; a controller moves it to `run_specs` and leaves `runs.spec`
/// empty, and runs created since write their spec only there.
#[test]
fn sqlite_moves_run_specs_of_an_older_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let run = SqliteStore::open(&path)
        .unwrap()
        .create_run(&spec("a"), 0)
        .unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(
        "UPDATE runs SET spec = (SELECT spec FROM run_specs WHERE run = runs.id);
         DROP TABLE run_specs;",
    )
    .unwrap();
    let big = |raw: &rusqlite::Connection| -> i64 {
        raw.query_row("SELECT MAX(length(spec)) FROM runs", [], |r| r.get(0))
            .unwrap()
    };
    assert!(big(&raw) > 100, "the older layout keeps the spec in runs");
    assert_eq!(
        SqliteStore::open_existing(&path)
            .unwrap()
            .run(run)
            .unwrap()
            .spec,
        spec("a")
    );
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(big(&raw), 0, "a controller moved the spec out of runs");
    assert_eq!(store.run(run).unwrap().spec, spec("a"));
    store.set_run_state(run, RunState::Failed).unwrap();
    let later = store.create_run(&spec("b"), 5).unwrap();
    assert_eq!(big(&raw), 0);
    assert_eq!(store.latest_run().unwrap().unwrap().spec, spec("b"));
    assert_eq!(store.run(run).unwrap().state, RunState::Failed);
    assert!(store.forget_unstarted_run(later).unwrap());
    assert!(matches!(store.run(later), Err(StoreError::NoSuchRun(_))));
}

#[test]
#[ignore = "needs PostgreSQL (SFBPATCH_TEST_POSTGRES_URL): scripts/test starts it and runs this"]
fn postgres_moves_run_specs_of_an_older_store() {
    let Some(db) = postgres_schema() else { return };
    let run = db.open().create_run(&spec("a"), 0).unwrap();
    db.client()
        .batch_execute(
            "UPDATE runs SET spec = (SELECT spec FROM run_specs WHERE run = runs.id);
             DROP TABLE run_specs;",
        )
        .unwrap();
    let big = || -> i32 {
        db.client()
            .query_one("SELECT MAX(length(spec)) FROM runs", &[])
            .unwrap()
            .get(0)
    };
    assert!(big() > 100, "the older layout keeps the spec in runs");
    let reader = PgStore::open_existing(&db.url_with_search_path()).unwrap();
    assert_eq!(reader.run(run).unwrap().spec, spec("a"));
    assert_eq!(reader.latest_run().unwrap().unwrap().id, run);
    drop(reader);
    let mut store = db.open();
    assert_eq!(big(), 0, "a controller moved the spec out of runs");
    assert_eq!(store.run(run).unwrap().spec, spec("a"));
    let later = store.create_run(&spec("b"), 5).unwrap();
    assert_eq!(big(), 0);
    assert_eq!(store.latest_run().unwrap().unwrap().spec, spec("b"));
    assert!(store.forget_unstarted_run(later).unwrap());
    assert!(matches!(store.run(later), Err(StoreError::NoSuchRun(_))));
}

/// `acquire_leases` takes or renews many leases with one commit, and a refusal keeps none of
/// them and names the holder.
pub fn many_leases_are_taken_all_or_none(store: &mut dyn Store) {
    let mine = store.create_run(&spec("a"), 0).unwrap();
    let other = store.create_run(&spec("b"), 0).unwrap();
    let pools: Vec<Lease> = (0..300)
        .map(|i| lease(&format!("pool{i}.example.com"), mine, 1_000))
        .collect();
    assert_eq!(store.acquire_leases(&pools, 0).unwrap(), None);
    assert_eq!(store.leases().unwrap().len(), 300);
    // Renewed by the same instance: the new expiry everywhere.
    let renewed: Vec<Lease> = pools
        .iter()
        .map(|l| Lease {
            expires_at: 5_000,
            ..l.clone()
        })
        .collect();
    assert_eq!(store.acquire_leases(&renewed, 900).unwrap(), None);
    assert!(
        store
            .leases()
            .unwrap()
            .iter()
            .all(|l| l.expires_at == 5_000)
    );
    // Another run's lease on one pool refuses the whole call.
    let mut theirs = vec![lease("fresh.example.com", other, 9_000)];
    theirs.push(lease("pool7.example.com", other, 9_000));
    let held = store
        .acquire_leases(&theirs, 1_000)
        .unwrap()
        .expect("refused");
    assert_eq!((held.pool.as_str(), held.run), ("pool7.example.com", mine));
    let now = store.leases().unwrap();
    assert!(
        !now.iter().any(|l| l.pool == "fresh.example.com"),
        "nothing kept"
    );
    assert!(now.iter().all(|l| l.run == mine));
}

#[test]
fn sqlite_many_leases_are_taken_all_or_none() {
    let db = sqlite().unwrap();
    many_leases_are_taken_all_or_none(&mut *db.open());
}

#[test]
#[ignore = "needs PostgreSQL (SFBPATCH_TEST_POSTGRES_URL): scripts/test starts it and runs this"]
fn postgres_many_leases_are_taken_all_or_none() {
    let Some(db) = postgres_schema() else { return };
    many_leases_are_taken_all_or_none(&mut *db.open());
}
