//! A wrong order or a wrong variant visibly fails; probes read the world.

use sfbpatch_engine::ProbeVerdict;
use sfbpatch_lab::{Interval, LabOptions, PoolMode};
use sfbpatch_plan::{Installer, StepId};

use crate::common::*;

const SQL1_SERVICES: &str = "RTCSRV, RTCCLSAGT, RTCHA, RTCMEDSRV, RTCATS, RTCASMCU, RTCAVMCU, \
                             RTCIMMCU, RTCDATAMCU, RTCCAA, RTCCAS, RTCRGS, RTCXMPPTGW, REPLICA, FTA, MASTER";

#[test]
fn installing_while_services_run_fails_with_files_in_use() {
    let f = fixture();
    let plan = ee_plan(&f, Variant::Configured);
    ok(&f, &plan, StepId::CheckAdminRole);
    ok(&f, &plan, StepId::StageUpdate);

    let outcome = exec(&f, &plan, StepId::InstallUpdate).unwrap();
    assert_eq!(outcome.exit_code, 1);
    assert_eq!(
        outcome.output,
        format!("files in use: {SQL1_SERVICES}, W3SVC")
    );
    let s = f.server(EE);
    assert_eq!((s.installed_build, s.installer_runs), (OLD, 0));
    // Still in service: a failed installer start is no outage.
    assert_eq!(f.pool("pool1.contoso.com").outage_intervals, vec![]);

    ok(&f, &plan, StepId::StopCsServices);
    let outcome = exec(&f, &plan, StepId::InstallUpdate).unwrap();
    assert_eq!(
        (outcome.exit_code, outcome.output.as_str()),
        (1, "files in use: W3SVC")
    );
    ok(&f, &plan, StepId::StopW3svc);
    ok(&f, &plan, StepId::InstallUpdate);
    assert_eq!(f.server(EE).installer_runs, 1);
}

#[test]
fn installing_without_staging_fails() {
    let f = fixture();
    let plan = ee_plan(&f, Variant::Configured);
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
    assert_eq!(f.server(EE).installed_build, OLD);
}

