//! The fixture deployment, its lab and the planner's plan for it, and helpers that carry steps
//! out the way the engine does: a `not_applicable` step is skipped, a step with `run_on` runs on
//! that machine (`StepRequest.host`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sfbpatch_engine::{Probe, StepOutcome, StepRequest, Target, TargetError};
use sfbpatch_lab::{
    FrontEnds, Lab, LabOptions, LabSnapshot, LabTarget, PoolSnapshot, ServerSnapshot,
};
use sfbpatch_plan::{Build, Installer, Package, Plan, PlanPolicy, ServerKind, ServerPlan, StepId};
use sfbpatch_topology::Deployment;
use sha2::{Digest, Sha256};

pub const OLD: Build = Build([7, 0, 2046, 0]);
pub const NEW: Build = Build([7, 0, 2046, 553]);
pub const DESTINATION: &str =
    r"C:\ProgramData\sfbpatch\staging\7.0.2046.553\SkypeServerUpdateInstaller.exe";
/// One hour: the timeout handed to every step.
pub const TIMEOUT: u64 = 3_600_000;

pub const POOL1: &str = "pool1.contoso.com";
pub const POOL2: &str = "pool2.contoso.com";
pub const POOL3: &str = "pool3.contoso.com";
pub const FE1A: &str = "fe1a.contoso.com";
pub const FE1B: &str = "fe1b.contoso.com";
pub const FE1C: &str = "fe1c.contoso.com";
pub const FE2A: &str = "fe2a.contoso.com";
pub const FE2B: &str = "fe2b.contoso.com";
pub const FE3A: &str = "fe3a.contoso.com";
pub const FE3B: &str = "fe3b.contoso.com";
/// pool1's back end: a SQL Server holding the User, Application and Central Management stores.
pub const EE: &str = "sql1.contoso.com";
/// pool2's back end, with Archiving and Monitoring collocated.
pub const EE_COLLOCATED: &str = "sql2.contoso.com";
/// pool3's back end: an AlwaysOn availability group (the listener) on two nodes.
pub const AG: &str = "ag.contoso.com";
pub const NODE1: &str = "sqlnode1.contoso.com";
pub const NODE2: &str = "sqlnode2.contoso.com";
pub const SE: &str = "se01.contoso.com";
/// A SQL Server holding a Monitoring store and no pool's back end.
pub const MON: &str = "mon.contoso.com";

/// The fixture deployment as an inventory:
/// - `pool1`: three Front End servers on the back end `sql1\rtc` (User, Application, CMS);
/// - `pool2`: two Front End servers on `sql2\rtc` with collocated Archiving and Monitoring;
/// - `pool3`: two Front End servers on the AlwaysOn back end `ag` (nodes `sqlnode1`, `sqlnode2`);
/// - `se01`: a Standard Edition server with its own `rtc` instance;
/// - `mon\mon`: a Monitoring store on a SQL Server of its own.
pub const INVENTORY: &str = r#"
[[site]]
name = "Redmond"

[[pool]]
fqdn = "pool1.contoso.com"
machines = [
  { fqdn = "fe1a.contoso.com", upgrade_domain = "UpgradeDomain1" },
  { fqdn = "fe1b.contoso.com", upgrade_domain = "UpgradeDomain2" },
  { fqdn = "fe1c.contoso.com", upgrade_domain = "UpgradeDomain3" },
]
backend = 'sql1.contoso.com\rtc'

[[pool]]
fqdn = "pool2.contoso.com"
machines = ["fe2a.contoso.com", "fe2b.contoso.com"]
backend = 'sql2.contoso.com\rtc'

[[pool]]
fqdn = "pool3.contoso.com"
machines = ["fe3a.contoso.com", "fe3b.contoso.com"]
backend = { sql_server = "ag.contoso.com", always_on_primary = "sqlnode1.contoso.com",
            nodes = ["sqlnode1.contoso.com", "sqlnode2.contoso.com"] }

[[pool]]
fqdn = "se01.contoso.com"
edition = "standard"

