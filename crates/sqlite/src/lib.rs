//! What sfbpatch's SQLite files (the state store and the lab's world) share.
//!
//! Both are in WAL mode and commit once per step. SQLite checkpoints (copies the write-ahead
//! log back into the database file, syncing both) inside the commit that crosses
//! `wal_autocheckpoint`: the process that commits waits on the disk, for megabytes, every few
//! thousand commits. A [`Checkpointer`] does that work on a thread of its own, beside the
//! commits.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the checkpointer looks at the log.
const INTERVAL: Duration = Duration::from_millis(100);

/// Checkpoints a database in WAL mode from a connection and thread of its own until dropped.
///
/// Every [`INTERVAL`] a passive checkpoint copies what has committed (it never waits for, nor
/// blocks, a writer). Once the log holds more than `restart_frames` frames, a restarting
/// checkpoint follows: writers wait only for its last frames and syncs, and the next commit
/// writes the log from its start again, so the log stays about that size. The connection the
/// commits use keeps an `wal_autocheckpoint` of its own as a backstop, set above
/// `restart_frames`.
///
/// A checkpoint changes nothing a reader or writer sees: it is safe at any moment, and a
/// checkpoint that fails (a busy database) is tried again at the next interval.
pub struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path`, which must already be in WAL mode.
    pub fn start(path: &Path, restart_frames: i64) -> rusqlite::Result<Self> {
        let conn = rusqlite::Connection::open(path)?;
        // No waiting: a checkpoint that would have to wait for a writer, or for a reader still
        // on an older snapshot (a dashboard, `status`), gives up at once and is tried again;
        // it never holds writers back while it waits.
        conn.busy_timeout(Duration::ZERO)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(INTERVAL);
                    if log_frames(&conn, "PASSIVE").is_ok_and(|log| log > restart_frames) {
                        let _ = log_frames(&conn, "RESTART");
                    }
                }
            })
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

/// Runs a checkpoint of `mode`: the frames in the log then.
fn log_frames(conn: &rusqlite::Connection, mode: &str) -> rusqlite::Result<i64> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get(1))
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the committing connection's own checkpoints off, the checkpointer alone keeps the
    /// log near its size, and every commit is in the database file once it is dropped.
    #[test]
    fn the_log_stays_near_its_size_while_commits_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        let checkpointer = Checkpointer::start(&path, 64).unwrap();
        let mut most = 0;
        for _ in 0..1000 {
            conn.execute("INSERT INTO t VALUES (zeroblob(2000))", [])
                .unwrap();
            std::thread::sleep(Duration::from_millis(1));
            let log_bytes = std::fs::metadata(dir.path().join("db-wal")).map_or(0, |m| m.len());
            most = most.max(log_bytes);
        }
        drop(checkpointer);
        // 1,000 commits of a 2 KB row (a 4 KB page each, and a split every other one) would be
        // about 8 MB of log without checkpoints that restart it; with them, it is the restart
        // size and what commits in one interval, under 1 MB.
        assert!(most < 2_000_000, "the log grew to {most} bytes");
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1000);
    }
}
