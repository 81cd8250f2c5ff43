//! The default store: one SQLite file in WAL mode. Every write is one transaction, committed
//! with `synchronous = FULL` unless [`Store::set_durability`] asks otherwise: a record that
//! `append` returned survives a crash of the process (SIGKILL included) and of the machine
//! (power loss). A run on the lab asks for `NORMAL` (its world commits that way): a record
//! survives the process, and a power loss may take the last ones back with the world's.
//! Statements are prepared once per connection (`prepare_cached`); a run's spec lives in its
//! own table (`run_specs`), so a state change rewrites a small row. Pages are 1 KB (a commit
//! writes each page it changed whole); a writing handle's checkpoints run on a thread beside it
//! ([`sfbpatch_sqlite::Checkpointer`]).

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use sfbpatch_engine::{
    Append, AuditEntry, Durability, JournalEntry, Lease, Millis, Record, RunId, RunRecord, RunSpec,
    RunState, Scope, StepStat, StopRequest, Store, StoreError,
};
use sfbpatch_plan::{ServerKind, StepId};

use crate::{SCHEMA_VERSION, corrupt};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    -- raised each time a controller instance claims the run; `controller` is that instance
    generation INTEGER NOT NULL DEFAULT 0,
    controller TEXT NOT NULL DEFAULT ''
);
-- journal and audit rows are never deleted, so a plain INTEGER PRIMARY KEY (the largest key
-- plus one) increases as AUTOINCREMENT would, without a write to sqlite_sequence per commit
-- (stores made before keep AUTOINCREMENT)
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY,
    run INTEGER NOT NULL REFERENCES runs(id),
    server TEXT NOT NULL,
    at INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_by_run ON journal(run, seq);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    run INTEGER NOT NULL REFERENCES runs(id),
    at INTEGER NOT NULL,
    operator TEXT NOT NULL,
    server TEXT NOT NULL,
    step TEXT NOT NULL,
    command TEXT,
    exit_code INTEGER,
    output TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_run ON audit(run, id);
CREATE TABLE IF NOT EXISTS step_durations (
    run INTEGER NOT NULL,
    role TEXT NOT NULL,
    step TEXT NOT NULL,
    duration_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS step_durations_by_role ON step_durations(role, step);
CREATE TABLE IF NOT EXISTS step_totals (
    role TEXT NOT NULL,
    step TEXT NOT NULL,
    run INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    total_ms INTEGER NOT NULL,
    PRIMARY KEY (role, step, run)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    pool TEXT PRIMARY KEY,
    run INTEGER NOT NULL,
    holder TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    instance TEXT NOT NULL DEFAULT '',
    generation INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS host_keys (
    server TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS journal_append_only_u BEFORE UPDATE ON journal
    BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_append_only_d BEFORE DELETE ON journal
    BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_u BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_d BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#;

/// Migration "stop requests" (added after the first release): the table where a stop asked
/// from outside the controller (`sfbpatch serve`) is kept, one row per run. Created on every
/// open, like the tables of [`SCHEMA`], so that older stores get it.
const STOP_REQUESTS: &str = r#"
CREATE TABLE IF NOT EXISTS stop_requests (
    run INTEGER PRIMARY KEY REFERENCES runs(id),
    generation INTEGER NOT NULL,
    requested_by TEXT NOT NULL,
    at INTEGER NOT NULL
);
"#;

/// Migration "run specs in their own table" (added after the first release): a run's spec
/// (topology snapshot and plan, megabytes for a large deployment) is written once into
/// `run_specs`, and `runs.spec` is left empty. SQLite rewrites a whole row on `UPDATE`, and
/// reading a column stored after a large value walks that value's overflow pages: with the spec
/// in `runs`, every state change rewrote it and every fenced write read through it. Created on
/// every open, like the tables of [`SCHEMA`]; a controller moves the specs of older runs here
/// ([`move_run_specs`]), a reader reads either place.
const RUN_SPECS: &str = r#"
CREATE TABLE IF NOT EXISTS run_specs (
    run INTEGER PRIMARY KEY REFERENCES runs(id),
    spec TEXT NOT NULL
);
"#;

/// Moves the specs of runs written before [`RUN_SPECS`] out of `runs`, in one transaction.
fn move_run_specs(conn: &Connection) -> rusqlite::Result<()> {
    let pending: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM runs WHERE spec <> '')",
        [],
        |r| r.get(0),
    )?;
    if pending {
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             INSERT OR IGNORE INTO run_specs (run, spec) SELECT id, spec FROM runs WHERE spec <> '';
             UPDATE runs SET spec = '' WHERE spec <> '';
             COMMIT;",
        )?;
    }
    Ok(())
}

