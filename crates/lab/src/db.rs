//! `lab.db`: the schema, the connection settings, and the rows the operations work on.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use sfbpatch_plan::{Build, ServerKind};
use sfbpatch_topology::StoreKind;

use crate::rules;

/// The layout version of `lab.db`.
pub(crate) const FORMAT: i64 = 6;

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE lab (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    format INTEGER NOT NULL,
    initial_build TEXT NOT NULL,
    speed REAL NOT NULL,
    operator TEXT NOT NULL,
    -- the virtual clock: milliseconds since the lab's creation
    now_ms INTEGER NOT NULL,
    -- the calendar instant (Unix milliseconds) that virtual time 0 stands for: the lab's
    -- creation. Every process reads dates from it, so a night stays one night across them.
    epoch_unix_ms INTEGER NOT NULL,
    -- the seed of the step durations' variance (LabOptions::variance); NULL: the table's times
    variance_seed INTEGER
);
CREATE TABLE accounts (
    account TEXT NOT NULL COLLATE NOCASE,
    grp TEXT NOT NULL,
    PRIMARY KEY (account, grp)
);
CREATE TABLE sql_instances (
    id INTEGER PRIMARY KEY,
    sql_server_fqdn TEXT NOT NULL,
    sql_server_key TEXT NOT NULL,
    instance TEXT NOT NULL,
    instance_key TEXT NOT NULL,
    -- 1 when the instance lives on a Standard Edition server's own cluster
    standard_edition INTEGER NOT NULL,
    -- comma-separated store kinds that are collocated with a pool's User store here
    collocated TEXT NOT NULL,
    -- SQL Server is down (a lab fault) until then
    down_until INTEGER,
    UNIQUE (sql_server_key, instance_key)
);
CREATE TABLE databases (
    instance_id INTEGER NOT NULL REFERENCES sql_instances(id),
    ord INTEGER NOT NULL,
    store TEXT NOT NULL,
    name TEXT NOT NULL,
    -- the build whose schema the database has, and that schema's version
    build TEXT NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (instance_id, ord)
) WITHOUT ROWID;
CREATE TABLE schemas (
    build TEXT NOT NULL,
    store TEXT NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (build, store)
) WITHOUT ROWID;
CREATE TABLE servers (
    id INTEGER PRIMARY KEY,
    fqdn TEXT NOT NULL,
    fqdn_key TEXT NOT NULL UNIQUE,
    -- standard-edition, front-end, back-end or store
    kind TEXT NOT NULL,
    -- the SQL instance whose databases the server's services use (a SQL machine: its own)
    backend_id INTEGER NOT NULL REFERENCES sql_instances(id),
    -- a Front End server's pool and its position in it (Get-CsComputer order)
    pool_id INTEGER REFERENCES pools(id),
    pool_ord INTEGER,
    upgrade_domain TEXT,
    -- what the machine has installed: IIS, the Management Shell (Core Components)
    w3svc_present INTEGER NOT NULL,
    shell_present INTEGER NOT NULL,
    -- a Front End server taken out of its pool by Invoke-CsComputerFailOver
    failed_over INTEGER NOT NULL DEFAULT 0,
    -- Skype for Business commands the machine could not run (it has no such component)
    refused_commands INTEGER NOT NULL DEFAULT 0,
    installed_build TEXT NOT NULL,
    -- the build installed before the last installer run (what a pending restart still runs)
    previous_build TEXT NOT NULL,
    installer_runs INTEGER NOT NULL,
    w3svc INTEGER NOT NULL,
    open_shells INTEGER NOT NULL,
    reboot_pending INTEGER NOT NULL,
    staged_path TEXT,
    staged_sha256 TEXT,
    unreachable_until INTEGER,
    -- an installer that outlived its session runs until then (a retry meets exit 1618)
    installer_until INTEGER,
    in_service INTEGER NOT NULL
);
CREATE INDEX servers_backend ON servers (backend_id);
-- a Front End pool's members, in order: read by every step of a Front End server
CREATE INDEX servers_pool ON servers (pool_id, pool_ord, id);
CREATE TABLE services (
    server_id INTEGER NOT NULL REFERENCES servers(id),
    ord INTEGER NOT NULL,
    name TEXT NOT NULL,
    running INTEGER NOT NULL,
    loaded_build TEXT NOT NULL,
    PRIMARY KEY (server_id, ord)
) WITHOUT ROWID;
-- when each server left service and came back
CREATE TABLE service_intervals (
    id INTEGER PRIMARY KEY,
    server_id INTEGER NOT NULL REFERENCES servers(id),
    start_ms INTEGER NOT NULL,
    end_ms INTEGER
);
CREATE INDEX service_intervals_server ON service_intervals (server_id, end_ms);
CREATE TABLE pools (
    id INTEGER PRIMARY KEY,
    fqdn TEXT NOT NULL,
    edition TEXT NOT NULL,
    -- Get-CsPoolFabricState shows missing replicas (a lab fault)
    missing_replicas INTEGER NOT NULL DEFAULT 0
);
-- Front End pool state over time: 'down' (below quorum), 'impact' (users' sessions dropped)
CREATE TABLE pool_intervals (
    id INTEGER PRIMARY KEY,
    pool_id INTEGER NOT NULL REFERENCES pools(id),
    kind TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER
);
CREATE INDEX pool_intervals_pool ON pool_intervals (pool_id, kind, end_ms);
-- Front End servers in service, each time the number changes
CREATE TABLE front_end_samples (
    pool_id INTEGER NOT NULL REFERENCES pools(id),
    at_ms INTEGER NOT NULL,
    in_service INTEGER NOT NULL
);
-- a pool's last samples: read by every step of a Front End server
CREATE INDEX front_end_samples_pool ON front_end_samples (pool_id, at_ms);
CREATE TABLE pool_members (
    pool_id INTEGER NOT NULL REFERENCES pools(id),
    server_id INTEGER NOT NULL REFERENCES servers(id),
    PRIMARY KEY (pool_id, server_id)
) WITHOUT ROWID;
CREATE INDEX pool_members_server ON pool_members (server_id);
-- when each pool's back end was unavailable
CREATE TABLE outages (
    id INTEGER PRIMARY KEY,
    pool_id INTEGER NOT NULL REFERENCES pools(id),
    start_ms INTEGER NOT NULL,
    end_ms INTEGER
);
CREATE INDEX outages_pool ON outages (pool_id, end_ms);
CREATE TABLE faults (
    id INTEGER PRIMARY KEY,
    idx INTEGER NOT NULL,
    origin TEXT NOT NULL,
    line INTEGER NOT NULL,
    server_id INTEGER NOT NULL REFERENCES servers(id),
    step TEXT NOT NULL,
    kind TEXT NOT NULL,
    -- exit code, milliseconds or shell count, by kind
    value INTEGER NOT NULL,
    -- attempts left on which the fault fires; NULL = every attempt
    remaining INTEGER,
    fired INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX faults_step ON faults (server_id, step);
-- the lock a server keeps for the controller patching it (a registry value on Windows)
CREATE TABLE server_locks (
    server_id INTEGER PRIMARY KEY REFERENCES servers(id),
    holder TEXT NOT NULL,
    -- the generation of the holder's claim on its run: calls of an older one are refused
    generation INTEGER NOT NULL DEFAULT 0,
    -- wall-clock milliseconds since the Unix epoch
    expires_at INTEGER NOT NULL
);
-- every call a controller made on a server, as the server's PowerShell operational log keeps
-- it: what, for which lock holder and generation, when, and whether the lock refused it
CREATE TABLE command_log (
    id INTEGER PRIMARY KEY,
    server_id INTEGER NOT NULL REFERENCES servers(id),
    what TEXT NOT NULL,
    holder TEXT,
    generation INTEGER,
    at_ms INTEGER NOT NULL,
    refused INTEGER NOT NULL
);
-- commands running on a server now (at a real-time speed, an operation runs between two
-- transactions): a probe of the step sees it running. `pid` is the lab process carrying it;
-- a command whose process is gone died with it (its session was cut).
CREATE TABLE running (
    id INTEGER PRIMARY KEY,
    server_id INTEGER NOT NULL REFERENCES servers(id),
    what TEXT NOT NULL,
    pid INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL
);
"#;

/// Log frames (1 KB pages) past which a lab's checkpointer restarts the log: 16 MB.
pub(crate) const RESTART_FRAMES: i64 = 16_384;

/// Opens `lab.db` with the settings every process uses: WAL, a busy timeout so that processes
/// wait for each other, `synchronous = NORMAL` (a commit survives a process crash; the last
/// commits may be lost on power loss), and a statement cache.
pub(crate) fn connect(path: &Path, create: bool) -> rusqlite::Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    if create {
        // Small pages: a step changes a few rows, and every commit writes whole pages to the
        // WAL. Only possible before the first table and before WAL mode.
        conn.pragma_update(None, "page_size", 1024)?;
    }
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Checkpoints are a checkpointer's, beside the commits (`Lab::target`); a connection
    // checkpoints itself only if the log outgrows 64 MB all the same.
    conn.pragma_update(None, "wal_autocheckpoint", 65536)?;
    // The query planner stability guarantee: a cached statement keeps its plan instead of
    // being prepared again whenever a bound value might change it (this SQLite has STAT4).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// A build number in a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct BuildCol(pub Build);

impl FromSql for BuildCol {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let s = value.as_str()?;
        s.parse()
            .map(BuildCol)
            .map_err(|e: String| FromSqlError::Other(e.into()))
    }
}

impl ToSql for BuildCol {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.to_string()))
    }
}

