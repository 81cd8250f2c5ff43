//! One SSH connection: connect, check the host key, authenticate, run a command on an exec
//! channel with its output capped.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::{AgentClient, AgentStream};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};

use crate::config::{Endpoint, Identity};
use crate::error::SshError;
use crate::hostkey::{Expected, HostKeys, Verdict};
use crate::pool::Conn;

/// The client side of one connection: it only judges the host key.
pub(crate) struct Client {
    expected: Expected,
    verdict: Arc<Mutex<Option<Verdict>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            // A host certificate is judged by the key it certifies.
            PublicKeyOrCertificate::Certificate(cert) => PublicKey::from(cert.public_key().clone()),
        };
        let verdict = self.expected.judge(&key);
        let trusted = matches!(verdict, Verdict::Trusted | Verdict::PinNew(_));
        *self.verdict.lock().unwrap_or_else(|e| e.into_inner()) = Some(verdict);
        Ok(trusted)
    }
}

/// An authenticated connection.
pub(crate) struct Connection {
    pub(crate) handle: Handle<Client>,
}

impl Conn for Connection {
    fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    fn close(self: Arc<Self>) {
        // Politely, in the background; dropping the handle closes the socket in any case.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    self.handle.disconnect(Disconnect::ByApplication, "", "en"),
                )
                .await;
            });
        }
    }
}

/// What is needed to open connections, shared by all of them.
pub(crate) struct Connector {
    pub config: Arc<client::Config>,
    pub connect_timeout: Duration,
    pub accept_new_host_keys: bool,
    pub host_keys: Arc<Mutex<Box<dyn HostKeys>>>,
    /// The ssh-agent's socket (Unix) or pipe (Windows), for servers without an identity file.
    pub agent: Option<std::path::PathBuf>,
}

type Agent = AgentClient<Box<dyn AgentStream + Send + Unpin>>;

async fn open_agent(path: &Path) -> Result<Agent, russh::keys::Error> {
    #[cfg(unix)]
    let agent = AgentClient::connect_uds(path).await?.dynamic();
    #[cfg(windows)]
    let agent = AgentClient::connect_named_pipe(path).await?.dynamic();
    Ok(agent)
}

/// A private key loaded for authentication. Never printed.
pub(crate) struct LoadedKey(pub Arc<PrivateKey>);

impl std::fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoadedKey(..)")
    }
}

impl Connector {
    /// What is expected of `ep`'s host key: the configured one, else the pinned one.
    async fn expected(&self, ep: &Endpoint) -> Result<Expected, SshError> {
        if let Some(fp) = &ep.host_key {
            return Ok(Expected::Configured(fp.clone()));
        }
        let keys = self.host_keys.clone();
        let server = ep.server.clone();
        // The store may block (PostgreSQL runs its own runtime): off the async threads.
        let pinned = tokio::task::spawn_blocking(move || {
            keys.lock()
                .unwrap_or_else(|e| e.into_inner())
                .pinned(&server)
        })
        .await
        .map_err(|e| SshError::Internal(format!("host-key lookup failed: {e}")))?
        .map_err(|e| SshError::Store(e.to_string()))?;
        match pinned {
            Some(text) => text
                .parse()
                .map(Expected::Pinned)
                .map_err(|e| SshError::Store(format!("pinned host key of {}: {e}", ep.server))),
            None => Ok(Expected::Unknown {
                accept_new: self.accept_new_host_keys,
            }),
        }
    }