/// A main file that is empty while its write-ahead log holds data is a damaged store (the
/// file was truncated, or copied without its WAL at the wrong moment). Opening it would let
/// SQLite discard the log: refuse before anything touches either file.
fn check_wal_pair(path: &Path, location: &str) -> Result<(), StoreError> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal = Path::new(&wal);
    let main_len = std::fs::metadata(path).map(|m| m.len()).ok();
    let wal_len = std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0);
    if main_len.unwrap_or(0) == 0 && wal_len > 0 {
        return Err(StoreError::Damaged {
            location: location.to_string(),
            reason: format!(
                "the database file is {} but its write-ahead log {} holds {wal_len} bytes; \
                 nothing was changed: restore the store from a backup (both files together)",
                if main_len.is_some() {
                    "empty"
                } else {
                    "missing"
                },
                wal.display()
            ),
        });
    }
    Ok(())
}

/// Whether two leases are held by the same controller instance of the same run.
pub(crate) fn same_controller(a: &Lease, b: &Lease) -> bool {
    a.run == b.run && a.instance == b.instance
}

/// Columns added after the first release: (table, column, declaration). A store created
/// before them gets them when a controller opens it; one opened only to read goes without.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("leases", "instance", "TEXT NOT NULL DEFAULT ''"),
    ("leases", "generation", "INTEGER NOT NULL DEFAULT 0"),
    ("runs", "generation", "INTEGER NOT NULL DEFAULT 0"),
    ("runs", "controller", "TEXT NOT NULL DEFAULT ''"),
];

/// The columns a lease is read from: a store read without its added columns reads them as
/// no instance and generation 0.
const LEASE_COLUMNS: &str = "pool, run, holder, host, pid, expires_at, instance, generation";
const LEASE_COLUMNS_V1: &str = "pool, run, holder, host, pid, expires_at, '', 0";

pub struct SqliteStore {
    conn: Connection,
    /// Copies the write-ahead log back into the database beside this handle's commits (a
    /// handle that writes).
    _checkpointer: Option<sfbpatch_sqlite::Checkpointer>,
    location: String,
    lease_columns: &'static str,
    /// The run this handle controls and the generation it claimed ([`Store::claim_run`]).
    fence: Option<(RunId, u64)>,
}

/// Log frames (1 KB pages) past which the checkpointer restarts the log: 16 MB.
const RESTART_FRAMES: i64 = 16_384;

/// A busy or locked database, or an I/O error, may clear: the store is unavailable now.
fn q(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::DatabaseBusy | C::DatabaseLocked | C::SystemIoFailure | C::DiskFull) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Query(e.to_string()),
    }
}

