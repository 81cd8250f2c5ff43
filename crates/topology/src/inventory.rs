//! sfbpatch's TOML inventory, for deployments described by hand (format: `docs/inventory.md`).
//!
//! The inventory is turned into the same model the XML readers produce: every pool becomes a
//! cluster with a `UserServices` service, every SQL Server instance a SQL instance on the cluster
//! of its server, and every store a store service on its instance, so that [`crate::derive`]
//! treats all three formats alike. Ids are the FQDNs: a cluster is its FQDN, a SQL instance
//! `fqdn` or `fqdn\instance`, a service `RoleName@` followed by its cluster or instance id.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use crate::error::{ErrorKind, TopologyError};
use crate::model::{
    Cluster, Connection, InstalledOn, Machine, Service, Site, SourceFormat, Span, SqlInstance,
    StoreKind, Topology,
};
use crate::names::{Fqdn, SqlInstanceName};
use crate::product::ProductLine;
use crate::source::{Source, excerpt};

type Result<T> = std::result::Result<T, TopologyError>;
type Value<'i> = Spanned<DeValue<'i>>;

const TOP_KEYS: &[&str] = &["site", "pool", "sql"];
const SITE_KEYS: &[&str] = &["id", "name"];
const POOL_KEYS: &[&str] = &[
    "fqdn",
    "site",
    "edition",
    "product",
    "machines",
    "backend",
    "stores_on",
];
const SQL_KEYS: &[&str] = &[
    "fqdn",
    "instance",
    "site",
    "always_on_primary",
    "nodes",
    "stores",
    "mirror",
];
const BACKEND_KEYS: &[&str] = &[
    "sql_server",
    "instance",
    "always_on_primary",
    "nodes",
    "stores",
    "mirror",
];
const MACHINE_KEYS: &[&str] = &[
    "fqdn",
    "upgrade_domain",
    "fault_domain",
    "sfb_components",
    "host",
    "port",
    "user",
    "identity_file",
    "host_key",
];
/// The instance a Standard Edition server's back end uses when the inventory does not say.
const STANDARD_EDITION_INSTANCE: &str = "rtc";
/// The stores a back end holds when the inventory does not say.
const DEFAULT_STORES: [StoreKind; 2] = [StoreKind::User, StoreKind::Application];

pub(crate) fn read(src: &Source<'_>) -> Result<Topology> {
    let doc = DeTable::parse(src.text).map_err(|e| {
        if looks_like_inventory(src.text) {
            let pos = e.span().map_or(0, |s| s.start);
            src.error_at(
                ErrorKind::Malformed,
                pos,
                format!("malformed TOML: {}", e.message()),
            )
        } else {
            unknown_format(src)
        }
    })?;
    let root = Table {
        src,
        table: doc.get_ref(),
        span: 0..0,
        what: "inventory".to_string(),
    };
    if !TOP_KEYS.iter().any(|k| root.table.get(*k).is_some()) {
        return Err(unknown_format(src));
    }
    root.only(TOP_KEYS)?;
    Reader {
        src,
        topology: Topology::new(SourceFormat::Inventory, src.origin),
        sites_declared: false,
        sql: Vec::new(),
        sql_by_key: HashMap::new(),
        pools: Vec::new(),
    }
    .read(&root)
}

fn unknown_format(src: &Source<'_>) -> TopologyError {
    src.error(
        ErrorKind::UnknownFormat,
        Span { line: 1, column: 1 },
        "not a published topology (Get-CsTopology -AsXml), a Topology Builder file (.tbxml) or \
         an sfbpatch inventory (TOML with [[pool]] tables)",
    )
}

/// Whether text that failed to parse as TOML was meant to be an inventory, so that the error
/// is a TOML syntax error rather than an unknown format.
fn looks_like_inventory(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim();
        line.starts_with('[')
            && TOP_KEYS
                .contains(&line.trim_matches(|c: char| c == '[' || c == ']' || c.is_whitespace()))
    })
}

/// One TOML table being read, with the words that name it in errors.
struct Table<'a, 'i> {
    src: &'a Source<'a>,
    table: &'a DeTable<'i>,
    span: Range<usize>,
    what: String,
}

