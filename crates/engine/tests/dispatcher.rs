//! The dispatcher driven through `Engine` with a scripted target on a simulated clock and a
//! real SQLite store: which server may start, which may enter its outage window, what a
//! failure or an interrupt stops. Every operation takes its step's predicted time.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sfbpatch_engine::{
    Clock, Durability, Engine, Event, Identity, MachineFacts, Millis, NoObserver, Observer, Probe,
    ProbeVerdict, RunPolicy, RunSpec, RunState, ServerState, StepOutcome, StepRequest, Target,
    TargetError, TargetSpec, policy,
};
use sfbpatch_plan::{Build, PlanPolicy, ServerPlan, StepId, parse_manifest, plan};

const INVENTORY: &str = r#"
[[site]]
name = "Lab"

[[pool]]
fqdn = "se1.lab.example.com"
site = "Lab"
product = "2019"
edition = "standard"

[[pool]]
fqdn = "se2.lab.example.com"
site = "Lab"
product = "2019"
edition = "standard"

[[pool]]
fqdn = "se3.lab.example.com"
site = "Lab"
product = "2019"
edition = "standard"

[[pool]]
fqdn = "se4.lab.example.com"
site = "Lab"
product = "2019"
edition = "standard"

[[pool]]
fqdn = "pool.lab.example.com"
site = "Lab"
product = "2019"
machines = ["fe1.lab.example.com", "fe2.lab.example.com", "fe3.lab.example.com"]
backend = "sql.lab.example.com"
"#;

const MANIFEST: &str = include_str!("fixtures/cu.toml");

/// A simulated clock: the dispatcher sets it to each operation's start, the target moves it to
/// the operation's end.
#[derive(Default)]
struct SimClock(AtomicU64);

impl Clock for SimClock {
    fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
    fn sleep(&self, duration: Millis) {
        self.0.fetch_add(duration, Ordering::SeqCst);
    }
    fn is_virtual(&self) -> bool {
        true
    }
    fn set(&self, at: Millis) {
        self.0.store(at, Ordering::SeqCst);
    }
}

/// One call the dispatcher made: server, what, step, start and end.
#[derive(Debug, Clone)]
struct Call {
    server: String,
    what: &'static str,
    step: StepId,
    start: Millis,
    end: Millis,
}

