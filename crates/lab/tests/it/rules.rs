//! A wrong order or a wrong variant visibly fails; probes read the world; recovery.

use sfbpatch_engine::{ProbeVerdict, TargetError};
use sfbpatch_lab::{Interval, LabOptions, PoolMode};
use sfbpatch_plan::{Action, Installer, StepId};

use crate::common::*;

/// The services of a Front End server of pool1 (its back end holds the Central Management
/// store, so MASTER runs too).
const POOL1_SERVICES: &str = "RTCSRV, RTCCLSAGT, RTCHA, RTCMEDSRV, RTCATS, RTCASMCU, RTCAVMCU, \
                              RTCIMMCU, RTCDATAMCU, RTCCAA, RTCCAS, RTCRGS, RTCXMPPTGW, REPLICA, FTA, MASTER";
/// The services of the Standard Edition server.
const SE_SERVICES: &str = "RTCSRV, RTCCLSAGT, RTCHA, RTCMEDSRV, RTCATS, RTCASMCU, RTCAVMCU, \
                           RTCIMMCU, RTCDATAMCU, RTCCAA, RTCCAS, RTCRGS, RTCXMPPTGW, REPLICA, FTA";

#[test]
fn installing_while_services_run_fails_with_files_in_use() {
    let f = fixture();
    let plan = f.plan_for(SE);
    ok(&f, &plan, StepId::CheckAdminRole);
    ok(&f, &plan, StepId::StageUpdate);

    let outcome = exec(&f, &plan, StepId::InstallUpdate).unwrap();
    assert_eq!(
        (outcome.exit_code, outcome.output),
        (1, format!("files in use: {SE_SERVICES}, W3SVC"))
    );
    let s = f.server(SE);
    assert_eq!((s.installed_build, s.installer_runs), (OLD, 0));
    // Still in service: a failed installer start is no outage.
    assert_eq!(f.pool(SE).outage_intervals, vec![]);

    ok(&f, &plan, StepId::StopCsServices);
    let outcome = exec(&f, &plan, StepId::InstallUpdate).unwrap();
    assert_eq!(
        (outcome.exit_code, outcome.output.as_str()),
        (1, "files in use: W3SVC")
    );
    ok(&f, &plan, StepId::StopW3svc);
    ok(&f, &plan, StepId::InstallUpdate);
    assert_eq!(f.server(SE).installer_runs, 1);
}

#[test]
fn failover_stops_the_services_but_iis_still_holds_files_on_a_front_end() {
    let f = fixture();
    let plan = f.plan_for(FE1A);
    let outcome = {
        ok(&f, &plan, StepId::CheckAdminRole);
        ok(&f, &plan, StepId::StageUpdate);
        exec(&f, &plan, StepId::InstallUpdate).unwrap()
    };
    assert_eq!(
        (outcome.exit_code, outcome.output),
        (1, format!("files in use: {POOL1_SERVICES}, W3SVC"))
    );
    ok(&f, &plan, StepId::CheckFabricState);
    ok(&f, &plan, StepId::Failover);
    let outcome = exec(&f, &plan, StepId::InstallUpdate).unwrap();
    assert_eq!(
        (outcome.exit_code, outcome.output.as_str()),
        (1, "files in use: W3SVC")
    );
    assert_eq!(
        ok(&f, &plan, StepId::StopCsServices),
        "Stop-CsWindowsService: no Skype for Business service was running"
    );
    ok(&f, &plan, StepId::StopW3svc);
    ok(&f, &plan, StepId::InstallUpdate);
    assert_eq!(f.server(FE1A).installer_runs, 1);
}

#[test]
fn installing_without_staging_fails() {
    let f = fixture();
    let plan = f.plan_for(SE);
    for id in [
        StepId::StopCsServices,
        StepId::StopW3svc,
        StepId::CloseManagementShells,
    ] {
        ok(&f, &plan, id);
    }
    let outcome = exec(&f, &plan, StepId::InstallUpdate).unwrap();
    assert_eq!(outcome.exit_code, 1);
    assert_eq!(
        outcome.output,
        format!(
            "the installer was not staged: {DESTINATION} is missing or is not the package's file \
             (stage-update first)"
        )
    );
    assert_eq!(f.server(SE).installed_build, OLD);
}

