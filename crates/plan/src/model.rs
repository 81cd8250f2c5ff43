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

/// The eleven steps of SPEC.md section 1, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StepId {
    CheckAdminRole,
    StageUpdate,
    StopCsServices,
    StopW3svc,
    CloseManagementShells,
    InstallUpdate,
    StopCsServicesGac,
    StartW3svc,
    UpdateDatabases,
    StartCsServices,
    Verify,
}

impl StepId {
    pub const ALL: [StepId; 11] = [
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

    pub fn as_str(self) -> &'static str {
        match self {
            StepId::CheckAdminRole => "check-admin-role",
            StepId::StageUpdate => "stage-update",
            StepId::StopCsServices => "stop-cs-services",
            StepId::StopW3svc => "stop-w3svc",
            StepId::CloseManagementShells => "close-management-shells",
            StepId::InstallUpdate => "install-update",
            StepId::StopCsServicesGac => "stop-cs-services-gac",
            StepId::StartW3svc => "start-w3svc",
            StepId::UpdateDatabases => "update-databases",
            StepId::StartCsServices => "start-cs-services",
            StepId::Verify => "verify",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|id| id.as_str() == s)
    }

    /// Whether the step lies inside the outage window (`stop-cs-services` through
    /// `start-cs-services`).
    pub fn in_outage(self) -> bool {
        self >= StepId::StopCsServices && self <= StepId::StartCsServices
    }

    /// 1-based position in the procedure.
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
    },
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
    /// ([`Action::DatabasesUpdatedBy`]).
    pub command: Option<String>,
    pub in_outage: bool,
    #[serde(flatten)]
    pub action: Action,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ServerRole {
    EnterpriseBackend,
    StandardEdition,
}

impl ServerRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerRole::EnterpriseBackend => "enterprise-backend",
            ServerRole::StandardEdition => "standard-edition",
        }
    }
}

/// The procedure for one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ServerPlan {
    pub fqdn: Fqdn,
    pub pool: Fqdn,
    pub site: String,
    pub role: ServerRole,
    pub database_update: DatabaseUpdate,
    /// The back end this server belongs to (SQL cluster FQDN and instance): servers sharing it
    /// are never in outage together.
    pub sql_server_fqdn: Fqdn,
    pub sql_instance: SqlInstanceName,
    pub steps: Vec<PlannedStep>,
}

impl ServerPlan {
    pub fn step(&self, id: StepId) -> &PlannedStep {
        self.steps
            .iter()
            .find(|s| s.id == id)
            .expect("every server plan has all eleven steps")
    }
}

/// The whole plan: the package and every server's procedure, in execution order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Plan {
    pub package: Package,
    pub servers: Vec<ServerPlan>,
}
