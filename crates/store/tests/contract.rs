//! One contract every `Store` implementation passes. Each test takes a fresh, empty store.

use sfbpatch_engine::{
    AuditEntry, Lease, Record, RunPolicy, RunSpec, RunState, Scope, ServerOutcome, StepResultKind,
    Store, StoreError, TargetSpec,
};
use sfbpatch_plan::{Build, Installer, Package, Plan, ServerRole, StepId};

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
        role: ServerRole::EnterpriseBackend,
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
    // The same run renews.
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
    store.release_leases(r1).unwrap();
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
        role: ServerRole::StandardEdition,
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
    let stats = store.step_stats(ServerRole::EnterpriseBackend, r2).unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].step, StepId::InstallUpdate);
    assert_eq!(stats[0].samples, 2);
    assert_eq!(stats[0].mean_ms, 700_000);
}

macro_rules! contract {
    ($module:ident, $make:expr) => {
        mod $module {
            use super::*;
            #[test]
            fn runs_round_trip() {
                let Some(mut s) = $make else { return };
                super::runs_round_trip(&mut *s);
            }
            #[test]
            fn journal_keeps_order_and_audit() {
                let Some(mut s) = $make else { return };
                super::journal_keeps_order_and_audit(&mut *s);
            }
            #[test]
            fn leases_exclude_other_runs() {
                let Some(mut s) = $make else { return };
                super::leases_exclude_other_runs(&mut *s);
            }
            #[test]
            fn step_stats_by_role_excluding_run() {
                let Some(mut s) = $make else { return };
                super::step_stats_by_role_excluding_run(&mut *s);
            }
        }
    };
}

fn sqlite() -> Option<Box<dyn Store>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    // The directory must outlive the store: leak it for the test's duration.
    std::mem::forget(dir);
    Some(Box::new(sfbpatch_store::SqliteStore::open(&path).unwrap()))
}

contract!(sqlite_store, sqlite());

#[test]
fn sqlite_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let run = {
        let mut s = sfbpatch_store::SqliteStore::open(&path).unwrap();
        let run = s.create_run(&spec("a"), 0).unwrap();
        s.append(3, &scope(run, "a"), &[result(StepId::Verify, 1)], None)
            .unwrap();
        run
    };
    let s = sfbpatch_store::SqliteStore::open(&path).unwrap();
    assert_eq!(s.journal(run).unwrap().len(), 1);
}
