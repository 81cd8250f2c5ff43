//! Reports from hand-written journals: the records the engine writes, with target-clock times
//! chosen by the test.

use jiff::tz::{Offset, TimeZone};
use sfbpatch_engine::policy::default_duration;
use sfbpatch_engine::{
    AuditEntry, JournalEntry, MachineFacts, Millis, Record, RunPolicy, RunRecord, RunSpec,
    RunState, ServerOutcome, ServerState, StepResultKind, StepState, TargetSpec,
};
use sfbpatch_plan::{Build, PlanPolicy, StepId, parse_manifest, plan};

use crate::{
    BuildSource, ClockKind, Report, ReportError, build, render_html_in, render_timeline_in,
};

/// The page in a fixed zone (UTC+01:00), so that tests do not depend on the machine's.
fn render_html(report: &Report) -> String {
    render_html_in(report, &TimeZone::fixed(Offset::constant(1)))
}

/// The build every lab machine starts on, and the package's.
const OLD: &str = "7.0.2046.0";
const NEW: &str = "7.0.2046.553";
/// 2026-12-04T21:03:15Z, when the SSH runs of these tests start.
const WALL_T0: Millis = 1_796_418_195_000;

const MINUTE: Millis = 60_000;
/// The run is created five hours into the target's clock: reports count from there.
const T0: Millis = 300 * MINUTE;
/// With the default durations: check-admin-role and stage-update before the outage window.
const BEFORE_OUTAGE: Millis = 246_000;
/// The outage window with the default durations: 25.2 minutes.
const OUTAGE: Millis = 1_512_000;
/// A whole server with the default durations.
const SERVER: Millis = 1_818_000;
const RECOVERY: Millis = 210_000;

const MANIFEST: &str = r#"
name = "Skype for Business Server 2019 CU8 HF1"
version = "7.0.2046.553"
installer = "SkypeServerUpdateInstaller.exe"
sha256 = "c30d976f4b3e363089ddb18e014b0eabc3ca71ab51f5466f351427d8097aa4fd"
"#;

/// One Standard Edition server, one pool on a single back-end machine, one on an AlwaysOn
/// availability group of two nodes, and two pools sharing one back end.
const INVENTORY: &str = r#"
[[site]]
name = "Berlin"

[[pool]]
fqdn = "se1.contoso.com"
edition = "standard"

[[pool]]
fqdn = "pool1.contoso.com"
machines = ["fe1.contoso.com"]
backend = "sql1.contoso.com"

[[pool]]
fqdn = "pool2.contoso.com"
machines = ["fe2.contoso.com"]
backend = { sql_server = "ag.contoso.com", always_on_primary = "ag-n1.contoso.com", nodes = ["ag-n1.contoso.com", "ag-n2.contoso.com"] }

[[pool]]
fqdn = "pool3.contoso.com"
machines = ["fe3.contoso.com"]
backend = "shared.contoso.com"

[[pool]]
fqdn = "pool4.contoso.com"
machines = ["fe4.contoso.com"]
backend = "shared.contoso.com"

[[sql]]
fqdn = "sql1.contoso.com"
stores = ["user", "application", "central-management"]

[[sql]]
fqdn = "shared.contoso.com"
stores = ["user", "application"]
"#;

/// How one server's procedure goes.
#[derive(Default)]
struct Patch {
    /// Steps that take longer than the default.
    durations: Vec<(StepId, Millis)>,
    /// This step fails with exit code 1603 (recovered when inside the outage window).
    fail: Option<StepId>,
    /// The run is interrupted once this step's intent is written.
    interrupt: Option<StepId>,
    /// The exit code of the failing step (1603 when not given).
    exit_code: Option<i32>,
}

struct Sim {
    run: RunRecord,
    journal: Vec<JournalEntry>,
    audit: Vec<AuditEntry>,
}

impl Sim {
    fn new() -> Self {
        Self::with_inventory(INVENTORY)
    }

    fn with_inventory(inventory: &str) -> Self {
        let deployment = sfbpatch_topology::load(inventory, "contoso.toml").expect("inventory");
        let package = parse_manifest(MANIFEST, "cu.toml").expect("manifest");
        let plan = plan(&deployment, &package, &PlanPolicy::default()).expect("plan");
        Sim {
            run: RunRecord {
                id: 7,
                spec: RunSpec {
                    topology_origin: "contoso.toml".into(),
                    topology_snapshot: inventory.into(),
                    plan,
                    policy: RunPolicy::default(),
                    target: TargetSpec::Lab { dir: "lab".into() },
                    operator: "CONTOSO\\sfbadmin".into(),
                },
                state: RunState::Succeeded,
                created_at: T0,
            },
            journal: Vec::new(),
            audit: Vec::new(),
        }
    }

    /// The same run, over SSH: its clock is the wall clock, and it starts at [`WALL_T0`].
    fn over_ssh() -> Self {
        let mut sim = Self::new();
        sim.run.spec.target = TargetSpec::Ssh {
            connections: Some("servers.toml".into()),
        };
        sim.run.created_at = WALL_T0;
        sim
    }

    fn push(&mut self, server: &str, at: Millis, record: Record) {
        self.journal.push(JournalEntry {
            seq: self.journal.len() as i64 + 1,
            run: self.run.id,
            server: server.into(),
            at: self.run.created_at + at,
            record,
        });
    }

    /// Carries `fqdn` through its procedure from `start` (milliseconds after the run's
    /// creation); returns when it finished.
    fn patch(&mut self, fqdn: &str, start: Millis, how: Patch) -> Millis {
        let plan = self
            .run
            .spec
            .plan
            .servers
            .iter()
            .find(|s| s.fqdn.as_str() == fqdn)
            .unwrap_or_else(|| panic!("{fqdn} is planned"))
            .clone();
        self.push(
            fqdn,
            start,
            Record::ServerStarted {
                predicted_outage_ms: OUTAGE,
            },
        );
        // What the pre-flight reads: a machine with the Skype for Business components runs the
        // old build; a SQL-only machine has none.
        let sfb = plan
            .find_step(StepId::InstallUpdate)
            .is_some_and(|st| st.not_applicable.is_none());
        self.push(
            fqdn,
            start,
            Record::Preflight {
                facts: MachineFacts {
                    services: Vec::new(),
                    services_running: 0,
                    w3svc: sfb,
                    management_shell: sfb,
                    sql_server: !sfb,
                    build: sfb.then(|| OLD.parse::<Build>().expect("build")),
                    reboot_pending: false,
                    in_service: true,
                },
            },
        );
        let mut t = start;
        for step in &plan.steps {
            // The engine runs no step the plan marks not applicable: it records why.
            if let Some(reason) = &step.not_applicable {
                self.push(
                    fqdn,
                    t,
                    Record::StepNotApplicable {
                        step: step.id,
                        reason: reason.clone(),
                    },
                );
                continue;
            }
            self.push(
                fqdn,
                t,
                Record::StepIntent {
                    step: step.id,
                    attempt: 1,
                    command: step.command.clone(),
                },
            );
            if how.interrupt == Some(step.id) {
                return t;
            }
            let d = how
                .durations
                .iter()
                .find(|(id, _)| *id == step.id)
                .map_or_else(|| default_duration(step.id), |(_, d)| *d);
            t += d;
            let failed = how.fail == Some(step.id);
            let code = how.exit_code.unwrap_or(1603);
            let (exit_code, output) = if failed {
                (
                    code,
                    "Installing the update failed: <files in use> & \"locked\"",
                )
            } else {
                (0, "done")
            };
            self.push(
                fqdn,
                t,
                Record::StepResult {
                    step: step.id,
                    attempt: 1,
                    result: if failed {
                        StepResultKind::Failed
                    } else {
                        StepResultKind::Succeeded
                    },
                    exit_code: Some(exit_code),
                    output: output.into(),
                    duration_ms: d,
                },
            );
            self.audit.push(AuditEntry {
                run: self.run.id,
                at: self.run.created_at + t,
                operator: self.run.spec.operator.clone(),
                server: fqdn.into(),
                step: step.id.to_string(),
                command: step.command.clone(),
                exit_code: Some(exit_code),
                output_excerpt: output.into(),
            });
            if failed {
                if step.id >= StepId::StopCsServices && step.id <= StepId::StartCsServices {
                    t += RECOVERY;
                    self.push(
                        fqdn,
                        t,
                        Record::Recovered {
                            output: "W3SVC started; services started".into(),
                        },
                    );
                }
                self.push(
                    fqdn,
                    t,
                    Record::ServerFinished {
                        outcome: ServerOutcome::Failed,
                        reason: Some(format!(
                            "{} exited with code {code}: Installing the update failed",
                            step.id
                        )),
                    },
                );
                return t;
            }
        }
        self.push(
            fqdn,
            t,
            Record::ServerFinished {
                outcome: ServerOutcome::Succeeded,
                reason: None,
            },
        );
        t
    }

