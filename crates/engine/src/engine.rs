//! The dispatcher. It owns the journal, the observer and the clock, decides which server may
//! start and which may enter its outage window, and carries out what each server's
//! [`Executor`] asks for: inline and in time order on a virtual clock (the lab: a
//! discrete-event simulation, deterministic), on worker threads on a real one.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use sfbpatch_plan::{ServerKind, ServerPlan};

use crate::event::{Event, Observer};
use crate::executor::{Call, Cx, Executor, Input, Want};
use crate::policy::{self, RunPolicy};
use crate::status::{ServerState, ServerStatus, fold};
use crate::store::{Lease, Record, RunId, RunRecord, RunSpec, RunState, Scope, Store, StoreError};
use crate::target::{Clock, Fence, Millis, StepRequest, Target, TargetError};

/// How long a lease lives without renewal (wall clock), unless the run's policy says otherwise:
/// short, so that a standby takes a dead controller's run over within half a minute.
pub const LEASE_TTL: Millis = 20 * 1000;
/// How often (wall time) a controller reads the store for a stop request.
pub const STOP_POLL_MS: Millis = 1000;

/// Output kept in the journal, per step.
pub const OUTPUT_EXCERPT: usize = 4000;

/// The journal's name for run-level records.
pub const RUN_SCOPE: &str = "";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "pool {pool} is leased by run {} ({} on {}, pid {}) until {}; wait for it, or break a stale lease with `sfbpatch unlock {pool}`",
        lease.run, lease.holder, lease.host, lease.pid, lease.expires_at
    )]
    Leased { pool: String, lease: Box<Lease> },
    #[error(
        "the lease on pool {pool} was taken over by controller {by} (run {run}); this controller \
         stops here without touching another server"
    )]
    LeaseLost {
        pool: String,
        run: RunId,
        /// The controller instance that holds it now.
        by: String,
    },
    /// Another controller instance claimed the run while this one was paused or cut off: its
    /// journal appends and target calls are refused, and it stops.
    #[error(
        "{by} took run {run} over (generation {current}; this controller holds \
         generation {held}, and was paused or cut off from the state store): this controller \
         stops here without touching any server"
    )]
    Fenced {
        run: RunId,
        held: u64,
        current: u64,
        by: String,
    },
    #[error("run {run} is {state} and cannot be resumed", state = state.as_str())]
    NotResumable { run: RunId, state: RunState },
    #[error("run {run} has no wave waiting for approval")]
    NothingToApprove { run: RunId },
    /// The state store stayed unreachable past the run's limit.
    #[error(
        "the state store stayed unreachable for {:.0} s (limit {:.0} s): {error}; {}",
        *waited_ms as f64 / 1000.0,
        *limit_ms as f64 / 1000.0,
        if in_outage.is_empty() {
            "no server is inside its outage window; `sfbpatch resume` goes on once the store is back".to_string()
        } else {
            format!(
                "inside their outage window (left as they are, out of service): {}; `sfbpatch resume` goes on once the store is back",
                in_outage.join(", ")
            )
        }
    )]
    StoreOutage {
        error: String,
        waited_ms: Millis,
        limit_ms: Millis,
        in_outage: Vec<String>,
    },
    /// A bug: the dispatcher and an executor disagree about what was asked.
    #[error("internal error, the run stops here (everything done so far is journalled): {0}")]
    Protocol(String),
}

impl EngineError {
    /// Stable code for documentation and scripts.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Store(_) => "SFB-E001",
            EngineError::Leased { .. } => "SFB-E002",
            EngineError::LeaseLost { .. } => "SFB-E003",
            EngineError::NotResumable { .. } => "SFB-E004",
            EngineError::NothingToApprove { .. } => "SFB-E005",
            EngineError::Protocol(_) => "SFB-E006",
            EngineError::StoreOutage { .. } => "SFB-E007",
            EngineError::Fenced { .. } => "SFB-E008",
        }
    }

    /// A store that refused a fenced write becomes [`EngineError::Fenced`].
    fn from_store(e: StoreError) -> Self {
        match e {
            StoreError::Fenced {
                run,
                held,
                current,
                by,
            } => EngineError::Fenced {
                run,
                held,
                current,
                by: format!("controller {by}"),
            },
            e => EngineError::Store(e),
        }
    }

    /// [`EngineError::Store`] holding a fenced write, as [`EngineError::Fenced`].
    fn fenced(self) -> Self {
        match self {
            EngineError::Store(e) => Self::from_store(e),
            e => e,
        }
    }
}

/// Who is running the engine, for leases and the audit log.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The operator.
    pub holder: String,
    /// The controller's name (`--controller-name`, by default the host name).
    pub host: String,
    pub pid: u32,
    /// This controller instance: fresh for every process ([`Identity::new_instance`]); a lease
    /// is renewed only by the instance that holds it.
    pub instance: String,
}

impl Identity {
    /// An instance id no other controller process has: the controller's name, its process
    /// id and `nonce` (the caller's random or time-derived bits), as `NAME#PID.NONCE`.
    pub fn new_instance(host: &str, pid: u32, nonce: u64) -> String {
        format!("{host}#{pid}.{nonce:08x}")
    }
}

/// The end of a run (or of this process's part of it).
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub run: RunId,
    pub state: RunState,
    pub servers: Vec<ServerStatus>,
    /// Target-clock time at the end.
    pub finished_at: Millis,
}

pub struct Engine<'a> {
    pub store: &'a mut dyn Store,
    pub target: &'a (dyn Target + Sync),
    /// The target's clock (virtual for the lab).
    pub clock: &'a (dyn Clock + Sync),
    /// Wall clock, for lease expiry.
    pub wall: &'a dyn Clock,
    pub observer: &'a mut dyn Observer,
    pub identity: Identity,
    /// Set from outside (Ctrl-C): no new server starts, no server goes out of service; servers
    /// inside their outage window finish.
    pub cancel: Option<&'a AtomicBool>,
}

impl<'a> Engine<'a> {
    /// Record a new run and carry it out.
    pub fn start(&mut self, spec: RunSpec) -> Result<RunOutcome, EngineError> {
        let pools = pools_of(&spec);
        let now = self.lease_clock(self.wall.now())?;
        for lease in self.store.leases()? {
            if pools.contains(&lease.pool.to_ascii_lowercase()) && lease.expires_at > now {
                return Err(EngineError::Leased {
                    pool: lease.pool.clone(),
                    lease: Box::new(lease),
                });
            }
        }
        let id = self.store.create_run(&spec, self.clock.now())?;
        let run = self.store.run(id)?;
        self.execute(run, false)
    }

    /// Continue a run that did not finish: every completed step stays done, an in-flight step
    /// is probed before anything else happens on its server.
    pub fn resume(&mut self, id: RunId) -> Result<RunOutcome, EngineError> {
        self.resume_with(id, None)
    }

    /// [`Engine::resume`], with the maintenance windows placed anew (a run that stopped at the
    /// end of one night's window continues in the next).
    pub fn resume_with(
        &mut self,
        id: RunId,
        windows: Option<Vec<crate::policy::Window>>,
    ) -> Result<RunOutcome, EngineError> {
        let mut run = self.store.run(id)?;
        if let Some(windows) = windows {
            run.spec.policy.windows = windows;
        }
        if run.state.is_finished() {
            return Err(EngineError::NotResumable {
                run: id,
                state: run.state,
            });
        }
        self.execute(run, true)
    }

