//! script_for -> command_line -> decode_command_line -> request gives back the template, the
//! parameters and the typed action; anything else is refused with a stable code.

mod common;

use base64::Engine as _;
use common::*;
use sfbpatch_plan::{Action, StepId, render_command};
use sfbpatch_remote::{
    COMMAND_PREFIX, LockRequest, MAX_COMMAND_LINE, Operation, RemoteError, Script, TEMPLATES,
    decode_command_line, decode_script, lock_script, script_for, server_script, unlock_script,
};
use sfbpatch_topology::Fqdn;
use sfbpatch_topology::StoreKind;

fn encode(text: &str) -> String {
    Script {
        template: String::new(),
        text: text.to_string(),
    }
    .command_line()
}

#[test]
fn every_script_round_trips_to_its_template_and_action() {
    let plan = plan();
    for r in every_script(&plan) {
        let line = r.script.command_line();
        assert!(line.starts_with(COMMAND_PREFIX));
        assert!(line.len() <= MAX_COMMAND_LINE, "{}", line.len());
        let decoded = decode_command_line(&line)
            .unwrap_or_else(|e| panic!("{} on {}: {e}", r.script.template, r.server.fqdn));
        assert_eq!(decoded.template, r.script.template);
        assert_eq!(decoded, decode_script(&r.script.text).unwrap());
        assert_eq!(decoded.params["Server"], r.server.fqdn.as_str());

        let request = decoded.request().unwrap();
        assert_eq!(request.operation, r.op);
        assert_eq!(request.server, r.server.fqdn);
        match r.op {
            Operation::Execute | Operation::Probe => {
                let step = request.step.expect("a step");
                assert_eq!(step.id, r.step.id);
                assert_eq!(step.action, r.step.action, "{}", r.script.template);
                match r.step.id {
                    StepId::InstallUpdate => {
                        assert_eq!(request.package.version, Some(plan.package.version));
                        assert_eq!(
                            request.package.sha256.as_deref(),
                            Some(plan.package.sha256.as_str())
                        );
                        assert_eq!(
                            request.package.schema_versions,
                            plan.package.schema_versions
                        );
                    }
                    StepId::Verify => assert_eq!(
                        request.package.schema_versions,
                        plan.package.schema_versions
                    ),
                    _ => assert!(request.package.schema_versions.is_empty()),
                }
            }
            Operation::Reboot | Operation::Recover | Operation::Preflight => {
                assert!(request.step.is_none());
                assert_eq!(decoded.params.len(), 1);
            }
            Operation::Stop => {
                assert!(request.step.is_none());
                // It names the end of the first step's command line: its bindings.
                let first = sfbpatch_remote::script_for(
                    Operation::Execute,
                    r.server,
                    r.step,
                    &plan.package,
                )
                .unwrap()
                .command_line();
                let tail = request.command_tail.expect("a command tail");
                assert_eq!(tail.len(), sfbpatch_remote::STOP_TAIL);
                assert!(first.ends_with(&tail));
            }
            Operation::Lock => {
                assert!(request.step.is_none());
                assert_eq!(
                    request.lock,
                    Some(LockRequest {
                        holder: LOCK_HOLDER.to_string(),
                        generation: LOCK_GENERATION,
                        now_ms: LOCK_NOW_MS,
                        expires_at: LOCK_EXPIRES_AT,
                    })
                );
                assert_eq!(decoded.params["Generation"], LOCK_GENERATION.to_string());
                assert_eq!(request.unlock_holder, None);
            }
            Operation::Unlock => {
                assert!(request.step.is_none());
                assert_eq!(request.unlock_holder.as_deref(), Some(LOCK_HOLDER));
                assert_eq!(request.lock, None);
                assert_eq!(decoded.params.len(), 2);
            }
        }
        if r.op != Operation::Lock {
            assert_eq!(request.lock, None, "{}", r.script.template);
        }
        if r.op != Operation::Unlock {
            assert_eq!(request.unlock_holder, None, "{}", r.script.template);
        }
    }
}

#[test]
fn every_database_variant_is_covered() {
    let plan = plan();
    let variants: std::collections::BTreeSet<String> = every_script(&plan)
        .iter()
        .filter(|r| r.script.template == "step/update-databases")
        .map(|r| {
            let d = decode_script(&r.script.text).unwrap();
            format!(
                "{} {}",
                d.params["Variant"], d.params["ExcludeCollocatedStores"]
            )
        })
        .collect();
    assert_eq!(
        variants.into_iter().collect::<Vec<_>>(),
        [
            "configured false",
            "configured true",
            "deferred false",
            "local false"
        ]
    );
}