impl<'a, 'i> Table<'a, 'i> {
    fn error(&self, kind: ErrorKind, pos: usize, message: String) -> TopologyError {
        self.src
            .error_at(kind, pos, format!("{}: {message}", self.what))
    }

    /// Rejects keys other than `allowed`: in a hand-written file an unknown key is a typo. The
    /// first unknown key in the file is named.
    fn only(&self, allowed: &[&str]) -> Result<()> {
        let unknown = self
            .table
            .iter()
            .map(|(key, _)| key)
            .filter(|key| !allowed.contains(&key.get_ref().as_ref()))
            .min_by_key(|key| key.span().start);
        match unknown {
            None => Ok(()),
            Some(key) => Err(self.error(
                ErrorKind::InvalidValue,
                key.span().start,
                format!(
                    "unknown key '{}' (expected {})",
                    excerpt(key.get_ref()),
                    allowed.join(", ")
                ),
            )),
        }
    }

    /// Names the table after its FQDN key, when that holds a valid FQDN, so that errors about
    /// its other keys say which pool, instance or machine they are about.
    fn name_by_fqdn(&mut self, key: &str, label: &str) {
        if let Some(fqdn) = self
            .get(key)
            .and_then(|v| v.get_ref().as_str())
            .and_then(|s| Fqdn::parse(s).ok())
        {
            self.what = format!("{label} {fqdn}");
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value<'i>> {
        self.table.get(key)
    }

    fn wrong_type(&self, key: &str, value: &Value<'_>, expected: &str) -> TopologyError {
        let found = value.get_ref().type_str();
        let article = if found.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        self.error(
            ErrorKind::InvalidValue,
            value.span().start,
            format!("'{key}' must be {expected}, not {article} {found}"),
        )
    }

    fn missing(&self, key: &str) -> TopologyError {
        self.error(
            ErrorKind::MissingAttribute,
            self.span.start,
            format!("missing required key '{key}'"),
        )
    }

    fn string(&self, key: &str) -> Result<Option<(&'a str, usize)>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.get_ref().as_str() {
                Some(s) => Ok(Some((s, v.span().start))),
                None => Err(self.wrong_type(key, v, "a string")),
            },
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.get_ref().as_bool() {
                Some(b) => Ok(Some(b)),
                None => Err(self.wrong_type(key, v, "true or false")),
            },
        }
    }

    fn required_string(&self, key: &str) -> Result<(&'a str, usize)> {
        self.string(key)?.ok_or_else(|| self.missing(key))
    }

    fn array(&self, key: &str) -> Result<Option<(&'a DeArray<'i>, usize)>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.get_ref().as_array() {
                Some(a) => Ok(Some((a, v.span().start))),
                None => Err(self.wrong_type(key, v, "an array")),
            },
        }
    }

    /// `[[key]]` tables of the root table.
    fn tables(&self, key: &str) -> Result<Vec<Table<'a, 'i>>> {
        let Some(value) = self.get(key) else {
            return Ok(Vec::new());
        };
        let Some(items) = value.get_ref().as_array() else {
            return Err(self.wrong_type(key, value, &format!("an array of tables ([[{key}]])")));
        };
        items
            .iter()
            .enumerate()
            .map(|(n, item)| match item.get_ref().as_table() {
                Some(table) => Ok(Table {
                    src: self.src,
                    table,
                    span: item.span(),
                    what: format!("[[{key}]] entry {}", n + 1),
                }),
                None => Err(self.wrong_type(key, item, &format!("an array of tables ([[{key}]])"))),
            })
            .collect()
    }

    fn fqdn(&self, key: &str, value: &str, pos: usize) -> Result<Fqdn> {
        Fqdn::parse(value).map_err(|e| {
            self.error(
                ErrorKind::InvalidName,
                pos,
                format!("'{key}' is not a valid FQDN '{}': {e}", excerpt(value)),
            )
        })
    }

    fn instance(&self, key: &str, value: &str, pos: usize) -> Result<SqlInstanceName> {
        SqlInstanceName::parse(value).map_err(|e| {
            self.error(
                ErrorKind::InvalidName,
                pos,
                format!(
                    "'{key}' is not a valid SQL Server instance name '{}': {e}",
                    excerpt(value)
                ),
            )
        })
    }

    fn stores(&self, key: &str) -> Result<Option<Vec<StoreKind>>> {
        let Some((items, _)) = self.array(key)? else {
            return Ok(None);
        };
        let mut stores = Vec::with_capacity(items.len());
        for item in items.iter() {
            let name = item
                .get_ref()
                .as_str()
                .ok_or_else(|| self.wrong_type(key, item, "an array of store names"))?;
            let kind = StoreKind::parse(name).ok_or_else(|| {
                let known: Vec<&str> = StoreKind::ALL.iter().map(|k| k.as_str()).collect();
                self.error(
                    ErrorKind::InvalidValue,
                    item.span().start,
                    format!(
                        "unknown store '{}' (expected {})",
                        excerpt(name),
                        known.join(", ")
                    ),
                )
            })?;
            if stores.contains(&kind) {
                return Err(self.error(
                    ErrorKind::DuplicateId,
                    item.span().start,
                    format!("store '{kind}' is listed twice"),
                ));
            }
            stores.push(kind);
        }
        Ok(Some(stores))
    }

    /// A list of machines: FQDN strings, or tables with `fqdn` and optional upgrade and fault
    /// domains and connection details.
    fn machines(
        &self,
        key: &str,
        connections: &mut Vec<Connection>,
    ) -> Result<Option<Vec<Machine>>> {
        let Some((items, _)) = self.array(key)? else {
            return Ok(None);
        };
        let mut machines = Vec::with_capacity(items.len());
        for item in items.iter() {
            let machine = match item.get_ref() {
                DeValue::String(s) => self.fqdn(key, s, item.span().start)?,
                DeValue::Table(table) => {
                    let mut entry = Table {
                        src: self.src,
                        table,
                        span: item.span(),
                        what: format!("{}: machine", self.what),
                    };
                    entry.name_by_fqdn("fqdn", &format!("{}: machine", self.what));
                    entry.only(MACHINE_KEYS)?;
                    let (fqdn, pos) = entry.required_string("fqdn")?;
                    let fqdn = entry.fqdn("fqdn", fqdn, pos)?;
                    if let Some(connection) = entry.connection(&fqdn)? {
                        connections.push(connection);
                    }
                    machines.push(Machine {
                        fqdn,
                        upgrade_domain: entry.string("upgrade_domain")?.map(|s| s.0.to_string()),
                        fault_domain: entry.string("fault_domain")?.map(|s| s.0.to_string()),
                        sfb_components: entry.boolean("sfb_components")?.unwrap_or(false),
                    });
                    continue;
                }
                _ => return Err(self.wrong_type(key, item, "an array of FQDNs or machine tables")),
            };
            machines.push(Machine::new(machine));
        }
        Ok(Some(machines))
    }

    /// The connection keys of a machine table, if any is set.
    fn connection(&self, machine: &Fqdn) -> Result<Option<Connection>> {
        let host = match self.string("host")? {
            None => None,
            Some((h, pos)) => {
                if Fqdn::parse(h).is_err() && h.parse::<IpAddr>().is_err() {
                    return Err(self.error(
                        ErrorKind::InvalidName,
                        pos,
                        format!(
                            "'host' is neither an FQDN nor an IP address '{}'",
                            excerpt(h)
                        ),
                    ));
                }
                Some(h.to_string())
            }
        };
        let port = match self.get("port") {
            None => None,
            Some(v) => {
                let port = v
                    .get_ref()
                    .as_integer()
                    .and_then(|i| u16::from_str_radix(i.as_str(), i.radix()).ok())
                    .filter(|p| *p != 0);
                match port {
                    Some(p) => Some(p),
                    None => {
                        return Err(self.error(
                            ErrorKind::InvalidValue,
                            v.span().start,
                            "'port' must be an integer from 1 to 65535".to_string(),
                        ));
                    }
                }
            }
        };
        let user = match self.string("user")? {
            None => None,
            Some((u, pos)) => {
                let valid = !u.is_empty()
                    && u.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-@\\$".contains(c));
                if !valid {
                    return Err(self.error(
                        ErrorKind::InvalidName,
                        pos,
                        format!(
                            "'user' is not a valid user name '{}' (letters, digits and . _ - @ \\ $)",
                            excerpt(u)
                        ),
                    ));
                }
                Some(u.to_string())
            }
        };
        let identity_file = self.text("identity_file")?;
        let host_key = self.text("host_key")?;
        if host.is_none()
            && port.is_none()
            && user.is_none()
            && identity_file.is_none()
            && host_key.is_none()
        {
            return Ok(None);
        }
        Ok(Some(Connection {
            machine: machine.clone(),
            host,
            port,
            user,
            identity_file,
            host_key,
            span: self.src.span(self.span.start),
        }))
    }

    /// A free-text value on one line.
    fn text(&self, key: &str) -> Result<Option<String>> {
        match self.string(key)? {
            None => Ok(None),
            Some((s, pos)) if s.is_empty() || s.chars().any(char::is_control) => Err(self.error(
                ErrorKind::InvalidValue,
                pos,
                format!("'{key}' must be non-empty text on one line"),
            )),
            Some((s, _)) => Ok(Some(s.to_string())),
        }
    }
}

