use sfbpatch_plan::{
    Action, Build, DEFAULT_STAGING_DIR, Installer, PlanError, PlanPolicy, ServerKind, StepId,
    check_exportable, check_installed, check_product_line, plan,
};
use sfbpatch_topology::{DatabaseUpdate, Deployment, Fqdn, ProductLine, StoreKind};

use crate::support::*;

fn cmd(s: &str) -> Option<String> {
    Some(s.to_string())
}

#[test]
fn the_three_database_update_commands_are_exact() {
    let d = deployment(vec![
        ee("pool1.contoso.com", "sql1.contoso.com").build(),
        ee("pool2.contoso.com", "sql2.contoso.com")
            .collocated(&[StoreKind::Archiving, StoreKind::Monitoring])
            .build(),
        se("se1.contoso.com"),
    ]);
    let plan = plan(&d, &package(), &PlanPolicy::default()).unwrap();
    assert_eq!(
        database_updates(&plan),
        [
            (
                "sql1.contoso.com".to_string(),
                cmd(
                    "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn sql1.contoso.com"
                ),
            ),
            (
                "sql2.contoso.com".to_string(),
                cmd(
                    "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn sql2.contoso.com -ExcludeCollocatedStores"
                ),
            ),
            (
                "se1.contoso.com".to_string(),
                cmd("Install-CsDatabase -Update -LocalDatabases"),
            ),
        ]
    );
    let roles: Vec<_> = plan
        .servers
        .iter()
        .filter(|s| s.kind != ServerKind::FrontEnd)
        .map(|s| (s.kind, s.database_update))
        .collect();
    assert_eq!(
        roles,
        [
            (ServerKind::BackEnd, DatabaseUpdate::Configured),
            (
                ServerKind::BackEnd,
                DatabaseUpdate::ConfiguredExcludeCollocated
            ),
            (ServerKind::StandardEdition, DatabaseUpdate::Local),
        ]
    );
}

#[test]
fn each_kind_gets_its_procedure_in_order() {
    let d = deployment(vec![
        ee("pool1.contoso.com", "sql1.contoso.com").build(),
        se("se1.contoso.com"),
    ]);
    let plan = plan(&d, &package(), &PlanPolicy::default()).unwrap();
    let kinds: Vec<_> = plan
        .servers
        .iter()
        .map(|s| (s.fqdn.as_str(), s.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("pool1-fe01.contoso.com", ServerKind::FrontEnd),
            ("pool1-fe02.contoso.com", ServerKind::FrontEnd),
            ("sql1.contoso.com", ServerKind::BackEnd),
            ("se1.contoso.com", ServerKind::StandardEdition),
        ]
    );
    let fe = &plan.servers[0];
    let ids: Vec<_> = fe.steps.iter().map(|s| s.id).collect();
    assert_eq!(ids, StepId::FRONT_END);
    // A Front End server is out of its pool from failover to failback.
    let outage: Vec<_> = fe.steps.iter().map(|s| s.in_outage).collect();
    assert_eq!(
        outage,
        [
            false, false, false, true, true, true, true, true, true, true, true, true, false
        ]
    );
    assert_eq!(
        fe.step(StepId::Failover).command,
        cmd("Invoke-CsComputerFailOver -ComputerName pool1-fe01.contoso.com -Confirm:$false")
    );
    assert_eq!(
        fe.step(StepId::Failback).command,
        cmd("Invoke-CsComputerFailBack -ComputerName pool1-fe01.contoso.com -Confirm:$false")
    );
    let check = fe.step(StepId::CheckFabricState).command.clone().unwrap();
    assert!(
        check.starts_with("$fabric = Get-CsPoolFabricState -PoolFqdn pool1.contoso.com"),
        "{check}"
    );
    // The package is a 2019 build: the 2019 readiness cmdlet.
    assert!(
        check.contains("$readiness = Get-CsUpgradeDomainInfo"),
        "{check}"
    );
    assert!(!fe.outage_costs_users());

    let se = &plan.servers[3];
    let ids: Vec<_> = se.steps.iter().map(|s| s.id).collect();
    assert_eq!(ids, StepId::SEED);
    let outage: Vec<_> = se.steps.iter().map(|s| s.in_outage).collect();
    assert_eq!(
        outage,
        [
            false, false, true, true, true, true, true, true, true, true, false
        ]
    );
    for (id, command) in [
        (StepId::StopCsServices, "Stop-CsWindowsService"),
        (StepId::StopCsServicesGac, "Stop-CsWindowsService"),
        (StepId::StopW3svc, "net stop w3svc"),
        (StepId::StartW3svc, "net start w3svc"),
        (StepId::StartCsServices, "Start-CsWindowsService"),
    ] {
        assert_eq!(se.step(id).command, cmd(command), "{id}");
    }
    assert!(se.outage_costs_users());
}
#[test]
fn a_sql_only_back_end_runs_nothing_of_skype_for_business_itself() {
    let d = deployment(vec![ee("pool1.contoso.com", "sql1.contoso.com").build()]);
    let plan = plan(&d, &package(), &PlanPolicy::default()).unwrap();
    let be = plan.servers.last().unwrap();
    assert_eq!(be.kind, ServerKind::BackEnd);
    assert_eq!(
        be.after,
        [
            fqdn("pool1-fe01.contoso.com"),
            fqdn("pool1-fe02.contoso.com")
        ]
    );
    let steps: Vec<_> = be
        .steps
        .iter()
        .map(|s| {
            (
                s.id,
                s.run_on.as_ref().map(|r| r.to_string()),
                s.not_applicable.is_some(),
                s.in_outage,
            )
        })
        .collect();
    let fe = Some("pool1-fe02.contoso.com".to_string());
    assert_eq!(
        steps,
        [
            (StepId::CheckAdminRole, fe.clone(), false, false),
            (StepId::StageUpdate, None, true, false),
            (StepId::StopCsServices, None, true, false),
            (StepId::StopW3svc, None, true, false),
            (StepId::CloseManagementShells, None, true, false),
            (StepId::InstallUpdate, None, true, false),
            (StepId::StopCsServicesGac, None, true, false),
            (StepId::StartW3svc, None, true, false),
            (StepId::UpdateDatabases, fe.clone(), false, true),
            (StepId::StartCsServices, None, true, false),
            (StepId::Verify, fe, false, false),
        ]
    );
    assert_eq!(
        be.step(StepId::StopW3svc).not_applicable.as_deref(),
        Some("no IIS (W3SVC) on SQL Server machine sql1.contoso.com")
    );
    assert!(
        be.steps
            .iter()
            .filter(|s| s.not_applicable.is_some())
            .all(|s| s.command.is_none())
    );
}