    /// Record the approval of a run's canary wave; `resume` then starts the later waves.
    pub fn approve(
        store: &mut dyn Store,
        id: RunId,
        by: &str,
        at: Millis,
    ) -> Result<(), EngineError> {
        let run = store.run(id)?;
        if run.state != RunState::AwaitingApproval {
            return Err(EngineError::NothingToApprove { run: id });
        }
        let scope = Scope {
            run: id,
            server: RUN_SCOPE,
            role: ServerKind::BackEnd,
        };
        store.append(
            at,
            &scope,
            &[Record::WaveApproved {
                wave: 0,
                by: by.to_string(),
            }],
            None,
        )?;
        store.set_run_state(id, RunState::Interrupted)?;
        Ok(())
    }

    fn lease(&self, run: &RunRecord, pool: &str, now: Millis) -> Lease {
        Lease {
            pool: pool.to_ascii_lowercase(),
            run: run.id,
            holder: self.identity.holder.clone(),
            host: self.identity.host.clone(),
            pid: self.identity.pid,
            expires_at: now + run.spec.policy.lease_ttl_ms,
            instance: self.identity.instance.clone(),
            generation: 0,
        }
    }

    /// Takes the run's leases at its start; refused, gives back those it took in this call
    /// (and no other: another controller of the same run may hold the rest).
    fn take_leases(&mut self, run: &RunRecord, initial: bool) -> Result<(), EngineError> {
        let now = self.lease_clock(self.wall.now())?;
        let mut taken: Vec<String> = Vec::new();
        for pool in pools_of(&run.spec) {
            let lease = self.lease(run, &pool, now);
            if let Some(held) = self.store.acquire_lease(&lease, now)? {
                for pool in &taken {
                    self.store
                        .break_lease_held_by(pool, &self.identity.instance)?;
                }
                return Err(if initial {
                    EngineError::Leased {
                        pool,
                        lease: Box::new(held),
                    }
                } else {
                    EngineError::LeaseLost {
                        pool,
                        run: held.run,
                        by: held.instance,
                    }
                });
            }
            taken.push(pool.to_string());
        }
        Ok(())
    }

    fn execute(&mut self, run: RunRecord, resumed: bool) -> Result<RunOutcome, EngineError> {
        let instance = self.identity.instance.clone();
        // The journal is as durable as the world it records, no less.
        self.store.set_durability(self.target.durability())?;
        let claimed = self
            .take_leases(&run, true)
            .and_then(|()| {
                // Every lease is this instance's: make it the run's controller. From here on
                // an older controller of the run is refused by the store and by the servers.
                self.store
                    .claim_run(run.id, &instance)
                    .map_err(EngineError::from_store)
                    .inspect_err(|_| {
                        let _ = self.store.release_leases(run.id, &instance);
                    })
            })
            .and_then(|generation| {
                if resumed {
                    self.store.set_run_state(run.id, RunState::Running)?;
                }
                Ok(generation)
            });
        let generation = match claimed {
            Ok(generation) => generation,
            Err(e) => {
                // A new run that lost the race for its pools never started: it leaves no
                // empty run behind for `status` to show as the newest.
                if !resumed && !self.store.forget_unstarted_run(run.id)? {
                    self.store.set_run_state(run.id, RunState::Failed)?;
                }
                return Err(e.fenced());
            }
        };
        let result = self
            .drive(&run, resumed, generation)
            .map_err(EngineError::fenced);
        // This instance's leases go whatever happened (a newer controller's stay); a crash
        // leaves them to expire or to `unlock`.
        self.store.release_leases(run.id, &instance)?;
        result
    }

    /// Predicted outage and predicted total duration of one server: earlier runs' mean step
    /// durations for servers of its kind, the defaults where no run measured a step. Steps
    /// that do not apply take no time.
    pub fn predict(
        &self,
        run: &RunRecord,
        plan: &ServerPlan,
    ) -> Result<(Millis, Millis), EngineError> {
        let stats = self.store.step_stats(plan.kind, run.id)?;
        Ok(predict_with(&stats, plan))
    }

    fn drive(
        &mut self,
        run: &RunRecord,
        resumed: bool,
        generation: u64,
    ) -> Result<RunOutcome, EngineError> {
        let servers = &run.spec.plan.servers;
        let journal = self.store.journal(run.id)?;
        let statuses = fold(servers, &journal);
        let approved = journal
            .iter()
            .any(|e| matches!(e.record, Record::WaveApproved { wave: 0, .. }));
        self.observer.on_event(&Event::RunStarted {
            run: run.id,
            servers: servers.len(),
            resumed,
            run_created_at: run.created_at,
            wall_clock: !self.target.keeps_own_time(),
            at: self.clock.now(),
        });
        let mut stats = HashMap::new();
        let mut predictions = Vec::with_capacity(servers.len());
        let mut from_outage = Vec::with_capacity(servers.len());
        for plan in servers {
            if let std::collections::hash_map::Entry::Vacant(e) = stats.entry(plan.kind) {
                e.insert(self.store.step_stats(plan.kind, run.id)?);
            }
            predictions.push(predict_with(&stats[&plan.kind], plan));
            from_outage.push(predict_from_outage(&stats[&plan.kind], plan));
        }
        let mut d = Dispatch::new(run, statuses, predictions, approved);
        d.from_outage = from_outage;
        let store_name = match self.store.store_id()? {
            Some(id) => id,
            None => self.store.location(),
        };
        d.lock_holder = server_lock_holder(&store_name, run.id);
        d.generation = generation;
        // Servers an earlier controller left in flight carry its generation in their lock:
        // raise it first, so that a call the earlier controller still makes is refused there.
        for &idx in &d.resumed {
            let plan = &run.spec.plan.servers[idx];
            let wall = self.wall.now();
            let fence = Fence {
                holder: &d.lock_holder,
                generation,
            };
            if let Err(e @ TargetError::Fenced { .. }) =
                self.target
                    .lock_server(plan, fence, wall, wall + SERVER_LOCK_TTL)
            {
                return Err(self.fenced_by_target(run, &e));
            }
        }
        let result = if self.clock.is_virtual() {
            self.run_virtual(run, &mut d)
        } else {
            self.run_real(run, &mut d)
        };
        result?;
        let mut state = d.final_state(self.cancelled(&d));
        if d.all_finished() && self.check_databases(run, d.end.max(self.clock.now()))? {
            state = RunState::Failed;
        }
        self.store.set_run_state(run.id, state)?;
        let at = d.end.max(self.clock.now());
        if self.clock.is_virtual() {
            // Leave the world's clock at the end of the last operation.
            self.clock.set(at);
        }
        if state == RunState::AwaitingApproval {
            self.observer.on_event(&Event::AwaitingApproval {
                run: run.id,
                wave: 0,
                at,
            });
        }
        self.observer.on_event(&Event::RunFinished {
            run: run.id,
            state,
            at,
        });
        Ok(RunOutcome {
            run: run.id,
            state,
            servers: d.into_statuses(),
            finished_at: at,
        })
    }

