//! A bounded pool of connections: at most `limit` open at once, one per server, shared by every
//! call for that server (SSH multiplexes channels over one connection). A server that needs a
//! connection when the pool is full takes the slot of the least recently used connection that
//! has been idle for at least `min_idle`, or waits for one. The grace keeps a server that runs
//! its steps back to back (in its outage window, say) from losing its connection between two
//! of them to a server that has just started.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// What the pool needs to know about a connection.
pub(crate) trait Conn: Send + Sync + 'static {
    /// The connection can no longer carry a channel.
    fn is_closed(&self) -> bool;
    /// Close it politely (in the background); called when its slot is taken.
    fn close(self: Arc<Self>);
}

pub(crate) struct Pool<C: Conn> {
    shared: Arc<Shared<C>>,
}

struct Shared<C> {
    limit: usize,
    min_idle: Duration,
    permits: Arc<Semaphore>,
    slots: Mutex<HashMap<String, Arc<Slot<C>>>>,
    /// Signalled when a connection becomes idle (it may now be evicted).
    idle: Notify,
    opened: AtomicUsize,
}

struct Slot<C> {
    /// Held while connecting, so that one server gets one connection.
    live: tokio::sync::Mutex<Option<Live<C>>>,
    users: AtomicUsize,
    last_used: Mutex<Instant>,
    /// Its server said it is done for now: evictable at once.
    retired: AtomicBool,
}

struct Live<C> {
    conn: Arc<C>,
    _permit: OwnedSemaphorePermit,
}

/// A connection in use. Dropping it makes the connection idle (it stays open for reuse).
pub(crate) struct Lease<C: Conn> {
    conn: Arc<C>,
    slot: Arc<Slot<C>>,
    shared: Arc<Shared<C>>,
}

impl<C: Conn> std::ops::Deref for Lease<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.conn
    }
}

impl<C: Conn> Lease<C> {
    /// Done with the connection for a while (the server's procedure is over): when the pool
    /// is full, it goes first, without waiting for the idle grace.
    pub(crate) fn retire(self) {
        self.slot.retired.store(true, Ordering::SeqCst);
    }
}

impl<C: Conn> Drop for Lease<C> {
    fn drop(&mut self) {
        *self
            .slot
            .last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Instant::now();
        if self.slot.users.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.shared.idle.notify_waiters();
        }
    }
}

impl<C: Conn> Pool<C> {
    pub(crate) fn new(limit: usize, min_idle: Duration) -> Self {
        Pool {
            shared: Arc::new(Shared {
                limit: limit.max(1),
                min_idle,
                permits: Arc::new(Semaphore::new(limit.max(1))),
                slots: Mutex::new(HashMap::new()),
                idle: Notify::new(),
                opened: AtomicUsize::new(0),
            }),
        }
    }

    fn slot(&self, server: &str) -> Arc<Slot<C>> {
        let mut slots = self.shared.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .entry(server.to_ascii_lowercase())
            .or_insert_with(|| {
                Arc::new(Slot {
                    live: tokio::sync::Mutex::new(None),
                    users: AtomicUsize::new(0),
                    last_used: Mutex::new(Instant::now()),
                    retired: AtomicBool::new(false),
                })
            })
            .clone()
    }

    /// The server's open connection, or a new one from `connect` once the pool has room.
    pub(crate) async fn acquire<F, Fut, E>(&self, server: &str, connect: F) -> Result<Lease<C>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<C, E>>,
    {
        let slot = self.slot(server);
        let mut live = slot.live.lock().await;
        if let Some(l) = live.as_ref()
            && !l.conn.is_closed()
        {
            return Ok(self.lease(&slot, l.conn.clone()));
        }
        if let Some(dead) = live.take() {
            dead.conn.close();
        }
        let permit = self.permit(server).await;
        let conn = Arc::new(connect().await?);
        self.shared.opened.fetch_add(1, Ordering::SeqCst);
        *live = Some(Live {
            conn: conn.clone(),
            _permit: permit,
        });
        Ok(self.lease(&slot, conn))
    }

    fn lease(&self, slot: &Arc<Slot<C>>, conn: Arc<C>) -> Lease<C> {
        slot.users.fetch_add(1, Ordering::SeqCst);
        slot.retired.store(false, Ordering::SeqCst);
        Lease {
            conn,
            slot: slot.clone(),
            shared: self.shared.clone(),
        }
    }

