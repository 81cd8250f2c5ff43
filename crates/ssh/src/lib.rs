//! The SSH target: runs the remote protocol's PowerShell (`sfbpatch-remote`) on Windows
//! servers over OpenSSH, with strictly checked host keys and a bounded pool of connections.
//!
//! - [`config`]: the connections file and the inventory's connection keys, merged into one
//!   [`Endpoint`] per server.
//! - [`hostkey`]: fingerprints, pins, and the rule that trusts a key or refuses it.
//! - [`SshTarget`]: the engine's `Target`. Every execute, probe, reboot and recovery is one
//!   `powershell.exe -EncodedCommand` on an exec channel whose JSON result line is read back.
//!
//! The connections file and the target's behaviour are documented in docs/ssh.md.

pub mod config;
mod error;
pub mod hostkey;
mod pool;
mod session;
mod target;
mod upload;

use sfbpatch_remote as remote;

pub use config::{ConfigError, ConnectionsFile, Endpoint, Identity};
pub use error::SshError;
pub use hostkey::{Fingerprint, HostKeys, MemoryHostKeys};
pub use target::{SshOptions, SshTarget};
