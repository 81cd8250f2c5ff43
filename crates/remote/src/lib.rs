//! The remote protocol: how sfbpatch runs a step, a probe, a reboot or a recovery on a
//! Windows server, and how the server answers.
//!
//! # Scripts
//!
//! Every operation runs a PowerShell template from `crates/remote/scripts/<kind>/<name>.ps1`
//! ([`TEMPLATES`]): `step/<step id>` carries out a step, `probe/<step id>` reads whether its
//! effect is there, `server/reboot` and `server/recover` act on the whole server, and
//! `server/lock` and `server/unlock` keep the lock a server holds for the controller patching
//! it (a registry key: holder, generation, expiry; [`lock_script`]). A template starts with a
//! marker line (`# sfbpatch-template: step/stop-w3svc v1`), declares its inputs in a
//! `param(...)` block of typed, mandatory parameters, and runs the plan's own commands
//! ([`sfbpatch_plan::render_command`]).
//!
//! Values enter only as parameters. [`script_for`] wraps the template as
//! `& {` template `} -Server 'sql01.contoso.com' -Build '7.0.2046.553'`: each text value is
//! one single-quoted literal ([`sfbpatch_plan::ps_quote`] doubles every single-quote
//! character), each flag `$true` or `$false`, and every value comes from a validated type or a
//! check in this crate, so no value can become PowerShell syntax. [`Script::command_line`]
//! is `powershell.exe -NoProfile -NonInteractive -EncodedCommand <base64 of UTF-16LE>`.
//!
//! [`decode_command_line`] reverses it, for hosts that are not Windows (`sfbpatch lab
//! shell`): it accepts only a known template whose text is exactly the embedded one, and
//! [`DecodedScript::request`] rebuilds the typed step and action.
//!
//! # Results
//!
//! A script ends by writing exactly one line of JSON, printable ASCII only:
//!
//! ```json
//! {"template":"probe/stop-w3svc","exit_code":0,"output":"W3SVC is Stopped","done":true,"facts":{"w3svc":"stopped"}}
//! ```
//!
//! `exit_code` is the step's (the installer's for `install-update`: 3010 = done, restart
//! required); `output` is the end of what the commands wrote ([`OUTPUT_CAP`] characters);
//! `done` is set by probes; `facts` holds what a probe read. [`parse_result`] reads the last
//! non-empty line of a host's stdout, [`result_line`] writes one.
//!
//! `server/reboot` answers before the server goes down: it schedules the restart 15 seconds
//! ahead and reports `"facts":{"restart":"scheduled","last_boot":"<UTC time>",...}`; the caller
//! waits for the server to come back (a probe's `last_boot` changes). A host that restarts
//! at once, like the lab, reports `"restart":"completed"`.
//!
//! # Hosts that answer without a result line
//!
//! The exit status of the host process is 0 whenever it wrote a result line, whatever the
//! step's own exit code. Otherwise [`host_exit`] says what happened.
//!
//! Errors carry stable codes (`SFB-R001`...), documented in `docs/errors-remote.md`.

mod decode;
mod error;
mod result;
mod script;
mod templates;
mod values;

pub use decode::{
    DecodedScript, LockRequest, PackageFacts, Request, RequestedStep, decode_command_line,
    decode_script,
};
pub use error::RemoteError;
pub use result::{OUTPUT_CAP, ScriptResult, cap_output, parse_result, result_line};
pub use script::{
    COMMAND_PREFIX, MAX_COMMAND_LINE, Operation, STOP_TAIL, Script, lock_script, script_for,
    script_on, server_script, stop_script, unlock_script,
};
pub use templates::{MARKER_PREFIX, TEMPLATES};

/// Exit statuses of a host process that could not write a result line. `sfbpatch lab shell`
/// uses them; a real Windows host that loses its connection gives none at all. A caller
/// treats a status it does not know, or a missing result line, like a lost connection: the
/// step's outcome is unknown and a probe decides.
pub mod host_exit {
    /// A result line was written (the step's own exit code is inside it).
    pub const RESULT: i32 = 0;
    /// The request was refused as bad input: no command, an unknown or altered script, a
    /// server the host does not have. Nothing ran.
    pub const BAD_REQUEST: i32 = 2;
    /// The host refused the request for good (the lab's `Refused`). Nothing ran.
    pub const REFUSED: i32 = 3;
    /// A probe or pre-flight could not read the server's state; nothing changed.
    pub const READ_FAILED: i32 = 4;
    /// The operation did not finish within its timeout; its outcome is unknown.
    pub const TIMED_OUT: i32 = 124;
    /// The server did not answer, as if the connection had been lost; the outcome is
    /// unknown. (255 is what `ssh` exits with when the connection fails.)
    pub const UNREACHABLE: i32 = 255;
}