#[test]
fn the_command_line_is_base64_of_utf16le() {
    let plan = plan();
    let server = server(&plan, SAMPLE_SERVER);
    let script = script_for(
        Operation::Execute,
        server,
        server.step(StepId::StopW3svc),
        &plan.package,
    )
    .unwrap();
    let line = script.command_line();
    let encoded = line.strip_prefix(COMMAND_PREFIX).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    assert_eq!(&bytes[..4], &[b'&', 0, b' ', 0]);
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(String::from_utf16(&units).unwrap(), script.text);
    assert!(
        script
            .text
            .starts_with("& {\n# sfbpatch-template: step/stop-w3svc v1\n")
    );
    assert!(
        script.text.ends_with("\n} -Server 'sql02.fabrikam.com'\n"),
        "{}",
        script.text
    );
}

/// The stop-w3svc script for the sample server, as text.
fn sample_text() -> String {
    let plan = plan();
    let server = server(&plan, SAMPLE_SERVER);
    script_for(
        Operation::Execute,
        server,
        server.step(StepId::StopW3svc),
        &plan.package,
    )
    .unwrap()
    .text
}

fn refused(text: &str) -> RemoteError {
    decode_command_line(&encode(text)).expect_err("refused")
}

#[test]
fn a_tampered_template_is_refused() {
    let text = sample_text();
    let e = refused(&text.replacen("net stop w3svc", "net stop w3svc; Remove-Item C:\\", 1));
    assert_eq!(e.code(), "SFB-R007");
    assert!(
        e.to_string().contains(
            "names the template step/stop-w3svc but its text differs from the template at line"
        ),
        "{e}"
    );
    // One character changed.
    let e = refused(&text.replacen("'Continue'", "'Continue '", 1));
    assert_eq!(e.code(), "SFB-R007");
    // Statements added between the template and its closing brace.
    let e = refused(&text.replacen("\n} -Server", "\nRemove-Item C:\\\n} -Server", 1));
    assert_eq!(e.code(), "SFB-R007", "{e}");
    // Another version of the same template.
    let e = refused(&text.replacen("step/stop-w3svc v1", "step/stop-w3svc v2", 1));
    assert_eq!(e.code(), "SFB-R007");
    assert!(
        e.to_string()
            .contains("is version v2, while this sfbpatch has v1"),
        "{e}"
    );
}

#[test]
fn unknown_scripts_are_refused() {
    let text = sample_text();
    let e = refused(&text.replacen("step/stop-w3svc v1", "step/format-disk v1", 1));
    assert_eq!(e.code(), "SFB-R006");
    assert!(
        e.to_string().contains("no template 'step/format-disk'"),
        "{e}"
    );
    let e = refused("Remove-Item C:\\ -Recurse");
    assert_eq!(e.code(), "SFB-R006");
    assert!(
        e.to_string().contains("\"Remove-Item C:\\\\ -Recurse\""),
        "{e}"
    );
    let e = refused("& {\nRemove-Item C:\\ -Recurse\n}\n");
    assert_eq!(e.code(), "SFB-R006");
    assert!(e.to_string().contains("no sfbpatch-template marker"), "{e}");
}

#[test]
fn bad_bindings_are_refused() {
    let text = sample_text();
    let cases = [
        (
            text.replacen(
                "-Server 'sql02.fabrikam.com'",
                "-Server 'sql02.fabrikam.com'; Remove-Item C:\\ -Recurse",
                1,
            ),
            "unexpected text after the value",
        ),
        (
            text.replacen(
                "-Server 'sql02.fabrikam.com'",
                "-Server 'sql02.fabrikam.com' -Force 'x'",
                1,
            ),
            "unknown parameter",
        ),
        (
            text.replacen(" -Server 'sql02.fabrikam.com'", "", 1),
            "missing -Server",
        ),
        (
            text.replacen(
                "-Server 'sql02.fabrikam.com'",
                "-Server 'sql02.fabrikam.com' -Server 'sql01.fabrikam.com'",
                1,
            ),
            "-Server is bound twice",
        ),
        (
            text.replacen(
                "-Server 'sql02.fabrikam.com'",
                "-Server sql02.fabrikam.com",
                1,
            ),
            "-Server is not one single-quoted literal",
        ),
        (
            text.replacen("-Server 'sql02.fabrikam.com'", "-Server \"$(whoami)\"", 1),
            "-Server is not one single-quoted literal",
        ),
        (
            text.replacen("-Server 'sql02.fabrikam.com'", "-Server 'sql02", 1),
            "-Server is not one single-quoted literal",
        ),
    ];
    for (script, expected) in cases {
        let e = refused(&script);
        assert_eq!(e.code(), "SFB-R008", "{e}");
        assert!(e.to_string().contains(expected), "{e}");
    }
}

