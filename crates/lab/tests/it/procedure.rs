//! The planner's procedure, per kind of machine and per `update-databases` variant, reaches the
//! right world.

use sfbpatch_engine::ProbeVerdict;
use sfbpatch_lab::{Interval, PoolMode};
use sfbpatch_plan::{Action, StepId};
use sfbpatch_topology::StoreKind;

use crate::common::*;

const SQL1_UPDATED: &str = "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn \
     sql1.contoso.com: updated 8 databases to the schema of build 7.0.2046.553\n  \
     sql1.contoso.com\\rtc rtcxds: 15.2046.0 -> 15.2046.553\n  \
     sql1.contoso.com\\rtc rtcshared: 15.2046.0 -> 15.2046.553\n  \
     sql1.contoso.com\\rtc rtcab: 15.2046.0 -> 15.2046.553\n  \
     sql1.contoso.com\\rtc rgsconfig: 6.2046.0 -> 6.2046.553\n  \
     sql1.contoso.com\\rtc rgsdyn: 6.2046.0 -> 6.2046.553\n  \
     sql1.contoso.com\\rtc cpsdyn: 6.2046.0 -> 6.2046.553\n  \
     sql1.contoso.com\\rtc xds: 5.2046.0 -> 5.2046.553\n  \
     sql1.contoso.com\\rtc lis: 5.2046.0 -> 5.2046.553";

const SQL1_CURRENT: [(&str, &str, &str); 8] = [
    ("rtcxds", "15.2046.553", "15.2046.553"),
    ("rtcshared", "15.2046.553", "15.2046.553"),
    ("rtcab", "15.2046.553", "15.2046.553"),
    ("rgsconfig", "6.2046.553", "6.2046.553"),
    ("rgsdyn", "6.2046.553", "6.2046.553"),
    ("cpsdyn", "6.2046.553", "6.2046.553"),
    ("xds", "5.2046.553", "5.2046.553"),
    ("lis", "5.2046.553", "5.2046.553"),
];

/// One Front End server's procedure takes 34.8 minutes: role check 6 s, staging 4 min, fabric
/// check 30 s, failover 5 min, then the seed's steps 4-10 (16.2 min), failback 5 min, verify 1 min.
const FRONT_END_SECONDS: f64 = 1908.0;

#[test]
fn enterprise_back_end_updated_from_a_patched_front_end() {
    let f = fixture();
    for fe in [FE1A, FE1B, FE1C] {
        run_all(&f, &f.plan_for(fe));
    }
    let start = f.now_seconds();
    assert_eq!(start, 3.0 * FRONT_END_SECONDS);
    let back_end = f.plan_for(EE);
    assert_eq!(
        applicable(&back_end),
        [
            StepId::CheckAdminRole,
            StepId::UpdateDatabases,
            StepId::Verify
        ]
    );
    let outputs = run_all(&f, &back_end);
    assert_eq!(
        output_of(&outputs, StepId::CheckAdminRole),
        "LAB\\sfbadmin is a member of CsAdministrator"
    );
    assert_eq!(output_of(&outputs, StepId::UpdateDatabases), SQL1_UPDATED);
    assert_eq!(
        output_of(&outputs, StepId::Verify),
        "Get-CsServerPatchVersion: 7.0.2046.553\n\
         Test-CsDatabase sql1.contoso.com\\rtc: 8 databases, InstalledVersion = ExpectedVersion"
    );
    assert_eq!(databases(&f, EE, "rtc"), strings(&SQL1_CURRENT));
    // The SQL Server machine ran nothing: the steps ran on fe1c, which has the Management Shell.
    assert_sql_only(&f, EE);
    assert_eq!(f.server(EE).installed_build, OLD);
    // The back end was unavailable exactly while Install-CsDatabase ran (6 minutes).
    let pool = f.pool(POOL1);
    assert_eq!(
        pool.outage_intervals,
        vec![Interval {
            start: start + 6.0,
            end: Some(start + 6.0 + 360.0)
        }]
    );
    assert_eq!(pool.resiliency_intervals, vec![]);
    assert_eq!(pool.mode, PoolMode::Normal);
    assert_eq!(f.now_seconds(), start + 6.0 + 360.0 + 60.0);
    // Nothing else moved.
    assert_eq!(f.server(SE).installed_build, OLD);
    assert_eq!(f.server(FE2A).installed_build, OLD);
    assert_eq!(f.pool(POOL2).outage_intervals, vec![]);
}

