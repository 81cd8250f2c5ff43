//! The faults file: `[[fault]]` tables that make one step on one server misbehave.

use std::collections::BTreeMap;

use sfbpatch_plan::StepId;
use toml::{Spanned, Value};

use crate::LabError;

/// One injected fault, as read from the faults file.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// The server's FQDN as written (matched ignoring ASCII case).
    pub server: String,
    /// The step the fault acts on; `None` for a fault of the machine itself (its state before
    /// the run, its restart, its recovery).
    pub step: Option<StepId>,
    pub kind: FaultKind,
    /// Where the fault was read from, for messages: the file name, the line of its
    /// `[[fault]]` header and its 1-based position among the faults.
    pub origin: String,
    pub line: u32,
    pub index: usize,
}

/// What a fault does. See `docs/lab.md` for the exact rules.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// The step returns `code` without effect; for `install-update`, 3010 applies the update
    /// and leaves a reboot pending. Fires on the first `times` attempts (0 = every attempt).
    ExitCode { code: i32, times: u32 },
    /// The first run of the step takes this long instead of its usual duration.
    Duration { minutes: f64 },
    /// The step hangs: the attempt lasts the request's timeout and its outcome is unknown.
    /// Fires on the first `times` attempts (0 = every attempt).
    Hang { times: u32 },
    /// From the first attempt of the step the server cannot be reached for this long.
    Unreachable { minutes: f64 },
    /// Just before the step first runs, this many Management Shells are opened on the server.
    OpenShells { count: u32 },
    /// The server's disk is full: `stage-update` (exit 112) or `install-update` (exit 1603,
    /// rolled back) fails on every attempt.
    DiskFull,
    /// `Get-CsPoolFabricState` shows missing replicas for the pool of this Front End server
    /// (step `check-fabric-state`) from the start.
    MissingReplicas,
    /// The pool's upgrade readiness answers `Busy` on the first `times` attempts of
    /// `check-fabric-state` on this server (0 = every attempt).
    Busy { times: u32 },
    /// Before the run, the machine waits for a restart (no step).
    RebootPending,
    /// Before the run, the machine's Skype for Business services are stopped (no step).
    OutOfService,
    /// The machine's next restart takes this long (no step).
    RestartMinutes { minutes: f64 },
    /// The machine's next recovery takes this long (no step).
    RecoveryMinutes { minutes: f64 },
    /// From the first attempt of `update-databases`, the SQL Server it updates is down for
    /// this long: `Install-CsDatabase` cannot connect.
    SqlDown { minutes: f64 },
    /// The SQL Server fails over (AlwaysOn or a failover cluster instance) in the middle of
    /// `update-databases`: the first `times` attempts update half of what is behind and fail.
    SqlFailover { times: u32 },
    /// The first attempt of `install-update` loses its session after a minute while the
    /// installer keeps running on the server for this long in all.
    InstallerOutlives { minutes: f64 },
    /// The probe of the step fails (it cannot read the server) on its first `times` calls.
    ProbeFails { times: u32 },
}

impl FaultKind {
    /// The key that selects the kind in the faults file.
    pub fn key(&self) -> &'static str {
        match self {
            FaultKind::ExitCode { .. } => "exit_code",
            FaultKind::Duration { .. } => "duration_minutes",
            FaultKind::Hang { .. } => "hang",
            FaultKind::Unreachable { .. } => "unreachable_minutes",
            FaultKind::OpenShells { .. } => "open_shells",
            FaultKind::DiskFull => "disk_full",
            FaultKind::MissingReplicas => "missing_replicas",
            FaultKind::Busy { .. } => "busy",
            FaultKind::RebootPending => "reboot_pending",
            FaultKind::OutOfService => "out_of_service",
            FaultKind::RestartMinutes { .. } => "restart_minutes",
            FaultKind::RecoveryMinutes { .. } => "recovery_minutes",
            FaultKind::SqlDown { .. } => "sql_down_minutes",
            FaultKind::SqlFailover { .. } => "sql_failover",
            FaultKind::InstallerOutlives { .. } => "installer_outlives_minutes",
            FaultKind::ProbeFails { .. } => "probe_fails",
        }
    }
}

