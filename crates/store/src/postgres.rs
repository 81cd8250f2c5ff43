//! The PostgreSQL store, for teams that keep state on a shared server. Same schema and the same
//! guarantees as the SQLite store: every write is one transaction and returns once committed
//! (the session never runs with `synchronous_commit = off`), the journal and the audit log are
//! append-only by trigger, and a lease is taken by one atomic upsert, so two processes racing for
//! a pool cannot both win.
//!
//! Tables live in one schema: the first existing schema on the connection's `search_path`
//! (normally `public`), the one named by `options=-csearch_path%3DNAME` in the URL, or the one
//! given to [`PgStore::open_with_schema`].

use std::cell::RefCell;
use std::fmt::Write as _;
use std::time::Duration;

use postgres::types::FromSql;
use postgres::{Client, Config, NoTls, Row};
use sfbpatch_engine::{
    AuditEntry, Durability, JournalEntry, Lease, Millis, Record, RunId, RunRecord, RunSpec,
    RunState, Scope, StepResultKind, StepStat, StopRequest, Store, StoreError,
};
use sfbpatch_plan::{ServerKind, StepId};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{SCHEMA_VERSION, corrupt, run_record};

/// Created in one transaction when the schema has no `meta` table yet. `audit.output` is bytes
/// because PostgreSQL text cannot hold NUL, which command output (UTF-16 read as UTF-8) can.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id BIGSERIAL PRIMARY KEY,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    seq BIGSERIAL PRIMARY KEY,
    run BIGINT NOT NULL REFERENCES runs(id),
    server TEXT NOT NULL,
    at BIGINT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_by_run ON journal(run, seq);
CREATE TABLE IF NOT EXISTS audit (
    id BIGSERIAL PRIMARY KEY,
    run BIGINT NOT NULL REFERENCES runs(id),
    at BIGINT NOT NULL,
    operator TEXT NOT NULL,
    server TEXT NOT NULL,
    step TEXT NOT NULL,
    command TEXT,
    exit_code INTEGER,
    output BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_run ON audit(run, id);
CREATE TABLE IF NOT EXISTS step_durations (
    run BIGINT NOT NULL,
    role TEXT NOT NULL,
    step TEXT NOT NULL,
    duration_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS step_durations_by_role ON step_durations(role, step);
CREATE TABLE IF NOT EXISTS step_totals (
    role TEXT NOT NULL,
    step TEXT NOT NULL,
    run BIGINT NOT NULL,
    samples BIGINT NOT NULL,
    total_ms BIGINT NOT NULL,
    PRIMARY KEY (role, step, run)
);
CREATE TABLE IF NOT EXISTS leases (
    pool TEXT PRIMARY KEY,
    run BIGINT NOT NULL,
    holder TEXT NOT NULL,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE OR REPLACE FUNCTION sfbpatch_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the % is append-only', TG_ARGV[0];
END
$$;
DROP TRIGGER IF EXISTS journal_append_only ON journal;
CREATE TRIGGER journal_append_only BEFORE UPDATE OR DELETE ON journal
    FOR EACH ROW EXECUTE FUNCTION sfbpatch_append_only('journal');
DROP TRIGGER IF EXISTS journal_append_only_truncate ON journal;
CREATE TRIGGER journal_append_only_truncate BEFORE TRUNCATE ON journal
    FOR EACH STATEMENT EXECUTE FUNCTION sfbpatch_append_only('journal');
DROP TRIGGER IF EXISTS audit_append_only ON audit;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION sfbpatch_append_only('audit log');
DROP TRIGGER IF EXISTS audit_append_only_truncate ON audit;
CREATE TRIGGER audit_append_only_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION sfbpatch_append_only('audit log');
"#;

/// Added after schema 1 was released; created on every open, so that older stores get it.
const HOST_KEYS: &str = r#"
CREATE TABLE IF NOT EXISTS host_keys (
    server TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL
);
"#;

/// Migration "stop requests" (added after the first release): the table where a stop asked
/// from outside the controller (`sfbpatch serve`) is kept, one row per run. Created when a
/// controller opens a store without it; a store opened only to read goes without.
const STOP_REQUESTS: &str = r#"
CREATE TABLE IF NOT EXISTS stop_requests (
    run BIGINT PRIMARY KEY REFERENCES runs(id),
    generation BIGINT NOT NULL,
    requested_by TEXT NOT NULL,
    at BIGINT NOT NULL
);
"#;

/// Columns added after the first release: (table, column, declaration). Added when a
/// controller opens a store created before them; a store opened only to read goes without.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("leases", "instance", "TEXT NOT NULL DEFAULT ''"),
    ("leases", "generation", "BIGINT NOT NULL DEFAULT 0"),
    ("runs", "generation", "BIGINT NOT NULL DEFAULT 0"),
    ("runs", "controller", "TEXT NOT NULL DEFAULT ''"),
];

/// The columns a lease is read from (a store read without its added columns: no instance,
/// generation 0).
const LEASE_COLUMNS: &str = "pool, run, holder, host, pid, expires_at, instance, generation";
const LEASE_COLUMNS_V1: &str = "pool, run, holder, host, pid, expires_at, '', 0::BIGINT";

/// Serializes schema creation and upgrades between processes opening the same database.
const SCHEMA_LOCK: i64 = i64::from_be_bytes(*b"sfbpatch");

/// Applied unless the connection string sets `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct PgStore {
    /// `Store` reads through `&self`; queries need `&mut Client`.
    client: RefCell<Client>,
    location: String,
    /// How to connect again when the server went away (a restart, a failover).
    config: Config,
    tls: Option<MakeRustlsConnect>,
    schema: Option<String>,
    /// Whether opening may create the schema (false: read earlier runs only, no DDL).
    create: bool,
    lease_columns: &'static str,
    /// The run this handle controls and the generation it claimed ([`Store::claim_run`]).
    fence: Option<(RunId, u64)>,
    /// What [`Store::set_durability`] asked; set again on a new connection.
    durability: Durability,
}

/// Connects with TLS, or without for `sslmode=disable`.
fn connect_with(
    config: &Config,
    tls: &Option<MakeRustlsConnect>,
) -> Result<Client, postgres::Error> {
    match tls {
        Some(tls) => config.connect(tls.clone()),
        None => config.connect(NoTls),
    }
}

/// A server's answer is a query error, unless it says the session is ending or cannot be had
/// now (SQLSTATE class 08, or 57P01-57P03: an administrator's shutdown or
/// `pg_terminate_backend`, a crash, a server still starting, as a restart or failover sends);
/// those and anything else (a closed connection, I/O, a timeout) mean the server cannot be
/// reached now.
fn q(e: postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) if !session_lost(db.code().code()) => StoreError::Query(describe(&e)),
        _ => StoreError::Unavailable(describe(&e)),
    }
}