#[test]
fn a_back_end_with_the_components_is_patched_and_updates_its_own_databases() {
    let f = fixture_with_components(&[EE]);
    let back_end = f.plan_for(EE);
    assert_eq!(
        applicable(&back_end),
        [
            StepId::CheckAdminRole,
            StepId::StageUpdate,
            StepId::CloseManagementShells,
            StepId::InstallUpdate,
            StepId::UpdateDatabases,
            StepId::Verify
        ]
    );
    assert!(back_end.steps.iter().all(|s| s.run_on.is_none()));
    for fe in [FE1A, FE1B, FE1C] {
        run_all(&f, &f.plan_for(fe));
    }
    let start = f.now_seconds();
    let outputs = run_all(&f, &back_end);
    assert_eq!(
        output_of(&outputs, StepId::InstallUpdate),
        "SkypeServerUpdateInstaller: installed 7.0.2046.553 (was 7.0.2046.0); the installer \
         restarted 0 services"
    );
    assert_eq!(output_of(&outputs, StepId::UpdateDatabases), SQL1_UPDATED);
    assert_eq!(
        output_of(&outputs, StepId::Verify),
        "Get-CsServerPatchVersion: 7.0.2046.553\n\
         Test-CsDatabase sql1.contoso.com\\rtc: 8 databases, InstalledVersion = ExpectedVersion"
    );
    let s = f.server(EE);
    assert_eq!((s.installed_build, s.installer_runs), (NEW, 1));
    assert!(s.services.is_empty());
    assert_eq!(s.w3svc.as_str(), "not installed");
    assert_eq!(s.refused_commands, 0);
    assert_databases_current(&f, EE, "rtc");
    // Role check 6 s, staging 4 min, shells 12 s, installer 12 min: then the 6-minute update.
    let db_start = start + 6.0 + 240.0 + 12.0 + 720.0;
    assert_eq!(
        f.pool(POOL1).outage_intervals,
        vec![Interval {
            start: db_start,
            end: Some(db_start + 360.0)
        }]
    );
}

#[test]
fn enterprise_back_end_excluding_collocated_stores() {
    let f = fixture();
    for fe in [FE2A, FE2B] {
        run_all(&f, &f.plan_for(fe));
    }
    let back_end = f.plan_for(EE_COLLOCATED);
    assert_eq!(
        back_end
            .step(StepId::UpdateDatabases)
            .run_on
            .as_ref()
            .unwrap()
            .as_str(),
        FE2B
    );
    let outputs = run_all(&f, &back_end);
    let update = output_of(&outputs, StepId::UpdateDatabases);
    assert!(!update.contains("WARNING"), "{update}");
    assert!(
        update.starts_with(
            "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn sql2.contoso.com: \
             updated 9 databases to the schema of build 7.0.2046.553\n"
        ),
        "{update}"
    );
    // The User and Application stores as on sql1, then the collocated ones.
    let mut expected = SQL1_CURRENT[..6].to_vec();
    expected.extend([
        ("LcsLog", "8.2046.553", "8.2046.553"),
        ("LcsCDR", "12.2046.553", "12.2046.553"),
        ("QoEMetrics", "12.2046.553", "12.2046.553"),
    ]);
    assert_eq!(databases(&f, EE_COLLOCATED, "rtc"), strings(&expected));
    assert_updated(&f, FE2A);
    assert_updated(&f, FE2B);
    assert_sql_only(&f, EE_COLLOCATED);
    let pool = f.pool(POOL2);
    assert_eq!(pool.outage_intervals.len(), 1);
    assert_eq!(pool.outage_intervals[0].seconds(0.0), 360.0);
    assert_eq!(pool.resiliency_intervals, vec![]);
}

#[test]
fn configured_without_exclude_on_collocated_stores_warns() {
    let f = fixture();
    patch_pool(&f, POOL2);
    let mut back_end = f.plan_for(EE_COLLOCATED);
    for step in &mut back_end.steps {
        if let Action::UpdateConfiguredDatabases {
            exclude_collocated_stores,
            ..
        } = &mut step.action
        {
            *exclude_collocated_stores = false;
        }
    }
    // The back end's databases are current already; a second update changes nothing but
    // still warns.
    let output = ok(&f, &back_end, StepId::UpdateDatabases);
    assert_eq!(
        output,
        "WARNING: collocated stores on sql2.contoso.com\\rtc: archiving (LcsLog), monitoring \
         (LcsCDR, QoEMetrics). They must be installed from the local computer; \
         -ExcludeCollocatedStores suppresses this warning.\n\
         Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn sql2.contoso.com: every \
         database already has the schema of build 7.0.2046.553; nothing changed"
    );
    assert_databases_current(&f, EE_COLLOCATED, "rtc");
}

