//! The one model every reader produces, and the per-pool facts derived from it.
//!
//! [`Topology`] is close to the files: clusters, SQL instances and services with their
//! references, each carrying the [`Span`] it was read from so that derivation errors can name a
//! line. [`Deployment`] is what the rest of sfbpatch uses: one [`Pool`] per pool that has a back
//! end (Front End pools and Standard Edition servers), with the back end resolved.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::names::{Fqdn, SqlInstanceName};
use crate::product::ProductLine;

/// Which kind of file a topology came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceFormat {
    /// `Get-CsTopology -AsXml`.
    Published,
    /// A Topology Builder `.tbxml` file.
    TopologyBuilder,
    /// sfbpatch's own TOML inventory.
    Inventory,
}

/// Where in the source file an element starts (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Span {
    pub line: u32,
    pub column: u32,
}

/// A topology as read from one file, before derivation.
#[derive(Debug, Clone)]
pub struct Topology {
    pub format: SourceFormat,
    /// The file name (or other origin) the topology was read from; errors name it.
    pub origin: String,
    pub sites: Vec<Site>,
    pub clusters: Vec<Cluster>,
    pub sql_instances: Vec<SqlInstance>,
    pub services: Vec<Service>,
    /// How to reach machines remotely, where an inventory says so (XML topologies have none).
    pub connections: Vec<Connection>,
}

impl Topology {
    /// An empty topology of the given format.
    pub fn new(format: SourceFormat, origin: impl Into<String>) -> Self {
        Topology {
            format,
            origin: origin.into(),
            sites: Vec::new(),
            clusters: Vec::new(),
            sql_instances: Vec::new(),
            services: Vec::new(),
            connections: Vec::new(),
        }
    }
}

/// Connection details for one machine, from an inventory. Only read and kept here; nothing in
/// this crate connects anywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Connection {
    pub machine: Fqdn,
    /// Host name or IP address to connect to, when it differs from the machine's FQDN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<String>,
    /// The expected host key, as in a `known_hosts` line without the host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Site {
    /// The file's own identifier (`SiteId`).
    pub id: String,
    pub name: String,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    /// The file's own identifier: `site:number` for published topologies, the GUID for
    /// Topology Builder files, the FQDN for inventories.
    pub id: String,
    pub site_id: String,
    pub fqdn: Fqdn,
    pub single_machine: bool,
    pub machines: Vec<Machine>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Machine {
    pub fqdn: Fqdn,
    pub upgrade_domain: Option<String>,
    pub fault_domain: Option<String>,
    /// A SQL Server machine with the Skype for Business Core Components and Management Shell
    /// installed (inventory key `sfb_components`); published topologies do not say.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sfb_components: bool,
}

impl Machine {
    /// A machine known by its FQDN only.
    pub fn new(fqdn: Fqdn) -> Self {
        Machine {
            fqdn,
            upgrade_domain: None,
            fault_domain: None,
            sfb_components: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SqlInstance {
    /// The file's own identifier (see [`Cluster::id`]).
    pub id: String,
    /// The [`Cluster::id`] of the SQL cluster (an AlwaysOn listener for availability groups).
    pub cluster_id: String,
    pub name: SqlInstanceName,
    pub always_on_primary: Option<Fqdn>,
    /// Set when the file shows database mirroring for this instance: what it shows.
    pub mirroring: Option<String>,
    pub span: Span,
}

/// Where a service is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstalledOn {
    Cluster(String),
    SqlInstance(String),
}

#[derive(Debug, Clone)]
pub struct Service {
    /// The file's own identifier: `site:RoleName:instance` for published topologies, the GUID for
    /// Topology Builder files.
    pub id: String,
    pub role: String,
    pub site_id: String,
    pub installed_on: InstalledOn,
    pub depends_on: Vec<String>,
    /// Services this one names as its backup (`Dependency Usage="Backup"`): a Registrar's
    /// backup Registrar, which is how a topology shows pools paired for disaster recovery.
    pub backups: Vec<String>,
    /// Set when the file shows database mirroring for this store: what it shows.
    pub mirroring: Option<String>,
    /// The file's `ServiceVersion` (an inventory's `product`, as the `ServiceVersion` it
    /// means), kept as written; derivation reads it for a pool's `UserServices`.
    pub version: Option<String>,
    pub span: Span,
}

/// The database stores sfbpatch knows, by the topology role that declares them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    User,
    Application,
    CentralManagement,
    Archiving,
    Monitoring,
    PersistentChat,
    PersistentChatCompliance,
}

impl StoreKind {
    pub const ALL: [StoreKind; 7] = [
        StoreKind::User,
        StoreKind::Application,
        StoreKind::CentralManagement,
        StoreKind::Archiving,
        StoreKind::Monitoring,
        StoreKind::PersistentChat,
        StoreKind::PersistentChatCompliance,
    ];