[[sql]]
fqdn = "sql1.contoso.com"
instance = "rtc"
stores = ["user", "application", "central-management"]

[[sql]]
fqdn = "sql2.contoso.com"
instance = "rtc"
stores = ["user", "application", "archiving", "monitoring"]

[[sql]]
fqdn = "mon.contoso.com"
instance = "mon"
stores = ["monitoring"]
"#;

/// The first eight of pool1's twelve routing groups, as `Get-CsPoolFabricState` lists them
/// while every server is in the pool: group `g` on servers `g`, `g + 1`, `g + 2`, its primary
/// the first of them.
pub const POOL1_ROUTING_GROUPS: &str = "  routing group 0: primary fe1a.contoso.com, 3 of 3 replicas active\n  \
     routing group 1: primary fe1b.contoso.com, 3 of 3 replicas active\n  \
     routing group 2: primary fe1c.contoso.com, 3 of 3 replicas active\n  \
     routing group 3: primary fe1a.contoso.com, 3 of 3 replicas active\n  \
     routing group 4: primary fe1b.contoso.com, 3 of 3 replicas active\n  \
     routing group 5: primary fe1c.contoso.com, 3 of 3 replicas active\n  \
     routing group 6: primary fe1a.contoso.com, 3 of 3 replicas active\n  \
     routing group 7: primary fe1b.contoso.com, 3 of 3 replicas active\n  \
     ... and 4 more";

/// Every machine of the fixture lab, in the order the lab lists them.
pub const ALL_SERVERS: [&str; 13] = [
    FE1A,
    FE1B,
    FE1C,
    EE,
    FE2A,
    FE2B,
    EE_COLLOCATED,
    FE3A,
    FE3B,
    NODE1,
    NODE2,
    SE,
    MON,
];

pub fn deployment() -> Deployment {
    load(INVENTORY)
}

/// A deployment from inventory text.
pub fn load(inventory: &str) -> Deployment {
    sfbpatch_topology::load(inventory, "inventory.toml").unwrap()
}

/// `n` Standard Edition servers `se0000.contoso.com`...
pub fn many_standard_edition(n: usize) -> Deployment {
    let mut text = String::from("[[site]]\nname = \"Redmond\"\n");
    for i in 0..n {
        text.push_str(&format!(
            "[[pool]]\nfqdn = \"se{i:04}.contoso.com\"\nedition = \"standard\"\n"
        ));
    }
    load(&text)
}

/// A lab in a temporary folder, with the package's installer file next to it, and the
/// planner's plan for the same deployment.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub lab: Lab,
    pub target: LabTarget,
    pub package: Package,
    pub deployment: Deployment,
    pub policy: PlanPolicy,
}

impl Fixture {
    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("lab")
    }

    pub fn show(&self) -> LabSnapshot {
        self.lab.show().unwrap()
    }

    pub fn server(&self, name: &str) -> ServerSnapshot {
        self.show()
            .servers
            .into_iter()
            .find(|s| s.fqdn == name)
            .unwrap_or_else(|| panic!("no server {name} in the lab"))
    }

    pub fn pool(&self, name: &str) -> PoolSnapshot {
        self.show()
            .pools
            .into_iter()
            .find(|p| p.fqdn == name)
            .unwrap_or_else(|| panic!("no pool {name} in the lab"))
    }

    pub fn front_ends(&self, pool: &str) -> FrontEnds {
        self.pool(pool)
            .front_ends
            .unwrap_or_else(|| panic!("{pool} has no Front End servers"))
    }

    pub fn now_seconds(&self) -> f64 {
        self.lab.now().unwrap() as f64 / 1000.0
    }

    /// The planner's plan for the whole deployment, with the fixture's policy.
    pub fn plan(&self) -> Plan {
        sfbpatch_plan::plan(&self.deployment, &self.package, &self.policy).unwrap()
    }

    /// The planner's procedure for one server.
    pub fn plan_for(&self, server: &str) -> ServerPlan {
        self.plan()
            .servers
            .into_iter()
            .find(|s| s.fqdn.as_str() == server)
            .unwrap_or_else(|| panic!("the plan has no server {server}"))
    }
}