impl SqliteStore {
    /// Open (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_as(path, true)
    }

    /// Open the store of earlier runs at `path`: a missing file, or one without a store in
    /// it, is refused ([`StoreError::NoStore`]) and left as it is.
    pub fn open_existing(path: &Path) -> Result<Self, StoreError> {
        Self::open_as(path, false)
    }

    fn open_as(path: &Path, create: bool) -> Result<Self, StoreError> {
        let location = format!("sqlite:{}", path.display());
        let open_err = |e: rusqlite::Error| StoreError::Open {
            location: location.clone(),
            reason: e.to_string(),
        };
        check_wal_pair(path, &location)?;
        if !create && !path.exists() {
            return Err(StoreError::NoStore {
                location,
                reason: "the file does not exist".to_string(),
            });
        }
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(open_err)?;
        // Another program's database (a lab's lab.db, say) is left as it is: no table is added.
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
            .map_err(open_err)?;
        if !tables.is_empty() && !tables.iter().any(|t| t == "meta") {
            let mut shown: Vec<&str> = tables.iter().map(String::as_str).take(5).collect();
            if tables.len() > 5 {
                shown.push("...");
            }
            return Err(StoreError::Open {
                location,
                reason: format!(
                    "it is not an sfbpatch state store (it holds the tables {}: a lab's lab.db?); \
                     nothing was changed: give --state a file of its own",
                    shown.join(", ")
                ),
            });
        }
        if !create && tables.is_empty() {
            return Err(StoreError::NoStore {
                location,
                reason: "the file holds no state store (nothing has run with it)".to_string(),
            });
        }
        if tables.is_empty() {
            // Small pages: a commit changes a row or two in each of a few tables, and writes
            // every page it changed, whole, to the write-ahead log. Only possible before the
            // first table and before WAL mode; a store made with larger pages keeps them.
            conn.pragma_update(None, "page_size", 1024)
                .map_err(open_err)?;
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        // Checkpoints are the checkpointer's (a thread beside this handle's commits, so that
        // they never wait on the disk); this handle checkpoints itself only if the log
        // outgrows 64 MB all the same.
        conn.pragma_update(None, "wal_autocheckpoint", 65536)
            .map_err(open_err)?;
        // FULL, not NORMAL, by default. SQLite's documentation (https://www.sqlite.org/pragma.html#pragma_synchronous):
        // "A transaction committed in WAL mode with synchronous=NORMAL might roll back following
        // a power loss or system crash", while with FULL "the WAL file is synchronized before
        // each commit". A journal record is the commit point of a step: a lost intent after the
        // installer started on a real server would break the rule that it runs once per server.
        // The engine lowers it to NORMAL for a target whose own world is no more durable (the
        // lab's): `Store::set_durability`.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        // The query planner stability guarantee: a statement keeps the plan it was prepared
        // with, instead of being prepared again when a bound value might change it (SQLite
        // is built with STAT4 here), so cached statements stay cached.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(open_err)?;
        conn.set_prepared_statement_cache_capacity(64);
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        conn.execute_batch(STOP_REQUESTS).map_err(open_err)?;
        conn.execute_batch(RUN_SPECS).map_err(open_err)?;
        let found: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(open_err)?;
        match found.as_deref().map(str::parse::<i64>) {
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                    [SCHEMA_VERSION.to_string()],
                )
                .map_err(open_err)?;
            }
            Some(Ok(v)) if v > SCHEMA_VERSION => {
                return Err(StoreError::SchemaTooNew {
                    location,
                    found: v,
                    known: SCHEMA_VERSION,
                });
            }
            Some(Ok(_)) => {}
            Some(Err(_)) => return Err(corrupt("meta.schema_version is not a number")),
        }
        if create {
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('store_id', ?1)",
                [crate::new_store_id(&location)],
            )
            .map_err(open_err)?;
        }
        let mut complete = true;
        for (table, column, decl) in ADDED_COLUMNS {
            let has: bool = conn
                .query_row(
                    &format!(
                        "SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"
                    ),
                    [column],
                    |r| r.get(0),
                )
                .map_err(open_err)?;
            if !has && create {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))
                    .map_err(open_err)?;
            } else if !has {
                complete = false;
            }
        }
        if create {
            move_run_specs(&conn).map_err(open_err)?;
        }
        let checkpointer = if create {
            Some(sfbpatch_sqlite::Checkpointer::start(path, RESTART_FRAMES).map_err(open_err)?)
        } else {
            None
        };
        Ok(SqliteStore {
            conn,
            _checkpointer: checkpointer,
            location,
            lease_columns: if complete {
                LEASE_COLUMNS
            } else {
                LEASE_COLUMNS_V1
            },
            fence: None,
        })
    }
}

/// Refuses, inside `tx`, a write to `run` by a handle whose claim on it (`fence`) is no
/// longer the newest.
fn check_fence(tx: &Connection, fence: Option<(RunId, u64)>, run: RunId) -> Result<(), StoreError> {
    let Some((fenced, held)) = fence else {
        return Ok(());
    };
    if fenced != run {
        return Ok(());
    }
    let (current, by): (i64, String) = tx
        .prepare_cached("SELECT generation, controller FROM runs WHERE id = ?1")
        .and_then(|mut st| st.query_row([run], |r| Ok((r.get(0)?, r.get(1)?))))
        .optional()
        .map_err(q)?
        .ok_or(StoreError::NoSuchRun(run))?;
    if current as u64 != held {
        return Err(StoreError::Fenced {
            run,
            held,
            current: current as u64,
            by,
        });
    }
    Ok(())
}

