//! Host keys: fingerprints in OpenSSH's format, where pins are kept, and the rule that decides
//! whether a server's key is trusted.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use russh::keys::ssh_key;
use russh::keys::{HashAlg, PublicKey};
use sfbpatch_engine::{Store, StoreError};

/// A host-key fingerprint, shown as OpenSSH shows it (`SHA256:` and unpadded base64).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint(Box<ssh_key::Fingerprint>);

impl Fingerprint {
    /// The fingerprint of `key`, with the same hash as `self` (for comparing).
    fn of_like(&self, key: &PublicKey) -> Fingerprint {
        Fingerprint(Box::new(key.fingerprint(self.0.algorithm())))
    }

    /// The SHA-256 fingerprint of `key`.
    pub fn of(key: &PublicKey) -> Fingerprint {
        Fingerprint(Box::new(key.fingerprint(HashAlg::Sha256)))
    }

    /// Whether `key` is the key this fingerprint names.
    pub fn matches(&self, key: &PublicKey) -> bool {
        self.of_like(key) == *self
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Fingerprint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().trim_end_matches('=');
        ssh_key::Fingerprint::from_str(s)
            .map(|f| Fingerprint(Box::new(f)))
            .map_err(|_| {
                format!(
                    "'{}' is not an OpenSSH fingerprint (SHA256:...)",
                    s.escape_debug()
                )
            })
    }
}

/// A configured host key: a fingerprint (`SHA256:...`, as `ssh-keygen -lf` prints it) or a
/// public key as in `known_hosts` without the host name (`ssh-ed25519 AAAA... [comment]`).
pub fn parse_expected(s: &str) -> Result<Fingerprint, String> {
    let s = s.trim();
    if s.starts_with("SHA256:") || s.starts_with("SHA512:") {
        return s.parse().map_err(|_| not_a_key());
    }
    PublicKey::from_openssh(s)
        .map(|k| Fingerprint::of(&k))
        .map_err(|_| not_a_key())
}

fn not_a_key() -> String {
    "is not an OpenSSH fingerprint (SHA256:...) or public key (ssh-ed25519 AAAA...)".into()
}

/// Where host keys accepted with `--accept-new-host-keys` are pinned: the state store.
pub trait HostKeys: Send {
    /// The fingerprint pinned for `server`, if any.
    fn pinned(&self, server: &str) -> Result<Option<String>, StoreError>;
    /// Pin `fingerprint` for `server`.
    fn pin(&mut self, server: &str, fingerprint: &str) -> Result<(), StoreError>;
}

impl<S: Store + Send + ?Sized> HostKeys for Box<S> {
    fn pinned(&self, server: &str) -> Result<Option<String>, StoreError> {
        self.host_key(server)
    }
    fn pin(&mut self, server: &str, fingerprint: &str) -> Result<(), StoreError> {
        self.pin_host_key(server, fingerprint)
    }
}

/// Pins kept in memory, for tests and for runs that need no store.
#[derive(Debug, Default, Clone)]
pub struct MemoryHostKeys(pub HashMap<String, String>);

impl HostKeys for MemoryHostKeys {
    fn pinned(&self, server: &str) -> Result<Option<String>, StoreError> {
        Ok(self.0.get(&server.to_ascii_lowercase()).cloned())
    }
    fn pin(&mut self, server: &str, fingerprint: &str) -> Result<(), StoreError> {
        self.0
            .insert(server.to_ascii_lowercase(), fingerprint.to_string());
        Ok(())
    }
}

/// What is expected of a server's key before connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Set in the connections file or the inventory.
    Configured(Fingerprint),
    /// Pinned in the state store by an earlier run.
    Pinned(Fingerprint),
    /// Nothing known.
    Unknown { accept_new: bool },
}

/// The decision about the key a server presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The key is the one expected.
    Trusted,
    /// Nothing was known and new keys are accepted: pin this one.
    PinNew(Fingerprint),
    /// Nothing was known and new keys are not accepted.
    Unknown(Fingerprint),
    /// A different key than the one expected.
    Changed {
        expected: Fingerprint,
        presented: Fingerprint,
        /// Where the expected key comes from, for the message.
        source: &'static str,
    },
}

impl Expected {
    pub fn judge(&self, key: &PublicKey) -> Verdict {
        match self {
            Expected::Configured(fp) | Expected::Pinned(fp) if fp.matches(key) => Verdict::Trusted,
            Expected::Configured(fp) => Verdict::Changed {
                expected: fp.clone(),
                presented: fp.of_like(key),
                source: "the connections file or inventory",
            },
            Expected::Pinned(fp) => Verdict::Changed {
                expected: fp.clone(),
                presented: fp.of_like(key),
                source: "the state store, pinned by an earlier run",
            },
            Expected::Unknown { accept_new: true } => Verdict::PinNew(Fingerprint::of(key)),
            Expected::Unknown { accept_new: false } => Verdict::Unknown(Fingerprint::of(key)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINR+ispcWMWv/2KdblSzW8CbpLWVxgxns14bVQ00I5Zk host";
    const KEY2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIImlR1jrLfWx8Hbyred2rXllfrD+sOnuMcqzyiEgUwoR";

    #[test]
    fn fingerprints_read_and_print_as_openssh_does() {
        let key = PublicKey::from_openssh(KEY).unwrap();
        let fp = Fingerprint::of(&key);
        let text = fp.to_string();
        // As `ssh-keygen -lf` prints it.
        assert_eq!(text, "SHA256:vaSffz8+ZrlmSDMSASSCl/KcfJR4cHZcdYmeNZVFjs8");
        assert_eq!(parse_expected(&text).unwrap(), fp);
        assert_eq!(parse_expected(&format!("{text}=")).unwrap(), fp);
        assert_eq!(parse_expected(KEY).unwrap(), fp);
        assert!(parse_expected("SHA256:tooshort").is_err());
        assert!(parse_expected("MD5:aa:bb").is_err());
        assert!(parse_expected("ssh-ed25519 notbase64").is_err());
    }

    #[test]
    fn verdicts() {
        let key = PublicKey::from_openssh(KEY).unwrap();
        let other = PublicKey::from_openssh(KEY2).unwrap();
        let fp = Fingerprint::of(&key);
        assert_eq!(
            Expected::Configured(fp.clone()).judge(&key),
            Verdict::Trusted
        );
        assert_eq!(Expected::Pinned(fp.clone()).judge(&key), Verdict::Trusted);
        match Expected::Pinned(fp.clone()).judge(&other) {
            Verdict::Changed {
                expected,
                presented,
                ..
            } => {
                assert_eq!(expected, fp);
                assert_eq!(presented, Fingerprint::of(&other));
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(
            Expected::Unknown { accept_new: true }.judge(&key),
            Verdict::PinNew(fp.clone())
        );
        assert_eq!(
            Expected::Unknown { accept_new: false }.judge(&key),
            Verdict::Unknown(fp)
        );
    }

    #[test]
    fn memory_pins_ignore_case() {
        let mut keys = MemoryHostKeys::default();
        keys.pin("A.example.com", "SHA256:x").unwrap();
        assert_eq!(
            keys.pinned("a.EXAMPLE.com").unwrap().as_deref(),
            Some("SHA256:x")
        );
    }
}