pub fn write_installer(dir: &Path) -> (PathBuf, String) {
    let path = dir.join("SkypeServerUpdateInstaller.exe");
    let content = b"MZ simulated cumulative update 7.0.2046.553";
    std::fs::write(&path, content).unwrap();
    (path, hex::encode(Sha256::digest(content)))
}

pub fn package_for(installer: &Path, sha256: &str) -> Package {
    Package {
        name: "Skype for Business Server 2019 CU8 HF1".to_string(),
        version: NEW,
        installer: Installer::Path(installer.to_str().unwrap().to_string()),
        sha256: sha256.to_string(),
        schema_versions: BTreeMap::new(),
        product: None,
    }
}

/// A lab of `deployment`; the plan gets the same machines with components as the lab and
/// `reset_missing_replicas` from `policy`.
pub fn fixture_with(deployment: &Deployment, options: LabOptions) -> Fixture {
    let policy = PlanPolicy {
        sfb_components: options.sfb_components.clone(),
        ..PlanPolicy::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let (installer, sha256) = write_installer(tmp.path());
    let lab = sfbpatch_lab::init(&tmp.path().join("lab"), deployment, &options).unwrap();
    Fixture {
        target: lab.target(),
        lab,
        package: package_for(&installer, &sha256),
        deployment: deployment.clone(),
        policy,
        tmp,
    }
}

pub fn fixture() -> Fixture {
    fixture_with(&deployment(), LabOptions::default())
}

/// The fixture with the Skype for Business Core Components on these SQL Server machines, in
/// the lab and in the plan.
pub fn fixture_with_components(machines: &[&str]) -> Fixture {
    fixture_with(
        &deployment(),
        LabOptions {
            sfb_components: machines.iter().map(|m| m.to_string()).collect(),
            ..LabOptions::default()
        },
    )
}

pub fn fixture_with_faults(faults: &str) -> Fixture {
    let faults = sfbpatch_lab::parse_faults(faults, "faults.toml").unwrap();
    fixture_with(
        &deployment(),
        LabOptions {
            faults,
            ..LabOptions::default()
        },
    )
}

/// A `[[fault]]` table.
pub fn fault(server: &str, step: &str, kind: &str) -> String {
    format!("[[fault]]\nserver = \"{server}\"\nstep = \"{step}\"\n{kind}\n")
}

/// The request the engine sends for step `id` of `plan`: to the step's `run_on` machine, or
/// to the server itself.
pub fn request<'a>(f: &'a Fixture, plan: &'a ServerPlan, id: StepId) -> StepRequest<'a> {
    let step = plan.step(id);
    StepRequest {
        run_id: 1,
        server: plan,
        step,
        host: step.run_on.as_ref().unwrap_or(&plan.fqdn),
        package: &f.package,
        operator: "LAB\\sfbadmin",
        attempt: 1,
        timeout: TIMEOUT,
        at: 0,
        fence: sfbpatch_engine::Fence {
            holder: "test",
            generation: 1,
        },
    }
}

pub fn exec(f: &Fixture, plan: &ServerPlan, id: StepId) -> Result<StepOutcome, TargetError> {
    f.target.execute(&request(f, plan, id))
}

pub fn probe(f: &Fixture, plan: &ServerPlan, id: StepId) -> Result<Probe, TargetError> {
    f.target.probe(&request(f, plan, id))
}

/// Runs a step and insists on exit 0.
pub fn ok(f: &Fixture, plan: &ServerPlan, id: StepId) -> String {
    let outcome = exec(f, plan, id).unwrap_or_else(|e| panic!("{id} on {}: {e}", plan.fqdn));
    assert_eq!(
        outcome.exit_code, 0,
        "{id} on {} failed: {}",
        plan.fqdn, outcome.output
    );
    outcome.output
}

/// The steps of `plan` the engine runs, in order: those that apply to the machine.
pub fn applicable(plan: &ServerPlan) -> Vec<StepId> {
    plan.steps
        .iter()
        .filter(|s| s.not_applicable.is_none())
        .map(|s| s.id)
        .collect()
}

/// Runs every applicable step of `plan` in order, each expected to succeed; returns each
/// step's output.
pub fn run_all(f: &Fixture, plan: &ServerPlan) -> Vec<(StepId, String)> {
    applicable(plan)
        .into_iter()
        .map(|id| (id, ok(f, plan, id)))
        .collect()
}

/// Runs the applicable steps of `plan` before `stop` (exclusive).
pub fn run_until(f: &Fixture, plan: &ServerPlan, stop: StepId) {
    for id in applicable(plan).into_iter().take_while(|id| *id != stop) {
        ok(f, plan, id);
    }
}

/// Runs the applicable steps of `plan` from `start` (inclusive) to the end.
pub fn run_from(f: &Fixture, plan: &ServerPlan, start: StepId) {
    for id in applicable(plan).into_iter().skip_while(|id| *id != start) {
        ok(f, plan, id);
    }
}

/// The output of one step among [`run_all`]'s.
pub fn output_of(outputs: &[(StepId, String)], id: StepId) -> &str {
    outputs
        .iter()
        .find(|(step, _)| *step == id)
        .map(|(_, o)| o.as_str())
        .unwrap_or_else(|| panic!("{id} did not run"))
}

/// Patches every server of `pool` the planner's way: its Front End servers one at a time,
/// then its back end's machines (store servers, planned under the first pool, are left out).
pub fn patch_pool(f: &Fixture, pool: &str) {
    let plan = f.plan();
    let servers = plan
        .servers
        .iter()
        .filter(|s| s.pool.as_str() == pool && s.kind != ServerKind::Store);
    for server in servers {
        run_all(f, server);
    }
}

/// Asserts a Skype for Business server (Front End or Standard Edition) has the new build
/// everywhere, after exactly one installer run, and is back in its pool.
pub fn assert_updated(f: &Fixture, name: &str) {
    let s = f.server(name);
    assert_eq!(s.installed_build, NEW, "{name}");
    assert_eq!(s.installer_runs, 1, "{name}");
    assert_eq!(s.w3svc.as_str(), "running", "{name}");
    assert_eq!(s.open_shells, 0, "{name}");
    assert!(!s.reboot_pending, "{name}");
    assert!(!s.failed_over, "{name}");
    assert_eq!(s.refused_commands, 0, "{name}");
    assert!(!s.services.is_empty(), "{name}");
    for svc in &s.services {
        assert_eq!(svc.state.as_str(), "running", "{name} {}", svc.name);
        assert_eq!(svc.loaded_build, NEW, "{name} {}", svc.name);
    }
}

/// Asserts a SQL Server machine without the components ran nothing and refused nothing.
pub fn assert_sql_only(f: &Fixture, name: &str) {
    let s = f.server(name);
    assert!(
        matches!(s.kind, ServerKind::BackEnd | ServerKind::Store),
        "{name}"
    );
    assert!(s.services.is_empty(), "{name}");
    assert_eq!(s.w3svc.as_str(), "not installed", "{name}");
    assert_eq!(s.installer_runs, 0, "{name}");
    assert_eq!(s.refused_commands, 0, "{name}");
}

/// The databases of one instance as (database, version, expected_version).
pub fn databases(f: &Fixture, sql: &str, sql_instance: &str) -> Vec<(String, String, String)> {
    f.show()
        .sql_instances
        .into_iter()
        .find(|i| i.sql_server_fqdn == sql && i.instance == sql_instance)
        .unwrap_or_else(|| panic!("no instance {sql}\\{sql_instance}"))
        .stores
        .into_iter()
        .map(|d| (d.database, d.version, d.expected_version))
        .collect()
}

pub fn assert_databases_current(f: &Fixture, sql: &str, sql_instance: &str) {
    for (db, version, expected) in databases(f, sql, sql_instance) {
        assert_eq!(version, expected, "{sql}\\{sql_instance} {db}");
    }
}

pub fn strings(rows: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

/// Seconds of virtual time.
pub fn minutes(m: f64) -> f64 {
    m * 60.0
}