const KIND_KEYS: [&str; 16] = [
    "exit_code",
    "duration_minutes",
    "hang",
    "unreachable_minutes",
    "open_shells",
    "disk_full",
    "missing_replicas",
    "busy",
    "reboot_pending",
    "out_of_service",
    "restart_minutes",
    "recovery_minutes",
    "sql_down_minutes",
    "sql_failover",
    "installer_outlives_minutes",
    "probe_fails",
];

/// The kinds that concern the machine itself and take no `step`.
const MACHINE_KEYS: [&str; 4] = [
    "reboot_pending",
    "out_of_service",
    "restart_minutes",
    "recovery_minutes",
];

/// Kinds that apply to one step only.
fn only_step(kind_key: &str) -> Option<&'static [StepId]> {
    match kind_key {
        "disk_full" => Some(&[StepId::StageUpdate, StepId::InstallUpdate]),
        "missing_replicas" | "busy" => Some(&[StepId::CheckFabricState]),
        "sql_down_minutes" | "sql_failover" => Some(&[StepId::UpdateDatabases]),
        "installer_outlives_minutes" => Some(&[StepId::InstallUpdate]),
        _ => None,
    }
}

/// The longest duration a fault may give, in minutes (one week).
const MAX_MINUTES: f64 = 7.0 * 24.0 * 60.0;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    fault: Vec<Spanned<BTreeMap<Spanned<String>, Spanned<Value>>>>,
}

/// Reads a faults file. `origin` names it in messages (usually its path).
pub fn parse_faults(text: &str, origin: &str) -> Result<Vec<Fault>, LabError> {
    let file: RawFile = toml::from_str(text).map_err(|e| LabError::Faults {
        origin: origin.to_string(),
        line: e.span().map_or(1, |s| line_of(text, s.start)),
        index: None,
        message: e.message().trim_end().to_string(),
    })?;
    file.fault
        .iter()
        .enumerate()
        .map(|(i, table)| {
            let reader = TableReader {
                text,
                origin,
                index: i + 1,
                line: line_of(text, table.span().start),
                table: table.get_ref(),
            };
            reader.fault()
        })
        .collect()
}

fn line_of(text: &str, offset: usize) -> u32 {
    let end = offset.min(text.len());
    let newlines = text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    u32::try_from(newlines + 1).unwrap_or(u32::MAX)
}

struct TableReader<'a> {
    text: &'a str,
    origin: &'a str,
    index: usize,
    line: u32,
    table: &'a BTreeMap<Spanned<String>, Spanned<Value>>,
}

