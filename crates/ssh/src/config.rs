//! Where and how to reach each server: the connections file (`--connections FILE`), the TOML
//! inventory's connection keys, and the rules that merge them (docs/ssh.md).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sfbpatch_topology::{Connection, Fqdn};
use toml::Spanned;

use crate::hostkey::{self, Fingerprint};

/// The SSH port when neither file gives one.
pub const DEFAULT_PORT: u16 = 22;

/// A connections file or inventory value that cannot be used. Names the file, the line and the
/// server where there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (as given), if the error is in one.
    pub origin: Option<String>,
    /// 1-based line, if known.
    pub line: Option<usize>,
    /// The server the error is about, if any.
    pub server: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.origin, self.line) {
            (Some(o), Some(l)) => write!(f, "{o}:{l}: ")?,
            (Some(o), None) => write!(f, "{o}: ")?,
            _ => {}
        }
        if let Some(s) = &self.server {
            write!(f, "server {s}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// How the client proves who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A private key file (OpenSSH format, not encrypted).
    File(PathBuf),
    /// The keys an ssh-agent holds (`SSH_AUTH_SOCK`).
    Agent,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::File(p) => write!(f, "key {}", p.display()),
            Identity::Agent => f.write_str("the keys of ssh-agent"),
        }
    }
}

/// How to reach one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The server's FQDN, as the plan spells it.
    pub server: String,
    /// Host name or address to connect to.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity: Identity,
    /// The host key expected from configuration (connections file or inventory), if any.
    pub host_key: Option<Fingerprint>,
}

impl Endpoint {
    /// `host:port`, with IPv6 addresses in brackets.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One `[[server]]` table (or inventory machine) after checking, before merging.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Entry {
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    identity_file: Option<PathBuf>,
    host_key: Option<Fingerprint>,
}

/// A parsed connections file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionsFile {
    origin: String,
    default_user: Option<String>,
    default_identity: Option<PathBuf>,
    /// By lower-case FQDN.
    servers: HashMap<String, Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    defaults: Option<Spanned<RawDefaults>>,
    #[serde(default)]
    server: Vec<Spanned<RawServer>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    user: Option<Spanned<String>>,
    identity_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    fqdn: Spanned<String>,
    host: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    user: Option<Spanned<String>>,
    identity_file: Option<Spanned<String>>,
    host_key: Option<Spanned<String>>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Read a connections file. Relative `identity_file` paths are relative to `base_dir` (the
/// file's folder); `~/` is the home directory.
pub fn parse_connections(
    text: &str,
    origin: &str,
    base_dir: &Path,
) -> Result<ConnectionsFile, ConfigError> {
    let err = |offset: Option<usize>, server: Option<&str>, message: String| ConfigError {
        origin: Some(origin.to_string()),
        line: offset.map(|o| line_of(text, o)),
        server: server.map(str::to_string),
        message,
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        err(
            e.span().map(|s| s.start),
            None,
            e.message().trim().to_string(),
        )
    })?;
    let mut file = ConnectionsFile {
        origin: origin.to_string(),
        ..ConnectionsFile::default()
    };
    if let Some(defaults) = raw.defaults {
        let defaults = defaults.into_inner();
        if let Some(user) = defaults.user {
            file.default_user = Some(
                check_user(user.get_ref())
                    .map_err(|m| err(Some(user.span().start), None, format!("[defaults] {m}")))?,
            );
        }
        if let Some(id) = defaults.identity_file {
            file.default_identity = Some(
                resolve_path(id.get_ref(), base_dir)
                    .map_err(|m| err(Some(id.span().start), None, format!("[defaults] {m}")))?,
            );
        }
    }
    for table in raw.server {
        let at = table.span().start;
        let server = table.into_inner();
        let name = server.fqdn.get_ref();
        let fqdn = Fqdn::parse(name).map_err(|e| {
            err(
                Some(server.fqdn.span().start),
                None,
                format!("'fqdn' is not a valid FQDN: {e}"),
            )
        })?;
        let key = fqdn.as_str().to_ascii_lowercase();
        let named = Some(fqdn.as_str());
        let mut entry = Entry::default();
        if let Some(host) = &server.host {
            entry.host = Some(
                check_host(host.get_ref()).map_err(|m| err(Some(host.span().start), named, m))?,
            );
        }
        if let Some(port) = &server.port {
            let p = *port.get_ref();
            entry.port = Some(u16::try_from(p).ok().filter(|p| *p != 0).ok_or_else(|| {
                err(
                    Some(port.span().start),
                    named,
                    format!("'port' must be an integer from 1 to 65535, not {p}"),
                )
            })?);
        }
        if let Some(user) = &server.user {
            entry.user = Some(
                check_user(user.get_ref()).map_err(|m| err(Some(user.span().start), named, m))?,
            );
        }
        if let Some(id) = &server.identity_file {
            entry.identity_file = Some(
                resolve_path(id.get_ref(), base_dir)
                    .map_err(|m| err(Some(id.span().start), named, m))?,
            );
        }
        if let Some(hk) = &server.host_key {
            entry.host_key = Some(
                hostkey::parse_expected(hk.get_ref())
                    .map_err(|m| err(Some(hk.span().start), named, format!("'host_key' {m}")))?,
            );
        }
        if file.servers.insert(key, entry).is_some() {
            return Err(err(
                Some(at),
                named,
                "is listed twice; give each server one [[server]] table".into(),
            ));
        }
    }
    Ok(file)
}

