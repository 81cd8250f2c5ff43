//! Topology Builder files (`.tbxml`): `TopologyBuilder/NewTopology/PartialTopology`.
//!
//! Clusters, SQL instances and services are identified by their GUID `UniqueId`; SQL instances
//! are nested in their cluster, and services refer to clusters and SQL instances by GUID.

use std::collections::HashMap;

use roxmltree::Node;

use crate::model::{
    Cluster, InstalledOn, Service, Site, SourceFormat, SqlInstance, StoreKind, Topology,
};
use crate::source::Source;
use crate::xml::{
    self, Result, attr, children, fqdn, instance_name, required, required_child, span,
};

pub(crate) fn read(src: &Source<'_>, root: Node<'_, '_>) -> Result<Topology> {
    let new = required_child(src, root, "NewTopology", &"TopologyBuilder")?;
    let partial = required_child(src, new, "PartialTopology", &"NewTopology")?;
    let mut topology = Topology::new(SourceFormat::TopologyBuilder, src.origin);

    // Central sites, and branch sites nested in them, in document order (iteratively: nesting
    // depth comes from the file).
    let mut pending: Vec<Node<'_, '_>> = children(partial, "CentralSites")
        .flat_map(|c| children(c, "CentralSite"))
        .collect();
    pending.reverse();
    while let Some(site) = pending.pop() {
        read_site(src, site, &mut topology)?;
        let mut nested: Vec<Node<'_, '_>> = site
            .children()
            .filter(|c| c.is_element())
            .flat_map(|c| c.children())
            .filter(|c| c.is_element() && c.tag_name().name() == "BranchSite")
            .collect();
        nested.reverse();
        pending.extend(nested);
    }

    // Where each cluster and SQL instance lives, to resolve `InstalledOn` and give services a site.
    let mut sites_of: HashMap<&str, (bool, &str)> = HashMap::new();
    for cluster in &topology.clusters {
        sites_of.insert(&cluster.id, (false, &cluster.site_id));
    }
    let cluster_sites: HashMap<&str, &str> = topology
        .clusters
        .iter()
        .map(|c| (c.id.as_str(), c.site_id.as_str()))
        .collect();
    for instance in &topology.sql_instances {
        let site = cluster_sites
            .get(instance.cluster_id.as_str())
            .copied()
            .unwrap_or("");
        sites_of.insert(&instance.id, (true, site));
    }

    let mut services = Vec::new();
    for service in children(partial, "Services").flat_map(|c| children(c, "Service")) {
        let id = required(src, service, "UniqueId", &"Service")?;
        let what = format!("Service {id}");
        let role = required(src, service, "RoleName", &what)?;
        let on = required(src, service, "InstalledOn", &what)?;
        let is_store = StoreKind::from_role_name(role).is_some();
        let (installed_on, site_id) = match sites_of.get(on) {
            Some(&(true, site)) => (InstalledOn::SqlInstance(on.to_string()), site),
            Some(&(false, site)) => (InstalledOn::Cluster(on.to_string()), site),
            // Dangling: reported by validation, naming what a service of this role lives on.
            None if is_store => (InstalledOn::SqlInstance(on.to_string()), ""),
            None => (InstalledOn::Cluster(on.to_string()), ""),
        };
        let mut depends_on = Vec::new();
        let mut backups = Vec::new();
        for dependency in children(service, "DependsOn").flat_map(|d| children(d, "Dependency")) {
            let backup = dependency
                .attribute("Usage")
                .is_some_and(|u| u.eq_ignore_ascii_case("Backup"));
            let target = required(
                src,
                dependency,
                "ServiceUniqueId",
                &format_args!("Dependency in {what}"),
            )?;
            if backup {
                backups.push(target.to_string());
            } else {
                depends_on.push(target.to_string());
            }
        }
        services.push(Service {
            id: id.to_string(),
            role: role.to_string(),
            site_id: site_id.to_string(),
            installed_on,
            depends_on,
            backups,
            mirroring: if is_store {
                xml::mirroring(src, service, &what)
            } else {
                None
            },
            version: attr(service, "ServiceVersion").map(str::to_string),
            span: span(src, service),
        });
    }
    topology.services = services;
    Ok(topology)
}

fn read_site(src: &Source<'_>, site: Node<'_, '_>, topology: &mut Topology) -> Result<()> {
    let site_id = required(src, site, "SiteId", &site.tag_name().name())?;
    topology.sites.push(Site {
        id: site_id.to_string(),
        name: xml::site_name(site).unwrap_or_else(|| site_id.to_string()),
        span: span(src, site),
    });
    for cluster in children(site, "Clusters").flat_map(|c| children(c, "Cluster")) {
        let id = required(src, cluster, "UniqueId", &"Cluster")?;
        let what = format!("Cluster {id}");
        let fqdn = fqdn(
            src,
            cluster,
            required(src, cluster, "Fqdn", &what)?,
            &what,
            "Fqdn",
        )?;
        let single_machine = xml::flag(src, cluster, "IsSingleMachineOnly", &what)?;
        let machines = xml::machines(src, cluster, &fqdn, single_machine, &what)?;
        for instance in children(cluster, "SqlInstances").flat_map(|c| children(c, "SqlInstance")) {
            let instance_id = required(
                src,
                instance,
                "UniqueId",
                &format_args!("SqlInstance in {what}"),
            )?;
            let instance_what = format!("SqlInstance {instance_id}");
            topology.sql_instances.push(SqlInstance {
                id: instance_id.to_string(),
                cluster_id: id.to_string(),
                name: instance_name(
                    src,
                    instance,
                    attr(instance, "Name").unwrap_or(""),
                    &instance_what,
                )?,
                always_on_primary: xml::optional_fqdn(
                    src,
                    instance,
                    "AlwaysOnPrimaryNodeFqdn",
                    &instance_what,
                )?,
                mirroring: xml::mirroring(src, instance, &instance_what),
                span: span(src, instance),
            });
        }
        topology.clusters.push(Cluster {
            id: id.to_string(),
            site_id: site_id.to_string(),
            fqdn,
            single_machine,
            machines,
            span: span(src, cluster),
        });
    }
    Ok(())
}
