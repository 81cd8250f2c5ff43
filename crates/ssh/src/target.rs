//! [`SshTarget`]: the engine's [`Target`] over SSH.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::client;
use sfbpatch_engine::{
    Fence, MachineFacts, Millis, Probe, ProbeVerdict, ServerLock, StepOutcome, StepRequest, Target,
    TargetError,
};
use sfbpatch_plan::{Action, Installer, ServerPlan, StepId};

use crate::config::{Endpoint, Identity};
use crate::error::SshError;
use crate::hostkey::HostKeys;
use crate::pool::Pool;
use crate::remote::{self, Operation, Script, ScriptResult, host_exit};
use crate::session::{self, Connection, Connector, ExecError, Finished, LoadedKey};
use crate::upload::UploadError;

/// Tuning of the SSH target. The defaults suit real servers.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// Connections open at once, at most (one per server).
    pub max_connections: usize,
    /// When the pool is full, an idle connection is closed for another server only after it
    /// has been idle this long.
    pub idle_grace: Duration,
    /// Pin the host key of a server that has none pinned or configured, instead of refusing.
    pub accept_new_host_keys: bool,
    /// How long to wait for a TCP connection and an SSH session.
    pub connect_timeout: Duration,
    /// The most of each stream (stdout, stderr) kept per command; the end is kept.
    pub output_cap: usize,
    /// Silence after which the client sends a keepalive; three unanswered ones drop the
    /// connection (a host that vanished without closing it).
    pub keepalive_interval: Duration,
    /// How long a server may take to come back after a restart.
    pub reboot_timeout: Duration,
    /// How often to try to reach a restarting server.
    pub reboot_poll: Duration,
    /// The ssh-agent to use for servers without an identity file: its socket (Unix) or pipe
    /// (Windows). Default: `SSH_AUTH_SOCK`; on Windows, OpenSSH's agent pipe.
    pub agent: Option<PathBuf>,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            max_connections: 10,
            idle_grace: Duration::from_millis(500),
            accept_new_host_keys: false,
            connect_timeout: Duration::from_secs(20),
            output_cap: 1 << 20,
            keepalive_interval: Duration::from_secs(15),
            reboot_timeout: Duration::from_secs(30 * 60),
            reboot_poll: Duration::from_secs(10),
            agent: None,
        }
    }
}

/// Runs every step, probe, reboot and recovery as the remote protocol's PowerShell over SSH.
/// `Send + Sync`: calls for different servers may run at the same time from several threads;
/// each server's connection is shared by its calls.
pub struct SshTarget {
    inner: Arc<Inner>,
    // Dropped last, after the connections it drives.
    runtime: tokio::runtime::Runtime,
}

struct Inner {
    endpoints: HashMap<String, Endpoint>,
    keys: HashMap<PathBuf, LoadedKey>,
    connector: Connector,
    pool: Pool<Connection>,
    options: SshOptions,
}

/// Why a command gave no result.
enum RunError {
    /// Nothing ran (the connection could not be made or refused us).
    Ssh(SshError),
    /// The connection went away while the command ran.
    Lost {
        address: String,
        reason: String,
    },
    TimedOut,
    Refused(String),
}