fn session_lost(sqlstate: &str) -> bool {
    sqlstate.starts_with("08") || matches!(sqlstate, "57P01" | "57P02" | "57P03")
}

/// The error with its causes: `postgres::Error`'s `Display` names only the kind of failure.
fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.to_string();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

fn col<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> Result<T, StoreError> {
    row.try_get(idx).map_err(q)
}

impl PgStore {
    /// Connect to the database named by `conninfo` (a `postgres://` URL or `key=value` pairs)
    /// and create the schema in it if needed. TLS as `sslmode` asks (see `tls.rs`).
    pub fn open(conninfo: &str) -> Result<Self, StoreError> {
        Self::connect(conninfo, None, true)
    }

    /// As [`PgStore::open`], keeping the tables in `schema`, which is created if needed.
    pub fn open_with_schema(conninfo: &str, schema: &str) -> Result<Self, StoreError> {
        Self::connect(conninfo, Some(schema), true)
    }

    /// The store of earlier runs, opened without any DDL (a role that may only read can run
    /// `status` and `report`); a database without a store is refused
    /// ([`StoreError::NoStore`]).
    pub fn open_existing(conninfo: &str) -> Result<Self, StoreError> {
        Self::connect(conninfo, None, false)
    }

    fn connect(conninfo: &str, schema: Option<&str>, create: bool) -> Result<Self, StoreError> {
        let mut location = redact(conninfo);
        if let Some(schema) = schema {
            let _ = write!(location, " (schema {schema})");
        }
        let open_err = |reason: String| StoreError::Open {
            location: location.clone(),
            reason,
        };
        if let Some(schema) = schema
            && (schema.is_empty() || schema.len() > 63 || schema.contains('\0'))
        {
            return Err(open_err(format!("'{schema}' is not a valid schema name")));
        }
        let (tls, conninfo) = crate::tls::split(conninfo).map_err(open_err)?;
        let mut config: Config = conninfo.parse().map_err(|e| open_err(describe(&e)))?;
        config.ssl_mode(tls.ssl_mode());
        let connector = tls.connector().map_err(open_err)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("sfbpatch");
        }
        let mut client = connect_with(&config, &connector).map_err(|e| {
            let mut reason = format!("{}: {}", endpoints(&config), describe(&e));
            if tls == crate::tls::Tls::Disable && reason.contains("no encryption") {
                reason.push_str(" (the server accepts only TLS connections: drop sslmode=disable)");
            }
            open_err(reason)
        })?;
        let complete = prepare(&mut client, schema, &location, create)?;
        Ok(PgStore {
            client: RefCell::new(client),
            location,
            config,
            tls: connector,
            schema: schema.map(str::to_string),
            create,
            lease_columns: if complete {
                LEASE_COLUMNS
            } else {
                LEASE_COLUMNS_V1
            },
            fence: None,
            durability: Durability::PowerLoss,
        })
    }

    /// The connection, made again first if the server closed it (a restart, a failover):
    /// the error that showed it closed reached the caller, who retries.
    fn conn(&self) -> Result<std::cell::RefMut<'_, Client>, StoreError> {
        let mut client = self.client.borrow_mut();
        if client.is_closed() {
            let mut fresh = connect_with(&self.config, &self.tls).map_err(|e| {
                StoreError::Unavailable(format!(
                    "{}: connecting again: {}",
                    self.location,
                    describe(&e)
                ))
            })?;
            prepare(
                &mut fresh,
                self.schema.as_deref(),
                &self.location,
                self.create,
            )
            .and_then(|_| apply_durability(&mut fresh, self.durability))
            .map_err(|e| {
                StoreError::Unavailable(format!("{}: connecting again: {e}", self.location))
            })?;
            *client = fresh;
        }
        Ok(client)
    }
}

/// `synchronous_commit` for `durability`: `on` waits for the commit's WAL to be flushed, `off`
/// returns once the server has it (a crash of the server may lose the last ~0.6 s of commits,
/// a crash of the controller loses nothing).
fn apply_durability(client: &mut Client, durability: Durability) -> Result<(), StoreError> {
    let value = match durability {
        Durability::PowerLoss => "on",
        Durability::ProcessCrash => "off",
    };
    client
        .batch_execute(&format!("SET synchronous_commit = {value}"))
        .map_err(q)
}

