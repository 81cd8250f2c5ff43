//! The published topology (`Get-CsTopology -AsXml`).
//!
//! Ids are built from the file's composite keys: a cluster is `SiteId:Number`, a SQL instance is
//! its cluster id followed by `\Name` for a named instance, a service is
//! `SiteId:RoleName:Instance`.

use roxmltree::Node;

use crate::model::{
    Cluster, InstalledOn, Service, Site, SourceFormat, SqlInstance, StoreKind, Topology,
};
use crate::source::Source;
use crate::xml::{
    self, Result, attr, child, children, fqdn, instance_name, required, required_child, span,
};

pub(crate) fn read(src: &Source<'_>, root: Node<'_, '_>) -> Result<Topology> {
    let mut topology = Topology::new(SourceFormat::Published, src.origin);

    for sites in children(root, "Sites") {
        for site in sites
            .children()
            .filter(|c| c.is_element() && c.tag_name().name().ends_with("Site"))
        {
            let id = required(src, site, "SiteId", &site.tag_name().name())?;
            topology.sites.push(Site {
                id: id.to_string(),
                name: xml::site_name(site).unwrap_or_else(|| id.to_string()),
                span: span(src, site),
            });
        }
    }

    for cluster in children(root, "Clusters").flat_map(|c| children(c, "Cluster")) {
        let key = required_child(src, cluster, "ClusterId", &"Cluster")?;
        let (site_id, id) = cluster_id(src, key)?;
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
        topology.clusters.push(Cluster {
            id,
            site_id: site_id.to_string(),
            fqdn,
            single_machine,
            machines,
            span: span(src, cluster),
        });
    }

    for instance in children(root, "SqlInstances").flat_map(|c| children(c, "SqlInstance")) {
        let key = required_child(src, instance, "SqlInstanceId", &"SqlInstance")?;
        let (cluster_id, id, name) = sql_instance_id(src, key)?;
        let name = instance_name(
            src,
            key,
            name,
            &format_args!("SqlInstanceId in Cluster {cluster_id}"),
        )?;
        let what = format!("SqlInstance {id}");
        topology.sql_instances.push(SqlInstance {
            name,
            always_on_primary: xml::optional_fqdn(src, instance, "AlwaysOnPrimaryNodeFqdn", &what)?,
            mirroring: xml::mirroring(src, instance, &what),
            id,
            cluster_id,
            span: span(src, instance),
        });
    }

    for service in children(root, "Services").flat_map(|c| children(c, "Service")) {
        let key = required_child(src, service, "ServiceId", &"Service")?;
        let (site_id, role, id) = service_id(src, key)?;
        let what = format!("Service {id}");
        let on = required_child(src, service, "InstalledOn", &what)?;
        let installed_on = if let Some(cluster) = child(on, "ClusterId") {
            InstalledOn::Cluster(cluster_id(src, cluster)?.1)
        } else if let Some(instance) = child(on, "SqlInstanceId") {
            InstalledOn::SqlInstance(sql_instance_id(src, instance)?.1)
        } else {
            return Err(src.error(
                crate::error::ErrorKind::MissingAttribute,
                span(src, on),
                format!("{what}: InstalledOn holds neither ClusterId nor SqlInstanceId"),
            ));
        };
        let mut depends_on = Vec::new();
        let mut backups = Vec::new();
        for dependency in children(service, "DependsOn").flat_map(|d| children(d, "Dependency")) {
            let backup = dependency
                .attribute("Usage")
                .is_some_and(|u| u.eq_ignore_ascii_case("Backup"));
            let target = required_child(
                src,
                dependency,
                "ServiceId",
                &format_args!("Dependency in {what}"),
            )?;
            let id = service_id(src, target)?.2;
            if backup {
                backups.push(id);
            } else {
                depends_on.push(id);
            }
        }
        let mirroring =
            StoreKind::from_role_name(role).and_then(|_| xml::mirroring(src, service, &what));
        topology.services.push(Service {
            id,
            role: role.to_string(),
            site_id: site_id.to_string(),
            installed_on,
            depends_on,
            backups,
            mirroring,
            version: attr(service, "ServiceVersion").map(str::to_string),
            span: span(src, service),
        });
    }

    Ok(topology)
}

/// `ClusterId@SiteId@Number` as (site id, cluster id).
fn cluster_id<'a>(src: &Source<'_>, node: Node<'a, '_>) -> Result<(&'a str, String)> {
    let site = required(src, node, "SiteId", &"ClusterId")?;
    let number = required(src, node, "Number", &"ClusterId")?;
    Ok((site, format!("{site}:{number}")))
}

/// `SqlInstanceId@Name` with its `ClusterId` as (cluster id, instance id, instance name).
fn sql_instance_id<'a>(src: &Source<'_>, node: Node<'a, '_>) -> Result<(String, String, &'a str)> {
    let (_, cluster) = cluster_id(
        src,
        required_child(src, node, "ClusterId", &"SqlInstanceId")?,
    )?;
    let name = attr(node, "Name").unwrap_or("");
    let id = if name.is_empty() {
        cluster.clone()
    } else {
        format!("{cluster}\\{name}")
    };
    Ok((cluster, id, name))
}

/// `ServiceId@SiteId@RoleName@Instance` as (site id, role, service id).
fn service_id<'a>(src: &Source<'_>, node: Node<'a, '_>) -> Result<(&'a str, &'a str, String)> {
    let site = required(src, node, "SiteId", &"ServiceId")?;
    let role = required(src, node, "RoleName", &"ServiceId")?;
    let instance = required(src, node, "Instance", &"ServiceId")?;
    Ok((site, role, format!("{site}:{role}:{instance}")))
}
