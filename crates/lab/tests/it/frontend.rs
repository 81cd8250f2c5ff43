//! The Front End pool world: routing groups, quorum, failover and failback, what users feel,
//! and a whole Enterprise pool patched the planner's way.

use sfbpatch_lab::{Interval, LabOptions, PoolMode};
use sfbpatch_plan::StepId;
use sfbpatch_topology::Deployment;

use crate::common::*;

/// One Enterprise pool `pool.contoso.com` of `n` Front End servers `fe0.contoso.com`...
/// on the back end `sql.contoso.com`.
fn one_pool(n: usize) -> Deployment {
    let machines: Vec<String> = (0..n).map(|i| format!("\"fe{i}.contoso.com\"")).collect();
    load(&format!(
        "[[pool]]\nfqdn = \"pool.contoso.com\"\nsite = \"Redmond\"\nmachines = [{}]\n\
         backend = \"sql.contoso.com\"\n",
        machines.join(", ")
    ))
}

fn member(i: usize) -> String {
    format!("fe{i}.contoso.com")
}

/// `check-fabric-state` on a pool1 server while every server is in the pool.
fn pool1_ready() -> String {
    format!(
        "Get-CsPoolFabricState: 12 routing groups, every replica active\n{POOL1_ROUTING_GROUPS}\n\
         Get-CsUpgradeDomainInfo: PoolUpgradeState Ready; 3 of 3 Front End servers active"
    )
}

/// What `Get-CsPoolFabricState` shows of pool1 while fe1a is out of it: fe1a's primaries moved
/// to the next replica.
const POOL1_WITHOUT_FE1A: &str = "Get-CsPoolFabricState: 12 routing groups, 12 with a replica on \
     a server out of the pool\n  \
     routing group 0: primary fe1b.contoso.com, 2 of 3 replicas active\n  \
     routing group 1: primary fe1b.contoso.com, 2 of 3 replicas active\n  \
     routing group 2: primary fe1c.contoso.com, 2 of 3 replicas active\n  \
     routing group 3: primary fe1b.contoso.com, 2 of 3 replicas active\n  \
     routing group 4: primary fe1b.contoso.com, 2 of 3 replicas active\n  \
     routing group 5: primary fe1c.contoso.com, 2 of 3 replicas active\n  \
     routing group 6: primary fe1b.contoso.com, 2 of 3 replicas active\n  \
     routing group 7: primary fe1b.contoso.com, 2 of 3 replicas active\n  \
     ... and 4 more";

