//! Consistency checks on a [`Topology`], and the per-pool facts derived from it (SPEC.md
//! section 4).

use std::collections::{BTreeSet, HashMap};

use crate::error::{ErrorKind, TopologyError};
use crate::model::{
    Backend, Cluster, DatabaseUpdate, Deployment, Edition, InstalledOn, Pool, Service, Site, Span,
    SqlInstance, SqlInstanceStores, StoreKind, Topology,
};
use crate::product::ProductLine;

type Result<T> = std::result::Result<T, TopologyError>;

const USER_SERVICES: &str = "UserServices";

/// Every id of a topology, checked: no duplicates, no reference to anything missing.
pub(crate) struct Index<'t> {
    topology: &'t Topology,
    sites: HashMap<&'t str, &'t Site>,
    clusters: HashMap<&'t str, &'t Cluster>,
    sql_instances: HashMap<&'t str, &'t SqlInstance>,
    services: HashMap<&'t str, &'t Service>,
}

impl<'t> Index<'t> {
    pub(crate) fn build(topology: &'t Topology) -> Result<Self> {
        let err =
            |kind, span, message: String| TopologyError::new(kind, &topology.origin, span, message);
        let duplicate = |what: &str, id: &str, span: Span, first: Span| {
            err(
                ErrorKind::DuplicateId,
                span,
                format!(
                    "{what} {id}: duplicate id, already used by the {what} at line {}",
                    first.line
                ),
            )
        };

        let mut sites = HashMap::with_capacity(topology.sites.len());
        for site in &topology.sites {
            if let Some(first) = sites.insert(site.id.as_str(), site) {
                return Err(duplicate("Site", &site.id, site.span, first.span));
            }
        }

        let mut clusters = HashMap::with_capacity(topology.clusters.len());
        let mut fqdns: HashMap<String, &Cluster> = HashMap::with_capacity(topology.clusters.len());
        for cluster in &topology.clusters {
            if let Some(first) = clusters.insert(cluster.id.as_str(), cluster) {
                return Err(duplicate("Cluster", &cluster.id, cluster.span, first.span));
            }
            if let Some(first) = fqdns.insert(cluster.fqdn.key(), cluster) {
                return Err(err(
                    ErrorKind::DuplicateId,
                    cluster.span,
                    format!(
                        "Cluster {}: FQDN {} is already the FQDN of Cluster {} at line {}",
                        cluster.id, cluster.fqdn, first.id, first.span.line
                    ),
                ));
            }
            if !sites.contains_key(cluster.site_id.as_str()) {
                return Err(err(
                    ErrorKind::DanglingReference,
                    cluster.span,
                    format!(
                        "Cluster {}: SiteId refers to Site {} which does not exist",
                        cluster.id, cluster.site_id
                    ),
                ));
            }
            let mut machines = BTreeSet::new();
            for machine in &cluster.machines {
                if !machines.insert(&machine.fqdn) {
                    return Err(err(
                        ErrorKind::DuplicateId,
                        cluster.span,
                        format!(
                            "Cluster {}: Machine {} is listed twice",
                            cluster.id, machine.fqdn
                        ),
                    ));
                }
            }
        }

        let mut sql_instances = HashMap::with_capacity(topology.sql_instances.len());
        for instance in &topology.sql_instances {
            if let Some(first) = sql_instances.insert(instance.id.as_str(), instance) {
                return Err(duplicate(
                    "SqlInstance",
                    &instance.id,
                    instance.span,
                    first.span,
                ));
            }
            if !clusters.contains_key(instance.cluster_id.as_str()) {
                return Err(err(
                    ErrorKind::DanglingReference,
                    instance.span,
                    format!(
                        "SqlInstance {}: ClusterId refers to Cluster {} which does not exist",
                        instance.id, instance.cluster_id
                    ),
                ));
            }
        }

        let mut services = HashMap::with_capacity(topology.services.len());
        for service in &topology.services {
            if let Some(first) = services.insert(service.id.as_str(), service) {
                return Err(duplicate("Service", &service.id, service.span, first.span));
            }
        }
        for service in &topology.services {
            let dangling = |what: String| {
                err(
                    ErrorKind::DanglingReference,
                    service.span,
                    format!("Service {}: {what} which does not exist", service.id),
                )
            };
            match &service.installed_on {
                InstalledOn::Cluster(id) if !clusters.contains_key(id.as_str()) => {
                    return Err(dangling(format!("InstalledOn refers to Cluster {id}")));
                }
                InstalledOn::SqlInstance(id) if !sql_instances.contains_key(id.as_str()) => {
                    return Err(dangling(format!("InstalledOn refers to SqlInstance {id}")));
                }
                _ => {}
            }
            if !sites.contains_key(service.site_id.as_str()) {
                return Err(dangling(format!(
                    "SiteId refers to Site {}",
                    service.site_id
                )));
            }
            if let Some(missing) = service
                .depends_on
                .iter()
                .chain(&service.backups)
                .find(|d| !services.contains_key(d.as_str()))
            {
                return Err(dangling(format!("DependsOn refers to Service {missing}")));
            }
        }

        Ok(Index {
            topology,
            sites,
            clusters,
            sql_instances,
            services,
        })
    }