    /// Connect to `ep`, check its host key, and authenticate.
    pub(crate) async fn connect(
        &self,
        ep: &Endpoint,
        key: Option<&LoadedKey>,
    ) -> Result<Connection, SshError> {
        let expected = self.expected(ep).await?;
        tracing::debug!(
            server = %ep.server,
            address = %ep.address(),
            user = %ep.user,
            identity = %ep.identity,
            host_key = %describe_expected(&expected),
            timeout_s = self.connect_timeout.as_secs(),
            "connecting"
        );
        let started = std::time::Instant::now();
        let verdict = Arc::new(Mutex::new(None));
        let handler = Client {
            expected,
            verdict: verdict.clone(),
        };
        let unreachable = |reason: String| SshError::Unreachable {
            server: ep.server.clone(),
            address: ep.address(),
            reason,
        };
        let connected = tokio::time::timeout(
            self.connect_timeout,
            client::connect(self.config.clone(), (ep.host.as_str(), ep.port), handler),
        )
        .await;
        let seen = verdict.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(seen) = &seen {
            tracing::debug!(server = %ep.server, verdict = %describe_verdict(seen), "host key checked");
        }
        let mut handle = match connected {
            Err(_) => {
                tracing::info!(
                    server = %ep.server,
                    address = %ep.address(),
                    timeout_s = self.connect_timeout.as_secs(),
                    "connect timed out: no SSH session"
                );
                return Err(unreachable(format!(
                    "no SSH session within {} s",
                    self.connect_timeout.as_secs()
                )));
            }
            Ok(Err(e)) => {
                tracing::info!(
                    server = %ep.server,
                    address = %ep.address(),
                    error = %describe(&e),
                    host_key = %seen.as_ref().map_or_else(|| "not seen".to_string(), describe_verdict),
                    "connect failed"
                );
                return Err(match seen {
                    Some(Verdict::Unknown(presented)) => SshError::HostKeyUnknown {
                        server: ep.server.clone(),
                        address: ep.address(),
                        presented,
                    },
                    Some(Verdict::Changed {
                        expected,
                        presented,
                        source: origin,
                    }) => SshError::HostKeyChanged {
                        server: ep.server.clone(),
                        address: ep.address(),
                        expected,
                        presented,
                        origin,
                    },
                    _ => unreachable(describe(&e)),
                });
            }
            Ok(Ok(handle)) => handle,
        };
        tracing::debug!(
            server = %ep.server,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "SSH session established"
        );
        if let Some(Verdict::PinNew(fp)) = seen {
            tracing::info!(server = %ep.server, fingerprint = %fp, "pinning the host key seen for the first time (--accept-new-host-keys)");
            let keys = self.host_keys.clone();
            let server = ep.server.clone();
            let text = fp.to_string();
            tokio::task::spawn_blocking(move || {
                keys.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pin(&server, &text)
            })
            .await
            .map_err(|e| SshError::Internal(format!("pinning a host key failed: {e}")))?
            .map_err(|e| SshError::Store(e.to_string()))?;
        }
        tracing::debug!(server = %ep.server, user = %ep.user, identity = %ep.identity, "authenticating");
        let ok = tokio::time::timeout(
            self.connect_timeout,
            self.authenticate(&mut handle, ep, key),
        )
        .await
        .map_err(|_| {
            tracing::info!(server = %ep.server, "authentication timed out");
            unreachable(format!(
                "no answer to authentication within {} s",
                self.connect_timeout.as_secs()
            ))
        })?
        .inspect_err(
            |e| tracing::info!(server = %ep.server, error = %e, "authentication failed"),
        )?;
        tracing::debug!(server = %ep.server, user = %ep.user, accepted = ok, "authentication answered");
        if !ok {
            let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
            return Err(SshError::AuthFailed {
                server: ep.server.clone(),
                address: ep.address(),
                user: ep.user.clone(),
                identity: ep.identity.to_string(),
            });
        }
        Ok(Connection { handle })
    }

    async fn authenticate(
        &self,
        handle: &mut Handle<Client>,
        ep: &Endpoint,
        key: Option<&LoadedKey>,
    ) -> Result<bool, SshError> {
        let unreachable = |reason: String| SshError::Unreachable {
            server: ep.server.clone(),
            address: ep.address(),
            reason,
        };
        Ok(match (&ep.identity, key) {
            (Identity::File(_), Some(key)) => {
                let hash = handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(|e| unreachable(describe(&e)))?
                    .flatten();
                handle
                    .authenticate_publickey(
                        ep.user.clone(),
                        PrivateKeyWithHashAlg::new(key.0.clone(), hash),
                    )
                    .await
                    .map_err(|e| unreachable(describe(&e)))?
                    .success()
            }
            (Identity::File(path), None) => {
                return Err(SshError::Internal(format!(
                    "identity file {} was not loaded",
                    path.display()
                )));
            }
            (Identity::Agent, _) => self.agent_auth(handle, ep).await?,
        })
    }

    /// Try each key the agent holds.
    async fn agent_auth(
        &self,
        handle: &mut Handle<Client>,
        ep: &Endpoint,
    ) -> Result<bool, SshError> {
        let agent_err = |reason: String| SshError::Agent {
            server: ep.server.clone(),
            reason,
        };
        let path = self.agent.as_deref().ok_or_else(|| {
            agent_err("no ssh-agent is running (SSH_AUTH_SOCK is not set)".into())
        })?;
        let mut agent = open_agent(path)
            .await
            .map_err(|e| agent_err(format!("{}: {e}", path.display())))?;
        let identities = agent
            .request_identities()
            .await
            .map_err(|e| agent_err(e.to_string()))?;
        tracing::debug!(server = %ep.server, agent = %path.display(), keys = identities.len(), "ssh-agent keys");
        if identities.is_empty() {
            return Err(agent_err(
                "ssh-agent holds no keys (ssh-add lists none)".into(),
            ));
        }
        let hash = handle
            .best_supported_rsa_hash()
            .await
            .map_err(|e| agent_err(describe(&e)))?
            .flatten();
        for identity in identities {
            let AgentIdentity::PublicKey { key, .. } = identity else {
                continue;
            };
            tracing::trace!(server = %ep.server, algorithm = %key.algorithm(), "offering an ssh-agent key");
            match handle
                .authenticate_publickey_with(ep.user.clone(), key, hash, &mut agent)
                .await
            {
                Ok(r) if r.success() => return Ok(true),
                Ok(_) => {}
                Err(e) => return Err(agent_err(e.to_string())),
            }
        }
        Ok(false)
    }
}