impl SshTarget {
    /// A target for `endpoints`. Identity files are read (and refused when group or others
    /// can read them) and ssh-agent is looked for now, so that bad input shows before any
    /// server is touched. `host_keys` is where pins are read and, with
    /// [`SshOptions::accept_new_host_keys`], written.
    pub fn new(
        endpoints: Vec<Endpoint>,
        host_keys: Box<dyn HostKeys>,
        options: SshOptions,
    ) -> Result<SshTarget, SshError> {
        let agent = options.agent.clone().or_else(default_agent);
        let mut keys = HashMap::new();
        for ep in &endpoints {
            match &ep.identity {
                Identity::File(path) => {
                    if !keys.contains_key(path) {
                        keys.insert(path.clone(), session::load_key(path)?);
                    }
                }
                Identity::Agent if agent.is_none() => {
                    return Err(SshError::Agent {
                        server: ep.server.clone(),
                        reason: "no identity_file is set for it and no ssh-agent is running \
                                 (SSH_AUTH_SOCK is not set)"
                            .into(),
                    });
                }
                Identity::Agent => {}
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sfbpatch-ssh")
            .enable_all()
            .build()
            .map_err(|e| SshError::Internal(format!("cannot start the I/O runtime: {e}")))?;
        let config = client::Config {
            keepalive_interval: Some(options.keepalive_interval),
            keepalive_max: 3,
            inactivity_timeout: None,
            nodelay: true,
            ..client::Config::default()
        };
        let connector = Connector {
            config: Arc::new(config),
            connect_timeout: options.connect_timeout,
            accept_new_host_keys: options.accept_new_host_keys,
            host_keys: Arc::new(Mutex::new(host_keys)),
            agent,
        };
        let inner = Inner {
            endpoints: endpoints
                .into_iter()
                .map(|ep| (ep.server.to_ascii_lowercase(), ep))
                .collect(),
            keys,
            connector,
            pool: Pool::new(options.max_connections, options.idle_grace),
            options,
        };
        Ok(SshTarget {
            inner: Arc::new(inner),
            runtime,
        })
    }

    /// How each server is reached.
    pub fn endpoint(&self, server: &str) -> Option<&Endpoint> {
        self.inner.endpoints.get(&server.to_ascii_lowercase())
    }

    /// The accounts used on the servers, each once, sorted.
    pub fn users(&self) -> Vec<String> {
        let mut users: Vec<String> = self
            .inner
            .endpoints
            .values()
            .map(|ep| ep.user.clone())
            .collect();
        users.sort();
        users.dedup();
        users
    }

    /// Connect to every server (as many at once as the pool allows), checking its host key
    /// and authenticating, without running anything. The connections stay in the pool.
    pub fn check(&self) -> Vec<(String, Result<(), SshError>)> {
        let mut servers: Vec<String> = self
            .inner
            .endpoints
            .values()
            .map(|ep| ep.server.clone())
            .collect();
        servers.sort();
        self.runtime.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for (i, server) in servers.iter().enumerate() {
                let inner = self.inner.clone();
                let server = server.clone();
                tasks.spawn(async move { (i, inner.connect_only(&server).await) });
            }
            let mut results: Vec<Option<Result<(), SshError>>> = vec![None; servers.len()];
            while let Some(joined) = tasks.join_next().await {
                match joined {
                    Ok((i, r)) => results[i] = Some(r),
                    Err(e) => {
                        return servers
                            .iter()
                            .map(|s| (s.clone(), Err(SshError::Internal(e.to_string()))))
                            .collect();
                    }
                }
            }
            servers
                .iter()
                .cloned()
                .zip(results.into_iter().map(|r| r.expect("every task answered")))
                .collect()
        })
    }

    /// Connections opened since the target was made (for measurements).
    pub fn connections_opened(&self) -> usize {
        self.inner.pool.opened()
    }

    /// Connections open now.
    pub fn connections_open(&self) -> usize {
        self.inner.pool.open()
    }

    /// The script of `op` for `req`: a step or probe is bound to where the step runs
    /// (`req.host`), an operation on the whole server to the server.
    fn script(&self, op: Operation, req: &StepRequest<'_>) -> Result<Script, TargetError> {
        remote::script_on(op, req.server, req.step, req.host, req.package).map_err(|e| {
            TargetError::Refused(format!(
                "cannot build the script for {} on {}: {e}",
                req.step.id, req.host
            ))
        })
    }

    /// Run `script` for `req` where it is bound (see [`Self::script`]) and read its result
    /// line.
    fn run(
        &self,
        script: &Script,
        req: &StepRequest<'_>,
        timeout: Duration,
    ) -> Result<ScriptResult, TargetError> {
        let server = if script.template.starts_with("server/") {
            req.server.fqdn.as_str()
        } else {
            req.host.as_str()
        };
        let command = script.command_line();
        // After `verify` (the last step) or a recovery, the server's procedure is over.
        let last = script.template == format!("step/{}", StepId::Verify)
            || script.template.starts_with("server/recover");
        tracing::debug!(
            server,
            template = %script.template,
            step = %req.step.id,
            for_server = %req.server.fqdn,
            timeout_s = timeout.as_secs(),
            "exec"
        );
        let started = Instant::now();
        let ran = self
            .runtime
            .block_on(self.inner.run(server, &command, timeout, last));
        log_finished(server, &script.template, started, &ran);
        if matches!(ran, Err(RunError::TimedOut)) {
            self.stop_timed_out(server, &command);
        }
        let finished = ran.map_err(|e| target_error(e, server, req.step.id, timeout))?;
        let result = read_result(server, req.step.id, script, &finished, timeout);
        log_result(server, &script.template, &result);
        result
    }

