//! Hand-made deployments, packages and server plans, and helpers to drive the lab target.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sfbpatch_engine::{Probe, StepOutcome, StepRequest, Target, TargetError};
use sfbpatch_lab::{Lab, LabOptions, LabSnapshot, LabTarget, PoolSnapshot, ServerSnapshot};
use sfbpatch_plan::{
    Action, Build, Installer, Package, PlannedStep, ServerPlan, ServerRole, StepId,
};
use sfbpatch_topology::{
    Backend, DatabaseUpdate, Deployment, Edition, Fqdn, Machine, Pool, SourceFormat,
    SqlInstanceName, SqlInstanceStores, StoreKind,
};
use sha2::{Digest, Sha256};

pub const OLD: Build = Build([7, 0, 2046, 0]);
pub const NEW: Build = Build([7, 0, 2046, 553]);
pub const DESTINATION: &str =
    r"C:\ProgramData\sfbpatch\staging\7.0.2046.553\SkypeServerUpdateInstaller.exe";
/// One hour: the timeout handed to every step.
pub const TIMEOUT: u64 = 3_600_000;

pub const EE: &str = "sql1.contoso.com";
pub const EE_COLLOCATED: &str = "sql2.contoso.com";
pub const AG: &str = "ag.contoso.com";
pub const NODE1: &str = "sqlnode1.contoso.com";
pub const NODE2: &str = "sqlnode2.contoso.com";
pub const SE: &str = "se01.contoso.com";
pub const MON: &str = "mon.contoso.com";

pub fn fqdn(s: &str) -> Fqdn {
    Fqdn::parse(s).unwrap()
}

pub fn instance(s: &str) -> SqlInstanceName {
    SqlInstanceName::parse(s).unwrap()
}

fn machine(s: &str) -> Machine {
    Machine {
        fqdn: fqdn(s),
        upgrade_domain: None,
        fault_domain: None,
    }
}

fn stores(kinds: &[StoreKind]) -> BTreeSet<StoreKind> {
    kinds.iter().copied().collect()
}

#[allow(clippy::too_many_arguments)]
fn pool(
    pool_fqdn: &str,
    edition: Edition,
    front_ends: &[&str],
    sql: &str,
    sql_instance: &str,
    always_on: bool,
    backend_machines: &[&str],
    pool_stores: &[StoreKind],
    collocated: &[StoreKind],
) -> Pool {
    Pool {
        fqdn: fqdn(pool_fqdn),
        site: "Redmond".to_string(),
        edition,
        machines: front_ends.iter().map(|m| machine(m)).collect(),
        backend: Backend {
            sql_server_fqdn: fqdn(sql),
            sql_instance: instance(sql_instance),
            always_on,
            always_on_primary: always_on.then(|| fqdn(backend_machines[0])),
            machines: backend_machines.iter().map(|m| machine(m)).collect(),
            stores: stores(pool_stores),
            collocated_stores: stores(collocated),
            mirroring: None,
        },
        database_update: match (edition, collocated.is_empty()) {
            (Edition::Standard, _) => DatabaseUpdate::Local,
            (Edition::Enterprise, true) => DatabaseUpdate::Configured,
            (Edition::Enterprise, false) => DatabaseUpdate::ConfiguredExcludeCollocated,
        },
        product: None,
        paired_with: None,
    }
}