/// A target whose steps all succeed in their predicted time, unless `fail` names a server
/// and step (exit 1 every time); `cancel_on` sets the interrupt flag when that server's step
/// runs.
struct Scripted<'c> {
    clock: &'c SimClock,
    calls: Mutex<Vec<Call>>,
    fail: Option<(&'static str, StepId)>,
    cancel_on: Option<(&'static str, StepId, &'c AtomicBool)>,
    /// A server's step that takes this long instead of its predicted time.
    slow: Option<(&'static str, StepId, Millis)>,
    /// More such steps.
    also_slow: Vec<(&'static str, StepId, Millis)>,
    /// How durable its world says it is (the trait's default when `None`).
    durability: Option<Durability>,
}

impl<'c> Scripted<'c> {
    fn new(clock: &'c SimClock) -> Self {
        Scripted {
            clock,
            calls: Mutex::new(Vec::new()),
            fail: None,
            cancel_on: None,
            slow: None,
            also_slow: Vec::new(),
            durability: None,
        }
    }

    fn record(&self, server: &str, what: &'static str, step: StepId, duration: Millis) {
        let start = self.clock.now();
        let end = start + duration;
        self.clock.set(end);
        self.calls.lock().unwrap().push(Call {
            server: server.to_string(),
            what,
            step,
            start,
            end,
        });
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

impl Target for Scripted<'_> {
    fn kind(&self) -> &'static str {
        "scripted"
    }

    fn durability(&self) -> Durability {
        self.durability.unwrap_or(Durability::PowerLoss)
    }

    fn execute(&self, req: &StepRequest<'_>) -> Result<StepOutcome, TargetError> {
        let server = req.server.fqdn.as_str();
        if let Some((name, step, flag)) = self.cancel_on
            && name == server
            && step == req.step.id
        {
            flag.store(true, Ordering::SeqCst);
        }
        let duration = self
            .slow
            .iter()
            .chain(&self.also_slow)
            .find(|(s, step, _)| *s == server && *step == req.step.id)
            .map_or_else(|| policy::default_duration(req.step.id), |(_, _, d)| *d);
        self.record(server, "execute", req.step.id, duration);
        let failing = self
            .fail
            .is_some_and(|(s, step)| s == server && step == req.step.id);
        Ok(StepOutcome::exit(
            i32::from(failing),
            if failing { "it failed" } else { "done" },
        ))
    }

    fn probe(&self, req: &StepRequest<'_>) -> Result<Probe, TargetError> {
        self.record(req.server.fqdn.as_str(), "probe", req.step.id, 0);
        Ok(Probe {
            verdict: ProbeVerdict::NotDone,
            facts: "{}".into(),
        })
    }

    fn reboot(&self, req: &StepRequest<'_>) -> Result<StepOutcome, TargetError> {
        self.record(req.server.fqdn.as_str(), "reboot", req.step.id, 300_000);
        Ok(StepOutcome::ok("restarted"))
    }

    fn recover(&self, req: &StepRequest<'_>) -> Result<StepOutcome, TargetError> {
        self.record(req.server.fqdn.as_str(), "recover", req.step.id, 180_000);
        Ok(StepOutcome::ok("back in service"))
    }

    fn preflight(&self, server: &ServerPlan) -> Result<MachineFacts, TargetError> {
        self.record(server.fqdn.as_str(), "preflight", StepId::CheckAdminRole, 0);
        Ok(MachineFacts {
            services: vec!["RTCSRV".into()],
            services_running: 1,
            w3svc: true,
            management_shell: true,
            sql_server: server.kind != sfbpatch_plan::ServerKind::FrontEnd,
            build: Some(Build([7, 0, 2046, 0])),
            reboot_pending: false,
            in_service: true,
        })
    }
}

fn spec(policy: RunPolicy) -> RunSpec {
    let deployment = sfbpatch_topology::load(INVENTORY, "lab.toml").unwrap();
    let package = parse_manifest(MANIFEST, "cu.toml").unwrap();
    RunSpec {
        topology_origin: "lab.toml".into(),
        topology_snapshot: INVENTORY.into(),
        plan: plan(&deployment, &package, &PlanPolicy::default()).unwrap(),
        policy,
        target: TargetSpec::Lab { dir: "lab".into() },
        operator: "LAB\\admin".into(),
    }
}

/// Runs `spec` on `target` with a fresh SQLite store; the outcome's state and servers.
fn run(
    target: &Scripted<'_>,
    clock: &SimClock,
    spec: RunSpec,
    cancel: Option<&AtomicBool>,
) -> (RunState, BTreeMap<String, ServerState>) {
    let (state, servers, ..) = run_observed(target, clock, spec, cancel, &mut NoObserver);
    (state, servers)
}

/// Every event, in order.
#[derive(Default)]
struct Recorder(Vec<Event>);

impl Observer for Recorder {
    fn on_event(&mut self, event: &Event) {
        self.0.push(event.clone());
    }
}

/// [`run`], telling `observer`; also the target-clock time the run ended and the durability
/// the engine left the store's session with.
fn run_observed(
    target: &Scripted<'_>,
    clock: &SimClock,
    spec: RunSpec,
    cancel: Option<&AtomicBool>,
    observer: &mut dyn Observer,
) -> (RunState, BTreeMap<String, ServerState>, Millis, Durability) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = sfbpatch_store::SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let wall = SimClock::default();
    let mut engine = Engine {
        store: &mut store,
        target,
        clock,
        wall: &wall,
        observer,
        identity: Identity {
            holder: "test".into(),
            host: "test".into(),
            pid: 1,
            instance: "test#1.0".into(),
        },
        cancel,
    };
    let outcome = engine.start(spec).unwrap();
    let servers = outcome
        .servers
        .iter()
        .map(|s| (s.fqdn.clone(), s.state))
        .collect();
    drop(engine);
    (
        outcome.state,
        servers,
        outcome.finished_at,
        sfbpatch_engine::Store::durability(&store).unwrap(),
    )
}

/// Each server's outage window on the target: from its first step inside the window to its
/// last (the steps the plan marks `in_outage`).
fn windows(spec: &RunSpec, calls: &[Call]) -> BTreeMap<String, (Millis, Millis)> {
    let mut out = BTreeMap::new();
    for server in &spec.plan.servers {
        let in_window: Vec<StepId> = server
            .steps
            .iter()
            .filter(|s| s.in_outage)
            .map(|s| s.id)
            .collect();
        let mine: Vec<&Call> = calls
            .iter()
            .filter(|c| c.server == server.fqdn.as_str() && in_window.contains(&c.step))
            .filter(|c| c.what == "execute" || c.what == "reboot" || c.what == "recover")
            .collect();
        if let (Some(first), Some(last)) = (mine.first(), mine.last()) {
            out.insert(server.fqdn.to_string(), (first.start, last.end));
        }
    }
    out
}

/// The most windows open at one instant.
fn most_at_once(windows: &BTreeMap<String, (Millis, Millis)>) -> usize {
    windows
        .values()
        .map(|&(start, _)| {
            windows
                .values()
                .filter(|&&(s, e)| s <= start && start < e)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn the_journal_commits_as_durably_as_the_target_keeps_its_world() {
    for (world, expected) in [
        (None, Durability::PowerLoss),
        (Some(Durability::ProcessCrash), Durability::ProcessCrash),
        (Some(Durability::PowerLoss), Durability::PowerLoss),
    ] {
        let clock = SimClock::default();
        let mut target = Scripted::new(&clock);
        target.durability = world;
        let (state, _, _, durability) = run_observed(
            &target,
            &clock,
            spec(RunPolicy::default()),
            None,
            &mut NoObserver,
        );
        assert_eq!(state, RunState::Succeeded);
        assert_eq!(durability, expected, "world {world:?}");
    }
}

#[test]
fn no_more_servers_are_out_at_once_than_max_parallel_allows() {
    for max_parallel in [1, 2, 3] {
        let clock = SimClock::default();
        let target = Scripted::new(&clock);
        let spec = spec(RunPolicy {
            max_parallel,
            ..RunPolicy::default()
        });
        let (state, servers) = run(&target, &clock, spec.clone(), None);
        assert_eq!(state, RunState::Succeeded, "{servers:?}");
        let windows = windows(&spec, &target.calls());
        assert_eq!(
            most_at_once(&windows),
            max_parallel as usize,
            "max_parallel {max_parallel}: {windows:?}"
        );
    }
}

#[test]
fn front_end_servers_of_a_pool_are_never_out_together() {
    let clock = SimClock::default();
    let target = Scripted::new(&clock);
    let spec = spec(RunPolicy {
        max_parallel: 8,
        ..RunPolicy::default()
    });
    let (state, _) = run(&target, &clock, spec.clone(), None);
    assert_eq!(state, RunState::Succeeded);
    let windows = windows(&spec, &target.calls());
    let fe: BTreeMap<String, (Millis, Millis)> = windows
        .into_iter()
        .filter(|(k, _)| k.starts_with("fe"))
        .collect();
    assert_eq!(fe.len(), 3, "{fe:?}");
    assert_eq!(most_at_once(&fe), 1, "{fe:?}");
}

#[test]
fn a_freed_slot_goes_to_the_longest_chain_not_to_the_first_to_ask() {
    // Two slots: se1, se2 go out first (they stage faster than a Front End server, which also
    // checks its pool's fabric); se3 then asks for a slot before fe1 does. se1 runs long, so
    // se2's slot frees first: it goes to fe1, whose pool (three servers one after another,
    // then the back end) is the longest chain, although se3 asked first.
    let clock = SimClock::default();
    let mut target = Scripted::new(&clock);
    target.slow = Some(("se1.lab.example.com", StepId::InstallUpdate, 22 * 60_000));
    let spec = spec(RunPolicy {
        max_parallel: 2,
        ..RunPolicy::default()
    });
    let (state, _) = run(&target, &clock, spec.clone(), None);
    assert_eq!(state, RunState::Succeeded);
    let w = windows(&spec, &target.calls());
    let [se1, se2, se3, fe1] =
        ["se1", "se2", "se3", "fe1"].map(|s| w[&format!("{s}.lab.example.com")]);
    // Staged in time to compete for the slot: se3 before fe1.
    let asked = |server: &str, step: StepId| {
        target
            .calls()
            .iter()
            .find(|c| c.server == server && c.step == step && c.what == "execute")
            .map(|c| c.end)
            .unwrap()
    };
    let se3_ready = asked("se3.lab.example.com", StepId::StageUpdate);
    let fe1_ready = asked("fe1.lab.example.com", StepId::CheckFabricState);
    assert!(
        se3_ready < fe1_ready && fe1_ready < se2.1,
        "{se3_ready} {fe1_ready} {se2:?}"
    );
    assert!(se2.1 < se1.1, "{se1:?} {se2:?}");
    assert_eq!(fe1.0, se2.1, "fe1 took se2's slot: {w:?}");
    assert_eq!(se3.0, se1.1, "se3 took the next one: {w:?}");
}

#[test]
fn a_server_that_staged_slowly_goes_out_before_one_that_asked_first() {
    // Standard Edition servers first, two slots: se1 and se2 go out; se3 stages in its
    // predicted time and asks for a slot, se4 stages in twice its time and asks later. se2's
    // long install leaves se1's slot the first to free: it goes to se4, likely slow
    // throughout, rather than to se3, which can fit in later.
    let clock = SimClock::default();
    let mut target = Scripted::new(&clock);
    target.slow = Some(("se2.lab.example.com", StepId::InstallUpdate, 30 * 60_000));
    target.also_slow = vec![("se4.lab.example.com", StepId::StageUpdate, 8 * 60_000)];
    let spec = spec(RunPolicy {
        max_parallel: 2,
        order: vec![sfbpatch_plan::ServerKind::StandardEdition],
        ..RunPolicy::default()
    });
    let (state, _) = run(&target, &clock, spec.clone(), None);
    assert_eq!(state, RunState::Succeeded);
    let w = windows(&spec, &target.calls());
    let [se1, se2, se3, se4] =
        ["se1", "se2", "se3", "se4"].map(|s| w[&format!("{s}.lab.example.com")]);
    assert!(se1.1 < se2.1, "{w:?}");
    assert_eq!(se4.0, se1.1, "se4 took se1's slot: {w:?}");
    assert!(se3.0 > se4.0, "{w:?}");
}

#[test]
fn the_policy_order_comes_before_the_longest_chain() {
    // Standard Edition servers first: every one of them goes out before the pool's Front End
    // servers, whose chain is longer; then the pool, then its back end.
    let clock = SimClock::default();
    let target = Scripted::new(&clock);
    let ordered = spec(RunPolicy {
        max_parallel: 1,
        order: vec![
            sfbpatch_plan::ServerKind::StandardEdition,
            sfbpatch_plan::ServerKind::FrontEnd,
            sfbpatch_plan::ServerKind::BackEnd,
        ],
        ..RunPolicy::default()
    });
    let (state, _) = run(&target, &clock, ordered.clone(), None);
    assert_eq!(state, RunState::Succeeded);
    let w = windows(&ordered, &target.calls());
    let mut by_start: Vec<(&String, &(Millis, Millis))> = w.iter().collect();
    by_start.sort_by_key(|(_, (start, _))| *start);
    let order: Vec<&str> = by_start
        .iter()
        .map(|(s, _)| s.split('.').next().unwrap())
        .collect();
    assert_eq!(
        order,
        ["se1", "se2", "se3", "se4", "fe1", "fe2", "fe3", "sql"]
    );

    // Without an order, the longest chain first: the pool's first Front End server starts
    // first, and while each of its servers stages the slot goes to a Standard Edition server
    // that is ready: the one slot is never idle.
    let clock = SimClock::default();
    let target = Scripted::new(&clock);
    let unordered = spec(RunPolicy {
        max_parallel: 1,
        ..RunPolicy::default()
    });
    let (state, _) = run(&target, &clock, unordered.clone(), None);
    assert_eq!(state, RunState::Succeeded);
    let calls = target.calls();
    assert_eq!(calls[0].server, "fe1.lab.example.com");
    let mut w: Vec<(Millis, Millis)> = windows(&unordered, &calls).into_values().collect();
    w.sort();
    assert!(w.windows(2).all(|p| p[0].1 == p[1].0), "{w:?}");
}

#[test]
fn a_failure_recovers_the_server_and_starts_no_other() {
    let clock = SimClock::default();
    let mut target = Scripted::new(&clock);
    target.fail = Some(("se1.lab.example.com", StepId::InstallUpdate));
    let spec = spec(RunPolicy::default());
    let (state, servers) = run(&target, &clock, spec, None);
    assert_eq!(state, RunState::Failed);
    assert_eq!(servers["se1.lab.example.com"], ServerState::Failed);
    let calls = target.calls();
    let failed_at = calls
        .iter()
        .find(|c| c.server == "se1.lab.example.com" && c.step == StepId::InstallUpdate)
        .unwrap()
        .end;
    // Brought back into service right after.
    let recover = calls
        .iter()
        .find(|c| c.what == "recover")
        .expect("a recovery");
    assert_eq!(recover.server, "se1.lab.example.com");
    // No other server was touched after the failure.
    assert!(
        calls
            .iter()
            .filter(|c| c.server != "se1.lab.example.com")
            .all(|c| c.start < failed_at),
        "{calls:?}"
    );
    for (fqdn, state) in &servers {
        if fqdn != "se1.lab.example.com" {
            assert!(
                matches!(state, ServerState::Pending | ServerState::Skipped),
                "{fqdn}: {state:?}"
            );
        }
    }
}

/// A server's first step, from the plan.
fn first_step(spec: &RunSpec, server: &str) -> StepId {
    spec.plan
        .servers
        .iter()
        .find(|s| s.fqdn.as_str() == server)
        .unwrap()
        .steps[0]
        .id
}

#[test]
fn an_interrupt_keeps_servers_that_only_staged_in_service() {
    let clock = SimClock::default();
    let cancel = AtomicBool::new(false);
    let mut target = Scripted::new(&clock);
    let spec = spec(RunPolicy {
        max_parallel: 2,
        ..RunPolicy::default()
    });
    let first = first_step(&spec, "se2.lab.example.com");
    target.cancel_on = Some(("se2.lab.example.com", first, &cancel));
    let mut events = Recorder::default();
    let (state, servers, ..) = run_observed(&target, &clock, spec, Some(&cancel), &mut events);
    assert_eq!(state, RunState::Interrupted);
    // Ctrl-C came while se1 and se2 staged: both finished what they were doing and stayed in
    // service, their outage windows never opened; nothing else started.
    let stop = events
        .0
        .iter()
        .position(|e| matches!(e, Event::StopRequested { .. }))
        .expect("the interrupt is told");
    assert!(
        !events.0[stop..]
            .iter()
            .any(|e| matches!(e, Event::OutageStarted { .. } | Event::ServerStarted { .. })),
        "{:?}",
        &events.0[stop..]
    );
    let outage_steps: Vec<Call> = target
        .calls()
        .into_iter()
        .filter(|c| {
            c.what == "execute" && matches!(c.step, StepId::Failover | StepId::StopCsServices)
        })
        .collect();
    assert!(outage_steps.is_empty(), "{outage_steps:?}");
    assert_eq!(servers["se2.lab.example.com"], ServerState::Running);
    assert!(
        servers
            .values()
            .all(|s| matches!(s, ServerState::Pending | ServerState::Running)),
        "{servers:?}"
    );
}

#[test]
fn an_interrupt_lets_a_server_in_its_outage_finish_and_starts_no_other() {
    let clock = SimClock::default();
    let cancel = AtomicBool::new(false);
    let mut target = Scripted::new(&clock);
    target.cancel_on = Some(("se1.lab.example.com", StepId::InstallUpdate, &cancel));
    let spec = spec(RunPolicy {
        max_parallel: 1,
        ..RunPolicy::default()
    });
    let (state, servers) = run(&target, &clock, spec, Some(&cancel));
    assert_eq!(state, RunState::Interrupted);
    // se1 was out of service when Ctrl-C came: it finished and is back in service.
    assert_eq!(servers["se1.lab.example.com"], ServerState::Succeeded);
    let started: Vec<String> = target
        .calls()
        .iter()
        .filter(|c| c.what == "preflight")
        .map(|c| c.server.clone())
        .collect();
    assert!(started.len() < servers.len(), "{started:?}");
    assert!(
        servers.iter().all(|(fqdn, s)| fqdn == "se1.lab.example.com"
            || matches!(s, ServerState::Pending | ServerState::Running)),
        "{servers:?}"
    );
}

/// The outage budget line is told (and journalled) the moment it is crossed, in the middle of
/// a long step, not at the step's end; a window that closes in time leaves no timer that would
/// hold the run past its last operation.
#[test]
fn the_budget_line_is_told_when_it_is_crossed_and_no_later() {
    let clock = SimClock::default();
    let mut target = Scripted::new(&clock);
    target.slow = Some(("se1.lab.example.com", StepId::InstallUpdate, 40 * 60_000));
    let policy = RunPolicy::default();
    let budget = policy.outage_budget_ms;
    let mut events = Recorder::default();
    let (state, ..) = run_observed(&target, &clock, spec(policy), None, &mut events);
    assert_eq!(state, RunState::Succeeded);
    let started = events
        .0
        .iter()
        .find_map(|e| match e {
            Event::OutageStarted { server, at, .. } if server == "se1.lab.example.com" => Some(*at),
            _ => None,
        })
        .unwrap();
    let crossed = events
        .0
        .iter()
        .position(|e| matches!(e, Event::OutageBudgetExceeded { server, .. } if server == "se1.lab.example.com"))
        .expect("the line is told");
    let Event::OutageBudgetExceeded { at, elapsed_ms, .. } = &events.0[crossed] else {
        unreachable!()
    };
    assert_eq!(*at, started + budget + 1);
    assert_eq!(*elapsed_ms, budget + 1);
    let installed = events
        .0
        .iter()
        .position(|e| matches!(e, Event::StepFinished { server, step: StepId::InstallUpdate, .. } if server == "se1.lab.example.com"))
        .unwrap();
    assert!(
        crossed < installed,
        "told after the step: {:#?}",
        &events.0[crossed..=installed]
    );
    assert_eq!(
        events
            .0
            .iter()
            .filter(|e| matches!(e, Event::OutageBudgetExceeded { .. }))
            .count(),
        1
    );

    // In time: no warning, and the run ends with its last operation.
    let clock = SimClock::default();
    let target = Scripted::new(&clock);
    let mut events = Recorder::default();
    let (_, _, finished_at, _) = run_observed(
        &target,
        &clock,
        spec(RunPolicy::default()),
        None,
        &mut events,
    );
    assert!(
        !events
            .0
            .iter()
            .any(|e| matches!(e, Event::OutageBudgetExceeded { .. }))
    );
    let last = target.calls().iter().map(|c| c.end).max().unwrap();
    assert_eq!(finished_at, last);
}