/// A SQL Server instance as the inventory describes it.
struct SqlDecl {
    fqdn: Fqdn,
    instance: SqlInstanceName,
    always_on_primary: Option<Fqdn>,
    nodes: Option<Vec<Machine>>,
    stores: Vec<StoreKind>,
    mirroring: Option<String>,
    /// Site id, from `site` or from the first pool using the instance.
    site: Option<String>,
    span: Span,
}

impl SqlDecl {
    fn id(&self) -> String {
        sql_id(&self.fqdn, &self.instance)
    }
}

fn sql_id(fqdn: &Fqdn, instance: &SqlInstanceName) -> String {
    if instance.is_default() {
        fqdn.to_string()
    } else {
        format!("{fqdn}\\{}", instance.as_str())
    }
}

fn sql_key(fqdn: &Fqdn, instance: &SqlInstanceName) -> (String, String) {
    (fqdn.key(), instance.as_str().to_ascii_lowercase())
}

struct PoolDecl {
    fqdn: Fqdn,
    site: String,
    machines: Vec<Machine>,
    /// Index into `Reader::sql`.
    backend: usize,
    /// The `ServiceVersion` its `product` names.
    version: Option<String>,
    /// `stores_on`: other SQL instances whose stores its services use, with where each is named.
    stores_on: Vec<((String, String), String, Span)>,
    span: Span,
}