/// Four pools on five patched servers:
/// - `pool1`: Enterprise, back end `sql1\rtc` (User, Application, Central Management);
/// - `pool2`: Enterprise, back end `sql2\rtc` with collocated Archiving and Monitoring stores;
/// - `pool3`: Enterprise, AlwaysOn back end `ag` (listener) on `sqlnode1` and `sqlnode2`;
/// - `se01`: Standard Edition with its own `rtc` instance;
/// - a separate Monitoring server `mon\mon` that no patched server uses as its back end.
pub fn deployment() -> Deployment {
    use StoreKind::*;
    let pools = vec![
        pool(
            "pool1.contoso.com",
            Edition::Enterprise,
            &["fe1a.contoso.com", "fe1b.contoso.com"],
            EE,
            "rtc",
            false,
            &[EE],
            &[User, Application, CentralManagement],
            &[],
        ),
        pool(
            "pool2.contoso.com",
            Edition::Enterprise,
            &["fe2a.contoso.com"],
            EE_COLLOCATED,
            "rtc",
            false,
            &[EE_COLLOCATED],
            &[User, Application, Archiving, Monitoring],
            &[Archiving, Monitoring],
        ),
        pool(
            "pool3.contoso.com",
            Edition::Enterprise,
            &["fe3a.contoso.com"],
            AG,
            "",
            true,
            &[NODE1, NODE2],
            &[User, Application],
            &[],
        ),
        pool(
            SE,
            Edition::Standard,
            &[SE],
            SE,
            "rtc",
            false,
            &[SE],
            &[User, Application],
            &[],
        ),
    ];
    let mut sql_instances: Vec<SqlInstanceStores> = pools
        .iter()
        .map(|p| SqlInstanceStores {
            sql_server_fqdn: p.backend.sql_server_fqdn.clone(),
            sql_instance: p.backend.sql_instance.clone(),
            stores: p.backend.stores.clone(),
        })
        .collect();
    sql_instances.push(SqlInstanceStores {
        sql_server_fqdn: fqdn(MON),
        sql_instance: instance("mon"),
        stores: stores(&[Monitoring]),
    });
    Deployment {
        format: SourceFormat::Inventory,
        pools,
        sql_instances,
    }
}

/// `n` Standard Edition servers `se0000.contoso.com`...
pub fn many_standard_edition(n: usize) -> Deployment {
    let pools: Vec<Pool> = (0..n)
        .map(|i| {
            let name = format!("se{i:04}.contoso.com");
            pool(
                &name,
                Edition::Standard,
                &[&name],
                &name,
                "rtc",
                false,
                &[&name],
                &[StoreKind::User, StoreKind::Application],
                &[],
            )
        })
        .collect();
    let sql_instances = pools
        .iter()
        .map(|p| SqlInstanceStores {
            sql_server_fqdn: p.backend.sql_server_fqdn.clone(),
            sql_instance: p.backend.sql_instance.clone(),
            stores: p.backend.stores.clone(),
        })
        .collect();
    Deployment {
        format: SourceFormat::Inventory,
        pools,
        sql_instances,
    }
}

/// A lab in a temporary folder, with the package's installer file next to it.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub lab: Lab,
    pub target: LabTarget,
    pub package: Package,
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
            .unwrap()
    }

    pub fn pool(&self, name: &str) -> PoolSnapshot {
        self.show()
            .pools
            .into_iter()
            .find(|p| p.fqdn == name)
            .unwrap()
    }

    pub fn now_seconds(&self) -> f64 {
        self.lab.now().unwrap() as f64 / 1000.0
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

pub fn fixture_with(deployment: &Deployment, options: LabOptions) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let (installer, sha256) = write_installer(tmp.path());
    let lab = sfbpatch_lab::init(&tmp.path().join("lab"), deployment, &options).unwrap();
    Fixture {
        target: lab.target(),
        lab,
        package: package_for(&installer, &sha256),
        tmp,
    }
}

