//! `sfbpatch lab init|show|shell`.

use std::path::Path;

use anyhow::anyhow;
use serde_json::json;
use sfbpatch_engine::{Millis, ProbeVerdict, StepOutcome, TargetError};
use sfbpatch_lab::{Lab, LabError, LabOptions, LabTarget, StepCall};
use sfbpatch_plan::{Action, Installer, Package};
use sfbpatch_remote::{LockRequest, Operation, Request, RequestedStep, ScriptResult, host_exit};

use crate::cli::{DataFormat, LabCommand};
use crate::exit::{CmdResult, Exit, Failure};
use crate::{input, output};

pub fn run(cmd: LabCommand) -> CmdResult {
    match cmd {
        LabCommand::Init {
            dir,
            topology,
            build,
            speed,
            faults,
            operator,
            sfb_components_on,
            variance,
        } => {
            let (_, deployment) = input::topology(&topology)?;
            let build = build
                .parse()
                .map_err(|e: String| Failure::bad_input(anyhow!("--build: {e}")))?;
            if !(speed.is_finite() && speed >= 0.0) {
                return Err(Failure::bad_input(anyhow!(
                    "--speed must be 0 or a positive number of simulated seconds per real second"
                )));
            }
            let faults = match faults {
                Some(path) => {
                    let text = input::read_text(&path, "faults file")?;
                    sfbpatch_lab::parse_faults(&text, &path.display().to_string())
                        .map_err(Failure::bad_input)?
                }
                None => Vec::new(),
            };
            let options = LabOptions {
                build,
                speed,
                operator,
                faults,
                sfb_components: sfb_components_on,
                epoch_unix_ms: sfbpatch_engine::Clock::now(&sfbpatch_engine::SystemClock) as i64,
                variance,
            };
            let lab =
                sfbpatch_lab::init(&dir, &deployment, &options).map_err(Failure::bad_input)?;
            output::note(&format!(
                "created a lab of {} server(s) in {}",
                lab.show().map_err(Failure::internal)?.servers.len(),
                dir.display()
            ));
            Ok(Exit::Success)
        }
        LabCommand::Show { dir, format } => {
            let lab = Lab::open(&dir).map_err(Failure::bad_input)?;
            let snapshot = lab.show().map_err(Failure::internal)?;
            match format {
                DataFormat::Json => output::json(&LabShowJson {
                    schema_version: 1,
                    snapshot: &snapshot,
                })?,
                DataFormat::Text => output::data(&sfbpatch_lab::render_text(&snapshot))?,
            }
            Ok(Exit::Success)
        }
        LabCommand::Shell { lab, host } => shell(&lab, &host),
    }
}

/// The JSON contract of `lab show` (`docs/schema/lab-show.schema.json`): the world's state,
/// times in seconds of the lab's clock since its creation.
#[derive(serde::Serialize)]
struct LabShowJson<'a> {
    schema_version: u32,
    #[serde(flatten)]
    snapshot: &'a sfbpatch_lab::LabSnapshot,
}

/// The variable sshd sets to the command the client sent, when a ForceCommand runs instead.
const SSH_ORIGINAL_COMMAND: &str = "SSH_ORIGINAL_COMMAND";