    fn skip(&mut self, fqdn: &str, at: Millis) {
        self.push(
            fqdn,
            at,
            Record::ServerFinished {
                outcome: ServerOutcome::Skipped,
                reason: Some("the failure budget is spent".into()),
            },
        );
    }

    /// The report, with the servers' records interleaved by time as a parallel run writes them.
    fn report(&mut self) -> Report {
        self.journal.sort_by_key(|e| e.at);
        for (i, e) in self.journal.iter_mut().enumerate() {
            e.seq = i as i64 + 1;
        }
        self.audit.sort_by_key(|a| a.at);
        build(&self.run, &self.journal, &self.audit).expect("report")
    }
}

fn secs(ms: Millis) -> f64 {
    ms as f64 / 1000.0
}

fn server<'a>(r: &'a Report, fqdn: &str) -> &'a crate::ServerReport {
    r.servers
        .iter()
        .find(|s| s.fqdn == fqdn)
        .unwrap_or_else(|| panic!("{fqdn} in report"))
}

fn pool<'a>(r: &'a Report, fqdn: &str) -> &'a crate::PoolReport {
    r.pools
        .iter()
        .find(|p| p.fqdn == fqdn)
        .unwrap_or_else(|| panic!("pool {fqdn} in report"))
}

fn slow_install(minutes: f64) -> Patch {
    slow(StepId::InstallUpdate, minutes)
}

fn slow(step: StepId, minutes: f64) -> Patch {
    Patch {
        durations: vec![(step, (minutes * MINUTE as f64) as Millis)],
        ..Patch::default()
    }
}

fn step_of(s: &crate::ServerReport, id: StepId) -> &crate::StepReport {
    s.steps
        .iter()
        .find(|st| st.id == id)
        .unwrap_or_else(|| panic!("{} has no step {id}", s.fqdn))
}

#[test]
fn outage_runs_from_the_intent_of_stop_to_the_result_of_start() {
    let mut sim = Sim::new();
    let end = sim.patch("se1.contoso.com", 90_000, Patch::default());
    let r = sim.report();
    let s = server(&r, "se1.contoso.com");
    assert_eq!(s.state, ServerState::Succeeded);
    assert_eq!(s.pool, "se1.contoso.com");
    assert_eq!(s.start_seconds, Some(90.0));
    assert_eq!(s.end_seconds, Some(secs(end)));
    assert_eq!(end, 90_000 + SERVER);
    assert_eq!(s.outage_seconds, Some(secs(OUTAGE)));
    assert_eq!(s.outage_start_seconds, Some(secs(90_000 + BEFORE_OUTAGE)));
    assert_eq!(
        s.outage_end_seconds,
        Some(secs(90_000 + BEFORE_OUTAGE + OUTAGE))
    );
    assert_eq!(s.steps.len(), 11);
    let install = s
        .steps
        .iter()
        .find(|st| st.id == StepId::InstallUpdate)
        .unwrap();
    assert_eq!(install.state, StepState::Succeeded);
    assert_eq!(install.attempts, 1);
    assert_eq!(install.exit_code, Some(0));
    assert!(install.in_outage);
    assert_eq!(
        install.end_seconds.unwrap() - install.start_seconds.unwrap(),
        720.0
    );
    assert!(!s.steps[0].in_outage && !s.steps[10].in_outage);
    // Servers the journal does not mention are pending.
    assert_eq!(server(&r, "sql1.contoso.com").state, ServerState::Pending);
    assert_eq!(server(&r, "sql1.contoso.com").outage_seconds, None);
    assert_eq!(r.run.makespan_seconds, secs(end));
    assert_eq!(r.run.id, 7);
    // 25.2 minutes: under the line, no resiliency.
    assert_eq!(pool(&r, "se1.contoso.com").unavailable_seconds, 1512.0);
    assert_eq!(pool(&r, "se1.contoso.com").resiliency_seconds, 0.0);
    assert_eq!(r.audit.len(), 11);
    assert_eq!(r.audit[0].at_seconds, 96.0);
}

/// A SQL-only back end is out of service for nothing but its database update, run from a Front
/// End server of its pool; a 53-minute update puts the pool's users in resiliency mode for 23.
#[test]
fn a_53_minute_database_update_puts_users_in_resiliency_mode_for_23_minutes() {
    let mut sim = Sim::new();
    sim.patch("sql1.contoso.com", 0, slow(StepId::UpdateDatabases, 53.0));
    let r = sim.report();
    let s = server(&r, "sql1.contoso.com");
    assert_eq!(s.outage_seconds, Some(53.0 * 60.0));
    let p = pool(&r, "pool1.contoso.com");
    assert_eq!(p.servers, vec!["sql1.contoso.com"]);
    assert_eq!(p.front_ends, vec!["fe1.contoso.com"]);
    assert_eq!(p.front_ends_patched, 0);
    assert_eq!(p.backend, "sql1.contoso.com");
    assert_eq!(p.unavailable_seconds, 53.0 * 60.0);
    assert_eq!(p.resiliency_seconds, 23.0 * 60.0);
    assert_eq!(p.resiliency.len(), 1);
    // check-admin-role (6 s) comes before the outage window.
    let start = 6.0 + 30.0 * 60.0;
    assert_eq!(p.resiliency[0].start_seconds, start);
    assert_eq!(p.resiliency[0].end_seconds, Some(start + 23.0 * 60.0));
}

/// An AlwaysOn group's databases are updated once, through its listener, from the last node's
/// plan: the group is unavailable for that update only, whatever else its nodes go through.
#[test]
fn an_always_on_back_end_is_unavailable_only_while_its_databases_are_updated() {
    let mut sim = Sim::new();
    let end = sim.patch("ag-n1.contoso.com", 0, Patch::default());
    sim.patch(
        "ag-n2.contoso.com",
        end,
        slow(StepId::UpdateDatabases, 10.0),
    );
    let r = sim.report();
    let p = pool(&r, "pool2.contoso.com");
    assert!(p.always_on);
    assert_eq!(p.servers, vec!["ag-n1.contoso.com", "ag-n2.contoso.com"]);
    let n2 = server(&r, "ag-n2.contoso.com");
    let update = step_of(n2, StepId::UpdateDatabases);
    assert_eq!(p.unavailable.len(), 1);
    assert_eq!(
        p.unavailable[0].start_seconds,
        update.start_seconds.unwrap()
    );
    assert_eq!(p.unavailable[0].end_seconds, update.end_seconds);
    assert_eq!(p.unavailable_seconds, 600.0);
    assert_eq!(p.resiliency_seconds, 0.0);
    // The node whose databases the other updates had no outage window.
    assert_eq!(server(&r, "ag-n1.contoso.com").outage_seconds, None);
}

/// A Front End server goes out behind failover at no cost to its pool; the back end's database
/// update, run on that Front End server once it has the new build, is what makes the pool's
/// back end unavailable.
#[test]
fn front_end_windows_cost_nothing_the_database_update_does() {
    let mut sim = Sim::new();
    let end = sim.patch("fe1.contoso.com", 0, slow_install(40.0));
    let r = sim.report();
    let fe = server(&r, "fe1.contoso.com");
    assert!(fe.outage_seconds.unwrap() > 1800.0, "{fe:?}");
    let p = pool(&r, "pool1.contoso.com");
    assert_eq!(p.front_ends, vec!["fe1.contoso.com"]);
    assert_eq!(p.front_ends_patched, 1);
    assert_eq!(p.unavailable_seconds, 0.0);
    assert_eq!(p.resiliency_seconds, 0.0);

    sim.patch("sql1.contoso.com", end, Patch::default());
    let r = sim.report();
    let p = pool(&r, "pool1.contoso.com");
    let update = step_of(server(&r, "sql1.contoso.com"), StepId::UpdateDatabases);
    assert_eq!(p.unavailable.len(), 1);
    assert_eq!(
        p.unavailable[0].start_seconds,
        update.start_seconds.unwrap()
    );
    assert_eq!(p.unavailable_seconds, 360.0);
}