    /// sshd leaves an exec session's process running when the client gives up on it: stop the
    /// timed-out script and its process tree on the server (`server/stop`), so that it does
    /// not carry on unseen. Best effort: the probe that follows decides what happened.
    fn stop_timed_out(&self, server: &str, command: &str) {
        let Ok(fqdn) = sfbpatch_topology::Fqdn::parse(server) else {
            return;
        };
        let Ok(stop) = remote::stop_script(&fqdn, command) else {
            return;
        };
        tracing::info!(
            server,
            template = %stop.template,
            timeout_s = STOP_TIMEOUT.as_secs(),
            "the command timed out: stopping it and its process tree on the server"
        );
        let started = Instant::now();
        let ran = self.runtime.block_on(self.inner.run(
            server,
            &stop.command_line(),
            STOP_TIMEOUT,
            false,
        ));
        log_finished(server, &stop.template, started, &ran);
    }
}

/// How long stopping a timed-out script may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

impl SshTarget {
    /// Run a script on the whole server that reads or keeps something small (`server/preflight`,
    /// `server/lock`, `server/unlock`), within the pre-flight's timeout, and read its result:
    /// a script that failed (a non-zero exit code) is a refusal. `what` names it in messages;
    /// `last`: the server's procedure ends with it.
    fn server_call(
        &self,
        fqdn: &str,
        script: &Script,
        what: &str,
        last: bool,
    ) -> Result<ScriptResult, TargetError> {
        let timeout = self.inner.options.connect_timeout * 3;
        tracing::debug!(
            server = fqdn,
            template = %script.template,
            timeout_s = timeout.as_secs(),
            "exec"
        );
        let started = Instant::now();
        let ran =
            self.runtime
                .block_on(self.inner.run(fqdn, &script.command_line(), timeout, last));
        log_finished(fqdn, &script.template, started, &ran);
        let finished = ran.map_err(|e| target_error(e, fqdn, what, timeout))?;
        let result = read_result(fqdn, what, script, &finished, timeout);
        log_result(fqdn, &script.template, &result);
        let result = result?;
        if result.exit_code != 0 {
            return Err(TargetError::Refused(format!(
                "server {fqdn}: {what} failed (exit code {}): {}",
                result.exit_code,
                last_lines(&result.output)
            )));
        }
        Ok(result)
    }
}

/// What `server/lock` answered: taken (`None`), another holder's lock (`Some`), or a newer
/// generation of the same holder ([`TargetError::Fenced`]).
fn read_lock(
    fqdn: &str,
    fence: Fence<'_>,
    facts: &serde_json::Value,
) -> Result<Option<ServerLock>, TargetError> {
    let unreadable = |why: &str| {
        TargetError::Refused(format!(
            "server {fqdn}: the lock script answered facts sfbpatch cannot read ({why}): {facts}"
        ))
    };
    // A number as JSON writes it, or as text.
    let number = |name: &str| -> Result<u64, TargetError> {
        let value = &facts[name];
        value
            .as_u64()
            .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| unreadable(&format!("no number '{name}'")))
    };
    match facts["taken"].as_bool() {
        Some(true) => Ok(None),
        Some(false) if facts["fenced"].as_bool() == Some(true) => Err(TargetError::Fenced {
            server: fqdn.to_string(),
            held: fence.generation,
            current: number("generation")?,
        }),
        Some(false) => Ok(Some(ServerLock {
            holder: facts["holder"]
                .as_str()
                .ok_or_else(|| unreadable("no text 'holder'"))?
                .to_string(),
            generation: number("generation")?,
            expires_at: number("expires_at")?,
        })),
        None => Err(unreadable("no true or false 'taken'")),
    }
}

impl Inner {
    fn endpoint(&self, server: &str) -> Result<&Endpoint, SshError> {
        self.endpoints
            .get(&server.to_ascii_lowercase())
            .ok_or_else(|| SshError::UnknownServer(server.to_string()))
    }