struct Reader<'s, 't> {
    src: &'s Source<'t>,
    topology: Topology,
    sites_declared: bool,
    sql: Vec<SqlDecl>,
    sql_by_key: HashMap<(String, String), usize>,
    pools: Vec<PoolDecl>,
}

impl Reader<'_, '_> {
    fn read(mut self, root: &Table<'_, '_>) -> Result<Topology> {
        for site in root.tables("site")? {
            self.site(&site)?;
        }
        self.sites_declared = !self.topology.sites.is_empty();
        for sql in root.tables("sql")? {
            self.sql_table(sql)?;
        }
        for pool in root.tables("pool")? {
            self.pool(pool)?;
        }
        self.build()
    }

    fn site(&mut self, table: &Table<'_, '_>) -> Result<()> {
        table.only(SITE_KEYS)?;
        let (name, name_pos) = table.required_string("name")?;
        let (id, id_pos) = table.string("id")?.unwrap_or((name, name_pos));
        if name.trim().is_empty() || id.trim().is_empty() {
            return Err(table.error(
                ErrorKind::InvalidValue,
                name_pos,
                "a site's name and id must not be empty".to_string(),
            ));
        }
        let span = self.src.span(table.span.start);
        if let Some(first) = self
            .topology
            .sites
            .iter()
            .find(|s| s.id.eq_ignore_ascii_case(id) || s.name.eq_ignore_ascii_case(name))
        {
            return Err(table.error(
                ErrorKind::DuplicateId,
                id_pos,
                format!(
                    "site '{}' is declared twice (first at line {})",
                    excerpt(name),
                    first.span.line
                ),
            ));
        }
        self.topology.sites.push(Site {
            id: id.to_string(),
            name: name.to_string(),
            span,
        });
        Ok(())
    }