pub fn fixture() -> Fixture {
    fixture_with(&deployment(), LabOptions::default())
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

/// The `update-databases` action (and whether `verify` checks databases at all).
pub enum Variant {
    Configured,
    ConfiguredExcludeCollocated,
    Local,
    UpdatedBy(&'static str),
}

/// The eleven steps for one server, as the planner would give them.
pub fn server_plan(
    package: &Package,
    server: &str,
    pool: &str,
    role: ServerRole,
    (sql, sql_instance): (&str, &str),
    variant: Variant,
) -> ServerPlan {
    let (database_action, database_update, check_databases) = match variant {
        Variant::Configured => (
            Action::UpdateConfiguredDatabases {
                sql_server_fqdn: fqdn(sql),
                exclude_collocated_stores: false,
            },
            DatabaseUpdate::Configured,
            true,
        ),
        Variant::ConfiguredExcludeCollocated => (
            Action::UpdateConfiguredDatabases {
                sql_server_fqdn: fqdn(sql),
                exclude_collocated_stores: true,
            },
            DatabaseUpdate::ConfiguredExcludeCollocated,
            true,
        ),
        Variant::Local => (Action::UpdateLocalDatabases, DatabaseUpdate::Local, true),
        Variant::UpdatedBy(by) => (
            Action::DatabasesUpdatedBy { server: fqdn(by) },
            DatabaseUpdate::Configured,
            false,
        ),
    };
    // Verify checks what the server's role says, whatever the database variant.
    let local_databases = role == ServerRole::StandardEdition;
    let action = |id: StepId| match id {
        StepId::CheckAdminRole => Action::CheckAdminRole,
        StepId::StageUpdate => Action::StageUpdate {
            source: package.installer.clone(),
            sha256: package.sha256.clone(),
            destination: DESTINATION.to_string(),
        },
        StepId::StopCsServices | StepId::StopCsServicesGac => Action::StopCsServices,
        StepId::StopW3svc => Action::StopW3svc,
        StepId::CloseManagementShells => Action::CloseManagementShells,
        StepId::InstallUpdate => Action::InstallUpdate {
            path: DESTINATION.to_string(),
        },
        StepId::StartW3svc => Action::StartW3svc,
        StepId::UpdateDatabases => database_action.clone(),
        StepId::StartCsServices => Action::StartCsServices,
        StepId::Verify => Action::Verify {
            build: package.version,
            sql_server_fqdn: fqdn(sql),
            sql_instance: instance(sql_instance),
            check_databases,
            local_databases,
        },
    };
    ServerPlan {
        fqdn: fqdn(server),
        pool: fqdn(pool),
        site: "Redmond".to_string(),
        role,
        database_update,
        sql_server_fqdn: fqdn(sql),
        sql_instance: instance(sql_instance),
        steps: StepId::ALL
            .into_iter()
            .map(|id| PlannedStep {
                id,
                command: None,
                in_outage: id.in_outage(),
                action: action(id),
            })
            .collect(),
    }
}

pub fn ee_plan(f: &Fixture, variant: Variant) -> ServerPlan {
    server_plan(
        &f.package,
        EE,
        "pool1.contoso.com",
        ServerRole::EnterpriseBackend,
        (EE, "rtc"),
        variant,
    )
}

pub fn ee_collocated_plan(f: &Fixture, variant: Variant) -> ServerPlan {
    server_plan(
        &f.package,
        EE_COLLOCATED,
        "pool2.contoso.com",
        ServerRole::EnterpriseBackend,
        (EE_COLLOCATED, "rtc"),
        variant,
    )
}

pub fn se_plan(f: &Fixture, variant: Variant) -> ServerPlan {
    server_plan(
        &f.package,
        SE,
        SE,
        ServerRole::StandardEdition,
        (SE, "rtc"),
        variant,
    )
}

pub fn node_plan(f: &Fixture, node: &str, variant: Variant) -> ServerPlan {
    server_plan(
        &f.package,
        node,
        "pool3.contoso.com",
        ServerRole::EnterpriseBackend,
        (AG, ""),
        variant,
    )
}

pub fn request<'a>(f: &'a Fixture, plan: &'a ServerPlan, id: StepId) -> StepRequest<'a> {
    StepRequest {
        run_id: 1,
        server: plan,
        step: plan.step(id),
        package: &f.package,
        operator: "LAB\\sfbadmin",
        attempt: 1,
        timeout: TIMEOUT,
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

/// Runs the eleven steps in order, each expected to succeed.
pub fn run_all(f: &Fixture, plan: &ServerPlan) {
    for id in StepId::ALL {
        ok(f, plan, id);
    }
}

/// Asserts a server has the new build everywhere, after exactly one installer run.
pub fn assert_updated(f: &Fixture, name: &str) {
    let s = f.server(name);
    assert_eq!(s.installed_build, NEW, "{name}");
    assert_eq!(s.installer_runs, 1, "{name}");
    assert_eq!(s.w3svc.as_str(), "running", "{name}");
    assert_eq!(s.open_shells, 0, "{name}");
    assert!(!s.reboot_pending, "{name}");
    for svc in &s.services {
        assert_eq!(svc.state.as_str(), "running", "{name} {}", svc.name);
        assert_eq!(svc.loaded_build, NEW, "{name} {}", svc.name);
    }
}

/// The databases of one instance as (database, version, expected_version).
pub fn databases(f: &Fixture, sql: &str, sql_instance: &str) -> Vec<(String, String, String)> {
    f.show()
        .sql_instances
        .into_iter()
        .find(|i| i.sql_server_fqdn == sql && i.instance == sql_instance)
        .unwrap()
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

/// Seconds of virtual time.
pub fn minutes(m: f64) -> f64 {
    m * 60.0
}