#[test]
fn the_installer_restarts_services_on_old_assemblies() {
    let f = fixture();
    let plan = f.plan_for(SE);
    run_until(&f, &plan, StepId::StopCsServicesGac);
    let s = f.server(SE);
    assert_eq!(s.installed_build, NEW);
    assert_eq!(s.services.len(), 15);
    for svc in &s.services {
        assert_eq!(
            (svc.state.as_str(), svc.loaded_build),
            ("running", OLD),
            "{}",
            svc.name
        );
    }
    assert_eq!(s.w3svc.as_str(), "stopped");
}

/// Invoke-CsComputerFailOver stops and disables a Front End server's services: the installer
/// cannot restart them, Start-CsWindowsService fails, and failback enables and starts them on
/// the new build.
#[test]
fn a_failed_over_front_end_keeps_its_services_stopped_until_failback() {
    let f = fixture();
    let plan = f.plan_for(FE1A);
    run_until(&f, &plan, StepId::StopCsServicesGac);
    let s = f.server(FE1A);
    assert_eq!(s.installed_build, NEW);
    assert!(s.failed_over);
    for svc in &s.services {
        assert_eq!(svc.state.as_str(), "stopped", "{}", svc.name);
    }
    assert_eq!(f.front_ends(POOL1).in_service, 2);

    let mut start = plan.step(StepId::StartCsServices).clone();
    start.not_applicable = None;
    let mut with_start = plan.clone();
    *with_start
        .steps
        .iter_mut()
        .find(|st| st.id == StepId::StartCsServices)
        .unwrap() = start;
    let refused = exec(&f, &with_start, StepId::StartCsServices).unwrap();
    assert_eq!(refused.exit_code, 1);
    assert_eq!(
        refused.output,
        "Start-CsWindowsService : Cannot start service RTCSRV on computer 'fe1a.contoso.com': \
         the service is disabled (Invoke-CsComputerFailOver disabled the Skype for Business \
         services; Invoke-CsComputerFailBack enables and starts them)"
    );
    for id in [
        StepId::StopCsServicesGac,
        StepId::StartW3svc,
        StepId::Failback,
    ] {
        assert_eq!(exec(&f, &plan, id).unwrap().exit_code, 0, "{id}");
    }
    let s = f.server(FE1A);
    assert!(!s.failed_over);
    for svc in &s.services {
        assert_eq!(
            (svc.state.as_str(), svc.loaded_build),
            ("running", NEW),
            "{}",
            svc.name
        );
    }
    assert_eq!(f.front_ends(POOL1).in_service, 3);
}

#[test]
fn skipping_the_second_stop_leaves_old_assemblies_and_verify_fails() {
    let f = fixture();
    let plan = f.plan_for(SE);
    let mut outputs = Vec::new();
    for id in applicable(&plan) {
        if id == StepId::StopCsServicesGac {
            continue;
        }
        outputs.push((id, exec(&f, &plan, id).unwrap()));
    }
    let start = &outputs
        .iter()
        .find(|(id, _)| *id == StepId::StartCsServices)
        .unwrap()
        .1;
    assert_eq!(
        start.output,
        "Start-CsWindowsService: every service was already running"
    );
    let (id, verify) = outputs.last().unwrap();
    assert_eq!(*id, StepId::Verify);
    assert_eq!(verify.exit_code, 1);
    let stale: Vec<String> = SE_SERVICES
        .split(", ")
        .map(|s| format!("{s} (7.0.2046.0)"))
        .collect();
    assert!(
        verify.output.contains(&format!(
            "- Get-CsWindowsService: 15 services run on old assemblies while 7.0.2046.553 is \
             installed: {}",
            stale.join(", ")
        )),
        "{}",
        verify.output
    );
    // On one inconsistent build: not in service.
    let detail = f.lab.server(SE).unwrap();
    assert!(!detail.in_service);
    assert_eq!(detail.server.out_of_service.len(), 1);
    assert_eq!(detail.server.out_of_service[0].end, None);
}