    /// Resolves a `site` value to a site id: a declared site's id or name, or (when the
    /// inventory declares no sites) a site implied by the name.
    fn site_ref(&mut self, table: &Table<'_, '_>) -> Result<Option<String>> {
        let Some((name, pos)) = table.string("site")? else {
            return Ok(match self.topology.sites.as_slice() {
                [only] if self.sites_declared => Some(only.id.clone()),
                _ => None,
            });
        };
        if let Some(site) = self
            .topology
            .sites
            .iter()
            .find(|s| s.id == name || s.name.eq_ignore_ascii_case(name))
        {
            return Ok(Some(site.id.clone()));
        }
        if self.sites_declared {
            return Err(table.error(
                ErrorKind::DanglingReference,
                pos,
                format!("site '{}' is not declared by any [[site]]", excerpt(name)),
            ));
        }
        if name.trim().is_empty() {
            return Err(table.error(
                ErrorKind::InvalidValue,
                pos,
                "'site' must not be empty".to_string(),
            ));
        }
        self.topology.sites.push(Site {
            id: name.to_string(),
            name: name.to_string(),
            span: self.src.span(pos),
        });
        Ok(Some(name.to_string()))
    }

    fn sql_table(&mut self, mut table: Table<'_, '_>) -> Result<()> {
        table.name_by_fqdn("fqdn", "[[sql]]");
        table.only(SQL_KEYS)?;
        let (fqdn, pos) = table.required_string("fqdn")?;
        let fqdn = table.fqdn("fqdn", fqdn, pos)?;
        let instance = match table.string("instance")? {
            Some((name, pos)) => table.instance("instance", name, pos)?,
            None => SqlInstanceName::default_instance(),
        };
        table.what = format!("[[sql]] {}", sql_id(&fqdn, &instance));
        let stores = table
            .stores("stores")?
            .ok_or_else(|| table.missing("stores"))?;
        let site = self.site_ref(&table)?;
        self.declare(&table, fqdn, instance, stores, site)
    }

    /// Adds a SQL instance described by a `[[sql]]` table or a pool's `backend` table.
    fn declare(
        &mut self,
        table: &Table<'_, '_>,
        fqdn: Fqdn,
        instance: SqlInstanceName,
        stores: Vec<StoreKind>,
        site: Option<String>,
    ) -> Result<()> {
        let span = self.src.span(table.span.start);
        let key = sql_key(&fqdn, &instance);
        if let Some(&first) = self.sql_by_key.get(&key) {
            return Err(table.error(
                ErrorKind::DuplicateId,
                table.span.start,
                format!(
                    "SQL instance {} is described twice (first at line {}); describe it in one \
                     place, in [[sql]] or in one pool's backend",
                    sql_id(&fqdn, &instance),
                    self.sql[first].span.line
                ),
            ));
        }
        let mut connections = Vec::new();
        let nodes = table.machines("nodes", &mut connections)?;
        if nodes.as_ref().is_some_and(Vec::is_empty) {
            return Err(table.error(
                ErrorKind::InvalidValue,
                table.span.start,
                "'nodes' must not be empty".to_string(),
            ));
        }
        let always_on_primary = match table.string("always_on_primary")? {
            None => None,
            Some((primary, pos)) => {
                let primary = table.fqdn("always_on_primary", primary, pos)?;
                let Some(nodes) = &nodes else {
                    return Err(table.missing("nodes").with_hint(
                        "an AlwaysOn availability group (always_on_primary) lists its nodes",
                    ));
                };
                if !nodes.iter().any(|n| n.fqdn == primary) {
                    return Err(table.error(
                        ErrorKind::Inconsistent,
                        pos,
                        format!("always_on_primary {primary} is not one of the nodes"),
                    ));
                }
                Some(primary)
            }
        };
        let mirroring = match table.string("mirror")? {
            None => None,
            Some((mirror, pos)) => {
                let (server, name) = mirror.split_once('\\').unwrap_or((mirror, ""));
                table.fqdn("mirror", server, pos)?;
                table.instance("mirror", name, pos)?;
                let at = self.src.span(pos);
                Some(format!(
                    "{}:{}:{}: {} shows database mirroring (mirror = \"{mirror}\")",
                    self.src.origin, at.line, at.column, table.what
                ))
            }
        };
        self.topology.connections.extend(connections);
        self.sql_by_key.insert(key, self.sql.len());
        self.sql.push(SqlDecl {
            fqdn,
            instance,
            always_on_primary,
            nodes,
            stores,
            mirroring,
            site,
            span,
        });
        Ok(())
    }