    async fn lease(&self, ep: &Endpoint) -> Result<crate::pool::Lease<Connection>, SshError> {
        let key = match &ep.identity {
            Identity::File(path) => self.keys.get(path),
            Identity::Agent => None,
        };
        self.pool
            .acquire(&ep.server, || {
                tracing::debug!(server = %ep.server, "opening a connection (none open to reuse)");
                self.connector.connect(ep, key)
            })
            .await
    }

    /// Connect (checking the host key and authenticating) and run nothing. The connection
    /// stays for the server's first step, unless another server needs its slot.
    async fn connect_only(&self, server: &str) -> Result<(), SshError> {
        let ep = self.endpoint(server)?;
        self.lease(ep).await.map(crate::pool::Lease::retire)
    }

    /// Run `command` on `server`. `last`: the server's procedure ends with it (its
    /// connection may go to another server at once).
    async fn run(
        &self,
        server: &str,
        command: &str,
        timeout: Duration,
        last: bool,
    ) -> Result<Finished, RunError> {
        let ep = self.endpoint(server).map_err(RunError::Ssh)?;
        let cap = self.options.output_cap;
        let mut tries = 0;
        loop {
            tries += 1;
            let conn = self.lease(ep).await.map_err(RunError::Ssh)?;
            match conn.exec(command, timeout, cap).await {
                Ok(finished) => {
                    if last {
                        conn.retire();
                    }
                    return Ok(finished);
                }
                // Nothing ran: a pooled connection that died while idle. Once more, anew.
                Err(ExecError::NotStarted(reason)) => {
                    tracing::info!(
                        server = %ep.server,
                        reason = %reason,
                        attempt = tries,
                        "no channel on the connection, nothing ran: reconnecting"
                    );
                    self.pool.discard(&ep.server, &conn).await;
                    if tries >= 2 {
                        return Err(RunError::Ssh(SshError::Unreachable {
                            server: ep.server.clone(),
                            address: ep.address(),
                            reason,
                        }));
                    }
                }
                Err(ExecError::Lost(reason)) => {
                    tracing::info!(
                        server = %ep.server,
                        reason = %reason,
                        "the connection was lost while the command ran; the next call reconnects"
                    );
                    self.pool.discard(&ep.server, &conn).await;
                    return Err(RunError::Lost {
                        address: ep.address(),
                        reason,
                    });
                }
                Err(ExecError::TimedOut) => return Err(RunError::TimedOut),
                Err(ExecError::Refused(reason)) => return Err(RunError::Refused(reason)),
            }
        }
    }
}

/// The log line of a command that ended (or did not): how, and how long it took.
fn log_finished(server: &str, template: &str, started: Instant, ran: &Result<Finished, RunError>) {
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match ran {
        Ok(f) => tracing::debug!(
            server,
            template,
            exit_status = ?f.exit_status,
            elapsed_ms,
            stdout_bytes = f.stdout.text().len() as u64 + f.stdout.dropped(),
            stderr_bytes = f.stderr.text().len() as u64 + f.stderr.dropped(),
            "exec finished"
        ),
        Err(RunError::Ssh(e)) => {
            tracing::info!(server, template, elapsed_ms, error = %e, "exec: no connection, nothing ran")
        }
        Err(RunError::Lost { address, reason }) => tracing::info!(
            server,
            template,
            elapsed_ms,
            address = %address,
            reason = %reason,
            "exec: connection lost, outcome unknown"
        ),
        Err(RunError::TimedOut) => {
            tracing::info!(
                server,
                template,
                elapsed_ms,
                "exec timed out, outcome unknown"
            )
        }
        Err(RunError::Refused(reason)) => {
            tracing::info!(server, template, elapsed_ms, reason = %reason, "exec refused by the server")
        }
    }
}

/// The log line of a script's result line (its own exit code), or why there was none.
fn log_result(server: &str, template: &str, result: &Result<ScriptResult, TargetError>) {
    match result {
        Ok(r) => {
            tracing::debug!(server, template, exit_code = r.exit_code, done = ?r.done, "result")
        }
        Err(e) => tracing::info!(server, template, error = %e, "no result"),
    }
}

/// Why an upload did not happen: the connection (as for a command), or the server's or the
/// file's answer.
enum Upload {
    Run(RunError),
    Failed(String),
}

