//! `sfbpatch lab shell`: the lab standing in for a Windows server behind sshd. Each test sends
//! the command lines sfbpatch's SSH target sends (rendered here with `sfbpatch_remote`) through
//! SSH_ORIGINAL_COMMAND, and asserts the result lines and the lab's world.

use std::process::Output;

use serde_json::Value;
use sfbpatch_plan::{Installer, Plan, PlanPolicy, PlannedStep, ServerKind, ServerPlan, StepId};
use sfbpatch_remote::{Operation, Script, ScriptResult, parse_result, script_for, script_on};

use crate::common::{Scratch, assert_patched, bin, code, stderr, stdout};

const NEW: &str = "7.0.2046.553";

/// Where the installer is for these tests: a share every lab server reads. (A file on the
/// controller arrives over SFTP, which these direct calls to `lab shell` do not go through;
/// crates/cli/tests/it/ssh.rs sends it through sshd.)
const SHARE: &str = r"\\files.demo.example\updates\SkypeServerUpdateInstaller.exe";

/// The plan sfbpatch makes for the demo, with the installer on the share.
fn demo_plan(s: &Scratch) -> Plan {
    demo_plan_with(s, &[])
}

/// [`demo_plan`] where the SQL Server machines `components` have the Skype for Business
/// components (as `--sfb-components-on`, or a lab made with it).
fn demo_plan_with(s: &Scratch, components: &[&str]) -> Plan {
    let topology = std::fs::read(s.path().join("demo-topology.xml")).unwrap();
    let deployment = sfbpatch_topology::load_bytes(&topology, "demo-topology.xml").unwrap();
    let manifest = std::fs::read_to_string(s.path().join("demo-package.toml")).unwrap();
    let mut package = sfbpatch_plan::parse_manifest(&manifest, "demo-package.toml").unwrap();
    package.installer = Installer::Server(SHARE.to_string());
    let policy = PlanPolicy {
        sfb_components: components.iter().map(|c| c.to_string()).collect(),
        ..PlanPolicy::default()
    };
    sfbpatch_plan::plan(&deployment, &package, &policy).unwrap()
}

/// `lab init`, and the installer put on the lab's share.
fn lab_init(s: &Scratch, dir: &str, faults: Option<&str>) {
    lab_init_with(s, dir, faults, &[]);
}

/// [`lab_init`], then `extra` arguments of `lab init`.
fn lab_init_with(s: &Scratch, dir: &str, faults: Option<&str>, extra: &[&str]) {
    let mut args = vec!["lab", "init", dir, "--topology", "demo-topology.xml"];
    if let Some(f) = faults {
        s.write("faults.toml", f);
        args.extend(["--faults", "faults.toml"]);
    }
    args.extend(extra);
    let o = s.run(&args);
    assert_eq!(code(&o), 0, "lab init: {}", stderr(&o));
    let on_share = sfbpatch_lab::server_file(&s.path().join(dir), "any", SHARE).unwrap();
    std::fs::create_dir_all(on_share.parent().unwrap()).unwrap();
    std::fs::copy(s.path().join("SkypeServerUpdateInstaller.exe"), on_share).unwrap();
}

/// `sfbpatch lab shell --lab lab --host HOST` with SSH_ORIGINAL_COMMAND set to `command`
/// (unset for `None`).
fn shell(s: &Scratch, host: &str, command: Option<&str>) -> Output {
    let mut cmd = bin();
    cmd.current_dir(s.path())
        .args(["lab", "shell", "--lab", "lab", "--host", host]);
    match command {
        Some(c) => cmd.env("SSH_ORIGINAL_COMMAND", c),
        None => cmd.env_remove("SSH_ORIGINAL_COMMAND"),
    };
    cmd.output().expect("sfbpatch runs")
}

fn server<'a>(plan: &'a Plan, fqdn: &str) -> &'a ServerPlan {
    plan.servers
        .iter()
        .find(|s| s.fqdn.as_str() == fqdn)
        .unwrap()
}

fn script(plan: &Plan, fqdn: &str, op: Operation, step: StepId) -> Script {
    let server = server(plan, fqdn);
    script_for(op, server, server.step(step), &plan.package).unwrap()
}

/// Where a planned step runs, and its script bound there, as the SSH target sends it.
fn on_host<'a>(
    plan: &Plan,
    server: &'a ServerPlan,
    step: &'a PlannedStep,
    op: Operation,
) -> (&'a str, Script) {
    let host = step.run_on.as_ref().unwrap_or(&server.fqdn);
    let script = script_on(op, server, step, host, &plan.package).unwrap();
    (host.as_str(), script)
}

