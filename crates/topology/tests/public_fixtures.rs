//! The real topology files in `../shared/fixtures/public/` yield what their SOURCES.md says.

use std::collections::BTreeSet;
use std::path::PathBuf;

use sfbpatch_topology::{
    DatabaseUpdate, Deployment, Edition, ProductLine, SourceFormat, StoreKind, load, read_topology,
};

fn public_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SFBPATCH_PUBLIC_FIXTURES").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/public"),
        PathBuf::from,
    );
    let found = dir.is_dir().then_some(dir.clone());
    sfbpatch_testkit::need(
        found,
        format_args!(
            "public fixtures not found at {} (set SFBPATCH_PUBLIC_FIXTURES)",
            dir.display()
        ),
    )
}

fn load_public(name: &str) -> Option<Deployment> {
    let dir = public_dir()?;
    let text = std::fs::read_to_string(dir.join(name)).expect("readable fixture");
    Some(load(&text, name).unwrap_or_else(|e| panic!("{e}")))
}

fn stores(kinds: &[StoreKind]) -> BTreeSet<StoreKind> {
    kinds.iter().copied().collect()
}

#[test]
#[ignore = "needs the public topology samples (../shared/fixtures/public or SFBPATCH_PUBLIC_FIXTURES): scripts/test runs this"]
fn automatedlab_contoso() {
    let Some(d) = load_public("automatedlab-contoso.tbxml") else {
        return;
    };
    assert_eq!(d.format, SourceFormat::TopologyBuilder);
    assert_eq!(
        d.pools.len(),
        1,
        "the Edge pool is not a pool with a back end"
    );
    let pool = &d.pools[0];
    assert_eq!(pool.fqdn.as_str(), "frontendpool.contoso.com");
    assert_eq!(pool.site, "Contoso");
    assert_eq!(pool.product, Some(ProductLine::SfB2015));
    assert_eq!(pool.edition, Edition::Enterprise);
    let machines: Vec<(&str, Option<&str>)> = pool
        .machines
        .iter()
        .map(|m| (m.fqdn.as_str(), m.upgrade_domain.as_deref()))
        .collect();
    assert_eq!(
        machines,
        [
            ("xfrontend1.contoso.com", Some("UpgradeDomain1")),
            ("xfrontend2.contoso.com", Some("UpgradeDomain2")),
            ("xfrontend3.contoso.com", Some("UpgradeDomain3")),
            ("xfrontend4.contoso.com", Some("UpgradeDomain4")),
        ]
    );
    let backend = &pool.backend;
    assert_eq!(backend.sql_server_fqdn.as_str(), "xSQL1.contoso.com");
    assert!(backend.sql_instance.is_default());
    assert!(!backend.always_on);
    assert_eq!(backend.always_on_primary, None);
    let sql_machines: Vec<&str> = backend.machines.iter().map(|m| m.fqdn.as_str()).collect();
    assert_eq!(sql_machines, ["xSQL1.contoso.com"]);
    assert_eq!(
        backend.stores,
        stores(&[
            StoreKind::User,
            StoreKind::Application,
            StoreKind::Archiving,
            StoreKind::Monitoring
        ])
    );
    assert_eq!(
        backend.collocated_stores,
        stores(&[StoreKind::Archiving, StoreKind::Monitoring])
    );
    assert_eq!(backend.mirroring, None);
    assert_eq!(
        pool.database_update,
        DatabaseUpdate::ConfiguredExcludeCollocated
    );
    assert!(d.pool("EDGEPOOL.contoso.com").is_none());
    assert!(d.pool("FrontEndPool.Contoso.com").is_some());
    let sql = d
        .sql_instance("xsql1.contoso.com", "")
        .expect("the back-end instance");
    assert_eq!(sql.stores, backend.stores);
}