#[test]
fn a_failed_server_is_out_until_its_recovery_ends() {
    let mut sim = Sim::new();
    let end = sim.patch(
        "se1.contoso.com",
        0,
        Patch {
            fail: Some(StepId::InstallUpdate),
            ..Patch::default()
        },
    );
    sim.skip("fe1.contoso.com", end);
    sim.run.state = RunState::Failed;
    let r = sim.report();
    assert_eq!(r.run.state, RunState::Failed);
    let s = server(&r, "se1.contoso.com");
    assert_eq!(s.state, ServerState::Failed);
    // stop-cs-services 2, stop-w3svc 0.5, shells 0.2, install 12, recovery 3.5 minutes.
    assert_eq!(s.outage_seconds, Some(18.2 * 60.0));
    assert_eq!(s.outage_end_seconds, Some(secs(end)));
    let rec = s.recovery.as_ref().expect("recovery");
    assert_eq!(rec.end_seconds - rec.start_seconds, secs(RECOVERY));
    assert_eq!(s.end_seconds, Some(secs(end)));
    let install = step_of(s, StepId::InstallUpdate);
    assert_eq!(install.state, StepState::Failed);
    assert_eq!(install.exit_code, Some(1603));
    let gac = step_of(s, StepId::StopCsServicesGac);
    assert_eq!(gac.state, StepState::Pending);
    assert_eq!(gac.start_seconds, None);

    assert_eq!(r.failures.len(), 2);
    let f = &r.failures[0];
    assert_eq!(f.server, "se1.contoso.com");
    assert_eq!(f.step, Some(StepId::InstallUpdate));
    assert_eq!(f.exit_code, Some(1603));
    assert!(f.reason.as_deref().unwrap().contains("1603"));
    assert!(f.output.as_deref().unwrap().contains("<files in use>"));
    assert_eq!(
        f.recovery_output.as_deref(),
        Some("W3SVC started; services started")
    );
    let f = &r.failures[1];
    assert_eq!(f.server, "fe1.contoso.com");
    assert_eq!(f.state, ServerState::Skipped);
    assert_eq!(f.step, None);
    let skipped = server(&r, "fe1.contoso.com");
    assert_eq!(skipped.state, ServerState::Skipped);
    assert_eq!(skipped.start_seconds, None);
    assert_eq!(skipped.end_seconds, Some(secs(end)));
}

#[test]
fn a_failure_before_the_outage_window_causes_no_outage() {
    let mut sim = Sim::new();
    sim.patch(
        "sql1.contoso.com",
        0,
        Patch {
            fail: Some(StepId::CheckAdminRole),
            ..Patch::default()
        },
    );
    let r = sim.report();
    let s = server(&r, "sql1.contoso.com");
    assert_eq!(s.state, ServerState::Failed);
    assert_eq!(s.outage_seconds, None);
    assert!(s.recovery.is_none());
    assert_eq!(pool(&r, "pool1.contoso.com").unavailable_seconds, 0.0);
    assert_eq!(r.failures[0].step, Some(StepId::CheckAdminRole));
}

#[test]
fn pools_sharing_a_back_end_are_each_affected() {
    let mut sim = Sim::new();
    sim.patch("shared.contoso.com", 0, slow(StepId::UpdateDatabases, 53.2));
    let r = sim.report();
    let p3 = pool(&r, "pool3.contoso.com");
    let p4 = pool(&r, "pool4.contoso.com");
    for p in [p3, p4] {
        assert_eq!(p.servers, vec!["shared.contoso.com"]);
        assert_eq!(p.backend, "shared.contoso.com");
        assert!((p.resiliency_seconds - 23.2 * 60.0).abs() < 1e-9, "{p:?}");
    }
    // The server is planned once, under the first pool.
    assert_eq!(
        r.servers
            .iter()
            .filter(|s| s.fqdn == "shared.contoso.com")
            .count(),
        1
    );
    // Pools in topology order.
    let order: Vec<&str> = r.pools.iter().map(|p| p.fqdn.as_str()).collect();
    assert_eq!(
        order,
        [
            "se1.contoso.com",
            "pool1.contoso.com",
            "pool2.contoso.com",
            "pool3.contoso.com",
            "pool4.contoso.com"
        ]
    );
}

#[test]
fn an_interrupted_run_measures_open_windows_to_the_last_record() {
    let mut sim = Sim::new();
    let end = sim.patch(
        "se1.contoso.com",
        0,
        Patch {
            durations: vec![(StepId::InstallUpdate, 40 * MINUTE)],
            interrupt: Some(StepId::StopCsServicesGac),
            ..Patch::default()
        },
    );
    sim.run.state = RunState::Interrupted;
    let r = sim.report();
    assert_eq!(r.run.state, RunState::Interrupted);
    assert_eq!(r.run.makespan_seconds, secs(end));
    let s = server(&r, "se1.contoso.com");
    assert_eq!(s.state, ServerState::Running);
    assert_eq!(s.end_seconds, None);
    assert_eq!(s.outage_end_seconds, None);
    // stop-cs-services 2, stop-w3svc 0.5, shells 0.2, install 40 minutes, so far.
    assert_eq!(s.outage_seconds, Some(42.7 * 60.0));
    let gac = step_of(s, StepId::StopCsServicesGac);
    assert_eq!(gac.state, StepState::Running);
    assert_eq!(gac.end_seconds, None);
    let p = pool(&r, "se1.contoso.com");
    assert_eq!(p.unavailable[0].end_seconds, None);
    assert_eq!(p.resiliency[0].end_seconds, None);
    assert!((p.resiliency_seconds - 12.7 * 60.0).abs() < 1e-9);
}

#[test]
fn journal_server_names_match_ignoring_case() {
    let mut sim = Sim::new();
    sim.patch("se1.contoso.com", 0, Patch::default());
    for e in &mut sim.journal {
        e.server = e.server.to_ascii_uppercase();
    }
    let r = sim.report();
    assert_eq!(
        server(&r, "se1.contoso.com").outage_seconds,
        Some(secs(OUTAGE))
    );
}

#[test]
fn records_of_another_run_are_refused() {
    let mut sim = Sim::new();
    sim.patch("se1.contoso.com", 0, Patch::default());
    sim.journal[3].run = 8;
    let err = build(&sim.run, &sim.journal, &sim.audit).unwrap_err();
    assert_eq!(err.code(), "SFB-R002");
    assert!(matches!(err, ReportError::ForeignRecord { found: 8, .. }));
}

#[test]
fn an_unreadable_topology_snapshot_is_an_error() {
    let mut sim = Sim::new();
    sim.run.spec.topology_snapshot = "<Topology".into();
    let err = build(&sim.run, &[], &[]).unwrap_err();
    assert_eq!(err.code(), "SFB-R001");
    assert!(err.to_string().contains("contoso.toml"), "{err}");
}

#[test]
fn json_has_the_contract_fields_first() {
    let mut sim = Sim::new();
    sim.patch("se1.contoso.com", 0, Patch::default());
    let json = serde_json::to_string(&sim.report()).unwrap();
    assert!(
        json.starts_with(
            r#"{"schema_version":1,"run":{"id":7,"state":"succeeded","makespan_seconds":1818.0,"#
        ),
        "{json}"
    );
    assert!(
        json.contains(r#""servers":[{"fqdn":"se1.contoso.com","pool":"se1.contoso.com","state":"succeeded","start_seconds":0.0,"end_seconds":1818.0,"outage_seconds":1512.0,"#),
        "{json}"
    );
    assert!(
        json.contains(r#""pools":[{"fqdn":"se1.contoso.com","resiliency_seconds":0.0,"#),
        "{json}"
    );
}

/// The JSON of a run with every kind of server, pinned.
#[test]
fn json_snapshot() {
    let mut sim = Sim::new();
    let end = sim.patch("se1.contoso.com", 0, Patch::default());
    sim.patch(
        "sql1.contoso.com",
        0,
        Patch {
            fail: Some(StepId::UpdateDatabases),
            ..Patch::default()
        },
    );
    sim.skip("ag-n1.contoso.com", end);
    sim.run.state = RunState::Failed;
    let mut r = sim.report();
    // Keep the snapshot short: the SQL-only back end's steps (ran or not applicable), the
    // start of the Standard Edition server's, and a few audit lines are enough.
    for s in &mut r.servers {
        match s.fqdn.as_str() {
            "sql1.contoso.com" => {}
            "se1.contoso.com" => s.steps.truncate(3),
            _ => s.steps.clear(),
        }
    }
    r.audit.truncate(1);
    insta::assert_json_snapshot!(r);
}

/// Checks a JSON value against the parts of JSON Schema that docs/schema/report.schema.json
/// uses: `type`, `required`, `properties`, `items`, `enum`, `const`, `minimum`, `$ref` to `$defs`.
fn check_schema(
    root: &serde_json::Value,
    schema: &serde_json::Value,
    value: &serde_json::Value,
    path: &str,
) {
    use serde_json::Value;
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/$defs/").expect("local $ref");
            &root["$defs"][name]
        }
        None => schema,
    };
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => panic!("bad type in schema at {path}"),
        };
        let ok = types.iter().any(|t| match *t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "number" => value.is_number(),
            "integer" => value.is_i64() || value.is_u64(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            other => panic!("unknown type {other}"),
        });
        assert!(ok, "{path}: {value} is not {types:?}");
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        assert!(e.contains(value), "{path}: {value} not in {e:?}");
    }
    if let Some(c) = schema.get("const") {
        assert_eq!(c, value, "{path}");
    }
    if let (Some(min), Some(v)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) {
        assert!(v >= min, "{path}: {v} < {min}");
    }
    if let Some(obj) = value.as_object() {
        for req in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = req.as_str().unwrap();
            assert!(obj.contains_key(key), "{path}: missing {key}");
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (key, sub) in props {
                if let Some(v) = obj.get(key) {
                    check_schema(root, sub, v, &format!("{path}.{key}"));
                }
            }
            // Every field the report writes is described.
            for key in obj.keys() {
                assert!(
                    props.contains_key(key),
                    "{path}: {key} is not in the schema"
                );
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            check_schema(root, items, v, &format!("{path}[{i}]"));
        }
    }
}

