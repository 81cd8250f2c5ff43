//! The planner: deployment + package + policy -> the procedure for every server to update.
//!
//! Pure and deterministic: the plan depends only on the arguments, and servers come out in the
//! deployment's file order.
//!
//! What gets planned:
//! - every machine of every Enterprise Edition back end (the SQL cluster the pool's User store
//!   lives on), role [`ServerRole::EnterpriseBackend`]. Pools whose back ends are on the same SQL
//!   cluster (same SQL Server FQDN) share those machines: they are planned once, under the
//!   first such pool. `Install-CsDatabase -ConfiguredDatabases -SqlServerFqdn` updates every
//!   database the topology places on that SQL Server, whatever the instance.
//! - every machine of every Standard Edition pool, role [`ServerRole::StandardEdition`].
//!
//! Front End servers are not part of the procedure. On a back end with several machines
//! (AlwaysOn nodes, failover cluster nodes) only the last machine updates the databases, so
//! they are updated once, after every machine has the update; the others say which machine
//! does it ([`Action::DatabasesUpdatedBy`]). Which machine is last is decided on the whole back
//! end, before `only` narrows the plan, so planning the nodes one at a time gives the same
//! steps as planning them together.

use std::collections::HashMap;
use std::fmt;

use sfbpatch_topology::{DatabaseUpdate, Deployment, Edition, Fqdn, Machine, Pool};

use crate::command::{INSTALLER_FILE_NAME, render_command};
use crate::model::{Action, Package, Plan, PlannedStep, ServerPlan, ServerRole, StepId};
use crate::text::{clean, describe_char, is_printable, is_single_quote};

/// Where `stage-update` puts the installer unless told otherwise.
pub const DEFAULT_STAGING_DIR: &str = r"C:\ProgramData\sfbpatch\staging";

/// How many candidates an error message lists before summarising the rest.
const LISTED_CANDIDATES: usize = 10;

/// What to plan, and where to stage the installer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanPolicy {
    /// Server FQDNs, pool FQDNs or back-end SQL Server FQDNs, compared ignoring ASCII case.
    /// Empty: every server. A pool or SQL Server FQDN selects every machine of its back end
    /// (or the Standard Edition server); a server FQDN selects that machine only.
    pub only: Vec<String>,
    /// A local folder (`X:\...`) on each server; the installer is staged in
    /// `<staging_dir>\<version>\SkypeServerUpdateInstaller.exe`.
    pub staging_dir: String,
}

impl Default for PlanPolicy {
    fn default() -> Self {
        PlanPolicy {
            only: Vec::new(),
            staging_dir: DEFAULT_STAGING_DIR.to_string(),
        }
    }
}

/// Why no plan could be made. Each variant has a stable code ([`PlanError::code`]),
/// documented in `docs/errors-plan.md`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// SFB-P001
    #[error("{}", only_matches_nothing(.name, .front_end_of.as_ref(), .pools, .servers))]
    OnlyMatchesNothing {
        name: String,
        /// Set when `name` is a Front End server: the pool it belongs to.
        front_end_of: Option<Fqdn>,
        /// Every pool of the deployment, in file order.
        pools: Vec<Fqdn>,
        /// Every server the plan could include, in plan order.
        servers: Vec<Fqdn>,
    },
    /// SFB-P002
    #[error(
        "{}Install-CsDatabase -Update cannot run against mirrored databases: remove the mirroring, or leave these pools out of the plan [SFB-P002]",
        mirrored(.0)
    )]
    MirroredBackend(Vec<MirroredBackend>),
    /// SFB-P003
    #[error(
        "the deployment has no Enterprise Edition back end and no Standard Edition server to update [SFB-P003]"
    )]
    EmptyPlan,
    /// SFB-P004
    #[error("staging folder '{dir}' is not usable: {reason} [SFB-P004]")]
    InvalidStagingDir { dir: String, reason: String },
    /// SFB-P005
    #[error(
        "{} of pool {pool} lists no machines, so there is nothing to update on it [SFB-P005]",
        if *.standard_edition { "the Standard Edition server".to_string() } else { format!("back end {}", .sql_server_fqdn) }
    )]
    NoMachines {
        pool: Fqdn,
        sql_server_fqdn: Fqdn,
        standard_edition: bool,
    },
    /// SFB-P006
    #[error(
        "server {server} would be updated twice: as part of pool {first} and of pool {second}; a machine belongs to one back end or Standard Edition server [SFB-P006]"
    )]
    ServerInTwoPools {
        server: Fqdn,
        first: Fqdn,
        second: Fqdn,
    },
}

