//! From a command line back to the template and its parameters, and from those to the typed
//! request a host (such as `sfbpatch lab shell`) carries out.

use std::collections::BTreeMap;

use base64::Engine as _;
use sfbpatch_plan::{Action, Build, StepId, extract_dir};
use sfbpatch_topology::{Fqdn, StoreKind};

use crate::error::excerpt;
use crate::script::{COMMAND_PREFIX, Operation};
use crate::templates::{Kind, Template, marker, spec};
use crate::{RemoteError, values};

/// A decoded script: which known template it is, and the value bound to each parameter
/// (text as PowerShell reads the literal; `$true`/`$false` as `true`/`false`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedScript {
    pub template: String,
    pub params: BTreeMap<String, String>,
}

/// One step and its typed action, rebuilt from a script's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedStep {
    pub id: StepId,
    pub action: Action,
}

/// What a script tells about the package: the build, the installer's SHA-256 and the schema
/// versions, where its template carries them (`install-update`, `verify`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackageFacts {
    pub version: Option<Build>,
    pub sha256: Option<String>,
    pub schema_versions: BTreeMap<StoreKind, String>,
}

/// What a `server/lock` script asks for ([`crate::lock_script`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRequest {
    /// Who takes the lock: the controller's run.
    pub holder: String,
    /// The generation of the controller's claim on the run.
    pub generation: u64,
    /// The controller's clock, Unix milliseconds: a lock of another holder that expires
    /// later is kept.
    pub now_ms: u64,
    /// When the lock taken lapses, Unix milliseconds.
    pub expires_at: u64,
}

/// The typed request a decoded script stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub operation: Operation,
    /// The server the script is for (it refuses to run on any other).
    pub server: Fqdn,
    /// For [`Operation::Execute`] and [`Operation::Probe`]: the step and its action.
    pub step: Option<RequestedStep>,
    pub package: PackageFacts,
    /// For [`Operation::Stop`]: the end of the command line to stop.
    pub command_tail: Option<String>,
    /// For [`Operation::Lock`]: the lock to take.
    pub lock: Option<LockRequest>,
    /// For [`Operation::Unlock`]: whose lock to remove.
    pub unlock_holder: Option<String>,
}

