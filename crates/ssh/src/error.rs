//! The SSH target's errors. None of them carries key material or a passphrase: keys are only
//! named by their file, and host keys by their public fingerprints.

use std::path::PathBuf;

use crate::hostkey::Fingerprint;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    #[error("cannot reach server {server} at {address}: {reason}")]
    Unreachable {
        server: String,
        address: String,
        reason: String,
    },
    #[error(
        "the host key of server {server} ({address}) is not known: it presented {presented}. \
         Check that fingerprint with the server's administrator, then pass \
         --accept-new-host-keys to pin it, or set host_key = \"{presented}\" for it in the \
         connections file"
    )]
    HostKeyUnknown {
        server: String,
        address: String,
        presented: Fingerprint,
    },
    #[error(
        "the host key of server {server} ({address}) has changed: expected {expected} (from \
         {origin}), the server presented {presented}. Refusing to connect: someone may be \
         intercepting the connection. If the server was reinstalled and the new key is \
         genuine, set host_key = \"{presented}\" for it in the connections file"
    )]
    HostKeyChanged {
        server: String,
        address: String,
        expected: Fingerprint,
        presented: Fingerprint,
        origin: &'static str,
    },
    #[error(
        "authentication failed on server {server} ({address}) as user {user} with {identity}: \
         the server did not accept the key"
    )]
    AuthFailed {
        server: String,
        address: String,
        user: String,
        identity: String,
    },
    #[error("server {server}: cannot authenticate with ssh-agent: {reason}")]
    Agent { server: String, reason: String },
    #[error("identity file {} cannot be used: {reason}", path.display())]
    Identity { path: PathBuf, reason: String },
    #[error("server {0} has no connection details (it is not in the plan)")]
    UnknownServer(String),
    #[error("the state store's host keys: {0}")]
    Store(String),
    #[error("server {server}: {reason}")]
    Protocol { server: String, reason: String },
    #[error("the SSH target failed: {0}")]
    Internal(String),
}