/// Make the session durable, select the schema, and create or check the tables.
/// With `create` false (commands that only read earlier runs): no DDL at all, so that a role
/// that may only read can run `status` and `report`; a database without a store is refused.
/// Returns whether the tables have every [`ADDED_COLUMNS`] column.
fn prepare(
    client: &mut Client,
    schema: Option<&str>,
    location: &str,
    create: bool,
) -> Result<bool, StoreError> {
    let open_err = |reason: String| StoreError::Open {
        location: location.to_string(),
        reason,
    };
    let pg = |e: postgres::Error| open_err(describe(&e));

    let sync: String = client
        .query_one("SELECT current_setting('synchronous_commit')", &[])
        .map_err(pg)?
        .get(0);
    if sync == "off" {
        client
            .batch_execute("SET synchronous_commit = on")
            .map_err(pg)?;
    }

    let mut tx = client.transaction().map_err(pg)?;
    if create {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .map_err(pg)?;
    }
    if let Some(schema) = schema {
        let ident = quote_ident(schema);
        // A plain (not LOCAL) SET lasts for the session once the transaction commits.
        let create_schema = if create {
            format!("CREATE SCHEMA IF NOT EXISTS {ident}; ")
        } else {
            String::new()
        };
        tx.batch_execute(&format!("{create_schema}SET search_path TO {ident}"))
            .map_err(pg)?;
    }
    let current: Option<String> = tx
        .query_one("SELECT current_schema()", &[])
        .map_err(pg)?
        .get(0);
    if current.is_none() {
        let path: String = tx
            .query_one("SELECT current_setting('search_path')", &[])
            .map_err(pg)?
            .get(0);
        return Err(open_err(format!(
            "no schema on the search_path ({path}) exists; create it first (CREATE SCHEMA ...)"
        )));
    }
    let has_meta: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_tables
             WHERE schemaname = current_schema() AND tablename = 'meta')",
            &[],
        )
        .map_err(pg)?
        .get(0);
    let found: Option<String> = if has_meta {
        tx.query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[])
            .map_err(pg)?
            .map(|row| row.get(0))
    } else {
        None
    };
    match found.as_deref().map(str::parse::<i64>) {
        None if !create => {
            return Err(StoreError::NoStore {
                location: location.to_string(),
                reason: "the database holds no sfbpatch state store (nothing has run with it)"
                    .to_string(),
            });
        }
        None => {
            tx.batch_execute(SCHEMA).map_err(pg)?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', $1)",
                &[&SCHEMA_VERSION.to_string()],
            )
            .map_err(pg)?;
        }
        Some(Ok(v)) if v > SCHEMA_VERSION => {
            return Err(StoreError::SchemaTooNew {
                location: location.to_string(),
                found: v,
                known: SCHEMA_VERSION,
            });
        }
        Some(Ok(_)) => {}
        Some(Err(_)) => return Err(corrupt("meta.schema_version is not a number")),
    }
    // Only what is missing is created: a controller's role that owns nothing (and so cannot
    // drop the append-only triggers) opens a store its owner made.
    let has_host_keys: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_tables
             WHERE schemaname = current_schema() AND tablename = 'host_keys')",
            &[],
        )
        .map_err(pg)?
        .get(0);
    if create && !has_host_keys {
        tx.batch_execute(HOST_KEYS).map_err(pg)?;
    }
    migrate_stop_requests(&mut tx, create).map_err(pg)?;
    if create {
        migrate_run_specs(&mut tx).map_err(pg)?;
    }
    if create {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('store_id', $1) ON CONFLICT (key) DO NOTHING",
            &[&crate::new_store_id(location)],
        )
        .map_err(pg)?;
    }
    let mut complete = true;
    for (table, column, decl) in ADDED_COLUMNS {
        let has: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2)",
                &[table, column],
            )
            .map_err(pg)?
            .get(0);
        if !has && create {
            tx.batch_execute(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))
                .map_err(|e| {
                    open_err(format!(
                        "this sfbpatch adds the column {table}.{column} to the store and could \
                         not: {} (run it once as the role that owns the tables)",
                        describe(&e)
                    ))
                })?;
        } else if !has {
            complete = false;
        }
    }
    tx.commit().map_err(pg)?;
    Ok(complete)
}

/// Migration "stop requests": creates [`STOP_REQUESTS`] when a controller (`create`) opens a
/// store without it.
fn migrate_stop_requests(
    tx: &mut postgres::Transaction<'_>,
    create: bool,
) -> Result<(), postgres::Error> {
    let has: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_tables
             WHERE schemaname = current_schema() AND tablename = 'stop_requests')",
            &[],
        )?
        .get(0);
    if create && !has {
        tx.batch_execute(STOP_REQUESTS)?;
    }
    Ok(())
}

/// Migration "run specs in their own table": a run's spec (topology snapshot and plan,
/// megabytes for a large deployment) is written once into `run_specs` and `runs.spec` is left
/// empty, so a state change updates a small row (as in the SQLite store). A controller
/// creates the table and moves the specs of older runs there; a reader reads either place.
const RUN_SPECS: &str = r#"
CREATE TABLE IF NOT EXISTS run_specs (
    run BIGINT PRIMARY KEY REFERENCES runs(id),
    spec TEXT NOT NULL
);
"#;