#[test]
fn a_back_end_with_the_components_runs_the_seed_s_steps_that_apply() {
    let d = deployment(vec![ee("pool1.contoso.com", "sql1.contoso.com").build()]);
    let policy = PlanPolicy {
        sfb_components: vec!["SQL1.contoso.com".to_string()],
        ..PlanPolicy::default()
    };
    let plan = plan(&d, &package(), &policy).unwrap();
    let be = plan.servers.last().unwrap();
    let runs: Vec<_> = be
        .steps
        .iter()
        .filter(|s| s.not_applicable.is_none())
        .map(|s| (s.id, s.run_on.is_some()))
        .collect();
    assert_eq!(
        runs,
        [
            (StepId::CheckAdminRole, false),
            (StepId::StageUpdate, false),
            (StepId::CloseManagementShells, false),
            (StepId::InstallUpdate, false),
            (StepId::UpdateDatabases, false),
            (StepId::Verify, false),
        ]
    );
}
#[test]
fn always_on_updates_the_databases_once_from_the_last_node() {
    let d = deployment(vec![
        ee("pool1.contoso.com", "ag1.contoso.com")
            .always_on(&["sqln1.contoso.com", "sqln2.contoso.com"])
            .build(),
    ]);
    let plan = plan(&d, &package(), &PlanPolicy::default()).unwrap();
    assert_eq!(
        database_updates(&plan),
        [
            ("sqln1.contoso.com".to_string(), None),
            (
                "sqln2.contoso.com".to_string(),
                cmd(
                    "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn ag1.contoso.com"
                ),
            ),
        ]
    );
    let nodes: Vec<_> = plan
        .servers
        .iter()
        .filter(|s| s.kind == ServerKind::BackEnd)
        .collect();
    assert_eq!(
        nodes[0].step(StepId::UpdateDatabases).action,
        Action::DatabasesUpdatedBy {
            server: fqdn("sqln2.contoso.com")
        }
    );
    // Once, against the listener, from a patched Front End server.
    assert_eq!(
        nodes[1].step(StepId::UpdateDatabases).run_on,
        Some(fqdn("pool1-fe02.contoso.com"))
    );
    // The first node has nothing to check: the databases are checked once, with the update.
    assert!(nodes[0].step(StepId::Verify).not_applicable.is_some());
    let last_verify = nodes[1].step(StepId::Verify).command.clone().unwrap();
    assert!(
        last_verify.contains("Test-CsDatabase -ConfiguredDatabases -SqlServerFqdn ag1.contoso.com"),
        "{last_verify}"
    );
    assert!(
        !last_verify.contains("Get-CsWindowsService"),
        "{last_verify}"
    );
}
#[test]
fn pools_sharing_a_back_end_plan_its_machines_once_under_the_first_pool() {
    let d = deployment(vec![
        ee("pool1.contoso.com", "sql1.contoso.com").build(),
        se("se1.contoso.com"),
        ee("pool2.contoso.com", "SQL1.contoso.com").build(),
        // Same SQL Server, another instance: the same machine, updated once.
        ee("pool3.contoso.com", "sql1.contoso.com")
            .instance("pc")
            .collocated(&[StoreKind::PersistentChat])
            .build(),
    ]);
    let plan = plan(&d, &package(), &PlanPolicy::default()).unwrap();
    let servers: Vec<_> = plan
        .servers
        .iter()
        .filter(|s| s.kind != ServerKind::FrontEnd)
        .map(|s| (s.fqdn.to_string(), s.pool.to_string(), s.database_update))
        .collect();
    assert_eq!(
        servers,
        [
            (
                "sql1.contoso.com".to_string(),
                "pool1.contoso.com".to_string(),
                DatabaseUpdate::ConfiguredExcludeCollocated
            ),
            (
                "se1.contoso.com".to_string(),
                "se1.contoso.com".to_string(),
                DatabaseUpdate::Local
            ),
        ]
    );
    // The back end waits for every Front End server of the three pools.
    let be = plan
        .servers
        .iter()
        .find(|s| s.kind == ServerKind::BackEnd)
        .unwrap();
    assert_eq!(be.after.len(), 6);
}
#[test]
fn nodes_of_one_back_end_are_consecutive_in_file_order() {
    let d = deployment(vec![
        ee("pool1.contoso.com", "ag1.contoso.com")
            .always_on(&["n2.contoso.com", "n1.contoso.com", "n3.contoso.com"])
            .build(),
        se("se1.contoso.com"),
        ee("pool2.contoso.com", "ag1.contoso.com")
            .always_on(&["n2.contoso.com", "n1.contoso.com", "n3.contoso.com"])
            .build(),
    ]);
    let plan = plan(&d, &package(), &PlanPolicy::default()).unwrap();
    let servers: Vec<_> = plan
        .servers
        .iter()
        .filter(|s| s.kind != ServerKind::FrontEnd)
        .map(|s| s.fqdn.to_string())
        .collect();
    assert_eq!(
        servers,
        [
            "n2.contoso.com",
            "n1.contoso.com",
            "n3.contoso.com",
            "se1.contoso.com"
        ]
    );
    for server in plan
        .servers
        .iter()
        .filter(|s| s.kind == ServerKind::BackEnd)
        .take(2)
    {
        assert_eq!(
            server.step(StepId::UpdateDatabases).action,
            Action::DatabasesUpdatedBy {
                server: fqdn("n3.contoso.com")
            }
        );
    }
}
#[test]
fn stage_and_install_use_the_staging_folder() {
    let d = deployment(vec![se("se1.contoso.com")]);
    let policy = PlanPolicy {
        staging_dir: r"D:\Updates\".to_string(),
        ..PlanPolicy::default()
    };
    let plan = plan(&d, &package(), &policy).unwrap();
    let server = &plan.servers[0];
    assert_eq!(
        server.step(StepId::StageUpdate).action,
        Action::StageUpdate {
            source: Installer::Server(
                r"\\files.contoso.com\updates\SkypeServerUpdateInstaller.exe".to_string()
            ),
            sha256: SHA256.to_string(),
            destination: r"D:\Updates\7.0.2046.553\SkypeServerUpdateInstaller.exe".to_string(),
        }
    );
    assert_eq!(
        server.step(StepId::InstallUpdate).command,
        cmd(
            "$installer = Start-Process -FilePath 'D:\\Updates\\7.0.2046.553\\SkypeServerUpdateInstaller.exe' -ArgumentList '/silentmode' -Wait -PassThru\nexit $installer.ExitCode"
        )
    );
    assert_eq!(DEFAULT_STAGING_DIR, r"C:\ProgramData\sfbpatch\staging");
}

