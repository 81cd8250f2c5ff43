//! What each kind of machine runs, what it answers to a command it cannot run, and what the
//! pre-flight probe reads on it.

use sfbpatch_engine::MachineFacts;
use sfbpatch_lab::{LabOptions, Runs, ServiceState};
use sfbpatch_plan::{ServerKind, ServerPlan, StepId};

use crate::common::*;

/// The Skype for Business services of a server whose back end holds no Central Management
/// store (SPEC.md section 3).
const SERVICES: [&str; 15] = sfbpatch_lab::rules::CS_SERVICES;

fn runs(sfb_services: bool, iis: bool, management_shell: bool, sql_server: bool) -> Runs {
    Runs {
        sfb_services,
        iis,
        management_shell,
        sql_server,
    }
}

#[test]
fn each_kind_runs_what_it_really_runs() {
    let f = fixture();
    let show = f.show();
    let got: Vec<(&str, ServerKind, Runs, usize, ServiceState)> = show
        .servers
        .iter()
        .map(|s| (s.fqdn.as_str(), s.kind, s.runs, s.services.len(), s.w3svc))
        .collect();
    use ServerKind::*;
    use ServiceState::*;
    let front_end = runs(true, true, true, false);
    let sql = runs(false, false, false, true);
    assert_eq!(
        got,
        [
            (FE1A, FrontEnd, front_end, 16, Running),
            (FE1B, FrontEnd, front_end, 16, Running),
            (FE1C, FrontEnd, front_end, 16, Running),
            (EE, BackEnd, sql, 0, NotInstalled),
            (FE2A, FrontEnd, front_end, 15, Running),
            (FE2B, FrontEnd, front_end, 15, Running),
            (EE_COLLOCATED, BackEnd, sql, 0, NotInstalled),
            (FE3A, FrontEnd, front_end, 15, Running),
            (FE3B, FrontEnd, front_end, 15, Running),
            (NODE1, BackEnd, sql, 0, NotInstalled),
            (NODE2, BackEnd, sql, 0, NotInstalled),
            (
                SE,
                StandardEdition,
                runs(true, true, true, true),
                15,
                Running
            ),
            (MON, Store, sql, 0, NotInstalled),
        ]
    );
    // MASTER runs on the Front End servers of the pool whose back end holds the CMS.
    assert_eq!(f.server(FE1A).services.last().unwrap().name, "MASTER");
    let names: Vec<String> = f
        .server(FE2A)
        .services
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, SERVICES);
    // Upgrade domains come from the topology.
    assert_eq!(
        f.server(FE1C).upgrade_domain.as_deref(),
        Some("UpgradeDomain3")
    );
    assert_eq!(f.server(FE2A).upgrade_domain, None);
}

#[test]
fn components_on_a_back_end_add_the_management_shell_only() {
    let f = fixture_with(
        &deployment(),
        LabOptions {
            sfb_components: vec![NODE2.to_string(), MON.to_string()],
            ..LabOptions::default()
        },
    );
    for name in [NODE2, MON] {
        let s = f.server(name);
        assert_eq!(s.runs, runs(false, false, true, true), "{name}");
        assert!(s.services.is_empty(), "{name}");
        assert_eq!(s.w3svc, ServiceState::NotInstalled, "{name}");
        assert_eq!(s.installed_build, OLD, "{name}");
    }
    assert_eq!(f.server(NODE1).runs, runs(false, false, false, true));
    // The plan follows: the last node updates the databases itself.
    let node2 = f.plan_for(NODE2);
    assert!(node2.step(StepId::UpdateDatabases).run_on.is_none());
    assert!(node2.step(StepId::InstallUpdate).not_applicable.is_none());
}

/// `plan` with every step sent to the server itself, `not_applicable` or not.
fn everything_on_itself(plan: &ServerPlan) -> ServerPlan {
    let mut plan = plan.clone();
    for step in &mut plan.steps {
        step.run_on = None;
    }
    plan
}

#[test]
fn a_sql_only_machine_refuses_skype_for_business_commands() {
    let f = fixture();
    let plan = everything_on_itself(&f.plan_for(EE));
    let answers: Vec<(StepId, i32, String)> = plan
        .steps
        .iter()
        .map(|s| {
            let o = exec(&f, &plan, s.id).unwrap();
            (s.id, o.exit_code, o.output)
        })
        .collect();
    let not_recognized = |cmdlet: &str| {
        format!(
            "{cmdlet} : The term '{cmdlet}' is not recognized as the name of a cmdlet, function, \
             script file, or operable program (sql1.contoso.com has no Skype for Business \
             Management Shell)"
        )
    };
    let no_iis = |verb: &str| {
        format!(
            "net {verb} w3svc on sql1.contoso.com: The service name is invalid. (IIS is not \
             installed on this machine)"
        )
    };
    let installer = "SkypeServerUpdateInstaller on sql1.contoso.com: no Skype for Business Server \
                     component is installed on this machine; nothing to update"
        .to_string();
    let (_, _, staged) = &answers[1];
    assert_eq!(
        answers,
        [
            (
                StepId::CheckAdminRole,
                0,
                "LAB\\sfbadmin is a member of CsAdministrator".to_string()
            ),
            (StepId::StageUpdate, 0, staged.clone()),
            (
                StepId::StopCsServices,
                1,
                not_recognized("Stop-CsWindowsService")
            ),
            (StepId::StopW3svc, 2, no_iis("stop")),
            (
                StepId::CloseManagementShells,
                0,
                "no Management Shell session was open".to_string()
            ),
            (StepId::InstallUpdate, 1, installer),
            (
                StepId::StopCsServicesGac,
                1,
                not_recognized("Stop-CsWindowsService")
            ),
            (StepId::StartW3svc, 2, no_iis("start")),
            (
                StepId::UpdateDatabases,
                1,
                not_recognized("Install-CsDatabase")
            ),
            (
                StepId::StartCsServices,
                1,
                not_recognized("Start-CsWindowsService")
            ),
            (StepId::Verify, 1, not_recognized("Test-CsDatabase")),
        ]
    );
    let s = f.server(EE);
    assert_eq!(s.refused_commands, 8);
    assert_eq!(s.w3svc, ServiceState::NotInstalled);
    assert_eq!((s.installed_build, s.installer_runs), (OLD, 0));
    assert!(s.services.is_empty());
    // The back end stayed available: nothing it refused took its databases away.
    assert_eq!(f.pool(POOL1).outage_intervals, vec![]);
    assert_eq!(databases(&f, EE, "rtc")[0].1, "15.2046.0");
}