/// On a failed-over Front End server the second stop has nothing to stop: the installer could
/// not restart the disabled services, and failback starts them on the new build.
#[test]
fn a_failed_over_front_end_needs_no_second_stop() {
    let f = fixture();
    let plan = f.plan_for(FE1A);
    for id in applicable(&plan) {
        if id == StepId::StopCsServicesGac {
            continue;
        }
        let outcome = exec(&f, &plan, id).unwrap();
        assert_eq!(outcome.exit_code, 0, "{id}: {}", outcome.output);
    }
    let detail = f.lab.server(FE1A).unwrap();
    assert!(detail.in_service);
    assert!(!detail.server.failed_over);
}

#[test]
fn local_databases_on_an_enterprise_back_end_leave_the_stores_behind() {
    let f = fixture();
    for fe in [FE1A, FE1B, FE1C] {
        run_all(&f, &f.plan_for(fe));
    }
    let mut plan = f.plan_for(EE);
    plan.steps
        .iter_mut()
        .find(|s| s.id == StepId::UpdateDatabases)
        .unwrap()
        .action = Action::UpdateLocalDatabases;
    assert_eq!(
        ok(&f, &plan, StepId::UpdateDatabases),
        "Install-CsDatabase -Update -LocalDatabases: fe1c.contoso.com is not a Standard Edition \
         server; its local databases hold none of the back end's stores: no back-end database \
         changed"
    );
    let outcome = exec(&f, &plan, StepId::Verify).unwrap();
    assert_eq!(outcome.exit_code, 1);
    assert_eq!(
        outcome.output,
        "verification failed on fe1c.contoso.com:\n\
         - Test-CsDatabase sql1.contoso.com\\rtc rtcxds: InstalledVersion 15.2046.0, ExpectedVersion 15.2046.553, Succeed False\n\
         - Test-CsDatabase sql1.contoso.com\\rtc rtcshared: InstalledVersion 15.2046.0, ExpectedVersion 15.2046.553, Succeed False\n\
         - Test-CsDatabase sql1.contoso.com\\rtc rtcab: InstalledVersion 15.2046.0, ExpectedVersion 15.2046.553, Succeed False\n\
         - Test-CsDatabase sql1.contoso.com\\rtc rgsconfig: InstalledVersion 6.2046.0, ExpectedVersion 6.2046.553, Succeed False\n\
         - Test-CsDatabase sql1.contoso.com\\rtc rgsdyn: InstalledVersion 6.2046.0, ExpectedVersion 6.2046.553, Succeed False\n\
         - Test-CsDatabase sql1.contoso.com\\rtc cpsdyn: InstalledVersion 6.2046.0, ExpectedVersion 6.2046.553, Succeed False\n\
         - Test-CsDatabase sql1.contoso.com\\rtc xds: InstalledVersion 5.2046.0, ExpectedVersion 5.2046.553, Succeed False\n\
         - Test-CsDatabase sql1.contoso.com\\rtc lis: InstalledVersion 5.2046.0, ExpectedVersion 5.2046.553, Succeed False"
    );
    for (db, version, expected) in databases(&f, EE, "rtc") {
        assert_ne!(version, expected, "{db}");
    }
    // Nothing held the databases: no outage.
    assert_eq!(f.pool(POOL1).outage_intervals, vec![]);
}

#[test]
fn configured_databases_against_a_standard_edition_server_fail() {
    let f = fixture();
    let mut plan = f.plan_for(SE);
    plan.steps
        .iter_mut()
        .find(|s| s.id == StepId::UpdateDatabases)
        .unwrap()
        .action = Action::UpdateConfiguredDatabases {
        sql_server_fqdn: plan.fqdn.clone(),
        exclude_collocated_stores: false,
    };
    run_until(&f, &plan, StepId::UpdateDatabases);
    let outcome = exec(&f, &plan, StepId::UpdateDatabases).unwrap();
    assert_eq!(outcome.exit_code, 1);
    assert_eq!(
        outcome.output,
        "Install-CsDatabase: se01.contoso.com is a Standard Edition server's own SQL Server: use \
         -LocalDatabases on a Standard Edition server; nothing changed"
    );
    assert_eq!(databases(&f, SE, "rtc")[0].1, "15.2046.0");
}