#[test]
fn values_are_validated_again_when_decoded() {
    let text = sample_text();
    let decoded =
        decode_script(&text.replacen("'sql02.fabrikam.com'", "'sql02.fabrikam.com;x'", 1)).unwrap();
    let e = decoded.request().unwrap_err();
    assert_eq!(e.code(), "SFB-R008");
    assert!(e.to_string().contains("-Server: invalid FQDN"), "{e}");

    let plan = plan();
    let server = server(&plan, SAMPLE_SERVER);
    let stage = script_for(
        Operation::Execute,
        server,
        server.step(StepId::StageUpdate),
        &plan.package,
    )
    .unwrap();
    let moved = stage
        .text
        .replace(r"7.0.2046.553\extracted'", r"elsewhere\extracted'");
    let e = decode_script(&moved).unwrap().request().unwrap_err();
    assert!(e.to_string().contains("-ExtractFolder"), "{e}");
    let hash = stage.text.replace(&plan.package.sha256, "not-a-hash");
    let e = decode_script(&hash).unwrap().request().unwrap_err();
    assert!(e.to_string().contains("-Sha256"), "{e}");

    let databases = script_for(
        Operation::Execute,
        server,
        server.step(StepId::UpdateDatabases),
        &plan.package,
    )
    .unwrap();
    let local = databases
        .text
        .replace("-Variant 'configured'", "-Variant 'local'");
    let e = decode_script(&local).unwrap().request().unwrap_err();
    assert!(e.to_string().contains("-ExcludeCollocatedStores"), "{e}");
    let deferred = databases
        .text
        .replace("-Variant 'configured'", "-Variant 'deferred'");
    let e = decode_script(&deferred).unwrap().request().unwrap_err();
    assert!(e.to_string().contains("-UpdatedBy"), "{e}");
}

#[test]
fn command_lines_of_another_shape_are_refused() {
    let good = encode(&sample_text());
    let encoded = good.strip_prefix(COMMAND_PREFIX).unwrap();
    for (line, code) in [
        (String::new(), "SFB-R004"),
        ("cmd.exe /c del C:\\".to_string(), "SFB-R004"),
        (
            format!("powershell.exe -EncodedCommand {encoded}"),
            "SFB-R004",
        ),
        (format!("{good} -ExecutionPolicy Bypass"), "SFB-R004"),
        (format!("{COMMAND_PREFIX}not*base64"), "SFB-R005"),
        (format!("{COMMAND_PREFIX}QUJD"), "SFB-R005"),
        (format!("{COMMAND_PREFIX}AND/2A=="), "SFB-R005"),
    ] {
        let e = decode_command_line(&line).expect_err(&line);
        assert_eq!(e.code(), code, "{line}: {e}");
    }
    // sshd may add a line end.
    assert!(decode_command_line(&format!("{good}\n")).is_ok());
    let e = decode_command_line(&format!("cmd.exe /c {}", "x".repeat(500))).unwrap_err();
    assert!(e.to_string().contains("(511 characters)"), "{e}");
}