/// Runs `script` through `lab shell` on `host`: the process succeeds, prints one line, and
/// that line is the script's result.
fn run(s: &Scratch, host: &str, script: &Script) -> ScriptResult {
    let o = shell(s, host, Some(&script.command_line()));
    assert_eq!(code(&o), 0, "{}: {}", script.template, stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "{}: {out}", script.template);
    assert!(out.is_ascii(), "{out}");
    script.parse_result(&out).unwrap()
}

fn lab_server<'a>(lab: &'a Value, fqdn: &str) -> &'a Value {
    lab["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["fqdn"] == fqdn)
        .unwrap()
}

fn assert_stores_current(lab: &Value, sql_server: &str) {
    let instances: Vec<&Value> = lab["sql_instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["sql_server_fqdn"] == sql_server)
        .collect();
    assert!(!instances.is_empty(), "{sql_server}");
    for inst in instances {
        for st in inst["stores"].as_array().unwrap() {
            assert_eq!(st["version"], st["expected_version"], "{sql_server}: {st}");
            assert!(st["version"].as_str().unwrap().ends_with(".553"), "{st}");
        }
    }
}

/// Steps whose probe never says done: they change nothing, or are always done again.
fn never_done(id: StepId) -> bool {
    matches!(
        id,
        StepId::CheckAdminRole
            | StepId::CheckFabricState
            | StepId::CloseManagementShells
            | StepId::Verify
    )
}

/// A whole Enterprise pool driven step by step through `lab shell`, each step probed before
/// and after: its two Front End servers behind failover, then its back end, which has the
/// Core Components and so runs the seed's steps that apply to it, the database update
/// included.
#[test]
fn drives_a_pool_through_every_step_with_probes() {
    const POOL: &str = "fepool2.berlin.demo.example";
    const SQL: &str = "sqlbe2.berlin.demo.example";
    let s = Scratch::new();
    lab_init_with(&s, "lab", None, &["--sfb-components-on", SQL]);
    let plan = demo_plan_with(&s, &[SQL]);
    let before = s.lab_json("lab");
    let servers: Vec<&ServerPlan> = plan
        .servers
        .iter()
        .filter(|sv| sv.pool.as_str() == POOL)
        .collect();
    assert_eq!(
        servers
            .iter()
            .map(|sv| sv.fqdn.as_str())
            .collect::<Vec<_>>(),
        ["fe21.berlin.demo.example", "fe22.berlin.demo.example", SQL]
    );
    let mut ran = Vec::new();
    for server in &servers {
        for step in server.steps.iter().filter(|st| st.not_applicable.is_none()) {
            let (host, probe_script) = on_host(&plan, server, step, Operation::Probe);
            let probe = run(&s, host, &probe_script);
            assert_eq!(probe.template, format!("probe/{}", step.id));
            assert_eq!(probe.exit_code, 0);
            // Invoke-CsComputerFailOver stops and disables the Front End server's services:
            // after it, both stops find them stopped already (the installer cannot restart
            // disabled services).
            let stopped_by_failover =
                matches!(step.id, StepId::StopCsServices | StepId::StopCsServicesGac)
                    && server.kind == ServerKind::FrontEnd;
            assert_eq!(
                probe.done,
                Some(stopped_by_failover),
                "{} on {host} before it ran",
                step.id
            );
            assert!(probe.facts.is_object() && probe.facts["installed_build"].is_string());

            let (_, step_script) = on_host(&plan, server, step, Operation::Execute);
            let result = run(&s, host, &step_script);
            assert_eq!(result.template, format!("step/{}", step.id));
            assert_eq!(
                result.exit_code, 0,
                "{} on {host}: {}",
                step.id, result.output
            );
            assert_eq!(result.done, None);
            assert!(!result.output.is_empty(), "{}", step.id);

            let probe = run(&s, host, &probe_script);
            assert_eq!(
                probe.done,
                Some(!never_done(step.id)),
                "{} on {host} after it ran",
                step.id
            );
            match step.id {
                StepId::Failover => assert_eq!(probe.facts["failed_over"], true),
                StepId::Failback => assert_eq!(probe.facts["failed_over"], false),
                StepId::InstallUpdate => {
                    assert!(result.output.contains(NEW), "{}", result.output);
                    assert_eq!(probe.facts["installed_build"], NEW);
                }
                StepId::UpdateDatabases => {
                    assert!(
                        result.output.starts_with(
                            "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn \
                             sqlbe2.berlin.demo.example:"
                        ),
                        "{}",
                        result.output
                    );
                    assert!(!result.output.contains("WARNING"), "{}", result.output);
                    assert_eq!(probe.facts["databases_behind"], 0);
                }
                StepId::Verify if server.fqdn.as_str() == SQL => assert!(
                    result.output.contains("InstalledVersion = ExpectedVersion"),
                    "{}",
                    result.output
                ),
                _ => {}
            }
            ran.push(format!("{host} {}", step.id));
        }
    }
    // The Front End procedure on each Front End server, then the seed's steps that apply to a
    // SQL Server machine with the components: no service, IIS or fabric step there.
    let front_end = |fe: &str| -> Vec<String> {
        [
            "check-admin-role",
            "stage-update",
            "check-fabric-state",
            "failover",
            "stop-cs-services",
            "stop-w3svc",
            "close-management-shells",
            "install-update",
            "stop-cs-services-gac",
            "start-w3svc",
            "failback",
            "verify",
        ]
        .iter()
        .map(|id| format!("{fe} {id}"))
        .collect()
    };
    let mut expected = front_end("fe21.berlin.demo.example");
    expected.extend(front_end("fe22.berlin.demo.example"));
    expected.extend(
        [
            "check-admin-role",
            "stage-update",
            "close-management-shells",
            "install-update",
            "update-databases",
            "verify",
        ]
        .iter()
        .map(|id| format!("{SQL} {id}")),
    );
    assert_eq!(ran, expected);

    let lab = s.lab_json("lab");
    for server in &servers {
        assert_patched(&lab, server.fqdn.as_str());
    }
    assert_stores_current(&lab, SQL);
    let pool = lab["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["fqdn"] == POOL)
        .unwrap();
    assert_eq!(pool["mode"], "normal");
    assert_eq!(
        pool["outage_intervals"].as_array().unwrap().len(),
        1,
        "{pool}"
    );
    assert!(pool["resiliency_intervals"].as_array().unwrap().is_empty());
    // The other pools' servers are untouched.
    assert_eq!(
        lab_server(&lab, "sqlbe1.berlin.demo.example"),
        lab_server(&before, "sqlbe1.berlin.demo.example")
    );
    assert_eq!(
        lab_server(&lab, "fe11.berlin.demo.example"),
        lab_server(&before, "fe11.berlin.demo.example")
    );
}

/// Every server of the demo patched through `lab shell`, in plan order, ends in the world an
/// in-process `apply` leaves.
#[test]
fn the_whole_demo_through_lab_shell_matches_apply() {
    let s = Scratch::new();
    lab_init(&s, "lab", None);
    lab_init(&s, "lab-apply", None);
    let plan = demo_plan(&s);
    // As the engine sends them: the steps that apply, each on the machine it runs on.
    for server in &plan.servers {
        for step in server.steps.iter().filter(|st| st.not_applicable.is_none()) {
            let (host, script) = on_host(&plan, server, step, Operation::Execute);
            let result = run(&s, host, &script);
            assert_eq!(
                result.exit_code, 0,
                "{} of {} on {host}: {}",
                step.id, server.fqdn, result.output
            );
        }
    }
    let o = s.run(&[
        "apply",
        "demo-topology.xml",
        "--package",
        "demo-package.toml",
        "--lab",
        "lab-apply",
        "--state",
        "state.db",
        "--yes",
    ]);
    assert_eq!(code(&o), 0, "apply: {}", stderr(&o));

    let shelled = s.lab_json("lab");
    let applied = s.lab_json("lab-apply");
    // The same machines; when each was out of service depends on the order of the calls
    // (one at a time through lab shell, side by side in apply).
    assert_eq!(
        crate::common::machines(&shelled),
        crate::common::machines(&applied)
    );
    assert_eq!(shelled["sql_instances"], applied["sql_instances"]);
    for server in &plan.servers {
        assert_patched(&shelled, server.fqdn.as_str());
    }
    for pool in shelled["pools"].as_array().unwrap() {
        assert_eq!(pool["mode"], "normal", "{pool}");
        assert!(pool["resiliency_intervals"].as_array().unwrap().is_empty());
    }
}

#[test]
fn reboot_and_recover() {
    let s = Scratch::new();
    lab_init(&s, "lab", None);
    let plan = demo_plan(&s);
    let fqdn = "se1.dublin.demo.example";
    let stop = run(
        &s,
        fqdn,
        &script(&plan, fqdn, Operation::Execute, StepId::StopW3svc),
    );
    assert_eq!(stop.exit_code, 0);

    let recover = run(
        &s,
        fqdn,
        &script(&plan, fqdn, Operation::Recover, StepId::StopW3svc),
    );
    assert_eq!(recover.template, "server/recover");
    assert_eq!(recover.exit_code, 0, "{}", recover.output);
    assert!(
        recover.output.contains("back in service"),
        "{}",
        recover.output
    );

    let reboot = run(
        &s,
        fqdn,
        &script(&plan, fqdn, Operation::Reboot, StepId::Verify),
    );
    assert_eq!(reboot.template, "server/reboot");
    assert_eq!(reboot.exit_code, 0);
    assert_eq!(reboot.facts["restart"], "completed");
    assert_eq!(lab_server(&s.lab_json("lab"), fqdn)["w3svc"], "running");
}

#[test]
fn a_failing_step_is_a_result_not_a_failure_of_the_host() {
    let s = Scratch::new();
    let fqdn = "se2.dublin.demo.example";
    lab_init(
        &s,
        "lab",
        Some(&format!(
            "[[fault]]\nserver = \"{fqdn}\"\nstep = \"stop-cs-services\"\nexit_code = 1603\n"
        )),
    );
    let plan = demo_plan(&s);
    let result = run(
        &s,
        fqdn,
        &script(&plan, fqdn, Operation::Execute, StepId::StopCsServices),
    );
    assert_eq!(result.exit_code, 1603, "{}", result.output);
    // Installing before the services are stopped: the lab's rule holds through the shell.
    let stage = run(
        &s,
        fqdn,
        &script(&plan, fqdn, Operation::Execute, StepId::StageUpdate),
    );
    assert_eq!(stage.exit_code, 0, "{}", stage.output);
    let install = run(
        &s,
        fqdn,
        &script(&plan, fqdn, Operation::Execute, StepId::InstallUpdate),
    );
    assert_eq!(install.exit_code, 1);
    assert!(
        install.output.starts_with("files in use: RTCSRV"),
        "{}",
        install.output
    );
}

#[test]
fn an_unreachable_or_hung_server_leaves_no_result() {
    let s = Scratch::new();
    let fqdn = "se2.dublin.demo.example";
    let hangs = "se1.dublin.demo.example";
    lab_init(
        &s,
        "lab",
        Some(&format!(
            "[[fault]]\nserver = \"{fqdn}\"\nstep = \"stop-w3svc\"\nunreachable_minutes = 5\n\n\
             [[fault]]\nserver = \"{hangs}\"\nstep = \"stop-cs-services\"\nhang = true\n"
        )),
    );
    let plan = demo_plan(&s);

    let o = shell(
        &s,
        fqdn,
        Some(&script(&plan, fqdn, Operation::Execute, StepId::StopW3svc).command_line()),
    );
    assert_eq!(
        code(&o),
        sfbpatch_remote::host_exit::UNREACHABLE,
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).contains("is unreachable"), "{}", stderr(&o));
    // The probe cannot reach it either, until the clock passes the fault's end.
    let o = shell(
        &s,
        fqdn,
        Some(&script(&plan, fqdn, Operation::Probe, StepId::StopW3svc).command_line()),
    );
    assert_eq!(code(&o), sfbpatch_remote::host_exit::UNREACHABLE);

    let o = shell(
        &s,
        hangs,
        Some(&script(&plan, hangs, Operation::Execute, StepId::StopCsServices).command_line()),
    );
    assert_eq!(
        code(&o),
        sfbpatch_remote::host_exit::TIMED_OUT,
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).contains("did not finish"), "{}", stderr(&o));
    let lab = s.lab_json("lab");
    assert!(
        lab_server(&lab, hangs)["services"]
            .as_array()
            .unwrap()
            .iter()
            .all(|svc| svc["state"] == "running"),
        "a hung step changes nothing"
    );
}