fn migrate_run_specs(tx: &mut postgres::Transaction<'_>) -> Result<(), postgres::Error> {
    let has: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_tables
             WHERE schemaname = current_schema() AND tablename = 'run_specs')",
            &[],
        )?
        .get(0);
    if !has {
        tx.batch_execute(RUN_SPECS)?;
    }
    let pending: bool = tx
        .query_one("SELECT EXISTS (SELECT 1 FROM runs WHERE spec <> '')", &[])?
        .get(0);
    if pending {
        tx.batch_execute(
            "INSERT INTO run_specs (run, spec) SELECT id, spec FROM runs WHERE spec <> ''
                 ON CONFLICT (run) DO NOTHING;
             UPDATE runs SET spec = '' WHERE spec <> '';",
        )?;
    }
    Ok(())
}

/// The spec, state and creation time of a run; `filter` picks the run (`WHERE ...`).
/// A store no controller of this build has opened has no `run_specs`: its specs are in `runs`.
fn run_row(
    client: &mut Client,
    filter: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<Option<Row>, StoreError> {
    let joined = format!(
        "SELECT r.id, COALESCE(s.spec, r.spec), r.state, r.created_at
         FROM runs r LEFT JOIN run_specs s ON s.run = r.id {filter}"
    );
    match client.query_opt(&joined, params) {
        Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => client
            .query_opt(
                &format!("SELECT r.id, r.spec, r.state, r.created_at FROM runs r {filter}"),
                params,
            )
            .map_err(q),
        other => other.map_err(q),
    }
}

/// A stop request's table is missing from a store no controller of this build has opened.
fn no_stop_requests(e: postgres::Error) -> StoreError {
    if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) {
        StoreError::Query(
            "the store has no stop_requests table yet: open it once with `sfbpatch apply` or \
             `resume` of this version (a controller adds it)"
                .to_string(),
        )
    } else {
        q(e)
    }
}

/// Refuses, inside `tx`, a write to `run` by a handle whose claim on it is no longer the
/// newest. The run's row is share-locked until `tx` ends, so a claim waits for it.
fn check_fence(
    tx: &mut postgres::Transaction<'_>,
    fence: Option<(RunId, u64)>,
    run: RunId,
) -> Result<(), StoreError> {
    let Some((fenced, held)) = fence else {
        return Ok(());
    };
    if fenced != run {
        return Ok(());
    }
    let row = tx
        .query_opt(
            "SELECT generation, controller FROM runs WHERE id = $1 FOR SHARE",
            &[&run],
        )
        .map_err(q)?
        .ok_or(StoreError::NoSuchRun(run))?;
    let current = col::<i64>(&row, 0)? as u64;
    if current != held {
        return Err(StoreError::Fenced {
            run,
            held,
            current,
            by: col(&row, 1)?,
        });
    }
    Ok(())
}

/// `"name"`, with embedded quotes doubled.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The servers a connection attempt went to, as `host:port` (or a socket path), for messages.
fn endpoints(config: &Config) -> String {
    use postgres::config::Host;
    let ports = config.get_ports();
    let port = |i: usize| match ports {
        [] => 5432,
        [only] => *only,
        _ => ports.get(i).copied().unwrap_or(5432),
    };
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| match host {
            Host::Tcp(name) if name.contains(':') => format!("[{name}]:{}", port(i)),
            Host::Tcp(name) => format!("{name}:{}", port(i)),
            Host::Unix(dir) => format!("{}/.s.PGSQL.{}", dir.display(), port(i)),
        })
        .collect();
    if hosts.is_empty() {
        "no host given".to_string()
    } else {
        hosts.join(", ")
    }
}

/// `conninfo` without its password, for messages: the `:password` of a URL's user info, and
/// any `password` parameter.
pub(crate) fn redact(conninfo: &str) -> String {
    for scheme in ["postgresql://", "postgres://"] {
        if let Some(rest) = conninfo.strip_prefix(scheme) {
            return format!("{scheme}{}", redact_url(rest));
        }
    }
    redact_key_value(conninfo)
}

fn redact_url(rest: &str) -> String {
    let mut out = String::new();
    // User info runs to an '@'. When a ':' comes before any '/' or '?', everything from it to
    // the last '@' is hidden: an unencoded '@', '/' or '?' in a password then shows nothing of
    // it, at the price of hiding too much of an unusual URL.
    let mut after = rest;
    if let Some((info, _)) = rest.split_once('@') {
        match info.find([':', '/', '?']).map(|i| (i, info.as_bytes()[i])) {
            Some((i, b':')) => {
                out.push_str(&info[..i]);
                out.push('@');
                after = rest.rsplit_once('@').map_or("", |(_, tail)| tail);
            }
            None => {
                out.push_str(info);
                out.push('@');
                after = &rest[info.len() + 1..];
            }
            Some(_) => {}
        }
    }
    match after.split_once('?') {
        None => out.push_str(after),
        Some((path, query)) => {
            out.push_str(path);
            let kept: Vec<&str> = query
                .split('&')
                .filter(|param| {
                    let key = param.split('=').next().unwrap_or_default();
                    // An encoded key might spell "password".
                    !(key.eq_ignore_ascii_case("password") || key.contains('%'))
                })
                .collect();
            if !kept.is_empty() {
                out.push('?');
                out.push_str(&kept.join("&"));
            }
        }
    }
    out
}

/// `key=value` pairs (values optionally single-quoted with backslash escapes) without the
/// password. Anything that does not parse is not shown at all.
fn redact_key_value(conninfo: &str) -> String {
    let mut kept = Vec::new();
    let mut rest = conninfo.trim_start();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else {
            return "(unparsable connection string)".to_string();
        };
        let key = rest[..eq].trim();
        let value_start = rest[eq + 1..].trim_start();
        let value_len = if value_start.starts_with('\'') {
            let mut escaped = false;
            let close = value_start
                .char_indices()
                .skip(1)
                .find(|&(_, c)| {
                    let end = c == '\'' && !escaped;
                    escaped = c == '\\' && !escaped;
                    end
                })
                .map(|(i, _)| i);
            match close {
                Some(i) => i + 1,
                None => return "(unparsable connection string)".to_string(),
            }
        } else {
            value_start
                .find(char::is_whitespace)
                .unwrap_or(value_start.len())
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            return "(unparsable connection string)".to_string();
        }
        if !key.eq_ignore_ascii_case("password") {
            kept.push(format!("{key}={}", &value_start[..value_len]));
        }
        rest = value_start[value_len..].trim_start();
    }
    kept.join(" ")
}