fn check_user(user: &str) -> Result<String, String> {
    let valid = !user.is_empty()
        && user.len() <= 256
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@\\$".contains(c));
    if valid {
        Ok(user.to_string())
    } else {
        Err(format!(
            "'user' is not a valid user name '{}' (letters, digits and . _ - @ \\ $)",
            user.escape_debug()
        ))
    }
}

fn check_host(host: &str) -> Result<String, String> {
    if Fqdn::parse(host).is_ok() || host.parse::<IpAddr>().is_ok() {
        Ok(host.to_string())
    } else {
        Err(format!(
            "'host' is neither a host name nor an IP address: '{}'",
            host.escape_debug()
        ))
    }
}

fn resolve_path(path: &str, base_dir: &Path) -> Result<PathBuf, String> {
    if path.trim().is_empty() {
        return Err("'identity_file' is empty".into());
    }
    if let Some(rest) = path.strip_prefix("~/") {
        let home = std::env::var_os("HOME")
            .or_else(|| std::env::var_os("USERPROFILE"))
            .ok_or_else(|| format!("'identity_file' {path} starts with ~/ but HOME is not set"))?;
        return Ok(PathBuf::from(home).join(rest));
    }
    let p = Path::new(path);
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    })
}

/// The connection keys of an inventory (`Topology::connections`), read with the topology.
/// Relative `identity_file` paths are relative to `base_dir` (the inventory's folder).
pub fn inventory_entries(
    connections: &[Connection],
    origin: &str,
    base_dir: &Path,
) -> Result<Vec<(String, InventoryEntry)>, ConfigError> {
    connections
        .iter()
        .map(|c| {
            let server = c.machine.as_str().to_string();
            let err = |message: String| ConfigError {
                origin: Some(origin.to_string()),
                line: (c.span.line > 0).then_some(c.span.line as usize),
                server: Some(server.clone()),
                message,
            };
            let entry = Entry {
                host: c.host.clone(),
                port: c.port,
                user: c.user.clone(),
                identity_file: c
                    .identity_file
                    .as_deref()
                    .map(|p| resolve_path(p, base_dir))
                    .transpose()
                    .map_err(err)?,
                host_key: c
                    .host_key
                    .as_deref()
                    .map(hostkey::parse_expected)
                    .transpose()
                    .map_err(|m| err(format!("'host_key' {m}")))?,
            };
            Ok((server.to_ascii_lowercase(), InventoryEntry(entry)))
        })
        .collect()
}

/// An inventory machine's connection keys, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryEntry(Entry);

