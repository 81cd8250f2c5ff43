//! Character classes and text helpers shared by the manifest checks, the planner and the
//! renderers.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Characters PowerShell treats as single quotes.
pub(crate) fn is_single_quote(c: char) -> bool {
    matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}')
}

/// Characters PowerShell treats as quotes, and its escape character.
pub(crate) fn is_quote(c: char) -> bool {
    is_single_quote(c) || matches!(c, '"' | '\u{201c}' | '\u{201d}' | '\u{201e}' | '`')
}

/// Not a control character, and none of the invisible characters that change how text reads
/// (zero-width characters, line and paragraph separators, bidirectional controls, byte order
/// mark).
pub(crate) fn is_printable(c: char) -> bool {
    !c.is_control()
        && !matches!(c,
            '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// A character as an error message shows it: `'x'`, `"'"`, or `U+000A`.
pub(crate) fn describe_char(c: char) -> String {
    match c {
        '\'' => "\"'\"".to_string(),
        c if c.is_ascii_graphic() || (c == ' ') => format!("'{c}'"),
        c if is_printable(c) && !c.is_whitespace() => format!("'{c}'"),
        c => format!("U+{:04X}", u32::from(c)),
    }
}

/// `s` with every character that is not printable written as `\u{..}`, so that free text (site
/// names, package names, paths) can neither end a comment line nor drive a terminal.
pub fn clean(s: &str) -> Cow<'_, str> {
    if s.chars().all(is_printable) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_printable(c) {
            out.push(c);
        } else {
            let _ = write!(out, "{}", c.escape_unicode());
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describing_characters() {
        assert_eq!(describe_char('g'), "'g'");
        assert_eq!(describe_char('\''), "\"'\"");
        assert_eq!(describe_char('\n'), "U+000A");
        assert_eq!(describe_char('\u{202e}'), "U+202E");
        assert_eq!(describe_char('é'), "'é'");
    }

    #[test]
    fn cleaning_text() {
        assert_eq!(clean("Redmond"), "Redmond");
        assert_eq!(clean("a\nb\u{1b}[31m"), "a\\u{a}b\\u{1b}[31m");
    }
}
