//! Deployments built by hand, a sample package, and the `check` helper that plans and
//! snapshots every rendering.

use std::collections::{BTreeMap, BTreeSet};

use sfbpatch_plan::json::render_json;
use sfbpatch_plan::{
    Installer, Package, Plan, PlanPolicy, ServerPlan, plan, render_powershell, render_text,
};
use sfbpatch_topology::{
    Backend, DatabaseUpdate, Deployment, Edition, Fqdn, Machine, Pool, SourceFormat,
    SqlInstanceName, SqlInstanceStores, StoreKind,
};

pub const SHA256: &str = "3f2a9c0d5b8e4f1a6c7d9e0b2a4c6e8f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d";

pub fn fqdn(s: &str) -> Fqdn {
    Fqdn::parse(s).unwrap_or_else(|e| panic!("test FQDN '{s}': {e}"))
}

pub fn machine(s: &str) -> Machine {
    Machine {
        fqdn: fqdn(s),
        upgrade_domain: None,
        fault_domain: None,
        sfb_components: false,
    }
}

/// The package most tests plan: installer on a file share every server reads.
pub fn package() -> Package {
    Package {
        name: "Skype for Business Server 2019 cumulative update".to_string(),
        version: "7.0.2046.553".parse().unwrap(),
        installer: Installer::Server(
            r"\\files.contoso.com\updates\SkypeServerUpdateInstaller.exe".to_string(),
        ),
        sha256: SHA256.to_string(),
        schema_versions: BTreeMap::new(),
        product: None,
    }
}

/// An Enterprise Edition pool, built step by step.
pub struct Ee {
    pool: String,
    site: String,
    front_ends: Vec<String>,
    sql: String,
    instance: String,
    nodes: Vec<String>,
    always_on_primary: Option<String>,
    collocated: Vec<StoreKind>,
    mirroring: Option<String>,
}

/// An Enterprise Edition pool `pool` with two Front End servers and its back end on the
/// single SQL Server `sql` (default instance), without collocated stores.
pub fn ee(pool: &str, sql: &str) -> Ee {
    let (host, domain) = pool.split_once('.').expect("pool FQDN has a domain");
    Ee {
        pool: pool.to_string(),
        site: "Redmond".to_string(),
        front_ends: vec![
            format!("{host}-fe01.{domain}"),
            format!("{host}-fe02.{domain}"),
        ],
        sql: sql.to_string(),
        instance: String::new(),
        nodes: vec![sql.to_string()],
        always_on_primary: None,
        collocated: Vec::new(),
        mirroring: None,
    }
}

impl Ee {
    pub fn site(mut self, site: &str) -> Self {
        self.site = site.to_string();
        self
    }

    pub fn instance(mut self, instance: &str) -> Self {
        self.instance = instance.to_string();
        self
    }

    /// An AlwaysOn availability group: `sql` is the listener, `nodes` its machines, the first
    /// the primary.
    pub fn always_on(mut self, nodes: &[&str]) -> Self {
        self.nodes = nodes.iter().map(|n| n.to_string()).collect();
        self.always_on_primary = nodes.first().map(|n| n.to_string());
        self
    }

    /// Back-end machines given as they are (no AlwaysOn), e.g. none at all.
    pub fn nodes(mut self, nodes: &[&str]) -> Self {
        self.nodes = nodes.iter().map(|n| n.to_string()).collect();
        self
    }

    pub fn collocated(mut self, stores: &[StoreKind]) -> Self {
        self.collocated = stores.to_vec();
        self
    }

    pub fn mirroring(mut self, shows: &str) -> Self {
        self.mirroring = Some(shows.to_string());
        self
    }

    pub fn build(self) -> Pool {
        let collocated: BTreeSet<StoreKind> = self.collocated.iter().copied().collect();
        let mut stores: BTreeSet<StoreKind> = [StoreKind::User, StoreKind::Application].into();
        stores.extend(&collocated);
        let database_update = if collocated.is_empty() {
            DatabaseUpdate::Configured
        } else {
            DatabaseUpdate::ConfiguredExcludeCollocated
        };
        Pool {
            fqdn: fqdn(&self.pool),
            site: self.site,
            edition: Edition::Enterprise,
            machines: self.front_ends.iter().map(|m| machine(m)).collect(),
            backend: Backend {
                sql_server_fqdn: fqdn(&self.sql),
                sql_instance: SqlInstanceName::parse(&self.instance).unwrap(),
                always_on: self.always_on_primary.is_some(),
                always_on_primary: self.always_on_primary.as_deref().map(fqdn),
                machines: self.nodes.iter().map(|m| machine(m)).collect(),
                stores,
                collocated_stores: collocated,
                mirroring: self.mirroring,
            },
            database_update,
            product: None,
            paired_with: None,
            uses_stores_on: vec![fqdn(&self.sql)],
        }
    }
}

/// A Standard Edition server: its own pool, its back end the local `RTC` instance.
pub fn se(server: &str) -> Pool {
    se_in(server, "Redmond")
}

pub fn se_in(server: &str, site: &str) -> Pool {
    Pool {
        fqdn: fqdn(server),
        site: site.to_string(),
        edition: Edition::Standard,
        machines: vec![machine(server)],
        backend: Backend {
            sql_server_fqdn: fqdn(server),
            sql_instance: SqlInstanceName::parse("RTC").unwrap(),
            always_on: false,
            always_on_primary: None,
            machines: vec![machine(server)],
            stores: [
                StoreKind::User,
                StoreKind::Application,
                StoreKind::CentralManagement,
            ]
            .into(),
            collocated_stores: BTreeSet::new(),
            mirroring: None,
        },
        database_update: DatabaseUpdate::Local,
        product: None,
        paired_with: None,
        uses_stores_on: vec![fqdn(server)],
    }
}

pub fn deployment(pools: Vec<Pool>) -> Deployment {
    let sql_instances = pools
        .iter()
        .map(|p| SqlInstanceStores {
            sql_server_fqdn: p.backend.sql_server_fqdn.clone(),
            sql_instance: p.backend.sql_instance.clone(),
            stores: p.backend.stores.clone(),
            machines: p.backend.machines.clone(),
        })
        .collect();
    Deployment {
        format: SourceFormat::Inventory,
        pools,
        sql_instances,
    }
}

pub fn only(names: &[&str]) -> PlanPolicy {
    PlanPolicy {
        only: names.iter().map(|n| n.to_string()).collect(),
        ..PlanPolicy::default()
    }
}

/// Plan, and snapshot the text, PowerShell and JSON renderings as `<name>_text`,
/// `<name>_powershell` and `<name>_json`.
pub fn check(name: &str, deployment: &Deployment, package: &Package, policy: &PlanPolicy) -> Plan {
    let plan = plan(deployment, package, policy).unwrap_or_else(|e| panic!("{name}: {e}"));
    insta::with_settings!({ prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!(format!("{name}_text"), render_text(&plan));
        insta::assert_snapshot!(format!("{name}_powershell"), render_powershell(&plan));
        insta::assert_snapshot!(format!("{name}_json"), render_json(&plan));
    });
    plan
}

/// `(server, command)` of every `update-databases` step, for exact assertions.
pub fn database_updates(plan: &Plan) -> Vec<(String, Option<String>)> {
    plan.servers
        .iter()
        .filter_map(|s: &ServerPlan| {
            let step = s.find_step(sfbpatch_plan::StepId::UpdateDatabases)?;
            Some((s.fqdn.to_string(), step.command.clone()))
        })
        .collect()
}
