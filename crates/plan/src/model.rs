//! Plan types shared by the planner, the engine and every target.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};
use sfbpatch_topology::{DatabaseUpdate, Fqdn, ProductLine, SqlInstanceName, StoreKind};

/// A Skype for Business build number, `major.minor.build.revision` (e.g. `7.0.2046.553`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Build(pub [u32; 4]);

impl FromStr for Build {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() != 4 {
            return Err(format!(
                "'{s}' is not a build number like 7.0.2046.553 (four numbers separated by dots)"
            ));
        }
        let mut out = [0u32; 4];
        for (slot, part) in out.iter_mut().zip(&parts) {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) || part.len() > 9 {
                return Err(format!(
                    "'{s}' is not a build number like 7.0.2046.553 (part '{part}' is not a number)"
                ));
            }
            *slot = part.parse().expect("digits only");
        }
        Ok(Build(out))
    }
}

impl fmt::Display for Build {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a}.{b}.{c}.{d}")
    }
}

impl Serialize for Build {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Build {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where the installer comes from: three kinds, never confused with each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "location")]
pub enum Installer {
    /// A file on the controller (the machine sfbpatch runs on); a relative path is resolved
    /// against the manifest's folder when read. Targets copy it into the staging folder
    /// themselves (the SSH target over SFTP on its connection).
    Path(String),
    /// A path as the server sees it, used exactly as written: a UNC path
    /// (`\\server\share\...`) or a local path on the server (`C:\...`).
    Server(String),
    /// An `https://` URL.
    Url(String),
}

impl Installer {
    /// The location as written.
    pub fn location(&self) -> &str {
        match self {
            Installer::Path(s) | Installer::Server(s) | Installer::Url(s) => s,
        }
    }
}

/// A validated cumulative-update package manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Package {
    pub name: String,
    pub version: Build,
    pub installer: Installer,
    /// Lower-case hex SHA-256 of the installer.
    pub sha256: String,
    /// Expected schema version per store after the update (`Test-CsDatabase` ExpectedVersion).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub schema_versions: BTreeMap<StoreKind, String>,
    /// The product line the package says it updates; when absent, the line its build
    /// belongs to ([`Package::product_line`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<ProductLine>,
}

impl Package {
    /// The product line the package updates: its own statement, or the line of its build.
    pub fn product_line(&self) -> Option<ProductLine> {
        self.product
            .or_else(|| ProductLine::from_build(self.version.0))
    }
}

/// Every step sfbpatch knows, in procedure order: the seed's eleven (SPEC.md section 1) and the
/// three of the Front End pool procedure (SPEC.md section 6). Each kind of server runs the
/// subset its procedure names ([`ServerKind::procedure`]), in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StepId {
    CheckAdminRole,
    StageUpdate,
    CheckFabricState,
    Failover,
    StopCsServices,
    StopW3svc,
    CloseManagementShells,
    InstallUpdate,
    StopCsServicesGac,
    StartW3svc,
    UpdateDatabases,
    StartCsServices,
    Failback,
    Verify,
}

impl StepId {
    pub const ALL: [StepId; 14] = [
        StepId::CheckAdminRole,
        StepId::StageUpdate,
        StepId::CheckFabricState,
        StepId::Failover,
        StepId::StopCsServices,
        StepId::StopW3svc,
        StepId::CloseManagementShells,
        StepId::InstallUpdate,
        StepId::StopCsServicesGac,
        StepId::StartW3svc,
        StepId::UpdateDatabases,
        StepId::StartCsServices,
        StepId::Failback,
        StepId::Verify,
    ];

    /// The seed's eleven steps, in order: the procedure of a Standard Edition server and of an
    /// Enterprise back end.
    pub const SEED: [StepId; 11] = [
        StepId::CheckAdminRole,
        StepId::StageUpdate,
        StepId::StopCsServices,
        StepId::StopW3svc,
        StepId::CloseManagementShells,
        StepId::InstallUpdate,
        StepId::StopCsServicesGac,
        StepId::StartW3svc,
        StepId::UpdateDatabases,
        StepId::StartCsServices,
        StepId::Verify,
    ];

    /// A Front End server's procedure (SPEC.md section 6): the seed's steps 4-10 between
    /// failover and failback; the databases are the back end's. `start-cs-services` applies
    /// only without failover (a pool of one Front End server): failback starts the services.
    pub const FRONT_END: [StepId; 13] = [
        StepId::CheckAdminRole,
        StepId::StageUpdate,
        StepId::CheckFabricState,
        StepId::Failover,
        StepId::StopCsServices,
        StepId::StopW3svc,
        StepId::CloseManagementShells,
        StepId::InstallUpdate,
        StepId::StopCsServicesGac,
        StepId::StartW3svc,
        StepId::StartCsServices,
        StepId::Failback,
        StepId::Verify,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepId::CheckAdminRole => "check-admin-role",
            StepId::StageUpdate => "stage-update",
            StepId::CheckFabricState => "check-fabric-state",
            StepId::Failover => "failover",
            StepId::StopCsServices => "stop-cs-services",
            StepId::StopW3svc => "stop-w3svc",
            StepId::CloseManagementShells => "close-management-shells",
            StepId::InstallUpdate => "install-update",
            StepId::StopCsServicesGac => "stop-cs-services-gac",
            StepId::StartW3svc => "start-w3svc",
            StepId::UpdateDatabases => "update-databases",
            StepId::StartCsServices => "start-cs-services",
            StepId::Failback => "failback",
            StepId::Verify => "verify",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|id| id.as_str() == s)
    }

    /// 1-based position in the whole vocabulary ([`StepId::ALL`]): a key that names a step
    /// the same way on every kind of server (the report's legend). A step's position in one
    /// server's procedure is [`ServerPlan::number`].
    pub fn number(self) -> usize {
        self as usize + 1
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for StepId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for StepId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        StepId::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown step id '{s}'")))
    }
}

