//! The one JSON line a script ends with, and how hosts other than Windows write it.

use serde::{Deserialize, Serialize};

use crate::RemoteError;
use crate::error::excerpt;

/// How many characters of a step's output a result carries: the end of it, where errors are.
pub const OUTPUT_CAP: usize = 4000;

/// What a script reported: `{"template":...,"exit_code":...,"output":...,"done":...,"facts":{...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptResult {
    /// The template that ran (`step/stop-w3svc`).
    pub template: String,
    /// The step's exit code: 0 success; for `install-update` the installer's (3010 = done,
    /// restart required); 1 when the script failed (the output says why).
    pub exit_code: i32,
    /// The end of everything the script's commands wrote, at most [`OUTPUT_CAP`] characters.
    pub output: String,
    /// Probes: whether the step's effect is there; `null` for the other scripts.
    #[serde(default)]
    pub done: Option<bool>,
    /// What the script read (build, service states, Test-CsDatabase rows); an object.
    #[serde(default = "empty_object")]
    pub facts: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// The result in a host's stdout: its last non-empty line. Anything before it (a banner,
/// stray output) is ignored.
///
/// ```
/// let stdout = "a banner\r\n{\"template\":\"probe/stop-w3svc\",\"exit_code\":0,\
///     \"output\":\"W3SVC is Stopped\",\"done\":true,\"facts\":{\"w3svc\":\"stopped\"}}\r\n";
/// let result = sfbpatch_remote::parse_result(stdout)?;
/// assert_eq!(result.done, Some(true));
/// assert_eq!(result.facts["w3svc"], "stopped");
///
/// let error = sfbpatch_remote::parse_result("Access is denied.").unwrap_err();
/// assert_eq!(error.code(), "SFB-R010");
/// # Ok::<(), sfbpatch_remote::RemoteError>(())
/// ```
pub fn parse_result(stdout: &str) -> Result<ScriptResult, RemoteError> {
    let line = stdout
        .lines()
        .rev()
        .map(|l| l.trim_start_matches('\u{feff}').trim())
        .find(|l| !l.is_empty())
        .ok_or_else(|| RemoteError::NoResult {
            received: excerpt(stdout),
        })?;
    let invalid = |reason: String| RemoteError::InvalidResult {
        reason,
        received: excerpt(line),
    };
    let mut result: ScriptResult =
        serde_json::from_str(line).map_err(|e| invalid(format!("{e}")))?;
    match &result.facts {
        serde_json::Value::Object(_) => {}
        serde_json::Value::Null => result.facts = empty_object(),
        other => return Err(invalid(format!("facts is not an object but {other}"))),
    }
    if result.template.is_empty() {
        return Err(invalid("template is empty".to_string()));
    }
    Ok(result)
}

/// The line a host prints for `result`: compact JSON in the fields' order, every character
/// outside printable ASCII written as a `\u` escape (as the templates write it), no newline.
pub fn result_line(result: &ScriptResult) -> String {
    let json = serde_json::to_string(result).expect("a result serialises");
    let mut line = String::with_capacity(json.len());
    for c in json.chars() {
        if (' '..='~').contains(&c) {
            line.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                line.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    line
}

/// The end of `output`, at most [`OUTPUT_CAP`] characters, marked with `...` when cut: what a
/// template keeps of its commands' output.
pub fn cap_output(output: &str) -> String {
    let output = output.trim();
    let total = output.chars().count();
    if total <= OUTPUT_CAP {
        return output.to_string();
    }
    let tail: String = output.chars().skip(total - OUTPUT_CAP).collect();
    format!("...{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> ScriptResult {
        ScriptResult {
            template: "step/stop-w3svc".to_string(),
            exit_code: 0,
            output: "caf\u{e9} \u{1f600} done\nline 2".to_string(),
            done: None,
            facts: json!({"w3svc": "stopped"}),
        }
    }

    #[test]
    fn result_lines_are_ascii_and_round_trip() {
        let line = result_line(&sample());
        assert!(line.is_ascii() && !line.contains('\n'), "{line}");
        assert_eq!(
            line,
            r#"{"template":"step/stop-w3svc","exit_code":0,"output":"caf\u00e9 \ud83d\ude00 done\nline 2","done":null,"facts":{"w3svc":"stopped"}}"#
        );
        assert_eq!(parse_result(&line).unwrap(), sample());
    }

    #[test]
    fn the_last_non_empty_line_counts() {
        let stdout = format!("banner\r\n{}\r\n\r\n", result_line(&sample()));
        assert_eq!(parse_result(&stdout).unwrap(), sample());
        // What Windows PowerShell 5.1's ConvertTo-Json writes.
        let ps = r#"{"template":"probe/stop-w3svc","exit_code":0,"output":"W3SVC is Stopped","done":true,"facts":{"w3svc":"stopped","note":"\u0027quoted\u0027"}}"#;
        let r = parse_result(ps).unwrap();
        assert_eq!(r.done, Some(true));
        assert_eq!(r.facts["note"], "'quoted'");
    }

    #[test]
    fn errors_name_what_was_received() {
        let e = parse_result("\n  \n").unwrap_err();
        assert_eq!(e.code(), "SFB-R009");
        let e = parse_result("Access is denied.").unwrap_err();
        assert_eq!(e.code(), "SFB-R010");
        assert!(e.to_string().contains("\"Access is denied.\""), "{e}");
        let long = format!("{{\"template\": {}", "x".repeat(1000));
        let e = parse_result(&long).unwrap_err().to_string();
        assert!(e.contains("(1013 characters)") && e.len() < 400, "{e}");
        let e =
            parse_result(r#"{"template":"t","exit_code":0,"output":"","facts":[1]}"#).unwrap_err();
        assert!(e.to_string().contains("facts is not an object"), "{e}");
    }

    #[test]
    fn output_keeps_its_end() {
        assert_eq!(cap_output("  short \n"), "short");
        let long = format!("{}END", "a".repeat(5000));
        let capped = cap_output(&long);
        assert!(capped.starts_with("...") && capped.ends_with("END"));
        assert_eq!(capped.chars().count(), OUTPUT_CAP + 3);
    }
}