#[test]
fn json_follows_the_published_schema() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/schema/report.schema.json"),
    )
    .expect("docs/schema/report.schema.json");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("schema is JSON");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let mut sim = Sim::new();
    let end = sim.patch("se1.contoso.com", 0, Patch::default());
    sim.patch("fe1.contoso.com", 0, slow_install(40.0));
    sim.patch("sql1.contoso.com", end, slow(StepId::UpdateDatabases, 40.0));
    sim.patch(
        "fe2.contoso.com",
        0,
        Patch {
            fail: Some(StepId::StartCsServices),
            ..Patch::default()
        },
    );
    sim.skip("ag-n2.contoso.com", end);
    sim.patch(
        "shared.contoso.com",
        end,
        Patch {
            durations: vec![(StepId::UpdateDatabases, 50 * MINUTE)],
            interrupt: Some(StepId::Verify),
            ..Patch::default()
        },
    );
    sim.run.state = RunState::Interrupted;
    let value = serde_json::to_value(sim.report()).unwrap();
    check_schema(&schema, &schema, &value, "$");
}

// ---------------------------------------------------------------------------------------------
// HTML

fn parse(html: &str) -> roxmltree::Document<'_> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(html, options)
        .unwrap_or_else(|e| panic!("the report is not well-formed: {e}"))
}

fn has_class(n: &roxmltree::Node<'_, '_>, class: &str) -> bool {
    n.attribute("class")
        .is_some_and(|c| c.split_whitespace().any(|x| x == class))
}

fn varied_run() -> Report {
    let mut sim = Sim::new();
    let end = sim.patch("se1.contoso.com", 0, Patch::default());
    let fe1 = sim.patch("fe1.contoso.com", 0, Patch::default());
    sim.patch("sql1.contoso.com", fe1, slow(StepId::UpdateDatabases, 53.2));
    let fe2 = sim.patch(
        "fe2.contoso.com",
        end,
        Patch {
            fail: Some(StepId::InstallUpdate),
            ..Patch::default()
        },
    );
    sim.skip("ag-n2.contoso.com", fe2);
    sim.patch("shared.contoso.com", end, Patch::default());
    sim.run.state = RunState::Failed;
    // Text from a server is data, never markup.
    sim.journal.iter_mut().for_each(|e| {
        if let Record::StepResult { output, result, .. } = &mut e.record
            && *result == StepResultKind::Failed
        {
            output.push_str("\n<script>alert('x')</script>\u{1b}[31m https://evil.example/x.js");
        }
    });
    sim.report()
}

#[test]
fn html_is_well_formed_and_shows_every_server() {
    let report = varied_run();
    let html = render_html(&report);
    let doc = parse(&html);
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "html");

    let rows: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("g") && has_class(n, "row"))
        .collect();
    assert_eq!(rows.len(), report.servers.len());
    for s in &report.servers {
        let row = rows
            .iter()
            .find(|r| r.attribute("data-server") == Some(s.fqdn.as_str()))
            .unwrap_or_else(|| panic!("timeline row for {}", s.fqdn));
        // A 30-minute line on every row with an outage window, none on the others.
        let lines = row
            .descendants()
            .filter(|n| n.has_tag_name("line") && has_class(n, "limit-30"))
            .count();
        assert_eq!(lines, usize::from(s.outage_seconds.is_some()), "{}", s.fqdn);
        // Every step that started is drawn.
        let started = s
            .steps
            .iter()
            .filter(|st| st.start_seconds.is_some())
            .count();
        let drawn = row
            .descendants()
            .filter(|n| n.has_tag_name("rect") && has_class(n, "step"))
            .count();
        assert_eq!(drawn, started, "{}", s.fqdn);
        // In the servers table.
        assert!(
            doc.descendants().any(|n| n.has_tag_name("tr")
                && n.attribute("data-server") == Some(s.fqdn.as_str())
                && n.ancestors().any(|a| has_class(&a, "servers"))),
            "{} in the servers table",
            s.fqdn
        );
    }
    for p in &report.pools {
        let tr = doc
            .descendants()
            .find(|n| n.has_tag_name("tr") && n.attribute("data-pool") == Some(p.fqdn.as_str()))
            .unwrap_or_else(|| panic!("pool {} in the impact table", p.fqdn));
        assert_eq!(
            has_class(&tr, "impact"),
            p.resiliency_seconds > 0.0,
            "{}",
            p.fqdn
        );
    }
    // The long outage of pool1 is shown in minutes.
    assert!(html.contains("yes: 23.2 min"));
    // A legend entry per step kind.
    let legend = doc
        .descendants()
        .find(|n| n.has_tag_name("g") && has_class(n, "legend"))
        .expect("legend");
    let legend_text: String = legend
        .descendants()
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join(" ");
    for id in StepId::ALL {
        assert!(legend_text.contains(id.as_str()), "legend lacks {id}");
    }
    // The failed step is marked in the picture and told in words.
    assert!(doc.descendants().any(|n| n.has_tag_name("rect")
        && n.attribute("data-step") == Some("install-update")
        && n.attribute("data-state") == Some("failed")));
    let failures: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("article") && has_class(n, "failure"))
        .collect();
    assert_eq!(failures.len(), report.failures.len());
    // Audit trail: one row per line.
    let audit_rows = doc
        .descendants()
        .filter(|n| {
            n.has_tag_name("tr")
                && n.parent().is_some_and(|p| p.has_tag_name("tbody"))
                && n.ancestors().any(|a| has_class(&a, "audit"))
        })
        .count();
    assert_eq!(audit_rows, report.audit.len());
}

#[test]
fn html_escapes_server_text_and_loads_nothing() {
    let report = varied_run();
    let html = render_html(&report);
    let doc = parse(&html);
    // The server's output is shown, as text.
    assert!(doc.descendants().all(|n| !n.has_tag_name("script")));
    let pre: String = doc
        .descendants()
        .filter(|n| n.has_tag_name("pre"))
        .filter_map(|n| n.text())
        .collect();
    assert!(pre.contains("<script>alert('x')</script>"), "{pre}");
    assert!(pre.contains("\u{241b}[31m"), "escape shown as a symbol");
    assert!(html.contains("&lt;files in use&gt; &amp; &quot;locked&quot;"));

    // No reference to anything outside the file: the only URLs are XML namespaces, and text
    // that came from a server.
    for node in doc.descendants() {
        for a in node.attributes() {
            if a.name() == "xmlns" || a.namespace().is_some() {
                continue;
            }
            let v = a.value().to_ascii_lowercase();
            assert!(
                !v.contains("http:")
                    && !v.contains("https:")
                    && !v.contains("//")
                    && !v.contains("data:"),
                "<{}> {}={}",
                node.tag_name().name(),
                a.name(),
                a.value()
            );
            if v.contains("url(") {
                assert!(v.starts_with("url(#"), "{}={}", a.name(), a.value());
            }
            assert!(
                !["href", "src", "srcset", "action"].contains(&a.name()),
                "{}",
                a.name()
            );
        }
    }
    let style: String = doc
        .descendants()
        .filter(|n| n.has_tag_name("style"))
        .filter_map(|n| n.text())
        .collect();
    assert!(!style.contains("url(") && !style.contains("@import") && !style.contains("@font-face"));
    let without_server_text = html.replace("https://evil.example/x.js", "");
    let refs: Vec<&str> = without_server_text
        .match_indices("http")
        .map(|(i, _)| {
            &without_server_text[i.saturating_sub(7)..(i + 30).min(without_server_text.len())]
        })
        .filter(|s| s.contains("://"))
        .collect();
    assert!(
        refs.iter()
            .all(|s| s.starts_with("xmlns=\"http://www.w3.org/2000/svg\"")),
        "{refs:?}"
    );
    // The patterns, the timeline and its legend.
    assert_eq!(refs.len(), 3, "{refs:?}");
}

#[test]
fn html_of_an_interrupted_run_marks_the_end_of_the_journal() {
    let mut sim = Sim::new();
    sim.patch(
        "se1.contoso.com",
        0,
        Patch {
            interrupt: Some(StepId::InstallUpdate),
            ..Patch::default()
        },
    );
    sim.run.state = RunState::Interrupted;
    let html = render_html(&sim.report());
    let doc = parse(&html);
    assert!(html.contains("journal ends (interrupted)"));
    assert!(html.contains("(open)"));
    assert!(doc.descendants().any(|n| n.has_tag_name("rect")
        && n.attribute("data-step") == Some("install-update")
        && n.attribute("data-state") == Some("running")));
}