#[test]
fn a_bad_staging_folder_is_refused() {
    let d = deployment(vec![se("se1.contoso.com")]);
    let policy = PlanPolicy {
        staging_dir: r"C:\it's here".to_string(),
        ..PlanPolicy::default()
    };
    let err = plan(&d, &package(), &policy).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"staging folder 'C:\it's here' is not usable: character "'" is not allowed (no quotes, wildcards, control characters, or characters Windows refuses in paths) [SFB-P004]"#
    );
}

#[test]
fn only_narrows_by_pool_server_or_sql_server_ignoring_case() {
    let d = deployment(vec![
        ee("pool1.contoso.com", "ag1.contoso.com")
            .always_on(&["n1.contoso.com", "n2.contoso.com"])
            .build(),
        ee("pool2.contoso.com", "sql2.contoso.com").build(),
        se("se1.contoso.com"),
    ]);
    let servers = |names: &[&str]| -> Vec<String> {
        plan(&d, &package(), &only(names))
            .unwrap()
            .servers
            .iter()
            .map(|s| s.fqdn.to_string())
            .collect()
    };
    assert_eq!(
        servers(&["POOL1.contoso.com"]),
        [
            "pool1-fe01.contoso.com",
            "pool1-fe02.contoso.com",
            "n1.contoso.com",
            "n2.contoso.com"
        ]
    );
    assert_eq!(
        servers(&["ag1.contoso.com"]),
        ["n1.contoso.com", "n2.contoso.com"]
    );
    assert_eq!(servers(&["se1.CONTOSO.com"]), ["se1.contoso.com"]);
    // Given out of order, planned in file order.
    assert_eq!(
        servers(&["se1.contoso.com", "sql2.contoso.com"]),
        ["sql2.contoso.com", "se1.contoso.com"]
    );
    assert_eq!(servers(&["n2.contoso.com"]), ["n2.contoso.com"]);
    assert_eq!(
        servers(&["pool2-fe02.contoso.com"]),
        ["pool2-fe02.contoso.com"]
    );
    // Dependencies on servers left out are dropped.
    let p = plan(&d, &package(), &only(&["sql2.contoso.com"])).unwrap();
    assert!(p.servers[0].after.is_empty());
}
#[test]
fn only_one_always_on_node_keeps_the_database_update_on_the_last_node() {
    let d = deployment(vec![
        ee("pool1.contoso.com", "ag1.contoso.com")
            .always_on(&["n1.contoso.com", "n2.contoso.com"])
            .build(),
    ]);
    let first = plan(&d, &package(), &only(&["n1.contoso.com"])).unwrap();
    assert_eq!(
        database_updates(&first),
        [("n1.contoso.com".to_string(), None)]
    );
    let last = plan(&d, &package(), &only(&["n2.contoso.com"])).unwrap();
    assert_eq!(
        database_updates(&last),
        [(
            "n2.contoso.com".to_string(),
            cmd("Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn ag1.contoso.com")
        )]
    );
}