    fn pool(&mut self, mut table: Table<'_, '_>) -> Result<()> {
        table.name_by_fqdn("fqdn", "pool");
        table.only(POOL_KEYS)?;
        let (fqdn, pos) = table.required_string("fqdn")?;
        let fqdn = table.fqdn("fqdn", fqdn, pos)?;
        table.what = format!("pool {fqdn}");
        let span = self.src.span(table.span.start);
        if let Some(first) = self.pools.iter().find(|p| p.fqdn == fqdn) {
            return Err(table.error(
                ErrorKind::DuplicateId,
                table.span.start,
                format!("declared twice (first at line {})", first.span.line),
            ));
        }
        let site = self
            .site_ref(&table)?
            .ok_or_else(|| table.missing("site"))?;
        let edition = match table.string("edition")? {
            None => None,
            Some(("standard", _)) => Some(true),
            Some(("enterprise", _)) => Some(false),
            Some((other, pos)) => {
                return Err(table.error(
                    ErrorKind::InvalidValue,
                    pos,
                    format!(
                        "edition '{}' is neither \"standard\" nor \"enterprise\"",
                        excerpt(other)
                    ),
                ));
            }
        };

        // The product line, kept as the ServiceVersion a published topology would show.
        let version = match table.string("product")? {
            None => None,
            Some((year, pos)) => match ProductLine::from_year(year) {
                Some(line) => Some(line.service_version().to_string()),
                None => {
                    return Err(table.error(
                        ErrorKind::InvalidValue,
                        pos,
                        format!(
                            "product '{}' is not \"2013\", \"2015\" or \"2019\"",
                            excerpt(year)
                        ),
                    ));
                }
            },
        };

        // The back end: a reference to an instance, or its description.
        let (sql_fqdn, instance, backend_table, backend_pos) = match table.get("backend") {
            None if edition == Some(true) => (
                fqdn.clone(),
                SqlInstanceName::parse(STANDARD_EDITION_INSTANCE).unwrap_or_default(),
                None,
                table.span.start,
            ),
            None => {
                return Err(table.missing("backend").with_hint(
                    "an Enterprise Edition pool names its back end; a Standard Edition server \
                     says edition = \"standard\"",
                ));
            }
            Some(value) => match value.get_ref() {
                DeValue::String(s) => {
                    let pos = value.span().start;
                    let (server, name) = s.split_once('\\').unwrap_or((s, ""));
                    (
                        table.fqdn("backend", server, pos)?,
                        table.instance("backend", name, pos)?,
                        None,
                        pos,
                    )
                }
                DeValue::Table(t) => {
                    let backend = Table {
                        src: self.src,
                        table: t,
                        span: value.span(),
                        what: format!("pool {fqdn}: backend"),
                    };
                    backend.only(BACKEND_KEYS)?;
                    let (server, pos) = backend.required_string("sql_server")?;
                    let server = backend.fqdn("sql_server", server, pos)?;
                    let instance = match backend.string("instance")? {
                        Some((name, pos)) => backend.instance("instance", name, pos)?,
                        None => SqlInstanceName::default_instance(),
                    };
                    (server, instance, Some(backend), value.span().start)
                }
                _ => {
                    return Err(table.wrong_type(
                        "backend",
                        value,
                        "a string (\"sql.example.com\" or \"sql.example.com\\\\instance\") or a table",
                    ));
                }
            },
        };
        let local = sql_fqdn == fqdn;
        match edition {
            Some(true) if !local => {
                return Err(table.error(
                    ErrorKind::Inconsistent,
                    backend_pos,
                    format!(
                        "a Standard Edition server's back end is on the server itself, not on {sql_fqdn}"
                    ),
                ));
            }
            Some(false) if local => {
                return Err(table.error(
                    ErrorKind::Inconsistent,
                    backend_pos,
                    "an Enterprise Edition pool's back end is on a SQL server of its own, not on \
                     the pool itself (use edition = \"standard\" for a Standard Edition server)"
                        .to_string(),
                ));
            }
            _ => {}
        }

        let key = sql_key(&sql_fqdn, &instance);
        let describes = backend_table.as_ref().is_some_and(|b| {
            ["always_on_primary", "nodes", "stores", "mirror"]
                .iter()
                .any(|k| b.get(k).is_some())
        });
        let backend = match self.sql_by_key.get(&key) {
            Some(&existing) if !describes => existing,
            _ => {
                let described = backend_table.unwrap_or_else(|| Table {
                    src: self.src,
                    table: table.table,
                    span: table.span.clone(),
                    what: table.what.clone(),
                });
                // A backend table may list the instance's stores; without a list, or without a
                // table, the back end holds the pool's User and Application stores.
                let stores = match described.get("sql_server") {
                    Some(_) => described.stores("stores")?,
                    None => None,
                }
                .unwrap_or_else(|| DEFAULT_STORES.to_vec());
                self.declare(&described, sql_fqdn, instance, stores, None)?;
                self.sql.len() - 1
            }
        };
        let decl = &mut self.sql[backend];
        if !decl.stores.contains(&StoreKind::User) {
            return Err(table.error(
                ErrorKind::NoUserStore,
                backend_pos,
                format!("its back end {} holds no user store", decl.id()),
            ));
        }
        if decl.site.is_none() {
            decl.site = Some(site.clone());
        }

        let mut connections = Vec::new();
        let machines = table.machines("machines", &mut connections)?;
        let machines = match (local, machines) {
            (true, None) => vec![Machine::new(fqdn.clone())],
            (true, Some(machines)) => {
                if !matches!(machines.as_slice(), [only] if only.fqdn == fqdn) {
                    return Err(table.error(
                        ErrorKind::Inconsistent,
                        table.span.start,
                        format!(
                            "a Standard Edition server is one machine, {fqdn} itself; \
                             'machines' lists {} machine(s)",
                            machines.len()
                        ),
                    ));
                }
                machines
            }
            (false, None) => return Err(table.missing("machines")),
            (false, Some(machines)) if machines.is_empty() => {
                return Err(table.error(
                    ErrorKind::InvalidValue,
                    table.span.start,
                    "'machines' must not be empty".to_string(),
                ));
            }
            (false, Some(machines)) => machines,
        };
        let mut stores_on = Vec::new();
        if let Some((list, _)) = table.array("stores_on")? {
            for value in list.iter() {
                let at = value.span().start;
                let DeValue::String(name) = value.get_ref() else {
                    return Err(table.error(
                        ErrorKind::InvalidValue,
                        at,
                        "'stores_on' lists SQL instances by name: \"fqdn\" or 'fqdn\\instance'"
                            .to_string(),
                    ));
                };
                let (server, instance) = name.split_once('\\').unwrap_or((name, ""));
                let server = table.fqdn("stores_on", server, at)?;
                let instance = table.instance("stores_on", instance, at)?;
                stores_on.push((
                    sql_key(&server, &instance),
                    name.to_string(),
                    self.src.span(at),
                ));
            }
        }
        self.topology.connections.extend(connections);
        self.pools.push(PoolDecl {
            fqdn,
            site,
            machines,
            backend,
            version,
            stores_on,
            span,
        });
        Ok(())
    }