#[test]
fn wave_approvals_are_reported_and_drawn() {
    let mut sim = Sim::new();
    let end = sim.patch("se1.contoso.com", 0, Patch::default());
    // The engine counts waves from 0: wave 0 is the canary.
    sim.push(
        "",
        end + MINUTE,
        Record::WaveApproved {
            wave: 0,
            by: "CONTOSO\\change-board".into(),
        },
    );
    sim.patch("sql1.contoso.com", end + 2 * MINUTE, Patch::default());
    let planned = sim.run.spec.plan.servers.len();
    let r = sim.report();
    assert_eq!(r.run.approvals.len(), 1);
    assert_eq!(r.run.approvals[0].wave, 0);
    assert_eq!(r.run.approvals[0].at_seconds, secs(end + MINUTE));
    assert_eq!(r.run.approvals[0].at, None, "a lab run has no calendar");
    // The run-level record belongs to no server.
    assert_eq!(
        planned, 9,
        "Standard Edition, Front End and back-end machines"
    );
    assert_eq!(r.servers.len(), planned);
    let html = render_html(&r);
    let doc = parse(&html);
    assert!(
        doc.descendants()
            .any(|n| n.has_tag_name("g") && has_class(&n, "approval"))
    );
    // For people: the canary wave, by whom, when; never "wave 0".
    assert!(
        html.contains("canary wave approved by CONTOSO\\change-board at T+00:31:18 lab time"),
        "{html}"
    );
    assert!(!html.contains("wave 0") && !html.contains("unknown"));
}

/// Approvals read as people count: the canary wave, then wave 2, with the approver and, over
/// SSH, the date and time with its offset.
#[test]
fn approvals_name_the_wave_the_approver_and_the_time() {
    let mut sim = Sim::over_ssh();
    let end = sim.patch("se1.contoso.com", 0, Patch::default());
    for (wave, by, at) in [
        (0, "CONTOSO\\alice", end + MINUTE),
        (1, "CONTOSO\\bob", end + 2 * MINUTE),
    ] {
        sim.push(
            "",
            at,
            Record::WaveApproved {
                wave,
                by: by.into(),
            },
        );
    }
    let r = sim.report();
    assert_eq!(
        r.run.approvals[0].at.as_deref(),
        Some("2026-12-04T21:34:33Z")
    );
    let html = render_html(&r);
    assert!(
        html.contains(
            "canary wave approved by CONTOSO\\alice at 2026-12-04 22:34:33 +01:00 (T+00:31:18)"
        ),
        "{html}"
    );
    assert!(
        html.contains("wave 2 approved by CONTOSO\\bob at 2026-12-04 22:35:33 +01:00 (T+00:32:18)"),
        "{html}"
    );
    parse(&html);
}

#[test]
fn servers_the_topology_does_not_place_keep_their_planned_pool() {
    let mut sim = Sim::new();
    // The recorded topology lost every pool but the Standard Edition server.
    sim.run.spec.topology_snapshot =
        "[[site]]\nname = \"Berlin\"\n\n[[pool]]\nfqdn = \"se1.contoso.com\"\nedition = \"standard\"\n".into();
    sim.patch("sql1.contoso.com", 0, slow(StepId::UpdateDatabases, 53.2));
    let r = sim.report();
    let order: Vec<&str> = r.pools.iter().map(|p| p.fqdn.as_str()).collect();
    assert_eq!(
        order,
        [
            "se1.contoso.com",
            "pool1.contoso.com",
            "pool2.contoso.com",
            "pool3.contoso.com",
            "pool4.contoso.com"
        ]
    );
    let p = pool(&r, "pool1.contoso.com");
    assert_eq!(p.servers, vec!["sql1.contoso.com"]);
    assert_eq!(p.front_ends, vec!["fe1.contoso.com"]);
    assert!((p.resiliency_seconds - 23.2 * 60.0).abs() < 1e-9);
    // Both AlwaysOn nodes stay together, on their planned back end.
    assert_eq!(
        pool(&r, "pool2.contoso.com").servers,
        vec!["ag-n1.contoso.com", "ag-n2.contoso.com"]
    );
    assert_eq!(pool(&r, "pool2.contoso.com").backend, "ag.contoso.com");
}

/// A pool's Front End servers in the topology, in its order, whether or not the run has them:
/// what pool quorum counts.
#[test]
fn a_pool_lists_every_front_end_server_of_the_topology_in_its_order() {
    let inventory = r#"
[[site]]
name = "Berlin"

[[pool]]
fqdn = "se1.contoso.com"
edition = "standard"

[[pool]]
fqdn = "pool1.contoso.com"
machines = ["fe-c.contoso.com", "fe-a.contoso.com", "fe-b.contoso.com", "fe-d.contoso.com"]
backend = "sql1.contoso.com"

[[sql]]
fqdn = "sql1.contoso.com"
stores = ["user", "application", "central-management"]
"#;
    let mut sim = Sim::with_inventory(inventory);
    let deployment = sfbpatch_topology::load(inventory, "contoso.toml").expect("inventory");
    let package = parse_manifest(MANIFEST, "cu.toml").expect("manifest");
    let only = PlanPolicy {
        only: vec!["fe-b.contoso.com".into(), "se1.contoso.com".into()],
        ..PlanPolicy::default()
    };
    sim.run.spec.plan = plan(&deployment, &package, &only).expect("plan");
    sim.patch("fe-b.contoso.com", 0, Patch::default());
    let r = sim.report();
    let p = pool(&r, "pool1.contoso.com");
    assert_eq!(p.front_ends, vec!["fe-b.contoso.com"]);
    assert_eq!(p.front_ends_patched, 1);
    assert_eq!(
        p.front_ends_in_pool,
        vec![
            "fe-c.contoso.com",
            "fe-a.contoso.com",
            "fe-b.contoso.com",
            "fe-d.contoso.com"
        ]
    );
    let se = pool(&r, "se1.contoso.com");
    assert!(se.front_ends.is_empty() && se.front_ends_in_pool.is_empty());
    // A pool the recorded topology no longer has: the run's Front End servers are all it knows.
    let mut lost = Sim::new();
    lost.run.spec.topology_snapshot =
        "[[site]]\nname = \"Berlin\"\n\n[[pool]]\nfqdn = \"se1.contoso.com\"\nedition = \"standard\"\n".into();
    let r = lost.report();
    assert_eq!(
        pool(&r, "pool1.contoso.com").front_ends_in_pool,
        vec!["fe1.contoso.com"]
    );
}

/// The timeline alone (for the live dashboard) is the page's timeline section's contents,
/// byte for byte, with the same time zone handling.
#[test]
fn the_timeline_alone_is_the_pages_timeline() {
    for mut sim in [Sim::new(), Sim::over_ssh()] {
        let end = sim.patch("se1.contoso.com", 0, Patch::default());
        sim.patch("fe1.contoso.com", end, slow_install(40.0));
        let r = sim.report();
        let zone = TimeZone::fixed(Offset::constant(1));
        let fragment = render_timeline_in(&r, &zone);
        let page = render_html_in(&r, &zone);
        assert!(fragment.starts_with("<h2>Timeline</h2>\n"), "{fragment}");
        assert!(
            page.contains(&format!(
                "<section id=\"timeline\">\n{fragment}</section>\n"
            )),
            "{fragment}"
        );
        for s in &r.servers {
            assert!(
                fragment.contains(&format!("<g class=\"row\" data-server=\"{}\"", s.fqdn)),
                "{}",
                s.fqdn
            );
        }
        // Another zone gives other times of day on a run over SSH, the same page for the lab.
        let elsewhere = render_timeline_in(&r, &TimeZone::fixed(Offset::constant(-5)));
        assert_eq!(elsewhere == fragment, r.run.clock == ClockKind::Lab);
        // Its styles are the page's.
        for rule in crate::TIMELINE_CSS.lines() {
            assert!(page.contains(rule), "{rule}");
        }
    }
    // A site's name carrying markup (drawn in the rows of a large run) is text.
    let mut large = scaled_run(crate::html::LARGE_REPORT_SERVERS);
    for s in &mut large.servers {
        s.site = format!("<script>alert('{}')</script>&", s.site);
    }
    let fragment = render_timeline_in(&large, &TimeZone::UTC);
    assert!(!fragment.contains("<script"), "a site's markup is escaped");
    assert!(
        fragment.contains("data-site=\"&lt;script&gt;alert(&#39;site0&#39;)&lt;/script&gt;&amp;\""),
        "{fragment}"
    );
}