#[test]
fn only_naming_nothing_lists_the_candidates() {
    let d = deployment(vec![
        ee("pool1.contoso.com", "sql1.contoso.com").build(),
        se("se1.contoso.com"),
    ]);
    let err = plan(
        &d,
        &package(),
        &only(&["se1.contoso.com", "se2.contoso.com"]),
    )
    .unwrap_err();
    assert_eq!(err.code(), "SFB-P001");
    assert_eq!(
        err.to_string(),
        "'se2.contoso.com' (from --only) matches no pool or server of the deployment; \
         pools: pool1.contoso.com, se1.contoso.com; servers: pool1-fe01.contoso.com, \
         pool1-fe02.contoso.com, sql1.contoso.com, se1.contoso.com [SFB-P001]"
    );
}
#[test]
fn only_naming_a_front_end_server_plans_that_server() {
    let d = deployment(vec![ee("pool1.contoso.com", "sql1.contoso.com").build()]);
    let p = plan(&d, &package(), &only(&["pool1-fe02.contoso.com"])).unwrap();
    let servers: Vec<_> = p
        .servers
        .iter()
        .map(|s| (s.fqdn.as_str(), s.kind))
        .collect();
    assert_eq!(servers, [("pool1-fe02.contoso.com", ServerKind::FrontEnd)]);
}
#[test]
fn long_candidate_lists_are_cut_short() {
    let pools: Vec<_> = (1..=12)
        .map(|i| se(&format!("se{i:02}.contoso.com")))
        .collect();
    let err = plan(&deployment(pools), &package(), &only(&["x"])).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("se09.contoso.com, se10.contoso.com and 2 more; servers:"),
        "{message}"
    );
}