impl PlanError {
    /// The stable code, documented in `docs/errors-plan.md`.
    pub fn code(&self) -> &'static str {
        match self {
            PlanError::OnlyMatchesNothing { .. } => "SFB-P001",
            PlanError::MirroredBackend(_) => "SFB-P002",
            PlanError::EmptyPlan => "SFB-P003",
            PlanError::InvalidStagingDir { .. } => "SFB-P004",
            PlanError::NoMachines { .. } => "SFB-P005",
            PlanError::ServerInTwoPools { .. } => "SFB-P006",
        }
    }
}

/// A back end whose databases the topology shows as mirrored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirroredBackend {
    pub pool: Fqdn,
    pub sql_server_fqdn: Fqdn,
    /// What the topology shows, quoted as read.
    pub mirroring: String,
}

fn only_matches_nothing(
    name: &str,
    front_end_of: Option<&Fqdn>,
    pools: &[Fqdn],
    servers: &[Fqdn],
) -> String {
    let mut s = format!("'{name}' (from --only) matches no pool or server of the deployment");
    if let Some(pool) = front_end_of {
        s.push_str(&format!(
            ": it is a Front End server of pool {pool}, and Front End servers are not part of \
             this procedure; give the pool's FQDN to update its back end"
        ));
    } else {
        s.push_str(&format!(
            "; pools: {}; servers: {}",
            list(pools),
            list(servers)
        ));
    }
    s.push_str(" [SFB-P001]");
    s
}

fn list(names: &[Fqdn]) -> String {
    if names.is_empty() {
        return "(none)".to_string();
    }
    let shown: Vec<&str> = names
        .iter()
        .take(LISTED_CANDIDATES)
        .map(Fqdn::as_str)
        .collect();
    let mut s = shown.join(", ");
    if names.len() > LISTED_CANDIDATES {
        s.push_str(&format!(" and {} more", names.len() - LISTED_CANDIDATES));
    }
    s
}

fn mirrored(backends: &[MirroredBackend]) -> String {
    backends.iter().map(|b| format!("{b}; ")).collect()
}

/// Plan the update of every Enterprise Edition back-end machine and every Standard Edition
/// server of `deployment` (narrowed by `policy.only`), in file order.
pub fn plan(
    deployment: &Deployment,
    package: &Package,
    policy: &PlanPolicy,
) -> Result<Plan, PlanError> {
    let staging_dir = check_staging_dir(&policy.staging_dir)?;
    let destination = format!("{staging_dir}\\{}\\{INSTALLER_FILE_NAME}", package.version);

    let units = units(deployment);
    if units.is_empty() {
        return Err(PlanError::EmptyPlan);
    }
    let selected = select(deployment, &units, &policy.only)?;

    let mut mirrored = Vec::new();
    for unit in units
        .iter()
        .zip(&selected)
        .filter(|(_, s)| s.any())
        .map(|(u, _)| u)
    {
        for pool in &unit.pools {
            if let Some(m) = &pool.backend.mirroring {
                mirrored.push(MirroredBackend {
                    pool: pool.fqdn.clone(),
                    sql_server_fqdn: pool.backend.sql_server_fqdn.clone(),
                    mirroring: m.clone(),
                });
            }
        }
    }
    if !mirrored.is_empty() {
        return Err(PlanError::MirroredBackend(mirrored));
    }

    let fixed = FixedSteps::new(package, &destination);
    let mut servers = Vec::new();
    let mut seen: HashMap<String, &Fqdn> = HashMap::new();
    for (unit, selection) in units.iter().zip(&selected) {
        if !selection.any() {
            continue;
        }
        let owner = unit.pools[0];
        let Some(last) = unit.machines.last() else {
            return Err(PlanError::NoMachines {
                pool: owner.fqdn.clone(),
                sql_server_fqdn: owner.backend.sql_server_fqdn.clone(),
                standard_edition: unit.role == ServerRole::StandardEdition,
            });
        };
        for (i, machine) in unit.machines.iter().enumerate() {
            if !selection.includes(i) {
                continue;
            }
            if let Some(first) = seen.insert(machine.fqdn.key(), &owner.fqdn) {
                return Err(PlanError::ServerInTwoPools {
                    server: machine.fqdn.clone(),
                    first: first.clone(),
                    second: owner.fqdn.clone(),
                });
            }
            let updated_by = (i + 1 < unit.machines.len()).then_some(&last.fqdn);
            servers.push(server_plan(unit, machine, updated_by, package, &fixed));
        }
    }
    if servers.is_empty() {
        return Err(PlanError::EmptyPlan);
    }
    Ok(Plan {
        package: package.clone(),
        servers,
    })
}