impl Inner {
    /// Send the controller's file `local` to `destination` on `server` over SFTP on the
    /// server's connection. A pooled connection that died while idle is replaced once.
    async fn upload(
        &self,
        server: &str,
        local: &Path,
        destination: &str,
        timeout: Duration,
    ) -> Result<u64, Upload> {
        let ep = self
            .endpoint(server)
            .map_err(|e| Upload::Run(RunError::Ssh(e)))?;
        let mut tries = 0;
        loop {
            tries += 1;
            let conn = self
                .lease(ep)
                .await
                .map_err(|e| Upload::Run(RunError::Ssh(e)))?;
            tracing::debug!(
                server,
                local = %local.display(),
                destination,
                timeout_s = timeout.as_secs(),
                "uploading over SFTP"
            );
            let started = Instant::now();
            let sent = conn.upload(local, destination, timeout).await;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            match &sent {
                Ok(bytes) => tracing::debug!(server, bytes, elapsed_ms, "upload finished"),
                Err(UploadError::Failed(reason)) => {
                    tracing::info!(server, elapsed_ms, reason = %reason, "upload failed")
                }
                Err(UploadError::Connection(e)) => {
                    tracing::info!(server, elapsed_ms, error = ?e, "upload: connection problem")
                }
            }
            match sent {
                Ok(bytes) => return Ok(bytes),
                Err(UploadError::Failed(reason)) => return Err(Upload::Failed(reason)),
                Err(UploadError::Connection(ExecError::NotStarted(reason))) => {
                    self.pool.discard(&ep.server, &conn).await;
                    if tries >= 2 {
                        return Err(Upload::Run(RunError::Ssh(SshError::Unreachable {
                            server: ep.server.clone(),
                            address: ep.address(),
                            reason,
                        })));
                    }
                }
                Err(UploadError::Connection(ExecError::Lost(reason))) => {
                    self.pool.discard(&ep.server, &conn).await;
                    return Err(Upload::Run(RunError::Lost {
                        address: ep.address(),
                        reason,
                    }));
                }
                Err(UploadError::Connection(ExecError::TimedOut)) => {
                    self.pool.discard(&ep.server, &conn).await;
                    return Err(Upload::Run(RunError::TimedOut));
                }
                Err(UploadError::Connection(ExecError::Refused(reason))) => {
                    return Err(Upload::Failed(reason));
                }
            }
        }
    }
}

/// The agent `ssh` would use.
fn default_agent() -> Option<PathBuf> {
    if let Some(sock) = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) {
        return Some(PathBuf::from(sock));
    }
    if cfg!(windows) {
        return Some(PathBuf::from(r"\\.\pipe\openssh-ssh-agent"));
    }
    None
}

fn target_error(
    e: RunError,
    server: &str,
    step: impl fmt::Display,
    timeout: Duration,
) -> TargetError {
    match e {
        RunError::Ssh(SshError::Unreachable {
            server,
            address,
            reason,
        }) => TargetError::Unreachable {
            server,
            reason: format!("{address}: {reason}"),
        },
        RunError::Ssh(other) => TargetError::Refused(other.to_string()),
        RunError::Lost { address, reason } => TargetError::Unreachable {
            server: server.to_string(),
            reason: format!(
                "the connection to {address} was lost while {step} ran ({reason}); its outcome \
                 is unknown"
            ),
        },
        RunError::TimedOut => TargetError::TimedOut {
            server: server.to_string(),
            step: step.to_string(),
            after_ms: timeout.as_millis() as u64,
        },
        RunError::Refused(reason) => TargetError::Refused(format!("server {server}: {reason}")),
    }
}