#[test]
fn failover_and_failback_move_a_front_end_out_of_its_pool_and_back() {
    let f = fixture();
    let plan = f.plan_for(FE1A);
    run_until(&f, &plan, StepId::CheckFabricState);
    assert_eq!(ok(&f, &plan, StepId::CheckFabricState), pool1_ready());
    assert_eq!(f.now_seconds(), 276.0);

    assert_eq!(
        ok(&f, &plan, StepId::Failover),
        "Invoke-CsComputerFailOver -ComputerName fe1a.contoso.com: its routing groups moved to \
         the pool's other Front End servers; stopped 16 services; the server is out of the pool"
    );
    assert_eq!(f.now_seconds(), 576.0);
    let s = f.server(FE1A);
    assert!(s.failed_over);
    assert!(s.services.iter().all(|svc| svc.state.as_str() == "stopped"));
    assert_eq!(s.w3svc.as_str(), "running", "failover leaves IIS alone");
    let fe = f.front_ends(POOL1);
    assert_eq!((fe.total, fe.in_service), (3, 2));
    assert_eq!((fe.quorum, fe.quorum_among), (2, 3));
    assert_eq!(fe.in_service_over_time, vec![(0.0, 3), (276.0, 2)]);
    assert_eq!(fe.down_intervals, vec![]);
    assert_eq!(fe.user_impact_intervals, vec![]);
    // The other servers took the primaries over.
    let check = exec(&f, &f.plan_for(FE1C), StepId::CheckFabricState).unwrap();
    assert!(
        check.output.starts_with(POOL1_WITHOUT_FE1A),
        "{}",
        check.output
    );
    // The back end saw nothing.
    assert_eq!(f.pool(POOL1).outage_intervals, vec![]);

    // Sent again after a crash, failover changes nothing.
    assert_eq!(
        ok(&f, &plan, StepId::Failover),
        "Invoke-CsComputerFailOver: fe1a.contoso.com is already out of its pool"
    );
    let at = f.now_seconds();
    assert_eq!(
        ok(&f, &plan, StepId::Failback),
        "Invoke-CsComputerFailBack -ComputerName fe1a.contoso.com: started 16 services; the \
         server is back in its pool on build 7.0.2046.0"
    );
    let s = f.server(FE1A);
    assert!(!s.failed_over);
    assert!(s.services.iter().all(|svc| svc.state.as_str() == "running"));
    let fe = f.front_ends(POOL1);
    assert_eq!(fe.in_service, 3);
    // Back in the pool at the end of the 5-minute failback.
    assert_eq!(
        fe.in_service_over_time,
        vec![(0.0, 3), (276.0, 2), (at + 300.0, 3)]
    );
    assert_eq!(fe.user_impact_intervals, vec![]);
    assert_eq!(
        ok(&f, &plan, StepId::Failback),
        "Invoke-CsComputerFailBack: fe1a.contoso.com is a member of its pool already"
    );
    assert_eq!(
        ok(&f, &f.plan_for(FE1B), StepId::CheckFabricState),
        pool1_ready()
    );
}

#[test]
fn failover_is_refused_when_the_pool_would_lose_quorum() {
    let f = fixture();
    let first = f.plan_for(FE1A);
    ok(&f, &first, StepId::Failover);
    let second = f.plan_for(FE1B);
    let check = exec(&f, &second, StepId::CheckFabricState).unwrap();
    assert_eq!(
        (check.exit_code, check.output),
        (
            1,
            format!(
                "{POOL1_WITHOUT_FE1A}\n\
                 Get-CsUpgradeDomainInfo: PoolUpgradeState InsufficientActiveFrontEnds: the pool \
                 would fall below quorum: 2 of its first 3 Front End servers must stay active, 1 \
                 would"
            )
        )
    );
    let failover = exec(&f, &second, StepId::Failover).unwrap();
    assert_eq!(
        (failover.exit_code, failover.output.as_str()),
        (
            1,
            "Invoke-CsComputerFailOver -ComputerName fe1b.contoso.com: refused: the pool would \
             fall below quorum: 2 of its first 3 Front End servers must stay active, 1 would; \
             nothing changed"
        )
    );
    let s = f.server(FE1B);
    assert!(!s.failed_over);
    assert!(s.services.iter().all(|svc| svc.state.as_str() == "running"));
    let fe = f.front_ends(POOL1);
    assert_eq!(fe.in_service, 2);
    assert_eq!(fe.down_intervals, vec![]);
    assert_eq!(fe.user_impact_intervals, vec![]);
}

