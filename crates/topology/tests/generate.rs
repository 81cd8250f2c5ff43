//! `generate` gives valid, deterministic published topologies with the realistic mix.

use std::collections::BTreeSet;

use proptest::prelude::*;
use sfbpatch_topology::{
    DatabaseUpdate, Edition, PUBLISHED_NAMESPACE, ProductLine, SourceFormat, StoreKind, generate,
    generate_product, load, read_topology,
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn generated_topologies_read_and_derive(pools in 0usize..120, seed in any::<u64>()) {
        let text = generate(pools, seed);
        let deployment = load(&text, "generated.xml").map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(deployment.format, SourceFormat::Published);
        prop_assert_eq!(deployment.pools.len(), pools);
        for pool in &deployment.pools {
            prop_assert!(!pool.machines.is_empty());
            prop_assert!(!pool.backend.machines.is_empty());
            prop_assert!(pool.backend.stores.contains(&StoreKind::User));
            prop_assert!(pool.backend.mirroring.is_none());
            prop_assert_eq!(pool.product, Some(ProductLine::SfB2019));
        }
    }
}

#[test]
fn same_seed_same_text() {
    assert_eq!(generate(40, 7), generate(40, 7));
    assert_ne!(generate(40, 7), generate(40, 8));
}

#[test]
fn the_output_is_a_published_topology() {
    let text = generate(3, 1);
    assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Topology xmlns=\""));
    assert!(text.contains(PUBLISHED_NAMESPACE));
    let topology = read_topology(&text, "generated.xml").unwrap();
    assert_eq!(topology.format, SourceFormat::Published);
}

#[test]
fn five_pools_cover_every_shape_over_several_sites() {
    for seed in [0, 1, 42, u64::MAX] {
        let d = load(&generate(5, seed), "generated.xml").unwrap();
        let p = &d.pools;
        assert_eq!(p.len(), 5);

        assert_eq!(p[0].edition, Edition::Standard);
        assert_eq!(p[0].database_update, DatabaseUpdate::Local);
        assert_eq!(p[0].backend.sql_server_fqdn, p[0].fqdn);

        assert_eq!(p[1].edition, Edition::Enterprise);
        assert_eq!(p[1].database_update, DatabaseUpdate::Configured);
        assert!(!p[1].backend.always_on);

        assert_eq!(
            p[2].database_update,
            DatabaseUpdate::ConfiguredExcludeCollocated
        );
        assert!(!p[2].backend.collocated_stores.is_empty());

        // Monitoring on another SQL server: not collocated, but present elsewhere.
        assert_eq!(p[3].database_update, DatabaseUpdate::Configured);
        assert!(!p[3].backend.stores.contains(&StoreKind::Monitoring));
        let monitoring = d
            .sql_instances
            .iter()
            .find(|s| s.stores.contains(&StoreKind::Monitoring) && s.stores.len() == 1)
            .expect("a separate monitoring server");
        assert_ne!(monitoring.sql_server_fqdn, p[3].backend.sql_server_fqdn);

        assert!(p[4].backend.always_on);
        assert_eq!(p[4].backend.machines.len(), 2);
        let primary = p[4].backend.always_on_primary.as_ref().unwrap();
        assert!(p[4].backend.machines.iter().any(|m| &m.fqdn == primary));

        let sites: BTreeSet<&str> = p.iter().map(|p| p.site.as_str()).collect();
        assert!(sites.len() >= 2, "several sites: {sites:?}");
    }
}

#[test]
fn large_topologies_keep_the_mix() {
    let d = load(&generate(1000, 3), "generated.xml").unwrap();
    assert_eq!(d.pools.len(), 1000);
    let variants: BTreeSet<DatabaseUpdate> = d.pools.iter().map(|p| p.database_update).collect();
    assert_eq!(variants.len(), 3);
    let always_on = d.pools.iter().filter(|p| p.backend.always_on).count();
    assert!(
        (50..200).contains(&always_on),
        "{always_on} AlwaysOn back ends"
    );
    let fqdns: BTreeSet<String> = d.pools.iter().map(|p| p.fqdn.key()).collect();
    assert_eq!(fqdns.len(), 1000);
}

#[test]
fn the_product_line_is_2019_unless_asked_otherwise() {
    let text = generate(6, 3);
    assert!(text.contains("ServiceVersion=\"8\""));
    assert!(!text.contains("ServiceVersion=\"7\""));
    for line in ProductLine::ALL {
        let text = generate_product(6, 3, line);
        let d = load(&text, "generated.xml").unwrap();
        assert!(d.pools.iter().all(|p| p.product == Some(line)), "{line}");
    }
    assert_eq!(generate_product(6, 3, ProductLine::SfB2019), text);
}