    /// Forget the server's connection if it is still `conn` (after it was lost, or before a
    /// reboot), so that the next call connects again.
    pub(crate) async fn discard(&self, server: &str, conn: &Lease<C>) {
        let slot = self.slot(server);
        let mut live = slot.live.lock().await;
        if live
            .as_ref()
            .is_some_and(|l| Arc::ptr_eq(&l.conn, &conn.conn))
            && let Some(old) = live.take()
        {
            old.conn.close();
        }
    }

    async fn permit(&self, server: &str) -> OwnedSemaphorePermit {
        loop {
            let notified = self.shared.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Ok(p) = self.shared.permits.clone().try_acquire_owned() {
                return p;
            }
            if self.evict_idle(server) {
                continue;
            }
            tokio::select! {
                p = self.shared.permits.clone().acquire_owned() => {
                    return p.expect("the pool's semaphore is never closed");
                }
                () = &mut notified => {}
                // Idle connections become evictable with time; and a safety net against a
                // wake-up lost between the checks above.
                () = tokio::time::sleep(self.shared.min_idle.clamp(
                    Duration::from_millis(10),
                    Duration::from_millis(100),
                )) => {}
            }
        }
    }

    /// Close the least recently used connection of another server that has been idle for
    /// `min_idle`. True if one was closed (its permit is then free).
    fn evict_idle(&self, except: &str) -> bool {
        let except = except.to_ascii_lowercase();
        let now = Instant::now();
        let mut candidates: Vec<(bool, Instant, Arc<Slot<C>>)> = {
            let slots = self.shared.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots
                .iter()
                .filter(|(k, s)| **k != except && s.users.load(Ordering::SeqCst) == 0)
                .map(|(_, s)| {
                    let at = *s.last_used.lock().unwrap_or_else(|e| e.into_inner());
                    (!s.retired.load(Ordering::SeqCst), at, s.clone())
                })
                .collect()
        };
        candidates
            .retain(|(active, at, _)| !active || now.duration_since(*at) >= self.shared.min_idle);
        // Retired ones first, then the least recently used.
        candidates.sort_by_key(|(active, at, _)| (*active, *at));
        for (_, _, slot) in candidates {
            let Ok(mut live) = slot.live.try_lock() else {
                continue;
            };
            // Users only grow while `live` is held, so this check holds until we let go.
            if slot.users.load(Ordering::SeqCst) == 0
                && let Some(old) = live.take()
            {
                old.conn.close();
                return true;
            }
        }
        false
    }

    /// How many connections are open (or being opened) now.
    pub(crate) fn open(&self) -> usize {
        self.shared.limit - self.shared.permits.available_permits()
    }

    /// How many connections were opened since the pool was made.
    pub(crate) fn opened(&self) -> usize {
        self.shared.opened.load(Ordering::SeqCst)
    }

    /// Forget the server's connection, whatever it is (a restart makes it useless).
    pub(crate) async fn forget(&self, server: &str) {
        let slot = self.slot(server);
        if let Some(old) = slot.live.lock().await.take() {
            old.conn.close();
        }
    }