/// What a connection expects of a host key, for the log.
fn describe_expected(expected: &Expected) -> String {
    match expected {
        Expected::Configured(fp) => format!("configured {fp}"),
        Expected::Pinned(fp) => format!("pinned {fp}"),
        Expected::Unknown { accept_new: true } => "none known; a new one is pinned".into(),
        Expected::Unknown { accept_new: false } => "none known; a new one is refused".into(),
    }
}

/// A host key's verdict, for the log (fingerprints only: public).
fn describe_verdict(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Trusted => "trusted".into(),
        Verdict::PinNew(fp) => format!("new, to pin: {fp}"),
        Verdict::Unknown(fp) => format!("unknown, refused: {fp}"),
        Verdict::Changed {
            expected,
            presented,
            source,
        } => format!("CHANGED: expected {expected} ({source}), presented {presented}"),
    }
}

/// A russh error in words, without anything secret (russh errors carry none).
pub(crate) fn describe(e: &russh::Error) -> String {
    match e {
        russh::Error::IO(io) => io.to_string(),
        russh::Error::Disconnect => "the server closed the connection".into(),
        russh::Error::HUP => "the connection was closed".into(),
        russh::Error::ConnectionTimeout | russh::Error::KeepaliveTimeout => {
            "the server stopped answering".into()
        }
        other => other.to_string(),
    }
}

/// Load an identity file: refused when group or others can read it, or when it is encrypted.
pub(crate) fn load_key(path: &Path) -> Result<LoadedKey, SshError> {
    let bad = |reason: String| SshError::Identity {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a file".into()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "it is accessible by group or others (mode {mode:04o}); private keys must be \
                 readable by their owner only: chmod 600 {}",
                path.display()
            )));
        }
    }
    let rsa = || {
        bad(
            "it is an RSA key, which sfbpatch does not use (the RSA implementation available \
             to it is open to a timing attack, RUSTSEC-2023-0071): make an Ed25519 key \
             (ssh-keygen -t ed25519) and add its .pub to the server's authorized keys"
                .into(),
        )
    };
    match russh::keys::load_secret_key(path, None) {
        // RSA is left out of the build: the only RSA implementation at hand is open to the
        // Marvin timing attack (RUSTSEC-2023-0071) when it signs.
        Ok(key) if matches!(key.algorithm(), russh::keys::Algorithm::Rsa { .. }) => Err(rsa()),
        Ok(key) => Ok(LoadedKey(Arc::new(key))),
        Err(russh::keys::Error::KeyIsEncrypted) => Err(bad(
            "it is protected by a passphrase; load it into ssh-agent (ssh-add) and leave \
             identity_file out to use the agent"
                .into(),
        )),
        Err(_) if is_rsa_key(path) => Err(rsa()),
        // Parser messages name what is wrong with the format, never the key's content.
        Err(e) => Err(bad(format!("not a private key sfbpatch can use: {e}"))),
    }
}

/// Whether an identity file that could not be read holds an RSA key: a PEM `RSA PRIVATE KEY`,
/// or one whose public half beside it (`.pub`) is `ssh-rsa`.
fn is_rsa_key(path: &Path) -> bool {
    let pem = std::fs::read_to_string(path)
        .is_ok_and(|text| text.contains("-----BEGIN RSA PRIVATE KEY-----"));
    let mut public = path.as_os_str().to_owned();
    public.push(".pub");
    pem || std::fs::read_to_string(&public).is_ok_and(|p| p.starts_with("ssh-rsa "))
}

/// The end of a stream, at most `cap` bytes.
#[derive(Debug)]
pub(crate) struct Tail {
    cap: usize,
    buf: Vec<u8>,
    dropped: u64,
}