    /// Turns the declarations into clusters, SQL instances and services.
    fn build(mut self) -> Result<Topology> {
        let t = &mut self.topology;
        let mut clusters: HashMap<String, usize> = HashMap::new();
        for pool in &self.pools {
            clusters.insert(pool.fqdn.key(), t.clusters.len());
            t.clusters.push(Cluster {
                id: pool.fqdn.to_string(),
                site_id: pool.site.clone(),
                fqdn: pool.fqdn.clone(),
                single_machine: self.sql[pool.backend].fqdn == pool.fqdn,
                machines: pool.machines.clone(),
                span: pool.span,
            });
        }
        if t.sites.is_empty() && !self.sql.is_empty() {
            t.sites.push(Site {
                id: "Default".to_string(),
                name: "Default".to_string(),
                span: Span { line: 1, column: 1 },
            });
        }
        for decl in &self.sql {
            let site = decl.site.clone().unwrap_or_else(|| t.sites[0].id.clone());
            let nodes = decl
                .nodes
                .clone()
                .unwrap_or_else(|| vec![Machine::new(decl.fqdn.clone())]);
            let cluster = match clusters.get(&decl.fqdn.key()) {
                Some(&c) => {
                    let existing = &t.clusters[c];
                    if decl.nodes.is_some() && existing.machines != nodes {
                        return Err(self.src.error(
                            ErrorKind::Inconsistent,
                            decl.span,
                            format!(
                                "SQL instance {}: its nodes differ from the machines of {} at line {}",
                                decl.id(),
                                existing.fqdn,
                                existing.span.line
                            ),
                        ));
                    }
                    c
                }
                None => {
                    clusters.insert(decl.fqdn.key(), t.clusters.len());
                    t.clusters.push(Cluster {
                        id: decl.fqdn.to_string(),
                        site_id: site,
                        fqdn: decl.fqdn.clone(),
                        single_machine: decl.nodes.is_none(),
                        machines: nodes,
                        span: decl.span,
                    });
                    t.clusters.len() - 1
                }
            };
            let cluster = &t.clusters[cluster];
            let id = decl.id();
            for store in &decl.stores {
                t.services.push(Service {
                    id: format!("{}@{id}", store.role_name()),
                    role: store.role_name().to_string(),
                    site_id: cluster.site_id.clone(),
                    installed_on: InstalledOn::SqlInstance(id.clone()),
                    depends_on: Vec::new(),
                    backups: Vec::new(),
                    mirroring: None,
                    version: None,
                    span: decl.span,
                });
            }
            t.sql_instances.push(SqlInstance {
                cluster_id: cluster.id.clone(),
                id,
                name: decl.instance.clone(),
                always_on_primary: decl.always_on_primary.clone(),
                mirroring: decl.mirroring.clone(),
                span: decl.span,
            });
        }
        for pool in &self.pools {
            let mut depends_on = vec![format!(
                "{}@{}",
                StoreKind::User.role_name(),
                self.sql[pool.backend].id()
            )];
            for (key, name, span) in &pool.stores_on {
                let Some(&i) = self.sql_by_key.get(key) else {
                    return Err(self.src.error(
                        ErrorKind::Inconsistent,
                        *span,
                        format!(
                            "pool {}: stores_on names SQL instance '{name}', which no [[sql]] \
                             table or backend describes",
                            pool.fqdn
                        ),
                    ));
                };
                let decl = &self.sql[i];
                depends_on.extend(
                    decl.stores
                        .iter()
                        .map(|store| format!("{}@{}", store.role_name(), decl.id())),
                );
            }
            t.services.push(Service {
                id: format!("UserServices@{}", pool.fqdn),
                role: "UserServices".to_string(),
                site_id: pool.site.clone(),
                installed_on: InstalledOn::Cluster(pool.fqdn.to_string()),
                depends_on,
                backups: Vec::new(),
                mirroring: None,
                version: pool.version.clone(),
                span: pool.span,
            });
        }
        Ok(self.topology)
    }
}
