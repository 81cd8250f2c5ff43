//! From a planned step to the script a host runs, and its command line.

use std::fmt;

use base64::Engine as _;
use sfbpatch_plan::{Action, Package, PlannedStep, ServerPlan, StepId, extract_dir, ps_quote};
use sfbpatch_topology::Fqdn;

use crate::templates::{Kind, Template, spec};
use crate::{RemoteError, ScriptResult, values};

/// The program and flags every command line starts with; the base64 script follows.
pub const COMMAND_PREFIX: &str = "powershell.exe -NoProfile -NonInteractive -EncodedCommand ";

/// The longest command line sent, in characters. Windows accepts 32,767 characters for a
/// process's command line; the rest is left to the shell sshd starts the command through.
pub const MAX_COMMAND_LINE: usize = 30_000;

/// What a script does on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Carry out a step (`step/<step id>`).
    Execute,
    /// Read whether a step's effect is there (`probe/<step id>`).
    Probe,
    /// Restart the server (`server/reboot`).
    Reboot,
    /// Bring W3SVC and the services back after a failure (`server/recover`).
    Recover,
    /// Read what the machine runs, changing nothing (`server/preflight`).
    Preflight,
    /// Stop a script sfbpatch gave up waiting for, with its process tree (`server/stop`,
    /// [`stop_script`]).
    Stop,
    /// Take the lock the server keeps for the controller patching it (`server/lock`,
    /// [`lock_script`]).
    Lock,
    /// Remove the controller's lock from the server (`server/unlock`, [`unlock_script`]).
    Unlock,
}

impl Operation {
    pub const ALL: [Operation; 8] = [
        Operation::Execute,
        Operation::Probe,
        Operation::Reboot,
        Operation::Recover,
        Operation::Preflight,
        Operation::Stop,
        Operation::Lock,
        Operation::Unlock,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Execute => "execute",
            Operation::Probe => "probe",
            Operation::Reboot => "reboot",
            Operation::Recover => "recover",
            Operation::Preflight => "preflight",
            Operation::Stop => "stop",
            Operation::Lock => "lock",
            Operation::Unlock => "unlock",
        }
    }

    /// The name of the template that carries out this operation (`step` is ignored for the
    /// operations on the whole server: [`Operation::is_server_wide`]).
    pub fn template_name(self, step: StepId) -> String {
        match self {
            Operation::Execute => format!("step/{step}"),
            Operation::Probe => format!("probe/{step}"),
            Operation::Reboot => "server/reboot".to_string(),
            Operation::Recover => "server/recover".to_string(),
            Operation::Preflight => "server/preflight".to_string(),
            Operation::Stop => "server/stop".to_string(),
            Operation::Lock => "server/lock".to_string(),
            Operation::Unlock => "server/unlock".to_string(),
        }
    }

    /// Acts on the whole server (`server/...`), not on one step.
    pub fn is_server_wide(self) -> bool {
        matches!(
            self,
            Operation::Reboot
                | Operation::Recover
                | Operation::Preflight
                | Operation::Stop
                | Operation::Lock
                | Operation::Unlock
        )
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A script ready to send: its template's name and the whole PowerShell text, the template
/// wrapped in `& { ... }` with every parameter bound from a literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub template: String,
    pub text: String,
}

impl Script {
    /// `powershell.exe -NoProfile -NonInteractive -EncodedCommand <base64 of the UTF-16LE text>`.
    pub fn command_line(&self) -> String {
        let utf16: Vec<u8> = self
            .text
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let encoded = base64::engine::general_purpose::STANDARD.encode(utf16);
        format!("{COMMAND_PREFIX}{encoded}")
    }

    /// [`crate::parse_result`], and the result must be this script's.
    pub fn parse_result(&self, stdout: &str) -> Result<ScriptResult, RemoteError> {
        let result = crate::parse_result(stdout)?;
        if result.template != self.template {
            return Err(RemoteError::WrongTemplate {
                expected: self.template.clone(),
                received: result.template,
            });
        }
        Ok(result)
    }
}

/// A parameter's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    Text(String),
    Bool(bool),
}

fn text(s: impl Into<String>) -> Arg {
    Arg::Text(s.into())
}

/// The script that carries out `op` for `step` on `server`. For the operations on the whole
/// server ([`Operation::is_server_wide`]) only the server counts ([`server_script`]).
///
/// Every value is checked (FQDNs, builds and instance names are validated types; SHA-256s,
/// paths, URLs and schema versions are checked here) and bound as a single-quoted literal
/// ([`ps_quote`]), so no value can become PowerShell syntax.
pub fn script_for(
    op: Operation,
    server: &ServerPlan,
    step: &PlannedStep,
    package: &Package,
) -> Result<Script, RemoteError> {
    script_on(op, server, step, &server.fqdn, package)
}