#[test]
fn standard_edition_local_databases() {
    let f = fixture();
    let plan = f.plan_for(SE);
    assert_eq!(applicable(&plan), StepId::SEED);
    let outputs = run_all(&f, &plan);
    assert_eq!(
        output_of(&outputs, StepId::UpdateDatabases),
        "Install-CsDatabase -Update -LocalDatabases: updated 6 databases to the schema of build \
         7.0.2046.553\n  \
         se01.contoso.com\\rtc rtcxds: 15.2046.0 -> 15.2046.553\n  \
         se01.contoso.com\\rtc rtcshared: 15.2046.0 -> 15.2046.553\n  \
         se01.contoso.com\\rtc rtcab: 15.2046.0 -> 15.2046.553\n  \
         se01.contoso.com\\rtc rgsconfig: 6.2046.0 -> 6.2046.553\n  \
         se01.contoso.com\\rtc rgsdyn: 6.2046.0 -> 6.2046.553\n  \
         se01.contoso.com\\rtc cpsdyn: 6.2046.0 -> 6.2046.553"
    );
    assert_eq!(
        output_of(&outputs, StepId::Verify),
        "Get-CsServerPatchVersion: 7.0.2046.553\n\
         Get-CsWindowsService: 15 services running on 7.0.2046.553\n\
         W3SVC: running\n\
         Test-CsDatabase se01.contoso.com\\rtc: 6 databases, InstalledVersion = ExpectedVersion"
    );
    assert_updated(&f, SE);
    assert_eq!(f.server(SE).services.len(), 15, "no CMS here");
    assert_databases_current(&f, SE, "rtc");
    // Role check 6 s and staging 240 s come before the outage; the outage is 25.2 minutes.
    let pool = f.pool(SE);
    assert_eq!(
        pool.outage_intervals,
        vec![Interval {
            start: 246.0,
            end: Some(1758.0)
        }]
    );
    assert_eq!(pool.resiliency_intervals, vec![]);
    assert_eq!(pool.front_ends, None);
    assert_eq!(f.now_seconds(), 1818.0);
    let detail = f.lab.server(SE).unwrap();
    assert!(detail.in_service);
    assert_eq!(
        detail.server.out_of_service,
        vec![Interval {
            start: 246.0,
            end: Some(1758.0)
        }]
    );
}

#[test]
fn always_on_databases_are_updated_once_through_the_listener() {
    let f = fixture();
    for fe in [FE3A, FE3B] {
        run_all(&f, &f.plan_for(fe));
    }
    let first = f.plan_for(NODE1);
    let last = f.plan_for(NODE2);
    // The first node has nothing to do but say who updates its databases.
    assert_eq!(applicable(&first), [StepId::UpdateDatabases]);
    assert_eq!(
        probe(&f, &first, StepId::UpdateDatabases).unwrap().verdict,
        ProbeVerdict::Done
    );
    let before = f.now_seconds();
    assert_eq!(
        run_all(&f, &first),
        [(
            StepId::UpdateDatabases,
            "nothing to do here: the back end's databases are updated from \
             sqlnode2.contoso.com once every node has the update"
                .to_string()
        )]
    );
    assert_eq!(
        f.now_seconds(),
        before,
        "the first node's step takes no time"
    );
    // The Front End servers raised the expected version; the stores wait for the update.
    assert_eq!(
        databases(&f, AG, "")[0],
        (
            "rtcxds".to_string(),
            "15.2046.0".to_string(),
            "15.2046.553".to_string()
        )
    );
    assert_eq!(
        probe(&f, &last, StepId::UpdateDatabases).unwrap().verdict,
        ProbeVerdict::NotDone
    );

    let outputs = run_all(&f, &last);
    assert_eq!(
        output_of(&outputs, StepId::UpdateDatabases),
        "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn ag.contoso.com: updated 6 \
         databases to the schema of build 7.0.2046.553\n  \
         ag.contoso.com rtcxds: 15.2046.0 -> 15.2046.553\n  \
         ag.contoso.com rtcshared: 15.2046.0 -> 15.2046.553\n  \
         ag.contoso.com rtcab: 15.2046.0 -> 15.2046.553\n  \
         ag.contoso.com rgsconfig: 6.2046.0 -> 6.2046.553\n  \
         ag.contoso.com rgsdyn: 6.2046.0 -> 6.2046.553\n  \
         ag.contoso.com cpsdyn: 6.2046.0 -> 6.2046.553"
    );
    assert_databases_current(&f, AG, "");
    assert_eq!(
        probe(&f, &last, StepId::UpdateDatabases).unwrap().verdict,
        ProbeVerdict::Done
    );
    assert_sql_only(&f, NODE1);
    assert_sql_only(&f, NODE2);
    // One outage for the one update, however many nodes.
    let pool = f.pool(POOL3);
    assert_eq!(pool.outage_intervals.len(), 1);
    assert_eq!(pool.outage_intervals[0].seconds(0.0), 360.0);
    assert_eq!(pool.mode, PoolMode::Normal);
}