#[test]
fn front_end_commands_need_a_front_end_server() {
    let f = fixture();
    let mut fe = f.plan_for(FE1A);
    // The Front End steps sent to the Standard Edition server.
    fe.fqdn = sfbpatch_topology::Fqdn::parse(SE).unwrap();
    let check = exec(&f, &fe, StepId::CheckFabricState).unwrap();
    assert_eq!(
        (check.exit_code, check.output.as_str()),
        (
            1,
            "se01.contoso.com is not a Front End server of an Enterprise pool"
        )
    );
    let failover = exec(&f, &fe, StepId::Failover).unwrap();
    assert_eq!(
        (failover.exit_code, failover.output.as_str()),
        (
            1,
            "Invoke-CsComputerFailOver -ComputerName fe1a.contoso.com was sent to se01.contoso.com"
        )
    );
    // A Front End server asked about another pool.
    let mut other = f.plan_for(FE2A);
    other.fqdn = sfbpatch_topology::Fqdn::parse(FE1A).unwrap();
    let check = exec(&f, &other, StepId::CheckFabricState).unwrap();
    assert_eq!(
        (check.exit_code, check.output.as_str()),
        (
            1,
            "fe1a.contoso.com is a Front End server of pool pool1.contoso.com, not of \
             pool2.contoso.com"
        )
    );
    // On a SQL Server machine the cmdlets do not exist at all.
    let mut on_sql = f.plan_for(FE1A);
    on_sql.fqdn = sfbpatch_topology::Fqdn::parse(EE).unwrap();
    let failover = exec(&f, &on_sql, StepId::Failover).unwrap();
    assert_eq!(failover.exit_code, 1);
    assert!(
        failover.output.starts_with(
            "Invoke-CsComputerFailOver : The term 'Invoke-CsComputerFailOver' is not recognized"
        ),
        "{}",
        failover.output
    );
    assert_eq!(f.server(EE).refused_commands, 1);
    assert_eq!(f.server(SE).refused_commands, 0);
    assert!(!f.server(FE1A).failed_over);
}

#[test]
fn the_pre_flight_probe_reads_what_each_kind_has() {
    let f = fixture_with_components(&[NODE2]);
    let facts = |name: &str| f.target.preflight_server(name).unwrap();
    let names = |extra: Option<&str>| -> Vec<String> {
        SERVICES
            .iter()
            .copied()
            .chain(extra)
            .map(String::from)
            .collect()
    };
    assert_eq!(
        facts(FE1A),
        MachineFacts {
            services: names(Some("MASTER")),
            services_running: 16,
            w3svc: true,
            management_shell: true,
            sql_server: false,
            build: Some(OLD),
            reboot_pending: false,
            in_service: true,
        }
    );
    assert_eq!(
        facts(SE),
        MachineFacts {
            services: names(None),
            services_running: 15,
            w3svc: true,
            management_shell: true,
            sql_server: true,
            build: Some(OLD),
            reboot_pending: false,
            in_service: true,
        }
    );
    let sql_only = MachineFacts {
        services: vec![],
        services_running: 0,
        w3svc: false,
        management_shell: false,
        sql_server: true,
        build: None,
        reboot_pending: false,
        in_service: true,
    };
    assert_eq!(facts(EE), sql_only);
    assert_eq!(facts(NODE1), sql_only);
    assert_eq!(facts(MON), sql_only);
    assert_eq!(
        facts(NODE2),
        MachineFacts {
            management_shell: true,
            build: Some(OLD),
            ..sql_only.clone()
        }
    );
    assert_eq!(facts(EE).product_line(), None);
    assert_eq!(
        facts(FE1A).product_line(),
        Some("Skype for Business Server 2019")
    );

    // Mid-procedure the probe shows it: a failed-over Front End server with a restart pending.
    let f = fixture_with_faults(&fault(FE1B, "install-update", "exit_code = 3010"));
    let plan = f.plan_for(FE1B);
    run_until(&f, &plan, StepId::InstallUpdate);
    assert_eq!(
        exec(&f, &plan, StepId::InstallUpdate).unwrap().exit_code,
        3010
    );
    let now = f.lab.now().unwrap();
    let facts = f.target.preflight_server(FE1B).unwrap();
    // Its services stay stopped: failover disabled them, so the installer could not restart them.
    assert_eq!(
        (
            facts.services_running,
            facts.w3svc,
            facts.build,
            facts.reboot_pending,
            facts.in_service
        ),
        (0, true, Some(NEW), true, false)
    );
    assert_eq!(f.lab.now().unwrap(), now, "the probe takes no time");
    assert_eq!(
        f.target.preflight_server("edge01.contoso.com").unwrap_err(),
        sfbpatch_engine::TargetError::Refused(format!(
            "server 'edge01.contoso.com' is not part of the lab in {}",
            f.dir().display()
        ))
    );
}