    /// Take every connection out of the pool, to close them.
    pub(crate) async fn take_all(&self) -> Vec<Arc<C>> {
        let slots: Vec<Arc<Slot<C>>> = {
            let slots = self.shared.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.values().cloned().collect()
        };
        let mut out = Vec::new();
        for slot in slots {
            if let Some(old) = slot.live.lock().await.take() {
                out.push(old.conn);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        closed: AtomicBool,
        alive: Arc<AtomicUsize>,
    }

    impl Conn for Fake {
        fn is_closed(&self) -> bool {
            self.closed.load(Ordering::SeqCst)
        }
        fn close(self: Arc<Self>) {
            self.closed.store(true, Ordering::SeqCst);
            self.alive.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn fake(alive: &Arc<AtomicUsize>) -> Result<Fake, ()> {
        alive.fetch_add(1, Ordering::SeqCst);
        Ok(Fake {
            closed: AtomicBool::new(false),
            alive: alive.clone(),
        })
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn reuses_one_connection_per_server() {
        rt().block_on(async {
            let alive = Arc::new(AtomicUsize::new(0));
            let pool = Pool::new(2, Duration::ZERO);
            let a = pool.acquire("a", || async { fake(&alive) }).await.unwrap();
            let a2 = pool.acquire("A", || async { fake(&alive) }).await.unwrap();
            assert!(Arc::ptr_eq(&a.conn, &a2.conn));
            drop((a, a2));
            let _a3 = pool.acquire("a", || async { fake(&alive) }).await.unwrap();
            assert_eq!(pool.opened(), 1);
            assert_eq!(alive.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn a_full_pool_closes_the_least_recently_used_idle_connection() {
        rt().block_on(async {
            let alive = Arc::new(AtomicUsize::new(0));
            let pool = Pool::new(2, Duration::ZERO);
            drop(pool.acquire("a", || async { fake(&alive) }).await.unwrap());
            tokio::time::sleep(Duration::from_millis(5)).await;
            drop(pool.acquire("b", || async { fake(&alive) }).await.unwrap());
            let _c = pool.acquire("c", || async { fake(&alive) }).await.unwrap();
            assert_eq!(alive.load(Ordering::SeqCst), 2);
            assert_eq!(pool.open(), 2);
            // "a" was evicted, "b" is still there.
            let b: Result<Lease<Fake>, ()> = pool
                .acquire("b", || async { panic!("b must be reused") })
                .await;
            assert!(b.is_ok());
            assert_eq!(pool.opened(), 3);
        });
    }

    #[test]
    fn a_connection_idle_for_less_than_the_grace_is_not_taken() {
        rt().block_on(async {
            let alive = Arc::new(AtomicUsize::new(0));
            let pool = Pool::new(1, Duration::from_millis(300));
            drop(pool.acquire("a", || async { fake(&alive) }).await.unwrap());
            let started = Instant::now();
            drop(pool.acquire("b", || async { fake(&alive) }).await.unwrap());
            assert!(
                started.elapsed() >= Duration::from_millis(250),
                "{:?}",
                started.elapsed()
            );
            assert_eq!(alive.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn a_retired_connection_is_taken_at_once() {
        rt().block_on(async {
            let alive = Arc::new(AtomicUsize::new(0));
            let pool = Pool::new(1, Duration::from_secs(30));
            pool.acquire("a", || async { fake(&alive) })
                .await
                .unwrap()
                .retire();
            let started = Instant::now();
            drop(pool.acquire("b", || async { fake(&alive) }).await.unwrap());
            assert!(started.elapsed() < Duration::from_secs(5));
            assert_eq!(alive.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn waits_while_every_connection_is_busy_and_never_exceeds_the_limit() {
        rt().block_on(async {
            let alive = Arc::new(AtomicUsize::new(0));
            let pool = Arc::new(Pool::new(3, Duration::ZERO));
            let peak = Arc::new(AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for i in 0..20 {
                let (pool, alive, peak) = (pool.clone(), alive.clone(), peak.clone());
                tasks.push(tokio::spawn(async move {
                    for round in 0..3 {
                        let server = format!("s{}", (i + round) % 7);
                        let lease = pool
                            .acquire(&server, || async { fake(&alive) })
                            .await
                            .unwrap();
                        peak.fetch_max(alive.load(Ordering::SeqCst), Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        drop(lease);
                    }
                }));
            }
            for t in tasks {
                tokio::time::timeout(Duration::from_secs(20), t)
                    .await
                    .expect("no deadlock")
                    .unwrap();
            }
            assert!(peak.load(Ordering::SeqCst) <= 3, "{peak:?}");
        });
    }

    #[test]
    fn a_closed_or_discarded_connection_is_replaced() {
        rt().block_on(async {
            let alive = Arc::new(AtomicUsize::new(0));
            let pool = Pool::new(1, Duration::ZERO);
            let a = pool.acquire("a", || async { fake(&alive) }).await.unwrap();
            a.closed.store(true, Ordering::SeqCst);
            drop(a);
            let a = pool.acquire("a", || async { fake(&alive) }).await.unwrap();
            assert_eq!(pool.opened(), 2);
            pool.discard("a", &a).await;
            assert!(a.is_closed());
            drop(a);
            drop(pool.acquire("a", || async { fake(&alive) }).await.unwrap());
            assert_eq!(pool.opened(), 3);
            // A failed connect leaves the slot free for the next attempt.
            let b: Result<Lease<Fake>, ()> = pool.acquire("b", || async { Err(()) }).await;
            assert!(b.is_err());
            drop(pool.acquire("b", || async { fake(&alive) }).await.unwrap());
            assert_eq!(alive.load(Ordering::SeqCst), 1);
        });
    }
}