pub(crate) fn kind_from_str(s: &str) -> Option<ServerKind> {
    ServerKind::parse(s)
}

pub(crate) fn store_from_sql(s: &str) -> rusqlite::Result<StoreKind> {
    StoreKind::parse(s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown store kind '{s}'").into(),
        )
    })
}

/// Milliseconds in a signed column.
pub(crate) fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn now(tx: &Connection) -> rusqlite::Result<i64> {
    tx.prepare_cached("SELECT now_ms FROM lab WHERE id = 1")?
        .query_row([], |r| r.get(0))
}

/// Moves the world's clock forward to `to` (never back); returns the clock.
pub(crate) fn advance_to(tx: &Connection, to: i64) -> rusqlite::Result<i64> {
    tx.prepare_cached("UPDATE lab SET now_ms = max(now_ms, ?1) WHERE id = 1 RETURNING now_ms")?
        .query_row([to], |r| r.get(0))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Service {
    pub ord: i64,
    pub name: String,
    pub running: bool,
    pub loaded: Build,
}

/// One patched server, as the operations read and change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Server {
    pub id: i64,
    pub fqdn: String,
    pub kind: ServerKind,
    pub backend_id: i64,
    /// A Front End server's pool.
    pub pool_id: Option<i64>,
    pub upgrade_domain: Option<String>,
    pub w3svc_present: bool,
    pub shell_present: bool,
    pub failed_over: bool,
    pub refused_commands: i64,
    pub installed: Build,
    pub previous: Build,
    pub installer_runs: i64,
    pub w3svc: bool,
    pub open_shells: i64,
    pub reboot_pending: bool,
    pub staged_path: Option<String>,
    pub staged_sha256: Option<String>,
    pub unreachable_until: Option<i64>,
    /// An installer that outlived its session runs until then.
    pub installer_until: Option<i64>,
    /// As last recorded: whether the server counted as in service.
    pub in_service: bool,
    pub services: Vec<Service>,
}