impl SqliteStore {
    fn run_from_row(
        id: RunId,
        spec: &str,
        state: &str,
        created_at: i64,
    ) -> Result<RunRecord, StoreError> {
        Ok(RunRecord {
            id,
            spec: serde_json::from_str(spec).map_err(|e| corrupt(format!("run {id} spec: {e}")))?,
            state: RunState::parse(state)
                .ok_or_else(|| corrupt(format!("run {id} state '{state}'")))?,
            created_at: created_at as Millis,
        })
    }
}

impl Store for SqliteStore {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn create_run(&mut self, spec: &RunSpec, at: Millis) -> Result<RunId, StoreError> {
        let text = serde_json::to_string(spec).map_err(|e| corrupt(e.to_string()))?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(q)?;
        tx.execute(
            "INSERT INTO runs (spec, state, created_at) VALUES ('', 'running', ?1)",
            params![at as i64],
        )
        .map_err(q)?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO run_specs (run, spec) VALUES (?1, ?2)",
            params![id, text],
        )
        .map_err(q)?;
        tx.commit().map_err(q)?;
        Ok(id)
    }

    fn run(&self, id: RunId) -> Result<RunRecord, StoreError> {
        let row: Option<(String, String, i64)> = self
            .conn
            .query_row(
                "SELECT COALESCE(s.spec, r.spec), r.state, r.created_at
                 FROM runs r LEFT JOIN run_specs s ON s.run = r.id WHERE r.id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(q)?;
        let (spec, state, created) = row.ok_or(StoreError::NoSuchRun(id))?;
        Self::run_from_row(id, &spec, &state, created)
    }

    fn run_state(&self, id: RunId) -> Result<RunState, StoreError> {
        let state: String = self
            .conn
            .query_row("SELECT state FROM runs WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(q)?
            .ok_or(StoreError::NoSuchRun(id))?;
        RunState::parse(&state).ok_or_else(|| corrupt(format!("run {id} state '{state}'")))
    }

    fn latest_run(&self) -> Result<Option<RunRecord>, StoreError> {
        let id: Option<RunId> = self
            .conn
            .query_row("SELECT MAX(id) FROM runs", [], |r| r.get(0))
            .map_err(q)?;
        id.map(|id| self.run(id)).transpose()
    }

    fn forget_unstarted_run(&mut self, id: RunId) -> Result<bool, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(q)?;
        let unstarted: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE id = ?1)
                 AND NOT EXISTS (SELECT 1 FROM journal WHERE run = ?1)
                 AND NOT EXISTS (SELECT 1 FROM audit WHERE run = ?1)",
                params![id],
                |r| r.get(0),
            )
            .map_err(q)?;
        if !unstarted {
            return Ok(false);
        }
        for statement in [
            "DELETE FROM run_specs WHERE run = ?1",
            "DELETE FROM runs WHERE id = ?1",
        ] {
            tx.execute(statement, params![id]).map_err(q)?;
        }
        tx.commit().map_err(q)?;
        Ok(true)
    }

    fn set_run_state(&mut self, id: RunId, state: RunState) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(q)?;
        let n = tx
            .prepare_cached("UPDATE runs SET state = ?1 WHERE id = ?2")
            .and_then(|mut st| st.execute(params![state.as_str(), id]))
            .map_err(q)?;
        if n == 0 {
            return Err(StoreError::NoSuchRun(id));
        }
        check_fence(&tx, self.fence, id)?;
        tx.commit().map_err(q)
    }

    fn append(
        &mut self,
        at: Millis,
        scope: &Scope<'_>,
        records: &[Record],
        audit: Option<&AuditEntry>,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(q)?;
        check_fence(&tx, self.fence, scope.run)?;
        insert_records(&tx, at, scope, records, audit)?;
        tx.commit().map_err(q)
    }

    fn append_batch(&mut self, batch: &[Append]) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(q)?;
        let mut checked = None;
        for a in batch {
            if checked != Some(a.run) {
                check_fence(&tx, self.fence, a.run)?;
                checked = Some(a.run);
            }
            let scope = Scope {
                run: a.run,
                server: &a.server,
                role: a.role,
            };
            insert_records(&tx, a.at, &scope, &a.records, a.audit.as_ref())?;
        }
        tx.commit().map_err(q)
    }

    fn journal(&self, run: RunId) -> Result<Vec<JournalEntry>, StoreError> {
        self.journal_since(run, i64::MIN)
    }

    fn audit(&self, run: RunId) -> Result<Vec<AuditEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT at, operator, server, step, command, exit_code, output FROM audit
                 WHERE run = ?1 ORDER BY id",
            )
            .map_err(q)?;
        let rows = stmt
            .query_map([run], |r| {
                Ok(AuditEntry {
                    run,
                    at: r.get::<_, i64>(0)? as Millis,
                    operator: r.get(1)?,
                    server: r.get(2)?,
                    step: r.get(3)?,
                    command: r.get(4)?,
                    exit_code: r.get(5)?,
                    output_excerpt: r.get(6)?,
                })
            })
            .map_err(q)?;
        rows.collect::<Result<_, _>>().map_err(q)
    }

    fn acquire_lease(&mut self, lease: &Lease, now: Millis) -> Result<Option<Lease>, StoreError> {
        self.acquire_leases(std::slice::from_ref(lease), now)
    }

    fn acquire_leases(
        &mut self,
        leases: &[Lease],
        now: Millis,
    ) -> Result<Option<Lease>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(q)?;
        for lease in leases {
            // Refused: the transaction rolls back, nothing of this call is kept.
            if let Some(held) = take_lease(&tx, self.lease_columns, lease, now)? {
                return Ok(Some(held));
            }
        }
        tx.commit().map_err(q)?;
        Ok(None)
    }

    fn store_id(&self) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(q)
    }

    fn set_durability(&mut self, durability: Durability) -> Result<(), StoreError> {
        let level = match durability {
            Durability::PowerLoss => "FULL",
            Durability::ProcessCrash => "NORMAL",
        };
        self.conn
            .pragma_update(None, "synchronous", level)
            .map_err(q)
    }

    fn durability(&self) -> Result<Durability, StoreError> {
        let level: i64 = self
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .map_err(q)?;
        // 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA: in WAL mode only FULL and EXTRA sync each commit.
        Ok(if level >= 2 {
            Durability::PowerLoss
        } else {
            Durability::ProcessCrash
        })
    }

    fn release_leases(&mut self, run: RunId, instance: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM leases WHERE run = ?1 AND instance = ?2",
                params![run, instance],
            )
            .map_err(q)?;
        Ok(())
    }

    fn claim_run(&mut self, run: RunId, instance: &str) -> Result<u64, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(q)?;
        let other: Option<(i64, String)> = tx
            .query_row(
                "SELECT generation, instance FROM leases WHERE run = ?1 AND instance <> ?2 LIMIT 1",
                params![run, instance],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(q)?;
        let current: i64 = tx
            .query_row("SELECT generation FROM runs WHERE id = ?1", [run], |r| {
                r.get(0)
            })
            .optional()
            .map_err(q)?
            .ok_or(StoreError::NoSuchRun(run))?;
        if let Some((_, by)) = other {
            return Err(StoreError::Fenced {
                run,
                held: current as u64,
                current: current as u64,
                by,
            });
        }
        let generation = current + 1;
        tx.execute(
            "UPDATE runs SET generation = ?1, controller = ?2 WHERE id = ?3",
            params![generation, instance, run],
        )
        .map_err(q)?;
        tx.execute(
            "UPDATE leases SET generation = ?1 WHERE run = ?2 AND instance = ?3",
            params![generation, run, instance],
        )
        .map_err(q)?;
        tx.commit().map_err(q)?;
        self.fence = Some((run, generation as u64));
        Ok(generation as u64)
    }

    fn break_lease(&mut self, pool: &str) -> Result<Option<Lease>, StoreError> {
        let pool = pool.to_ascii_lowercase();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(q)?;
        let held = read_lease(&tx, self.lease_columns, &pool)?;
        tx.execute("DELETE FROM leases WHERE pool = ?1", [&pool])
            .map_err(q)?;
        tx.commit().map_err(q)?;
        Ok(held)
    }

    fn break_lease_held_by(
        &mut self,
        pool: &str,
        instance: &str,
    ) -> Result<Option<Lease>, StoreError> {
        let pool = pool.to_ascii_lowercase();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(q)?;
        let held = read_lease(&tx, self.lease_columns, &pool)?.filter(|l| l.instance == instance);
        if held.is_some() {
            tx.execute(
                "DELETE FROM leases WHERE pool = ?1 AND instance = ?2",
                params![pool, instance],
            )
            .map_err(q)?;
        }
        tx.commit().map_err(q)?;
        Ok(held)
    }

    fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {} FROM leases ORDER BY pool",
                self.lease_columns
            ))
            .map_err(q)?;
        let rows = stmt.query_map([], lease_from_row).map_err(q)?;
        rows.collect::<Result<_, _>>().map_err(q)
    }

    fn step_stats(&self, role: ServerKind, exclude: RunId) -> Result<Vec<StepStat>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT step, SUM(n), CAST(SUM(total) AS REAL) / SUM(n) FROM (
                     SELECT step, samples AS n, total_ms AS total FROM step_totals
                     WHERE role = ?1 AND run <> ?2
                     UNION ALL
                     SELECT step, COUNT(*), SUM(duration_ms) FROM step_durations
                     WHERE role = ?1 AND run <> ?2 GROUP BY step
                 ) GROUP BY step ORDER BY step",
            )
            .map_err(q)?;
        let rows = stmt
            .query_map(params![role.as_str(), exclude], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, f64>(2)?,
                ))
            })
            .map_err(q)?;
        let mut out = Vec::new();
        for row in rows {
            let (step, n, mean) = row.map_err(q)?;
            let step = StepId::parse(&step).ok_or_else(|| corrupt(format!("step '{step}'")))?;
            out.push(StepStat {
                step,
                samples: n as u64,
                mean_ms: mean.round() as Millis,
            });
        }
        Ok(out)
    }
    fn journal_since(&self, run: RunId, after: i64) -> Result<Vec<JournalEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, server, at, record FROM journal WHERE run = ?1 AND seq > ?2
                 ORDER BY seq",
            )
            .map_err(q)?;
        let rows = stmt
            .query_map(params![run, after], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(q)?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, server, at, text) = row.map_err(q)?;
            let record = serde_json::from_str(&text)
                .map_err(|e| corrupt(format!("journal record {seq}: {e}")))?;
            out.push(JournalEntry {
                seq,
                run,
                server,
                at: at as Millis,
                record,
            });
        }
        Ok(out)
    }

    fn request_stop(
        &mut self,
        run: RunId,
        by: &str,
        at: Millis,
    ) -> Result<StopRequest, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(q)?;
        let generation: i64 = tx
            .query_row("SELECT generation FROM runs WHERE id = ?1", [run], |r| {
                r.get(0)
            })
            .optional()
            .map_err(q)?
            .ok_or(StoreError::NoSuchRun(run))?;
        tx.execute(
            "INSERT INTO stop_requests (run, generation, requested_by, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (run) DO UPDATE SET generation = excluded.generation,
                 requested_by = excluded.requested_by, at = excluded.at",
            params![run, generation, by, at as i64],
        )
        .map_err(q)?;
        tx.execute(
            "INSERT INTO audit (run, at, operator, server, step, command, exit_code, output)
             VALUES (?1, ?2, ?3, '', ?4, NULL, NULL, ?5)",
            params![
                run,
                at as i64,
                by,
                crate::STOP_REQUESTED_STEP,
                crate::STOP_REQUESTED_TEXT
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
        self.conn
            .query_row(
                "SELECT generation, requested_by, at FROM stop_requests WHERE run = ?1",
                [run],
                |r| {
                    Ok(StopRequest {
                        generation: r.get::<_, i64>(0)? as u64,
                        by: r.get(1)?,
                        at: r.get::<_, i64>(2)? as Millis,
                    })
                },
            )
            .optional()
            .map_err(q)
    }

    fn host_key(&self, server: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT fingerprint FROM host_keys WHERE server = ?1",
                [server.to_ascii_lowercase()],
                |r| r.get(0),
            )
            .optional()
            .map_err(q)
    }

    fn pin_host_key(&mut self, server: &str, fingerprint: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO host_keys (server, fingerprint) VALUES (?1, ?2)
                 ON CONFLICT (server) DO UPDATE SET fingerprint = excluded.fingerprint",
                params![server.to_ascii_lowercase(), fingerprint],
            )
            .map_err(q)?;
        Ok(())
    }
}

