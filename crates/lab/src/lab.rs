//! Creating, opening and reading a lab.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;
use sfbpatch_engine::Millis;
use sfbpatch_plan::{Build, ServerKind, StepId};
use sfbpatch_topology::{Deployment, Edition, StoreKind};
use sha2::{Digest, Sha256};

use crate::db::{self, BuildCol};
use crate::faults::{Fault, FaultKind};
use crate::rules::{self, MINUTE, RESILIENCY_AFTER};
use crate::snapshot::{
    DatabaseSnapshot, FrontEnds, Interval, LabSnapshot, PoolMode, PoolSnapshot, Runs,
    ServerSnapshot, ServiceSnapshot, ServiceState, SqlInstanceSnapshot,
};
use crate::{LabClock, LabError, LabTarget};

/// The file in a lab folder that holds the world.
pub const LAB_DB: &str = "lab.db";

/// How a new lab starts.
#[derive(Debug, Clone, PartialEq)]
pub struct LabOptions {
    /// The build every server starts at.
    pub build: Build,
    /// Simulated seconds per real second; 0 = steps take no real time.
    pub speed: f64,
    /// The account that acts on the servers.
    pub operator: String,
    pub faults: Vec<Fault>,
    /// Back-end (or store) SQL Server machines that have the Skype for Business Core
    /// Components and Management Shell installed, besides those the inventory marks.
    pub sfb_components: Vec<String>,
    /// The calendar instant (Unix milliseconds) that virtual time 0 stands for; the caller
    /// gives its wall clock's reading (the lab reads no clock of its own).
    pub epoch_unix_ms: i64,
    /// Step durations with seeded per-server variance and occasional slow servers
    /// ([`rules::varied_step_duration`]), so that the engine's predictions can miss; `None`:
    /// every step takes the table's time ([`rules::step_duration`]). Recorded in the lab.
    pub variance: Option<u64>,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            build: rules::DEFAULT_BUILD,
            speed: 0.0,
            operator: rules::DEFAULT_OPERATOR.to_string(),
            faults: Vec::new(),
            sfb_components: Vec::new(),
            epoch_unix_ms: 0,
            variance: None,
        }
    }
}

/// A lab: a simulated deployment whose state lives in `DIR/lab.db`. Every process that opens
/// the same folder sees the same world.
#[derive(Clone)]
pub struct Lab {
    shared: Arc<Shared>,
}

/// What a lab's handles share: one connection and the facts that never change after `init`.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub db_path: PathBuf,
    conn: Mutex<Connection>,
    pub speed: f64,
    pub operator: String,
    pub epoch_unix_ms: i64,
    /// The seed of the step durations' variance, if the lab has it.
    pub variance: Option<u64>,
    pub initial_build: Build,
    /// Server ids by lower-case FQDN.
    pub servers: HashMap<String, i64>,
    /// The (server, step) pairs that have faults, so that other steps skip the lookup.
    pub fault_steps: HashSet<(i64, StepId)>,
    /// The last clock value read, for [`sfbpatch_engine::Clock::now`] when the database fails.
    pub last_now: AtomicU64,
    /// Checkpoints `lab.db` beside the commits of the operations (`db::connect`), once a
    /// target drives them ([`Lab::target`]); a lab opened to be read or changed by hand
    /// checkpoints as SQLite does by itself, as does one whose checkpointer could not start
    /// (`None`).
    checkpointer: std::sync::OnceLock<Option<sfbpatch_sqlite::Checkpointer>>,
    /// The time of the engine's current event (`Clock::set`, simulated time): the start of the
    /// operation it carries out next, then its end. The world's clock (`now_ms`) only moves
    /// forward: it is the latest end of any operation.
    event: Mutex<Option<i64>>,
    /// At a real-time speed, the wall instant and world time this process started from: the
    /// world's time runs with the wall clock, `speed` times faster.
    anchor: (std::time::Instant, i64),
    hashes: Mutex<HashMap<PathBuf, FileHash>>,
}

struct FileHash {
    len: u64,
    modified: Option<SystemTime>,
    sha256: String,
}

impl Shared {
    /// Runs `f` in one immediate (writing) transaction.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// The world's time by the wall clock, at a real-time speed.
    fn wall_now(&self) -> Option<i64> {
        (self.speed > 0.0).then(|| {
            let elapsed = self.anchor.0.elapsed().as_secs_f64() * 1000.0 * self.speed;
            self.anchor.1.saturating_add(elapsed as i64)
        })
    }

    /// When an operation starting now starts: at the engine's event (simulated time); at a
    /// real-time speed when the engine asked for it (so the journal and the world agree to
    /// the millisecond), or by the wall clock for another process's requests (never before
    /// the world's clock); at speed 0 without an engine, at the world's clock.
    pub fn op_time(&self, tx: &Connection) -> rusqlite::Result<i64> {
        if let Some(at) = *self.event.lock().unwrap_or_else(PoisonError::into_inner) {
            return Ok(at);
        }
        let now = db::now(tx)?;
        let Some(wall) = self.wall_now() else {
            return Ok(now);
        };
        match crate::target::REQUESTED_AT.with(std::cell::Cell::get) {
            Some(at) => Ok(at),
            None => Ok(wall.max(now)),
        }
    }