    /// The run-level check after the last server: every database of the deployment against
    /// its expected version, journalled. Returns whether any is behind.
    fn check_databases(&mut self, run: &RunRecord, at: Millis) -> Result<bool, EngineError> {
        let databases = match self.target.databases(&run.spec.plan) {
            Ok(Some(databases)) => databases,
            Ok(None) => return Ok(false),
            Err(e) => {
                // Not knowing is not knowing: say so, and fail the run rather than claim success.
                let behind = vec![format!("Test-CsDatabase could not run: {e}")];
                self.observer.on_event(&Event::DatabasesChecked {
                    checked: 0,
                    behind,
                    at,
                });
                return Ok(true);
            }
        };
        let behind: Vec<String> = databases
            .iter()
            .filter(|d| !d.is_current())
            .map(|d| {
                format!(
                    "{}: installed {}, expected {}",
                    d.label(),
                    d.installed_version,
                    d.expected_version
                )
            })
            .collect();
        let scope = Scope {
            run: run.id,
            server: RUN_SCOPE,
            role: ServerKind::BackEnd,
        };
        let checked = databases.len();
        self.store
            .append(at, &scope, &[Record::DatabasesChecked { databases }], None)?;
        let any = !behind.is_empty();
        self.observer.on_event(&Event::DatabasesChecked {
            checked,
            behind,
            at,
        });
        Ok(any)
    }

    /// Asked to stop: Ctrl-C (`cancel`), or a stop request in the store for this controller.
    fn cancelled(&self, d: &Dispatch<'_>) -> bool {
        self.cancel.is_some_and(|c| c.load(Ordering::SeqCst)) || d.stop_asked.is_some()
    }

    /// The run was interrupted: from now on no server starts; told once.
    fn stop_requested(&mut self, d: &mut Dispatch<'_>, now: Millis) {
        if d.stopping.is_none() {
            let reason = d
                .stop_asked
                .clone()
                .unwrap_or_else(|| "the run was interrupted".to_string());
            self.observer.on_event(&Event::StopRequested {
                reason: reason.clone(),
                at: now,
            });
            d.stopping = Some(reason);
        }
    }

    /// The clock leases are written and judged on: the store's, when it has one that every
    /// controller shares (PostgreSQL), else this controller's wall clock (`wall`).
    fn lease_clock(&mut self, wall: Millis) -> Result<Millis, EngineError> {
        Ok(self
            .store
            .clock_ms()
            .map_err(EngineError::from_store)?
            .unwrap_or(wall))
    }

    fn renew_leases(&mut self, run: &RunRecord, d: &mut Dispatch<'_>) -> Result<(), EngineError> {
        // When to renew: this controller's own clock; the expiry: the store's (lease_clock).
        let wall = self.wall.now();
        if wall.saturating_sub(d.renewed_at) >= run.spec.policy.lease_ttl_ms / 3 {
            let leases: Vec<Lease> = pools_of(&run.spec)
                .into_iter()
                .map(|pool| self.lease(run, &pool, 0))
                .collect();
            let ttl = run.spec.policy.lease_ttl_ms;
            let held = self.store_write(run, Some(d), |s| {
                let now = s.clock_ms()?.unwrap_or(wall);
                let renewed: Vec<Lease> = leases
                    .iter()
                    .map(|lease| Lease {
                        expires_at: now + ttl,
                        ..lease.clone()
                    })
                    .collect();
                // One commit for every pool of the run (thousands in a large deployment).
                Ok(s.acquire_leases(&renewed, now)?
                    .map(|other| (other.pool.clone(), other)))
            })?;
            if let Some((pool, by)) = held {
                return Err(EngineError::LeaseLost {
                    pool,
                    run: by.run,
                    by: by.instance,
                });
            }
            d.renewed_at = wall;
        }
        self.read_stop_request(run, d, wall)
    }

    /// A stop asked through the store ([`Store::request_stop`], by `sfbpatch serve`) for this
    /// controller's claim acts as Ctrl-C does; read at most every [`STOP_POLL_MS`] of wall time.
    fn read_stop_request(
        &mut self,
        run: &RunRecord,
        d: &mut Dispatch<'_>,
        wall: Millis,
    ) -> Result<(), EngineError> {
        if d.stop_asked.is_some() || wall.saturating_sub(d.stop_checked_at) < STOP_POLL_MS {
            return Ok(());
        }
        d.stop_checked_at = wall;
        let request = self.store_write(run, Some(d), |s| s.stop_request(run.id))?;
        if let Some(r) = request.filter(|r| r.generation == d.generation) {
            d.stop_asked = Some(format!("{} asked the run to stop", r.by));
        }
        Ok(())
    }

    /// Runs `write` on the store, riding out a store that cannot be reached: every server is
    /// held where it is (its next step boundary), the observer is told, and the write is tried
    /// again with backoff until it succeeds or the run's limit passes.
    fn store_write<T>(
        &mut self,
        run: &RunRecord,
        d: Option<&Dispatch<'_>>,
        mut write: impl FnMut(&mut dyn Store) -> Result<T, StoreError>,
    ) -> Result<T, EngineError> {
        let limit = run.spec.policy.store_outage_limit_ms;
        let mut since = None;
        let mut wait: Millis = 1000;
        loop {
            match write(&mut *self.store) {
                Ok(value) => {
                    if let Some(since) = since {
                        let after_ms = self.wall.now().saturating_sub(since);
                        self.observer.on_event(&Event::StoreReachable { after_ms });
                    }
                    return Ok(value);
                }
                Err(e) if e.is_transient() => {
                    let started = *since.get_or_insert_with(|| self.wall.now());
                    let waited_ms = self.wall.now().saturating_sub(started);
                    let in_outage: Vec<String> = d.map_or_else(Vec::new, |d| {
                        d.in_outage
                            .iter()
                            .map(|&i| d.plan(i).fqdn.to_string())
                            .collect()
                    });
                    if waited_ms >= limit {
                        return Err(EngineError::StoreOutage {
                            error: e.to_string(),
                            waited_ms,
                            limit_ms: limit,
                            in_outage,
                        });
                    }
                    self.observer.on_event(&Event::StoreUnreachable {
                        error: e.to_string(),
                        waited_ms,
                        held: d.map_or(0, |d| d.active.len()),
                        in_outage,
                    });
                    self.wall.sleep(wait.min(limit - waited_ms).max(1));
                    wait = (wait * 2).min(10_000);
                }
                Err(e) => return Err(EngineError::from_store(e)),
            }
        }
    }

    /// The budget line of server `idx` at `now`: journalled and told when its outage window,
    /// still open, has passed the budget.
    fn budget_line(
        &mut self,
        run: &RunRecord,
        d: &mut Dispatch<'_>,
        idx: usize,
        now: Millis,
    ) -> Result<(), EngineError> {
        let Some(exec) = d.execs[idx].as_mut() else {
            return Ok(());
        };
        let mut journal = Vec::new();
        let mut cx = Cx {
            journal: &mut journal,
            observer: &mut *self.observer,
            run,
            now,
        };
        exec.budget_line(&mut cx)?;
        if !journal.is_empty() {
            self.store_write(run, Some(d), |s| s.append_batch(&journal))?;
        }
        Ok(())
    }