impl TableReader<'_> {
    fn error_at(&self, line: u32, message: impl Into<String>) -> LabError {
        LabError::Faults {
            origin: self.origin.to_string(),
            line,
            index: Some(self.index),
            message: message.into(),
        }
    }

    fn error(&self, message: impl Into<String>) -> LabError {
        self.error_at(self.line, message)
    }

    fn get(&self, key: &str) -> Option<(&Value, u32)> {
        self.table
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(_, v)| (v.get_ref(), line_of(self.text, v.span().start)))
    }

    fn fault(&self) -> Result<Fault, LabError> {
        for key in self.table.keys() {
            let name = key.get_ref().as_str();
            if !["server", "step", "times"].contains(&name) && !KIND_KEYS.contains(&name) {
                return Err(self.error_at(
                    line_of(self.text, key.span().start),
                    format!(
                        "unknown key '{name}' (a fault has server, step, times and one of {})",
                        KIND_KEYS.join(", ")
                    ),
                ));
            }
        }
        let server = match self.get("server") {
            Some((Value::String(s), line)) => {
                if s.trim().is_empty() {
                    return Err(self.error_at(line, "server is empty"));
                }
                s.trim().to_string()
            }
            Some((other, line)) => {
                return Err(self.error_at(
                    line,
                    format!("server must be a string, not {}", other.type_str()),
                ));
            }
            None => return Err(self.error("missing server (the FQDN of a lab server)")),
        };
        let step = match self.get("step") {
            Some((Value::String(s), line)) => Some((
                StepId::parse(s).ok_or_else(|| {
                    self.error_at(
                        line,
                        format!(
                            "unknown step '{s}' (steps: {})",
                            StepId::ALL.map(StepId::as_str).join(", ")
                        ),
                    )
                })?,
                line,
            )),
            Some((other, line)) => {
                return Err(self.error_at(
                    line,
                    format!("step must be a string, not {}", other.type_str()),
                ));
            }
            None => None,
        };

        let kinds: Vec<&str> = KIND_KEYS
            .into_iter()
            .filter(|k| self.get(k).is_some())
            .collect();
        let kind_key = match kinds.as_slice() {
            [one] => *one,
            [] => {
                return Err(self.error(format!(
                    "no fault given: add exactly one of {}",
                    KIND_KEYS.join(", ")
                )));
            }
            many => {
                return Err(self.error(format!(
                    "{} given: a fault has exactly one of {}",
                    many.join(" and "),
                    KIND_KEYS.join(", ")
                )));
            }
        };
        let (value, value_line) = self.get(kind_key).expect("present");
        let step = match (step, MACHINE_KEYS.contains(&kind_key)) {
            (Some((_, line)), true) => {
                return Err(self.error_at(
                    line,
                    format!("{kind_key} is a fault of the machine itself: remove step"),
                ));
            }
            (None, true) => None,
            (Some((step, _)), false) => Some(step),
            (None, false) => {
                return Err(self.error("missing step (a step id such as install-update)"));
            }
        };
        if let (Some(step), Some(steps)) = (step, only_step(kind_key))
            && !steps.contains(&step)
        {
            let names: Vec<&str> = steps.iter().map(|s| s.as_str()).collect();
            return Err(self.error_at(
                value_line,
                format!(
                    "{kind_key} applies to step {}, not {step}",
                    names.join(" or ")
                ),
            ));
        }
        let times = self.times(kind_key)?;
        let kind = match kind_key {
            "exit_code" => {
                let code = self.integer(value, value_line, "exit_code")?;
                let code = i32::try_from(code).map_err(|_| {
                    self.error_at(value_line, format!("exit_code {code} is out of range"))
                })?;
                FaultKind::ExitCode {
                    code,
                    times: times.unwrap_or(1),
                }
            }
            "duration_minutes" => FaultKind::Duration {
                minutes: self.minutes(value, value_line, "duration_minutes", true)?,
            },
            "hang" => {
                self.must_be_true(value, value_line, "hang")?;
                FaultKind::Hang {
                    times: times.unwrap_or(1),
                }
            }
            "unreachable_minutes" => FaultKind::Unreachable {
                minutes: self.minutes(value, value_line, "unreachable_minutes", false)?,
            },
            "open_shells" => {
                let count = self.integer(value, value_line, "open_shells")?;
                if !(1..=1000).contains(&count) {
                    return Err(self.error_at(
                        value_line,
                        format!("open_shells must be between 1 and 1000, not {count}"),
                    ));
                }
                FaultKind::OpenShells {
                    count: u32::try_from(count).expect("checked range"),
                }
            }
            "disk_full" => {
                self.must_be_true(value, value_line, "disk_full")?;
                FaultKind::DiskFull
            }
            "missing_replicas" => {
                self.must_be_true(value, value_line, "missing_replicas")?;
                FaultKind::MissingReplicas
            }
            "busy" => {
                self.must_be_true(value, value_line, "busy")?;
                FaultKind::Busy {
                    times: times.unwrap_or(1),
                }
            }
            "reboot_pending" => {
                self.must_be_true(value, value_line, kind_key)?;
                FaultKind::RebootPending
            }
            "out_of_service" => {
                self.must_be_true(value, value_line, kind_key)?;
                FaultKind::OutOfService
            }
            "restart_minutes" => FaultKind::RestartMinutes {
                minutes: self.minutes(value, value_line, kind_key, false)?,
            },
            "recovery_minutes" => FaultKind::RecoveryMinutes {
                minutes: self.minutes(value, value_line, kind_key, false)?,
            },
            "sql_down_minutes" => FaultKind::SqlDown {
                minutes: self.minutes(value, value_line, kind_key, false)?,
            },
            "sql_failover" => {
                self.must_be_true(value, value_line, kind_key)?;
                FaultKind::SqlFailover {
                    times: times.unwrap_or(1),
                }
            }
            "installer_outlives_minutes" => FaultKind::InstallerOutlives {
                minutes: self.minutes(value, value_line, kind_key, false)?,
            },
            "probe_fails" => {
                self.must_be_true(value, value_line, kind_key)?;
                FaultKind::ProbeFails {
                    times: times.unwrap_or(1),
                }
            }
            _ => unreachable!("kind keys are listed in KIND_KEYS"),
        };
        Ok(Fault {
            server,
            step,
            kind,
            origin: self.origin.to_string(),
            line: self.line,
            index: self.index,
        })
    }

    fn times(&self, kind_key: &str) -> Result<Option<u32>, LabError> {
        let Some((value, line)) = self.get("times") else {
            return Ok(None);
        };
        if !matches!(
            kind_key,
            "exit_code" | "hang" | "busy" | "sql_failover" | "probe_fails"
        ) {
            return Err(self.error_at(
                line,
                format!(
                    "times applies to exit_code, hang, busy, sql_failover and probe_fails \
                     faults, not to {kind_key}"
                ),
            ));
        }
        let n = self.integer(value, line, "times")?;
        u32::try_from(n).map(Some).map_err(|_| {
            self.error_at(
                line,
                format!("times must be 0 (every attempt) or a positive count, not {n}"),
            )
        })
    }

    fn integer(&self, value: &Value, line: u32, key: &str) -> Result<i64, LabError> {
        match value {
            Value::Integer(n) => Ok(*n),
            other => Err(self.error_at(
                line,
                format!("{key} must be an integer, not {}", other.type_str()),
            )),
        }
    }

    fn minutes(
        &self,
        value: &Value,
        line: u32,
        key: &str,
        zero_allowed: bool,
    ) -> Result<f64, LabError> {
        let minutes = match value {
            Value::Integer(n) => *n as f64,
            Value::Float(f) => *f,
            other => {
                return Err(self.error_at(
                    line,
                    format!(
                        "{key} must be a number of minutes, not {}",
                        other.type_str()
                    ),
                ));
            }
        };
        let low_ok = if zero_allowed {
            minutes >= 0.0
        } else {
            minutes > 0.0
        };
        if !minutes.is_finite() || !low_ok || minutes > MAX_MINUTES {
            let low = if zero_allowed { "0" } else { "more than 0" };
            return Err(self.error_at(
                line,
                format!("{key} must be {low} and at most {MAX_MINUTES} minutes, not {minutes}"),
            ));
        }
        Ok(minutes)
    }

    fn must_be_true(&self, value: &Value, line: u32, key: &str) -> Result<(), LabError> {
        match value {
            Value::Boolean(true) => Ok(()),
            Value::Boolean(false) => Err(self.error_at(
                line,
                format!("{key} = false injects nothing: remove the fault or set {key} = true"),
            )),
            other => Err(self.error_at(
                line,
                format!("{key} must be true, not {}", other.type_str()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_kind() {
        let text = r#"
[[fault]]
server = "be01.contoso.com"
step = "install-update"
exit_code = 1603
times = 2

[[fault]]
server = "be01.contoso.com"
step = "update-databases"
duration_minutes = 40

[[fault]]
server = "se01.contoso.com"
step = "stop-w3svc"
hang = true

[[fault]]
server = "se01.contoso.com"
step = "start-w3svc"
unreachable_minutes = 2.5

[[fault]]
server = "se01.contoso.com"
step = "install-update"
open_shells = 2

[[fault]]
server = "se01.contoso.com"
step = "stage-update"
disk_full = true
"#;
        let faults = parse_faults(text, "faults.toml").unwrap();
        let kinds: Vec<_> = faults.iter().map(|f| f.kind.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                FaultKind::ExitCode {
                    code: 1603,
                    times: 2
                },
                FaultKind::Duration { minutes: 40.0 },
                FaultKind::Hang { times: 1 },
                FaultKind::Unreachable { minutes: 2.5 },
                FaultKind::OpenShells { count: 2 },
                FaultKind::DiskFull,
            ]
        );
        assert_eq!(
            faults.iter().map(|f| (f.index, f.line)).collect::<Vec<_>>(),
            vec![(1, 2), (2, 8), (3, 13), (4, 18), (5, 23), (6, 28)]
        );
        assert_eq!(faults[0].step, Some(StepId::InstallUpdate));
        assert_eq!(faults[0].server, "be01.contoso.com");
    }

    /// The message without its code, after checking the code.
    fn error(text: &str) -> String {
        let err = parse_faults(text, "f.toml").unwrap_err();
        assert_eq!(err.code(), "SFB-L005");
        let message = err.to_string();
        message
            .strip_suffix(" [SFB-L005]")
            .expect("the message ends with its code")
            .to_string()
    }

    #[test]
    fn errors_name_file_line_and_fault() {
        assert_eq!(
            error("[[fault]]\nserver = \"a\"\nstep = \"install\"\nexit_code = 1\n"),
            "f.toml:3: fault 1: unknown step 'install' (steps: check-admin-role, stage-update, \
             check-fabric-state, failover, stop-cs-services, stop-w3svc, close-management-shells, \
             install-update, stop-cs-services-gac, start-w3svc, update-databases, \
             start-cs-services, failback, verify)"
        );
        assert_eq!(
            error(
                "[[fault]]\nserver = \"a\"\nstep = \"verify\"\nhang = true\n\n[[fault]]\nserver = \"a\"\nstep = \"verify\"\nhang = true\nexit_code = 2\n"
            ),
            "f.toml:6: fault 2: exit_code and hang given: a fault has exactly one of exit_code, \
             duration_minutes, hang, unreachable_minutes, open_shells, disk_full, \
             missing_replicas, busy, reboot_pending, out_of_service, restart_minutes, \
             recovery_minutes, sql_down_minutes, sql_failover, installer_outlives_minutes, \
             probe_fails"
        );
        assert_eq!(
            error("[[fault]]\nserver = \"a\"\nstep = \"verify\"\n"),
            "f.toml:1: fault 1: no fault given: add exactly one of exit_code, duration_minutes, \
             hang, unreachable_minutes, open_shells, disk_full, missing_replicas, busy, \
             reboot_pending, out_of_service, restart_minutes, recovery_minutes, \
             sql_down_minutes, sql_failover, installer_outlives_minutes, probe_fails"
        );
        assert_eq!(
            error("[[fault]]\nstep = \"verify\"\nhang = true\n"),
            "f.toml:1: fault 1: missing server (the FQDN of a lab server)"
        );
        assert_eq!(
            error("[[fault]]\nserver = \"a\"\nstep = \"verify\"\ndisk_full = true\n"),
            "f.toml:4: fault 1: disk_full applies to step stage-update or install-update, not verify"
        );
        assert_eq!(
            error(
                "[[fault]]\nserver = \"a\"\nstep = \"verify\"\nduration_minutes = 3\ntimes = 2\n"
            ),
            "f.toml:5: fault 1: times applies to exit_code, hang, busy, sql_failover and probe_fails \
             faults, not to duration_minutes"
        );
        assert_eq!(
            error("[[fault]]\nserver = \"a\"\nstep = \"verify\"\nexit_code = \"1\"\n"),
            "f.toml:4: fault 1: exit_code must be an integer, not string"
        );
        assert_eq!(
            error("[[fault]]\nserver = \"a\"\nstep = \"verify\"\nhang = false\n"),
            "f.toml:4: fault 1: hang = false injects nothing: remove the fault or set hang = true"
        );
        assert_eq!(
            error("[[fault]]\nserver = \"a\"\nstep = \"verify\"\nunreachable_minutes = 0\n"),
            "f.toml:4: fault 1: unreachable_minutes must be more than 0 and at most 10080 minutes, not 0"
        );
        assert_eq!(
            error("[[fault]]\nserver = \"a\"\nstep = \"verify\"\nsever = 1\nhang = true\n"),
            "f.toml:4: fault 1: unknown key 'sever' (a fault has server, step, times and one of \
             exit_code, duration_minutes, hang, unreachable_minutes, open_shells, disk_full, \
             missing_replicas, busy, reboot_pending, out_of_service, restart_minutes, \
             recovery_minutes, sql_down_minutes, sql_failover, installer_outlives_minutes, \
             probe_fails)"
        );
        assert_eq!(
            error("[[fault]]\nserver = \"a\"\nstep = \"verify\"\nhang = true\nhang = true\n"),
            "f.toml:5: duplicate key"
        );
        assert!(error("[faults]\n").starts_with("f.toml:1: unknown field `faults`"));
    }

    #[test]
    fn empty_file_has_no_faults() {
        assert_eq!(parse_faults("# nothing\n", "f.toml").unwrap(), vec![]);
    }
}