#[test]
#[ignore = "needs the public topology samples (../shared/fixtures/public or SFBPATCH_PUBLIC_FIXTURES): scripts/test runs this"]
fn alvinchen1_otc() {
    let Some(d) = load_public("alvinchen1-otc.tbxml") else {
        return;
    };
    assert_eq!(d.pools.len(), 1);
    let pool = &d.pools[0];
    assert_eq!(pool.fqdn.as_str(), "OCT-EXH-002.otc.lab");
    assert_eq!(pool.site, "OTC");
    assert_eq!(pool.product, Some(ProductLine::SfB2019));
    assert_eq!(pool.edition, Edition::Standard);
    assert_eq!(pool.machines.len(), 1);
    assert_eq!(pool.machines[0].fqdn.as_str(), "OCT-EXH-002.otc.lab");
    assert_eq!(
        pool.machines[0].upgrade_domain.as_deref(),
        Some("OCT-EXH-002.otc.lab")
    );
    let backend = &pool.backend;
    assert_eq!(backend.sql_server_fqdn.as_str(), "OCT-EXH-002.otc.lab");
    assert_eq!(backend.sql_instance.as_str(), "rtc");
    assert!(!backend.always_on);
    assert_eq!(backend.machines, pool.machines);
    assert_eq!(
        backend.stores,
        stores(&[StoreKind::User, StoreKind::Application])
    );
    assert!(backend.collocated_stores.is_empty());
    assert_eq!(pool.database_update, DatabaseUpdate::Local);
    assert_eq!(pool.backend_machines(), pool.machines.as_slice());
}

#[test]
#[ignore = "needs the public topology samples (../shared/fixtures/public or SFBPATCH_PUBLIC_FIXTURES): scripts/test runs this"]
fn rlevchenko_default_topology() {
    let Some(d) = load_public("rlevchenko-default-topology.xml") else {
        return;
    };
    assert_eq!(d.format, SourceFormat::Published);
    assert_eq!(d.pools.len(), 1);
    let pool = &d.pools[0];
    assert_eq!(pool.fqdn.as_str(), "poolfe.tenant.rlevchenko.com");
    assert_eq!(pool.site, "Tenant");
    assert_eq!(pool.product, Some(ProductLine::SfB2015));
    assert_eq!(pool.edition, Edition::Enterprise);
    let machines: Vec<(&str, Option<&str>, Option<&str>)> = pool
        .machines
        .iter()
        .map(|m| {
            (
                m.fqdn.as_str(),
                m.upgrade_domain.as_deref(),
                m.fault_domain.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        machines,
        [(
            "SKYPE-FE-01.tenant.rlevchenko.com",
            Some("UpgradeDomain1"),
            Some("FaultDomain1")
        )]
    );
    let backend = &pool.backend;
    assert_eq!(
        backend.sql_server_fqdn.as_str(),
        "srv-sql-01.tenant.rlevchenko.com"
    );
    assert!(backend.sql_instance.is_default());
    assert!(backend.always_on);
    assert_eq!(
        backend.always_on_primary.as_ref().map(|f| f.as_str()),
        Some("srv-sql-01.tenant.rlevchenko.com")
    );
    assert_eq!(
        backend.stores,
        stores(&[
            StoreKind::User,
            StoreKind::Application,
            StoreKind::CentralManagement
        ])
    );
    assert!(backend.collocated_stores.is_empty());
    assert_eq!(pool.database_update, DatabaseUpdate::Configured);
    let names: Vec<&str> = pool
        .backend_machines()
        .iter()
        .map(|m| m.fqdn.as_str())
        .collect();
    assert_eq!(names, ["srv-sql-01.tenant.rlevchenko.com"]);
}

#[test]
#[ignore = "needs the public topology samples (../shared/fixtures/public or SFBPATCH_PUBLIC_FIXTURES): scripts/test runs this"]
fn public_files_read_with_every_reference_resolved() {
    let Some(dir) = public_dir() else {
        return;
    };
    for name in [
        "automatedlab-contoso.tbxml",
        "alvinchen1-otc.tbxml",
        "rlevchenko-default-topology.xml",
    ] {
        let text = std::fs::read_to_string(dir.join(name)).expect("readable fixture");
        let topology = read_topology(&text, name).unwrap_or_else(|e| panic!("{e}"));
        assert!(!topology.services.is_empty(), "{name}");
        assert!(topology.connections.is_empty(), "{name}");
    }
}