#[test]
fn updating_databases_from_a_front_end_on_the_old_build_changes_nothing() {
    let f = fixture();
    let plan = f.plan_for(EE);
    let output = ok(&f, &plan, StepId::UpdateDatabases);
    assert_eq!(
        output,
        "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn sql1.contoso.com: every \
         database already has the schema of build 7.0.2046.0; nothing changed"
    );
    assert_databases_current(&f, EE, "rtc");
    assert_eq!(databases(&f, EE, "rtc")[0].1, "15.2046.0");
}

#[test]
fn databases_updated_while_a_front_end_runs_the_old_build_fail_the_back_end_s_verify() {
    let f = fixture();
    // Only the server that runs Install-CsDatabase has the new build.
    run_all(&f, &f.plan_for(FE1C));
    let plan = f.plan_for(EE);
    ok(&f, &plan, StepId::CheckAdminRole);
    ok(&f, &plan, StepId::UpdateDatabases);
    let outcome = exec(&f, &plan, StepId::Verify).unwrap();
    assert_eq!(
        (outcome.exit_code, outcome.output.as_str()),
        (
            1,
            "verification failed on fe1c.contoso.com:\n\
             - Front End server fe1a.contoso.com runs build 7.0.2046.0 while the databases on \
             sql1.contoso.com have the schema of build 7.0.2046.553\n\
             - Front End server fe1b.contoso.com runs build 7.0.2046.0 while the databases on \
             sql1.contoso.com have the schema of build 7.0.2046.553"
        )
    );
    // The world shows it: the databases are ahead of two of the pool's servers.
    assert_databases_current(&f, EE, "rtc");
    assert_eq!(f.server(FE1A).installed_build, OLD);
    assert_eq!(f.server(FE1B).installed_build, OLD);
}

#[test]
fn a_hash_mismatch_fails_staging_before_any_outage() {
    let mut f = fixture();
    let wrong = "0".repeat(64);
    f.package.sha256 = wrong.clone();
    let plan = f.plan_for(FE1A);
    let Installer::Path(path) = f.package.installer.clone() else {
        unreachable!()
    };
    let actual = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        std::fs::read(&path).unwrap(),
    ));
    let outcome = exec(&f, &plan, StepId::StageUpdate).unwrap();
    assert_eq!(outcome.exit_code, 1);
    assert_eq!(
        outcome.output,
        format!(
            "SHA-256 mismatch for {path}: the package expects {wrong}, the file has {actual}; \
             nothing was staged"
        )
    );
    let detail = f.lab.server(FE1A).unwrap();
    assert_eq!(detail.staged, None);
    assert!(detail.in_service);
    assert_eq!(
        probe(&f, &plan, StepId::StageUpdate).unwrap().verdict,
        ProbeVerdict::NotDone
    );
}

#[test]
fn a_missing_installer_or_a_url_fails_staging() {
    let mut f = fixture();
    f.package.installer = Installer::Path("/nonexistent/SkypeServerUpdateInstaller.exe".into());
    let plan = f.plan_for(SE);
    let outcome = exec(&f, &plan, StepId::StageUpdate).unwrap();
    assert_eq!(outcome.exit_code, 1);
    assert!(
        outcome
            .output
            .starts_with("cannot read the installer /nonexistent/SkypeServerUpdateInstaller.exe: "),
        "{}",
        outcome.output
    );

    f.package.installer = Installer::Url("https://download.example.com/cu.exe".into());
    let plan = f.plan_for(SE);
    let outcome = exec(&f, &plan, StepId::StageUpdate).unwrap();
    assert_eq!(
        (outcome.exit_code, outcome.output.as_str()),
        (
            1,
            "the lab cannot download; use a local installer file (the package names \
             https://download.example.com/cu.exe)"
        )
    );
}