fn lease_from_row(row: &Row) -> Result<Lease, StoreError> {
    let pid: i64 = col(row, 4)?;
    Ok(Lease {
        pool: col(row, 0)?,
        run: col(row, 1)?,
        holder: col(row, 2)?,
        host: col(row, 3)?,
        pid: u32::try_from(pid).map_err(|_| corrupt(format!("lease pid {pid}")))?,
        expires_at: col::<i64>(row, 5)? as Millis,
        instance: col(row, 6)?,
        generation: col::<i64>(row, 7)? as u64,
    })
}

impl Store for PgStore {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn create_run(&mut self, spec: &RunSpec, at: Millis) -> Result<RunId, StoreError> {
        let text = serde_json::to_string(spec).map_err(|e| corrupt(e.to_string()))?;
        let mut client = self.conn()?;
        let mut tx = client.transaction().map_err(q)?;
        let row = tx
            .query_one(
                "INSERT INTO runs (spec, state, created_at) VALUES ('', 'running', $1) RETURNING id",
                &[&(at as i64)],
            )
            .map_err(q)?;
        let id: RunId = col(&row, 0)?;
        tx.execute(
            "INSERT INTO run_specs (run, spec) VALUES ($1, $2)",
            &[&id, &text],
        )
        .map_err(q)?;
        tx.commit().map_err(q)?;
        Ok(id)
    }

    fn run(&self, id: RunId) -> Result<RunRecord, StoreError> {
        let row = run_row(&mut *self.conn()?, "WHERE r.id = $1", &[&id])?
            .ok_or(StoreError::NoSuchRun(id))?;
        run_record(id, col(&row, 1)?, col(&row, 2)?, col(&row, 3)?)
    }

    fn run_state(&self, id: RunId) -> Result<RunState, StoreError> {
        let row = self
            .conn()?
            .query_opt("SELECT state FROM runs WHERE id = $1", &[&id])
            .map_err(q)?
            .ok_or(StoreError::NoSuchRun(id))?;
        let state: String = col(&row, 0)?;
        RunState::parse(&state).ok_or_else(|| corrupt(format!("run {id} state '{state}'")))
    }

    fn latest_run(&self) -> Result<Option<RunRecord>, StoreError> {
        let row = run_row(&mut *self.conn()?, "ORDER BY r.id DESC LIMIT 1", &[])?;
        row.map(|row| run_record(col(&row, 0)?, col(&row, 1)?, col(&row, 2)?, col(&row, 3)?))
            .transpose()
    }