    /// The error for a call a server refused because a newer controller holds its lock.
    fn fenced_by_target(&self, run: &RunRecord, e: &TargetError) -> EngineError {
        let (held, current) = match e {
            TargetError::Fenced { held, current, .. } => (*held, *current),
            _ => (0, 0),
        };
        EngineError::Fenced {
            run: run.id,
            held,
            current,
            by: format!("another controller ({e})"),
        }
    }

    /// Feed `input` to executor `idx` at time `now` and carry out what it wants. Returns a
    /// target call to make, if any.
    fn step_executor(
        &mut self,
        run: &RunRecord,
        d: &mut Dispatch<'_>,
        idx: usize,
        input: Input,
        now: Millis,
    ) -> Result<Option<(Call, usize, u32, Millis)>, EngineError> {
        if let Some(e) = input.fenced() {
            return Err(self.fenced_by_target(run, e));
        }
        if matches!(input, Input::BudgetLine) {
            self.budget_line(run, d, idx, now)?;
            return Ok(None);
        }
        let was_in_outage = d.execs[idx].as_ref().is_some_and(|e| e.status.in_outage());
        let (want, journal) = {
            let exec = d.execs[idx].as_mut().expect("active executor");
            let mut journal = Vec::new();
            let mut cx = Cx {
                journal: &mut journal,
                observer: &mut *self.observer,
                run,
                now,
            };
            (exec.next(&mut cx, input), journal)
        };
        // Commit what the transition recorded before anything it asks for happens; while the
        // store cannot be reached, nothing else happens.
        if !journal.is_empty() {
            self.store_write(run, Some(d), |s| s.append_batch(&journal))?;
        }
        let want = want?;
        d.end = d.end.max(now);
        let exec = d.execs[idx].as_ref().expect("active executor");
        // The budget line of an outage window that opened: a timer, so that it is told when
        // it is crossed, whatever step runs then.
        match exec.status.outage_started_at {
            Some(start) if exec.status.in_outage() => {
                if d.budget_timer[idx].map(|(s, _)| s) != Some(start) {
                    let line = start + run.spec.policy.outage_budget_ms + 1;
                    d.schedule(line.max(now), idx, Input::BudgetLine);
                    d.budget_timer[idx] = Some((start, d.seq));
                }
            }
            // Closed (or never opened): its timer, if any, no longer counts.
            _ => d.budget_timer[idx] = None,
        }
        let exec = d.execs[idx].as_ref().expect("active executor");
        // The slot goes with the window's end (a window that never took effect keeps it: the
        // server opens it again with its next attempt).
        if was_in_outage && exec.status.outage_ended_at.is_some() {
            d.release_slot(idx);
        }
        let mut call = None;
        match want {
            Want::Call {
                call: c,
                step,
                attempt,
            } => {
                let timeout = match c {
                    Call::Execute => d.execs[idx].as_ref().map_or(0, |e| e.execute_timeout),
                    Call::Probe | Call::Preflight => policy::PROBE_TIMEOUT,
                    Call::Reboot => policy::REBOOT_TIMEOUT,
                    Call::Recover => policy::RECOVER_TIMEOUT,
                };
                call = Some((c, step, attempt, timeout))
            }
            Want::Wait(wait) => d.schedule(now + wait, idx, Input::Waited),
            Want::OutageSlot => d.waiting.push(idx),
            Want::Done => {
                d.finished(idx, &run.spec.policy);
                // Release the server's own lock; one left behind expires or is removed by hand.
                let plan = &run.spec.plan.servers[idx];
                let _ = self.target.unlock_server(plan, &d.lock_holder);
            }
        }
        d.grant_slots(now);
        Ok(call)
    }

    #[allow(clippy::too_many_arguments)]
    fn call_target(
        target: &(dyn Target + Sync),
        run: &RunRecord,
        plan: &ServerPlan,
        call: Call,
        step: usize,
        attempt: u32,
        timeout: Millis,
        fence: Fence<'_>,
        at: Millis,
    ) -> Input {
        if call == Call::Preflight {
            // The server's own lock first: another controller patching it (with another state
            // store) is refused before anything is read or changed.
            let wall = crate::target::SystemClock.now();
            let facts = match target.lock_server(plan, fence, wall, wall + SERVER_LOCK_TTL) {
                Ok(Some(other)) => Err(TargetError::Refused(format!(
                    "server {} is locked by another controller ({}) until {} ms after the Unix \
                     epoch; wait for it, or remove its lock once that controller is gone",
                    plan.fqdn, other.holder, other.expires_at
                ))),
                Ok(None) => target.preflight(plan),
                Err(e) => Err(e),
            };
            return Input::Facts(facts);
        }
        let step = &plan.steps[step];
        let req = StepRequest {
            run_id: run.id,
            server: plan,
            step,
            host: step.run_on.as_ref().unwrap_or(&plan.fqdn),
            package: &run.spec.plan.package,
            operator: &run.spec.operator,
            attempt,
            timeout,
            at,
            fence,
        };
        match call {
            Call::Execute => Input::Outcome(target.execute(&req)),
            Call::Probe => Input::Probe(target.probe(&req)),
            Call::Reboot => Input::Outcome(target.reboot(&req)),
            Call::Recover => Input::Outcome(target.recover(&req)),
            Call::Preflight => unreachable!("answered above"),
        }
    }

    /// Simulated time: one operation at a time, always the earliest, so the world sees every
    /// operation at its own time and a run repeats exactly.
    fn run_virtual(&mut self, run: &RunRecord, d: &mut Dispatch<'_>) -> Result<(), EngineError> {
        let mut now = self.clock.now();
        d.end = now;
        loop {
            self.renew_leases(run, d)?;
            if !self.cancelled(d) {
                d.admit(now, &mut *self.observer);
            } else {
                self.stop_requested(d, now);
            }
            let Some((t, idx, input)) = d.pop() else {
                break;
            };
            now = t;
            if idx == WAKE {
                d.dirty = true;
                d.grant_slots(now);
                continue;
            }
            self.clock.set(now);
            if let Some((call, step, attempt, timeout)) =
                self.step_executor(run, d, idx, input, now)?
            {
                let plan = &run.spec.plan.servers[idx];
                let result = Self::call_target(
                    self.target,
                    run,
                    plan,
                    call,
                    step,
                    attempt,
                    timeout,
                    d.fence(),
                    now,
                );
                let after = self.clock.now().max(now);
                d.schedule(after, idx, result);
            }
        }
        Ok(())
    }