/// The lab's world is the same before and after a refused request.
fn assert_refused(s: &Scratch, host: &str, command: Option<&str>, message: &str) {
    let before = s.lab_json("lab");
    let o = shell(s, host, command);
    assert_eq!(code(&o), 2, "{command:?}: {}", stderr(&o));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    assert!(stderr(&o).contains(message), "{command:?}: {}", stderr(&o));
    assert_eq!(s.lab_json("lab"), before);
}

fn encoded(text: &str) -> String {
    Script {
        template: String::new(),
        text: text.to_string(),
    }
    .command_line()
}

#[test]
fn unknown_scripts_are_refused() {
    let s = Scratch::new();
    lab_init(&s, "lab", None);
    let fqdn = "sqlbe1.berlin.demo.example";
    assert_refused(
        &s,
        fqdn,
        Some(&encoded("Remove-Item C:\\ -Recurse -Force")),
        "unknown script",
    );
    assert_refused(&s, fqdn, Some(&encoded("Remove-Item C:\\")), "[SFB-R006]");
    assert_refused(&s, fqdn, Some("rm -rf /"), "not an sfbpatch command line");
    assert_refused(
        &s,
        fqdn,
        Some("powershell.exe -NoProfile -NonInteractive -Command Stop-Computer"),
        "[SFB-R004]",
    );
}