    fn forget_unstarted_run(&mut self, id: RunId) -> Result<bool, StoreError> {
        let mut client = self.conn()?;
        let mut tx = client.transaction().map_err(q)?;
        let unstarted: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE id = $1)
                 AND NOT EXISTS (SELECT 1 FROM journal WHERE run = $1)
                 AND NOT EXISTS (SELECT 1 FROM audit WHERE run = $1)",
                &[&id],
            )
            .map_err(q)?
            .get(0);
        if !unstarted {
            return Ok(false);
        }
        tx.execute("DELETE FROM run_specs WHERE run = $1", &[&id])
            .map_err(q)?;
        tx.execute("DELETE FROM runs WHERE id = $1", &[&id])
            .map_err(q)?;
        tx.commit().map_err(q)?;
        Ok(true)
    }

    fn set_run_state(&mut self, id: RunId, state: RunState) -> Result<(), StoreError> {
        let fence = self.fence;
        let mut client = self.conn()?;
        let mut tx = client.transaction().map_err(q)?;
        check_fence(&mut tx, fence, id)?;
        let n = tx
            .execute(
                "UPDATE runs SET state = $1 WHERE id = $2",
                &[&state.as_str(), &id],
            )
            .map_err(q)?;
        if n == 0 {
            return Err(StoreError::NoSuchRun(id));
        }
        tx.commit().map_err(q)
    }

    fn append(
        &mut self,
        at: Millis,
        scope: &Scope<'_>,
        records: &[Record],
        audit: Option<&AuditEntry>,
    ) -> Result<(), StoreError> {
        let fence = self.fence;
        let mut client = self.conn()?;
        let mut tx = client.transaction().map_err(q)?;
        check_fence(&mut tx, fence, scope.run)?;
        let insert = tx
            .prepare("INSERT INTO journal (run, server, at, record) VALUES ($1, $2, $3, $4)")
            .map_err(q)?;
        let durations = tx
            .prepare(
                "INSERT INTO step_totals (run, role, step, samples, total_ms) VALUES ($1, $2, $3, 1, $4)
                 ON CONFLICT (role, step, run) DO UPDATE
                 SET samples = step_totals.samples + 1,
                     total_ms = step_totals.total_ms + excluded.total_ms",
            )
            .map_err(q)?;
        let at = at as i64;
        for record in records {
            let text = serde_json::to_string(record).map_err(|e| corrupt(e.to_string()))?;
            tx.execute(&insert, &[&scope.run, &scope.server, &at, &text])
                .map_err(q)?;
            if let Record::StepResult {
                step,
                result: StepResultKind::Succeeded,
                duration_ms,
                ..
            } = record
            {
                tx.execute(
                    &durations,
                    &[
                        &scope.run,
                        &scope.role.as_str(),
                        &step.as_str(),
                        &(*duration_ms as i64),
                    ],
                )
                .map_err(q)?;
            }
        }
        if let Some(a) = audit {
            tx.execute(
                "INSERT INTO audit (run, at, operator, server, step, command, exit_code, output)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &a.run,
                    &(a.at as i64),
                    &a.operator,
                    &a.server,
                    &a.step,
                    &a.command,
                    &a.exit_code,
                    &a.output_excerpt.as_bytes(),
                ],
            )
            .map_err(q)?;
        }
        tx.commit().map_err(q)
    }

    fn journal(&self, run: RunId) -> Result<Vec<JournalEntry>, StoreError> {
        self.journal_since(run, i64::MIN)
    }

    fn audit(&self, run: RunId) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = self
            .conn()?
            .query(
                "SELECT id, at, operator, server, step, command, exit_code, output FROM audit
                 WHERE run = $1 ORDER BY id",
                &[&run],
            )
            .map_err(q)?;
        rows.iter()
            .map(|row| {
                let id: i64 = col(row, 0)?;
                let output: Vec<u8> = col(row, 7)?;
                Ok(AuditEntry {
                    run,
                    at: col::<i64>(row, 1)? as Millis,
                    operator: col(row, 2)?,
                    server: col(row, 3)?,
                    step: col(row, 4)?,
                    command: col(row, 5)?,
                    exit_code: col(row, 6)?,
                    output_excerpt: String::from_utf8(output)
                        .map_err(|_| corrupt(format!("audit line {id}: output is not UTF-8")))?,
                })
            })
            .collect()
    }

    fn acquire_lease(&mut self, lease: &Lease, now: Millis) -> Result<Option<Lease>, StoreError> {
        self.acquire_leases(std::slice::from_ref(lease), now)
    }

    fn acquire_leases(
        &mut self,
        leases: &[Lease],
        now: Millis,
    ) -> Result<Option<Lease>, StoreError> {
        let columns = self.lease_columns;
        let mut client = self.conn()?;
        let mut tx = client.transaction().map_err(q)?;
        // One statement decides: it inserts, renews the same controller instance's lease
        // (keeping its generation), or takes over an expired one. A racing transaction waits
        // on the row and re-checks the condition against what committed first, so only one
        // of them can win.
        let take = tx
            .prepare(
                "INSERT INTO leases (pool, run, holder, host, pid, expires_at, instance, generation)
                 VALUES ($1, $2, $3, $4, $5, $6, $8, 0)
                 ON CONFLICT (pool) DO UPDATE SET run = excluded.run, holder = excluded.holder,
                     host = excluded.host, pid = excluded.pid, expires_at = excluded.expires_at,
                     generation = CASE WHEN leases.run = excluded.run
                         AND leases.instance = excluded.instance
                         THEN leases.generation ELSE 0 END,
                     instance = excluded.instance
                 WHERE (leases.run = excluded.run AND leases.instance = excluded.instance)
                    OR leases.expires_at <= $7
                 RETURNING pool",
            )
            .map_err(q)?;
        for lease in leases {
            let pool = lease.pool.to_ascii_lowercase();
            let taken = tx
                .query_opt(
                    &take,
                    &[
                        &pool,
                        &lease.run,
                        &lease.holder,
                        &lease.host,
                        &i64::from(lease.pid),
                        &(lease.expires_at as i64),
                        &(now as i64),
                        &lease.instance,
                    ],
                )
                .map_err(q)?;
            if taken.is_none() {
                // Refused: nothing of this call is kept (the transaction rolls back).
                let row = tx
                    .query_one(
                        &format!("SELECT {columns} FROM leases WHERE pool = $1"),
                        &[&pool],
                    )
                    .map_err(q)?;
                return Ok(Some(lease_from_row(&row)?));
            }
        }
        tx.commit().map_err(q)?;
        Ok(None)
    }

    fn store_id(&self) -> Result<Option<String>, StoreError> {
        let row = self
            .conn()?
            .query_opt("SELECT value FROM meta WHERE key = 'store_id'", &[])
            .map_err(q)?;
        row.map(|row| col(&row, 0)).transpose()
    }

    fn clock_ms(&self) -> Result<Option<Millis>, StoreError> {
        let row = self
            .conn()?
            .query_one(
                "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT",
                &[],
            )
            .map_err(q)?;
        Ok(Some(col::<i64>(&row, 0)?.max(0) as Millis))
    }

    fn set_durability(&mut self, durability: Durability) -> Result<(), StoreError> {
        apply_durability(&mut *self.conn()?, durability)?;
        self.durability = durability;
        Ok(())
    }

    fn durability(&self) -> Result<Durability, StoreError> {
        let row = self
            .conn()?
            .query_one("SELECT current_setting('synchronous_commit')", &[])
            .map_err(q)?;
        Ok(if col::<String>(&row, 0)? == "off" {
            Durability::ProcessCrash
        } else {
            Durability::PowerLoss
        })
    }

    fn release_leases(&mut self, run: RunId, instance: &str) -> Result<(), StoreError> {
        self.conn()?
            .execute(
                "DELETE FROM leases WHERE run = $1 AND instance = $2",
                &[&run, &instance],
            )
            .map_err(q)?;
        Ok(())
    }

    fn claim_run(&mut self, run: RunId, instance: &str) -> Result<u64, StoreError> {
        let mut client = self.conn()?;
        let mut tx = client.transaction().map_err(q)?;
        // The run's row first: claims and fenced writes of the run queue behind each other.
        let current = tx
            .query_opt(
                "SELECT generation FROM runs WHERE id = $1 FOR UPDATE",
                &[&run],
            )
            .map_err(q)?
            .ok_or(StoreError::NoSuchRun(run))?;
        let current = col::<i64>(&current, 0)?;
        if let Some(other) = tx
            .query_opt(
                "SELECT instance FROM leases WHERE run = $1 AND instance <> $2 LIMIT 1",
                &[&run, &instance],
            )
            .map_err(q)?
        {
            return Err(StoreError::Fenced {
                run,
                held: current as u64,
                current: current as u64,
                by: col(&other, 0)?,
            });
        }
        let generation = current + 1;
        tx.execute(
            "UPDATE runs SET generation = $1, controller = $2 WHERE id = $3",
            &[&generation, &instance, &run],
        )
        .map_err(q)?;
        tx.execute(
            "UPDATE leases SET generation = $1 WHERE run = $2 AND instance = $3",
            &[&generation, &run, &instance],
        )
        .map_err(q)?;
        tx.commit().map_err(q)?;
        drop(client);
        self.fence = Some((run, generation as u64));
        Ok(generation as u64)
    }

    fn break_lease(&mut self, pool: &str) -> Result<Option<Lease>, StoreError> {
        let row = self
            .conn()?
            .query_opt(
                &format!(
                    "DELETE FROM leases WHERE pool = $1 RETURNING {}",
                    self.lease_columns
                ),
                &[&pool.to_ascii_lowercase()],
            )
            .map_err(q)?;
        row.as_ref().map(lease_from_row).transpose()
    }

    fn break_lease_held_by(
        &mut self,
        pool: &str,
        instance: &str,
    ) -> Result<Option<Lease>, StoreError> {
        let row = self
            .conn()?
            .query_opt(
                &format!(
                    "DELETE FROM leases WHERE pool = $1 AND instance = $2 RETURNING {}",
                    self.lease_columns
                ),
                &[&pool.to_ascii_lowercase(), &instance],
            )
            .map_err(q)?;
        row.as_ref().map(lease_from_row).transpose()
    }

    fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        let rows = self
            .conn()?
            .query(
                &format!("SELECT {} FROM leases ORDER BY pool", self.lease_columns),
                &[],
            )
            .map_err(q)?;
        rows.iter().map(lease_from_row).collect()
    }

    fn step_stats(&self, role: ServerKind, exclude: RunId) -> Result<Vec<StepStat>, StoreError> {
        let rows = self
            .conn()?
            .query(
                "SELECT step, SUM(n)::BIGINT, (SUM(total)::DOUBLE PRECISION / SUM(n)) FROM (
                     SELECT step, samples AS n, total_ms AS total FROM step_totals
                     WHERE role = $1 AND run <> $2
                     UNION ALL
                     SELECT step, COUNT(*), SUM(duration_ms) FROM step_durations
                     WHERE role = $1 AND run <> $2 GROUP BY step
                 ) t GROUP BY step ORDER BY step",
                &[&role.as_str(), &exclude],
            )
            .map_err(q)?;
        rows.iter()
            .map(|row| {
                let step: &str = col(row, 0)?;
                let samples: i64 = col(row, 1)?;
                let mean: f64 = col(row, 2)?;
                Ok(StepStat {
                    step: StepId::parse(step).ok_or_else(|| corrupt(format!("step '{step}'")))?,
                    samples: samples as u64,
                    mean_ms: mean.round() as Millis,
                })
            })
            .collect()
    }
    fn journal_since(&self, run: RunId, after: i64) -> Result<Vec<JournalEntry>, StoreError> {
        let rows = self
            .conn()?
            .query(
                "SELECT seq, server, at, record FROM journal WHERE run = $1 AND seq > $2
                 ORDER BY seq",
                &[&run, &after],
            )
            .map_err(q)?;
        rows.iter()
            .map(|row| {
                let seq: i64 = col(row, 0)?;
                let text: &str = col(row, 3)?;
                let record = serde_json::from_str(text)
                    .map_err(|e| corrupt(format!("journal record {seq}: {e}")))?;
                Ok(JournalEntry {
                    seq,
                    run,
                    server: col(row, 1)?,
                    at: col::<i64>(row, 2)? as Millis,
                    record,
                })
            })
            .collect()
    }

    fn request_stop(
        &mut self,
        run: RunId,
        by: &str,
        at: Millis,
    ) -> Result<StopRequest, StoreError> {
        let mut client = self.conn()?;
        let mut tx = client.transaction().map_err(q)?;
        let generation: i64 = match tx
            .query_opt("SELECT generation FROM runs WHERE id = $1", &[&run])
            .map_err(q)?
        {
            Some(row) => col(&row, 0)?,
            None => return Err(StoreError::NoSuchRun(run)),
        };
        tx.execute(
            "INSERT INTO stop_requests (run, generation, requested_by, at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (run) DO UPDATE SET generation = EXCLUDED.generation,
                 requested_by = EXCLUDED.requested_by, at = EXCLUDED.at",
            &[&run, &generation, &by, &(at as i64)],
        )
        .map_err(no_stop_requests)?;
        tx.execute(
            "INSERT INTO audit (run, at, operator, server, step, command, exit_code, output)
             VALUES ($1, $2, $3, '', $4, NULL, NULL, $5)",
            &[
                &run,
                &(at as i64),
                &by,
                &crate::STOP_REQUESTED_STEP,
                &crate::STOP_REQUESTED_TEXT.as_bytes(),
            ],
        )
        .map_err(q)?;
        tx.commit().map_err(q)?;
        Ok(StopRequest {
            generation: generation as u64,
            by: by.to_string(),
            at,
        })
    }

    fn stop_request(&self, run: RunId) -> Result<Option<StopRequest>, StoreError> {
        let row = match self.conn()?.query_opt(
            "SELECT generation, requested_by, at FROM stop_requests WHERE run = $1",
            &[&run],
        ) {
            Ok(row) => row,
            // A store no controller of this build opened has no stop requests.
            Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => {
                return Ok(None);
            }
            Err(e) => return Err(q(e)),
        };
        row.map(|row| {
            Ok(StopRequest {
                generation: col::<i64>(&row, 0)? as u64,
                by: col(&row, 1)?,
                at: col::<i64>(&row, 2)? as Millis,
            })
        })
        .transpose()
    }

    fn host_key(&self, server: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .conn()?
            .query_opt(
                "SELECT fingerprint FROM host_keys WHERE server = $1",
                &[&server.to_ascii_lowercase()],
            )
            .map_err(q)?;
        row.as_ref().map(|row| col::<String>(row, 0)).transpose()
    }

    fn pin_host_key(&mut self, server: &str, fingerprint: &str) -> Result<(), StoreError> {
        self.conn()?
            .execute(
                "INSERT INTO host_keys (server, fingerprint) VALUES ($1, $2)
                 ON CONFLICT (server) DO UPDATE SET fingerprint = EXCLUDED.fingerprint",
                &[&server.to_ascii_lowercase(), &fingerprint],
            )
            .map_err(q)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_strips_url_passwords() {
        let cases = [
            (
                "postgres://sfb:s3cret@db.example.com:5432/state",
                "postgres://sfb@db.example.com:5432/state",
            ),
            (
                "postgresql://sfb:s3cret@db/state?options=-csearch_path%3Dx",
                "postgresql://sfb@db/state?options=-csearch_path%3Dx",
            ),
            (
                "postgres://sfb@db/state?password=s3cret&application_name=a",
                "postgres://sfb@db/state?application_name=a",
            ),
            ("postgres://db/state?password=s3cret", "postgres://db/state"),
            (
                "postgres://db/state?pass%77ord=s3cret",
                "postgres://db/state",
            ),
            ("postgres://sfb:s3c/r?t@db/state", "postgres://sfb@db/state"),
            ("postgres://sfb:s3c@ret@db/state", "postgres://sfb@db/state"),
            ("postgres://db:5432/state", "postgres://db:5432/state"),
            (
                "postgres://db/state?password=s3@cret",
                "postgres://db/state",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(redact(url), want, "{url}");
        }
    }

    #[test]
    fn redact_strips_key_value_passwords() {
        assert_eq!(
            redact("host=db user=sfb password=s3cret dbname=state"),
            "host=db user=sfb dbname=state"
        );
        assert_eq!(
            redact("host = db password = 'se cr\\'et' user=sfb"),
            "host=db user=sfb"
        );
        assert_eq!(
            redact("host=db password='unterminated"),
            "(unparsable connection string)"
        );
    }

    /// A connection that fails names where it went, and never the password.
    #[test]
    fn refused_connection_names_host_and_port_but_not_the_password() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = format!("postgres://sfb:Pa55word-never-shown@127.0.0.1:{port}/state");
        let err = PgStore::open(&url).err().expect("nothing listens there");
        let StoreError::Open { location, reason } = &err else {
            panic!("expected an open error, got {err:?}");
        };
        assert_eq!(location, &format!("postgres://sfb@127.0.0.1:{port}/state"));
        assert!(reason.contains(&format!("127.0.0.1:{port}")), "{reason}");
        assert!(reason.contains("refused"), "{reason}");
        let text = format!("{err} {err:?}");
        assert!(!text.contains("Pa55word"), "{text}");
    }

    #[test]
    fn bad_urls_and_schema_names_are_open_errors() {
        let err = PgStore::open("postgres://sfb:Pa55word@db:notaport/state")
            .err()
            .unwrap();
        assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
        assert!(!format!("{err} {err:?}").contains("Pa55word"));
        let err = PgStore::open("postgres://sfb:Pa55word@db/state?sslmode=verify-full")
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("sslmode=verify-full needs sslrootcert=FILE"),
            "{err}"
        );
        assert!(!err.to_string().contains("Pa55word"), "{err}");
        let err = PgStore::open(
            "postgres://sfb:Pa55word@db/state?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        )
        .err()
        .unwrap();
        assert!(
            err.to_string().contains("sslrootcert /nonexistent/ca.pem"),
            "{err}"
        );
        let err = PgStore::open_with_schema("postgres://db/state", "")
            .err()
            .unwrap();
        assert!(err.to_string().contains("not a valid schema name"), "{err}");
    }

    #[test]
    fn quote_ident_doubles_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn endpoints_name_each_host_with_its_port() {
        let config: Config = "host=a,b port=6000".parse().unwrap();
        assert_eq!(endpoints(&config), "a:6000, b:6000");
        let config: Config = "postgres://a,b:6000/db".parse().unwrap();
        assert_eq!(endpoints(&config), "a:5432, b:6000");
        let config: Config = "postgres://a:1,b:2/db".parse().unwrap();
        assert_eq!(endpoints(&config), "a:1, b:2");
        let config: Config = "host=/run/postgresql".parse().unwrap();
        assert_eq!(endpoints(&config), "/run/postgresql/.s.PGSQL.5432");
    }
}