/// [`script_for`] for a step the plan runs on another machine (`run_on`: a back end's
/// database steps run on a patched Front End server of its pool). The script is bound to
/// `host` (its `-Server`), where it refuses to run on any other computer; the step's own
/// values (the SQL Server FQDN, ...) stay the server's.
pub fn script_on(
    op: Operation,
    server: &ServerPlan,
    step: &PlannedStep,
    host: &Fqdn,
    package: &Package,
) -> Result<Script, RemoteError> {
    if op.is_server_wide() {
        return server_script(op, server);
    }
    finish(
        op.template_name(step.id),
        &step_args(server, step, host, package)?,
    )
}

/// The script of an operation on the whole server (`server/reboot`, `server/recover`,
/// `server/preflight`), which takes the server's FQDN only.
///
/// # Panics
/// If `op` acts on one step ([`Operation::Execute`], [`Operation::Probe`]), or is
/// [`Operation::Stop`] (which names what to stop: [`stop_script`]), [`Operation::Lock`] or
/// [`Operation::Unlock`] (which name the lock: [`lock_script`], [`unlock_script`]).
pub fn server_script(op: Operation, server: &ServerPlan) -> Result<Script, RemoteError> {
    assert!(op.is_server_wide(), "{op} acts on a step");
    assert!(op != Operation::Stop, "server/stop names what to stop");
    assert!(
        !matches!(op, Operation::Lock | Operation::Unlock),
        "server/{op} names the lock's holder"
    );
    finish(
        op.template_name(StepId::CheckAdminRole),
        &[("Server", text(server.fqdn.as_str()))],
    )
}

/// How many characters of a timed-out command line's end [`stop_script`] looks for: its
/// parameter bindings, which name the server and the step's values.
pub const STOP_TAIL: usize = 160;

/// `server/stop` on `server`: stops every process whose command line ends like
/// `command_line` (the script sfbpatch gave up waiting for), with its process tree.
pub fn stop_script(server: &Fqdn, command_line: &str) -> Result<Script, RemoteError> {
    let tail_start = command_line.len().saturating_sub(STOP_TAIL);
    let tail = command_line.get(tail_start..).unwrap_or(command_line);
    let tail = values::command_tail("CommandTail", tail)?;
    finish(
        "server/stop".to_string(),
        &[
            ("Server", text(server.as_str())),
            ("CommandTail", text(tail)),
        ],
    )
}

/// `server/lock` on `server`: take the lock the server keeps for the controller patching it,
/// for `holder` (the controller's run) and the `generation` of its claim, until `expires_at`
/// (Unix milliseconds), unless another holder's lock is there after `now_ms` or the same
/// holder's shows a newer generation. The holder is 1 to 512 printable ASCII characters; each
/// number has at most 19 digits.
pub fn lock_script(
    server: &Fqdn,
    holder: &str,
    generation: u64,
    now_ms: u64,
    expires_at: u64,
) -> Result<Script, RemoteError> {
    finish(
        Operation::Lock.template_name(StepId::CheckAdminRole),
        &[
            ("Server", text(server.as_str())),
            ("Holder", text(values::holder("Holder", holder)?)),
            (
                "Generation",
                text(values::number("Generation", generation)?),
            ),
            ("NowMs", text(values::number("NowMs", now_ms)?)),
            ("ExpiresAt", text(values::number("ExpiresAt", expires_at)?)),
        ],
    )
}

/// `server/unlock` on `server`: remove the server's lock when `holder` holds it.
pub fn unlock_script(server: &Fqdn, holder: &str) -> Result<Script, RemoteError> {
    finish(
        Operation::Unlock.template_name(StepId::CheckAdminRole),
        &[
            ("Server", text(server.as_str())),
            ("Holder", text(values::holder("Holder", holder)?)),
        ],
    )
}