/// `sfbpatch lab shell`: carry out the one request in `SSH_ORIGINAL_COMMAND` on the lab server
/// `host` and print its result line, as the Windows server would.
fn shell(dir: &Path, host: &str) -> CmdResult {
    let command = match std::env::var(SSH_ORIGINAL_COMMAND) {
        Ok(command) if !command.trim().is_empty() => command,
        Ok(_) | Err(std::env::VarError::NotPresent) => {
            return Err(Failure::bad_input(anyhow!(
                "{SSH_ORIGINAL_COMMAND} is not set or empty: `lab shell` runs as an sshd \
                 ForceCommand and carries out the command the client sent; an interactive \
                 login has nothing to run"
            )));
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(Failure::bad_input(anyhow!(
                "{SSH_ORIGINAL_COMMAND} is not valid UTF-8: not a command sfbpatch sends"
            )));
        }
    };
    let lab = Lab::open(dir).map_err(Failure::bad_input)?;
    if command == super::lab_sftp::SUBSYSTEM_COMMAND {
        // The SSH target uploading a controller's installer: the server's files over SFTP.
        let this = lab
            .server(host)
            .map_err(|e| Failure::bad_input(anyhow!("--host: {e}")))?
            .server
            .fqdn;
        return super::lab_sftp::serve(lab.dir(), &this);
    }
    let this = match lab.server(host) {
        Ok(detail) => detail.server.fqdn,
        Err(e @ LabError::UnknownServer(_)) => {
            return Err(Failure::bad_input(anyhow!("--host: {e}")));
        }
        // The lab's database failed: the lab target reports that as an unreachable server.
        Err(e) => exit_without_result(host_exit::UNREACHABLE, &e),
    };
    let request = sfbpatch_remote::decode_command_line(&command)
        .and_then(|decoded| decoded.request().map(|r| (decoded.template, r)))
        .map_err(|e| Failure::bad_input(anyhow!("refused: {e}")))?;
    let (template, request) = request;
    // Known to a later `server/stop` while it runs: the host's processes, as Windows lists
    // them with their command lines.
    let _running = Running::register(lab.dir(), &command);
    let result = if request.server.as_str().eq_ignore_ascii_case(&this) {
        match carry_out(&lab, &this, &template, &request) {
            Ok(result) => result,
            Err(e @ (TargetError::Refused(_) | TargetError::Fenced { .. })) => {
                return Err(Failure::refused(e));
            }
            Err(e @ TargetError::TimedOut { .. }) => exit_without_result(host_exit::TIMED_OUT, &e),
            Err(e @ TargetError::Unreachable { .. }) => {
                exit_without_result(host_exit::UNREACHABLE, &e)
            }
            Err(e @ TargetError::ReadFailed { .. }) => {
                exit_without_result(host_exit::READ_FAILED, &e)
            }
        }
    } else {
        // What the template itself answers on the wrong computer.
        ScriptResult {
            template,
            exit_code: 1,
            output: format!(
                "ERROR: This script is for {}; this computer is {this}.",
                request.server
            ),
            done: None,
            facts: json!({}),
        }
    };
    output::data(&sfbpatch_remote::result_line(&result))?;
    Ok(Exit::Success)
}