/// One back end (or Standard Edition server) and the machines updated for it.
struct Unit<'d> {
    role: ServerRole,
    /// The pools served; the first, in file order, is the one the servers are planned under.
    pools: Vec<&'d Pool>,
    machines: &'d [Machine],
}

impl Unit<'_> {
    /// The variant `update-databases` runs.
    fn database_update(&self) -> DatabaseUpdate {
        match self.role {
            ServerRole::StandardEdition => DatabaseUpdate::Local,
            ServerRole::EnterpriseBackend => {
                if self
                    .pools
                    .iter()
                    .any(|p| p.database_update == DatabaseUpdate::ConfiguredExcludeCollocated)
                {
                    DatabaseUpdate::ConfiguredExcludeCollocated
                } else {
                    DatabaseUpdate::Configured
                }
            }
        }
    }
}

fn units(deployment: &Deployment) -> Vec<Unit<'_>> {
    let mut units: Vec<Unit<'_>> = Vec::new();
    let mut backends: HashMap<String, usize> = HashMap::new();
    for pool in &deployment.pools {
        match pool.edition {
            Edition::Standard => units.push(Unit {
                role: ServerRole::StandardEdition,
                pools: vec![pool],
                machines: &pool.machines,
            }),
            Edition::Enterprise => {
                let key = pool.backend.sql_server_fqdn.key();
                if let Some(&i) = backends.get(&key) {
                    units[i].pools.push(pool);
                } else {
                    backends.insert(key, units.len());
                    units.push(Unit {
                        role: ServerRole::EnterpriseBackend,
                        pools: vec![pool],
                        machines: &pool.backend.machines,
                    });
                }
            }
        }
    }
    units
}

/// Which machines of a unit are planned.
#[derive(Debug, Clone)]
enum Selection {
    None,
    All,
    Some(Vec<bool>),
}

impl Selection {
    fn any(&self) -> bool {
        !matches!(self, Selection::None)
    }

    fn includes(&self, machine: usize) -> bool {
        match self {
            Selection::None => false,
            Selection::All => true,
            Selection::Some(v) => v.get(machine).copied().unwrap_or(false),
        }
    }
}

/// What a name given to `only` can stand for.
#[derive(Debug, Clone, Copy)]
enum Target {
    Unit(usize),
    Machine(usize, usize),
}