#[test]
fn values_that_may_not_reach_a_script_are_refused() {
    let plan = plan();
    let server = server(&plan, SAMPLE_SERVER);

    let mut package = plan.package.clone();
    package.sha256 = "abc'; Remove-Item C:\\".to_string();
    let step = server.step(StepId::InstallUpdate);
    let e = script_for(Operation::Execute, server, step, &package).unwrap_err();
    assert_eq!(e.code(), "SFB-R002");
    assert!(e.to_string().starts_with("Sha256: "), "{e}");

    let mut package = plan.package.clone();
    package
        .schema_versions
        .insert(StoreKind::Monitoring, "15'".to_string());
    let e = script_for(
        Operation::Probe,
        server,
        server.step(StepId::Verify),
        &package,
    )
    .unwrap_err();
    assert_eq!(e.code(), "SFB-R002");

    let mut step = server.step(StepId::InstallUpdate).clone();
    step.action = Action::InstallUpdate {
        path: "relative\\setup.exe".to_string(),
    };
    let e = script_for(Operation::Execute, server, &step, &plan.package).unwrap_err();
    assert_eq!(e.code(), "SFB-R002");

    let mut step = server.step(StepId::StageUpdate).clone();
    step.action = Action::StageUpdate {
        source: sfbpatch_plan::Installer::Url("http://insecure.example/x.exe".to_string()),
        sha256: plan.package.sha256.clone(),
        destination: r"C:\staging\x.exe".to_string(),
    };
    let e = script_for(Operation::Execute, server, &step, &plan.package).unwrap_err();
    assert_eq!(e.code(), "SFB-R002");

    let mut step = server.step(StepId::StopW3svc).clone();
    step.action = Action::StartW3svc;
    let e = script_for(Operation::Execute, server, &step, &plan.package).unwrap_err();
    assert_eq!(e.code(), "SFB-R001");
    assert!(
        e.to_string().contains("step stop-w3svc cannot carry"),
        "{e}"
    );

    // Reboot and recovery need only the server.
    assert!(script_for(Operation::Reboot, server, &step, &plan.package).is_ok());

    let mut step = server.step(StepId::InstallUpdate).clone();
    step.action = Action::InstallUpdate {
        path: format!("C:\\{}", "a\\".repeat(600)),
    };
    let e = script_for(Operation::Execute, server, &step, &plan.package).unwrap_err();
    assert_eq!(e.code(), "SFB-R002", "{e}");
}

#[test]
fn lock_values_that_may_not_reach_a_script_are_refused() {
    let fqdn = Fqdn::parse(SAMPLE_SERVER).unwrap();
    let longest = "h".repeat(512);
    let script = lock_script(&fqdn, &longest, u64::from(u32::MAX), 1, 2).unwrap();
    let request = decode_command_line(&script.command_line())
        .unwrap()
        .request()
        .unwrap();
    assert_eq!(request.operation, Operation::Lock);
    assert_eq!(request.lock.unwrap().holder, longest);
    let most = 9_999_999_999_999_999_999;
    let script = lock_script(&fqdn, "h", most, most, most).unwrap();
    let lock = decode_script(&script.text)
        .unwrap()
        .request()
        .unwrap()
        .lock
        .unwrap();
    assert_eq!(
        (lock.generation, lock.now_ms, lock.expires_at),
        (most, most, most)
    );

    for (holder, param) in [
        ("", "Holder"),
        ("a\nb", "Holder"),
        ("caf\u{e9}#run1", "Holder"),
        (&"h".repeat(513), "Holder"),
    ] {
        let e = lock_script(&fqdn, holder, 1, 2, 3).unwrap_err();
        assert_eq!(e.code(), "SFB-R002", "{holder:?}: {e}");
        assert!(e.to_string().starts_with(&format!("{param}: ")), "{e}");
        let e = unlock_script(&fqdn, holder).unwrap_err();
        assert_eq!(e.code(), "SFB-R002", "{holder:?}: {e}");
    }
    for (args, param) in [
        ((u64::MAX, 1, 2), "Generation"),
        ((1, most + 1, 2), "NowMs"),
        ((1, 2, u64::MAX), "ExpiresAt"),
    ] {
        let e = lock_script(&fqdn, "h", args.0, args.1, args.2).unwrap_err();
        assert_eq!(e.code(), "SFB-R002", "{e}");
        assert!(e.to_string().starts_with(&format!("{param}: ")), "{e}");
    }
}