#[test]
fn a_tampered_template_is_refused() {
    let s = Scratch::new();
    lab_init(&s, "lab", None);
    let plan = demo_plan(&s);
    let fqdn = "se1.dublin.demo.example";
    let real = script(&plan, fqdn, Operation::Execute, StepId::StopW3svc);
    let tampered = real.text.replacen(
        "net stop w3svc",
        "net stop w3svc\n        Stop-Computer -Force",
        1,
    );
    assert_ne!(tampered, real.text);
    assert_refused(&s, fqdn, Some(&encoded(&tampered)), "[SFB-R007]");
    let injected = real.text.replacen(
        &format!("-Server '{fqdn}'"),
        &format!("-Server '{fqdn}'; Stop-Computer -Force"),
        1,
    );
    assert_refused(&s, fqdn, Some(&encoded(&injected)), "[SFB-R008]");
    // The untouched script still runs.
    assert_eq!(run(&s, fqdn, &real).exit_code, 0);
}

#[test]
fn a_missing_command_is_refused() {
    let s = Scratch::new();
    lab_init(&s, "lab", None);
    assert_refused(
        &s,
        "sqlbe1.berlin.demo.example",
        None,
        "SSH_ORIGINAL_COMMAND is not set",
    );
    assert_refused(
        &s,
        "sqlbe1.berlin.demo.example",
        Some("  "),
        "SSH_ORIGINAL_COMMAND",
    );
}