/// The typed form of what a step does. Targets act on this; [`Action::command`] renders the
/// exact PowerShell an administrator would type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum Action {
    CheckAdminRole,
    /// `Get-CsPoolFabricState -PoolFqdn <pool>` and the pool's upgrade readiness, before a Front
    /// End server of the pool leaves service.
    CheckFabricState {
        pool: Fqdn,
        /// Which readiness cmdlet the product line has.
        readiness: Readiness,
        /// With missing replicas, run `Reset-CsPoolRegistrarState -ResetType
        /// QuorumLossRecovery` first instead of stopping the pool.
        reset_missing_replicas: bool,
    },
    /// `Invoke-CsComputerFailOver -ComputerName <computer>`: move the server's routing groups to
    /// the pool's other Front End servers and take it out of the pool.
    Failover {
        computer: Fqdn,
    },
    /// `Invoke-CsComputerFailBack -ComputerName <computer>`: return the server to the pool.
    Failback {
        computer: Fqdn,
    },
    /// Copy the installer to `destination`, check its SHA-256, extract it.
    StageUpdate {
        source: Installer,
        sha256: String,
        destination: String,
    },
    StopCsServices,
    StopW3svc,
    CloseManagementShells,
    /// Run the staged installer unattended.
    InstallUpdate {
        path: String,
    },
    StartW3svc,
    /// `Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn <FQDN> [-ExcludeCollocatedStores]`
    UpdateConfiguredDatabases {
        sql_server_fqdn: Fqdn,
        exclude_collocated_stores: bool,
    },
    /// `Install-CsDatabase -Update -LocalDatabases`
    UpdateLocalDatabases,
    /// The databases are updated once, from another node of the same back end, after every
    /// node has the update.
    DatabasesUpdatedBy {
        server: Fqdn,
    },
    StartCsServices,
    /// Check databases, services and patch version against the package.
    Verify {
        build: Build,
        sql_server_fqdn: Fqdn,
        sql_instance: SqlInstanceName,
        /// False on the AlwaysOn nodes whose databases another node updates later
        /// ([`Action::DatabasesUpdatedBy`]): they check services and build only.
        check_databases: bool,
        /// True on a Standard Edition server: check its own databases
        /// (`Test-CsDatabase -LocalService`) rather than the back end's configured ones
        /// (`Test-CsDatabase -ConfiguredDatabases -SqlServerFqdn <FQDN>`).
        local_databases: bool,
        /// Check the Skype for Business services and W3SVC (false on a machine that has none).
        #[serde(default = "yes")]
        check_services: bool,
        /// A Front End server: the pool's fabric must be healthy again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fabric_pool: Option<Fqdn>,
    },
}

fn yes() -> bool {
    true
}

/// The cmdlet that tells whether a Front End pool is ready for a server to leave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Readiness {
    /// Skype for Business Server 2015: `Get-CsPoolUpgradeReadinessState`.
    PoolUpgradeReadinessState,
    /// Skype for Business Server 2019: `Get-CsUpgradeDomainInfo`.
    UpgradeDomainInfo,
}

impl Readiness {
    /// The readiness cmdlet of the product line a build belongs to (2019 builds start with 7).
    pub fn for_build(build: Build) -> Self {
        if build.0[0] >= 7 {
            Readiness::UpgradeDomainInfo
        } else {
            Readiness::PoolUpgradeReadinessState
        }
    }

    pub fn cmdlet(self) -> &'static str {
        match self {
            Readiness::PoolUpgradeReadinessState => "Get-CsPoolUpgradeReadinessState",
            Readiness::UpgradeDomainInfo => "Get-CsUpgradeDomainInfo",
        }
    }
}

impl Action {
    /// The exact PowerShell for this action; `None` when it does nothing on this server.
    /// Same as [`crate::render_command`].
    pub fn command(&self, package: &Package) -> Option<String> {
        crate::render_command(self, package)
    }
}

