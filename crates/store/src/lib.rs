//! State stores for sfbpatch: [`SqliteStore`] (the default, one file) and, with a URL,
//! PostgreSQL. Both implement [`sfbpatch_engine::Store`] and pass the same contract suite
//! (`tests/contract.rs`).

mod postgres;
mod sqlite;
mod tls;

pub use self::postgres::PgStore;
pub use sqlite::SqliteStore;

use sfbpatch_engine::{Millis, RunId, RunRecord, RunState, Store, StoreError};

/// The version of the stores' schema; a store written by a newer build is refused.
pub const SCHEMA_VERSION: i64 = 1;

/// A name for a new store that no other store has: where it was made (printable ASCII, at
/// most 200 characters, for people) and 64 random bits. Written once into `meta` as
/// `store_id` and never changed, so a run is the same holder of a server's lock whatever path
/// or URL later opens its store.
fn new_store_id(location: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut bits = std::collections::hash_map::RandomState::new().build_hasher();
    bits.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    bits.write_u32(std::process::id());
    let place: String = location
        .chars()
        .map(|c| {
            if (' '..='~').contains(&c) && c != '#' {
                c
            } else {
                '?'
            }
        })
        .take(200)
        .collect();
    format!("{place}~{:016x}", bits.finish())
}

/// The audit line of a stop request ([`Store::request_stop`]): its `step` and its text.
pub const STOP_REQUESTED_STEP: &str = "stop-requested";
pub const STOP_REQUESTED_TEXT: &str = "asked the run to stop at the next step boundary";

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

fn run_record(
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

/// Open the store named by `location`: a `postgres://` (or `postgresql://`) URL, or a file
/// path (SQLite), optionally written `sqlite:PATH`.
pub fn open(location: &str) -> Result<Box<dyn Store>, StoreError> {
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        return Ok(Box::new(PgStore::open(location)?));
    }
    let path = location.strip_prefix("sqlite:").unwrap_or(location);
    Ok(Box::new(SqliteStore::open(std::path::Path::new(path))?))
}

/// Opens the store of earlier runs: a SQLite file that does not exist or holds no store is
/// refused ([`StoreError::NoStore`]) and left untouched.
pub fn open_existing(location: &str) -> Result<Box<dyn Store>, StoreError> {
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        return Ok(Box::new(PgStore::open_existing(location)?));
    }
    let path = location.strip_prefix("sqlite:").unwrap_or(location);
    Ok(Box::new(SqliteStore::open_existing(std::path::Path::new(
        path,
    ))?))
}