    /// Whether the engine drives the time of operations (simulated time).
    pub fn event_driven(&self) -> bool {
        self.event
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// The engine's next operation happens at `at` (simulated time).
    pub fn set_event(&self, at: Millis) {
        *self.event.lock().unwrap_or_else(PoisonError::into_inner) = Some(db::ms(at));
        self.last_now.fetch_max(at, Ordering::Relaxed);
    }

    /// An operation the engine drives ended at `end`: its next reading of the clock.
    pub fn event_ended(&self, end: i64) {
        let mut event = self.event.lock().unwrap_or_else(PoisonError::into_inner);
        if event.is_some() {
            *event = Some(end);
        }
    }

    /// Runs `f` in one read transaction: it sees a single state of the world.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// The clock as the engine reads it: its current event in simulated time, otherwise the
    /// world's time (running with the wall clock at a real-time speed).
    pub fn now(&self) -> rusqlite::Result<Millis> {
        if let Some(at) = *self.event.lock().unwrap_or_else(PoisonError::into_inner) {
            return Ok(u64::try_from(at).unwrap_or(0));
        }
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let mut now = db::now(&conn)?;
        if let Some(wall) = self.wall_now() {
            now = now.max(wall);
        }
        let now = u64::try_from(now).unwrap_or(0);
        self.last_now.fetch_max(now, Ordering::Relaxed);
        Ok(now)
    }

    pub fn server_id(&self, fqdn: &str) -> Option<i64> {
        self.servers.get(&fqdn.to_ascii_lowercase()).copied()
    }

    /// The SHA-256 of a local file, remembered while its size and modification time stay.
    pub fn hash_file(&self, path: &Path) -> Result<String, String> {
        let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
        let modified = meta.modified().ok();
        {
            let cache = self.hashes.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(hit) = cache.get(path)
                && hit.len == meta.len()
                && hit.modified == modified
                && modified.is_some()
            {
                return Ok(hit.sha256.clone());
            }
        }
        let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let sha256 = hex::encode(hasher.finalize());
        self.hashes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                path.to_path_buf(),
                FileHash {
                    len: meta.len(),
                    modified,
                    sha256: sha256.clone(),
                },
            );
        Ok(sha256)
    }

    pub fn db_error(&self, source: rusqlite::Error) -> LabError {
        LabError::Database {
            path: self.db_path.clone(),
            source,
        }
    }
}

/// The deployment turned into lab rows, before anything is written.
struct Blueprint {
    instances: Vec<InstancePlan>,
    servers: Vec<ServerPlanRow>,
    pools: Vec<PoolPlan>,
}

struct InstancePlan {
    sql_server_fqdn: String,
    instance: String,
    stores: BTreeSet<StoreKind>,
    standard_edition: bool,
    collocated: BTreeSet<StoreKind>,
}

struct ServerPlanRow {
    fqdn: String,
    kind: ServerKind,
    backend: usize,
    /// A Front End server's pool (index into the pools) and its position in it.
    pool: Option<(usize, usize)>,
    upgrade_domain: Option<String>,
    /// The Skype for Business Core Components and Management Shell are installed.
    components: bool,
}

impl ServerPlanRow {
    /// What the machine runs (SPEC.md section 5): every Skype for Business server runs the
    /// services, IIS and the Management Shell; a SQL Server machine runs none of them, unless
    /// the Core Components (the Management Shell only) are installed.
    fn runs_sfb(&self) -> bool {
        matches!(
            self.kind,
            ServerKind::StandardEdition | ServerKind::FrontEnd
        )
    }
}

struct PoolPlan {
    fqdn: String,
    edition: Edition,
    /// The machines whose being out of service makes the pool's back end unavailable: the
    /// Standard Edition server, or the back end's SQL Server machines.
    members: Vec<usize>,
    /// A Get-CsPoolFabricState fault.
    missing_replicas: bool,
}