/// One operation on the lab, as the result line its template would write.
fn carry_out(
    lab: &Lab,
    server: &str,
    template: &str,
    request: &Request,
) -> Result<ScriptResult, TargetError> {
    // Behind sshd a controller's installer arrives over SFTP before stage-update runs.
    let target = lab.target().receiving_uploads();
    let outcome = |template: &str, o: StepOutcome, facts: serde_json::Value| ScriptResult {
        template: template.to_string(),
        exit_code: o.exit_code,
        output: sfbpatch_remote::cap_output(&o.output),
        done: None,
        facts,
    };
    let result = match (request.operation, &request.step) {
        (Operation::Reboot, _) => outcome(
            template,
            // The controller's own timeout bounds the session.
            target.reboot_server(server, Millis::MAX)?,
            json!({ "restart": "completed" }),
        ),
        (Operation::Recover, _) => outcome(
            template,
            target.recover_server(server, Millis::MAX)?,
            json!({}),
        ),
        (Operation::Stop, _) => {
            let tail = request.command_tail.as_deref().unwrap_or_default();
            let stopped = Running::stop(lab.dir(), tail);
            ScriptResult {
                template: template.to_string(),
                exit_code: 0,
                output: format!("Stopped {stopped} process tree(s) of the timed-out script"),
                done: None,
                facts: json!({ "stopped": stopped }),
            }
        }
        (Operation::Lock, _) => {
            let lock = request
                .lock
                .as_ref()
                .expect("lock requests carry their lock");
            let (output, facts) = take_lock(&target, server, lock)?;
            ScriptResult {
                template: template.to_string(),
                exit_code: 0,
                output,
                done: None,
                facts,
            }
        }
        (Operation::Unlock, _) => {
            let holder = request
                .unlock_holder
                .as_deref()
                .expect("unlock requests carry their holder");
            let removed = target
                .lock_holder(server)?
                .is_some_and(|held| held.holder == holder);
            target.unlock(server, holder)?;
            ScriptResult {
                template: template.to_string(),
                exit_code: 0,
                output: if removed {
                    format!("Removed the lock of {holder} from {server}")
                } else {
                    format!("{server} holds no lock of {holder}; nothing was removed")
                },
                done: None,
                facts: json!({ "removed": removed }),
            }
        }
        (Operation::Preflight, _) => {
            let facts = target.preflight_server(server)?;
            let presence = |present: bool| if present { "present" } else { "absent" };
            ScriptResult {
                template: template.to_string(),
                exit_code: 0,
                output: format!(
                    "{server}: {} Skype for Business service(s), {} running; W3SVC {}; \
                     Management Shell {}; SQL Server {}; build {}; restart pending: {}",
                    facts.services.len(),
                    facts.services_running,
                    presence(facts.w3svc),
                    presence(facts.management_shell),
                    presence(facts.sql_server),
                    facts
                        .build
                        .map_or_else(|| "none".to_string(), |b| b.to_string()),
                    if facts.reboot_pending {
                        "True"
                    } else {
                        "False"
                    },
                ),
                done: None,
                facts: serde_json::to_value(&facts).expect("facts serialize"),
            }
        }
        (Operation::Execute, Some(step)) => {
            let package = package(lab, request, step);
            let call = step_call(server, step, &package);
            outcome(template, target.execute_step(&call)?, json!({}))
        }
        (Operation::Probe, Some(step)) => {
            let package = package(lab, request, step);
            let probe = target.probe_step(&step_call(server, step, &package))?;
            let done = probe.verdict == ProbeVerdict::Done;
            let mut facts = match serde_json::from_str::<serde_json::Value>(&probe.facts) {
                Ok(facts @ serde_json::Value::Object(_)) => facts,
                _ => json!({ "lab": probe.facts }),
            };
            if probe.verdict == ProbeVerdict::Running {
                facts["running"] = json!(true);
            }
            ScriptResult {
                template: template.to_string(),
                exit_code: 0,
                output: format!(
                    "{}: the step's effect is {}there",
                    step.id,
                    if done { "" } else { "not " }
                ),
                done: Some(done),
                facts,
            }
        }
        (Operation::Execute | Operation::Probe, None) => {
            unreachable!("step and probe requests carry their step")
        }
    };
    Ok(result)
}

/// `server/lock` on the lab: the output and facts the template writes. Another holder's
/// unexpired lock is reported (`taken: false`); a newer generation of the same holder refuses
/// the older controller (`fenced: true`); otherwise the lock is taken.
fn take_lock(
    target: &LabTarget,
    server: &str,
    lock: &LockRequest,
) -> Result<(String, serde_json::Value), TargetError> {
    let fence = sfbpatch_engine::Fence {
        holder: &lock.holder,
        generation: lock.generation,
    };
    Ok(
        match target.lock(server, fence, lock.now_ms, lock.expires_at) {
            Ok(None) => (
                format!(
                    "{server} is locked by {} (generation {}) until {} ms after the Unix epoch",
                    lock.holder, lock.generation, lock.expires_at
                ),
                json!({ "taken": true }),
            ),
            Ok(Some(other)) => (
                format!(
                    "{server} is locked by {} (generation {}) until {} ms after the Unix epoch; \
                     nothing was taken",
                    other.holder, other.generation, other.expires_at
                ),
                json!({
                    "taken": false,
                    "holder": other.holder,
                    "generation": other.generation,
                    "expires_at": other.expires_at,
                }),
            ),
            Err(TargetError::Fenced { current, .. }) => {
                let expires_at = target
                    .lock_holder(server)?
                    .map_or(0, |held| held.expires_at);
                (
                    format!(
                        "{server} is locked by generation {current} of {}, newer than generation \
                         {}; nothing was taken",
                        lock.holder, lock.generation
                    ),
                    json!({
                        "taken": false,
                        "fenced": true,
                        "holder": lock.holder,
                        "generation": current,
                        "expires_at": expires_at,
                    }),
                )
            }
            Err(e) => return Err(e),
        },
    )
}