#[test]
fn the_operator_must_hold_an_administrative_role() {
    let operator = |name: &str| {
        fixture_with(
            &deployment(),
            LabOptions {
                operator: name.to_string(),
                ..LabOptions::default()
            },
        )
    };
    let f = operator("LAB\\bob");
    assert_eq!(f.lab.operator(), "LAB\\bob");
    let outcome = exec(&f, &f.plan_for(FE1A), StepId::CheckAdminRole).unwrap();
    assert_eq!(
        (outcome.exit_code, outcome.output.as_str()),
        (
            1,
            "LAB\\bob is not a member of CsAdministrator or RTCUniversalServerAdmins: act as an \
             account that holds one of these roles"
        )
    );

    let f = operator("LAB\\rtcadmin");
    assert_eq!(
        ok(&f, &f.plan_for(EE), StepId::CheckAdminRole),
        "LAB\\rtcadmin is a member of RTCUniversalServerAdmins"
    );
    let f = operator("lab\\SFBADMIN");
    assert_eq!(
        ok(&f, &f.plan_for(SE), StepId::CheckAdminRole),
        "lab\\SFBADMIN is a member of CsAdministrator"
    );
}

#[test]
fn probes_read_each_step_s_effect_on_a_front_end() {
    use ProbeVerdict::{Done, NotDone};
    let f = fixture();
    let plan = f.plan_for(FE1A);
    let verdict = |id| probe(&f, &plan, id).unwrap().verdict;
    let before: Vec<_> = applicable(&plan).into_iter().map(verdict).collect();
    // check-admin-role, stage-update, check-fabric-state, failover, stop-cs-services,
    // stop-w3svc, close-management-shells, install-update, stop-cs-services-gac, start-w3svc,
    // failback, verify (failback starts the services: start-cs-services is not applicable).
    assert_eq!(
        before,
        vec![
            NotDone, NotDone, NotDone, NotDone, NotDone, NotDone, NotDone, NotDone, NotDone, Done,
            Done, NotDone
        ]
    );
    for id in applicable(&plan) {
        ok(&f, &plan, id);
        let expected = match id {
            StepId::CheckAdminRole
            | StepId::CheckFabricState
            | StepId::CloseManagementShells
            | StepId::Verify => NotDone,
            _ => Done,
        };
        assert_eq!(verdict(id), expected, "{id} after it ran");
        if id == StepId::InstallUpdate {
            // Failover disabled the services: the installer could not restart them, so the
            // second stop finds nothing running.
            assert_eq!(verdict(StepId::StopCsServicesGac), Done);
            assert_eq!(verdict(StepId::Failback), NotDone);
        }
        if id == StepId::Failback {
            // Back in the pool: a failover is what is left to do again.
            assert_eq!(verdict(StepId::Failover), NotDone);
        }
    }
    let facts: serde_json::Value =
        serde_json::from_str(&probe(&f, &plan, StepId::InstallUpdate).unwrap().facts).unwrap();
    assert_eq!(facts["installed_build"], "7.0.2046.553");
    assert_eq!(facts["services_on_installed_build"], 16);
    assert_eq!(facts["failed_over"], false);

    // Probes take no time.
    let now = f.lab.now().unwrap();
    for id in applicable(&plan) {
        probe(&f, &plan, id).unwrap();
    }
    assert_eq!(f.lab.now().unwrap(), now);
}

#[test]
fn the_database_step_is_done_once_the_databases_match_the_newest_front_end() {
    use ProbeVerdict::{Done, NotDone};
    let f = fixture();
    let plan = f.plan_for(EE);
    let verdict = || probe(&f, &plan, StepId::UpdateDatabases).unwrap().verdict;
    // Nothing is newer than the databases yet.
    assert_eq!(verdict(), Done);
    run_all(&f, &f.plan_for(FE1A));
    assert_eq!(verdict(), NotDone);
    let facts: serde_json::Value =
        serde_json::from_str(&probe(&f, &plan, StepId::UpdateDatabases).unwrap().facts).unwrap();
    assert_eq!(facts["databases_behind"], 8);
    // Read on the machine the step runs on.
    assert_eq!(facts["server"], FE1C);
}