#[test]
fn lock_values_are_validated_again_when_decoded() {
    let fqdn = Fqdn::parse(SAMPLE_SERVER).unwrap();
    let lock = lock_script(&fqdn, "state.db#run1", 7, 1000, 2000).unwrap();
    for (from, to, param) in [
        ("-Generation '7'", "-Generation '-7'", "-Generation"),
        ("-Generation '7'", "-Generation '7x'", "-Generation"),
        ("-NowMs '1000'", "-NowMs ''", "-NowMs"),
        (
            "-ExpiresAt '2000'",
            "-ExpiresAt '20000000000000000000'",
            "-ExpiresAt",
        ),
        ("-Holder 'state.db#run1'", "-Holder ''", "-Holder"),
        (
            "-Holder 'state.db#run1'",
            "-Holder 'state.db\u{2028}#run1'",
            "-Holder",
        ),
    ] {
        assert!(lock.text.contains(from), "{}", lock.text);
        let e = decode_script(&lock.text.replacen(from, to, 1))
            .unwrap()
            .request()
            .unwrap_err();
        assert_eq!(e.code(), "SFB-R008", "{to}: {e}");
        assert!(
            e.to_string().contains(&format!("server/lock: {param}: ")),
            "{e}"
        );
    }
    let unlock = unlock_script(&fqdn, "state.db#run1").unwrap();
    let e = decode_script(
        &unlock
            .text
            .replacen("-Holder 'state.db#run1'", "-Holder ''", 1),
    )
    .unwrap()
    .request()
    .unwrap_err();
    assert_eq!(e.code(), "SFB-R008", "{e}");
    // server/unlock takes no generation.
    let e = decode_command_line(&encode(&unlock.text.replacen(
        "-Holder 'state.db#run1'",
        "-Holder 'state.db#run1' -Generation '1'",
        1,
    )))
    .unwrap_err();
    assert!(e.to_string().contains("unknown parameter"), "{e}");
}

#[test]
#[should_panic(expected = "server/lock names the lock's holder")]
fn a_lock_needs_more_than_the_server() {
    let plan = plan();
    let _ = server_script(Operation::Lock, server(&plan, SAMPLE_SERVER));
}

#[test]
#[should_panic(expected = "server/unlock names the lock's holder")]
fn an_unlock_needs_more_than_the_server() {
    let plan = plan();
    let _ = server_script(Operation::Unlock, server(&plan, SAMPLE_SERVER));
}

#[test]
fn every_operation_names_its_template() {
    let names: Vec<String> = Operation::ALL
        .iter()
        .map(|op| op.template_name(StepId::StopW3svc))
        .collect();
    for name in &names {
        assert!(
            TEMPLATES.iter().any(|(n, _)| n == name),
            "no template {name}"
        );
    }
    for op in Operation::ALL {
        assert_eq!(
            op.is_server_wide(),
            op.template_name(StepId::StopW3svc).starts_with("server/"),
            "{op}"
        );
    }
    assert_eq!(Operation::Lock.as_str(), "lock");
    assert_eq!(Operation::Unlock.as_str(), "unlock");
}