/// The script's JSON result line, or what the host's exit status says instead
/// (`sfbpatch_remote::host_exit`): a request refused before anything ran is a refusal; a
/// status it does not know, or none, leaves the outcome unknown, like a lost connection, so
/// that a probe decides.
fn read_result(
    server: &str,
    step: impl fmt::Display,
    script: &Script,
    finished: &Finished,
    timeout: Duration,
) -> Result<ScriptResult, TargetError> {
    let stdout = finished.stdout.text();
    let error = match script.parse_result(&stdout) {
        Ok(result) => return Ok(result),
        Err(e @ remote::RemoteError::WrongTemplate { .. }) => {
            return Err(TargetError::Refused(format!("server {server}: {e}")));
        }
        Err(e) => e,
    };
    let stderr = finished.stderr.text();
    let said = last_lines(if stderr.trim().is_empty() {
        &stdout
    } else {
        &stderr
    });
    let said = if said.is_empty() {
        String::new()
    } else {
        format!(": {said}")
    };
    let status = finished.exit_status.map(|s| s as i32);
    match status {
        Some(host_exit::BAD_REQUEST | host_exit::REFUSED) => Err(TargetError::Refused(format!(
            "server {server} refused script '{}' (exit status {}){said}",
            script.template,
            status.unwrap_or_default()
        ))),
        Some(host_exit::READ_FAILED) => Err(TargetError::ReadFailed {
            server: server.to_string(),
            reason: format!("script '{}' failed{said}", script.template),
        }),
        Some(host_exit::TIMED_OUT) => Err(TargetError::TimedOut {
            server: server.to_string(),
            step: step.to_string(),
            after_ms: timeout.as_millis() as u64,
        }),
        _ => {
            let cut = match finished.stdout.dropped() {
                0 => String::new(),
                n => format!(", {n} bytes of output before the last ones not kept"),
            };
            Err(TargetError::Unreachable {
                server: server.to_string(),
                reason: format!(
                    "script '{}' gave no result (exit status {}{cut}: {error}); its outcome is \
                     unknown{said}",
                    script.template,
                    status.map_or_else(|| "none".to_string(), |s| s.to_string()),
                ),
            })
        }
    }
}

/// The last few non-empty lines, joined, at most 500 characters.
fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let joined = lines[lines.len().saturating_sub(3)..].join(" / ");
    if joined.chars().count() > 500 {
        let tail: String = joined
            .chars()
            .rev()
            .take(500)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("...{tail}")
    } else {
        joined
    }
}

fn outcome(result: ScriptResult) -> StepOutcome {
    StepOutcome::exit(result.exit_code, result.output)
}