    /// Real time: target calls on worker threads; the dispatcher keeps the journal.
    fn run_real(&mut self, run: &RunRecord, d: &mut Dispatch<'_>) -> Result<(), EngineError> {
        let target = self.target;
        std::thread::scope(|scope| -> Result<(), EngineError> {
            let (tx, rx) = mpsc::channel::<(usize, Millis, Input)>();
            let mut in_calls = 0usize;
            let mut ticked = self.wall.now();
            loop {
                self.renew_leases(run, d)?;
                let now = self.clock.now();
                if !self.cancelled(d) {
                    d.admit(now, &mut *self.observer);
                } else {
                    self.stop_requested(d, now);
                }
                let wall = self.wall.now();
                if wall.saturating_sub(ticked) >= 1000 {
                    ticked = wall;
                    self.observer.on_event(&Event::Tick { at: now });
                }
                // Everything due now, each at its own time (a target that keeps its own time
                // says when its operations ended: the journal agrees with it exactly).
                if let Some((t, idx, input)) = d.pop_due(now) {
                    if idx == WAKE {
                        d.dirty = true;
                        d.grant_slots(now);
                        continue;
                    }
                    if let Some((call, step, attempt, timeout)) =
                        self.step_executor(run, d, idx, input, t)?
                    {
                        let plan = &run.spec.plan.servers[idx];
                        let tx = tx.clone();
                        let holder = d.lock_holder.clone();
                        let generation = d.generation;
                        in_calls += 1;
                        scope.spawn(move || {
                            let fence = Fence {
                                holder: &holder,
                                generation,
                            };
                            let result = Self::call_target(
                                target, run, plan, call, step, attempt, timeout, fence, t,
                            );
                            let _ = tx.send((idx, t, result));
                        });
                    }
                    continue;
                }
                if in_calls == 0 && d.queue_is_empty() {
                    break;
                }
                let second = std::time::Duration::from_secs(1);
                let timeout = d.next_time().map_or(second, |t| {
                    self.clock.real_duration(t.saturating_sub(now)).min(second)
                });
                match rx.recv_timeout(timeout) {
                    Ok((idx, called_at, result)) => {
                        in_calls -= 1;
                        let at = match &result {
                            Input::Outcome(Ok(o)) => o.ended_at,
                            Input::Probe(Ok(_)) | Input::Facts(Ok(_))
                                if target.keeps_own_time() =>
                            {
                                Some(called_at)
                            }
                            _ => None,
                        };
                        d.schedule(at.unwrap_or_else(|| self.clock.now()), idx, result);
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        unreachable!("the dispatcher holds a sender")
                    }
                }
            }
            Ok(())
        })
    }
}

/// How long a server's own lock lasts without being released: a night.
pub const SERVER_LOCK_TTL: Millis = 12 * 60 * 60 * 1000;

/// Who holds a server's lock: the run, in its state store ([`Store::store_id`]: two state
/// files may both have a run 1, and one store may be opened by several paths).
pub fn server_lock_holder(store: &str, run: RunId) -> String {
    format!("{store}#run{run}")
}

/// An event index that only wakes the dispatcher (a maintenance window opening).
const WAKE: usize = usize::MAX;

/// The dispatcher's bookkeeping: who runs, who waits, what holds which slot.
struct Dispatch<'r> {
    run: &'r RunRecord,
    statuses: Vec<Option<ServerStatus>>,
    execs: Vec<Option<Executor<'r>>>,
    /// Per server: predicted outage and predicted total duration.
    predictions: Vec<(Millis, Millis)>,
    /// Per server: the predicted time from its outage window's first step to its end.
    from_outage: Vec<Millis>,
    /// Per server: its predicted remaining chain ([`critical_path`]), the order servers start
    /// in within a wave and, with what staging showed of the server's pace, are granted
    /// outage slots in.
    rank: Vec<Millis>,
    /// Per server: the place of its kind in the policy's order.
    role_pos: Vec<usize>,
    /// Servers waiting for an outage slot that the open maintenance window cannot fit: they
    /// stay in service, before their outage, until a window that fits opens.
    held: BTreeSet<usize>,
    /// When the dispatcher wakes for a window that fits a held server.
    held_wake: Option<Millis>,
    /// Per server: the servers (indices) that must have finished successfully first.
    after: Vec<Vec<usize>>,
    /// Server indices in policy order, split into waves.
    waves: Vec<Vec<usize>>,
    wave: usize,
    /// Per wave, servers not finished yet; per server, its wave.
    wave_left: Vec<usize>,
    wave_of: Vec<usize>,
    /// Per wave, where to look for the next server to start.
    cursor: usize,
    /// Something changed that may let a server start.
    dirty: bool,
    /// Servers an earlier process started and did not finish.
    resumed: Vec<usize>,
    approved: bool,
    queue: BinaryHeap<Reverse<(Millis, u64, usize)>>,
    inputs: HashMap<(u64, usize), Input>,
    seq: u64,
    /// Executors waiting for an outage slot.
    waiting: Vec<usize>,
    in_outage: BTreeSet<usize>,
    active: BTreeSet<usize>,
    /// Serial groups with servers in flight ([`ServerPlan::serial_key`]): the batch they belong
    /// to and how many are in flight.
    busy: HashMap<String, (String, usize)>,
    /// Serial groups stopped by a failure, with the reason: their other servers are skipped.
    stopped_groups: HashMap<String, String>,
    /// Who holds the lock each server keeps ([`server_lock_holder`]).
    lock_holder: String,
    /// The generation of this controller's claim on the run.
    generation: u64,
    /// Per server: the outage window (by its start) whose budget line is on the timer, and
    /// the timer's queue entry; an entry no server's window owns any more is dropped unseen.
    budget_timer: Vec<Option<(Millis, u64)>>,
    failed: usize,
    stopping: Option<String>,
    window_closed: bool,
    awaiting_approval: bool,
    renewed_at: Millis,
    /// When the store was last read for a stop request, and the request found for this claim.
    stop_checked_at: Millis,
    stop_asked: Option<String>,
    end: Millis,
}