#[test]
fn a_host_not_in_the_lab_is_refused() {
    let s = Scratch::new();
    lab_init(&s, "lab", None);
    let plan = demo_plan(&s);
    let command = script(
        &plan,
        "sqlbe1.berlin.demo.example",
        Operation::Execute,
        StepId::StopW3svc,
    )
    .command_line();
    assert_refused(&s, "fe01.berlin.demo.example", Some(&command), "--host");
    assert_refused(&s, "fe01.berlin.demo.example", Some(&command), "[SFB-L009]");

    let o = bin()
        .current_dir(s.path())
        .args([
            "lab",
            "shell",
            "--lab",
            "nolab",
            "--host",
            "sqlbe1.berlin.demo.example",
        ])
        .env("SSH_ORIGINAL_COMMAND", &command)
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("[SFB-L003]"), "{}", stderr(&o));
}

#[test]
fn a_script_for_another_server_fails_there_as_on_windows() {
    let s = Scratch::new();
    lab_init(&s, "lab", None);
    let plan = demo_plan(&s);
    let script = script(
        &plan,
        "sqlbe1.berlin.demo.example",
        Operation::Execute,
        StepId::StopW3svc,
    );
    let before = s.lab_json("lab");
    let result = run(&s, "sqlbe2.berlin.demo.example", &script);
    assert_eq!(result.exit_code, 1);
    assert_eq!(
        result.output,
        "ERROR: This script is for sqlbe1.berlin.demo.example; this computer is sqlbe2.berlin.demo.example."
    );
    assert_eq!(s.lab_json("lab"), before);
}