#[test]
fn a_mirrored_back_end_is_refused() {
    let d = deployment(vec![
        ee("pool1.contoso.com", "sql1.contoso.com")
            .mirroring("MirrorSqlInstanceId sql1m.contoso.com\\rtc")
            .build(),
        se("se1.contoso.com"),
    ]);
    let err = plan(&d, &package(), &PlanPolicy::default()).unwrap_err();
    assert_eq!(err.code(), "SFB-P002");
    assert_eq!(
        err.to_string(),
        "back end sql1.contoso.com of pool pool1.contoso.com uses database mirroring (the topology \
         shows: MirrorSqlInstanceId sql1m.contoso.com\\rtc); Install-CsDatabase -Update cannot run \
         against mirrored databases: remove the mirroring, or leave these pools out of the plan [SFB-P002]"
    );
    // A mirrored back end outside the selection does not stop the others.
    let plan = plan(&d, &package(), &only(&["se1.contoso.com"])).unwrap();
    assert_eq!(plan.servers.len(), 1);
}

#[test]
fn an_empty_deployment_gives_no_plan() {
    let err = plan(&deployment(vec![]), &package(), &PlanPolicy::default()).unwrap_err();
    assert_eq!(err, PlanError::EmptyPlan);
    assert_eq!(
        err.to_string(),
        "the deployment has no Enterprise Edition back end and no Standard Edition server to update [SFB-P003]"
    );
}

#[test]
fn a_back_end_without_machines_is_refused() {
    let d = deployment(vec![
        ee("pool1.contoso.com", "sql1.contoso.com")
            .nodes(&[])
            .build(),
    ]);
    let err = plan(&d, &package(), &PlanPolicy::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "back end sql1.contoso.com of pool pool1.contoso.com lists no machines, so there is nothing to update on it [SFB-P005]"
    );
}

#[test]
fn a_machine_in_two_back_ends_is_refused() {
    let d = deployment(vec![
        ee("pool1.contoso.com", "sql1.contoso.com").build(),
        ee("pool2.contoso.com", "ag2.contoso.com")
            .always_on(&["sql1.contoso.com", "n2.contoso.com"])
            .build(),
    ]);
    let err = plan(&d, &package(), &PlanPolicy::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "server sql1.contoso.com would be updated twice: as part of pool pool1.contoso.com and of pool pool2.contoso.com; a machine belongs to one back end or Standard Edition server [SFB-P006]"
    );
}

#[test]
fn quotes_in_package_values_cannot_end_a_string() {
    // The manifest refuses these; a Package built by other means is still quoted safely.
    let mut package = package();
    package.installer =
        Installer::Server(r"\\files\cu\it's'; Remove-Item C:\ -Recurse; '.exe".to_string());
    let d = deployment(vec![se("se1.contoso.com")]);
    let plan = plan(&d, &package, &PlanPolicy::default()).unwrap();
    let stage = plan.servers[0]
        .step(StepId::StageUpdate)
        .command
        .clone()
        .unwrap();
    assert!(
        stage.contains(r"Copy-Item -LiteralPath '\\files\cu\it''s''; Remove-Item C:\ -Recurse; ''.exe' -Destination"),
        "{stage}"
    );
}

#[test]
fn planning_is_deterministic() {
    let d = deployment(vec![
        ee("pool1.contoso.com", "ag1.contoso.com")
            .always_on(&["n1.contoso.com", "n2.contoso.com"])
            .build(),
        ee("pool2.contoso.com", "sql2.contoso.com").build(),
        se("se1.contoso.com"),
    ]);
    let a = plan(&d, &package(), &PlanPolicy::default()).unwrap();
    let b = plan(&d, &package(), &PlanPolicy::default()).unwrap();
    assert_eq!(a, b);
}

/// Pools of the given product lines: an Enterprise pool and a Standard Edition server.
fn on_lines(ee_line: Option<ProductLine>, se_line: Option<ProductLine>) -> Deployment {
    let mut pool = ee("pool1.contoso.com", "sql1.contoso.com").build();
    pool.product = ee_line;
    let mut standard = se("se1.contoso.com");
    standard.product = se_line;
    deployment(vec![pool, standard])
}