    fn error(&self, kind: ErrorKind, span: Span, message: String) -> TopologyError {
        TopologyError::new(kind, &self.topology.origin, span, message)
    }
}

/// Derives every pool's back end and database-update variant (SPEC.md section 4).
///
/// A pool is a cluster with a `UserServices` service. Its back end is the SQL instance its
/// `UserStore` is installed on, reached through the `UserServices` dependencies. The pool is a
/// Standard Edition server when that instance lives on the pool's own cluster. Collocated stores
/// are the other database stores on the same instance, except Application and Central
/// Management stores, which belong to the back end itself.
///
/// Pools come in the file's cluster order.
pub fn derive(topology: &Topology) -> Result<Deployment> {
    let index = Index::build(topology)?;

    let mut stores_on: HashMap<&str, BTreeSet<StoreKind>> = HashMap::new();
    let mut mirroring_on: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut user_services: HashMap<&str, &Service> = HashMap::new();
    for service in &topology.services {
        if let (Some(kind), InstalledOn::SqlInstance(on)) = (
            StoreKind::from_role_name(&service.role),
            &service.installed_on,
        ) {
            stores_on.entry(on.as_str()).or_default().insert(kind);
            if let Some(m) = &service.mirroring {
                mirroring_on.entry(on.as_str()).or_default().push(m);
            }
        }
        if service.role == USER_SERVICES {
            let InstalledOn::Cluster(on) = &service.installed_on else {
                return Err(index.error(
                    ErrorKind::Inconsistent,
                    service.span,
                    format!(
                        "Service {}: UserServices is installed on a SQL instance, expected a cluster",
                        service.id
                    ),
                ));
            };
            if let Some(first) = user_services.insert(on.as_str(), service) {
                return Err(index.error(
                    ErrorKind::Inconsistent,
                    service.span,
                    format!(
                        "Service {}: Cluster {on} already has UserServices (Service {} at line {})",
                        service.id, first.id, first.span.line
                    ),
                ));
            }
        }
    }

    let partners = partners(&index, &user_services);
    let mut pools = Vec::with_capacity(user_services.len());
    for cluster in &topology.clusters {
        if let Some(service) = user_services.get(cluster.id.as_str()) {
            let mut pool = pool(&index, cluster, service, &stores_on, &mirroring_on)?;
            pool.uses_stores_on = stores_used(&index, cluster);
            pool.paired_with = partners
                .get(cluster.id.as_str())
                .and_then(|c| index.clusters.get(c))
                .map(|c| c.fqdn.clone());
            pools.push(pool);
        }
    }

    let sql_instances = topology
        .sql_instances
        .iter()
        .map(|instance| SqlInstanceStores {
            sql_server_fqdn: index.clusters[instance.cluster_id.as_str()].fqdn.clone(),
            sql_instance: instance.name.clone(),
            stores: stores_on
                .get(instance.id.as_str())
                .cloned()
                .unwrap_or_default(),
            machines: index.clusters[instance.cluster_id.as_str()]
                .machines
                .clone(),
        })
        .collect();

    Ok(Deployment {
        format: topology.format,
        pools,
        sql_instances,
    })
}