/// The plan's command with each value replaced by the template's expression for it.
fn with_parameters(command: &str, params: &std::collections::BTreeMap<String, String>) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let quote = sfbpatch_plan::ps_quote;
    if let Some(dest) = params.get("Destination") {
        let dir = dest.rsplit_once('\\').unwrap().0;
        pairs.push((
            quote(&format!("/extractall:\"{}\"", params["ExtractFolder"])),
            "('/extractall:\"{0}\"' -f $ExtractFolder)".to_string(),
        ));
        pairs.push((quote(dest), "$Destination".to_string()));
        pairs.push((quote(dir), "(Split-Path -Parent $Destination)".to_string()));
    }
    for name in ["Path", "Source", "Sha256", "Build"] {
        if let Some(v) = params.get(name) {
            pairs.push((quote(v), format!("${name}")));
        }
    }
    if let Some(sql) = params.get("SqlServerFqdn") {
        pairs.push((
            format!("-SqlServerFqdn {sql}"),
            "-SqlServerFqdn $SqlServerFqdn".to_string(),
        ));
    }
    // A pool's FQDN inside a message is formatted in ({0}); in a command it is the parameter.
    for name in ["Pool", "FabricPool"] {
        let Some(pool) = params.get(name).filter(|p| !p.is_empty()) else {
            continue;
        };
        pairs.push((
            format!(
                "'Pool {pool} has missing replicas; recover it first (Reset-CsPoolRegistrarState \
                 -PoolFqdn {pool} -ResetType QuorumLossRecovery): {{0}}' -f $fabric.Trim()"
            ),
            "'Pool {0} has missing replicas; recover it first (Reset-CsPoolRegistrarState \
             -PoolFqdn {0} -ResetType QuorumLossRecovery): {1}' -f $Pool, $fabric.Trim()"
                .to_string(),
        ));
        pairs.push((
            format!(
                "'Pool {pool} is not ready for a server to leave it: PoolUpgradeState {{0}}' -f \
                 $readiness.PoolUpgradeState"
            ),
            "'Pool {0} is not ready for a server to leave it: PoolUpgradeState {1}' -f $Pool, \
             $readiness.PoolUpgradeState"
                .to_string(),
        ));
        pairs.push((
            format!(
                "'Get-CsPoolFabricState -PoolFqdn {pool} reports missing replicas: {{0}}' -f \
                 $fabric.Trim()"
            ),
            format!(
                "'Get-CsPoolFabricState -PoolFqdn {{0}} reports missing replicas: {{1}}' -f \
                 ${name}, $fabric.Trim()"
            ),
        ));
        pairs.push((format!("-PoolFqdn {pool} "), format!("-PoolFqdn ${name} ")));
    }
    if let Some(computer) = params.get("Computer") {
        pairs.push((
            format!("-ComputerName {computer} "),
            "-ComputerName $Computer ".to_string(),
        ));
    }
    // The script's exit code is the result's exit_code: `Busy` sets it and returns.
    pairs.push((
        format!("exit {}", sfbpatch_plan::POOL_BUSY_EXIT),
        format!(
            "$result.exit_code = {}; return",
            sfbpatch_plan::POOL_BUSY_EXIT
        ),
    ));
    let mut out = command.to_string();
    for (from, to) in pairs {
        out = out.replace(&from, &to);
    }
    out
}

#[test]
fn step_templates_run_the_plans_own_commands() {
    let plan = plan();
    for server in &plan.servers {
        for step in &server.steps {
            let Some(command) = render_command(&step.action, &plan.package) else {
                continue;
            };
            let script = script_for(Operation::Execute, server, step, &plan.package).unwrap();
            let params = decode_script(&script.text).unwrap().params;
            let template = TEMPLATES
                .iter()
                .find(|(n, _)| *n == script.template)
                .unwrap()
                .1;
            for line in with_parameters(&command, &params).lines() {
                let line = line.trim();
                // The installer's exit code is the result's exit_code, not the process's; the
                // package's schema versions are matched by a loop over $SchemaVersions.
                if line == "exit $installer.ExitCode" || line.starts_with("$schema = @(") {
                    continue;
                }
                assert!(
                    template.contains(line),
                    "{} on {}: the template lacks the plan's line\n{line}",
                    script.template,
                    server.fqdn
                );
            }
        }
    }
}

#[test]
fn the_verify_template_knows_every_stores_databases() {
    let template = TEMPLATES
        .iter()
        .find(|(n, _)| *n == "step/verify")
        .unwrap()
        .1;
    for store in StoreKind::ALL {
        let names: Vec<String> = store
            .databases()
            .iter()
            .map(|d| sfbpatch_plan::ps_quote(d))
            .collect();
        let entry = format!("'{}' = @({})", store.as_str(), names.join(", "));
        assert!(template.contains(&entry), "{entry}");
    }
}

#[test]
fn every_template_shares_the_same_frame() {
    let frame = |name: &str, text: &str| -> (String, String) {
        let start = text.find("$ErrorActionPreference = 'Stop'").unwrap();
        let body = text.find("    & {\n").unwrap() + "    & {\n".len();
        let end = text.rfind("    } *>&1 | ForEach-Object").unwrap();
        (
            text[start..body].replace(name, "NAME"),
            text[end..].to_string(),
        )
    };
    let (first_name, first_text) = TEMPLATES[0];
    let reference = frame(first_name, first_text);
    for (name, text) in TEMPLATES {
        assert_eq!(frame(name, text), reference, "{name}");
        assert_eq!(
            text.matches("ConvertTo-Json").count(),
            1,
            "{name} writes one result"
        );
    }
    assert_eq!(TEMPLATES.len(), 2 * StepId::ALL.len() + 6);
    for id in StepId::ALL {
        for kind in ["step", "probe"] {
            let name = format!("{kind}/{id}");
            assert!(TEMPLATES.iter().any(|(n, _)| *n == name), "{name}");
        }
    }
}