/// Reverses [`Script::command_line`](crate::Script::command_line): checks the program and
/// flags, decodes base64 and UTF-16LE, recognises a known template by its marker and its exact
/// text (a script whose text differs from the embedded template is refused), and reads the
/// parameter bindings.
pub fn decode_command_line(command_line: &str) -> Result<DecodedScript, RemoteError> {
    let not_ours = |reason: &str| RemoteError::NotACommandLine {
        reason: reason.to_string(),
        received: excerpt(command_line),
    };
    let trimmed = command_line.trim();
    let encoded = trimmed.strip_prefix(COMMAND_PREFIX).ok_or_else(|| {
        not_ours("expected powershell.exe -NoProfile -NonInteractive -EncodedCommand <base64>")
    })?;
    if encoded.is_empty() || encoded.contains(char::is_whitespace) {
        return Err(not_ours(
            "expected exactly one base64 argument after -EncodedCommand",
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| RemoteError::BadEncoding {
            reason: format!("not base64: {e}"),
        })?;
    if bytes.len() % 2 != 0 {
        return Err(RemoteError::BadEncoding {
            reason: format!("{} bytes cannot be UTF-16", bytes.len()),
        });
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    let text = String::from_utf16(&units).map_err(|e| RemoteError::BadEncoding {
        reason: format!("not UTF-16LE: {e}"),
    })?;
    decode_script(&text)
}

/// The script text (what [`Script::text`](crate::Script::text) holds) back to its template
/// and parameters; see [`decode_command_line`].
pub fn decode_script(text: &str) -> Result<DecodedScript, RemoteError> {
    let unknown = |reason: String| RemoteError::UnknownTemplate {
        reason,
        received: excerpt(text),
    };
    let body = text
        .strip_prefix("& {\n")
        .ok_or_else(|| unknown("it does not start with '& {' and a template".to_string()))?;
    let first = body.lines().next().unwrap_or("");
    let (name, version) =
        marker(first).ok_or_else(|| unknown("it has no sfbpatch-template marker".to_string()))?;
    let template = spec(name).ok_or_else(|| {
        unknown(format!(
            "this sfbpatch has no template '{}'",
            name.escape_debug()
        ))
    })?;
    let tampered = |detail: String| RemoteError::TamperedTemplate {
        template: template.name.to_string(),
        detail,
    };
    let own_version = template
        .text
        .lines()
        .next()
        .and_then(marker)
        .map_or("", |(_, v)| v);
    if version != own_version {
        return Err(tampered(format!(
            "is version {}, while this sfbpatch has {own_version}",
            version.escape_debug()
        )));
    }
    let rest = body.strip_prefix(template.text).ok_or_else(|| {
        tampered(format!(
            "its text differs from the template at line {}",
            first_difference(body, template.text)
        ))
    })?;
    let bindings = rest.strip_prefix('}').ok_or_else(|| {
        tampered("text follows the template before its closing brace".to_string())
    })?;
    let params = parse_bindings(template, bindings)?;
    Ok(DecodedScript {
        template: template.name.to_string(),
        params,
    })
}

/// The 1-based line of `template` where `body` first differs.
fn first_difference(body: &str, template: &str) -> usize {
    let mut body_lines = body.split('\n');
    for (i, line) in template.split('\n').enumerate() {
        if body_lines.next() != Some(line) {
            return i + 1;
        }
    }
    template.split('\n').count()
}

fn is_single_quote(c: char) -> bool {
    matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}')
}

/// ` -Name 'value' -Flag $true ...`, each parameter of the template exactly once.
fn parse_bindings(template: &Template, s: &str) -> Result<BTreeMap<String, String>, RemoteError> {
    let bad = |reason: String| RemoteError::BadParameters {
        template: template.name.to_string(),
        reason,
    };
    let s = s
        .strip_suffix("\r\n")
        .or_else(|| s.strip_suffix('\n'))
        .unwrap_or(s);
    let mut params = BTreeMap::new();
    let mut rest = s;
    while !rest.is_empty() {
        let after_dash = rest
            .strip_prefix(" -")
            .ok_or_else(|| bad(format!("expected ' -Name value', found {}", excerpt(rest))))?;
        let name_len = after_dash
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(after_dash.len());
        let name = &after_dash[..name_len];
        let param = template
            .param(name)
            .ok_or_else(|| bad(format!("unknown parameter {}", excerpt(name))))?;
        let value_start = after_dash[name_len..]
            .strip_prefix(' ')
            .ok_or_else(|| bad(format!("-{name} has no value")))?;
        let (value, after) = match param.kind {
            Kind::Text => read_literal(value_start)
                .ok_or_else(|| bad(format!("-{name} is not one single-quoted literal")))?,
            Kind::Bool => {
                if let Some(after) = value_start.strip_prefix("$true") {
                    ("true".to_string(), after)
                } else if let Some(after) = value_start.strip_prefix("$false") {
                    ("false".to_string(), after)
                } else {
                    return Err(bad(format!("-{name} is not $true or $false")));
                }
            }
        };
        if !(after.is_empty() || after.starts_with(' ')) {
            return Err(bad(format!(
                "-{name}: unexpected text after the value: {}",
                excerpt(after)
            )));
        }
        if params.insert(name.to_string(), value).is_some() {
            return Err(bad(format!("-{name} is bound twice")));
        }
        rest = after;
    }
    let missing: Vec<&str> = template
        .params
        .iter()
        .map(|p| p.name)
        .filter(|n| !params.contains_key(*n))
        .collect();
    if !missing.is_empty() {
        return Err(bad(format!("missing -{}", missing.join(", -"))));
    }
    Ok(params)
}

/// A single-quoted literal at the start of `s`, read as PowerShell reads it: a doubled
/// single-quote character is one quote; a lone one ends the literal. Returns the value and the
/// text after the literal; `None` when `s` does not start with a complete literal (or holds a
/// pair of two different quote characters, which sfbpatch never writes).
fn read_literal(s: &str) -> Option<(String, &str)> {
    let mut chars = s.char_indices().peekable();
    match chars.next() {
        Some((_, '\'')) => {}
        _ => return None,
    }
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        if is_single_quote(c) {
            match chars.peek() {
                Some(&(_, next)) if next == c => {
                    value.push(c);
                    chars.next();
                }
                Some(&(_, next)) if is_single_quote(next) => return None,
                _ => return Some((value, &s[i + c.len_utf8()..])),
            }
        } else {
            value.push(c);
        }
    }
    None
}

impl DecodedScript {
    fn get(&self, name: &str) -> &str {
        self.params
            .get(name)
            .map(String::as_str)
            .expect("decoding checked every parameter is bound")
    }

    /// The typed request: every value validated again ([`Fqdn`], [`Build`], SHA-256, paths,
    /// instance name, schema versions), the step's [`Action`] rebuilt.
    pub fn request(&self) -> Result<Request, RemoteError> {
        let bad = |e: RemoteError| match e {
            RemoteError::InvalidValue { param, reason } => RemoteError::BadParameters {
                template: self.template.clone(),
                reason: format!("-{param}: {reason}"),
            },
            other => other,
        };
        self.request_unmapped().map_err(bad)
    }

    fn request_unmapped(&self) -> Result<Request, RemoteError> {
        let server = values::fqdn("Server", self.get("Server"))?;
        let (kind, name) = self
            .template
            .split_once('/')
            .expect("template names are kind/name");
        let operation = match (kind, name) {
            ("step", _) => Operation::Execute,
            ("probe", _) => Operation::Probe,
            ("server", "reboot") => Operation::Reboot,
            ("server", "recover") => Operation::Recover,
            ("server", "preflight") => Operation::Preflight,
            ("server", "stop") => Operation::Stop,
            ("server", "lock") => Operation::Lock,
            ("server", "unlock") => Operation::Unlock,
            _ => unreachable!("known templates only"),
        };
        let mut package = PackageFacts::default();
        let command_tail = match operation {
            Operation::Stop => Some(values::command_tail(
                "CommandTail",
                self.get("CommandTail"),
            )?),
            _ => None,
        };
        let lock = match operation {
            Operation::Lock => Some(LockRequest {
                holder: values::holder("Holder", self.get("Holder"))?,
                generation: values::parse_number("Generation", self.get("Generation"))?,
                now_ms: values::parse_number("NowMs", self.get("NowMs"))?,
                expires_at: values::parse_number("ExpiresAt", self.get("ExpiresAt"))?,
            }),
            _ => None,
        };
        let unlock_holder = match operation {
            Operation::Unlock => Some(values::holder("Holder", self.get("Holder"))?),
            _ => None,
        };
        let step = match operation {
            Operation::Reboot
            | Operation::Recover
            | Operation::Preflight
            | Operation::Stop
            | Operation::Lock
            | Operation::Unlock => None,
            Operation::Execute | Operation::Probe => {
                let id = StepId::parse(name).expect("step templates are named by step id");
                let action = self.action(id, &mut package)?;
                Some(RequestedStep { id, action })
            }
        };
        Ok(Request {
            operation,
            server,
            step,
            package,
            command_tail,
            lock,
            unlock_holder,
        })
    }

    fn action(&self, id: StepId, package: &mut PackageFacts) -> Result<Action, RemoteError> {
        use StepId as S;
        let action = match id {
            S::CheckFabricState => Action::CheckFabricState {
                pool: values::fqdn("Pool", self.get("Pool"))?,
                readiness: values::readiness("ReadinessCmdlet", self.get("ReadinessCmdlet"))?,
                reset_missing_replicas: values::flag(
                    "ResetMissingReplicas",
                    self.get("ResetMissingReplicas"),
                )?,
            },
            S::Failover => Action::Failover {
                computer: values::fqdn("Computer", self.get("Computer"))?,
            },
            S::Failback => Action::Failback {
                computer: values::fqdn("Computer", self.get("Computer"))?,
            },
            S::CheckAdminRole => Action::CheckAdminRole,
            S::StopCsServices | S::StopCsServicesGac => Action::StopCsServices,
            S::StopW3svc => Action::StopW3svc,
            S::CloseManagementShells => Action::CloseManagementShells,
            S::StartW3svc => Action::StartW3svc,
            S::StartCsServices => Action::StartCsServices,
            S::StageUpdate => {
                let destination = values::local_path("Destination", self.get("Destination"))?;
                let extract = self.get("ExtractFolder");
                if extract != extract_dir(&destination) {
                    return Err(RemoteError::InvalidValue {
                        param: "ExtractFolder".to_string(),
                        reason: format!(
                            "'{extract}' is not the folder next to the staged installer ({})",
                            extract_dir(&destination)
                        ),
                    });
                }
                Action::StageUpdate {
                    source: values::installer(self.get("SourceKind"), self.get("Source"))?,
                    sha256: values::sha256("Sha256", self.get("Sha256"))?,
                    destination,
                }
            }
            S::InstallUpdate => {
                package.version = Some(values::build("Build", self.get("Build"))?);
                package.sha256 = Some(values::sha256("Sha256", self.get("Sha256"))?);
                package.schema_versions =
                    values::parse_schema_versions(self.get("SchemaVersions"))?;
                Action::InstallUpdate {
                    path: values::local_path("Path", self.get("Path"))?,
                }
            }
            S::UpdateDatabases => {
                let sql = values::fqdn("SqlServerFqdn", self.get("SqlServerFqdn"))?;
                let exclude = values::flag(
                    "ExcludeCollocatedStores",
                    self.get("ExcludeCollocatedStores"),
                )?;
                let by = self.get("UpdatedBy");
                let variant = self.get("Variant");
                let invalid = |param: &str, reason: String| RemoteError::InvalidValue {
                    param: param.to_string(),
                    reason,
                };
                if !matches!(variant, "configured" | "local" | "deferred") {
                    return Err(invalid(
                        "Variant",
                        format!(
                            "'{}' is not configured, local or deferred",
                            variant.escape_debug()
                        ),
                    ));
                }
                if (variant == "deferred") == by.is_empty() {
                    return Err(invalid(
                        "UpdatedBy",
                        "names the node that updates the databases when Variant is 'deferred', \
                         and is '' otherwise"
                            .to_string(),
                    ));
                }
                if exclude && variant != "configured" {
                    return Err(invalid(
                        "ExcludeCollocatedStores",
                        "is $true only with Variant 'configured'".to_string(),
                    ));
                }
                match variant {
                    "configured" => Action::UpdateConfiguredDatabases {
                        sql_server_fqdn: sql,
                        exclude_collocated_stores: exclude,
                    },
                    "local" => Action::UpdateLocalDatabases,
                    _ => Action::DatabasesUpdatedBy {
                        server: values::fqdn("UpdatedBy", by)?,
                    },
                }
            }
            S::Verify => {
                let build = values::build("Build", self.get("Build"))?;
                package.version = Some(build);
                package.schema_versions =
                    values::parse_schema_versions(self.get("SchemaVersions"))?;
                Action::Verify {
                    build,
                    sql_server_fqdn: values::fqdn("SqlServerFqdn", self.get("SqlServerFqdn"))?,
                    sql_instance: values::instance("SqlInstance", self.get("SqlInstance"))?,
                    check_databases: values::flag("CheckDatabases", self.get("CheckDatabases"))?,
                    local_databases: values::flag("LocalDatabases", self.get("LocalDatabases"))?,
                    check_services: values::flag("CheckServices", self.get("CheckServices"))?,
                    fabric_pool: match self.get("FabricPool") {
                        "" => None,
                        pool => Some(values::fqdn("FabricPool", pool)?),
                    },
                }
            }
        };
        Ok(action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_read_as_powershell_reads_them() {
        assert_eq!(read_literal("'a' x"), Some(("a".to_string(), " x")));
        assert_eq!(read_literal("'it''s'"), Some(("it's".to_string(), "")));
        assert_eq!(
            read_literal("'a\u{2019}\u{2019}b'"),
            Some(("a\u{2019}b".to_string(), ""))
        );
        // A lone typographic quote ends the literal, as it does in PowerShell.
        assert_eq!(
            read_literal("'a\u{2019} -x"),
            Some(("a".to_string(), " -x"))
        );
        assert_eq!(read_literal("'unterminated"), None);
        assert_eq!(read_literal("\"double\""), None);
        assert_eq!(read_literal("'mixed'\u{2019}pair'"), None);
    }
}