impl<'r> Dispatch<'r> {
    fn new(
        run: &'r RunRecord,
        statuses: Vec<ServerStatus>,
        predictions: Vec<(Millis, Millis)>,
        approved: bool,
    ) -> Self {
        let servers = &run.spec.plan.servers;
        let policy = &run.spec.policy;
        let index: HashMap<String, usize> = servers
            .iter()
            .enumerate()
            .map(|(i, s)| (s.fqdn.key(), i))
            .collect();
        let after: Vec<Vec<usize>> = servers
            .iter()
            .map(|s| {
                s.after
                    .iter()
                    .filter_map(|f| index.get(&f.key()).copied())
                    .collect()
            })
            .collect();
        // Per server, the place of its kind in the policy's order (all equal without one).
        let role_pos: Vec<usize> = servers
            .iter()
            .map(|s| {
                policy
                    .order
                    .iter()
                    .position(|r| *r == s.kind)
                    .unwrap_or(policy.order.len())
            })
            .collect();
        let mut order: Vec<usize> = (0..servers.len()).collect();
        order.sort_by_key(|&i| (role_pos[i], i));
        let order = dependencies_first(&order, &after);
        let mut waves = Vec::new();
        let mut rest = &order[..];
        for size in &policy.waves {
            let n = size.of(servers.len()).max(1).min(rest.len());
            if n == 0 {
                break;
            }
            waves.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        if !rest.is_empty() {
            waves.push(rest.to_vec());
        }
        // Within a wave and a kind of the policy's order, the longest remaining chain goes
        // first (critical path): a pool whose Front End servers and back end must run one
        // after another starts before servers that fit anywhere, so the outage slots are not
        // left idle at the end of the night.
        let rank = critical_path(servers, &predictions, &after);
        for wave in &mut waves {
            wave.sort_by_key(|&i| (role_pos[i], Reverse(rank[i]), i));
        }
        let failed = statuses
            .iter()
            .filter(|s| s.state == ServerState::Failed)
            .count();
        let mut wave_of = vec![0; servers.len()];
        let mut wave_left = vec![0; waves.len()];
        for (w, members) in waves.iter().enumerate() {
            for &i in members {
                wave_of[i] = w;
                if !statuses[i].is_finished() {
                    wave_left[w] += 1;
                }
            }
        }
        let resumed = (0..statuses.len())
            .filter(|&i| statuses[i].state == ServerState::Running)
            .collect();
        Dispatch {
            resumed,
            wave_left,
            wave_of,
            cursor: 0,
            dirty: true,
            run,
            execs: (0..servers.len()).map(|_| None).collect(),
            statuses: statuses.into_iter().map(Some).collect(),
            predictions,
            from_outage: Vec::new(),
            rank,
            role_pos,
            held: BTreeSet::new(),
            held_wake: None,
            after,
            waves,
            wave: 0,
            approved,
            queue: BinaryHeap::new(),
            inputs: HashMap::new(),
            seq: 0,
            waiting: Vec::new(),
            in_outage: BTreeSet::new(),
            active: BTreeSet::new(),
            busy: HashMap::new(),
            stopped_groups: HashMap::new(),
            lock_holder: String::new(),
            generation: 0,
            budget_timer: vec![None; run.spec.plan.servers.len()],
            failed,
            stopping: None,
            window_closed: false,
            awaiting_approval: false,
            renewed_at: 0,
            stop_checked_at: 0,
            stop_asked: None,
            end: 0,
        }
    }

    fn schedule(&mut self, at: Millis, idx: usize, input: Input) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, idx)));
        self.inputs.insert((self.seq, idx), input);
    }

    fn take(&mut self, entry: (Millis, u64, usize)) -> (Millis, usize, Input) {
        let (t, seq, idx) = entry;
        let input = self.inputs.remove(&(seq, idx)).unwrap_or(Input::Waited);
        (t, idx, input)
    }

    /// Drops budget-line timers at the head of the queue whose window closed: a run never
    /// waits for them.
    fn drop_stale_timers(&mut self) {
        while let Some(&Reverse((_, seq, idx))) = self.queue.peek() {
            let stale = matches!(self.inputs.get(&(seq, idx)), Some(Input::BudgetLine))
                && self.budget_timer[idx].map(|(_, live)| live) != Some(seq);
            if !stale {
                break;
            }
            self.queue.pop();
            self.inputs.remove(&(seq, idx));
        }
    }

    fn pop(&mut self) -> Option<(Millis, usize, Input)> {
        self.drop_stale_timers();
        let Reverse(entry) = self.queue.pop()?;
        Some(self.take(entry))
    }

    fn pop_due(&mut self, now: Millis) -> Option<(Millis, usize, Input)> {
        self.drop_stale_timers();
        match self.queue.peek() {
            Some(Reverse((t, _, _))) if *t <= now => self.pop(),
            _ => None,
        }
    }

    fn next_time(&mut self) -> Option<Millis> {
        self.drop_stale_timers();
        self.queue.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Whether nothing is queued but timers that no longer count.
    fn queue_is_empty(&mut self) -> bool {
        self.drop_stale_timers();
        self.queue.is_empty()
    }

    fn policy(&self) -> &'r RunPolicy {
        &self.run.spec.policy
    }

    /// Who this controller's calls come from.
    fn fence(&self) -> Fence<'_> {
        Fence {
            holder: &self.lock_holder,
            generation: self.generation,
        }
    }

    fn plan(&self, idx: usize) -> &'r ServerPlan {
        &self.run.spec.plan.servers[idx]
    }

    /// Start what may start at `now`.
    fn admit(&mut self, now: Millis, observer: &mut dyn Observer) {
        if !std::mem::take(&mut self.dirty)
            || self.stopping.is_some()
            || self.awaiting_approval
            || self.window_closed
        {
            return;
        }
        // Servers already started in an earlier process go first, whatever the limits. They
        // exist only when the run begins, so one look is enough.
        for idx in std::mem::take(&mut self.resumed) {
            self.start(idx, now);
        }
        while self.wave < self.waves.len() && self.wave_left[self.wave] == 0 {
            if self.wave == 0
                && self.waves.len() > 1
                && self.policy().pause_after_canary
                && !self.approved
            {
                self.awaiting_approval = true;
                return;
            }
            self.wave += 1;
            self.cursor = 0;
        }
        if self.wave >= self.waves.len() {
            return;
        }
        let policy = self.policy();
        let limit = (policy.max_parallel.max(1) as usize) * 2;
        let site_limit = policy.max_parallel_per_site.map(|n| n.max(1) as usize * 2);
        let wave_len = self.waves[self.wave].len();
        let mut next_window: Option<Millis> = None;
        let mut k = self.cursor;
        let mut all_started_before_k = true;
        while k < wave_len && self.active.len() < limit {
            let idx = self.waves[self.wave][k];
            k += 1;
            let pending = self.statuses[idx]
                .as_ref()
                .is_some_and(|s| s.state == ServerState::Pending);
            if !pending {
                if all_started_before_k {
                    self.cursor = k;
                }
                continue;
            }
            let plan = self.plan(idx);
            if let Some(reason) = self.must_skip(idx) {
                self.start(idx, now);
                if let Some(e) = self.execs[idx].as_mut() {
                    e.skip = Some(reason);
                }
                if all_started_before_k {
                    self.cursor = k;
                }
                continue;
            }
            if !self.dependencies_done(idx) || !self.group_admits(plan) {
                all_started_before_k = false;
                continue;
            }
            if let Some(site_limit) = site_limit {
                let on_site = self
                    .active
                    .iter()
                    .filter(|&&a| self.plan(a).site == plan.site)
                    .count();
                if on_site >= site_limit {
                    all_started_before_k = false;
                    continue;
                }
            }
            if !policy.windows.is_empty() {
                let (_, total) = self.predictions[idx];
                if let Err(later) = fit(&policy.windows, now, total) {
                    all_started_before_k = false;
                    match later {
                        Some(at) => {
                            next_window = Some(next_window.map_or(at, |n: Millis| n.min(at)))
                        }
                        None if self.active.iter().all(|a| self.held.contains(a)) => {
                            self.window_closed = true;
                            let pending = self
                                .statuses
                                .iter()
                                .flatten()
                                .filter(|s| s.state == ServerState::Pending)
                                .count();
                            observer.on_event(&Event::WindowClosed { pending, at: now });
                            return;
                        }
                        None => {}
                    }
                    continue;
                }
            }
            self.start(idx, now);
            if all_started_before_k {
                self.cursor = k;
            }
        }
        if let Some(at) = next_window
            && self.active.iter().all(|a| self.held.contains(a))
        {
            self.schedule(at, WAKE, Input::Waited);
        }
    }

    fn start(&mut self, idx: usize, now: Millis) {
        let Some(status) = self.statuses[idx].take() else {
            return;
        };
        let plan = self.plan(idx);
        let (outage, total) = self.predictions[idx];
        let in_outage = status.in_outage();
        let mut exec = Executor::new(plan, status, outage);
        exec.predicted_duration = total;
        exec.slot_held = in_outage;
        self.execs[idx] = Some(exec);
        self.active.insert(idx);
        let batch = self.batch_of(plan);
        self.busy
            .entry(plan.serial_key())
            .and_modify(|(_, n)| *n += 1)
            .or_insert((batch, 1));
        if in_outage {
            // Resumed inside its outage window: it holds its slot.
            self.in_outage.insert(idx);
        }
        self.schedule(now, idx, Input::Start);
    }

    fn finished(&mut self, idx: usize, policy: &RunPolicy) {
        self.dirty = true;
        self.wave_left[self.wave_of[idx]] -= 1;
        self.active.remove(&idx);
        self.release_slot(idx);
        let plan = self.plan(idx);
        let key = plan.serial_key();
        if let Some((_, n)) = self.busy.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.busy.remove(&key);
            }
        }
        let exec = self.execs[idx].as_ref().expect("finished executor");
        if matches!(exec.status.state, ServerState::Failed)
            && !self.stopped_groups.contains_key(&key)
        {
            let what = match plan.kind {
                ServerKind::FrontEnd => format!("pool {}", plan.pool),
                _ => format!("SQL Server {}", plan.sql_server_fqdn),
            };
            self.stopped_groups.insert(
                key,
                format!(
                    "not started: {what} was stopped after {} failed: {}",
                    plan.fqdn,
                    exec.status
                        .reason
                        .as_deref()
                        .unwrap_or("no reason recorded")
                ),
            );
        }
        if exec.status.state == ServerState::Failed {
            self.failed += 1;
            let total = self.run.spec.plan.servers.len();
            if policy.failure_budget_exceeded(self.failed, total) && self.stopping.is_none() {
                let reason = format!(
                    "the failure budget is spent ({} of {total} servers failed)",
                    self.failed
                );
                self.stopping = Some(reason.clone());
                for &a in &self.active {
                    if let Some(e) = self.execs[a].as_mut() {
                        e.abort = Some(reason.clone());
                    }
                }
                // Servers waiting for a slot stop where they are.
                for w in std::mem::take(&mut self.waiting) {
                    let at = self.end;
                    self.schedule(at, w, Input::Waited);
                }
            }
        }
    }

    /// The batch a server belongs to within its serial group: Front End servers of one
    /// upgrade domain share one when the policy takes a domain at a time.
    fn batch_of(&self, plan: &ServerPlan) -> String {
        match (
            plan.kind,
            self.policy().front_end_batch,
            &plan.upgrade_domain,
        ) {
            (ServerKind::FrontEnd, policy::FrontEndBatch::UpgradeDomain, Some(ud)) => {
                format!("ud:{}", ud.to_ascii_lowercase())
            }
            _ => format!("server:{}", plan.fqdn.key()),
        }
    }

    /// Whether the server's serial group lets it start: nothing of the group in flight, or
    /// only servers of its own batch.
    fn group_admits(&self, plan: &ServerPlan) -> bool {
        match self.busy.get(&plan.serial_key()) {
            None => true,
            Some((batch, _)) => *batch == self.batch_of(plan) && !batch.starts_with("server:"),
        }
    }

    fn status_of(&self, idx: usize) -> Option<&ServerStatus> {
        self.execs[idx]
            .as_ref()
            .map(|e| &e.status)
            .or(self.statuses[idx].as_ref())
    }

    fn dependencies_done(&self, idx: usize) -> bool {
        self.after[idx]
            .iter()
            .all(|&d| self.status_of(d).is_some_and(ServerStatus::is_finished))
    }

    /// Why a pending server must be skipped rather than started: a server it depends on ended
    /// without succeeding, or its serial group (pool, back end) was stopped by a failure.
    fn must_skip(&self, idx: usize) -> Option<String> {
        let plan = self.plan(idx);
        if let Some(reason) = self.stopped_groups.get(&plan.serial_key()) {
            return Some(reason.clone());
        }
        for &d in &self.after[idx] {
            if let Some(st) = self.status_of(d)
                && st.is_finished()
                && !st.is_success()
            {
                return Some(format!(
                    "not started: {} ({}) must run the new build first and ended {}{}",
                    st.fqdn,
                    st.kind,
                    st.state.as_str(),
                    st.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ));
            }
        }
        None
    }

    fn release_slot(&mut self, idx: usize) {
        self.in_outage.remove(&idx);
    }

    /// Grant outage slots to waiting servers, earlier waves and kinds earlier in the policy's
    /// order first, then the longest remaining chain first ([`Dispatch::slot_rank`]), as far
    /// as the limits allow: overall and per site, and never both pools of a disaster-recovery
    /// pair.
    fn grant_slots(&mut self, now: Millis) {
        let policy = self.policy();
        self.held.clear();
        // Only a free slot needs the order (this runs after every transition).
        if self.waiting.len() > 1 && self.in_outage.len() < policy.max_parallel.max(1) as usize {
            let mut waiting = std::mem::take(&mut self.waiting);
            waiting.sort_by_cached_key(|&i| {
                (
                    self.wave_of[i],
                    self.role_pos[i],
                    Reverse(self.slot_rank(i)),
                    i,
                )
            });
            self.waiting = waiting;
        }
        // Once the run is stopping, a server that has not gone out of service stays in service:
        // it waits at its outage gate, its staged work kept, for `resume`.
        if self.stopping.is_some() {
            self.held.extend(self.waiting.iter().copied());
            return;
        }
        let mut i = 0;
        while i < self.waiting.len() {
            let idx = self.waiting[i];
            if self.in_outage.len() >= policy.max_parallel.max(1) as usize {
                return;
            }
            // The outage must still fit in an open window: a server that waited for its slot
            // may otherwise go out of service after the window closes.
            if !policy.windows.is_empty() {
                let need = self.from_outage.get(idx).copied().unwrap_or(0);
                if let Err(later) = fit(&policy.windows, now, need) {
                    self.held.insert(idx);
                    if let Some(at) = later
                        && self.held_wake.is_none_or(|t| t <= now || at < t)
                    {
                        self.held_wake = Some(at);
                        self.schedule(at, WAKE, Input::Waited);
                    }
                    i += 1;
                    continue;
                }
            }
            let plan = self.plan(idx);
            let site_ok = policy.max_parallel_per_site.is_none_or(|n| {
                self.in_outage
                    .iter()
                    .filter(|&&o| self.plan(o).site == plan.site)
                    .count()
                    < n.max(1) as usize
            });
            let pair_ok = !self.in_outage.iter().any(|&o| {
                let other = &self.plan(o).pool;
                policy.pairs.iter().any(|[a, b]| {
                    (plan.pool.as_str().eq_ignore_ascii_case(a)
                        && other.as_str().eq_ignore_ascii_case(b))
                        || (plan.pool.as_str().eq_ignore_ascii_case(b)
                            && other.as_str().eq_ignore_ascii_case(a))
                })
            });
            if site_ok && pair_ok {
                self.waiting.remove(i);
                self.in_outage.insert(idx);
                self.schedule(now, idx, Input::SlotGranted);
            } else {
                i += 1;
            }
        }
    }

    /// The remaining chain of a server at its outage gate: its predicted chain, with its own
    /// rest (from the outage on) scaled by the pace its steps so far showed against their
    /// prediction (kept within half and three times). A server that staged slowly is likely
    /// slow throughout (its disks, its load): it goes out first rather than last of the night.
    fn slot_rank(&self, idx: usize) -> Millis {
        let rank = self.rank[idx];
        let rest = self.from_outage.get(idx).copied().unwrap_or(0);
        let predicted = self.predictions[idx].1.saturating_sub(rest);
        let Some(status) = self.status_of(idx) else {
            return rank;
        };
        let actual: Millis = status
            .steps
            .iter()
            .filter(|s| s.state.is_settled())
            .filter_map(|s| Some(s.ended_at?.saturating_sub(s.started_at?)))
            .sum();
        if predicted == 0 || actual == 0 {
            return rank;
        }
        let actual = actual.clamp(predicted / 2, predicted * 3);
        (rank - rest.min(rank)) + rest * actual / predicted
    }

    /// Every server of the run ended (succeeded, failed or skipped).
    fn all_finished(&self) -> bool {
        (0..self.execs.len()).all(|i| self.status_of(i).is_some_and(ServerStatus::is_finished))
    }

    fn final_state(&self, cancelled: bool) -> RunState {
        let statuses: Vec<&ServerStatus> = (0..self.execs.len())
            .filter_map(|i| {
                self.execs[i]
                    .as_ref()
                    .map(|e| &e.status)
                    .or(self.statuses[i].as_ref())
            })
            .collect();
        let all_done = statuses.iter().all(|s| s.is_finished());
        if !all_done {
            if self.stopping.is_some() && !cancelled {
                return RunState::Failed;
            }
            if self.awaiting_approval {
                return RunState::AwaitingApproval;
            }
            return RunState::Interrupted;
        }
        if statuses.iter().all(|s| s.is_success()) {
            RunState::Succeeded
        } else {
            RunState::Failed
        }
    }

    fn into_statuses(self) -> Vec<ServerStatus> {
        self.execs
            .into_iter()
            .zip(self.statuses)
            .map(|(e, s)| {
                e.map(|e| e.status)
                    .or(s)
                    .expect("every server has a status")
            })
            .collect()
    }
}