#[test]
fn the_run_level_database_check_is_listed_and_a_database_behind_is_marked() {
    let mut sim = Sim::new();
    let end = sim.patch("se1.contoso.com", 0, Patch::default());
    let db = |database: &str, installed: &str| sfbpatch_engine::DatabaseState {
        sql_server_fqdn: "sqlmon.contoso.com".into(),
        sql_instance: String::new(),
        store: "monitoring".into(),
        database: database.into(),
        installed_version: installed.into(),
        expected_version: "10.2046.553".into(),
    };
    sim.push(
        "",
        end,
        Record::DatabasesChecked {
            databases: vec![db("LcsCDR", "10.2046.553"), db("QoEMetrics", "10.2046.0")],
        },
    );
    let r = sim.report();
    assert_eq!(r.databases.len(), 2);
    assert!(r.databases[0].is_current());
    assert!(!r.databases[1].is_current());
    let html = render_html(&r);
    let doc = parse(&html);
    let rows: Vec<_> = doc
        .descendants()
        .filter(|n| {
            n.has_tag_name("tr")
                && n.parent().is_some_and(|p| p.has_tag_name("tbody"))
                && n.ancestors().any(|a| has_class(&a, "databases"))
        })
        .collect();
    assert_eq!(rows.len(), 2);
    assert!(!has_class(&rows[0], "impact"));
    assert!(has_class(&rows[1], "impact"));
    assert!(html.contains("2 database(s), 1 behind"));
}

// ---------------------------------------------------------------------------------------------
// For an administrator with the report in hand

/// The text of a node: its text nodes, in order.
fn text_of(node: &roxmltree::Node<'_, '_>) -> String {
    node.descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect()
}

/// A run over SSH ran on the wall clock: its start and end are calendar instants (RFC 3339 in
/// the JSON), and the page shows each time as a date and time with its UTC offset, in the zone
/// named once in the header, and as T+ since the run's own start.
#[test]
fn an_ssh_run_shows_dates_with_their_offset_and_offsets_from_its_start() {
    let mut sim = Sim::over_ssh();
    // Starts 5 minutes in, ends after 22:00 UTC: the date is 2026-12-04 in UTC+01:00 too.
    let end = sim.patch("se1.contoso.com", 5 * MINUTE, Patch::default());
    let r = sim.report();
    assert_eq!(r.run.clock, ClockKind::Wall);
    assert_eq!(r.run.started_at.as_deref(), Some("2026-12-04T21:03:15Z"));
    // 5 minutes + 30:18 later.
    assert_eq!(end, 5 * MINUTE + SERVER);
    assert_eq!(r.run.ended_at.as_deref(), Some("2026-12-04T21:38:33Z"));
    // Offsets still count from the run's start, never from 1970.
    assert_eq!(server(&r, "se1.contoso.com").start_seconds, Some(300.0));

    let html = render_html(&r);
    let doc = parse(&html);
    let header = text_of(
        &doc.descendants()
            .find(|n| n.has_tag_name("header"))
            .expect("header"),
    );
    assert!(
        header.contains("Started2026-12-04 22:03:15 +01:00"),
        "{header}"
    );
    assert!(
        header.contains("Ended2026-12-04 22:38:33 +01:00 (T+00:35:18)"),
        "{header}"
    );
    // The zone is stated once, in the header.
    assert_eq!(html.matches("Time zone").count(), 1);
    assert!(header.contains("UTC+01:00"), "{header}");
    // The servers table: date, time and offset, and T+ below.
    let row = doc
        .descendants()
        .find(|n| {
            n.has_tag_name("tr")
                && n.attribute("data-server") == Some("se1.contoso.com")
                && n.ancestors().any(|a| has_class(&a, "servers"))
        })
        .expect("servers row");
    let times: Vec<_> = row
        .descendants()
        .filter(|n| n.has_tag_name("time"))
        .collect();
    assert_eq!(times.len(), 2, "started and finished");
    assert_eq!(text_of(&times[0]), "2026-12-04 22:08:15 +01:00");
    assert_eq!(times[0].attribute("datetime"), Some("2026-12-04T21:08:15Z"));
    let text = text_of(&row);
    assert!(text.contains("T+00:05:00"), "{text}");
    assert!(
        text.contains("2026-12-04 22:38:33 +01:00T+00:35:18"),
        "{text}"
    );
    // The timeline's axis shows the time of day.
    assert!(html.contains("time of day (UTC+01:00)"), "{html}");
    assert!(!html.contains("1970") && !html.contains("lab time"));
    // The audit trail too.
    assert!(html.contains(
        "<time datetime=\"2026-12-04T21:08:21Z\"><span class=\"nw\">2026-12-04</span> \
         <span class=\"nw\">22:08:21 +01:00</span></time>"
    ));

    // The same run in another zone: the same instants, another offset.
    let berlin_winter = render_html_in(&r, &TimeZone::fixed(Offset::constant(-5)));
    assert!(berlin_winter.contains("2026-12-04 16:03:15 -05:00"));
}

/// A lab run's clock is the lab's: no calendar in its records, so offsets from the run's start,
/// labelled lab time, and the page says so.
#[test]
fn a_lab_run_shows_offsets_from_its_start_in_lab_time() {
    let mut sim = Sim::new();
    let end = sim.patch("se1.contoso.com", 90_000, Patch::default());
    let r = sim.report();
    assert_eq!(r.run.clock, ClockKind::Lab);
    assert_eq!(r.run.started_at, None);
    assert_eq!(r.run.ended_at, None);
    assert_eq!(r.run.created_at_seconds, secs(T0));
    let html = render_html(&r);
    let doc = parse(&html);
    assert!(
        html.contains("lab time: the lab&#39;s virtual clock, as offsets from the run&#39;s start")
    );
    assert_eq!(end, 90_000 + SERVER);
    assert!(html.contains("T+00:31:48 lab time"), "{html}");
    assert!(html.contains("minutes since start (lab time)"));
    assert!(!html.contains("Time zone"));
    // No instants anywhere: the lab's virtual clock is no calendar.
    assert!(doc.descendants().all(|n| !n.has_tag_name("time")));
    assert!(!html.contains("1970"));
    let row = doc
        .descendants()
        .find(|n| {
            n.has_tag_name("tr")
                && n.attribute("data-server") == Some("se1.contoso.com")
                && n.ancestors().any(|a| has_class(&a, "servers"))
        })
        .expect("servers row");
    let text = text_of(&row);
    assert!(
        text.contains("T+00:01:30") && text.contains("T+00:31:48"),
        "{text}"
    );
}

/// Each server's build before (the pre-flight's) and after (the package's once verify saw it;
/// the one before when nothing was installed; unknown when the installer ran but nothing
/// verified it).
#[test]
fn each_server_has_its_build_before_and_after() {
    let mut sim = Sim::new();
    sim.patch("se1.contoso.com", 0, Patch::default());
    sim.patch(
        "fe1.contoso.com",
        0,
        Patch {
            fail: Some(StepId::InstallUpdate),
            ..Patch::default()
        },
    );
    sim.patch(
        "fe2.contoso.com",
        0,
        Patch {
            fail: Some(StepId::CheckAdminRole),
            exit_code: Some(5),
            ..Patch::default()
        },
    );
    sim.patch("sql1.contoso.com", 0, Patch::default());
    sim.run.state = RunState::Failed;
    let r = sim.report();

    let se1 = server(&r, "se1.contoso.com");
    assert_eq!(se1.build_before.as_deref(), Some(OLD));
    assert_eq!(se1.build_after.as_deref(), Some(NEW));
    assert_eq!(se1.build_after_from, Some(BuildSource::Verify));
    // The installer failed: what it left is not known until someone checks.
    let fe1 = server(&r, "fe1.contoso.com");
    assert_eq!(fe1.build_before.as_deref(), Some(OLD));
    assert_eq!(
        (fe1.build_after.as_deref(), fe1.build_after_from),
        (None, None)
    );
    // Failed before the installer: the build it had.
    let fe2 = server(&r, "fe2.contoso.com");
    assert_eq!(fe2.build_after.as_deref(), Some(OLD));
    assert_eq!(fe2.build_after_from, Some(BuildSource::Preflight));
    // A SQL-only back end has no Skype for Business build, before or after.
    let sql1 = server(&r, "sql1.contoso.com");
    assert_eq!(
        (sql1.build_before.as_deref(), sql1.build_after.as_deref()),
        (None, None)
    );
    // Not started: nothing known yet.
    let fe3 = server(&r, "fe3.contoso.com");
    assert_eq!(
        (fe3.build_before.as_deref(), fe3.build_after_from),
        (None, None)
    );

    let html = render_html(&r);
    let doc = parse(&html);
    let cells = |fqdn: &str| -> Vec<String> {
        doc.descendants()
            .find(|n| {
                n.has_tag_name("tr")
                    && n.attribute("data-server") == Some(fqdn)
                    && n.ancestors().any(|a| has_class(&a, "servers"))
            })
            .expect("servers row")
            .children()
            .filter(|n| n.has_tag_name("td") && has_class(n, "build"))
            .map(|td| text_of(&td))
            .collect()
    };
    assert_eq!(
        cells("se1.contoso.com"),
        [OLD, &format!("{NEW}\u{2713} verified")]
    );
    assert_eq!(cells("fe1.contoso.com"), [OLD, "not verified"]);
    assert_eq!(cells("fe2.contoso.com"), [OLD, &format!("{OLD}unchanged")]);
    assert_eq!(
        cells("sql1.contoso.com"),
        ["noneSQL Server only", "\u{2013}"]
    );
    assert_eq!(cells("fe3.contoso.com"), ["\u{2013}", "not yet"]);
}

