//! The protocol's errors, each with a stable code (`docs/errors-remote.md`).

use sfbpatch_plan::StepId;

/// Why a script could not be rendered, a command line decoded, or a result read. Every message
/// ends with its code; [`RemoteError::code`] gives it alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// SFB-R001: the step's action is not one its step id can carry.
    #[error("step {step} cannot carry the action {action} [SFB-R001]")]
    ActionMismatch { step: StepId, action: String },
    /// SFB-R002: a value that may not reach a PowerShell command line.
    #[error("{param}: {reason} [SFB-R002]")]
    InvalidValue { param: String, reason: String },
    /// SFB-R003: the command line would exceed what Windows accepts.
    #[error(
        "the command line for {template} would have {length} characters; at most {max} are sent [SFB-R003]"
    )]
    TooLong {
        template: String,
        length: usize,
        max: usize,
    },
    /// SFB-R004: not a command line of the form `powershell.exe -NoProfile -NonInteractive
    /// -EncodedCommand <base64>`.
    #[error("not an sfbpatch command line: {reason}; received {received} [SFB-R004]")]
    NotACommandLine { reason: String, received: String },
    /// SFB-R005: the encoded script is not base64 of UTF-16LE text.
    #[error("the encoded script cannot be read: {reason} [SFB-R005]")]
    BadEncoding { reason: String },
    /// SFB-R006: the script is not one of the known templates.
    #[error("unknown script: {reason}; received {received} [SFB-R006]")]
    UnknownTemplate { reason: String, received: String },
    /// SFB-R007: the script names a known template, but its text is not that template's.
    #[error("the script names the template {template} but {detail}: refused [SFB-R007]")]
    TamperedTemplate { template: String, detail: String },
    /// SFB-R008: the parameter bindings after the template are malformed, unknown, missing,
    /// repeated, or hold a value that fails validation.
    #[error("parameters of {template}: {reason} [SFB-R008]")]
    BadParameters { template: String, reason: String },
    /// SFB-R009: the host's output has no non-empty line.
    #[error("the host wrote no result line; received {received} [SFB-R009]")]
    NoResult { received: String },
    /// SFB-R010: the host's last line is not a result line.
    #[error("the host's result line is not valid: {reason}; received {received} [SFB-R010]")]
    InvalidResult { reason: String, received: String },
    /// SFB-R011: the result names another template than the script sent.
    #[error(
        "the host answered for template {received}, but the script sent was {expected} [SFB-R011]"
    )]
    WrongTemplate { expected: String, received: String },
}

impl RemoteError {
    /// The stable code, documented in `docs/errors-remote.md`.
    pub fn code(&self) -> &'static str {
        match self {
            RemoteError::ActionMismatch { .. } => "SFB-R001",
            RemoteError::InvalidValue { .. } => "SFB-R002",
            RemoteError::TooLong { .. } => "SFB-R003",
            RemoteError::NotACommandLine { .. } => "SFB-R004",
            RemoteError::BadEncoding { .. } => "SFB-R005",
            RemoteError::UnknownTemplate { .. } => "SFB-R006",
            RemoteError::TamperedTemplate { .. } => "SFB-R007",
            RemoteError::BadParameters { .. } => "SFB-R008",
            RemoteError::NoResult { .. } => "SFB-R009",
            RemoteError::InvalidResult { .. } => "SFB-R010",
            RemoteError::WrongTemplate { .. } => "SFB-R011",
        }
    }
}

/// How many characters of received text an error message shows.
const EXCERPT_CHARS: usize = 120;

/// Received text as an error message shows it: quoted, with control characters escaped, cut
/// after [`EXCERPT_CHARS`] characters (saying how long it was).
pub(crate) fn excerpt(s: &str) -> String {
    let total = s.chars().count();
    let shown: String = s.chars().take(EXCERPT_CHARS).collect();
    let mut out = format!("{:?}", shown);
    if total > EXCERPT_CHARS {
        out.push_str(&format!("... ({total} characters)"));
    } else if total == 0 {
        out = "nothing".to_string();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short_and_quoted() {
        assert_eq!(excerpt(""), "nothing");
        assert_eq!(excerpt("a\nb"), "\"a\\nb\"");
        let long = "x".repeat(500);
        let e = excerpt(&long);
        assert!(e.ends_with("... (500 characters)"), "{e}");
        assert!(e.len() < 150);
    }
}