#[test]
fn failover_is_refused_when_a_routing_group_would_lose_its_last_replica() {
    // Two servers: every routing group has a replica on each.
    let f = fixture();
    ok(&f, &f.plan_for(FE2A), StepId::Failover);
    let failover = exec(&f, &f.plan_for(FE2B), StepId::Failover).unwrap();
    assert_eq!(
        (failover.exit_code, failover.output.as_str()),
        (
            1,
            "Invoke-CsComputerFailOver -ComputerName fe2b.contoso.com: refused: routing group 0 \
             would have no active replica (its replicas are on fe2a.contoso.com, \
             fe2b.contoso.com); nothing changed"
        )
    );
    assert_eq!(f.front_ends(POOL2).in_service, 1);

    // Seven servers: quorum is 4, so three may leave, but not three holding one group.
    let f = fixture_with(&one_pool(7), LabOptions::default());
    ok(&f, &f.plan_for(&member(0)), StepId::Failover);
    ok(&f, &f.plan_for(&member(1)), StepId::Failover);
    let refused = exec(&f, &f.plan_for(&member(2)), StepId::Failover).unwrap();
    assert_eq!(
        (refused.exit_code, refused.output.as_str()),
        (
            1,
            "Invoke-CsComputerFailOver -ComputerName fe2.contoso.com: refused: routing group 0 \
             would have no active replica (its replicas are on fe0.contoso.com, fe1.contoso.com, \
             fe2.contoso.com); nothing changed"
        )
    );
    // fe4 shares no routing group with both fe0 and fe1.
    ok(&f, &f.plan_for(&member(4)), StepId::Failover);
    let fe = f.pool("pool.contoso.com").front_ends.unwrap();
    assert_eq!((fe.in_service, fe.quorum, fe.quorum_among), (4, 4, 7));
    assert_eq!(fe.down_intervals, vec![]);
    // A fourth would take the pool below quorum.
    let refused = exec(&f, &f.plan_for(&member(3)), StepId::Failover).unwrap();
    assert!(
        refused.output.ends_with(
            "refused: the pool would fall below quorum: 4 of its first 7 Front End servers must \
             stay active, 3 would; nothing changed"
        ),
        "{}",
        refused.output
    );
}

#[test]
fn stopping_a_front_end_without_failover_drops_its_users() {
    let f = fixture();
    let plan = f.plan_for(FE1A);
    ok(&f, &plan, StepId::StopCsServices);
    let fe = f.front_ends(POOL1);
    assert_eq!(fe.in_service, 2);
    assert_eq!(
        fe.user_impact_intervals,
        vec![Interval {
            start: 0.0,
            end: None
        }]
    );
    assert_eq!(fe.down_intervals, vec![]);
    ok(&f, &plan, StepId::StartCsServices);
    let fe = f.front_ends(POOL1);
    // Stop 2 min, start 3 min: users felt it from the stop's start to the start's end.
    assert_eq!(
        fe.user_impact_intervals,
        vec![Interval {
            start: 0.0,
            end: Some(300.0)
        }]
    );
    assert_eq!(
        fe.in_service_over_time,
        vec![(0.0, 3), (0.0, 2), (300.0, 3)]
    );
    // The back end and its 30-minute rule are not concerned.
    let pool = f.pool(POOL1);
    assert_eq!(pool.outage_intervals, vec![]);
    assert_eq!(pool.mode, PoolMode::Normal);
}

#[test]
fn a_pool_below_quorum_is_down() {
    let f = fixture();
    ok(&f, &f.plan_for(FE1A), StepId::StopCsServices);
    ok(&f, &f.plan_for(FE1B), StepId::StopCsServices);
    let fe = f.front_ends(POOL1);
    assert_eq!(fe.in_service, 1);
    assert_eq!(
        fe.down_intervals,
        vec![Interval {
            start: 120.0,
            end: None
        }]
    );
    ok(&f, &f.plan_for(FE1B), StepId::StartCsServices);
    ok(&f, &f.plan_for(FE1A), StepId::StartCsServices);
    let fe = f.front_ends(POOL1);
    assert_eq!(
        fe.down_intervals,
        vec![Interval {
            start: 120.0,
            end: Some(420.0)
        }]
    );
    assert_eq!(
        fe.user_impact_intervals,
        vec![Interval {
            start: 0.0,
            end: Some(600.0)
        }]
    );
}