#[test]
fn package_schema_versions_win_over_derived_ones() {
    let mut f = fixture();
    f.package
        .schema_versions
        .insert(StoreKind::User, "15.13.27".to_string());
    patch_pool(&f, POOL1);
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
fn a_store_server_is_updated_from_a_patched_server_after_every_user() {
    let f = fixture();
    assert_eq!(
        databases(&f, MON, "mon"),
        strings(&[
            ("LcsCDR", "12.2046.0", "12.2046.0"),
            ("QoEMetrics", "12.2046.0", "12.2046.0"),
        ])
    );
    // An instance no patched server uses expects the highest build installed anywhere.
    patch_pool(&f, POOL1);
    assert_eq!(
        databases(&f, MON, "mon"),
        strings(&[
            ("LcsCDR", "12.2046.0", "12.2046.553"),
            ("QoEMetrics", "12.2046.0", "12.2046.553"),
        ])
    );
    let store = f.plan_for(MON);
    assert_eq!(
        store.after.len(),
        8,
        "every Front End and Standard Edition server"
    );
    assert_eq!(
        store
            .step(StepId::UpdateDatabases)
            .run_on
            .as_ref()
            .unwrap()
            .as_str(),
        SE
    );
    run_all(&f, &f.plan_for(SE));
    let outputs = run_all(&f, &store);
    assert_eq!(
        output_of(&outputs, StepId::UpdateDatabases),
        "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn mon.contoso.com: updated \
         2 databases to the schema of build 7.0.2046.553\n  \
         mon.contoso.com\\mon LcsCDR: 12.2046.0 -> 12.2046.553\n  \
         mon.contoso.com\\mon QoEMetrics: 12.2046.0 -> 12.2046.553"
    );
    assert_databases_current(&f, MON, "mon");
    assert_sql_only(&f, MON);
}

#[test]
fn the_planner_s_plan_updates_the_whole_deployment() {
    let f = fixture();
    let plan = f.plan();
    let servers: Vec<&str> = plan.servers.iter().map(|s| s.fqdn.as_str()).collect();
    assert_eq!(servers, ALL_SERVERS);
    for server in &plan.servers {
        run_all(&f, server);
    }
    for fe in [FE1A, FE1B, FE1C, FE2A, FE2B, FE3A, FE3B, SE] {
        assert_updated(&f, fe);
    }
    for sql in [EE, EE_COLLOCATED, NODE1, NODE2, MON] {
        assert_sql_only(&f, sql);
    }
    for (sql, inst) in [
        (EE, "rtc"),
        (EE_COLLOCATED, "rtc"),
        (AG, ""),
        (SE, "rtc"),
        (MON, "mon"),
    ] {
        assert_databases_current(&f, sql, inst);
    }
    for pool in f.show().pools {
        assert!(pool.resiliency_intervals.is_empty(), "{}", pool.fqdn);
        assert_eq!(pool.mode, PoolMode::Normal, "{}", pool.fqdn);
        for i in &pool.outage_intervals {
            assert!(i.seconds(0.0) < minutes(30.0), "{}: {i:?}", pool.fqdn);
        }
        if let Some(fe) = pool.front_ends {
            assert_eq!(fe.down_intervals, vec![], "{}", pool.fqdn);
            assert_eq!(fe.user_impact_intervals, vec![], "{}", pool.fqdn);
            assert_eq!(fe.in_service, fe.total, "{}", pool.fqdn);
        }
    }
}