/// One step of one server's procedure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PlannedStep {
    pub id: StepId,
    /// The exact PowerShell; `None` when the step does nothing on this server
    /// ([`Action::DatabasesUpdatedBy`], or a step that is not applicable).
    pub command: Option<String>,
    /// Inside the server's outage window: for a Standard Edition server `stop-cs-services`
    /// through `start-cs-services`; for a Front End server `failover` through `failback`; for
    /// an Enterprise back end or a store SQL Server, `update-databases` (the time its databases
    /// are unavailable).
    pub in_outage: bool,
    /// The machine the step runs on, when not the server itself: a Front End server running
    /// the new build runs `Install-CsDatabase` for a back end without the Management Shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_on: Option<Fqdn>,
    /// Why the step does not apply to this machine (it lacks the step's object: no Skype for
    /// Business services, no IIS, no Management Shell). Such a step ends `not-applicable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_applicable: Option<String>,
    #[serde(flatten)]
    pub action: Action,
}

/// What a machine is (SPEC.md section 5), which decides its procedure.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ServerKind {
    /// Every Skype for Business service, IIS and its own SQL Express back end.
    StandardEdition,
    /// A member of an Enterprise pool: the services, IIS, Windows Fabric; no back-end databases.
    FrontEnd,
    /// A SQL Server machine of an Enterprise pool's back end (an AlwaysOn node included).
    #[serde(alias = "enterprise-backend")]
    BackEnd,
    /// A SQL Server holding Archiving, Monitoring or Persistent Chat stores but no pool's back end.
    Store,
}

impl ServerKind {
    pub const ALL: [ServerKind; 4] = [
        ServerKind::StandardEdition,
        ServerKind::FrontEnd,
        ServerKind::BackEnd,
        ServerKind::Store,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServerKind::StandardEdition => "standard-edition",
            ServerKind::FrontEnd => "front-end",
            ServerKind::BackEnd => "back-end",
            ServerKind::Store => "store",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        if s == "enterprise-backend" {
            return Some(ServerKind::BackEnd);
        }
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The steps of this kind's procedure, in order.
    pub fn procedure(self) -> &'static [StepId] {
        match self {
            ServerKind::FrontEnd => &StepId::FRONT_END,
            _ => &StepId::SEED,
        }
    }

    /// Whether this kind's outage window is time the pool's back end is unavailable: what the
    /// 30-minute rule (SPEC.md section 2) is about. A Front End server leaves service after
    /// failover, which costs users nothing.
    pub fn outage_is_backend_time(self) -> bool {
        !matches!(self, ServerKind::FrontEnd)
    }
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The procedure for one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ServerPlan {
    pub fqdn: Fqdn,
    pub pool: Fqdn,
    pub site: String,
    pub kind: ServerKind,
    pub database_update: DatabaseUpdate,
    /// The back end this server belongs to (SQL cluster FQDN and instance): servers sharing it
    /// are never in outage together.
    pub sql_server_fqdn: Fqdn,
    pub sql_instance: SqlInstanceName,
    /// A Front End server's upgrade domain (`Machine@UpgradeDomain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_domain: Option<String>,
    /// Servers that must have finished, successfully, before this one starts: every Front End
    /// server of the pools a back end serves, every server using a store SQL Server's stores.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<Fqdn>,
    pub steps: Vec<PlannedStep>,
}

impl ServerPlan {
    /// The step with this id, if the server's procedure has it.
    pub fn find_step(&self, id: StepId) -> Option<&PlannedStep> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// The step with this id; panics if the server's procedure lacks it.
    pub fn step(&self, id: StepId) -> &PlannedStep {
        self.find_step(id)
            .unwrap_or_else(|| panic!("{} has no step {id}", self.fqdn))
    }

    /// Servers that may not be in flight together share a key: the Front End servers of one
    /// pool, the machines of one back end, one Standard Edition server.
    pub fn serial_key(&self) -> String {
        match self.kind {
            ServerKind::FrontEnd => format!("pool:{}", self.pool.key()),
            _ => format!("sql:{}", self.sql_server_fqdn.key()),
        }
    }

    /// Whether the server's outage window is time its pool's users feel: a back end's
    /// databases unavailable, a Standard Edition server down, the only Front End server of a
    /// pool down. A Front End server taken out after failover costs users nothing.
    pub fn outage_costs_users(&self) -> bool {
        self.kind.outage_is_backend_time()
            || self
                .find_step(StepId::Failover)
                .is_some_and(|s| s.not_applicable.is_some())
    }

    /// 1-based position of a step in this server's procedure.
    pub fn number(&self, id: StepId) -> usize {
        self.steps
            .iter()
            .position(|s| s.id == id)
            .map_or(0, |i| i + 1)
    }
}

/// The whole plan: the package and every server's procedure, in execution order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Plan {
    pub package: Package,
    pub servers: Vec<ServerPlan>,
}

impl Plan {
    /// Every machine the plan acts on, each once, in plan order: the servers, then each
    /// machine a step runs on (`run_on`) that is not one of them (with `--only` a back end's
    /// database steps run on a Front End server of its pool that may not be in the run).
    pub fn machines(&self) -> Vec<&Fqdn> {
        let mut out: Vec<&Fqdn> = self.servers.iter().map(|s| &s.fqdn).collect();
        for host in self
            .servers
            .iter()
            .flat_map(|s| &s.steps)
            .filter_map(|st| st.run_on.as_ref())
        {
            if !out.contains(&host) {
                out.push(host);
            }
        }
        out
    }
}
