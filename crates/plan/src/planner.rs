//! The planner: deployment + package + policy -> the procedure for every server to update.
//!
//! Pure and deterministic: the plan depends only on the arguments, and servers come out in the
//! deployment's file order.
//!
//! What gets planned:
//! - every machine of every Enterprise Edition back end (the SQL cluster the pool's User store
//!   lives on), role [`ServerKind::BackEnd`]. Pools whose back ends are on the same SQL
//!   cluster (same SQL Server FQDN) share those machines: they are planned once, under the
//!   first such pool. `Install-CsDatabase -ConfiguredDatabases -SqlServerFqdn` updates every
//!   database the topology places on that SQL Server, whatever the instance.
//! - every machine of every Standard Edition pool, role [`ServerKind::StandardEdition`].
//!
//! Front End servers are not part of the procedure. On a back end with several machines
//! (AlwaysOn nodes, failover cluster nodes) only the last machine updates the databases, so
//! they are updated once, after every machine has the update; the others say which machine
//! does it ([`Action::DatabasesUpdatedBy`]). Which machine is last is decided on the whole back
//! end, before `only` narrows the plan, so planning the nodes one at a time gives the same
//! steps as planning them together.

use std::collections::HashMap;
use std::fmt;

use sfbpatch_topology::{
    DatabaseUpdate, Deployment, Edition, Fqdn, Machine, Pool, SqlInstanceName,
};

use crate::command::{INSTALLER_FILE_NAME, render_command};
use crate::model::{Action, Package, Plan, PlannedStep, Readiness, ServerKind, ServerPlan, StepId};
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
    /// Machines known to have the Skype for Business components (besides those the
    /// inventory marks `sfb_components = true`): the lab's, or what a pre-flight found.
    pub sfb_components: Vec<String>,
    /// A Front End pool whose fabric shows missing replicas is recovered with
    /// `Reset-CsPoolRegistrarState -ResetType QuorumLossRecovery` instead of left alone.
    pub reset_missing_replicas: bool,
}