    /// The topology role name (`UserStore`, `ArchivingStore`, ...).
    pub fn role_name(self) -> &'static str {
        match self {
            StoreKind::User => "UserStore",
            StoreKind::Application => "ApplicationStore",
            StoreKind::CentralManagement => "CentralMgmtStore",
            StoreKind::Archiving => "ArchivingStore",
            StoreKind::Monitoring => "MonitoringStore",
            StoreKind::PersistentChat => "PersistentChatStore",
            StoreKind::PersistentChatCompliance => "PersistentChatComplianceStore",
        }
    }

    pub fn from_role_name(role: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.role_name() == role)
    }

    /// The JSON/inventory spelling (`user`, `central-management`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::User => "user",
            StoreKind::Application => "application",
            StoreKind::CentralManagement => "central-management",
            StoreKind::Archiving => "archiving",
            StoreKind::Monitoring => "monitoring",
            StoreKind::PersistentChat => "persistent-chat",
            StoreKind::PersistentChatCompliance => "persistent-chat-compliance",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The databases the store holds on its SQL Server instance.
    pub fn databases(self) -> &'static [&'static str] {
        match self {
            StoreKind::User => &["rtcxds", "rtcshared", "rtcab"],
            StoreKind::Application => &["rgsconfig", "rgsdyn", "cpsdyn"],
            StoreKind::CentralManagement => &["xds", "lis"],
            StoreKind::Archiving => &["LcsLog"],
            StoreKind::Monitoring => &["LcsCDR", "QoEMetrics"],
            StoreKind::PersistentChat => &["mgc"],
            StoreKind::PersistentChatCompliance => &["mgccomp"],
        }
    }

    /// Whether a store of this kind on a pool's back-end instance counts as collocated
    /// (SPEC.md section 1: stores other than the pool's own User, Application and Central
    /// Management stores).
    pub fn is_collocatable(self) -> bool {
        !matches!(
            self,
            StoreKind::User | StoreKind::Application | StoreKind::CentralManagement
        )
    }
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Edition {
    Standard,
    Enterprise,
}

impl Edition {
    pub fn as_str(self) -> &'static str {
        match self {
            Edition::Standard => "standard",
            Edition::Enterprise => "enterprise",
        }
    }
}

impl std::fmt::Display for Edition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `update-databases` variant (SPEC.md section 1).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum DatabaseUpdate {
    /// `Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn <FQDN>`
    Configured,
    /// `... -ExcludeCollocatedStores`
    ConfiguredExcludeCollocated,
    /// `Install-CsDatabase -Update -LocalDatabases`
    Local,
}

impl DatabaseUpdate {
    pub fn as_str(self) -> &'static str {
        match self {
            DatabaseUpdate::Configured => "configured",
            DatabaseUpdate::ConfiguredExcludeCollocated => "configured-exclude-collocated",
            DatabaseUpdate::Local => "local",
        }
    }
}

