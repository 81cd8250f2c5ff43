//! `sfbpatch topology show|generate`.

use std::fmt::Write as _;

use anyhow::anyhow;
use serde::Serialize;
use sfbpatch_topology::{Deployment, Edition, Pool};

use crate::cli::{DataFormat, TopologyCommand};
use crate::exit::{CmdResult, Exit, Failure};
use crate::{input, output};

/// The stable JSON contract of `topology show` (`docs/schema/topology.schema.json`).
#[derive(Serialize)]
struct TopologyJson<'a> {
    schema_version: u32,
    pools: &'a [Pool],
    /// Every SQL Server instance that holds Skype for Business stores, back end or not.
    sql_servers: &'a [sfbpatch_topology::SqlInstanceStores],
}

pub fn run(cmd: TopologyCommand) -> CmdResult {
    match cmd {
        TopologyCommand::Show { file, format } => {
            let (_, deployment) = input::topology(&file)?;
            match format {
                DataFormat::Json => output::json(&TopologyJson {
                    schema_version: 1,
                    pools: &deployment.pools,
                    sql_servers: &deployment.sql_instances,
                })?,
                DataFormat::Text => output::data(&render_text(&deployment))?,
            }
            Ok(Exit::Success)
        }
        TopologyCommand::Generate {
            pools,
            seed,
            out,
            product,
        } => {
            if pools == 0 {
                return Err(Failure::bad_input(anyhow!("--pools must be at least 1")));
            }
            let text = sfbpatch_topology::generate_product(pools, seed, product.line());
            std::fs::write(&out, text)
                .map_err(|e| Failure::bad_input(anyhow!("cannot write {}: {e}", out.display())))?;
            output::note(&format!(
                "wrote {} ({pools} pools, seed {seed}, {})",
                out.display(),
                product.line().name()
            ));
            Ok(Exit::Success)
        }
    }
}

pub fn render_text(deployment: &Deployment) -> String {
    let mut s = String::new();
    for pool in &deployment.pools {
        let b = &pool.backend;
        let _ = writeln!(
            s,
            "{} (site {}, {}{})",
            pool.fqdn,
            output::printable(&pool.site),
            match pool.edition {
                Edition::Standard => "Standard Edition",
                Edition::Enterprise => "Enterprise Edition",
            },
            pool.product
                .map_or(String::new(), |p| format!(", {}", p.name()))
        );
        for m in &pool.machines {
            let domains: Vec<&str> = [m.upgrade_domain.as_deref(), m.fault_domain.as_deref()]
                .into_iter()
                .flatten()
                .collect();
            if domains.is_empty() {
                let _ = writeln!(s, "  machine    {}", m.fqdn);
            } else {
                let _ = writeln!(
                    s,
                    "  machine    {} ({})",
                    m.fqdn,
                    output::printable(&domains.join(", "))
                );
            }
        }
        let _ = writeln!(
            s,
            "  back end   {}{}{}",
            b.sql_server_fqdn,
            if b.sql_instance.is_default() {
                String::new()
            } else {
                format!("\\{}", b.sql_instance.as_str())
            },
            match &b.always_on_primary {
                Some(p) => format!(" (AlwaysOn, primary node {p})"),
                None if b.always_on => " (AlwaysOn)".to_string(),
                None => String::new(),
            }
        );
        if pool.edition == Edition::Enterprise {
            let nodes: Vec<&str> = b.machines.iter().map(|m| m.fqdn.as_str()).collect();
            let _ = writeln!(s, "  sql nodes  {}", nodes.join(", "));
        }
        let list = |set: &std::collections::BTreeSet<sfbpatch_topology::StoreKind>| {
            if set.is_empty() {
                "none".to_string()
            } else {
                set.iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let _ = writeln!(s, "  stores     {}", list(&b.stores));
        let _ = writeln!(s, "  collocated {}", list(&b.collocated_stores));
        if let Some(m) = &b.mirroring {
            let _ = writeln!(s, "  mirroring  {}", output::printable(m));
        }
        if let Some(partner) = &pool.paired_with {
            let _ = writeln!(s, "  paired     {partner} (disaster recovery)");
        }
        let _ = writeln!(s, "  database   {}", pool.database_update.as_str());
        s.push('\n');
    }
    let _ = writeln!(s, "SQL Servers holding stores");
    for i in deployment
        .sql_instances
        .iter()
        .filter(|i| !i.stores.is_empty())
    {
        let stores: Vec<&str> = i.stores.iter().map(|k| k.as_str()).collect();
        let backend_of: Vec<&str> = deployment
            .pools
            .iter()
            .filter(|p| {
                p.backend.sql_server_fqdn == i.sql_server_fqdn
                    && p.backend
                        .sql_instance
                        .as_str()
                        .eq_ignore_ascii_case(i.sql_instance.as_str())
            })
            .map(|p| p.fqdn.as_str())
            .collect();
        let _ = writeln!(
            s,
            "  {}{}  {}  ({})",
            i.sql_server_fqdn,
            if i.sql_instance.is_default() {
                String::new()
            } else {
                format!("\\{}", i.sql_instance.as_str())
            },
            stores.join(", "),
            if backend_of.is_empty() {
                "no pool's back end: its databases are updated on their own, last".to_string()
            } else {
                format!("back end of {}", backend_of.join(", "))
            }
        );
    }
    let _ = write!(s, "\n{} pool(s) with a back end", deployment.pools.len());
    s
}