impl Server {
    pub fn load(tx: &Connection, id: i64) -> rusqlite::Result<Server> {
        let mut server = tx
            .prepare_cached(
                "SELECT fqdn, kind, backend_id, installed_build, previous_build, installer_runs,
                        w3svc, open_shells, reboot_pending, staged_path, staged_sha256,
                        unreachable_until, in_service, pool_id, upgrade_domain, w3svc_present,
                        shell_present, failed_over, refused_commands, installer_until
                 FROM servers WHERE id = ?1",
            )?
            .query_row([id], |r| {
                let kind: String = r.get(1)?;
                Ok(Server {
                    id,
                    fqdn: r.get(0)?,
                    kind: kind_from_str(&kind).ok_or_else(|| {
                        rusqlite::Error::FromSqlConversionFailure(
                            1,
                            rusqlite::types::Type::Text,
                            format!("unknown server kind '{kind}'").into(),
                        )
                    })?,
                    backend_id: r.get(2)?,
                    pool_id: r.get(13)?,
                    upgrade_domain: r.get(14)?,
                    w3svc_present: r.get(15)?,
                    shell_present: r.get(16)?,
                    failed_over: r.get(17)?,
                    refused_commands: r.get(18)?,
                    installed: r.get::<_, BuildCol>(3)?.0,
                    previous: r.get::<_, BuildCol>(4)?.0,
                    installer_runs: r.get(5)?,
                    w3svc: r.get(6)?,
                    open_shells: r.get(7)?,
                    reboot_pending: r.get(8)?,
                    staged_path: r.get(9)?,
                    staged_sha256: r.get(10)?,
                    unreachable_until: r.get(11)?,
                    installer_until: r.get(19)?,
                    in_service: r.get(12)?,
                    services: Vec::new(),
                })
            })?;
        let mut stmt = tx.prepare_cached(
            "SELECT ord, name, running, loaded_build FROM services WHERE server_id = ?1 ORDER BY ord",
        )?;
        server.services = stmt
            .query_map([id], |r| {
                Ok(Service {
                    ord: r.get(0)?,
                    name: r.get(1)?,
                    running: r.get(2)?,
                    loaded: r.get::<_, BuildCol>(3)?.0,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(server)
    }

    /// Writes what changed since `before`.
    pub fn save(&self, tx: &Connection, before: &Server) -> rusqlite::Result<()> {
        if self == before {
            return Ok(());
        }
        tx.prepare_cached(
            "UPDATE servers SET installed_build = ?1, previous_build = ?2, installer_runs = ?3,
                    w3svc = ?4, open_shells = ?5, reboot_pending = ?6, staged_path = ?7,
                    staged_sha256 = ?8, unreachable_until = ?9, in_service = ?10,
                    failed_over = ?12, refused_commands = ?13, installer_until = ?14
             WHERE id = ?11",
        )?
        .execute(params![
            BuildCol(self.installed),
            BuildCol(self.previous),
            self.installer_runs,
            self.w3svc,
            self.open_shells,
            self.reboot_pending,
            self.staged_path,
            self.staged_sha256,
            self.unreachable_until,
            self.in_service,
            self.id,
            self.failed_over,
            self.refused_commands,
            self.installer_until,
        ])?;
        if self.services == before.services {
            return Ok(());
        }
        // Services usually change together: one statement when they all end up alike.
        if let Some(first) = self.services.first()
            && self
                .services
                .iter()
                .all(|s| s.running == first.running && s.loaded == first.loaded)
        {
            tx.prepare_cached(
                "UPDATE services SET running = ?1, loaded_build = ?2 WHERE server_id = ?3",
            )?
            .execute(params![first.running, BuildCol(first.loaded), self.id])?;
            return Ok(());
        }
        let mut stmt = tx.prepare_cached(
            "UPDATE services SET running = ?1, loaded_build = ?2 WHERE server_id = ?3 AND ord = ?4",
        )?;
        for (now, was) in self.services.iter().zip(&before.services) {
            if now != was {
                stmt.execute(params![now.running, BuildCol(now.loaded), self.id, now.ord])?;
            }
        }
        Ok(())
    }

    /// The build whose files are in place: a pending restart still runs the previous one.
    pub fn files_build(&self) -> Build {
        if self.reboot_pending {
            self.previous
        } else {
            self.installed
        }
    }

    /// In service: every Skype for Business service runs on the installed build, W3SVC runs
    /// where IIS is installed, and a Front End server is a member of its pool (not failed
    /// over). A SQL Server machine is in service while SQL Server runs (always, in the lab).
    pub fn consistent(&self) -> bool {
        (self.w3svc || !self.w3svc_present)
            && !self.failed_over
            && self
                .services
                .iter()
                .all(|s| s.running && s.loaded == self.installed)
    }

    pub fn running_services(&self) -> impl Iterator<Item = &Service> {
        self.services.iter().filter(|s| s.running)
    }

    /// Stops every running service; returns their names.
    pub fn stop_services(&mut self) -> Vec<String> {
        let mut stopped = Vec::new();
        for s in self.services.iter_mut().filter(|s| s.running) {
            s.running = false;
            stopped.push(s.name.clone());
        }
        stopped
    }

    /// Starts every stopped service on the build whose files are in place; running services
    /// keep what they loaded. Returns the names started.
    pub fn start_services(&mut self) -> Vec<String> {
        let build = self.files_build();
        let mut started = Vec::new();
        for s in self.services.iter_mut().filter(|s| !s.running) {
            s.running = true;
            s.loaded = build;
            started.push(s.name.clone());
        }
        started
    }

    pub fn unreachable_at(&self, now: i64) -> Option<i64> {
        self.unreachable_until.filter(|until| now < *until)
    }

    /// Until when an installer that outlived its session still runs, if it does at `now`.
    pub fn installer_running_at(&self, now: i64) -> Option<i64> {
        self.installer_until.filter(|until| now < *until)
    }
}

/// The highest build installed on a server with Skype for Business components whose
/// services use the SQL Server `sql_server_fqdn` (its pools' Front End servers, a Standard
/// Edition server, a back-end machine with the Core Components), if any.
pub(crate) fn cluster_build(
    tx: &Connection,
    sql_server_fqdn: &str,
) -> rusqlite::Result<Option<Build>> {
    let mut stmt = tx.prepare_cached(
        "SELECT s.installed_build FROM servers s JOIN sql_instances i ON i.id = s.backend_id
         WHERE i.sql_server_key = ?1 AND s.shell_present = 1",
    )?;
    let builds = stmt
        .query_map([sql_server_fqdn.to_ascii_lowercase()], |r| {
            r.get::<_, BuildCol>(0)
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(builds.into_iter().max().map(|b| b.0))
}

/// The build whose schema an instance's databases are expected to have: the highest build
/// installed on a machine of its SQL cluster, or, when no patched server is one, the highest
/// build installed anywhere.
pub(crate) fn expected_build(
    tx: &Connection,
    instance: &Instance,
    initial: Build,
) -> rusqlite::Result<Build> {
    match cluster_build(tx, &instance.sql_server_fqdn)? {
        Some(build) => Ok(build),
        None => highest_build(tx, initial),
    }
}

pub(crate) fn highest_build(tx: &Connection, initial: Build) -> rusqlite::Result<Build> {
    let mut stmt =
        tx.prepare_cached("SELECT installed_build FROM servers WHERE shell_present = 1")?;
    let builds = stmt
        .query_map([], |r| r.get::<_, BuildCol>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(builds.into_iter().max().map_or(initial, |b| b.0))
}

/// The schema version of a store at a build: what a package said for that build, else
/// [`rules::derived_schema_version`].
pub(crate) fn schema_version(
    tx: &Connection,
    store: StoreKind,
    build: Build,
) -> rusqlite::Result<String> {
    let known: Option<String> = tx
        .prepare_cached("SELECT version FROM schemas WHERE build = ?1 AND store = ?2")?
        .query_row(params![BuildCol(build), store.as_str()], |r| r.get(0))
        .optional()?;
    Ok(known.unwrap_or_else(|| rules::derived_schema_version(store, build)))
}

#[derive(Debug, Clone)]
pub(crate) struct Database {
    pub ord: i64,
    pub store: StoreKind,
    pub name: String,
    pub build: Build,
    pub version: String,
}

pub(crate) fn databases(tx: &Connection, instance_id: i64) -> rusqlite::Result<Vec<Database>> {
    let mut stmt = tx.prepare_cached(
        "SELECT ord, store, name, build, version FROM databases WHERE instance_id = ?1 ORDER BY ord",
    )?;
    stmt.query_map([instance_id], |r| {
        let store: String = r.get(1)?;
        Ok(Database {
            ord: r.get(0)?,
            store: store_from_sql(&store)?,
            name: r.get(2)?,
            build: r.get::<_, BuildCol>(3)?.0,
            version: r.get(4)?,
        })
    })?
    .collect()
}

#[derive(Debug, Clone)]
pub(crate) struct Instance {
    pub id: i64,
    pub sql_server_fqdn: String,
    pub instance: String,
    pub standard_edition: bool,
    pub collocated: Vec<StoreKind>,
}

impl Instance {
    /// `server\instance`, or just the server for the default instance.
    pub fn label(&self) -> String {
        if self.instance.is_empty() {
            self.sql_server_fqdn.clone()
        } else {
            format!("{}\\{}", self.sql_server_fqdn, self.instance)
        }
    }
}

fn instance_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Instance> {
    let collocated: String = r.get(4)?;
    Ok(Instance {
        id: r.get(0)?,
        sql_server_fqdn: r.get(1)?,
        instance: r.get(2)?,
        standard_edition: r.get(3)?,
        collocated: collocated
            .split(',')
            .filter(|s| !s.is_empty())
            .map(store_from_sql)
            .collect::<rusqlite::Result<_>>()?,
    })
}

const INSTANCE_COLUMNS: &str = "id, sql_server_fqdn, instance, standard_edition, collocated";

/// Every instance on the SQL Server (or AlwaysOn listener) `sql_server_fqdn`.
pub(crate) fn instances_on(
    tx: &Connection,
    sql_server_fqdn: &str,
) -> rusqlite::Result<Vec<Instance>> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {INSTANCE_COLUMNS} FROM sql_instances WHERE sql_server_key = ?1 ORDER BY id"
    ))?;
    stmt.query_map([sql_server_fqdn.to_ascii_lowercase()], instance_from_row)?
        .collect()
}

/// Takes every instance on `sql_server_fqdn` down until `until` (a lab fault).
pub(crate) fn set_sql_down(
    tx: &Connection,
    sql_server_fqdn: &str,
    until: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE sql_instances SET down_until = ?2 WHERE sql_server_key = ?1")?
        .execute(params![sql_server_fqdn.to_ascii_lowercase(), until])?;
    Ok(())
}

/// Until when `sql_server_fqdn` is down, if it is at `now`.
pub(crate) fn sql_down_until(
    tx: &Connection,
    sql_server_fqdn: &str,
    now: i64,
) -> rusqlite::Result<Option<i64>> {
    tx.prepare_cached(
        "SELECT max(down_until) FROM sql_instances WHERE sql_server_key = ?1 AND down_until > ?2",
    )?
    .query_row(params![sql_server_fqdn.to_ascii_lowercase(), now], |r| {
        r.get(0)
    })
}

pub(crate) fn instance_by_id(tx: &Connection, id: i64) -> rusqlite::Result<Instance> {
    tx.prepare_cached(&format!(
        "SELECT {INSTANCE_COLUMNS} FROM sql_instances WHERE id = ?1"
    ))?
    .query_row([id], instance_from_row)
}

pub(crate) fn instance_named(
    tx: &Connection,
    sql_server_fqdn: &str,
    instance: &str,
) -> rusqlite::Result<Option<Instance>> {
    tx.prepare_cached(&format!(
        "SELECT {INSTANCE_COLUMNS} FROM sql_instances WHERE sql_server_key = ?1 AND instance_key = ?2"
    ))?
    .query_row(
        [
            sql_server_fqdn.to_ascii_lowercase(),
            instance.to_ascii_lowercase(),
        ],
        instance_from_row,
    )
    .optional()
}

/// One database that is not at its expected version.
#[derive(Debug, Clone)]
pub(crate) struct Behind {
    pub instance: String,
    pub database: String,
    pub installed: String,
    pub expected: String,
}

/// Test-CsDatabase for one instance: the databases whose version differs from the expected one.
pub(crate) fn databases_behind(
    tx: &Connection,
    instance: &Instance,
    initial: Build,
) -> rusqlite::Result<(usize, Vec<Behind>)> {
    let expected_build = expected_build(tx, instance, initial)?;
    let dbs = databases(tx, instance.id)?;
    let mut behind = Vec::new();
    for db in &dbs {
        let expected = schema_version(tx, db.store, expected_build)?;
        if db.version != expected {
            behind.push(Behind {
                instance: instance.label(),
                database: db.name.clone(),
                installed: db.version.clone(),
                expected,
            });
        }
    }
    Ok((dbs.len(), behind))
}

/// Records a transition of a server in or out of service, and opens or closes its pools'
/// outage intervals. `at` is when it happened.
pub(crate) fn record_transition(
    tx: &Transaction<'_>,
    server_id: i64,
    in_service: bool,
    at: i64,
) -> rusqlite::Result<()> {
    if in_service {
        tx.prepare_cached(
            "UPDATE service_intervals SET end_ms = max(start_ms, ?2)
             WHERE server_id = ?1 AND end_ms IS NULL",
        )?
        .execute([server_id, at])?;
    } else {
        // Leaving at the instant it came back continues the same interval.
        let reopened = tx
            .prepare_cached(
                "UPDATE service_intervals SET end_ms = NULL
                 WHERE id = (SELECT id FROM service_intervals WHERE server_id = ?1
                             ORDER BY start_ms DESC, id DESC LIMIT 1)
                   AND end_ms = ?2",
            )?
            .execute([server_id, at])?;
        if reopened == 0 {
            tx.prepare_cached(
                "INSERT INTO service_intervals (server_id, start_ms) VALUES (?1, ?2)",
            )?
            .execute([server_id, at])?;
        }
    }
    let pools: Vec<i64> = tx
        .prepare_cached("SELECT pool_id FROM pool_members WHERE server_id = ?1")?
        .query_map([server_id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for pool in pools {
        // One machine: unavailable while it is out of service. Several (AlwaysOn nodes,
        // failover-cluster nodes): unavailable only while none of them is in service.
        let serving: i64 = tx
            .prepare_cached(
                "SELECT coalesce(sum(s.in_service), 0) FROM pool_members m
                 JOIN servers s ON s.id = m.server_id WHERE m.pool_id = ?1",
            )?
            .query_row([pool], |r| r.get(0))?;
        let unavailable = serving == 0;
        let open: Option<i64> = tx
            .prepare_cached("SELECT id FROM outages WHERE pool_id = ?1 AND end_ms IS NULL")?
            .query_row([pool], |r| r.get(0))
            .optional()?;
        match (unavailable, open) {
            (true, None) => {
                // Unavailable again at the instant it came back: the same outage goes on.
                let reopened = tx
                    .prepare_cached(
                        "UPDATE outages SET end_ms = NULL
                         WHERE id = (SELECT id FROM outages WHERE pool_id = ?1
                                     ORDER BY start_ms DESC, id DESC LIMIT 1)
                           AND end_ms = ?2",
                    )?
                    .execute([pool, at])?;
                if reopened == 0 {
                    tx.prepare_cached("INSERT INTO outages (pool_id, start_ms) VALUES (?1, ?2)")?
                        .execute([pool, at])?;
                }
            }
            (false, Some(id)) => {
                tx.prepare_cached("UPDATE outages SET end_ms = max(start_ms, ?2) WHERE id = ?1")?
                    .execute([id, at])?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Records that the pools whose back end is on `sql_server_fqdn` could not reach it from
/// `start` to `end` (`Install-CsDatabase` held its databases).
pub(crate) fn record_backend_outage(
    tx: &Transaction<'_>,
    sql_server_fqdn: &str,
    start: i64,
    end: i64,
) -> rusqlite::Result<()> {
    let pools: Vec<i64> = tx
        .prepare_cached(
            "SELECT DISTINCT m.pool_id FROM pool_members m JOIN servers s ON s.id = m.server_id
             JOIN sql_instances i ON i.id = s.backend_id
             WHERE i.sql_server_key = ?1 AND s.kind IN ('back-end', 'standard-edition')
               AND NOT EXISTS (SELECT 1 FROM outages o WHERE o.pool_id = m.pool_id
                               AND o.end_ms IS NULL)",
        )?
        .query_map([sql_server_fqdn.to_ascii_lowercase()], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    // A pool already out (its Standard Edition server stopped) counts that outage only.
    for pool in pools {
        tx.prepare_cached("INSERT INTO outages (pool_id, start_ms, end_ms) VALUES (?1, ?2, ?3)")?
            .execute([pool, start, end.max(start)])?;
    }
    Ok(())
}
