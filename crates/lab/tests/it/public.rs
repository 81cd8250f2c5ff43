//! Labs built from real topology files (`../shared/fixtures/public/`), patched with the
//! planner's plan: the world ends where SOURCES.md says it should.

use std::path::PathBuf;

use sfbpatch_lab::{LabOptions, PoolMode};
use sfbpatch_plan::ServerKind;

use crate::common::*;

fn public_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SFBPATCH_PUBLIC_FIXTURES").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/public"),
        PathBuf::from,
    );
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: public fixtures not found at {} (set SFBPATCH_PUBLIC_FIXTURES)",
            dir.display()
        );
        None
    }
}

/// A lab of the public topology `name`, patched with the planner's whole plan, server after
/// server; `None` when the fixtures are absent.
fn patched(name: &str) -> Option<Fixture> {
    let dir = public_dir()?;
    let bytes = std::fs::read(dir.join(name)).expect("readable fixture");
    let deployment = sfbpatch_topology::load_bytes(&bytes, name).unwrap_or_else(|e| panic!("{e}"));
    let f = fixture_with(&deployment, LabOptions::default());
    for server in &f.plan().servers {
        run_all(&f, server);
    }
    Some(f)
}

/// What every patched world shares: each Skype for Business server on the new build, each SQL
/// Server machine untouched, every database current, no back end in resiliency mode.
fn assert_patched_world(f: &Fixture) {
    for s in f.show().servers {
        match s.kind {
            ServerKind::FrontEnd | ServerKind::StandardEdition => assert_updated(f, &s.fqdn),
            ServerKind::BackEnd | ServerKind::Store => assert_sql_only(f, &s.fqdn),
        }
    }
    for i in f.show().sql_instances {
        assert_databases_current(f, &i.sql_server_fqdn, &i.instance);
    }
    for p in f.show().pools {
        assert_eq!(p.resiliency_intervals, vec![], "{}", p.fqdn);
        assert_eq!(p.mode, PoolMode::Normal, "{}", p.fqdn);
    }
}

#[test]
fn automatedlab_contoso_four_front_ends_behind_failover() {
    let Some(f) = patched("automatedlab-contoso.tbxml") else {
        return;
    };
    assert_patched_world(&f);
    let kinds: Vec<(String, ServerKind)> = f
        .show()
        .servers
        .into_iter()
        .map(|s| (s.fqdn.to_ascii_lowercase(), s.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("xfrontend1.contoso.com".to_string(), ServerKind::FrontEnd),
            ("xfrontend2.contoso.com".to_string(), ServerKind::FrontEnd),
            ("xfrontend3.contoso.com".to_string(), ServerKind::FrontEnd),
            ("xfrontend4.contoso.com".to_string(), ServerKind::FrontEnd),
            ("xsql1.contoso.com".to_string(), ServerKind::BackEnd),
        ]
    );
    let pool = f.pool("frontendpool.contoso.com");
    let fe = pool.front_ends.unwrap();
    assert_eq!((fe.total, fe.quorum, fe.quorum_among), (4, 2, 4));
    assert_eq!(fe.down_intervals, vec![]);
    assert_eq!(fe.user_impact_intervals, vec![]);
    let counts: Vec<u32> = fe.in_service_over_time.iter().map(|(_, n)| *n).collect();
    assert_eq!(counts, [4, 3, 4, 3, 4, 3, 4, 3, 4]);
    // The collocated Archiving and Monitoring stores were updated with the rest, in 6 minutes.
    assert_eq!(pool.outage_intervals.len(), 1);
    assert_eq!(pool.outage_intervals[0].seconds(0.0), 360.0);
}

#[test]
fn alvinchen1_otc_standard_edition() {
    let Some(f) = patched("alvinchen1-otc.tbxml") else {
        return;
    };
    assert_patched_world(&f);
    let show = f.show();
    assert_eq!(show.servers.len(), 1);
    assert_eq!(show.servers[0].kind, ServerKind::StandardEdition);
    let pool = &show.pools[0];
    assert_eq!(pool.front_ends, None);
    // The seed's outage window: 25.2 minutes.
    assert_eq!(pool.outage_intervals.len(), 1);
    assert_eq!(pool.outage_intervals[0].seconds(0.0), minutes(25.2));
}

#[test]
fn rlevchenko_one_front_end_on_an_always_on_back_end() {
    let Some(f) = patched("rlevchenko-default-topology.xml") else {
        return;
    };
    assert_patched_world(&f);
    let pool = f.pool("poolfe.tenant.rlevchenko.com");
    // One Front End server: no failover possible, so the pool is down while it is patched.
    let fe = pool.front_ends.unwrap();
    assert_eq!((fe.total, fe.quorum), (1, 1));
    assert_eq!(fe.down_intervals.len(), 1);
    assert_eq!(fe.down_intervals[0].seconds(0.0), minutes(19.2));
    assert_eq!(fe.user_impact_intervals, fe.down_intervals);
    // The AlwaysOn back end's databases were updated once, through the listener.
    assert_eq!(pool.outage_intervals.len(), 1);
    assert_eq!(pool.outage_intervals[0].seconds(0.0), 360.0);
}