fn failure<'a>(r: &'a Report, fqdn: &str) -> &'a crate::FailureReport {
    r.failures
        .iter()
        .find(|f| f.server == fqdn)
        .unwrap_or_else(|| panic!("{fqdn} failed"))
}

/// A failed installer says what its code means, where its logs are on the server and how to
/// retry that one server: 1603 (a fatal error, rolled back) and 1618 (another installation in
/// progress).
#[test]
fn a_failed_server_has_a_hint_what_to_do_next() {
    let mut sim = Sim::new();
    let end = sim.patch(
        "se1.contoso.com",
        0,
        Patch {
            fail: Some(StepId::InstallUpdate),
            ..Patch::default()
        },
    );
    sim.patch(
        "fe1.contoso.com",
        0,
        Patch {
            fail: Some(StepId::InstallUpdate),
            exit_code: Some(1618),
            ..Patch::default()
        },
    );
    sim.skip("fe2.contoso.com", end);
    sim.run.state = RunState::Failed;
    let r = sim.report();

    let h = &failure(&r, "se1.contoso.com").hint;
    let code = h.exit_code.as_ref().expect("1603 is in the glossary");
    assert_eq!(code.code, 1603);
    assert_eq!(code.name, "ERROR_INSTALL_FAILURE");
    assert!(code.meaning.contains("fatal error"), "{code:?}");
    assert!(
        code.action.contains("rolls a failed installation back"),
        "{code:?}"
    );
    assert!(code.action.contains("Return value 3"), "{code:?}");
    let logs = h.logs.as_deref().expect("where the logs are");
    assert!(
        logs.contains(r"C:\ProgramData\sfbpatch\staging\7.0.2046.553\"),
        "{logs}"
    );
    assert!(
        logs.contains("%TEMP%") && logs.contains("CONTOSO\\sfbadmin"),
        "{logs}"
    );
    assert!(logs.contains("a lab run writes no such logs"), "{logs}");
    let id = r.run.id;
    assert_eq!(
        h.retry,
        format!(
            "once the cause is fixed: `sfbpatch retry se1.contoso.com --run {id} --state STATE`, \
             then `sfbpatch resume --run {id} --state STATE` (STATE: the state store this run \
             used); the resume probes se1.contoso.com first and runs only what is not done"
        )
    );

    let h = &failure(&r, "fe1.contoso.com").hint;
    let code = h.exit_code.as_ref().expect("1618 is in the glossary");
    assert_eq!(code.name, "ERROR_INSTALL_ALREADY_RUNNING");
    assert!(
        code.meaning
            .contains("another installation is already in progress")
    );
    assert!(code.action.contains("wait until it has ended"), "{code:?}");
    assert!(h.logs.is_some());
    assert!(h.retry.contains("`sfbpatch retry fe1.contoso.com --run"));

    // Skipped: nothing ran, so no code and no logs; the way to patch it still.
    let h = &failure(&r, "fe2.contoso.com").hint;
    assert_eq!((h.exit_code.as_ref(), h.logs.as_ref()), (None, None));
    assert!(
        h.retry
            .starts_with("when another server's failure skipped fe2.contoso.com, retrying"),
        "{}",
        h.retry
    );

    let html = render_html(&r);
    let doc = parse(&html);
    let article = doc
        .descendants()
        .find(|n| {
            n.has_tag_name("article") && n.attribute("data-server") == Some("se1.contoso.com")
        })
        .expect("failure article");
    let hints: Vec<String> = article
        .descendants()
        .filter(|n| n.has_tag_name("li"))
        .map(|li| text_of(&li))
        .collect();
    assert_eq!(hints.len(), 3, "{hints:?}");
    assert!(
        hints[0].starts_with("Exit code 1603 (ERROR_INSTALL_FAILURE): a fatal error"),
        "{hints:?}"
    );
    assert!(
        hints[1].starts_with("Installer logs: on se1.contoso.com,"),
        "{hints:?}"
    );
    assert!(
        hints[2].starts_with("Retry this server once the cause is fixed: sfbpatch retry"),
        "{hints:?}"
    );
    assert!(article.descendants().any(|n| {
        n.has_tag_name("code")
            && n.text()
                .is_some_and(|t| t.starts_with("sfbpatch retry se1.contoso.com --run"))
    }));
}

/// Over SSH the logs are real ones; a run that did not end is retried the same way (the resume
/// uses the connections the run recorded).
#[test]
fn an_ssh_failure_hint_points_at_real_logs() {
    let mut sim = Sim::over_ssh();
    sim.patch(
        "se1.contoso.com",
        0,
        Patch {
            fail: Some(StepId::InstallUpdate),
            ..Patch::default()
        },
    );
    sim.run.state = RunState::Interrupted;
    let r = sim.report();
    let h = &failure(&r, "se1.contoso.com").hint;
    assert!(
        h.retry.starts_with(
            "once the cause is fixed: `sfbpatch retry se1.contoso.com --run 7 --state STATE`"
        ),
        "{}",
        h.retry
    );
    assert!(!h.retry.contains("--connections"), "{}", h.retry);
    assert!(!h.logs.as_deref().unwrap().contains("lab"));
    // A code from another step is explained as Windows uses it, pointing at the step's output.
    let mut sim = Sim::over_ssh();
    sim.patch(
        "sql1.contoso.com",
        0,
        Patch {
            fail: Some(StepId::UpdateDatabases),
            ..Patch::default()
        },
    );
    let r = sim.report();
    let h = &failure(&r, "sql1.contoso.com").hint;
    assert!(
        h.exit_code
            .as_ref()
            .unwrap()
            .meaning
            .contains("here update-databases returned it")
    );
    // The installer did not run there: no installer logs to read.
    assert_eq!(h.logs, None);
}

/// The audit trail is an appendix: a closed `<details>` after the main report, which a browser
/// prints only when someone opens it.
#[test]
fn the_audit_trail_is_an_appendix_not_printed_by_default() {
    let report = varied_run();
    let html = render_html(&report);
    let doc = parse(&html);
    let details = doc
        .descendants()
        .find(|n| n.has_tag_name("details"))
        .expect("appendix");
    assert!(has_class(&details, "appendix"));
    assert_eq!(details.attribute("open"), None, "closed: not printed");
    assert!(details.ancestors().all(|a| !a.has_tag_name("main")));
    let summary = details.first_element_child().expect("summary");
    assert!(summary.has_tag_name("summary"));
    let text = text_of(&summary);
    assert!(text.starts_with("Appendix: audit trail"), "{text}");
    assert!(text.contains(&format!("{} line(s)", report.audit.len())));
    let table = details
        .descendants()
        .find(|n| n.has_tag_name("table") && has_class(n, "audit"))
        .expect("audit table in the appendix");
    let rows = table.descendants().filter(|n| n.has_tag_name("tr")).count();
    assert_eq!(rows, report.audit.len() + 1);
    // Print CSS: no row, failure or timeline picture split across pages.
    let style: String = doc
        .descendants()
        .filter(|n| n.has_tag_name("style"))
        .filter_map(|n| n.text())
        .collect();
    let print = &style[style.find("@media print").expect("print CSS")..];
    assert!(print.contains("svg.timeline, tr, article.failure"));
    assert!(print.contains("break-inside: avoid"));
}

/// Every step keeps its number at any width: a box too narrow for it (a 6-second step in a
/// 30-hour run) has it in the lane below, so each started step has exactly one number; and the
/// picture keeps a minimum width on narrow screens, scrolling rather than shrinking.
#[test]
fn every_step_keeps_its_number_at_any_width() {
    let mut sim = Sim::new();
    let end = sim.patch("se1.contoso.com", 0, Patch::default());
    // The run lasts 30 hours: most boxes are a pixel or two wide.
    sim.patch("sql1.contoso.com", 30 * 60 * MINUTE - end, Patch::default());
    let r = sim.report();
    let html = render_html(&r);
    let doc = parse(&html);
    for s in r.servers.iter().filter(|s| s.start_seconds.is_some()) {
        let row = doc
            .descendants()
            .find(|n| n.has_tag_name("g") && n.attribute("data-server") == Some(s.fqdn.as_str()))
            .expect("row");
        for st in s.steps.iter().filter(|st| st.start_seconds.is_some()) {
            let numbers: Vec<_> = row
                .descendants()
                .filter(|n| {
                    n.has_tag_name("text")
                        && has_class(n, "step-no")
                        && n.attribute("data-step") == Some(st.id.as_str())
                })
                .collect();
            assert_eq!(numbers.len(), 1, "{} {}", s.fqdn, st.id);
            assert_eq!(numbers[0].text(), Some(st.id.number().to_string().as_str()));
        }
        // Numbers in the lane (9 units high) do not overlap one another: each is about 0.6 em
        // wide per digit around its x.
        let mut lane: Vec<(f64, f64)> = row
            .descendants()
            .filter(|n| has_class(n, "step-no") && n.attribute("font-size") == Some("9"))
            .map(|n| {
                let x: f64 = n.attribute("x").unwrap().parse().unwrap();
                let half = n.text().unwrap().len() as f64 * 9.0 * 0.6 / 2.0;
                (x - half, x + half)
            })
            .collect();
        if s.fqdn == "se1.contoso.com" {
            assert!(lane.len() >= 5, "most boxes are narrow: {lane:?}");
        }
        lane.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(lane.windows(2).all(|w| w[0].1 <= w[1].0), "{lane:?}");
    }
    assert!(html.contains("svg.timeline { display: block; width: 100%; min-width: 760px;"));
}

/// A large deployment's timeline is drawn in pictures of at most 16 rows, each fitting a
/// printed page, so a page break never splits a server's row.
#[test]
fn a_large_timeline_is_split_into_pictures_that_fit_a_page() {
    let inventory = sfbpatch_topology::generate(12, 7);
    let mut sim = Sim::with_inventory(&inventory);
    let first = sim.run.spec.plan.servers[0].fqdn.to_string();
    sim.patch(&first, 0, Patch::default());
    let r = sim.report();
    assert!(r.servers.len() > 32, "{}", r.servers.len());
    let html = render_html(&r);
    let doc = parse(&html);
    let charts: Vec<_> = doc
        .descendants()
        .filter(|n| {
            n.has_tag_name("svg") && has_class(n, "timeline") && !has_class(n, "legend-svg")
        })
        .collect();
    assert_eq!(charts.len(), r.servers.len().div_ceil(16));
    let mut rows = 0;
    for c in &charts {
        let n = c
            .descendants()
            .filter(|g| g.has_tag_name("g") && has_class(g, "row"))
            .count();
        assert!((1..=16).contains(&n), "{n}");
        rows += n;
        // At A4's printable width (about 700 px for 1000 units), a picture of 16 rows is
        // shorter than A4's or Letter's printable height (about 960 px).
        let height: f64 = c.attribute("height").unwrap().parse().unwrap();
        assert!(height * 0.7 < 900.0, "{height}");
    }
    assert_eq!(rows, r.servers.len());
}

/// `varied_run` copied until it has more than `servers` servers: copy `i` has its servers,
/// pools and sites renamed with `-i`, and every copy's audit lines.
fn scaled_run(servers: usize) -> Report {
    let base = varied_run();
    let mut report = base.clone();
    report.servers.clear();
    report.pools.clear();
    report.audit.clear();
    let mut copy = 0;
    while report.servers.len() <= servers {
        let rename = |name: &str| format!("{name}-{copy}");
        report.servers.extend(base.servers.iter().map(|s| {
            let mut s = s.clone();
            s.fqdn = rename(&s.fqdn);
            s.pool = rename(&s.pool);
            s.site = format!("site{}", copy % 7);
            s
        }));
        report.pools.extend(base.pools.iter().map(|p| {
            let mut p = p.clone();
            p.fqdn = rename(&p.fqdn);
            p
        }));
        report.audit.extend(base.audit.iter().map(|a| {
            let mut a = a.clone();
            a.server = rename(&a.server);
            a
        }));
        copy += 1;
    }
    report
}

fn timeline_rows<'a>(doc: &'a roxmltree::Document<'a>) -> Vec<roxmltree::Node<'a, 'a>> {
    doc.descendants()
        .filter(|n| n.has_tag_name("g") && has_class(n, "row"))
        .collect()
}