#[test]
fn a_result_line_reads_back() {
    let s = Scratch::new();
    lab_init(&s, "lab", None);
    let plan = demo_plan(&s);
    let fqdn = "sqlag-n1.dublin.demo.example";
    let o = shell(
        &s,
        fqdn,
        Some(&script(&plan, fqdn, Operation::Probe, StepId::UpdateDatabases).command_line()),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let line = stdout(&o);
    let result = parse_result(&line).unwrap();
    // The first AlwaysOn node leaves the databases to the last one: its probe is done.
    assert_eq!(result.done, Some(true));
    assert_eq!(
        line.trim_end(),
        sfbpatch_remote::result_line(&result),
        "the line is what result_line writes"
    );
    let raw: Value = serde_json::from_str(&line).unwrap();
    let keys: Vec<&str> = raw
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 5);
    assert!(line.starts_with(r#"{"template":"probe/update-databases","exit_code":0,"output":"#));
}

/// Behind sshd a file on the controller must have arrived over SFTP before `stage-update`: the
/// lab server does not reach into the controller's disk.
#[test]
fn a_controller_file_that_was_not_uploaded_is_not_staged() {
    let s = Scratch::new();
    lab_init(&s, "lab", None);
    let mut plan = demo_plan(&s);
    let local = s.path().join("SkypeServerUpdateInstaller.exe");
    plan.package.installer = Installer::Path(local.display().to_string());
    for server in &mut plan.servers {
        for step in &mut server.steps {
            if let sfbpatch_plan::Action::StageUpdate { source, .. } = &mut step.action {
                *source = plan.package.installer.clone();
            }
        }
    }
    let fqdn = "se1.dublin.demo.example";
    let stage = run(
        &s,
        fqdn,
        &script(&plan, fqdn, Operation::Execute, StepId::StageUpdate),
    );
    assert_eq!(stage.exit_code, 1, "{}", stage.output);
    assert!(
        stage.output.contains(
            r"C:\ProgramData\sfbpatch\staging\7.0.2046.553\SkypeServerUpdateInstaller.exe was not uploaded to the server"
        ),
        "{}",
        stage.output
    );
}

/// A step sfbpatch gave up waiting for is stopped on the host by `server/stop` (what
/// `taskkill /T /F` does for the timed-out script's process tree on Windows): stopped before
/// its end, it has no effect; a step of another server is left running.
#[test]
fn server_stop_ends_the_timed_out_script_and_only_it() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let s = Scratch::new();
    let se1 = "se1.dublin.demo.example";
    // stop-w3svc takes 100 simulated minutes: 10 s at speed 600.
    lab_init_with(
        &s,
        "lab",
        Some(&format!(
            "[[fault]]\nserver = \"{se1}\"\nstep = \"stop-w3svc\"\nduration_minutes = 100\n"
        )),
        &["--speed", "600"],
    );
    let plan = demo_plan(&s);
    let slow = script(&plan, se1, Operation::Execute, StepId::StopW3svc);
    let mut running = bin()
        .current_dir(s.path())
        .args(["lab", "shell", "--lab", "lab", "--host", se1])
        .env("SSH_ORIGINAL_COMMAND", slow.command_line())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // It has begun (registered) before it is stopped.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(s.path().join("lab/running")).map_or(0, |d| d.count()) == 0 {
        assert!(Instant::now() < deadline, "the step never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Another server's stop names nothing of this one.
    let other = sfbpatch_remote::stop_script(
        &server(&plan, "se2.dublin.demo.example").fqdn,
        &script(
            &plan,
            "se2.dublin.demo.example",
            Operation::Execute,
            StepId::StopW3svc,
        )
        .command_line(),
    )
    .unwrap();
    let r = run(&s, "se2.dublin.demo.example", &other);
    assert_eq!(r.facts["stopped"], 0);
    assert!(running.try_wait().unwrap().is_none(), "still running");

    let stop =
        sfbpatch_remote::stop_script(&server(&plan, se1).fqdn, &slow.command_line()).unwrap();
    let r = run(&s, se1, &stop);
    assert_eq!(r.exit_code, 0);
    assert_eq!(r.facts["stopped"], 1, "{}", r.output);
    assert_eq!(
        r.output,
        "Stopped 1 process tree(s) of the timed-out script"
    );
    let status = running.wait().unwrap();
    assert!(!status.success(), "killed: {status:?}");
    // Past the step's 10 s: W3SVC was never stopped, and nothing is registered any more.
    std::thread::sleep(Duration::from_millis(500));
    let lab = s.lab_json("lab");
    assert_eq!(lab_server(&lab, se1)["w3svc"], "running");
    assert_eq!(
        std::fs::read_dir(s.path().join("lab/running"))
            .unwrap()
            .count(),
        0
    );
}