/// Takes or renews `lease` inside `tx`, unless another controller instance holds an unexpired
/// one: then returns that.
fn take_lease(
    tx: &Connection,
    columns: &str,
    lease: &Lease,
    now: Millis,
) -> Result<Option<Lease>, StoreError> {
    let pool = lease.pool.to_ascii_lowercase();
    let held = read_lease(tx, columns, &pool)?;
    // One live controller per run: a lease is renewed by the controller instance that
    // holds it (its generation kept); anyone else waits for it to expire.
    if let Some(held) = held
        && !same_controller(&held, lease)
        && held.expires_at > now
    {
        return Ok(Some(held));
    }
    tx.prepare_cached(
        "INSERT INTO leases (pool, run, holder, host, pid, expires_at, instance, generation)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)
         ON CONFLICT(pool) DO UPDATE SET run = excluded.run, holder = excluded.holder,
         host = excluded.host, pid = excluded.pid, expires_at = excluded.expires_at,
         generation = CASE WHEN leases.run = excluded.run AND leases.instance = excluded.instance
             THEN leases.generation ELSE 0 END,
         instance = excluded.instance",
    )
    .and_then(|mut st| {
        st.execute(params![
            pool,
            lease.run,
            lease.holder,
            lease.host,
            lease.pid,
            lease.expires_at as i64,
            lease.instance
        ])
    })
    .map_err(q)?;
    Ok(None)
}