fn blueprint(deployment: &Deployment, options: &LabOptions) -> Result<Blueprint, LabError> {
    let mut instances: Vec<InstancePlan> = Vec::new();
    let mut instance_index: HashMap<(String, String), usize> = HashMap::new();
    let mut add_instance = |fqdn: &str, name: &str, stores: &BTreeSet<StoreKind>| -> usize {
        let key = (fqdn.to_ascii_lowercase(), name.to_ascii_lowercase());
        match instance_index.get(&key) {
            Some(&i) => {
                instances[i].stores.extend(stores.iter().copied());
                i
            }
            None => {
                instances.push(InstancePlan {
                    sql_server_fqdn: fqdn.to_string(),
                    instance: name.to_string(),
                    stores: stores.clone(),
                    standard_edition: false,
                    collocated: BTreeSet::new(),
                });
                instance_index.insert(key, instances.len() - 1);
                instances.len() - 1
            }
        }
    };
    let mut sql_first = Vec::with_capacity(deployment.sql_instances.len());
    for si in &deployment.sql_instances {
        sql_first.push(add_instance(
            si.sql_server_fqdn.as_str(),
            si.sql_instance.as_str(),
            &si.stores,
        ));
    }
    let mut backends = Vec::with_capacity(deployment.pools.len());
    for pool in &deployment.pools {
        let b = &pool.backend;
        backends.push(add_instance(
            b.sql_server_fqdn.as_str(),
            b.sql_instance.as_str(),
            &b.stores,
        ));
    }
    let components = |m: &sfbpatch_topology::Machine| {
        m.sfb_components
            || options
                .sfb_components
                .iter()
                .any(|f| f.eq_ignore_ascii_case(m.fqdn.as_str()))
    };

    let mut servers: Vec<ServerPlanRow> = Vec::new();
    let mut server_index: HashMap<String, usize> = HashMap::new();
    let mut add_server = |servers: &mut Vec<ServerPlanRow>,
                          row: ServerPlanRow,
                          instances: &[InstancePlan]|
     -> Result<usize, LabError> {
        let key = row.fqdn.to_ascii_lowercase();
        if let Some(&i) = server_index.get(&key) {
            // Pools whose back ends are on the same SQL Server share its machines.
            let existing = &servers[i];
            let same_sql_server = instances[existing.backend]
                .sql_server_fqdn
                .eq_ignore_ascii_case(&instances[row.backend].sql_server_fqdn);
            if existing.kind != row.kind
                || !same_sql_server
                || matches!(row.kind, ServerKind::FrontEnd | ServerKind::StandardEdition)
            {
                return Err(LabError::Deployment(format!(
                    "server {} belongs to two pools or back ends ({} as {}, and {} as {})",
                    row.fqdn,
                    instance_label(&instances[existing.backend]),
                    existing.kind.as_str(),
                    instance_label(&instances[row.backend]),
                    row.kind.as_str()
                )));
            }
            return Ok(i);
        }
        servers.push(row);
        server_index.insert(key, servers.len() - 1);
        Ok(servers.len() - 1)
    };
    let missing: Vec<String> = options
        .faults
        .iter()
        .filter(|f| matches!(f.kind, FaultKind::MissingReplicas))
        .map(|f| f.server.to_ascii_lowercase())
        .collect();
    let mut pools = Vec::with_capacity(deployment.pools.len());
    for (pool_index, (pool, &backend)) in deployment.pools.iter().zip(&backends).enumerate() {
        let instance = &mut instances[backend];
        instance
            .collocated
            .extend(pool.backend.collocated_stores.iter().copied());
        instance.standard_edition |= pool.edition == Edition::Standard;
        let mut members = Vec::new();
        match pool.edition {
            Edition::Standard => {
                for machine in &pool.machines {
                    let row = ServerPlanRow {
                        fqdn: machine.fqdn.as_str().to_string(),
                        kind: ServerKind::StandardEdition,
                        backend,
                        pool: None,
                        upgrade_domain: None,
                        components: true,
                    };
                    members.push(add_server(&mut servers, row, &instances)?);
                }
            }
            Edition::Enterprise => {
                for (ord, machine) in pool.machines.iter().enumerate() {
                    let row = ServerPlanRow {
                        fqdn: machine.fqdn.as_str().to_string(),
                        kind: ServerKind::FrontEnd,
                        backend,
                        pool: Some((pool_index, ord)),
                        upgrade_domain: machine.upgrade_domain.clone(),
                        components: true,
                    };
                    add_server(&mut servers, row, &instances)?;
                }
                for machine in &pool.backend.machines {
                    let row = ServerPlanRow {
                        fqdn: machine.fqdn.as_str().to_string(),
                        kind: ServerKind::BackEnd,
                        backend,
                        pool: None,
                        upgrade_domain: None,
                        components: components(machine),
                    };
                    let i = add_server(&mut servers, row, &instances)?;
                    if !members.contains(&i) {
                        members.push(i);
                    }
                }
            }
        }
        let fault_here = pool
            .machines
            .iter()
            .any(|m| missing.contains(&m.fqdn.key()));
        pools.push(PoolPlan {
            fqdn: pool.fqdn.as_str().to_string(),
            edition: pool.edition,
            members,
            missing_replicas: fault_here,
        });
    }
    // SQL Servers that hold stores but no pool's back end: store machines.
    for (si, &instance) in deployment.sql_instances.iter().zip(&sql_first) {
        let key = si.sql_server_fqdn.key();
        if si.stores.is_empty()
            || servers.iter().any(|s| {
                instances[s.backend].sql_server_fqdn.to_ascii_lowercase() == key
                    && !matches!(s.kind, ServerKind::FrontEnd)
            })
            || deployment.pools.iter().any(|p| p.fqdn.key() == key)
        {
            continue;
        }
        for machine in &si.machines {
            if servers
                .iter()
                .any(|s| s.fqdn.eq_ignore_ascii_case(machine.fqdn.as_str()))
            {
                continue;
            }
            let row = ServerPlanRow {
                fqdn: machine.fqdn.as_str().to_string(),
                kind: ServerKind::Store,
                backend: instance,
                pool: None,
                upgrade_domain: None,
                components: components(machine),
            };
            add_server(&mut servers, row, &instances)?;
        }
    }
    if servers.is_empty() {
        return Err(LabError::Deployment(
            "it has no Skype for Business server to patch".to_string(),
        ));
    }
    Ok(Blueprint {
        instances,
        servers,
        pools,
    })
}