/// Whether `need` from `now` fits in an open maintenance window; if not, when the first later
/// window it fits in opens (`None`: none does).
fn fit(windows: &[policy::Window], now: Millis, need: Millis) -> Result<(), Option<Millis>> {
    if windows
        .iter()
        .any(|w| w.opens_at <= now && now + need <= w.closes_at)
    {
        return Ok(());
    }
    Err(windows
        .iter()
        .filter(|w| w.opens_at > now && w.opens_at + need <= w.closes_at)
        .map(|w| w.opens_at)
        .min())
}

/// Predicted outage and total duration of `plan` from `stats` (defaults where unmeasured).
fn predict_with(stats: &[crate::store::StepStat], plan: &ServerPlan) -> (Millis, Millis) {
    let mut outage = 0;
    let mut total = 0;
    for (s, d) in predicted_steps(stats, plan) {
        total += d;
        if s.in_outage {
            outage += d;
        }
    }
    (outage, total)
}

/// The predicted time from the first step of `plan`'s outage window to its end: what must still
/// fit in the maintenance window when the server asks for an outage slot.
fn predict_from_outage(stats: &[crate::store::StepStat], plan: &ServerPlan) -> Millis {
    predicted_steps(stats, plan)
        .skip_while(|(s, _)| !s.in_outage)
        .map(|(_, d)| d)
        .sum()
}