#[test]
fn recovery_brings_the_server_back_into_service() {
    let f = fixture();
    let plan = f.plan_for(SE);
    run_until(&f, &plan, StepId::CloseManagementShells);
    assert_eq!(f.pool(SE).mode, PoolMode::Outage);
    let outcome = f.target.recover_server(SE, 15 * 60_000).unwrap();
    assert_eq!(outcome.exit_code, 0);
    assert_eq!(
        outcome.output,
        format!(
            "started W3SVC; started 15 services on build 7.0.2046.0: {SE_SERVICES}; \
             se01.contoso.com is back in service"
        )
    );
    // Out at 246 s; stop 120 s and W3SVC 30 s; recovery 30 s + 180 s.
    let pool = f.pool(SE);
    assert_eq!(pool.mode, PoolMode::Normal);
    assert_eq!(
        pool.outage_intervals,
        vec![Interval {
            start: 246.0,
            end: Some(606.0)
        }]
    );
    let again = f.target.recover_server(SE, 15 * 60_000).unwrap();
    assert_eq!(
        again.output,
        "nothing to do: W3SVC and every service were running; se01.contoso.com is back in service"
    );
}

#[test]
fn recovery_of_a_front_end_fails_it_back_on_the_new_build() {
    let f = fixture();
    let plan = f.plan_for(FE1A);
    run_until(&f, &plan, StepId::StopCsServicesGac);
    let before = f.now_seconds();
    let outcome = f.target.recover_server(FE1A, 15 * 60_000).unwrap();
    assert_eq!(outcome.exit_code, 0, "{}", outcome.output);
    assert_eq!(
        outcome.output,
        format!(
            "started W3SVC; Invoke-CsComputerFailBack -ComputerName fe1a.contoso.com: started 16 \
             services on build 7.0.2046.553; returned to its pool; fe1a.contoso.com is back in \
             service"
        )
    );
    // W3SVC 30 s, failback 5 min (it enables and starts the services failover disabled).
    assert_eq!(f.now_seconds(), before + 30.0 + 300.0);
    let s = f.server(FE1A);
    assert!(!s.failed_over);
    assert!(s.services.iter().all(|svc| svc.loaded_build == NEW));
    let fe = f.front_ends(POOL1);
    assert_eq!(fe.in_service, 3);
    assert_eq!(fe.user_impact_intervals, vec![]);
}

#[test]
fn a_front_end_with_a_pending_restart_stays_failed_over_on_recovery() {
    let f = fixture_with_faults(&fault(FE1A, "install-update", "exit_code = 3010"));
    let plan = f.plan_for(FE1A);
    run_until(&f, &plan, StepId::InstallUpdate);
    assert_eq!(
        exec(&f, &plan, StepId::InstallUpdate).unwrap().exit_code,
        3010
    );
    let outcome = f.target.recover_server(FE1A, 15 * 60_000).unwrap();
    assert_eq!(
        (outcome.exit_code, outcome.output.as_str()),
        (
            1,
            "started W3SVC; left the services as they are: a restart is pending (installer exit \
             3010) and build 7.0.2046.553 loads only after it; left failed over: \
             fe1a.contoso.com must restart first, so its users stay on the pool's other Front End \
             servers; fe1a.contoso.com is still out of service"
        )
    );
    assert!(f.server(FE1A).failed_over);
    // Failback refuses too until the restart.
    let failback = exec(&f, &plan, StepId::Failback).unwrap();
    assert_eq!(
        (failback.exit_code, failback.output.as_str()),
        (
            1,
            "Invoke-CsComputerFailBack -ComputerName fe1a.contoso.com: refused: a restart is pending"
        )
    );
    let fe = f.front_ends(POOL1);
    assert_eq!((fe.in_service, fe.user_impact_intervals.len()), (2, 0));
}

#[test]
fn a_step_must_carry_its_own_action() {
    let f = fixture();
    let mut plan = f.plan_for(SE);
    plan.steps
        .iter_mut()
        .find(|s| s.id == StepId::InstallUpdate)
        .unwrap()
        .action = Action::StopW3svc;
    let err = exec(&f, &plan, StepId::InstallUpdate).unwrap_err();
    assert_eq!(
        err,
        TargetError::Refused("step install-update cannot carry the action StopW3svc".to_string())
    );
    let mut stranger = f.plan_for(SE);
    stranger.fqdn = sfbpatch_topology::Fqdn::parse("edge01.contoso.com").unwrap();
    let err = exec(&f, &stranger, StepId::CheckAdminRole).unwrap_err();
    assert!(
        matches!(&err, TargetError::Refused(m) if m.starts_with("server 'edge01.contoso.com' is not part of the lab in ")),
        "{err}"
    );
}