impl Target for SshTarget {
    fn kind(&self) -> &'static str {
        "ssh"
    }

    fn execute(&self, req: &StepRequest<'_>) -> Result<StepOutcome, TargetError> {
        let script = self.script(Operation::Execute, req)?;
        let timeout = Duration::from_millis(req.timeout.max(1));
        // A controller's installer goes to the staging folder first; the step's script then
        // checks its SHA-256 there and extracts it.
        let mut sent = None;
        if let Action::StageUpdate {
            source: Installer::Path(local),
            destination,
            ..
        } = &req.step.action
        {
            let server = req.host.as_str();
            match self.runtime.block_on(self.inner.upload(
                server,
                Path::new(local),
                destination,
                timeout,
            )) {
                Ok(bytes) => sent = Some((local, destination, bytes)),
                Err(Upload::Run(e)) => return Err(target_error(e, server, req.step.id, timeout)),
                Err(Upload::Failed(reason)) => {
                    return Ok(StepOutcome::exit(
                        1,
                        format!(
                            "uploading {local} to {destination} on {server} over SFTP failed: \
                             {reason}; nothing was staged"
                        ),
                    ));
                }
            }
        }
        let mut outcome = self.run(&script, req, timeout).map(outcome)?;
        if let Some((local, destination, bytes)) = sent {
            outcome.output = format!(
                "uploaded {local} to {destination} over SFTP ({bytes} bytes)\n{}",
                outcome.output
            );
        }
        Ok(outcome)
    }

    fn probe(&self, req: &StepRequest<'_>) -> Result<Probe, TargetError> {
        let script = self.script(Operation::Probe, req)?;
        let result = self.run(&script, req, Duration::from_millis(req.timeout.max(1)))?;
        let running = result.facts.get("running") == Some(&serde_json::Value::Bool(true));
        let verdict = match result.done {
            Some(false) if running => ProbeVerdict::Running,
            Some(true) => ProbeVerdict::Done,
            Some(false) => ProbeVerdict::NotDone,
            None => {
                return Err(TargetError::Refused(format!(
                    "server {}: the probe of {} answered without saying whether it is done (exit \
                     code {}: {})",
                    req.server.fqdn,
                    req.step.id,
                    result.exit_code,
                    last_lines(&result.output)
                )));
            }
        };
        Ok(Probe {
            verdict,
            facts: result.facts.to_string(),
        })
    }

    /// Runs `server/reboot`. A host that restarts at once (the lab) says
    /// `"restart":"completed"`. A Windows server schedules the restart and says when it last
    /// booted: the server is back once a probe answers with a later boot time.
    fn reboot(&self, req: &StepRequest<'_>) -> Result<StepOutcome, TargetError> {
        let server = req.server.fqdn.as_str();
        let opts = &self.inner.options;
        let started = Instant::now();
        let script = self.script(Operation::Reboot, req)?;
        let (said, booted, delay) = match self.run(&script, req, opts.connect_timeout * 3) {
            Ok(result) if result.exit_code != 0 => return Ok(outcome(result)),
            Ok(result) if result.facts["restart"] == "completed" => return Ok(outcome(result)),
            Ok(result) => {
                let booted = result.facts["last_boot"].as_str().map(str::to_string);
                let delay = result.facts["delay_seconds"].as_u64().unwrap_or(0);
                (result.output, booted, Duration::from_secs(delay))
            }
            // The host went down before it answered.
            Err(e) if e.outcome_unknown() => (e.to_string(), None, Duration::ZERO),
            Err(e) => return Err(e),
        };
        let probe = self.script(Operation::Probe, req)?;
        tracing::info!(
            server,
            delay_s = delay.as_secs(),
            timeout_s = opts.reboot_timeout.as_secs(),
            "restart asked for: waiting for the server to answer again"
        );
        self.runtime.block_on(async {
            self.inner.pool.forget(server).await;
            tokio::time::sleep(delay).await;
        });
        let deadline = started + opts.reboot_timeout;
        loop {
            let answer = self.run(&probe, req, opts.connect_timeout);
            match answer {
                Ok(result) => {
                    let now = result.facts["last_boot"].as_str();
                    let back = match (&booted, now) {
                        (Some(before), Some(now)) => before != now,
                        _ => true,
                    };
                    if back {
                        return Ok(StepOutcome::ok(format!(
                            "{said}\nserver {server} answered again {} s after the restart was \
                             requested",
                            started.elapsed().as_secs()
                        )));
                    }
                }
                Err(TargetError::Refused(reason)) => return Err(TargetError::Refused(reason)),
                Err(e) if Instant::now() + opts.reboot_poll > deadline => {
                    return Err(TargetError::Unreachable {
                        server: server.to_string(),
                        reason: format!(
                            "it did not come back within {} s of the restart ({e})",
                            opts.reboot_timeout.as_secs()
                        ),
                    });
                }
                Err(e) => tracing::debug!(server, error = %e, "not back from its restart yet"),
            }
            if Instant::now() + opts.reboot_poll > deadline {
                return Err(TargetError::Unreachable {
                    server: server.to_string(),
                    reason: format!(
                        "it still ran since its last boot ({}) {} s after the restart was \
                         requested",
                        booted.as_deref().unwrap_or("unknown"),
                        opts.reboot_timeout.as_secs()
                    ),
                });
            }
            std::thread::sleep(opts.reboot_poll);
        }
    }

    /// Runs `server/preflight`, which changes nothing, and reads its facts.
    fn preflight(&self, server: &ServerPlan) -> Result<MachineFacts, TargetError> {
        let fqdn = server.fqdn.as_str();
        let script = remote::server_script(Operation::Preflight, server).map_err(|e| {
            TargetError::Refused(format!(
                "cannot build the pre-flight script for {fqdn}: {e}"
            ))
        })?;
        let result = self.server_call(fqdn, &script, "the pre-flight", false)?;
        serde_json::from_value(result.facts.clone()).map_err(|e| {
            TargetError::Refused(format!(
                "server {fqdn}: the pre-flight answered facts sfbpatch cannot read ({e}): {}",
                result.facts
            ))
        })
    }

    /// Runs `server/lock`: the registry key `HKLM:\SOFTWARE\sfbpatch\Lock` holds the
    /// controller's run, the generation of its claim and when the lock lapses.
    fn lock_server(
        &self,
        server: &ServerPlan,
        fence: Fence<'_>,
        now_ms: Millis,
        until_ms: Millis,
    ) -> Result<Option<ServerLock>, TargetError> {
        let fqdn = server.fqdn.as_str();
        let script = remote::lock_script(
            &server.fqdn,
            fence.holder,
            fence.generation,
            now_ms,
            until_ms,
        )
        .map_err(|e| {
            TargetError::Refused(format!("cannot build the lock script for {fqdn}: {e}"))
        })?;
        let result = self.server_call(fqdn, &script, "the lock script", false)?;
        read_lock(fqdn, fence, &result.facts)
    }

    /// Runs `server/unlock`, which removes the lock only when `holder` holds it. The server's
    /// procedure ends with it: its connection may go to another server at once.
    fn unlock_server(&self, server: &ServerPlan, holder: &str) -> Result<(), TargetError> {
        let fqdn = server.fqdn.as_str();
        let script = remote::unlock_script(&server.fqdn, holder).map_err(|e| {
            TargetError::Refused(format!("cannot build the unlock script for {fqdn}: {e}"))
        })?;
        self.server_call(fqdn, &script, "the unlock script", true)
            .map(|_| ())
    }

    fn recover(&self, req: &StepRequest<'_>) -> Result<StepOutcome, TargetError> {
        let script = self.script(Operation::Recover, req)?;
        self.run(&script, req, Duration::from_millis(req.timeout.max(1)))
            .map(outcome)
    }
}