#[test]
fn at_the_threshold_every_server_keeps_its_own_timeline_row() {
    let mut report = scaled_run(crate::html::LARGE_REPORT_SERVERS - 6);
    report.servers.truncate(crate::html::LARGE_REPORT_SERVERS);
    let html = render_html(&report);
    let doc = parse(&html);
    let rows = timeline_rows(&doc);
    assert_eq!(rows.len(), report.servers.len());
    assert!(rows.iter().all(|r| r.attribute("data-server").is_some()));
    assert!(
        !doc.descendants()
            .any(|n| n.has_tag_name("details") && has_class(&n, "pool"))
    );
}

#[test]
fn above_the_threshold_the_timeline_has_a_row_per_site_and_a_section_per_pool() {
    let report = scaled_run(crate::html::LARGE_REPORT_SERVERS);
    assert!(report.servers.len() > crate::html::LARGE_REPORT_SERVERS);
    let html = render_html(&report);
    let doc = parse(&html);
    let rows = timeline_rows(&doc);
    let mut sites: Vec<&str> = report.servers.iter().map(|s| s.site.as_str()).collect();
    sites.sort_unstable();
    sites.dedup();
    assert_eq!(rows.len(), sites.len(), "one row per site");
    for site in &sites {
        let row = rows
            .iter()
            .find(|r| r.attribute("data-site") == Some(*site))
            .unwrap_or_else(|| panic!("a row for {site}"));
        let servers = report.servers.iter().filter(|s| s.site == *site).count();
        let label: String = row.descendants().filter_map(|n| n.text()).collect();
        assert!(
            label.contains(&format!("{servers} server(s)")),
            "{site}: {label}"
        );
        let out = report
            .servers
            .iter()
            .any(|s| s.site == *site && s.outage_start_seconds.is_some());
        assert_eq!(
            row.descendants()
                .any(|n| n.has_tag_name("g") && has_class(&n, "outage")),
            out,
            "{site}"
        );
    }
    // Every server is reachable, in its pool's section; a pool with a failure is open.
    for s in &report.servers {
        let tr = doc
            .descendants()
            .find(|n| n.has_tag_name("tr") && n.attribute("data-server") == Some(s.fqdn.as_str()))
            .unwrap_or_else(|| panic!("{} in the servers table", s.fqdn));
        let section = tr
            .ancestors()
            .find(|a| a.has_tag_name("details") && has_class(a, "pool"))
            .unwrap_or_else(|| panic!("{} in a pool's section", s.fqdn));
        assert_eq!(section.attribute("data-pool"), Some(s.pool.as_str()));
        let failed = report
            .servers
            .iter()
            .any(|o| o.pool == s.pool && o.state == ServerState::Failed);
        assert_eq!(section.attribute("open").is_some(), failed, "{}", s.pool);
    }
}

#[test]
fn the_audit_trail_in_html_is_capped_with_a_pointer_to_json() {
    let shown = crate::html::AUDIT_LINES_SHOWN;
    let mut report = scaled_run(crate::html::LARGE_REPORT_SERVERS);
    let line = report.audit[0].clone();
    report.audit = vec![line; shown + 37];
    let html = render_html(&report);
    let doc = parse(&html);
    let rows = doc
        .descendants()
        .filter(|n| {
            n.has_tag_name("tr")
                && n.parent().is_some_and(|p| p.has_tag_name("tbody"))
                && n.ancestors().any(|a| has_class(&a, "audit"))
        })
        .count();
    assert_eq!(rows, shown);
    let note = doc
        .descendants()
        .find(|n| has_class(n, "audit-left-out"))
        .expect("a line saying what was left out");
    let text: String = note.descendants().filter_map(|n| n.text()).collect();
    assert!(text.starts_with("37 more line(s)"), "{text}");
    assert!(text.contains("--format json"), "{text}");
    // Under the cap nothing is left out, and nothing says so.
    report.audit.truncate(shown);
    let doc_html = render_html(&report);
    assert!(
        !parse(&doc_html)
            .descendants()
            .any(|n| has_class(&n, "audit-left-out"))
    );
}

#[test]
fn above_the_threshold_only_databases_behind_are_listed() {
    let db = |name: &str, installed: &str| sfbpatch_engine::DatabaseState {
        sql_server_fqdn: "sql1.contoso.com".into(),
        sql_instance: "rtc".into(),
        store: "user".into(),
        database: name.into(),
        installed_version: installed.into(),
        expected_version: "15.2046.553".into(),
    };
    let listed = |report: &Report| -> Vec<String> {
        let html = render_html(report);
        let doc = parse(&html);
        doc.descendants()
            .filter(|n| n.has_tag_name("tr") && n.ancestors().any(|a| has_class(&a, "databases")))
            .filter(|n| n.parent().is_some_and(|p| p.has_tag_name("tbody")))
            .map(|n| {
                n.children()
                    .nth(2)
                    .and_then(|c| c.text())
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    };
    let databases = vec![
        db("rtcxds", "15.2046.553"),
        db("rtcab", "15.2046.0"),
        db("rtcshared", "15.2046.553"),
    ];
    let mut small = varied_run();
    small.databases = databases.clone();
    assert_eq!(listed(&small), ["rtcxds", "rtcab", "rtcshared"]);
    let mut large = scaled_run(crate::html::LARGE_REPORT_SERVERS);
    large.databases = databases;
    assert_eq!(listed(&large), ["rtcab"]);
    assert!(render_html(&large).contains("databases-left-out"));
}