impl Default for PlanPolicy {
    fn default() -> Self {
        PlanPolicy {
            only: Vec::new(),
            staging_dir: DEFAULT_STAGING_DIR.to_string(),
            sfb_components: Vec::new(),
            reset_missing_replicas: false,
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

/// Plan the update of every server of `deployment` (narrowed by `policy.only`), in file order:
/// per pool its Front End servers, then its back end's machines (where not planned already); a
/// Standard Edition server as one; then SQL Servers that hold stores but no pool's back end.
pub fn plan(
    deployment: &Deployment,
    package: &Package,
    policy: &PlanPolicy,
) -> Result<Plan, PlanError> {
    let staging_dir = check_staging_dir(&policy.staging_dir)?;
    let destination = format!("{staging_dir}\\{}\\{INSTALLER_FILE_NAME}", package.version);

    let mirrored: Vec<MirroredBackend> = deployment
        .pools
        .iter()
        .filter_map(|pool| {
            pool.backend.mirroring.as_ref().map(|m| MirroredBackend {
                pool: pool.fqdn.clone(),
                sql_server_fqdn: pool.backend.sql_server_fqdn.clone(),
                mirroring: m.clone(),
            })
        })
        .collect();

    let fixed = FixedSteps::new(package, &destination);
    let mut pools_on: HashMap<String, Vec<&Pool>> = HashMap::new();
    for pool in deployment
        .pools
        .iter()
        .filter(|p| p.edition == Edition::Enterprise)
    {
        pools_on
            .entry(pool.backend.sql_server_fqdn.key())
            .or_default()
            .push(pool);
    }
    let builder = Builder {
        deployment,
        pools_on,
        package,
        policy,
        fixed: &fixed,
    };
    let all = builder.all()?;
    if all.is_empty() {
        return Err(PlanError::EmptyPlan);
    }
    let servers = select(deployment, all, &policy.only)?;
    let selected_pools: Vec<&Fqdn> = servers.iter().map(|s| &s.pool).collect();
    let mirrored: Vec<MirroredBackend> = mirrored
        .into_iter()
        .filter(|m| selected_pools.iter().any(|p| **p == m.pool))
        .collect();
    if !mirrored.is_empty() {
        return Err(PlanError::MirroredBackend(mirrored));
    }
    Ok(Plan {
        package: package.clone(),
        servers,
    })
}

struct Builder<'a> {
    deployment: &'a Deployment,
    /// Enterprise pools by their back end's SQL Server (key), in file order.
    pools_on: HashMap<String, Vec<&'a Pool>>,
    package: &'a Package,
    policy: &'a PlanPolicy,
    fixed: &'a FixedSteps,
}

/// What a step on a machine without the Skype for Business components reads.
const NO_COMPONENTS: &str = "no Skype for Business components on this SQL Server machine";

impl Builder<'_> {
    fn has_components(&self, machine: &Machine) -> bool {
        machine.sfb_components
            || self
                .policy
                .sfb_components
                .iter()
                .any(|f| f.eq_ignore_ascii_case(machine.fqdn.as_str()))
    }

    /// Every server of the deployment, in plan order, with dependencies between them.
    fn all(&self) -> Result<Vec<ServerPlan>, PlanError> {
        let mut out: Vec<ServerPlan> = Vec::new();
        let mut seen: HashMap<String, Fqdn> = HashMap::new();
        let mut claim = |fqdn: &Fqdn, pool: &Fqdn| -> Result<(), PlanError> {
            if let Some(first) = seen.insert(fqdn.key(), pool.clone()) {
                return Err(PlanError::ServerInTwoPools {
                    server: fqdn.clone(),
                    first,
                    second: pool.clone(),
                });
            }
            Ok(())
        };
        let mut backends_done: Vec<String> = Vec::new();
        for pool in &self.deployment.pools {
            match pool.edition {
                Edition::Standard => {
                    let Some(machine) = pool.machines.first() else {
                        return Err(PlanError::NoMachines {
                            pool: pool.fqdn.clone(),
                            sql_server_fqdn: pool.backend.sql_server_fqdn.clone(),
                            standard_edition: true,
                        });
                    };
                    claim(&machine.fqdn, &pool.fqdn)?;
                    out.push(self.standard_edition(pool, machine));
                }
                Edition::Enterprise => {
                    for machine in &pool.machines {
                        claim(&machine.fqdn, &pool.fqdn)?;
                        out.push(self.front_end(pool, machine));
                    }
                    let key = pool.backend.sql_server_fqdn.key();
                    if backends_done.contains(&key) {
                        continue;
                    }
                    backends_done.push(key);
                    if pool.backend.machines.is_empty() {
                        return Err(PlanError::NoMachines {
                            pool: pool.fqdn.clone(),
                            sql_server_fqdn: pool.backend.sql_server_fqdn.clone(),
                            standard_edition: false,
                        });
                    }
                    for plan in self.back_end(pool) {
                        claim(&plan.fqdn, &pool.fqdn)?;
                        out.push(plan);
                    }
                }
            }
        }
        for plan in self.store_servers(&out) {
            claim(&plan.fqdn, &plan.pool)?;
            out.push(plan);
        }
        Ok(out)
    }

    fn step(&self, id: StepId, action: Action) -> PlannedStep {
        let command = render_command(&action, self.package);
        PlannedStep {
            id,
            command,
            in_outage: false,
            run_on: None,
            not_applicable: None,
            action,
        }
    }

    fn fixed(&self, id: StepId) -> PlannedStep {
        let f = self.fixed;
        let (action, command) = match id {
            StepId::CheckAdminRole => f.check_admin_role.clone(),
            StepId::StageUpdate => f.stage_update.clone(),
            StepId::StopCsServices | StepId::StopCsServicesGac => f.stop_cs_services.clone(),
            StepId::StopW3svc => f.stop_w3svc.clone(),
            StepId::CloseManagementShells => f.close_management_shells.clone(),
            StepId::InstallUpdate => f.install_update.clone(),
            StepId::StartW3svc => f.start_w3svc.clone(),
            StepId::StartCsServices => f.start_cs_services.clone(),
            other => unreachable!("{other} is not a fixed step"),
        };
        PlannedStep {
            id,
            command,
            in_outage: false,
            run_on: None,
            not_applicable: None,
            action,
        }
    }

    fn standard_edition(&self, pool: &Pool, machine: &Machine) -> ServerPlan {
        let backend = &pool.backend;
        let steps = StepId::SEED
            .into_iter()
            .map(|id| {
                let mut step = match id {
                    StepId::UpdateDatabases => self.step(id, Action::UpdateLocalDatabases),
                    StepId::Verify => self.step(
                        id,
                        Action::Verify {
                            build: self.package.version,
                            sql_server_fqdn: backend.sql_server_fqdn.clone(),
                            sql_instance: backend.sql_instance.clone(),
                            check_databases: true,
                            local_databases: true,
                            check_services: true,
                            fabric_pool: None,
                        },
                    ),
                    id => self.fixed(id),
                };
                step.in_outage = id >= StepId::StopCsServices && id <= StepId::StartCsServices;
                step
            })
            .collect();
        ServerPlan {
            fqdn: machine.fqdn.clone(),
            pool: pool.fqdn.clone(),
            site: pool.site.clone(),
            kind: ServerKind::StandardEdition,
            database_update: DatabaseUpdate::Local,
            sql_server_fqdn: backend.sql_server_fqdn.clone(),
            sql_instance: backend.sql_instance.clone(),
            upgrade_domain: None,
            after: Vec::new(),
            steps,
        }
    }

    fn front_end(&self, pool: &Pool, machine: &Machine) -> ServerPlan {
        let backend = &pool.backend;
        let alone = pool.machines.len() < 2;
        let steps = StepId::FRONT_END
            .into_iter()
            .map(|id| {
                let mut step = match id {
                    StepId::CheckFabricState => self.step(
                        id,
                        Action::CheckFabricState {
                            pool: pool.fqdn.clone(),
                            readiness: Readiness::for_build(self.package.version),
                            reset_missing_replicas: self.policy.reset_missing_replicas,
                        },
                    ),
                    StepId::Failover => self.step(
                        id,
                        Action::Failover {
                            computer: machine.fqdn.clone(),
                        },
                    ),
                    StepId::Failback => self.step(
                        id,
                        Action::Failback {
                            computer: machine.fqdn.clone(),
                        },
                    ),
                    StepId::Verify => self.step(
                        id,
                        Action::Verify {
                            build: self.package.version,
                            sql_server_fqdn: backend.sql_server_fqdn.clone(),
                            sql_instance: backend.sql_instance.clone(),
                            check_databases: false,
                            local_databases: false,
                            check_services: true,
                            fabric_pool: (!alone).then(|| pool.fqdn.clone()),
                        },
                    ),
                    id => self.fixed(id),
                };
                if alone && matches!(id, StepId::Failover | StepId::Failback) {
                    step.not_applicable(format!(
                        "pool {} has no other Front End server to take over its users; the pool \
                         is unavailable while this server is out of service",
                        pool.fqdn
                    ));
                }
                // Invoke-CsComputerFailOver stops and disables the services (so that nothing,
                // not the installer nor a restart, starts them on the old assemblies);
                // Invoke-CsComputerFailBack enables and starts them. Start-CsWindowsService
                // in between would fail on disabled services.
                if !alone && id == StepId::StartCsServices {
                    step.not_applicable(
                        "Invoke-CsComputerFailBack enables and starts the services that \
                         Invoke-CsComputerFailOver stopped and disabled"
                            .to_string(),
                    );
                }
                step.in_outage = if alone {
                    id >= StepId::StopCsServices && id <= StepId::StartCsServices
                } else {
                    id >= StepId::Failover && id <= StepId::Failback
                };
                step
            })
            .collect();
        ServerPlan {
            fqdn: machine.fqdn.clone(),
            pool: pool.fqdn.clone(),
            site: pool.site.clone(),
            kind: ServerKind::FrontEnd,
            database_update: pool.database_update,
            sql_server_fqdn: backend.sql_server_fqdn.clone(),
            sql_instance: backend.sql_instance.clone(),
            upgrade_domain: machine.upgrade_domain.clone(),
            after: Vec::new(),
            steps,
        }
    }

    /// The machines of `pool`'s back end. The databases are updated once, by the last machine:
    /// from the machine itself when it has the Management Shell, otherwise from the last Front
    /// End server of the first pool using the back end, after every Front End server of every
    /// pool using it runs the new build.
    fn back_end(&self, owner: &Pool) -> Vec<ServerPlan> {
        let backend = &owner.backend;
        let pools: &[&Pool] = self
            .pools_on
            .get(&backend.sql_server_fqdn.key())
            .map_or(&[], Vec::as_slice);
        let exclude = pools
            .iter()
            .any(|p| p.database_update == DatabaseUpdate::ConfiguredExcludeCollocated);
        let database_update = if exclude {
            DatabaseUpdate::ConfiguredExcludeCollocated
        } else {
            DatabaseUpdate::Configured
        };
        let front_ends: Vec<Fqdn> = pools
            .iter()
            .flat_map(|p| p.machines.iter().map(|m| m.fqdn.clone()))
            .collect();
        let runner_fe = owner.machines.last().map(|m| m.fqdn.clone());
        self.database_machines(DatabaseMachines {
            pool: owner,
            kind: ServerKind::BackEnd,
            sql_server_fqdn: &backend.sql_server_fqdn,
            sql_instance: &backend.sql_instance,
            machines: &backend.machines,
            database_update,
            after: front_ends,
            runner: runner_fe,
        })
    }

    /// SQL Servers that hold stores but no pool's back end and no Standard Edition server's
    /// own databases: one database-only unit each, after every server using the stores.
    fn store_servers(&self, planned: &[ServerPlan]) -> Vec<ServerPlan> {
        let mut out = Vec::new();
        let mut done: Vec<String> = Vec::new();
        for instance in &self.deployment.sql_instances {
            let key = instance.sql_server_fqdn.key();
            if instance.stores.is_empty()
                || done.contains(&key)
                || planned.iter().any(|p| p.sql_server_fqdn.key() == key)
                || self
                    .deployment
                    .pools
                    .iter()
                    .any(|p| p.fqdn.key() == key || p.machines.iter().any(|m| m.fqdn.key() == key))
            {
                continue;
            }
            done.push(key.clone());
            let users: Vec<&Pool> = self
                .deployment
                .pools
                .iter()
                .filter(|p| p.uses_stores_on.iter().any(|f| f.key() == key))
                .collect();
            let Some(owner) = users.first().copied().or(self.deployment.pools.first()) else {
                continue;
            };
            let user_keys: std::collections::HashSet<String> =
                users.iter().map(|u| u.fqdn.key()).collect();
            let using: Vec<Fqdn> = planned
                .iter()
                .filter(|p| {
                    matches!(p.kind, ServerKind::FrontEnd | ServerKind::StandardEdition)
                        && (users.is_empty() || user_keys.contains(&p.pool.key()))
                })
                .map(|p| p.fqdn.clone())
                .collect();
            let runner = using.last().cloned();
            out.extend(self.database_machines(DatabaseMachines {
                pool: owner,
                kind: ServerKind::Store,
                sql_server_fqdn: &instance.sql_server_fqdn,
                sql_instance: &instance.sql_instance,
                machines: &instance.machines,
                database_update: DatabaseUpdate::Configured,
                after: using,
                runner,
            }));
        }
        out
    }

    fn database_machines(&self, unit: DatabaseMachines<'_>) -> Vec<ServerPlan> {
        let Some(last) = unit.machines.last() else {
            return Vec::new();
        };
        let last_has = self.has_components(last);
        // Where Install-CsDatabase runs: the last machine itself, or a server running the new build.
        let runner: Option<Fqdn> = if last_has { None } else { unit.runner.clone() };
        unit.machines
            .iter()
            .enumerate()
            .map(|(i, machine)| {
                let is_last = i + 1 == unit.machines.len();
                let components = self.has_components(machine);
                let steps = StepId::SEED
                    .into_iter()
                    .map(|id| {
                        let mut step = match id {
                            StepId::UpdateDatabases if !is_last => self.step(
                                id,
                                Action::DatabasesUpdatedBy {
                                    server: last.fqdn.clone(),
                                },
                            ),
                            StepId::UpdateDatabases => self.step(
                                id,
                                Action::UpdateConfiguredDatabases {
                                    sql_server_fqdn: unit.sql_server_fqdn.clone(),
                                    exclude_collocated_stores: unit.database_update
                                        == DatabaseUpdate::ConfiguredExcludeCollocated,
                                },
                            ),
                            StepId::Verify => self.step(
                                id,
                                Action::Verify {
                                    build: self.package.version,
                                    sql_server_fqdn: unit.sql_server_fqdn.clone(),
                                    sql_instance: unit.sql_instance.clone(),
                                    check_databases: is_last,
                                    local_databases: false,
                                    check_services: false,
                                    fabric_pool: None,
                                },
                            ),
                            id => self.fixed(id),
                        };
                        let runs_remotely = is_last && !components;
                        match id {
                            StepId::StopCsServices
                            | StepId::StopCsServicesGac
                            | StepId::StartCsServices => step.not_applicable(format!(
                                "no Skype for Business services run on SQL Server machine {}",
                                machine.fqdn
                            )),
                            StepId::StopW3svc | StepId::StartW3svc => step.not_applicable(
                                format!("no IIS (W3SVC) on SQL Server machine {}", machine.fqdn),
                            ),
                            StepId::StageUpdate
                            | StepId::CloseManagementShells
                            | StepId::InstallUpdate
                                if !components =>
                            {
                                step.not_applicable(NO_COMPONENTS.to_string())
                            }
                            StepId::CheckAdminRole | StepId::UpdateDatabases | StepId::Verify
                                if runs_remotely =>
                            {
                                match &runner {
                                    Some(r) => step.run_on = Some(r.clone()),
                                    None => step.not_applicable(format!(
                                        "{NO_COMPONENTS}, and no planned server with the \
                                         Management Shell uses it"
                                    )),
                                }
                            }
                            StepId::CheckAdminRole | StepId::Verify if !components && !is_last => {
                                step.not_applicable(format!(
                                    "{NO_COMPONENTS}; the databases are updated and checked once, for {}",
                                    last.fqdn
                                ))
                            }
                            _ => {}
                        }
                        step.in_outage = id == StepId::UpdateDatabases
                            && is_last
                            && step.not_applicable.is_none();
                        step
                    })
                    .collect();
                ServerPlan {
                    fqdn: machine.fqdn.clone(),
                    pool: unit.pool.fqdn.clone(),
                    site: unit.pool.site.clone(),
                    kind: unit.kind,
                    database_update: unit.database_update,
                    sql_server_fqdn: unit.sql_server_fqdn.clone(),
                    sql_instance: unit.sql_instance.clone(),
                    upgrade_domain: None,
                    after: unit.after.clone(),
                    steps,
                }
            })
            .collect()
    }
}

/// The SQL Server machines of one back end or store server.
struct DatabaseMachines<'a> {
    pool: &'a Pool,
    kind: ServerKind,
    sql_server_fqdn: &'a Fqdn,
    sql_instance: &'a SqlInstanceName,
    machines: &'a [Machine],
    database_update: DatabaseUpdate,
    /// Servers that must run the new build first.
    after: Vec<Fqdn>,
    /// The server that runs `Install-CsDatabase` when the machine lacks the Management Shell.
    runner: Option<Fqdn>,
}