impl Tail {
    pub(crate) fn new(cap: usize) -> Self {
        Tail {
            cap,
            buf: Vec::new(),
            dropped: 0,
        }
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        // Trim in batches: each byte is moved at most once per `cap` bytes received.
        if self.buf.len() > self.cap.saturating_mul(2).max(64 * 1024) {
            let cut = self.buf.len() - self.cap;
            self.buf.drain(..cut);
            self.dropped += cut as u64;
        }
    }

    pub(crate) fn text(&self) -> String {
        let start = self.buf.len().saturating_sub(self.cap);
        String::from_utf8_lossy(&self.buf[start..]).into_owned()
    }

    /// Bytes left out at the start.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped + self.buf.len().saturating_sub(self.cap) as u64
    }
}

/// What a command did.
#[derive(Debug)]
pub(crate) struct Finished {
    pub exit_status: Option<u32>,
    pub stdout: Tail,
    pub stderr: Tail,
}

/// Why a command did not finish.
#[derive(Debug)]
pub(crate) enum ExecError {
    /// The channel could not be opened: nothing ran. Safe to try again on a new connection.
    NotStarted(String),
    /// The connection went away after the command was sent: its outcome is unknown.
    Lost(String),
    /// The server refused to run the command.
    Refused(String),
    /// No end within the timeout; the outcome is unknown.
    TimedOut,
}

impl Connection {
    /// Run `command` on an exec channel, keeping the last `cap` bytes of each stream.
    pub(crate) async fn exec(
        &self,
        command: &str,
        timeout: Duration,
        cap: usize,
    ) -> Result<Finished, ExecError> {
        let mut channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| ExecError::NotStarted(describe(&e)))?;
        let run = async {
            channel
                .exec(true, command)
                .await
                .map_err(|e| ExecError::Lost(describe(&e)))?;
            let mut out = Finished {
                exit_status: None,
                stdout: Tail::new(cap),
                stderr: Tail::new(cap),
            };
            let mut signal = None;
            let mut started = false;
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => out.stdout.push(&data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => out.stderr.push(&data),
                    ChannelMsg::ExitStatus { exit_status } => out.exit_status = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        signal = Some(format!("{signal_name:?}"));
                    }
                    ChannelMsg::Success => started = true,
                    ChannelMsg::Failure if !started => {
                        return Err(ExecError::Refused(
                            "the server refused to run the command".into(),
                        ));
                    }
                    _ => {}
                }
            }
            if out.exit_status.is_none() {
                return Err(ExecError::Lost(match signal {
                    Some(s) => format!("the remote command was killed by signal {s}"),
                    None if self.handle.is_closed() => "the connection was lost".into(),
                    None => "the channel closed without an exit status".into(),
                }));
            }
            Ok(out)
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => {
                let _ = channel.close().await;
                Err(ExecError::TimedOut)
            }
        }
    }

    /// Close politely and wait (briefly) for it.
    pub(crate) async fn disconnect(&self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.handle.disconnect(Disconnect::ByApplication, "", "en"),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end() {
        let mut t = Tail::new(10);
        for i in 0..100_000u32 {
            t.push(format!("{i}\n").as_bytes());
        }
        let text = t.text();
        assert_eq!(text.len(), 10);
        assert!(text.ends_with("99999\n"), "{text}");
        let total: u64 = (0..100_000u32).map(|i| format!("{i}\n").len() as u64).sum();
        assert_eq!(t.dropped() + 10, total);
    }

    #[test]
    fn rsa_identity_files_are_refused_by_name() {
        for format in ["RFC4716", "PEM"] {
            rsa_key_refused(format);
        }
    }

    fn rsa_key_refused(format: &str) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_rsa");
        let o = std::process::Command::new("ssh-keygen")
            .args([
                "-q", "-t", "rsa", "-b", "2048", "-N", "", "-m", format, "-f",
            ])
            .arg(&path)
            .output();
        let Ok(o) = o else {
            eprintln!(
                "ssh-keygen is not installed: rsa_identity_files_are_refused_by_name skipped"
            );
            return;
        };
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::remove_file(dir.path().join("id_rsa.pub")).unwrap();
        let e = load_key(&path).unwrap_err().to_string();
        assert!(
            e.contains("it is an RSA key") && e.contains("ssh-keygen -t ed25519"),
            "{format}: {e}"
        );
    }

    #[test]
    fn identity_files_readable_by_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        std::fs::write(&path, "not a key").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = load_key(&path).unwrap_err().to_string();
            assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let e = load_key(&path).unwrap_err().to_string();
        assert!(e.contains("not a private key"), "{e}");
        assert!(
            !e.contains("not a key"),
            "the file's content never shows: {e}"
        );
    }
}
