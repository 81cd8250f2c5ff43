//! What `sfbpatch lab show` prints: the world's state as serde types, and its text form.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sfbpatch_plan::{Build, ServerKind};
use sfbpatch_topology::StoreKind;

/// The whole world. Times are seconds of virtual time since the lab's creation (`f64`, so
/// that sub-second steps such as the 6 s role check stay exact to the millisecond).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabSnapshot {
    pub servers: Vec<ServerSnapshot>,
    pub sql_instances: Vec<SqlInstanceSnapshot>,
    pub pools: Vec<PoolSnapshot>,
    /// The clock when the snapshot was taken, in seconds. Shown by [`render_text`]; not part of
    /// the JSON document.
    #[serde(skip)]
    pub now: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    Running,
    Stopped,
    /// The machine does not have the service (IIS on a SQL Server machine).
    #[serde(rename = "not-installed")]
    NotInstalled,
}

impl ServiceState {
    pub fn from_running(running: bool) -> Self {
        if running {
            ServiceState::Running
        } else {
            ServiceState::Stopped
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Running => "running",
            ServiceState::Stopped => "stopped",
            ServiceState::NotInstalled => "not installed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerSnapshot {
    pub fqdn: String,
    /// `standard-edition`, `front-end`, `back-end` or `store`.
    pub kind: ServerKind,
    /// What the machine runs (SPEC.md section 5).
    pub runs: Runs,
    /// A Front End server's upgrade domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_domain: Option<String>,
    /// A Front End server taken out of its pool by `Invoke-CsComputerFailOver`.
    pub failed_over: bool,
    /// Skype for Business commands sent to the machine that it could not run, because it does
    /// not have what they act on.
    pub refused_commands: u32,
    /// The Skype for Business build installed (meaningful where `runs.management_shell`).
    pub installed_build: Build,
    /// How many times the installer ran far enough to apply the update.
    pub installer_runs: u32,
    pub w3svc: ServiceState,
    pub open_shells: u32,
    pub reboot_pending: bool,
    pub services: Vec<ServiceSnapshot>,
    /// When the machine was out of service (seconds of virtual time): a Skype for Business
    /// service stopped or on old assemblies, W3SVC stopped, or failed over.
    pub out_of_service: Vec<Interval>,
}

/// What a machine has installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runs {
    /// Skype for Business Windows services (RTCSRV, ...).
    pub sfb_services: bool,
    /// IIS (W3SVC).
    pub iis: bool,
    /// The Skype for Business Management Shell (with the Core Components).
    pub management_shell: bool,
    /// SQL Server (a back end, a store, or a Standard Edition server's SQL Express).
    pub sql_server: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSnapshot {
    pub name: String,
    pub state: ServiceState,
    /// The build of the assemblies the service loaded when it last started.
    pub loaded_build: Build,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqlInstanceSnapshot {
    pub sql_server_fqdn: String,
    /// `""` for the default instance.
    pub instance: String,
    pub stores: Vec<DatabaseSnapshot>,
}

/// One database (`Test-CsDatabase` row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseSnapshot {
    pub store: StoreKind,
    pub database: String,
    /// InstalledVersion.
    pub version: String,
    /// ExpectedVersion: the schema of the highest build installed on a server whose back end
    /// is this instance (for an instance no patched server uses: the highest build installed).
    pub expected_version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// The back end is available.
    Normal,
    /// The back end has been unavailable for less than 30 minutes.
    Outage,
    /// The back end has been unavailable for 30 minutes or more: users are in resiliency mode.
    Resiliency,
}

impl PoolMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Normal => "normal",
            PoolMode::Outage => "outage",
            PoolMode::Resiliency => "resiliency",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolSnapshot {
    pub fqdn: String,
    /// `standard` or `enterprise`.
    pub edition: String,
    pub mode: PoolMode,
    /// When the pool's back end was unavailable.
    pub outage_intervals: Vec<Interval>,
    /// The part of each outage beyond 30 minutes from its start.
    pub resiliency_intervals: Vec<Interval>,
    /// Enterprise pools: Front End servers, and how many are in service now (members of the
    /// pool with every service running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub front_ends: Option<FrontEnds>,
}

/// A Front End pool's servers over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontEnds {
    pub total: u32,
    pub in_service: u32,
    /// Active servers the pool needs among its first `quorum_among` (SPEC.md section 6).
    pub quorum: u32,
    pub quorum_among: u32,
    /// Each change of the number in service: `[seconds, count]`.
    pub in_service_over_time: Vec<(f64, u32)>,
    /// When the pool was below quorum (down).
    pub down_intervals: Vec<Interval>,
    /// When users' sessions were dropped: a server stopped without failover, or the pool down.
    pub user_impact_intervals: Vec<Interval>,
}

/// A span of virtual time in seconds since the lab's creation; `end` is `None` while it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub start: f64,
    pub end: Option<f64>,
}