#[test]
fn quorum_follows_the_pool_size() {
    // Microsoft's table: 2 -> 1; 3-4 -> 2; 5-6 -> 3; 7 -> 4; 8-9 -> 4 of the first 7;
    // 10-12 -> 5 of the first 9; 13-16 -> 7 of the first 12.
    let expected = [
        (1, 1, 1),
        (2, 1, 2),
        (3, 2, 3),
        (4, 2, 4),
        (5, 3, 5),
        (6, 3, 6),
        (7, 4, 7),
        (8, 4, 7),
        (9, 4, 7),
        (10, 5, 9),
        (11, 5, 9),
        (12, 5, 9),
        (13, 7, 12),
        (14, 7, 12),
        (15, 7, 12),
        (16, 7, 12),
    ];
    let mut text = String::from("[[site]]\nname = \"Redmond\"\n");
    for (n, _, _) in expected {
        let machines: Vec<String> = (0..n)
            .map(|i| format!("\"fe{n}-{i}.contoso.com\""))
            .collect();
        text.push_str(&format!(
            "[[pool]]\nfqdn = \"pool{n}.contoso.com\"\nmachines = [{}]\n\
             backend = \"sql{n}.contoso.com\"\n",
            machines.join(", ")
        ));
    }
    let f = fixture_with(&load(&text), LabOptions::default());
    let got: Vec<(u32, u32, u32)> = f
        .show()
        .pools
        .into_iter()
        .map(|p| {
            let fe = p.front_ends.unwrap();
            (fe.total, fe.quorum, fe.quorum_among)
        })
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn quorum_counts_only_the_first_servers_of_a_large_pool() {
    // Eight servers: four of the first seven. With fe0-fe3 stopped, four servers still run,
    // but only three of the first seven: the pool is down.
    let f = fixture_with(&one_pool(8), LabOptions::default());
    for i in 0..3 {
        ok(&f, &f.plan_for(&member(i)), StepId::StopCsServices);
    }
    assert_eq!(
        f.pool("pool.contoso.com")
            .front_ends
            .unwrap()
            .down_intervals,
        vec![]
    );
    ok(&f, &f.plan_for(&member(3)), StepId::StopCsServices);
    let fe = f.pool("pool.contoso.com").front_ends.unwrap();
    assert_eq!(fe.in_service, 4);
    assert_eq!(
        fe.down_intervals,
        vec![Interval {
            start: 360.0,
            end: None
        }]
    );
}

#[test]
fn verify_fails_on_a_front_end_left_failed_over() {
    let f = fixture();
    let plan = f.plan_for(FE1A);
    for id in applicable(&plan) {
        if id == StepId::Failback {
            continue;
        }
        if id == StepId::Verify {
            let outcome = exec(&f, &plan, id).unwrap();
            assert_eq!(
                (outcome.exit_code, outcome.output.as_str()),
                (
                    1,
                    "verification failed on fe1a.contoso.com:\n\
                     - Get-CsWindowsService: 16 services stopped: RTCSRV, RTCCLSAGT, RTCHA, \
                     RTCMEDSRV, RTCATS, RTCASMCU, RTCAVMCU, RTCIMMCU, RTCDATAMCU, RTCCAA, RTCCAS, \
                     RTCRGS, RTCXMPPTGW, REPLICA, FTA, MASTER\n\
                     - Get-CsPoolFabricState: fe1a.contoso.com holds no active replica (failed \
                     over, or its services are stopped)"
                )
            );
        } else {
            ok(&f, &plan, id);
        }
    }
    assert_eq!(f.front_ends(POOL1).in_service, 2);
    ok(&f, &plan, StepId::Failback);
    assert!(ok(&f, &plan, StepId::Verify).ends_with(
        "Get-CsPoolFabricState: pool pool1.contoso.com healthy, 3 of 3 Front End servers active"
    ));
}

#[test]
fn a_whole_enterprise_pool_patched_the_planner_s_way() {
    let f = fixture();
    let plan = f.plan();
    let pool1: Vec<_> = plan
        .servers
        .iter()
        .filter(|s| s.pool.as_str() == POOL1 && s.kind != sfbpatch_plan::ServerKind::Store)
        .collect();
    assert_eq!(
        pool1.iter().map(|s| s.fqdn.as_str()).collect::<Vec<_>>(),
        [FE1A, FE1B, FE1C, EE]
    );
    // One Front End server at a time, then the database step.
    for server in &pool1 {
        let outputs = run_all(&f, server);
        if server.kind == sfbpatch_plan::ServerKind::FrontEnd {
            assert!(
                output_of(&outputs, StepId::Verify).ends_with(
                    "Get-CsPoolFabricState: pool pool1.contoso.com healthy, 3 of 3 Front End \
                     servers active"
                ),
                "{}",
                output_of(&outputs, StepId::Verify)
            );
        }
    }
    for fe in [FE1A, FE1B, FE1C] {
        assert_updated(&f, fe);
    }
    assert_databases_current(&f, EE, "rtc");
    let pool = f.pool(POOL1);
    let fe = pool.front_ends.clone().unwrap();
    // Each server out from its failover's start (276 s into its 1908 s) to its failback's end
    // (1848 s): never fewer than two of three in service.
    assert_eq!(
        fe.in_service_over_time,
        vec![
            (0.0, 3),
            (276.0, 2),
            (1848.0, 3),
            (1908.0 + 276.0, 2),
            (1908.0 + 1848.0, 3),
            (3816.0 + 276.0, 2),
            (3816.0 + 1848.0, 3),
        ]
    );
    assert_eq!(fe.down_intervals, vec![]);
    assert_eq!(fe.user_impact_intervals, vec![]);
    // The back end was unavailable for the database step's six minutes, after its role check.
    let db_start = 3.0 * 1908.0 + 6.0;
    assert_eq!(
        pool.outage_intervals,
        vec![Interval {
            start: db_start,
            end: Some(db_start + 360.0)
        }]
    );
    assert_eq!(pool.resiliency_intervals, vec![]);
    assert_eq!(pool.mode, PoolMode::Normal);
    // No machine was sent a command it could not run.
    for s in f.show().servers {
        assert_eq!(s.refused_commands, 0, "{}", s.fqdn);
    }
    assert_sql_only(&f, EE);
}

#[test]
fn a_pool_of_one_front_end_is_down_while_its_server_is_patched() {
    let f = fixture_with(&one_pool(1), LabOptions::default());
    let plan = f.plan_for(&member(0));
    // Nothing to fail over to: the planner leaves failover and failback out.
    assert_eq!(
        plan.step(StepId::Failover).not_applicable.as_deref(),
        Some(
            "pool pool.contoso.com has no other Front End server to take over its users; the \
             pool is unavailable while this server is out of service"
        )
    );
    let outputs = run_all(&f, &plan);
    assert!(
        output_of(&outputs, StepId::CheckFabricState).ends_with(
            "Get-CsUpgradeDomainInfo: PoolUpgradeState Ready; 1 of 1 Front End servers active"
        ),
        "{}",
        output_of(&outputs, StepId::CheckFabricState)
    );
    assert_updated(&f, &member(0));
    // Down and felt from the start of stop-cs-services (276 s) to the end of
    // start-cs-services (276 s + 19.2 min).
    let down = Interval {
        start: 276.0,
        end: Some(276.0 + 1152.0),
    };
    let fe = f.pool("pool.contoso.com").front_ends.unwrap();
    assert_eq!((fe.quorum, fe.quorum_among), (1, 1));
    assert_eq!(fe.down_intervals, vec![down]);
    assert_eq!(fe.user_impact_intervals, vec![down]);
    assert_eq!(
        fe.in_service_over_time,
        vec![(0.0, 1), (276.0, 0), (276.0 + 1152.0, 1)]
    );
}

#[test]
fn a_2015_pool_answers_through_its_own_readiness_cmdlet() {
    let mut f = fixture_with(
        &deployment(),
        LabOptions {
            build: sfbpatch_plan::Build([6, 0, 9319, 0]),
            ..LabOptions::default()
        },
    );
    f.package.version = sfbpatch_plan::Build([6, 0, 9319, 881]);
    let output = ok(&f, &f.plan_for(FE1A), StepId::CheckFabricState);
    assert!(
        output.ends_with(
            "Get-CsPoolUpgradeReadinessState: PoolUpgradeState Ready; 3 of 3 Front End servers \
             active"
        ),
        "{output}"
    );
}