fn instance_label(i: &InstancePlan) -> String {
    if i.instance.is_empty() {
        i.sql_server_fqdn.clone()
    } else {
        format!("{}\\{}", i.sql_server_fqdn, i.instance)
    }
}

/// A fault as stored: kind, value (exit code, milliseconds or count), attempts left.
/// The `step` of a fault row for a fault of the machine itself.
pub(crate) const MACHINE_STEP: &str = "(machine)";

fn fault_row(kind: &FaultKind) -> (&'static str, i64, Option<i64>) {
    let times = |t: u32| (t > 0).then_some(i64::from(t));
    let ms = |minutes: f64| (minutes * MINUTE as f64).round() as i64;
    match *kind {
        FaultKind::ExitCode { code, times: t } => ("exit_code", i64::from(code), times(t)),
        FaultKind::Duration { minutes } => ("duration", ms(minutes), Some(1)),
        FaultKind::Hang { times: t } => ("hang", 0, times(t)),
        FaultKind::Unreachable { minutes } => ("unreachable", ms(minutes), Some(1)),
        FaultKind::OpenShells { count } => ("open_shells", i64::from(count), Some(1)),
        FaultKind::DiskFull => ("disk_full", 0, None),
        // Set on the pool when the lab is made; the row only documents it.
        FaultKind::MissingReplicas => ("missing_replicas", 0, Some(0)),
        FaultKind::Busy { times: t } => (
            "exit_code",
            i64::from(sfbpatch_plan::POOL_BUSY_EXIT),
            times(t),
        ),
        // Set on the server when the lab is made; the rows only document them.
        FaultKind::RebootPending => ("reboot_pending", 0, Some(0)),
        FaultKind::OutOfService => ("out_of_service", 0, Some(0)),
        FaultKind::RestartMinutes { minutes } => ("restart", ms(minutes), Some(1)),
        FaultKind::RecoveryMinutes { minutes } => ("recovery", ms(minutes), Some(1)),
        FaultKind::SqlDown { minutes } => ("sql_down", ms(minutes), Some(1)),
        FaultKind::SqlFailover { times: t } => ("sql_failover", 0, times(t)),
        FaultKind::InstallerOutlives { minutes } => ("installer_outlives", ms(minutes), Some(1)),
        FaultKind::ProbeFails { times: t } => ("probe_fails", 0, times(t)),
    }
}

/// Creates a lab in `dir` (created if missing) from a deployment. Refuses a folder that holds
/// a lab already.
pub fn init(dir: &Path, deployment: &Deployment, options: &LabOptions) -> Result<Lab, LabError> {
    if !options.speed.is_finite() || options.speed < 0.0 {
        return Err(LabError::InvalidOption(format!(
            "speed must be 0 (no waiting) or a positive number of simulated seconds per real second, not {}",
            options.speed
        )));
    }
    if options.operator.trim().is_empty() {
        return Err(LabError::InvalidOption(
            "the operator account is empty".to_string(),
        ));
    }
    let plan = blueprint(deployment, options)?;
    let mut fault_servers = Vec::with_capacity(options.faults.len());
    for fault in &options.faults {
        let key = fault.server.to_ascii_lowercase();
        match plan
            .servers
            .iter()
            .position(|s| s.fqdn.to_ascii_lowercase() == key)
        {
            Some(i) => fault_servers.push(i),
            None => {
                let mut known: Vec<&str> = plan.servers.iter().map(|s| s.fqdn.as_str()).collect();
                if known.len() > 10 {
                    known.truncate(10);
                    known.push("...");
                }
                return Err(LabError::FaultServer {
                    origin: fault.origin.clone(),
                    line: fault.line,
                    index: fault.index,
                    server: fault.server.clone(),
                    known: known.join(", "),
                });
            }
        }
    }

    std::fs::create_dir_all(dir).map_err(|source| LabError::Io {
        action: "create the lab folder",
        path: dir.to_path_buf(),
        source,
    })?;
    let db_path = dir.join(LAB_DB);
    // Claim the file first, so that two concurrent `init`s cannot both succeed.
    if let Err(source) = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&db_path)
    {
        return Err(if source.kind() == std::io::ErrorKind::AlreadyExists {
            LabError::AlreadyExists {
                dir: dir.to_path_buf(),
            }
        } else {
            LabError::Io {
                action: "create",
                path: db_path,
                source,
            }
        });
    }
    let written = db::connect(&db_path, true)
        .and_then(|mut conn| write_world(&mut conn, &plan, options, &fault_servers));
    if let Err(source) = written {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = db_path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
        return Err(LabError::Database {
            path: db_path,
            source,
        });
    }
    Lab::open(dir)
}