/// Each step that takes time on `plan`, with its predicted duration (measured where earlier
/// runs measured it, the default otherwise).
fn predicted_steps<'p>(
    stats: &'p [crate::store::StepStat],
    plan: &'p ServerPlan,
) -> impl Iterator<Item = (&'p sfbpatch_plan::PlannedStep, Millis)> + 'p {
    plan.steps
        .iter()
        .filter(|s| s.not_applicable.is_none())
        .filter(|s| !matches!(s.action, sfbpatch_plan::Action::DatabasesUpdatedBy { .. }))
        .map(move |s| {
            let d = stats
                .iter()
                .find(|st| st.step == s.id && st.samples > 0)
                .map_or_else(|| policy::default_duration(s.id), |st| st.mean_ms);
            (s, d)
        })
}

/// Per server, the time from its start to the end of everything that must wait for it: the
/// servers after it in its serial group (pool or back end, in plan order) and, when others
/// depend on the group, the longest of their chains.
fn critical_path(
    servers: &[ServerPlan],
    predictions: &[(Millis, Millis)],
    after: &[Vec<usize>],
) -> Vec<Millis> {
    let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, s) in servers.iter().enumerate() {
        groups.entry(s.serial_key()).or_default().push(i);
    }
    // Who waits for each server.
    let mut waiters: Vec<Vec<usize>> = vec![Vec::new(); servers.len()];
    for (d, deps) in after.iter().enumerate() {
        for &i in deps {
            waiters[i].push(d);
        }
    }
    let mut rank = vec![0; servers.len()];
    // Dependents come later in plan order: settle groups from the last server backwards.
    let mut by_last: Vec<&Vec<usize>> = groups.values().collect();
    by_last.sort_by_key(|g| Reverse(*g.last().expect("non-empty group")));
    for group in by_last {
        let (mut tail, mut next): (Millis, Millis) = (0, 0);
        for &i in group.iter().rev() {
            let waiting = waiters[i]
                .iter()
                .filter(|&&w| servers[w].serial_key() != servers[i].serial_key())
                .map(|&w| rank[w])
                .max()
                .unwrap_or(0);
            next = next.max(waiting);
            tail += predictions[i].1;
            rank[i] = tail + next;
        }
    }
    rank
}

/// `order` with every server moved after the servers it depends on (stable otherwise), so
/// that waves never hold a server whose dependencies come in a later wave.
fn dependencies_first(order: &[usize], after: &[Vec<usize>]) -> Vec<usize> {
    let mut placed = vec![false; after.len()];
    let mut out = Vec::with_capacity(order.len());
    fn place(i: usize, after: &[Vec<usize>], placed: &mut [bool], out: &mut Vec<usize>) {
        if placed[i] {
            return;
        }
        placed[i] = true;
        for &d in &after[i] {
            place(d, after, placed, out);
        }
        out.push(i);
    }
    for &i in order {
        place(i, after, &mut placed, &mut out);
    }
    out
}

fn pools_of(spec: &RunSpec) -> BTreeSet<String> {
    spec.plan.servers.iter().map(|s| s.pool.key()).collect()
}

/// The end of the output, where errors are.
pub fn excerpt(s: &str) -> String {
    tail(s, OUTPUT_EXCERPT)
}

pub(crate) fn excerpt_short(s: &str) -> String {
    tail(s, 500)
}

fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..])
}