/// A `lab shell` process carrying out a request: a file `DIR/running/PID` holding its
/// command line, removed when it ends. `server/stop` finds a timed-out script's process there
/// and kills it, as `taskkill /T /F` does on Windows: an operation stopped before its end has
/// no effect.
struct Running(Option<std::path::PathBuf>);

impl Running {
    fn register(dir: &Path, command: &str) -> Running {
        let folder = dir.join("running");
        let file = folder.join(std::process::id().to_string());
        let written =
            std::fs::create_dir_all(&folder).and_then(|()| std::fs::write(&file, command));
        Running(written.ok().map(|()| file))
    }

    /// Kills every other registered process whose command line ends with `tail`; how many.
    fn stop(dir: &Path, tail: &str) -> usize {
        let Ok(entries) = std::fs::read_dir(dir.join("running")) else {
            return 0;
        };
        let own = std::process::id();
        let mut stopped = 0;
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let matches = std::fs::read_to_string(entry.path())
                .is_ok_and(|c| !tail.is_empty() && c.trim_end().ends_with(tail));
            if pid == own || !matches {
                continue;
            }
            if kill(pid) {
                stopped += 1;
            }
            let _ = std::fs::remove_file(entry.path());
        }
        stopped
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(file) = &self.0 {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Kills process `pid` at once (`kill -KILL`, `taskkill /F`); whether it was there to kill.
fn kill(pid: u32) -> bool {
    let mut command = if cfg!(windows) {
        let mut c = std::process::Command::new("taskkill");
        c.args(["/T", "/F", "/PID", &pid.to_string()]);
        c
    } else {
        let mut c = std::process::Command::new("kill");
        c.args(["-KILL", &pid.to_string()]);
        c
    };
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn step_call<'a>(server: &'a str, step: &'a RequestedStep, package: &'a Package) -> StepCall<'a> {
    StepCall {
        server,
        host: server,
        step: step.id,
        action: &step.action,
        package,
        timeout: sfbpatch_engine::policy::retry_rule(step.id).timeout,
        fence: None,
    }
}

/// The package as far as the lab reads it: the build, the installer's SHA-256 and the schema
/// versions, which the `install-update` and `verify` scripts carry. The name is not sent, and
/// the other steps read none of it.
fn package(lab: &Lab, request: &Request, step: &RequestedStep) -> Package {
    let (installer, sha256) = match &step.action {
        Action::StageUpdate { source, sha256, .. } => (source.clone(), Some(sha256.clone())),
        Action::InstallUpdate { path } => (Installer::Path(path.clone()), None),
        _ => (Installer::Path(String::new()), None),
    };
    Package {
        name: String::new(),
        version: request
            .package
            .version
            .unwrap_or_else(|| lab.initial_build()),
        installer,
        sha256: request
            .package
            .sha256
            .clone()
            .or(sha256)
            .unwrap_or_default(),
        schema_versions: request.package.schema_versions.clone(),
        product: None,
    }
}

/// A hung step or a server that does not answer leaves no result line, as on a Windows server
/// whose connection is lost; the status ([`host_exit`]) tells the two apart. These statuses
/// belong to the host protocol and lie outside sfbpatch's own exit codes, hence the direct exit.
fn exit_without_result(status: i32, e: &dyn std::fmt::Display) -> ! {
    eprintln!("error: {e}; no result line");
    std::process::exit(status)
}
