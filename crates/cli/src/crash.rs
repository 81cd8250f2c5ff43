//! A fault-injection hook for the crash tests: with `SFBPATCH_TEST_KILL_AT_APPEND=N` set, the
//! process kills itself with SIGKILL when it is about to write its N-th journal append (counting
//! from 1), i.e. after the target acted but before the result is recorded, or before an intent
//! is recorded. Nothing else reads it; it exists so that tests can stop the process at every
//! commit point, not only where a timer happens to fall.

use sfbpatch_engine::{
    AuditEntry, Lease, Millis, Record, RunId, RunRecord, RunSpec, RunState, Scope, StepStat, Store,
    StoreError,
};
use sfbpatch_plan::ServerKind;

pub const ENV: &str = "SFBPATCH_TEST_KILL_AT_APPEND";

pub fn wrap(store: Box<dyn Store>) -> Box<dyn Store> {
    match std::env::var(ENV).ok().and_then(|v| v.parse::<u64>().ok()) {
        Some(n) if n > 0 => Box::new(KillAt {
            inner: store,
            left: n,
        }),
        _ => store,
    }
}

struct KillAt {
    inner: Box<dyn Store>,
    left: u64,
}

fn kill_self() -> ! {
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status();
    // `kill` should not return; if it could not run, stop as abruptly as we can.
    std::process::abort()
}

impl Store for KillAt {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create_run(&mut self, spec: &RunSpec, at: Millis) -> Result<RunId, StoreError> {
        self.inner.create_run(spec, at)
    }
    fn run(&self, id: RunId) -> Result<RunRecord, StoreError> {
        self.inner.run(id)
    }
    fn run_state(&self, id: RunId) -> Result<RunState, StoreError> {
        self.inner.run_state(id)
    }
    fn latest_run(&self) -> Result<Option<RunRecord>, StoreError> {
        self.inner.latest_run()
    }
    fn set_run_state(&mut self, id: RunId, state: RunState) -> Result<(), StoreError> {
        self.inner.set_run_state(id, state)
    }
    fn forget_unstarted_run(&mut self, id: RunId) -> Result<bool, StoreError> {
        self.inner.forget_unstarted_run(id)
    }
    fn append(
        &mut self,
        at: Millis,
        scope: &Scope<'_>,
        records: &[Record],
        audit: Option<&AuditEntry>,
    ) -> Result<(), StoreError> {
        self.left -= 1;
        if self.left == 0 {
            kill_self();
        }
        self.inner.append(at, scope, records, audit)
    }
    fn journal(&self, run: RunId) -> Result<Vec<sfbpatch_engine::JournalEntry>, StoreError> {
        self.inner.journal(run)
    }
    fn audit(&self, run: RunId) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit(run)
    }
    fn journal_since(
        &self,
        run: RunId,
        after: i64,
    ) -> Result<Vec<sfbpatch_engine::JournalEntry>, StoreError> {
        self.inner.journal_since(run, after)
    }
    fn request_stop(
        &mut self,
        run: RunId,
        by: &str,
        at: Millis,
    ) -> Result<sfbpatch_engine::StopRequest, StoreError> {
        self.inner.request_stop(run, by, at)
    }
    fn stop_request(&self, run: RunId) -> Result<Option<sfbpatch_engine::StopRequest>, StoreError> {
        self.inner.stop_request(run)
    }
    fn acquire_lease(&mut self, lease: &Lease, now: Millis) -> Result<Option<Lease>, StoreError> {
        self.inner.acquire_lease(lease, now)
    }
    fn release_leases(&mut self, run: RunId, instance: &str) -> Result<(), StoreError> {
        self.inner.release_leases(run, instance)
    }
    fn set_durability(
        &mut self,
        durability: sfbpatch_engine::Durability,
    ) -> Result<(), StoreError> {
        self.inner.set_durability(durability)
    }
    fn durability(&self) -> Result<sfbpatch_engine::Durability, StoreError> {
        self.inner.durability()
    }
    fn claim_run(&mut self, run: RunId, instance: &str) -> Result<u64, StoreError> {
        self.inner.claim_run(run, instance)
    }
    fn store_id(&self) -> Result<Option<String>, StoreError> {
        self.inner.store_id()
    }
    fn clock_ms(&self) -> Result<Option<Millis>, StoreError> {
        self.inner.clock_ms()
    }
    fn break_lease(&mut self, pool: &str) -> Result<Option<Lease>, StoreError> {
        self.inner.break_lease(pool)
    }
    fn break_lease_held_by(
        &mut self,
        pool: &str,
        instance: &str,
    ) -> Result<Option<Lease>, StoreError> {
        self.inner.break_lease_held_by(pool, instance)
    }
    fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        self.inner.leases()
    }
    fn step_stats(&self, role: ServerKind, exclude: RunId) -> Result<Vec<StepStat>, StoreError> {
        self.inner.step_stats(role, exclude)
    }
    fn host_key(&self, server: &str) -> Result<Option<String>, StoreError> {
        self.inner.host_key(server)
    }
    fn pin_host_key(&mut self, server: &str, fingerprint: &str) -> Result<(), StoreError> {
        self.inner.pin_host_key(server, fingerprint)
    }
}