#[test]
fn the_installer_restarts_services_on_old_assemblies() {
    let f = fixture();
    let plan = ee_plan(&f, Variant::Configured);
    for id in &StepId::ALL[..6] {
        ok(&f, &plan, *id);
    }
    let s = f.server(EE);
    assert_eq!(s.installed_build, NEW);
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

#[test]
fn skipping_the_second_stop_leaves_old_assemblies_and_verify_fails() {
    let f = fixture();
    let plan = ee_plan(&f, Variant::Configured);
    let mut outputs = Vec::new();
    for id in StepId::ALL {
        if id == StepId::StopCsServicesGac {
            continue;
        }
        let outcome = exec(&f, &plan, id).unwrap();
        outputs.push((id, outcome));
    }
    let (_, start) = &outputs[8];
    assert_eq!(
        start.output,
        "Start-CsWindowsService: every service was already running"
    );
    let (id, verify) = outputs.last().unwrap();
    assert_eq!(*id, StepId::Verify);
    assert_eq!(verify.exit_code, 1);
    let stale: Vec<String> = SQL1_SERVICES
        .split(", ")
        .map(|s| format!("{s} (7.0.2046.0)"))
        .collect();
    assert_eq!(
        verify.output,
        format!(
            "verification failed on sql1.contoso.com:\n\
             - Get-CsWindowsService: 16 services run on old assemblies while 7.0.2046.553 is \
             installed: {}",
            stale.join(", ")
        )
    );
    // The server never came back: the pool's outage is still open.
    let pool = f.pool("pool1.contoso.com");
    assert_eq!(pool.mode, PoolMode::Outage);
    assert_eq!(
        pool.outage_intervals,
        vec![Interval {
            start: 246.0,
            end: None
        }]
    );
    assert!(!f.lab.server(EE).unwrap().in_service);
}

#[test]
fn local_databases_on_an_enterprise_back_end_leave_the_stores_behind() {
    let f = fixture();
    let plan = ee_plan(&f, Variant::Local);
    let mut outcome = None;
    for id in StepId::ALL {
        let o = exec(&f, &plan, id).unwrap();
        if id == StepId::UpdateDatabases {
            assert_eq!(o.exit_code, 0);
            assert_eq!(
                o.output,
                "Install-CsDatabase -Update -LocalDatabases: sql1.contoso.com is an Enterprise \
                 Edition back-end server; its local databases hold none of the back end's \
                 stores: no back-end database changed"
            );
        }
        if id != StepId::Verify {
            assert_eq!(o.exit_code, 0, "{id}: {}", o.output);
        }
        outcome = Some(o);
    }
    let outcome = outcome.unwrap();
    assert_eq!(outcome.exit_code, 1);
    assert_eq!(
        outcome.output,
        "verification failed on sql1.contoso.com:\n\
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
}

#[test]
fn configured_databases_against_a_standard_edition_server_fail() {
    let f = fixture();
    let plan = se_plan(&f, Variant::Configured);
    for id in &StepId::ALL[..8] {
        ok(&f, &plan, *id);
    }
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
fn updating_databases_before_the_build_is_raised_changes_nothing() {
    let f = fixture();
    let plan = ee_plan(&f, Variant::Configured);
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
fn a_hash_mismatch_fails_staging_before_any_outage() {
    let mut f = fixture();
    let wrong = "0".repeat(64);
    f.package.sha256 = wrong.clone();
    let plan = ee_plan(&f, Variant::Configured);
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
    let detail = f.lab.server(EE).unwrap();
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
    let plan = ee_plan(&f, Variant::Configured);
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
    let plan = ee_plan(&f, Variant::Configured);
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
    let outcome = exec(
        &f,
        &ee_plan(&f, Variant::Configured),
        StepId::CheckAdminRole,
    )
    .unwrap();
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
        ok(
            &f,
            &ee_plan(&f, Variant::Configured),
            StepId::CheckAdminRole
        ),
        "LAB\\rtcadmin is a member of RTCUniversalServerAdmins"
    );
    let f = operator("lab\\SFBADMIN");
    assert_eq!(
        ok(
            &f,
            &ee_plan(&f, Variant::Configured),
            StepId::CheckAdminRole
        ),
        "lab\\SFBADMIN is a member of CsAdministrator"
    );
}

#[test]
fn probes_read_each_step_s_effect() {
    use ProbeVerdict::{Done, NotDone};
    let f = fixture();
    let first = node_plan(&f, NODE1, Variant::UpdatedBy(NODE2));
    let verdict = |id| probe(&f, &first, id).unwrap().verdict;
    let before: Vec<_> = StepId::ALL.into_iter().map(verdict).collect();
    assert_eq!(
        before,
        vec![
            NotDone, NotDone, NotDone, NotDone, NotDone, NotDone, NotDone, Done, Done, Done,
            NotDone
        ]
    );
    for id in StepId::ALL {
        ok(&f, &first, id);
        let expected = match id {
            StepId::CheckAdminRole | StepId::CloseManagementShells | StepId::Verify => NotDone,
            _ => Done,
        };
        assert_eq!(verdict(id), expected, "{id} after it ran");
        if id == StepId::InstallUpdate {
            // The installer restarted the services: the second stop is still to do.
            assert_eq!(verdict(StepId::StopCsServicesGac), NotDone);
            // They run, but on old assemblies: starting them is not done either.
            assert_eq!(verdict(StepId::StartCsServices), NotDone);
        }
    }
    let facts: serde_json::Value =
        serde_json::from_str(&probe(&f, &first, StepId::InstallUpdate).unwrap().facts).unwrap();
    assert_eq!(facts["installed_build"], "7.0.2046.553");
    assert_eq!(facts["services_on_installed_build"], 15);

    // The last node's database step is not done until it runs.
    let last = node_plan(&f, NODE2, Variant::Configured);
    assert_eq!(
        probe(&f, &last, StepId::UpdateDatabases).unwrap().verdict,
        NotDone
    );
    // Probes take no time.
    let now = f.lab.now().unwrap();
    for id in StepId::ALL {
        probe(&f, &last, id).unwrap();
    }
    assert_eq!(f.lab.now().unwrap(), now);
}

#[test]
fn recovery_brings_the_server_back_into_service() {
    let f = fixture();
    let plan = ee_plan(&f, Variant::Configured);
    for id in &StepId::ALL[..4] {
        ok(&f, &plan, *id);
    }
    assert_eq!(f.pool("pool1.contoso.com").mode, PoolMode::Outage);
    let outcome = f.target.recover_server(EE).unwrap();
    assert_eq!(outcome.exit_code, 0);
    assert_eq!(
        outcome.output,
        format!(
            "started W3SVC; started 16 services on build 7.0.2046.0: {SQL1_SERVICES}; \
             sql1.contoso.com is back in service"
        )
    );
    // Out at 246 s; stop 120 s and W3SVC 30 s; recovery 30 s + 180 s.
    let pool = f.pool("pool1.contoso.com");
    assert_eq!(pool.mode, PoolMode::Normal);
    assert_eq!(
        pool.outage_intervals,
        vec![Interval {
            start: 246.0,
            end: Some(606.0)
        }]
    );
    let again = f.target.recover_server(EE).unwrap();
    assert_eq!(
        again.output,
        "nothing to do: W3SVC and every service were running; sql1.contoso.com is back in service"
    );
}

#[test]
fn recovery_restarts_services_that_run_on_old_assemblies() {
    let f = fixture();
    let plan = ee_plan(&f, Variant::Configured);
    for id in &StepId::ALL[..6] {
        ok(&f, &plan, *id);
    }
    let outcome = f.target.recover_server(EE).unwrap();
    assert_eq!(outcome.exit_code, 0, "{}", outcome.output);
    assert_eq!(
        outcome.output,
        format!(
            "started W3SVC; restarted 16 services that ran on old assemblies: {SQL1_SERVICES}; \
             sql1.contoso.com is back in service"
        )
    );
    let s = f.server(EE);
    assert!(s.services.iter().all(|svc| svc.loaded_build == NEW));
}

#[test]
fn a_step_must_carry_its_own_action() {
    let f = fixture();
    let mut plan = ee_plan(&f, Variant::Configured);
    plan.steps[5].action = sfbpatch_plan::Action::StopW3svc;
    let err = exec(&f, &plan, StepId::InstallUpdate).unwrap_err();
    assert_eq!(
        err,
        sfbpatch_engine::TargetError::Refused(
            "step install-update cannot carry the action StopW3svc".to_string()
        )
    );
    let mut stranger = ee_plan(&f, Variant::Configured);
    stranger.fqdn = fqdn("fe1a.contoso.com");
    let err = exec(&f, &stranger, StepId::CheckAdminRole).unwrap_err();
    assert!(
        matches!(&err, sfbpatch_engine::TargetError::Refused(m) if m.starts_with("server 'fe1a.contoso.com' is not part of the lab in ")),
        "{err}"
    );
}
