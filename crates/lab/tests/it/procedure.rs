//! The documented procedure, per `update-databases` variant, reaches the right world.

use sfbpatch_lab::{Interval, PoolMode};
use sfbpatch_plan::{PlanPolicy, StepId};
use sfbpatch_topology::StoreKind;

use crate::common::*;

fn strings(rows: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

#[test]
fn enterprise_back_end_configured() {
    let f = fixture();
    let plan = ee_plan(&f, Variant::Configured);
    for id in StepId::ALL {
        let output = ok(&f, &plan, id);
        if id == StepId::UpdateDatabases {
            assert_eq!(
                output,
                "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn sql1.contoso.com: \
                 updated 8 databases to the schema of build 7.0.2046.553\n  \
                 sql1.contoso.com\\rtc rtcxds: 15.2046.0 -> 15.2046.553\n  \
                 sql1.contoso.com\\rtc rtcshared: 15.2046.0 -> 15.2046.553\n  \
                 sql1.contoso.com\\rtc rtcab: 15.2046.0 -> 15.2046.553\n  \
                 sql1.contoso.com\\rtc rgsconfig: 6.2046.0 -> 6.2046.553\n  \
                 sql1.contoso.com\\rtc rgsdyn: 6.2046.0 -> 6.2046.553\n  \
                 sql1.contoso.com\\rtc cpsdyn: 6.2046.0 -> 6.2046.553\n  \
                 sql1.contoso.com\\rtc xds: 5.2046.0 -> 5.2046.553\n  \
                 sql1.contoso.com\\rtc lis: 5.2046.0 -> 5.2046.553"
            );
        }
        if id == StepId::Verify {
            assert_eq!(
                output,
                "Get-CsServerPatchVersion: 7.0.2046.553\n\
                 Get-CsWindowsService: 16 services running on 7.0.2046.553\n\
                 W3SVC: running\n\
                 Test-CsDatabase sql1.contoso.com\\rtc: 8 databases, InstalledVersion = ExpectedVersion"
            );
        }
    }
    assert_updated(&f, EE);
    let s = f.server(EE);
    assert_eq!(s.services.len(), 16, "MASTER runs where the CMS lives");
    assert_eq!(s.services.last().unwrap().name, "MASTER");
    assert_eq!(
        databases(&f, EE, "rtc"),
        strings(&[
            ("rtcxds", "15.2046.553", "15.2046.553"),
            ("rtcshared", "15.2046.553", "15.2046.553"),
            ("rtcab", "15.2046.553", "15.2046.553"),
            ("rgsconfig", "6.2046.553", "6.2046.553"),
            ("rgsdyn", "6.2046.553", "6.2046.553"),
            ("cpsdyn", "6.2046.553", "6.2046.553"),
            ("xds", "5.2046.553", "5.2046.553"),
            ("lis", "5.2046.553", "5.2046.553"),
        ])
    );
    // Role check 6 s and staging 240 s come before the outage; the outage is 25.2 minutes.
    let pool = f.pool("pool1.contoso.com");
    assert_eq!(
        pool.outage_intervals,
        vec![Interval {
            start: 246.0,
            end: Some(1758.0)
        }]
    );
    assert_eq!(pool.resiliency_intervals, vec![]);
    assert_eq!(pool.mode, PoolMode::Normal);
    assert_eq!(f.now_seconds(), 1818.0);
    // Nothing else moved.
    assert_eq!(f.server(SE).installed_build, OLD);
    assert_eq!(f.pool("pool2.contoso.com").outage_intervals, vec![]);
    let detail = f.lab.server(EE).unwrap();
    assert!(detail.in_service);
    assert_eq!(
        detail.out_of_service,
        vec![Interval {
            start: 246.0,
            end: Some(1758.0)
        }]
    );
}

#[test]
fn enterprise_back_end_excluding_collocated_stores() {
    let f = fixture();
    let plan = ee_collocated_plan(&f, Variant::ConfiguredExcludeCollocated);
    for id in StepId::ALL {
        let output = ok(&f, &plan, id);
        assert!(!output.contains("WARNING"), "{id}: {output}");
    }
    assert_updated(&f, EE_COLLOCATED);
    assert_eq!(f.server(EE_COLLOCATED).services.len(), 15, "no CMS here");
    assert_eq!(
        databases(&f, EE_COLLOCATED, "rtc"),
        strings(&[
            ("rtcxds", "15.2046.553", "15.2046.553"),
            ("rtcshared", "15.2046.553", "15.2046.553"),
            ("rtcab", "15.2046.553", "15.2046.553"),
            ("rgsconfig", "6.2046.553", "6.2046.553"),
            ("rgsdyn", "6.2046.553", "6.2046.553"),
            ("cpsdyn", "6.2046.553", "6.2046.553"),
            ("LcsLog", "8.2046.553", "8.2046.553"),
            ("LcsCDR", "12.2046.553", "12.2046.553"),
            ("QoEMetrics", "12.2046.553", "12.2046.553"),
        ])
    );
    let pool = f.pool("pool2.contoso.com");
    assert_eq!(
        pool.outage_intervals,
        vec![Interval {
            start: 246.0,
            end: Some(1758.0)
        }]
    );
    assert_eq!(pool.resiliency_intervals, vec![]);
}

#[test]
fn configured_without_exclude_on_collocated_stores_warns() {
    let f = fixture();
    let plan = ee_collocated_plan(&f, Variant::Configured);
    let mut database_output = String::new();
    for id in StepId::ALL {
        let output = ok(&f, &plan, id);
        if id == StepId::UpdateDatabases {
            database_output = output;
        }
    }
    assert_eq!(
        database_output.lines().next().unwrap(),
        "WARNING: collocated stores on sql2.contoso.com\\rtc: archiving (LcsLog), monitoring \
         (LcsCDR, QoEMetrics). They must be installed from the local computer; \
         -ExcludeCollocatedStores suppresses this warning."
    );
    // The variant updates the stores all the same.
    assert_updated(&f, EE_COLLOCATED);
    assert_databases_current(&f, EE_COLLOCATED, "rtc");
}

#[test]
fn standard_edition_local_databases() {
    let f = fixture();
    let plan = se_plan(&f, Variant::Local);
    for id in StepId::ALL {
        let output = ok(&f, &plan, id);
        if id == StepId::Verify {
            assert_eq!(
                output,
                "Get-CsServerPatchVersion: 7.0.2046.553\n\
                 Get-CsWindowsService: 15 services running on 7.0.2046.553\n\
                 W3SVC: running\n\
                 Test-CsDatabase se01.contoso.com\\rtc: 6 databases, InstalledVersion = ExpectedVersion"
            );
        }
    }
    assert_updated(&f, SE);
    assert_databases_current(&f, SE, "rtc");
    assert_eq!(databases(&f, SE, "rtc")[0].1, "15.2046.553");
    let pool = f.pool(SE);
    assert_eq!(
        pool.outage_intervals,
        vec![Interval {
            start: 246.0,
            end: Some(1758.0)
        }]
    );
    assert_eq!(pool.resiliency_intervals, vec![]);
}

#[test]
fn always_on_nodes_one_at_a_time_with_databases_on_the_last() {
    let f = fixture();
    let first = node_plan(&f, NODE1, Variant::UpdatedBy(NODE2));
    let last = node_plan(&f, NODE2, Variant::Configured);

    run_all(&f, &first);
    assert_updated(&f, NODE1);
    // The first node raised the expected version; the stores wait for the last node.
    assert_eq!(
        databases(&f, AG, "")[0],
        (
            "rtcxds".to_string(),
            "15.2046.0".to_string(),
            "15.2046.553".to_string()
        )
    );
    assert_eq!(f.server(NODE2).installed_build, OLD);

    run_all(&f, &last);
    assert_updated(&f, NODE2);
    assert_databases_current(&f, AG, "");
    // The other node served all along: the pool never lost its back end.
    let pool = f.pool("pool3.contoso.com");
    assert_eq!(pool.outage_intervals, vec![]);
    assert_eq!(pool.resiliency_intervals, vec![]);
    assert_eq!(pool.mode, PoolMode::Normal);
    // Each node was out of service on its own. The first node's database step does nothing
    // and takes no time: its window is 19.2 minutes, and its run ends at 1458 s.
    assert_eq!(
        f.lab.server(NODE1).unwrap().out_of_service,
        vec![Interval {
            start: 246.0,
            end: Some(1398.0)
        }]
    );
    assert_eq!(
        f.lab.server(NODE2).unwrap().out_of_service,
        vec![Interval {
            start: 1458.0 + 246.0,
            end: Some(1458.0 + 1758.0)
        }]
    );
}

#[test]
fn package_schema_versions_win_over_derived_ones() {
    let mut f = fixture();
    f.package
        .schema_versions
        .insert(StoreKind::User, "15.13.27".to_string());
    let plan = ee_plan(&f, Variant::Configured);
    run_all(&f, &plan);
    let dbs = databases(&f, EE, "rtc");
    assert_eq!(
        dbs[0],
        (
            "rtcxds".to_string(),
            "15.13.27".to_string(),
            "15.13.27".to_string()
        )
    );
    assert_eq!(
        dbs[3].1, "6.2046.553",
        "stores the package leaves out are derived"
    );
}

#[test]
fn an_instance_no_patched_server_uses_expects_the_highest_build() {
    let f = fixture();
    assert_eq!(
        databases(&f, MON, "mon"),
        strings(&[
            ("LcsCDR", "12.2046.0", "12.2046.0"),
            ("QoEMetrics", "12.2046.0", "12.2046.0"),
        ])
    );
    run_all(&f, &ee_plan(&f, Variant::Configured));
    assert_eq!(
        databases(&f, MON, "mon"),
        strings(&[
            ("LcsCDR", "12.2046.0", "12.2046.553"),
            ("QoEMetrics", "12.2046.0", "12.2046.553"),
        ])
    );
}

#[test]
fn the_planner_s_plan_updates_the_whole_deployment() {
    let f = fixture();
    let plan = sfbpatch_plan::plan(&deployment(), &f.package, &PlanPolicy::default()).unwrap();
    let servers: Vec<&str> = plan.servers.iter().map(|s| s.fqdn.as_str()).collect();
    assert_eq!(servers, vec![EE, EE_COLLOCATED, NODE1, NODE2, SE]);
    for server in &plan.servers {
        run_all(&f, server);
    }
    for server in servers {
        assert_updated(&f, server);
    }
    for (sql, inst) in [(EE, "rtc"), (EE_COLLOCATED, "rtc"), (AG, ""), (SE, "rtc")] {
        assert_databases_current(&f, sql, inst);
    }
    for pool in f.show().pools {
        assert!(pool.resiliency_intervals.is_empty(), "{}", pool.fqdn);
        assert_eq!(pool.mode, PoolMode::Normal, "{}", pool.fqdn);
        for i in &pool.outage_intervals {
            assert!(i.seconds(0.0) < minutes(30.0), "{}: {i:?}", pool.fqdn);
        }
    }
}