fn write_world(
    conn: &mut Connection,
    plan: &Blueprint,
    options: &LabOptions,
    fault_servers: &[usize],
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(db::SCHEMA)?;
    let initial = BuildCol(options.build);
    tx.execute(
        "INSERT INTO lab (id, format, initial_build, speed, operator, now_ms, epoch_unix_ms,
                          variance_seed)
         VALUES (1, ?1, ?2, ?3, ?4, 0, ?5, ?6)",
        params![
            db::FORMAT,
            initial,
            options.speed,
            options.operator.trim(),
            options.epoch_unix_ms,
            // SQLite integers are signed: the seed's bits, as they are.
            options.variance.map(|v| v as i64)
        ],
    )?;
    for (account, group) in rules::ACCOUNTS {
        tx.execute(
            "INSERT INTO accounts (account, grp) VALUES (?1, ?2)",
            [account, group],
        )?;
    }

    let mut instance_ids = Vec::with_capacity(plan.instances.len());
    {
        let mut insert = tx.prepare(
            "INSERT INTO sql_instances
                 (sql_server_fqdn, sql_server_key, instance, instance_key, standard_edition, collocated)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut insert_db = tx.prepare(
            "INSERT INTO databases (instance_id, ord, store, name, build, version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for i in &plan.instances {
            let collocated: Vec<&str> = i.collocated.iter().map(|s| s.as_str()).collect();
            insert.execute(params![
                i.sql_server_fqdn,
                i.sql_server_fqdn.to_ascii_lowercase(),
                i.instance,
                i.instance.to_ascii_lowercase(),
                i.standard_edition,
                collocated.join(","),
            ])?;
            let id = tx.last_insert_rowid();
            instance_ids.push(id);
            let mut ord = 0;
            for store in &i.stores {
                let version = rules::derived_schema_version(*store, options.build);
                for name in store.databases() {
                    insert_db.execute(params![id, ord, store.as_str(), name, initial, version])?;
                    ord += 1;
                }
            }
        }
    }

    let mut pool_ids = Vec::with_capacity(plan.pools.len());
    {
        let mut insert =
            tx.prepare("INSERT INTO pools (fqdn, edition, missing_replicas) VALUES (?1, ?2, ?3)")?;
        for p in &plan.pools {
            insert.execute(params![p.fqdn, p.edition.as_str(), p.missing_replicas])?;
            pool_ids.push(tx.last_insert_rowid());
        }
    }

    let mut server_ids = Vec::with_capacity(plan.servers.len());
    {
        let mut insert = tx.prepare(
            "INSERT INTO servers (fqdn, fqdn_key, kind, backend_id, installed_build, previous_build,
                                  installer_runs, w3svc, open_shells, reboot_pending, in_service,
                                  pool_id, pool_ord, upgrade_domain, w3svc_present, shell_present)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, 0, ?6, 0, 0, 1, ?7, ?8, ?9, ?6, ?10)",
        )?;
        let mut insert_service = tx.prepare(
            "INSERT INTO services (server_id, ord, name, running, loaded_build)
             VALUES (?1, ?2, ?3, 1, ?4)",
        )?;
        for s in &plan.servers {
            insert.execute(params![
                s.fqdn,
                s.fqdn.to_ascii_lowercase(),
                s.kind.as_str(),
                instance_ids[s.backend],
                initial,
                s.runs_sfb(),
                s.pool.map(|(p, _)| pool_ids[p]),
                s.pool.map(|(_, ord)| ord as i64),
                s.upgrade_domain,
                s.components,
            ])?;
            let id = tx.last_insert_rowid();
            server_ids.push(id);
            if !s.runs_sfb() {
                continue;
            }
            let cms = plan.instances[s.backend]
                .stores
                .contains(&StoreKind::CentralManagement);
            let names = rules::CS_SERVICES
                .iter()
                .copied()
                .chain(cms.then_some(rules::CMS_SERVICE));
            for (ord, name) in names.enumerate() {
                insert_service.execute(params![id, ord as i64, name, initial])?;
            }
        }
    }

    // Faults of a machine's state before the run.
    for (fault, &server) in options.faults.iter().zip(fault_servers) {
        let id = server_ids[server];
        match fault.kind {
            FaultKind::RebootPending => {
                tx.execute("UPDATE servers SET reboot_pending = 1 WHERE id = ?1", [id])?;
            }
            FaultKind::OutOfService if plan.servers[server].runs_sfb() => {
                tx.execute("UPDATE services SET running = 0 WHERE server_id = ?1", [id])?;
                tx.execute("UPDATE servers SET in_service = 0 WHERE id = ?1", [id])?;
                db::record_transition(&tx, id, false, 0)?;
            }
            _ => {}
        }
    }

    {
        let mut member =
            tx.prepare("INSERT INTO pool_members (pool_id, server_id) VALUES (?1, ?2)")?;
        for (p, &id) in plan.pools.iter().zip(&pool_ids) {
            for &m in &p.members {
                member.execute([id, server_ids[m]])?;
            }
        }
        for (p, &id) in plan.pools.iter().zip(&pool_ids) {
            if p.edition == Edition::Enterprise {
                crate::frontend::record_pool_state(&tx, id, 0)?;
            }
        }
    }

    {
        let mut insert = tx.prepare(
            "INSERT INTO faults (idx, origin, line, server_id, step, kind, value, remaining)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for (fault, &server) in options.faults.iter().zip(fault_servers) {
            let (kind, value, remaining) = fault_row(&fault.kind);
            insert.execute(params![
                fault.index as i64,
                fault.origin,
                fault.line,
                server_ids[server],
                fault.step.map_or(MACHINE_STEP, StepId::as_str),
                kind,
                value,
                remaining,
            ])?;
        }
    }
    tx.commit()
}