impl PlannedStep {
    fn not_applicable(&mut self, reason: String) {
        self.command = None;
        self.not_applicable = Some(reason);
    }
}

/// Narrow `all` to what `only` names: a pool (its servers), a SQL Server (its machines), or a
/// machine. Dependencies on servers left out are dropped.
fn select(
    deployment: &Deployment,
    all: Vec<ServerPlan>,
    only: &[String],
) -> Result<Vec<ServerPlan>, PlanError> {
    if only.is_empty() {
        return Ok(all);
    }
    let mut keep = vec![false; all.len()];
    for name in only {
        let key = name.to_ascii_lowercase();
        let mut any = false;
        for (i, s) in all.iter().enumerate() {
            let hit = s.fqdn.key() == key
                || s.pool.key() == key
                || (matches!(s.kind, ServerKind::BackEnd | ServerKind::Store)
                    && s.sql_server_fqdn.key() == key);
            if hit {
                keep[i] = true;
                any = true;
            }
        }
        if !any {
            return Err(PlanError::OnlyMatchesNothing {
                name: name.to_string(),
                front_end_of: None,
                pools: deployment.pools.iter().map(|p| p.fqdn.clone()).collect(),
                servers: all.iter().map(|s| s.fqdn.clone()).collect(),
            });
        }
    }
    let mut out: Vec<ServerPlan> = all
        .into_iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(s, _)| s)
        .collect();
    let kept: Vec<String> = out.iter().map(|s| s.fqdn.key()).collect();
    for s in &mut out {
        s.after.retain(|a| kept.contains(&a.key()));
    }
    Ok(out)
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