#[test]
fn a_package_of_another_product_line_is_refused_naming_servers_and_lines() {
    let package_2019 = package();
    let d = on_lines(Some(ProductLine::SfB2019), Some(ProductLine::SfB2019));
    let p = plan(&d, &package_2019, &PlanPolicy::default()).unwrap();
    assert_eq!(check_product_line(&d, &p), Ok(()));

    let d = on_lines(Some(ProductLine::SfB2015), Some(ProductLine::SfB2019));
    let p = plan(&d, &package_2019, &PlanPolicy::default()).unwrap();
    let e = check_product_line(&d, &p).unwrap_err();
    assert_eq!(e.code(), "SFB-P010");
    assert_eq!(
        e.to_string(),
        "package Skype for Business Server 2019 cumulative update 7.0.2046.553 is for Skype for \
         Business Server 2019 (7.0.2046.*), but pool1-fe01.contoso.com (pool pool1.contoso.com), \
         pool1-fe02.contoso.com (pool pool1.contoso.com), sql1.contoso.com (pool \
         pool1.contoso.com) run Skype for Business Server 2015 (6.0.9319.*): a package of one \
         product line must never be applied to another [SFB-P010]"
    );
    // Only the servers the plan would patch count.
    let only_se = PlanPolicy {
        only: vec!["se1.contoso.com".into()],
        ..PlanPolicy::default()
    };
    let p = plan(&d, &package_2019, &only_se).unwrap();
    assert_eq!(check_product_line(&d, &p), Ok(()));

    // The manifest's own statement wins over its build; a build of no known line with no
    // statement is refused where the topology names a line.
    let mut stated = package();
    stated.version = "8.0.100.5".parse().unwrap();
    let d = on_lines(Some(ProductLine::SfB2019), None);
    let p = plan(&d, &stated, &PlanPolicy::default()).unwrap();
    let e = check_product_line(&d, &p).unwrap_err();
    assert!(
        e.to_string()
            .contains("is for no product line sfbpatch knows (add product ="),
        "{e}"
    );
    stated.product = Some(ProductLine::SfB2019);
    let p = plan(&d, &stated, &PlanPolicy::default()).unwrap();
    assert_eq!(check_product_line(&d, &p), Ok(()));
}

#[test]
fn a_downgrade_or_an_installed_build_of_another_line_is_refused() {
    let d = on_lines(None, None);
    let p = plan(&d, &package(), &PlanPolicy::default()).unwrap();
    let fqdn = |s: &str| Fqdn::parse(s).unwrap();
    let build = |s: &str| s.parse::<Build>().unwrap();

    let same_or_older = [
        (fqdn("sql1.contoso.com"), build("7.0.2046.553")),
        (fqdn("se1.contoso.com"), build("7.0.2046.0")),
    ];
    assert_eq!(check_installed(&p, &same_or_older), Ok(()));

    let newer = [
        (fqdn("sql1.contoso.com"), build("7.0.2046.600")),
        (fqdn("se1.contoso.com"), build("7.0.2046.0")),
    ];
    let e = check_installed(&p, &newer).unwrap_err();
    assert_eq!(
        e.to_string(),
        "package Skype for Business Server 2019 cumulative update 7.0.2046.553 is older than what \
         this server runs: sql1.contoso.com runs 7.0.2046.600; sfbpatch does not downgrade [SFB-P011]"
    );

    let other_line = [(fqdn("se1.contoso.com"), build("6.0.9319.881"))];
    let e = check_installed(&p, &other_line).unwrap_err();
    assert_eq!(e.code(), "SFB-P010");
    assert!(
        e.to_string().contains(
            "but se1.contoso.com (pool se1.contoso.com, runs 6.0.9319.881) runs Skype for Business Server 2015"
        ),
        "{e}"
    );
}

#[test]
fn a_controller_file_cannot_be_exported_for_a_hand_run_script() {
    assert_eq!(check_exportable(&package()), Ok(()));
    let mut local = package();
    local.installer = Installer::Path("/home/ops/cu/SkypeServerUpdateInstaller.exe".into());
    let e = check_exportable(&local).unwrap_err();
    assert_eq!(e.code(), "SFB-P012");
    assert!(
        e.to_string().starts_with(
            "installer '/home/ops/cu/SkypeServerUpdateInstaller.exe' is a file on this machine, \
             which a script run on the server cannot reach"
        ),
        "{e}"
    );
}