/// One server in full: what `lab show` prints plus what the lab uses to decide.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerDetail {
    /// What `lab show` prints, its `kind` included.
    #[serde(flatten)]
    pub server: ServerSnapshot,
    /// The pools whose back end this server is, or whose server it is (a Front End server's
    /// pool, a Standard Edition server's own).
    pub pools: Vec<String>,
    /// The SQL Server and instance this server's pool keeps its User store on.
    pub backend_sql_server_fqdn: String,
    pub backend_instance: String,
    /// The staged installer: path on the server and SHA-256.
    pub staged: Option<(String, String)>,
    /// The build whose files are loaded by a service that starts now.
    pub previous_build: Build,
    pub in_service: bool,
    /// Seconds of virtual time until which the server cannot be reached.
    pub unreachable_until: Option<f64>,
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// One call a controller made on a server ([`Lab::command_log`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LoggedCommand {
    pub server: String,
    /// The step's name, `probe <step>`, `restart`, `recovery` or `lock`.
    pub what: String,
    /// The controller's lock holder and the generation of its claim on the run.
    pub holder: Option<String>,
    pub generation: Option<u64>,
    /// Lab seconds.
    pub at: f64,
    /// Whether the server's lock refused it (an older controller of the run).
    pub refused: bool,
}

impl Lab {
    /// Opens the lab in `dir`.
    pub fn open(dir: &Path) -> Result<Lab, LabError> {
        let db_path = dir.join(LAB_DB);
        if !db_path.is_file() {
            return Err(LabError::NotALab {
                dir: dir.to_path_buf(),
            });
        }
        let database = |source| LabError::Database {
            path: db_path.clone(),
            source,
        };
        let not_a_lab =
            |e: &rusqlite::Error| e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase);
        let conn = match db::connect(&db_path, false) {
            Ok(conn) => conn,
            Err(e) if not_a_lab(&e) => {
                return Err(LabError::NotALab {
                    dir: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(database(e)),
        };
        let has_lab = conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'lab'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .optional();
        match has_lab {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(LabError::NotALab {
                    dir: dir.to_path_buf(),
                });
            }
            Err(e) if not_a_lab(&e) => {
                return Err(LabError::NotALab {
                    dir: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(database(e)),
        }
        let format: i64 = conn
            .query_row("SELECT format FROM lab WHERE id = 1", [], |r| r.get(0))
            .map_err(database)?;
        if format != db::FORMAT {
            return Err(LabError::Format {
                path: db_path,
                found: format,
                expected: db::FORMAT,
            });
        }
        type Row = (BuildCol, f64, String, i64, i64, Option<i64>);
        let (initial, speed, operator, now, epoch_unix_ms, variance): Row = conn
            .query_row(
                "SELECT initial_build, speed, operator, now_ms, epoch_unix_ms, variance_seed
                 FROM lab WHERE id = 1",
                [],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .map_err(database)?;
        let servers = {
            let mut stmt = conn
                .prepare("SELECT fqdn_key, id FROM servers")
                .map_err(database)?;
            stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .and_then(|rows| rows.collect::<rusqlite::Result<HashMap<_, _>>>())
                .map_err(database)?
        };
        let fault_steps = {
            let mut stmt = conn
                .prepare("SELECT DISTINCT server_id, step FROM faults")
                .map_err(database)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(database)?;
            rows.into_iter()
                .filter_map(|(id, step)| StepId::parse(&step).map(|s| (id, s)))
                .collect()
        };
        Ok(Lab {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                db_path,
                conn: Mutex::new(conn),
                speed,
                operator,
                epoch_unix_ms,
                variance: variance.map(|v| v as u64),
                initial_build: initial.0,
                servers,
                fault_steps,
                last_now: AtomicU64::new(u64::try_from(now).unwrap_or(0)),
                event: Mutex::new(None),
                anchor: (std::time::Instant::now(), now),
                hashes: Mutex::new(HashMap::new()),
                checkpointer: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The target that carries out steps in this lab.
    pub fn target(&self) -> LabTarget {
        let shared = &self.shared;
        shared.checkpointer.get_or_init(|| {
            sfbpatch_sqlite::Checkpointer::start(&shared.db_path, db::RESTART_FRAMES).ok()
        });
        LabTarget::new(self.shared.clone())
    }

    /// The lab's virtual clock.
    pub fn clock(&self) -> LabClock {
        LabClock::new(self.shared.clone())
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The calendar instant (Unix milliseconds) that virtual time 0 stands for.
    pub fn epoch_unix_ms(&self) -> i64 {
        self.shared.epoch_unix_ms
    }

    /// Milliseconds of virtual time since the lab's creation.
    pub fn now(&self) -> Result<Millis, LabError> {
        self.shared.now().map_err(|e| self.shared.db_error(e))
    }

    /// Simulated seconds per real second (0 = no waiting).
    pub fn speed(&self) -> f64 {
        self.shared.speed
    }

    /// The seed of the step durations' variance, if the lab was made with it.
    pub fn variance(&self) -> Option<u64> {
        self.shared.variance
    }

    /// The account acting on the servers.
    pub fn operator(&self) -> &str {
        &self.shared.operator
    }

    /// The build the servers started at.
    pub fn initial_build(&self) -> Build {
        self.shared.initial_build
    }

    /// The FQDNs of the lab's servers, in the order the deployment lists them.
    pub fn servers(&self) -> Result<Vec<String>, LabError> {
        self.shared
            .read(|tx| {
                let mut stmt = tx.prepare_cached("SELECT fqdn FROM servers ORDER BY id")?;
                stmt.query_map([], |r| r.get(0))?.collect()
            })
            .map_err(|e| self.shared.db_error(e))
    }

    /// One server's state.
    pub fn server(&self, fqdn: &str) -> Result<ServerDetail, LabError> {
        let id = self
            .shared
            .server_id(fqdn)
            .ok_or_else(|| LabError::UnknownServer(fqdn.to_string()))?;
        self.shared
            .read(|tx| {
                let s = db::Server::load(tx, id)?;
                let backend = db::instance_by_id(tx, s.backend_id)?;
                let pools: Vec<String> = tx
                    .prepare_cached(
                        "SELECT p.fqdn FROM pools p WHERE p.id IN (
                             SELECT pool_id FROM pool_members WHERE server_id = ?1
                             UNION SELECT pool_id FROM servers WHERE id = ?1)
                         ORDER BY p.id",
                    )?
                    .query_map([id], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                Ok(ServerDetail {
                    server: server_snapshot(tx, &s)?,
                    pools,
                    backend_sql_server_fqdn: backend.sql_server_fqdn,
                    backend_instance: backend.instance,
                    staged: s.staged_path.clone().zip(s.staged_sha256.clone()),
                    previous_build: s.previous,
                    in_service: s.in_service,
                    unreachable_until: s.unreachable_until.map(secs),
                })
            })
            .map_err(|e| self.shared.db_error(e))
    }

    /// Every call controllers made on the lab's servers, oldest first, as the servers' own
    /// logs keep them (`lab shell` requests over SSH are logged by the SSH server instead).
    pub fn command_log(&self) -> Result<Vec<LoggedCommand>, LabError> {
        self.shared
            .read(|tx| {
                tx.prepare(
                    "SELECT s.fqdn, c.what, c.holder, c.generation, c.at_ms, c.refused
                     FROM command_log c JOIN servers s ON s.id = c.server_id ORDER BY c.id",
                )?
                .query_map([], |r| {
                    Ok(LoggedCommand {
                        server: r.get(0)?,
                        what: r.get(1)?,
                        holder: r.get(2)?,
                        generation: r.get::<_, Option<i64>>(3)?.map(|g| g as u64),
                        at: secs(r.get(4)?),
                        refused: r.get(5)?,
                    })
                })?
                .collect()
            })
            .map_err(|e| self.shared.db_error(e))
    }

    /// The whole world, read in one transaction.
    pub fn show(&self) -> Result<LabSnapshot, LabError> {
        let initial = self.shared.initial_build;
        self.shared
            .read(|tx| snapshot(tx, initial))
            .map_err(|e| self.shared.db_error(e))
    }
}

fn server_snapshot(tx: &Connection, s: &db::Server) -> rusqlite::Result<ServerSnapshot> {
    let out_of_service = intervals(
        tx,
        "SELECT start_ms, end_ms FROM service_intervals WHERE server_id = ?1
         ORDER BY start_ms, id",
        s.id,
    )?;
    Ok(ServerSnapshot {
        fqdn: s.fqdn.clone(),
        kind: s.kind,
        runs: Runs {
            sfb_services: !s.services.is_empty(),
            iis: s.w3svc_present,
            management_shell: s.shell_present,
            sql_server: s.kind != ServerKind::FrontEnd,
        },
        upgrade_domain: s.upgrade_domain.clone(),
        failed_over: s.failed_over,
        refused_commands: u32::try_from(s.refused_commands).unwrap_or(u32::MAX),
        installed_build: s.installed,
        installer_runs: u32::try_from(s.installer_runs).unwrap_or(u32::MAX),
        w3svc: w3svc_state(s),
        open_shells: u32::try_from(s.open_shells).unwrap_or(u32::MAX),
        reboot_pending: s.reboot_pending,
        services: s
            .services
            .iter()
            .map(|svc| ServiceSnapshot {
                name: svc.name.clone(),
                state: ServiceState::from_running(svc.running),
                loaded_build: svc.loaded,
            })
            .collect(),
        out_of_service,
    })
}

fn w3svc_state(s: &db::Server) -> ServiceState {
    if s.w3svc_present {
        ServiceState::from_running(s.w3svc)
    } else {
        ServiceState::NotInstalled
    }
}

fn intervals(tx: &Connection, sql: &str, id: i64) -> rusqlite::Result<Vec<Interval>> {
    let mut stmt = tx.prepare_cached(sql)?;
    stmt.query_map([id], |r| {
        Ok(Interval {
            start: secs(r.get(0)?),
            end: r.get::<_, Option<i64>>(1)?.map(secs),
        })
    })?
    .collect()
}

pub(crate) fn snapshot(tx: &Connection, initial: Build) -> rusqlite::Result<LabSnapshot> {
    let now = db::now(tx)?;

    let ids: Vec<i64> = tx
        .prepare_cached("SELECT id FROM servers ORDER BY id")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut servers: Vec<ServerSnapshot> = Vec::with_capacity(ids.len());
    for id in ids {
        servers.push(server_snapshot(tx, &db::Server::load(tx, id)?)?);
    }

    let world_build = db::highest_build(tx, initial)?;
    let mut sql_instances = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT id, sql_server_fqdn, instance FROM sql_instances ORDER BY id",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (id, sql_server_fqdn, instance) in rows {
            let expected_build = db::cluster_build(tx, &sql_server_fqdn)?.unwrap_or(world_build);
            let mut stores = Vec::new();
            for d in db::databases(tx, id)? {
                stores.push(DatabaseSnapshot {
                    store: d.store,
                    database: d.name,
                    version: d.version,
                    expected_version: db::schema_version(tx, d.store, expected_build)?,
                });
            }
            sql_instances.push(SqlInstanceSnapshot {
                sql_server_fqdn,
                instance,
                stores,
            });
        }
    }

    let mut pools = Vec::new();
    {
        let mut stmt = tx.prepare_cached("SELECT id, fqdn, edition FROM pools ORDER BY id")?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (id, fqdn, edition) in rows {
            let mut stmt = tx.prepare_cached(
                "SELECT start_ms, end_ms FROM outages WHERE pool_id = ?1 ORDER BY start_ms, id",
            )?;
            let raw = stmt
                .query_map([id], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut pool = pool_snapshot(fqdn, &raw, now);
            pool.edition = edition.clone();
            if edition == Edition::Enterprise.as_str() {
                pool.front_ends = Some(front_ends(tx, id)?);
            }
            pools.push(pool);
        }
    }

    Ok(LabSnapshot {
        servers,
        sql_instances,
        pools,
        now: secs(now),
    })
}

/// A Front End pool's servers now and over time.
fn front_ends(tx: &Connection, pool_id: i64) -> rusqlite::Result<FrontEnds> {
    let members = crate::frontend::members(tx, pool_id)?;
    let (quorum, among) = crate::frontend::quorum(members.len());
    let samples = tx
        .prepare_cached(
            "SELECT at_ms, in_service FROM front_end_samples WHERE pool_id = ?1 ORDER BY at_ms, rowid",
        )?
        .query_map([pool_id], |r| Ok((secs(r.get(0)?), r.get::<_, u32>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let of_kind = |kind: &str| -> rusqlite::Result<Vec<Interval>> {
        tx.prepare_cached(
            "SELECT start_ms, end_ms FROM pool_intervals WHERE pool_id = ?1 AND kind = ?2
             ORDER BY start_ms, id",
        )?
        .query_map(params![pool_id, kind], |r| {
            Ok(Interval {
                start: secs(r.get(0)?),
                end: r.get::<_, Option<i64>>(1)?.map(secs),
            })
        })?
        .collect()
    };
    Ok(FrontEnds {
        total: members.len() as u32,
        in_service: members.iter().filter(|m| m.active).count() as u32,
        quorum: quorum as u32,
        quorum_among: among as u32,
        in_service_over_time: samples,
        down_intervals: of_kind("down")?,
        user_impact_intervals: of_kind("impact")?,
    })
}

/// A pool's mode and intervals from its outage rows (milliseconds) at `now`.
fn pool_snapshot(fqdn: String, outages: &[(i64, Option<i64>)], now: i64) -> PoolSnapshot {
    let limit = db::ms(RESILIENCY_AFTER);
    let mut mode = PoolMode::Normal;
    let mut resiliency = Vec::new();
    for &(start, end) in outages {
        let threshold = start + limit;
        match end {
            Some(end) if end > threshold => resiliency.push(Interval {
                start: secs(threshold),
                end: Some(secs(end)),
            }),
            Some(_) => {}
            None => {
                if now >= threshold {
                    mode = PoolMode::Resiliency;
                    resiliency.push(Interval {
                        start: secs(threshold),
                        end: None,
                    });
                } else {
                    mode = PoolMode::Outage;
                }
            }
        }
    }
    PoolSnapshot {
        fqdn,
        edition: String::new(),
        front_ends: None,
        mode,
        outage_intervals: outages
            .iter()
            .map(|&(start, end)| Interval {
                start: secs(start),
                end: end.map(secs),
            })
            .collect(),
        resiliency_intervals: resiliency,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resiliency_is_the_part_beyond_30_minutes() {
        let m = |x: i64| x * 60_000;
        let p = pool_snapshot(
            "pool".into(),
            &[(m(1), Some(m(20))), (m(40), Some(m(80))), (m(100), None)],
            m(131),
        );
        assert_eq!(p.mode, PoolMode::Resiliency);
        assert_eq!(
            p.resiliency_intervals,
            vec![
                Interval {
                    start: 4200.0,
                    end: Some(4800.0)
                },
                Interval {
                    start: 7800.0,
                    end: None
                }
            ]
        );
        let p = pool_snapshot("pool".into(), &[(m(100), None)], m(129));
        assert_eq!(p.mode, PoolMode::Outage);
        assert!(p.resiliency_intervals.is_empty());
        let p = pool_snapshot("pool".into(), &[(m(0), Some(m(30)))], m(31));
        assert_eq!(p.mode, PoolMode::Normal);
        assert!(p.resiliency_intervals.is_empty());
    }
}
