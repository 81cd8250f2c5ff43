//! The text being read: its origin, and byte offsets turned into lines and columns.

use std::borrow::Cow;

use crate::error::{ErrorKind, TopologyError};
use crate::model::Span;

/// One input file. Offsets are into `text`, which has its byte order mark removed.
pub(crate) struct Source<'t> {
    pub origin: &'t str,
    pub text: &'t str,
    /// Byte offset of the start of every line.
    line_starts: Vec<usize>,
}

impl<'t> Source<'t> {
    pub fn new(text: &'t str, origin: &'t str) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut line_starts = Vec::with_capacity(text.len() / 40 + 1);
        line_starts.push(0);
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Source {
            origin,
            text,
            line_starts,
        }
    }

    /// The 1-based line and column of a byte offset; the column counts characters, as
    /// `roxmltree::Document::text_pos_at` does.
    pub fn span(&self, pos: usize) -> Span {
        let pos = pos.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= pos) - 1;
        let start = self.line_starts[line];
        let column = self
            .text
            .get(start..pos)
            .map_or(pos - start, |s| s.chars().count());
        Span {
            line: to_u32(line + 1),
            column: to_u32(column + 1),
        }
    }

    pub fn error(&self, kind: ErrorKind, span: Span, message: impl Into<String>) -> TopologyError {
        TopologyError::new(kind, self.origin, span, message)
    }

    pub fn error_at(
        &self,
        kind: ErrorKind,
        pos: usize,
        message: impl Into<String>,
    ) -> TopologyError {
        self.error(kind, self.span(pos), message)
    }
}

/// Decodes a file: UTF-8 with or without byte order mark, or UTF-16 with a byte order mark (as
/// Windows PowerShell's `Out-File` and `>` write `Get-CsTopology -AsXml`).
pub(crate) fn decode<'b>(bytes: &'b [u8], origin: &str) -> Result<Cow<'b, str>, TopologyError> {
    let utf16 = |rest: &[u8], unit: fn([u8; 2]) -> u16| {
        let units: Vec<u16> = rest
            .chunks(2)
            .map(|c| unit([c[0], c.get(1).copied().unwrap_or(0)]))
            .collect();
        String::from_utf16(&units).map(Cow::Owned).map_err(|_| {
            TopologyError::new(
                ErrorKind::Malformed,
                origin,
                Span { line: 1, column: 1 },
                "malformed UTF-16 text",
            )
        })
    };
    match bytes {
        [0xff, 0xfe, rest @ ..] => utf16(rest, u16::from_le_bytes),
        [0xfe, 0xff, rest @ ..] => utf16(rest, u16::from_be_bytes),
        _ => std::str::from_utf8(bytes).map(Cow::Borrowed).map_err(|e| {
            let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            let src = Source::new(valid, origin);
            src.error_at(
                ErrorKind::Malformed,
                valid.len(),
                format!(
                    "not UTF-8 or UTF-16 text: invalid byte 0x{:02x}",
                    bytes[e.valid_up_to()]
                ),
            )
        }),
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Text from a file shown in a message: at most 80 characters, control characters replaced,
/// so that a message stays one line whatever the file holds.
pub(crate) fn excerpt(s: &str) -> String {
    const MAX: usize = 80;
    let mut out: String = s
        .chars()
        .take(MAX)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().nth(MAX).is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_count_characters_and_skip_the_bom() {
        let src = Source::new("\u{feff}<a>\r\n  <b é='1'/>\n</a>", "x");
        assert_eq!(src.span(0), Span { line: 1, column: 1 });
        assert_eq!(src.span(7), Span { line: 2, column: 3 });
        assert_eq!(src.span(1000), Span { line: 3, column: 5 });
        let doc = roxmltree::Document::parse(src.text).unwrap();
        for node in doc.descendants().filter(|n| n.is_element()) {
            let pos = doc.text_pos_at(node.range().start);
            let span = src.span(node.range().start);
            assert_eq!((span.line, span.column), (pos.row, pos.col));
        }
    }

    #[test]
    fn decodes_utf8_and_utf16() {
        assert_eq!(decode(b"\xef\xbb\xbf<a/>", "x").unwrap(), "\u{feff}<a/>");
        let le: Vec<u8> = [0xff, 0xfe]
            .into_iter()
            .chain("<a/>".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(decode(&le, "x").unwrap(), "<a/>");
        let be: Vec<u8> = [0xfe, 0xff]
            .into_iter()
            .chain("<a/>".encode_utf16().flat_map(u16::to_be_bytes))
            .collect();
        assert_eq!(decode(&be, "x").unwrap(), "<a/>");
        assert_eq!(
            decode(b"<a>\n  \xff</a>", "f.xml").unwrap_err().to_string(),
            "f.xml:2:3: not UTF-8 or UTF-16 text: invalid byte 0xff [SFB-T001]"
        );
        assert_eq!(
            decode(&[0xff, 0xfe, 0x00, 0xd8], "x").unwrap_err().code(),
            "SFB-T001"
        );
    }

    #[test]
    fn excerpts_stay_on_one_line() {
        assert_eq!(excerpt("a\nb"), "a?b");
        assert_eq!(excerpt(&"x".repeat(100)).len(), 83);
    }
}