fn lease_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Lease> {
    Ok(Lease {
        pool: r.get(0)?,
        run: r.get(1)?,
        holder: r.get(2)?,
        host: r.get(3)?,
        pid: r.get(4)?,
        expires_at: r.get::<_, i64>(5)? as Millis,
        instance: r.get(6)?,
        generation: r.get::<_, i64>(7)? as u64,
    })
}

fn read_lease(conn: &Connection, columns: &str, pool: &str) -> Result<Option<Lease>, StoreError> {
    conn.prepare_cached(&format!("SELECT {columns} FROM leases WHERE pool = ?1"))
        .and_then(|mut st| st.query_row([pool], lease_from_row))
        .optional()
        .map_err(q)
}

fn insert_records(
    tx: &Connection,
    at: Millis,
    scope: &Scope<'_>,
    records: &[Record],
    audit: Option<&AuditEntry>,
) -> Result<(), StoreError> {
    let mut insert = tx
        .prepare_cached("INSERT INTO journal (run, server, at, record) VALUES (?1, ?2, ?3, ?4)")
        .map_err(q)?;
    let mut durations = tx
        .prepare_cached(
            "INSERT INTO step_totals (run, role, step, samples, total_ms) VALUES (?1, ?2, ?3, 1, ?4)
             ON CONFLICT (role, step, run) DO UPDATE
             SET samples = samples + 1, total_ms = total_ms + excluded.total_ms",
        )
        .map_err(q)?;
    for record in records {
        let text = serde_json::to_string(record).map_err(|e| corrupt(e.to_string()))?;
        insert
            .execute(params![scope.run, scope.server, at as i64, text])
            .map_err(q)?;
        if let Record::StepResult {
            step,
            result: sfbpatch_engine::StepResultKind::Succeeded,
            duration_ms,
            ..
        } = record
        {
            durations
                .execute(params![
                    scope.run,
                    scope.role.as_str(),
                    step.as_str(),
                    *duration_ms as i64
                ])
                .map_err(q)?;
        }
    }
    if let Some(a) = audit {
        tx.prepare_cached(
            "INSERT INTO audit (run, at, operator, server, step, command, exit_code, output)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(q)?
        .execute(params![
            a.run,
            a.at as i64,
            a.operator,
            a.server,
            a.step,
            a.command,
            a.exit_code,
            a.output_excerpt
        ])
        .map_err(q)?;
    }
    Ok(())
}