impl std::fmt::Display for DatabaseUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pool's back end: the SQL Server instance its User store is installed on.
#[derive(Debug, Clone, Serialize)]
pub struct Backend {
    /// The SQL cluster's FQDN: the server, or the AlwaysOn listener.
    pub sql_server_fqdn: Fqdn,
    /// `""` for the default instance.
    pub sql_instance: SqlInstanceName,
    pub always_on: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub always_on_primary: Option<Fqdn>,
    /// The machines of the SQL cluster (one, or the AlwaysOn nodes).
    /// Listed in JSON as `machines`: the servers sfbpatch patches for this back end.
    pub machines: Vec<Machine>,
    /// Every store installed on this instance, any pool's.
    pub stores: BTreeSet<StoreKind>,
    pub collocated_stores: BTreeSet<StoreKind>,
    /// What the topology shows of database mirroring, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirroring: Option<String>,
}

/// A pool with a back end: a Front End pool (Enterprise Edition) or a Standard Edition server.
#[derive(Debug, Clone, Serialize)]
pub struct Pool {
    pub fqdn: Fqdn,
    /// The site's name.
    pub site: String,
    pub edition: Edition,
    pub machines: Vec<Machine>,
    pub backend: Backend,
    pub database_update: DatabaseUpdate,
    /// The product line its servers run, from the `ServiceVersion` of its `UserServices` (an
    /// inventory's `product`); absent when the file does not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<ProductLine>,
    /// The pool paired with this one for disaster recovery, when the topology shows it (a
    /// backup Registrar on another pool).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paired_with: Option<Fqdn>,
    /// SQL Servers (cluster FQDNs) holding stores that the pool's services depend on, its own
    /// back end included: a separate Archiving or Monitoring SQL Server shows here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uses_stores_on: Vec<Fqdn>,
}

/// Stores placed on one SQL Server instance, for the lab and for `Install-CsDatabase` semantics.
#[derive(Debug, Clone, Serialize)]
pub struct SqlInstanceStores {
    /// The SQL cluster's FQDN (the server itself when this instance lives on a Standard Edition
    /// server's own cluster).
    pub sql_server_fqdn: Fqdn,
    pub sql_instance: SqlInstanceName,
    pub stores: BTreeSet<StoreKind>,
    /// The machines of the SQL cluster.
    pub machines: Vec<Machine>,
}

/// The derived view: every pool with a back end, in file order, and every SQL instance with
/// the stores placed on it.
#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    pub format: SourceFormat,
    pub pools: Vec<Pool>,
    #[serde(skip)]
    pub sql_instances: Vec<SqlInstanceStores>,
}

impl Deployment {
    /// The pool with this FQDN (compared ignoring ASCII case).
    pub fn pool(&self, fqdn: &str) -> Option<&Pool> {
        self.pools
            .iter()
            .find(|p| p.fqdn.as_str().eq_ignore_ascii_case(fqdn))
    }

    /// The pools a machine belongs to: as a Front End or Standard Edition server, or as a
    /// machine of the pool's back end (one SQL server can serve several pools).
    pub fn pools_with_machine<'a>(&'a self, fqdn: &'a str) -> impl Iterator<Item = &'a Pool> + 'a {
        self.pools.iter().filter(move |p| {
            p.machines
                .iter()
                .chain(&p.backend.machines)
                .any(|m| m.fqdn.as_str().eq_ignore_ascii_case(fqdn))
        })
    }

    /// The stores on one SQL Server instance (FQDN compared ignoring ASCII case; `""` is the
    /// default instance).
    pub fn sql_instance(
        &self,
        sql_server_fqdn: &str,
        instance: &str,
    ) -> Option<&SqlInstanceStores> {
        self.sql_instances.iter().find(|s| {
            s.sql_server_fqdn
                .as_str()
                .eq_ignore_ascii_case(sql_server_fqdn)
                && s.sql_instance.as_str().eq_ignore_ascii_case(instance)
        })
    }
}

impl Pool {
    /// The machines the update procedure runs on: the Standard Edition server itself, or the
    /// machines of the Enterprise Edition back end.
    pub fn backend_machines(&self) -> &[Machine] {
        match self.edition {
            Edition::Standard => &self.machines,
            Edition::Enterprise => &self.backend.machines,
        }
    }
}