impl Drop for SshTarget {
    fn drop(&mut self) {
        let inner = self.inner.clone();
        self.runtime.block_on(async move {
            let mut closing = tokio::task::JoinSet::new();
            for conn in inner.pool.take_all().await {
                closing.spawn(async move { conn.disconnect().await });
            }
            let _ = tokio::time::timeout(Duration::from_secs(3), closing.join_all()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const FENCE: Fence<'static> = Fence {
        holder: "sqlite:/srv/a.db#run1",
        generation: 2,
    };

    #[test]
    fn a_lock_taken_is_none() {
        assert_eq!(
            read_lock("se1.example.com", FENCE, &json!({ "taken": true })),
            Ok(None)
        );
    }

    #[test]
    fn another_holders_lock_is_returned() {
        let held = ServerLock {
            holder: "sqlite:/srv/b.db#run4".to_string(),
            generation: 1,
            expires_at: 1_700_043_200_000,
        };
        for facts in [
            json!({
                "taken": false,
                "holder": "sqlite:/srv/b.db#run4",
                "generation": 1,
                "expires_at": 1_700_043_200_000_u64,
            }),
            // Numbers as text are read too.
            json!({
                "taken": false,
                "holder": "sqlite:/srv/b.db#run4",
                "generation": "1",
                "expires_at": "1700043200000",
            }),
        ] {
            assert_eq!(
                read_lock("se1.example.com", FENCE, &facts),
                Ok(Some(held.clone())),
                "{facts}"
            );
        }
    }

    #[test]
    fn a_newer_generation_of_the_same_holder_fences_this_controller() {
        let facts = json!({
            "taken": false,
            "fenced": true,
            "holder": FENCE.holder,
            "generation": 5,
            "expires_at": 1_700_043_200_000_u64,
        });
        assert_eq!(
            read_lock("se1.example.com", FENCE, &facts),
            Err(TargetError::Fenced {
                server: "se1.example.com".to_string(),
                held: 2,
                current: 5,
            })
        );
    }

    #[test]
    fn facts_that_cannot_be_read_are_a_refusal() {
        for (facts, says) in [
            (json!({}), "no true or false 'taken'"),
            (json!({ "taken": "yes" }), "no true or false 'taken'"),
            (
                json!({ "taken": false, "generation": 1, "expires_at": 2 }),
                "no text 'holder'",
            ),
            (
                json!({ "taken": false, "holder": "x", "generation": -1, "expires_at": 2 }),
                "no number 'generation'",
            ),
            (
                json!({ "taken": false, "holder": "x", "generation": 1 }),
                "no number 'expires_at'",
            ),
            (
                json!({ "taken": false, "fenced": true, "holder": "x" }),
                "no number 'generation'",
            ),
        ] {
            match read_lock("se1.example.com", FENCE, &facts) {
                Err(TargetError::Refused(message)) => {
                    assert!(
                        message.starts_with(
                            "server se1.example.com: the lock script answered facts sfbpatch \
                             cannot read"
                        ) && message.contains(says),
                        "{message}"
                    );
                }
                other => panic!("{facts}: {other:?}"),
            }
        }
    }
}