fn select(
    deployment: &Deployment,
    units: &[Unit<'_>],
    only: &[String],
) -> Result<Vec<Selection>, PlanError> {
    if only.is_empty() {
        return Ok(vec![Selection::All; units.len()]);
    }
    let mut index: HashMap<String, Vec<Target>> = HashMap::new();
    for (u, unit) in units.iter().enumerate() {
        for pool in &unit.pools {
            index
                .entry(pool.fqdn.key())
                .or_default()
                .push(Target::Unit(u));
            if unit.role == ServerRole::EnterpriseBackend {
                index
                    .entry(pool.backend.sql_server_fqdn.key())
                    .or_default()
                    .push(Target::Unit(u));
            }
        }
        for (m, machine) in unit.machines.iter().enumerate() {
            index
                .entry(machine.fqdn.key())
                .or_default()
                .push(Target::Machine(u, m));
        }
    }

    let mut selected = vec![Selection::None; units.len()];
    for name in only {
        let Some(targets) = index.get(&name.to_ascii_lowercase()) else {
            return Err(nothing_matches(deployment, units, name));
        };
        for &target in targets {
            match target {
                Target::Unit(u) => selected[u] = Selection::All,
                Target::Machine(u, m) => match &mut selected[u] {
                    Selection::All => {}
                    Selection::Some(v) => v[m] = true,
                    s @ Selection::None => {
                        let mut v = vec![false; units[u].machines.len()];
                        v[m] = true;
                        *s = Selection::Some(v);
                    }
                },
            }
        }
    }
    Ok(selected)
}

fn nothing_matches(deployment: &Deployment, units: &[Unit<'_>], name: &str) -> PlanError {
    let front_end_of = deployment
        .pools
        .iter()
        .filter(|p| p.edition == Edition::Enterprise)
        .find(|p| {
            p.machines
                .iter()
                .any(|m| m.fqdn.as_str().eq_ignore_ascii_case(name))
        })
        .map(|p| p.fqdn.clone());
    PlanError::OnlyMatchesNothing {
        name: name.to_string(),
        front_end_of,
        pools: deployment.pools.iter().map(|p| p.fqdn.clone()).collect(),
        servers: units
            .iter()
            .flat_map(|u| u.machines.iter().map(|m| m.fqdn.clone()))
            .collect(),
    }
}

/// `X:\folder`, without quotes, control characters, wildcards or characters Windows refuses
/// in paths; returned without trailing backslashes.
fn check_staging_dir(dir: &str) -> Result<&str, PlanError> {
    let invalid = |reason: &str| PlanError::InvalidStagingDir {
        dir: clean(dir).into_owned(),
        reason: reason.to_string(),
    };
    let bytes = dir.as_bytes();
    let absolute =
        bytes.len() >= 3 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' && bytes[2] == b'\\';
    if !absolute {
        return Err(invalid(
            r"give an absolute local folder such as C:\ProgramData\sfbpatch\staging",
        ));
    }
    if let Some(c) = dir.chars().skip(2).find(|&c| {
        !is_printable(c)
            || is_single_quote(c)
            || matches!(c, '"' | '<' | '>' | '|' | ':' | '*' | '?' | '[' | ']' | '/')
    }) {
        return Err(invalid(&format!(
            "character {} is not allowed (no quotes, wildcards, control characters, or characters Windows refuses in paths)",
            describe_char(c)
        )));
    }
    let trimmed = dir.trim_end_matches('\\');
    if trimmed.len() < 2
        || trimmed
            .split('\\')
            .skip(1)
            .any(|part| part.is_empty() || part == "..")
    {
        return Err(invalid("a folder name is empty or '..'"));
    }
    Ok(trimmed)
}

/// The steps that are the same on every server, rendered once.
struct FixedSteps {
    check_admin_role: (Action, Option<String>),
    stage_update: (Action, Option<String>),
    stop_cs_services: (Action, Option<String>),
    stop_w3svc: (Action, Option<String>),
    close_management_shells: (Action, Option<String>),
    install_update: (Action, Option<String>),
    start_w3svc: (Action, Option<String>),
    start_cs_services: (Action, Option<String>),
}

impl FixedSteps {
    fn new(package: &Package, destination: &str) -> Self {
        let rendered = |action: Action| {
            let command = render_command(&action, package);
            (action, command)
        };
        FixedSteps {
            check_admin_role: rendered(Action::CheckAdminRole),
            stage_update: rendered(Action::StageUpdate {
                source: package.installer.clone(),
                sha256: package.sha256.clone(),
                destination: destination.to_string(),
            }),
            stop_cs_services: rendered(Action::StopCsServices),
            stop_w3svc: rendered(Action::StopW3svc),
            close_management_shells: rendered(Action::CloseManagementShells),
            install_update: rendered(Action::InstallUpdate {
                path: destination.to_string(),
            }),
            start_w3svc: rendered(Action::StartW3svc),
            start_cs_services: rendered(Action::StartCsServices),
        }
    }
}

fn server_plan(
    unit: &Unit<'_>,
    machine: &Machine,
    updated_by: Option<&Fqdn>,
    package: &Package,
    fixed: &FixedSteps,
) -> ServerPlan {
    let owner = unit.pools[0];
    let backend = &owner.backend;
    let database_update = unit.database_update();
    let update_databases = match (updated_by, database_update) {
        (Some(last), _) => Action::DatabasesUpdatedBy {
            server: last.clone(),
        },
        (None, DatabaseUpdate::Local) => Action::UpdateLocalDatabases,
        (None, variant) => Action::UpdateConfiguredDatabases {
            sql_server_fqdn: backend.sql_server_fqdn.clone(),
            exclude_collocated_stores: variant == DatabaseUpdate::ConfiguredExcludeCollocated,
        },
    };
    let verify = Action::Verify {
        build: package.version,
        sql_server_fqdn: backend.sql_server_fqdn.clone(),
        sql_instance: backend.sql_instance.clone(),
        check_databases: updated_by.is_none(),
        local_databases: unit.role == ServerRole::StandardEdition,
    };

    let steps = StepId::ALL
        .into_iter()
        .map(|id| {
            let (action, command) = match id {
                StepId::CheckAdminRole => fixed.check_admin_role.clone(),
                StepId::StageUpdate => fixed.stage_update.clone(),
                StepId::StopCsServices | StepId::StopCsServicesGac => {
                    fixed.stop_cs_services.clone()
                }
                StepId::StopW3svc => fixed.stop_w3svc.clone(),
                StepId::CloseManagementShells => fixed.close_management_shells.clone(),
                StepId::InstallUpdate => fixed.install_update.clone(),
                StepId::StartW3svc => fixed.start_w3svc.clone(),
                StepId::UpdateDatabases => {
                    let command = render_command(&update_databases, package);
                    (update_databases.clone(), command)
                }
                StepId::StartCsServices => fixed.start_cs_services.clone(),
                StepId::Verify => {
                    let command = render_command(&verify, package);
                    (verify.clone(), command)
                }
            };
            PlannedStep {
                id,
                command,
                in_outage: id.in_outage(),
                action,
            }
        })
        .collect();

    ServerPlan {
        fqdn: machine.fqdn.clone(),
        pool: owner.fqdn.clone(),
        site: owner.site.clone(),
        role: unit.role,
        database_update,
        sql_server_fqdn: backend.sql_server_fqdn.clone(),
        sql_instance: backend.sql_instance.clone(),
        steps,
    }
}

impl fmt::Display for MirroredBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "back end {} of pool {} uses database mirroring (the topology shows: {})",
            self.sql_server_fqdn,
            self.pool,
            clean(&self.mirroring)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_dir_rules() {
        assert_eq!(check_staging_dir(r"C:\x\y\").unwrap(), r"C:\x\y");
        assert_eq!(
            check_staging_dir(r"D:\Program Files\s").unwrap(),
            r"D:\Program Files\s"
        );
        for bad in [
            "",
            "staging",
            r"\\server\share",
            r"C:\it's",
            "C:\\a\nb",
            r"C:\a*",
            r"C:\a[1]",
            r"C:\a\..\b",
            r"C:\a\\b",
            "C:\\a\"b",
            r"C:\a:b",
        ] {
            let err = check_staging_dir(bad).unwrap_err();
            assert_eq!(err.code(), "SFB-P004", "{bad:?}");
        }
    }
}