fn pool(
    index: &Index<'_>,
    cluster: &Cluster,
    user_services: &Service,
    stores_on: &HashMap<&str, BTreeSet<StoreKind>>,
    mirroring_on: &HashMap<&str, Vec<&str>>,
) -> Result<Pool> {
    let mut user_stores: Vec<&Service> = Vec::new();
    for id in &user_services.depends_on {
        let dependency = index.services[id.as_str()];
        if dependency.role == StoreKind::User.role_name()
            && !user_stores.iter().any(|s| s.id == dependency.id)
        {
            user_stores.push(dependency);
        }
    }
    let user_store = match user_stores.as_slice() {
        [one] => *one,
        [] => {
            return Err(index.error(
                ErrorKind::NoUserStore,
                user_services.span,
                format!(
                    "Service {}: the UserServices of pool {} depend on no UserStore",
                    user_services.id, cluster.fqdn
                ),
            ));
        }
        several => {
            let ids: Vec<&str> = several.iter().map(|s| s.id.as_str()).collect();
            return Err(index.error(
                ErrorKind::Inconsistent,
                user_services.span,
                format!(
                    "Service {}: the UserServices of pool {} depend on {} UserStores ({}), expected one",
                    user_services.id,
                    cluster.fqdn,
                    ids.len(),
                    ids.join(", ")
                ),
            ));
        }
    };
    let InstalledOn::SqlInstance(instance_id) = &user_store.installed_on else {
        return Err(index.error(
            ErrorKind::Inconsistent,
            user_store.span,
            format!(
                "Service {}: the UserStore of pool {} is installed on a cluster, expected a SqlInstance",
                user_store.id, cluster.fqdn
            ),
        ));
    };
    let instance = index.sql_instances[instance_id.as_str()];
    let sql_cluster = index.clusters[instance.cluster_id.as_str()];

    if cluster.machines.is_empty() {
        return Err(index.error(
            ErrorKind::Inconsistent,
            cluster.span,
            format!(
                "Cluster {}: pool {} has no machines",
                cluster.id, cluster.fqdn
            ),
        ));
    }
    if sql_cluster.machines.is_empty() {
        return Err(index.error(
            ErrorKind::Inconsistent,
            sql_cluster.span,
            format!(
                "Cluster {}: SQL server {} (back end of pool {}) has no machines",
                sql_cluster.id, sql_cluster.fqdn, cluster.fqdn
            ),
        ));
    }

    let edition = if instance.cluster_id == cluster.id {
        Edition::Standard
    } else {
        Edition::Enterprise
    };
    let stores = stores_on
        .get(instance.id.as_str())
        .cloned()
        .unwrap_or_default();
    let collocated_stores: BTreeSet<StoreKind> = stores
        .iter()
        .copied()
        .filter(|s| s.is_collocatable())
        .collect();
    let database_update = match edition {
        Edition::Standard => DatabaseUpdate::Local,
        Edition::Enterprise if !collocated_stores.is_empty() => {
            DatabaseUpdate::ConfiguredExcludeCollocated
        }
        Edition::Enterprise => DatabaseUpdate::Configured,
    };
    let mirroring: Vec<&str> = instance
        .mirroring
        .as_deref()
        .into_iter()
        .chain(
            mirroring_on
                .get(instance.id.as_str())
                .into_iter()
                .flatten()
                .copied(),
        )
        .collect();

    let product = match user_services.version.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(version) => Some(ProductLine::from_service_version(version).ok_or_else(|| {
            index.error(
                ErrorKind::InvalidValue,
                user_services.span,
                format!(
                    "Service {}: ServiceVersion '{}' of pool {} names no product line sfbpatch \
                     knows (6 = Lync Server 2013, 7 = Skype for Business Server 2015, 8 = Skype \
                     for Business Server 2019)",
                    user_services.id,
                    crate::source::excerpt(version),
                    cluster.fqdn
                ),
            )
        })?),
    };

    let site = index
        .sites
        .get(cluster.site_id.as_str())
        .map_or_else(|| cluster.site_id.clone(), |s| s.name.clone());

    Ok(Pool {
        fqdn: cluster.fqdn.clone(),
        site,
        edition,
        machines: cluster.machines.clone(),
        backend: Backend {
            sql_server_fqdn: sql_cluster.fqdn.clone(),
            sql_instance: instance.name.clone(),
            always_on: instance.always_on_primary.is_some(),
            always_on_primary: instance.always_on_primary.clone(),
            machines: sql_cluster.machines.clone(),
            stores,
            collocated_stores,
            mirroring: (!mirroring.is_empty()).then(|| mirroring.join("; ")),
        },
        database_update,
        product,
        paired_with: None,
        uses_stores_on: Vec::new(),
    })
}

/// The SQL Servers holding stores that services installed on `cluster` depend on, in file
/// order of the dependencies.
fn stores_used(index: &Index<'_>, cluster: &Cluster) -> Vec<crate::names::Fqdn> {
    let mut out: Vec<crate::names::Fqdn> = Vec::new();
    for service in &index.topology.services {
        if !matches!(&service.installed_on, InstalledOn::Cluster(c) if *c == cluster.id) {
            continue;
        }
        for dep in &service.depends_on {
            let Some(target) = index.services.get(dep.as_str()) else {
                continue;
            };
            if StoreKind::from_role_name(&target.role).is_none() {
                continue;
            }
            let InstalledOn::SqlInstance(on) = &target.installed_on else {
                continue;
            };
            let Some(instance) = index.sql_instances.get(on.as_str()) else {
                continue;
            };
            let Some(sql) = index.clusters.get(instance.cluster_id.as_str()) else {
                continue;
            };
            if !out.iter().any(|f| f == &sql.fqdn) {
                out.push(sql.fqdn.clone());
            }
        }
    }
    out
}

/// Pools paired for disaster recovery, by cluster id, both ways: a Registrar on one pool that
/// names a Registrar on another pool as its backup. The first pairing a pool takes part in wins.
fn partners<'t>(
    index: &Index<'t>,
    user_services: &HashMap<&str, &Service>,
) -> HashMap<&'t str, &'t str> {
    let mut out: HashMap<&str, &str> = HashMap::new();
    for service in &index.topology.services {
        let InstalledOn::Cluster(own) = &service.installed_on else {
            continue;
        };
        if service.role != "Registrar" || !user_services.contains_key(own.as_str()) {
            continue;
        }
        for backup in &service.backups {
            let Some(target) = index.services.get(backup.as_str()) else {
                continue;
            };
            if let InstalledOn::Cluster(other) = &target.installed_on
                && other != own
                && user_services.contains_key(other.as_str())
            {
                out.entry(own.as_str()).or_insert(other.as_str());
                out.entry(other.as_str()).or_insert(own.as_str());
            }
        }
    }
    out
}