/// Merge what is known about each server, per key: the connections file's `[[server]]`
/// table, then the inventory's machine table, then the connections file's `[defaults]`, then
/// the built-in defaults (the FQDN as host, port 22, ssh-agent). Every server needs a user.
pub fn endpoints<'a>(
    servers: impl IntoIterator<Item = &'a str>,
    file: Option<&ConnectionsFile>,
    inventory: &[(String, InventoryEntry)],
) -> Result<Vec<Endpoint>, ConfigError> {
    let empty = Entry::default();
    servers
        .into_iter()
        .map(|server| {
            let key = server.to_ascii_lowercase();
            let listed = file.and_then(|f| f.servers.get(&key)).unwrap_or(&empty);
            let inv = inventory
                .iter()
                .find(|(k, _)| *k == key)
                .map_or(&empty, |(_, e)| &e.0);
            let user = listed
                .user
                .clone()
                .or_else(|| inv.user.clone())
                .or_else(|| file.and_then(|f| f.default_user.clone()))
                .ok_or_else(|| ConfigError {
                    origin: file.map(|f| f.origin.clone()),
                    line: None,
                    server: Some(server.to_string()),
                    message: "no user to connect as: set 'user' in the connections file \
                              ([defaults] or the server's [[server]] table) or in the \
                              inventory's machine table"
                        .into(),
                })?;
            let identity = listed
                .identity_file
                .clone()
                .or_else(|| inv.identity_file.clone())
                .or_else(|| file.and_then(|f| f.default_identity.clone()))
                .map_or(Identity::Agent, Identity::File);
            Ok(Endpoint {
                server: server.to_string(),
                host: listed
                    .host
                    .clone()
                    .or_else(|| inv.host.clone())
                    .unwrap_or_else(|| server.to_string()),
                port: listed.port.or(inv.port).unwrap_or(DEFAULT_PORT),
                user,
                identity,
                host_key: listed.host_key.clone().or_else(|| inv.host_key.clone()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";

    fn parse(text: &str) -> Result<ConnectionsFile, ConfigError> {
        parse_connections(text, "conn.toml", Path::new("/etc/sfbpatch"))
    }

    #[test]
    fn reads_defaults_and_servers() {
        let file = parse(&format!(
            r#"
[defaults]
user = 'CONTOSO\sfbpatch'
identity_file = "keys/id_ed25519"

[[server]]
fqdn = "SQL1.contoso.com"
host = "10.0.0.5"
port = 2222
host_key = "{FP}"

[[server]]
fqdn = "sql2.contoso.com"
host = "sql2.contoso.com"
port = 22
user = "other"
identity_file = "/abs/key"
"#
        ))
        .unwrap();
        let eps = endpoints(
            ["sql1.contoso.com", "sql2.contoso.com", "sql3.contoso.com"],
            Some(&file),
            &[],
        )
        .unwrap();
        assert_eq!(eps[0].server, "sql1.contoso.com");
        assert_eq!(eps[0].address(), "10.0.0.5:2222");
        assert_eq!(eps[0].user, "CONTOSO\\sfbpatch");
        assert_eq!(
            eps[0].identity,
            Identity::File(PathBuf::from("/etc/sfbpatch/keys/id_ed25519"))
        );
        assert_eq!(eps[0].host_key.as_ref().unwrap().to_string(), FP);
        assert_eq!(eps[1].user, "other");
        assert_eq!(eps[1].identity, Identity::File(PathBuf::from("/abs/key")));
        assert_eq!(eps[1].host_key, None);
        // Not listed: the defaults, the FQDN as host, port 22.
        assert_eq!(eps[2].address(), "sql3.contoso.com:22");
        assert_eq!(eps[2].user, "CONTOSO\\sfbpatch");
    }

    #[test]
    fn errors_name_file_line_and_server() {
        let cases = [
            (
                "[[server]]\nfqdn = \"a.example.com\"\nport = 70000\n",
                "conn.toml:3: server a.example.com: 'port' must be an integer from 1 to 65535, not 70000",
            ),
            (
                "[[server]]\nfqdn = \"a.example.com\"\nhost_key = \"MD5:aa\"\n",
                "conn.toml:3: server a.example.com: 'host_key' is not an OpenSSH fingerprint (SHA256:...) or public key (ssh-ed25519 AAAA...)",
            ),
            (
                "[[server]]\nfqdn = \"a.example.com\"\nuser = \"a b\"\n",
                "conn.toml:3: server a.example.com: 'user' is not a valid user name 'a b' (letters, digits and . _ - @ \\ $)",
            ),
            (
                "[[server]]\nfqdn = \"a.example.com\"\nhost = \"a;b\"\n",
                "conn.toml:3: server a.example.com: 'host' is neither a host name nor an IP address: 'a;b'",
            ),
            (
                "[[server]]\nfqdn = \"a.example.com\"\n\n[[server]]\nfqdn = \"A.example.com\"\n",
                "conn.toml:4: server A.example.com: is listed twice; give each server one [[server]] table",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).unwrap_err().to_string(), want, "{text}");
        }
        let e = parse("[[server]]\nfqdn = \"a.example.com\"\nprot = 22\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().contains("unknown field `prot`"), "{e}");
        let e = parse("[[server]]\nhost = \"a.example.com\"\n").unwrap_err();
        assert!(e.to_string().contains("missing field `fqdn`"), "{e}");
        let e = parse("[defaults]\nuser = \"x\"\n[defaults]\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        let e = parse("[[server]]\nfqdn = \"bad_name!\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn a_server_without_a_user_is_an_error() {
        let file = parse("[[server]]\nfqdn = \"a.example.com\"\n").unwrap();
        let e = endpoints(["a.example.com"], Some(&file), &[]).unwrap_err();
        assert_eq!(e.server.as_deref(), Some("a.example.com"));
        assert!(e.to_string().contains("no user to connect as"), "{e}");
    }

    #[test]
    fn the_file_wins_over_the_inventory_which_wins_over_defaults() {
        let file = parse(
            "[defaults]\nuser = \"d\"\nidentity_file = \"/d\"\n[[server]]\nfqdn = \"a.example.com\"\nport = 1022\n",
        )
        .unwrap();
        let inventory = vec![(
            "a.example.com".to_string(),
            InventoryEntry(Entry {
                host: Some("10.1.1.1".into()),
                port: Some(2022),
                user: Some("inv".into()),
                identity_file: None,
                host_key: None,
            }),
        )];
        let eps = endpoints(["A.example.com"], Some(&file), &inventory).unwrap();
        assert_eq!(eps[0].address(), "10.1.1.1:1022");
        assert_eq!(eps[0].user, "inv");
        assert_eq!(eps[0].identity, Identity::File("/d".into()));
        // Without a file: the inventory alone, and the agent.
        let eps = endpoints(["a.example.com"], None, &inventory).unwrap();
        assert_eq!(eps[0].address(), "10.1.1.1:2022");
        assert_eq!(eps[0].identity, Identity::Agent);
    }
}