impl Interval {
    /// The length in seconds, up to `now` for an open interval.
    pub fn seconds(&self, now: f64) -> f64 {
        self.end.unwrap_or(now) - self.start
    }
}

/// The text form of `lab show`.
pub fn render_text(snapshot: &LabSnapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "lab clock: {}", clock(snapshot.now));

    let _ = writeln!(out, "\nservers");
    for s in &snapshot.servers {
        let mut runs = Vec::new();
        if s.runs.sfb_services {
            runs.push("Skype for Business services");
        }
        if s.runs.iis {
            runs.push("IIS");
        }
        if s.runs.management_shell {
            runs.push("Management Shell");
        }
        if s.runs.sql_server {
            runs.push("SQL Server");
        }
        let _ = writeln!(
            out,
            "  {} ({}; runs {})",
            s.fqdn,
            s.kind.as_str(),
            runs.join(", ")
        );
        let _ = writeln!(
            out,
            "    build {}  installer runs {}  W3SVC {}  open shells {}{}{}{}",
            if s.runs.management_shell {
                s.installed_build.to_string()
            } else {
                "-".to_string()
            },
            s.installer_runs,
            s.w3svc.as_str(),
            s.open_shells,
            if s.reboot_pending {
                "  REBOOT PENDING"
            } else {
                ""
            },
            if s.failed_over { "  FAILED OVER" } else { "" },
            if s.refused_commands > 0 {
                format!("  REFUSED COMMANDS {}", s.refused_commands)
            } else {
                String::new()
            }
        );
        // Group services by (state, build) in first-seen order.
        let mut groups: Vec<(ServiceState, Build, Vec<&str>)> = Vec::new();
        for svc in &s.services {
            match groups
                .iter_mut()
                .find(|(st, b, _)| *st == svc.state && *b == svc.loaded_build)
            {
                Some((_, _, names)) => names.push(&svc.name),
                None => groups.push((svc.state, svc.loaded_build, vec![&svc.name])),
            }
        }
        for (state, build, names) in groups {
            let stale = if state == ServiceState::Running && build != s.installed_build {
                "  (old assemblies)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    {} on {}{}: {}",
                state.as_str(),
                build,
                stale,
                names.join(" ")
            );
        }
    }

    let _ = writeln!(out, "\nSQL instances");
    for i in &snapshot.sql_instances {
        let name = if i.instance.is_empty() {
            i.sql_server_fqdn.clone()
        } else {
            format!("{}\\{}", i.sql_server_fqdn, i.instance)
        };
        let _ = writeln!(out, "  {name}");
        for db in &i.stores {
            let mark = if db.version == db.expected_version {
                "ok"
            } else {
                "BEHIND"
            };
            let _ = writeln!(
                out,
                "    {:<12} {:<20} installed {:<14} expected {:<14} {mark}",
                db.database,
                db.store.as_str(),
                db.version,
                db.expected_version
            );
        }
    }

    let _ = writeln!(out, "\npools");
    for p in &snapshot.pools {
        let outage: f64 = p
            .outage_intervals
            .iter()
            .map(|i| i.seconds(snapshot.now))
            .sum();
        let resiliency: f64 = p
            .resiliency_intervals
            .iter()
            .map(|i| i.seconds(snapshot.now))
            .sum();
        let _ = writeln!(
            out,
            "  {}  {}  outages {} ({} min)  resiliency {} ({} min)",
            p.fqdn,
            p.mode.as_str(),
            p.outage_intervals.len(),
            minutes(outage),
            p.resiliency_intervals.len(),
            minutes(resiliency)
        );
        for i in &p.outage_intervals {
            let _ = writeln!(
                out,
                "    outage {} .. {}",
                clock(i.start),
                i.end.map_or_else(|| "now".to_string(), clock)
            );
        }
        if let Some(fe) = &p.front_ends {
            let down: f64 = fe
                .down_intervals
                .iter()
                .map(|i| i.seconds(snapshot.now))
                .sum();
            let impact: f64 = fe
                .user_impact_intervals
                .iter()
                .map(|i| i.seconds(snapshot.now))
                .sum();
            let _ = writeln!(
                out,
                "    front ends {}/{} in service (quorum {} of the first {})  down {} min  user impact {} min",
                fe.in_service,
                fe.total,
                fe.quorum,
                fe.quorum_among,
                minutes(down),
                minutes(impact)
            );
        }
    }
    out
}

fn minutes(seconds: f64) -> String {
    // `+ 0.0` turns the -0.0 of an empty sum into 0.
    let m = seconds / 60.0 + 0.0;
    if (m - m.round()).abs() < 1e-9 {
        format!("{m:.0}")
    } else {
        format!("{m:.1}")
    }
}

/// `h:mm:ss` of virtual time.
fn clock(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    format!(
        "{}:{:02}:{:02}",
        total / 3600,
        (total / 60) % 60,
        total % 60
    )
}