fn finish(name: String, args: &[(&'static str, Arg)]) -> Result<Script, RemoteError> {
    let template = spec(&name).expect("a template for every operation and step");
    let script = Script {
        template: name,
        text: wrap(template, args),
    };
    let length = script.command_line().len();
    if length > MAX_COMMAND_LINE {
        return Err(RemoteError::TooLong {
            template: script.template,
            length,
            max: MAX_COMMAND_LINE,
        });
    }
    Ok(script)
}

/// `& {` + template + `}` + ` -Name 'value'` for every parameter, in the template's order.
pub(crate) fn wrap(template: &Template, args: &[(&'static str, Arg)]) -> String {
    debug_assert_eq!(
        args.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        template.params.iter().map(|p| p.name).collect::<Vec<_>>(),
        "{}",
        template.name
    );
    let mut s = String::with_capacity(template.text.len() + 256);
    s.push_str("& {\n");
    s.push_str(template.text);
    s.push('}');
    for (name, arg) in args {
        debug_assert_eq!(
            template.param(name).map(|p| p.kind),
            Some(match arg {
                Arg::Text(_) => Kind::Text,
                Arg::Bool(_) => Kind::Bool,
            })
        );
        s.push_str(" -");
        s.push_str(name);
        s.push(' ');
        match arg {
            Arg::Text(v) => s.push_str(&ps_quote(v)),
            Arg::Bool(true) => s.push_str("$true"),
            Arg::Bool(false) => s.push_str("$false"),
        }
    }
    s.push('\n');
    s
}

fn mismatch(step: &PlannedStep) -> RemoteError {
    RemoteError::ActionMismatch {
        step: step.id,
        action: format!("{:?}", step.action),
    }
}

/// The parameters of `step/<id>` and `probe/<id>` (a probe takes its step's parameters).
fn step_args(
    server: &ServerPlan,
    step: &PlannedStep,
    host: &Fqdn,
    package: &Package,
) -> Result<Vec<(&'static str, Arg)>, RemoteError> {
    use StepId as S;
    let fqdn = ("Server", text(host.as_str()));
    let args = match (step.id, &step.action) {
        (S::CheckAdminRole, Action::CheckAdminRole)
        | (S::StopCsServices | S::StopCsServicesGac, Action::StopCsServices)
        | (S::StopW3svc, Action::StopW3svc)
        | (S::CloseManagementShells, Action::CloseManagementShells)
        | (S::StartW3svc, Action::StartW3svc)
        | (S::StartCsServices, Action::StartCsServices) => vec![fqdn],
        (
            S::StageUpdate,
            Action::StageUpdate {
                source,
                sha256,
                destination,
            },
        ) => {
            let (kind, source) = values::source(source)?;
            let destination = values::local_path("Destination", destination)?;
            let extract = values::local_path("ExtractFolder", &extract_dir(&destination))?;
            vec![
                fqdn,
                ("SourceKind", text(kind)),
                ("Source", text(source)),
                ("Sha256", text(values::sha256("Sha256", sha256)?)),
                ("Destination", text(destination)),
                ("ExtractFolder", text(extract)),
            ]
        }
        (
            S::CheckFabricState,
            Action::CheckFabricState {
                pool,
                readiness,
                reset_missing_replicas,
            },
        ) => vec![
            fqdn,
            ("Pool", text(pool.as_str())),
            ("ReadinessCmdlet", text(values::readiness_name(*readiness))),
            ("ResetMissingReplicas", Arg::Bool(*reset_missing_replicas)),
        ],
        (S::Failover, Action::Failover { computer })
        | (S::Failback, Action::Failback { computer }) => {
            vec![fqdn, ("Computer", text(computer.as_str()))]
        }
        (S::InstallUpdate, Action::InstallUpdate { path }) => vec![
            fqdn,
            ("Path", text(values::local_path("Path", path)?)),
            ("Build", text(package.version.to_string())),
            ("Sha256", text(values::sha256("Sha256", &package.sha256)?)),
            (
                "SchemaVersions",
                text(values::schema_versions(&package.schema_versions)?),
            ),
        ],
        (S::UpdateDatabases, action) => {
            let (variant, sql, exclude, by) = match action {
                Action::UpdateConfiguredDatabases {
                    sql_server_fqdn,
                    exclude_collocated_stores,
                } => (
                    "configured",
                    sql_server_fqdn,
                    *exclude_collocated_stores,
                    "",
                ),
                Action::UpdateLocalDatabases => ("local", &server.sql_server_fqdn, false, ""),
                Action::DatabasesUpdatedBy { server: by } => {
                    ("deferred", &server.sql_server_fqdn, false, by.as_str())
                }
                _ => return Err(mismatch(step)),
            };
            vec![
                fqdn,
                ("Variant", text(variant)),
                ("SqlServerFqdn", text(sql.as_str())),
                ("ExcludeCollocatedStores", Arg::Bool(exclude)),
                ("UpdatedBy", text(by)),
            ]
        }
        (
            S::Verify,
            Action::Verify {
                build,
                sql_server_fqdn,
                sql_instance,
                check_databases,
                local_databases,
                check_services,
                fabric_pool,
            },
        ) => vec![
            fqdn,
            ("Build", text(build.to_string())),
            ("SqlServerFqdn", text(sql_server_fqdn.as_str())),
            ("SqlInstance", text(sql_instance.as_str())),
            ("CheckDatabases", Arg::Bool(*check_databases)),
            ("LocalDatabases", Arg::Bool(*local_databases)),
            (
                "SchemaVersions",
                text(values::schema_versions(&package.schema_versions)?),
            ),
            ("CheckServices", Arg::Bool(*check_services)),
            (
                "FabricPool",
                text(fabric_pool.as_ref().map_or("", |p| p.as_str())),
            ),
        ],
        _ => return Err(mismatch(step)),
    };
    Ok(args)
}
