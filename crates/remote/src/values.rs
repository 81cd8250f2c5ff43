//! The checks every value passes before it is bound to a template parameter, and again when a
//! command line is decoded. Values that reach a script are validated types ([`Fqdn`],
//! [`SqlInstanceName`], [`Build`]) or are checked here: hex SHA-256s, local paths, installer
//! sources, schema versions.

use std::collections::BTreeMap;

use sfbpatch_plan::{Build, Installer, Readiness};
use sfbpatch_topology::{Fqdn, SqlInstanceName, StoreKind};

use crate::RemoteError;

/// The longest path or URL accepted, in characters.
const MAX_PATH_CHARS: usize = 1024;

fn invalid(param: &str, reason: impl Into<String>) -> RemoteError {
    RemoteError::InvalidValue {
        param: param.to_string(),
        reason: reason.into(),
    }
}

/// Not a control character, and none of the invisible characters that change how text reads.
fn is_printable(c: char) -> bool {
    !c.is_control()
        && !matches!(c,
            '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

fn describe(c: char) -> String {
    if c.is_control() || !is_printable(c) {
        format!("U+{:04X}", u32::from(c))
    } else {
        format!("{c:?}")
    }
}

/// Printable text of 1 to [`MAX_PATH_CHARS`] characters.
fn printable(param: &str, s: &str) -> Result<(), RemoteError> {
    if s.is_empty() {
        return Err(invalid(param, "is empty"));
    }
    if s.chars().count() > MAX_PATH_CHARS {
        return Err(invalid(
            param,
            format!("is longer than {MAX_PATH_CHARS} characters"),
        ));
    }
    if let Some(c) = s.chars().find(|&c| !is_printable(c)) {
        return Err(invalid(
            param,
            format!("character {} is not allowed", describe(c)),
        ));
    }
    Ok(())
}

/// A path on the server: `X:\...`, no characters Windows refuses in paths, no `..`.
pub(crate) fn local_path(param: &str, s: &str) -> Result<String, RemoteError> {
    printable(param, s)?;
    let b = s.as_bytes();
    if !(b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\') {
        return Err(invalid(
            param,
            format!("'{s}' is not an absolute local path such as C:\\ProgramData\\sfbpatch"),
        ));
    }
    if let Some(c) = s[2..]
        .chars()
        .find(|c| matches!(c, '"' | '<' | '>' | '|' | ':' | '*' | '?' | '/'))
    {
        return Err(invalid(
            param,
            format!("character {} is not allowed in a path", describe(c)),
        ));
    }
    if s[3..].split('\\').any(|part| part == ".." || part == ".") {
        return Err(invalid(param, format!("'{s}' has a '.' or '..' folder")));
    }
    Ok(s.to_string())
}

/// The longest server lock holder accepted, in characters.
pub(crate) const MAX_HOLDER_CHARS: usize = 512;

/// The most decimal digits of a number parameter (`^[0-9]{1,19}$` in the templates, which
/// read it as `[uint64]`).
const MAX_DIGITS: usize = 19;

/// A server lock's holder ([`crate::lock_script`], [`crate::unlock_script`]): 1 to
/// [`MAX_HOLDER_CHARS`] printable ASCII characters (space to `~`), as the registry value and
/// the templates' `ValidatePattern` take it.
pub(crate) fn holder(param: &str, s: &str) -> Result<String, RemoteError> {
    if s.is_empty() {
        return Err(invalid(param, "is empty"));
    }
    if let Some(c) = s.chars().find(|c| !matches!(c, ' '..='~')) {
        return Err(invalid(
            param,
            format!(
                "character {} is not allowed: a lock holder is printable ASCII",
                describe(c)
            ),
        ));
    }
    if s.len() > MAX_HOLDER_CHARS {
        return Err(invalid(
            param,
            format!(
                "has {} characters; a lock holder has at most {MAX_HOLDER_CHARS}",
                s.len()
            ),
        ));
    }
    Ok(s.to_string())
}

/// A number as a template parameter: its decimal digits, at most [`MAX_DIGITS`].
pub(crate) fn number(param: &str, n: u64) -> Result<String, RemoteError> {
    let digits = n.to_string();
    if digits.len() > MAX_DIGITS {
        return Err(invalid(
            param,
            format!("{n} has more than {MAX_DIGITS} digits"),
        ));
    }
    Ok(digits)
}

/// A number parameter back: 1 to [`MAX_DIGITS`] decimal digits.
pub(crate) fn parse_number(param: &str, s: &str) -> Result<u64, RemoteError> {
    if !(1..=MAX_DIGITS).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            param,
            format!(
                "'{}' is not a number of 1 to {MAX_DIGITS} decimal digits",
                s.escape_debug()
            ),
        ));
    }
    s.parse()
        .map_err(|e| invalid(param, format!("'{s}' is not a number: {e}")))
}

/// The end of a base64 command line ([`crate::stop_script`]): 32 to 256 base64 characters.
pub(crate) fn command_tail(param: &str, s: &str) -> Result<String, RemoteError> {
    let base64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
    if (32..=256).contains(&s.len()) && s.bytes().all(base64) {
        Ok(s.to_string())
    } else {
        Err(invalid(
            param,
            format!(
                "expected 32 to 256 base64 characters, found {} characters",
                s.chars().count()
            ),
        ))
    }
}

/// 64 hexadecimal characters, returned in lower case.
pub(crate) fn sha256(param: &str, s: &str) -> Result<String, RemoteError> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(invalid(
            param,
            format!(
                "expected a SHA-256 of 64 hexadecimal characters, found {} characters",
                s.chars().count()
            ),
        ))
    }
}

/// Where the installer comes from, as the `SourceKind` and `Source` parameters: `path` for a
/// path the server reads (UNC or local, used as written), `url` for an https:// URL, and
/// `uploaded` for a file on the controller, which the target has already put at the
/// destination (`Source` then names the controller's file, for the record).
pub(crate) fn source(installer: &Installer) -> Result<(&'static str, String), RemoteError> {
    match installer {
        Installer::Server(p) => {
            printable("Source", p)?;
            Ok(("path", p.clone()))
        }
        Installer::Path(p) => {
            printable("Source", p)?;
            Ok(("uploaded", p.clone()))
        }
        Installer::Url(u) => Ok(("url", url(u)?)),
    }
}

/// An `https://` URL of printable characters without white space.
pub(crate) fn url(s: &str) -> Result<String, RemoteError> {
    printable("Source", s)?;
    if !s
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
    {
        return Err(invalid("Source", format!("'{s}' is not an https:// URL")));
    }
    if s.chars().any(char::is_whitespace) {
        return Err(invalid("Source", "a URL has no white space"));
    }
    Ok(s.to_string())
}

/// The installer source back from its two parameters.
pub(crate) fn installer(kind: &str, source: &str) -> Result<Installer, RemoteError> {
    match kind {
        "path" => {
            printable("Source", source)?;
            Ok(Installer::Server(source.to_string()))
        }
        "uploaded" => {
            printable("Source", source)?;
            Ok(Installer::Path(source.to_string()))
        }
        "url" => Ok(Installer::Url(url(source)?)),
        other => Err(invalid(
            "SourceKind",
            format!("'{other}' is not 'path', 'uploaded' or 'url'"),
        )),
    }
}

pub(crate) fn fqdn(param: &str, s: &str) -> Result<Fqdn, RemoteError> {
    Fqdn::parse(s).map_err(|e| invalid(param, format!("invalid FQDN '{s}': {e}")))
}

pub(crate) fn build(param: &str, s: &str) -> Result<Build, RemoteError> {
    s.parse().map_err(|e: String| invalid(param, e))
}

pub(crate) fn instance(param: &str, s: &str) -> Result<SqlInstanceName, RemoteError> {
    SqlInstanceName::parse(s).map_err(|e| {
        invalid(
            param,
            format!("invalid SQL Server instance name '{s}': {e}"),
        )
    })
}

pub(crate) fn flag(param: &str, s: &str) -> Result<bool, RemoteError> {
    match s {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(invalid(param, format!("'{other}' is not true or false"))),
    }
}

/// The `-ReadinessCmdlet` value of `check-fabric-state`: which readiness cmdlet the pool's
/// product line has.
pub(crate) fn readiness_name(readiness: Readiness) -> &'static str {
    match readiness {
        Readiness::UpgradeDomainInfo => "upgrade-domain-info",
        Readiness::PoolUpgradeReadinessState => "pool-upgrade-readiness-state",
    }
}

pub(crate) fn readiness(param: &str, s: &str) -> Result<Readiness, RemoteError> {
    [
        Readiness::UpgradeDomainInfo,
        Readiness::PoolUpgradeReadinessState,
    ]
    .into_iter()
    .find(|r| readiness_name(*r) == s)
    .ok_or_else(|| {
        invalid(
            param,
            format!(
                "'{}' is not upgrade-domain-info or pool-upgrade-readiness-state",
                s.escape_debug()
            ),
        )
    })
}

fn is_dotted_number(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

/// `store=version;store=version`, in the map's order; empty for an empty map.
pub(crate) fn schema_versions(map: &BTreeMap<StoreKind, String>) -> Result<String, RemoteError> {
    let mut parts = Vec::with_capacity(map.len());
    for (store, version) in map {
        if !is_dotted_number(version) {
            return Err(invalid(
                "SchemaVersions",
                format!("{store}: '{version}' is not a schema version like 15.13.27"),
            ));
        }
        parts.push(format!("{}={version}", store.as_str()));
    }
    Ok(parts.join(";"))
}

/// The map back from [`schema_versions`]' text.
pub(crate) fn parse_schema_versions(s: &str) -> Result<BTreeMap<StoreKind, String>, RemoteError> {
    let mut map = BTreeMap::new();
    if s.is_empty() {
        return Ok(map);
    }
    for part in s.split(';') {
        let bad = || invalid("SchemaVersions", format!("'{part}' is not store=version"));
        let (store, version) = part.split_once('=').ok_or_else(bad)?;
        let store = StoreKind::parse(store).ok_or_else(bad)?;
        if !is_dotted_number(version) || map.insert(store, version.to_string()).is_some() {
            return Err(bad());
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths() {
        assert!(local_path("P", r"C:\ProgramData\sfbpatch\x.exe").is_ok());
        for bad in [
            "",
            "relative\\x",
            r"\\server\share\x",
            r"C:\a\..\b",
            "C:\\a\"b",
            "C:\\a\nb",
            r"C:\a:b",
        ] {
            assert!(local_path("P", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hashes_and_urls() {
        assert_eq!(sha256("S", &"AB".repeat(32)).unwrap(), "ab".repeat(32));
        assert!(sha256("S", "abc").is_err());
        assert!(sha256("S", &"zz".repeat(32)).is_err());
        assert!(url("https://download.example/cu.exe").is_ok());
        assert!(url("http://download.example/cu.exe").is_err());
        assert!(url("https://a.example/x y").is_err());
    }

    #[test]
    fn lock_holders_and_numbers() {
        let longest = "h".repeat(MAX_HOLDER_CHARS);
        for good in [
            "sqlite:/var/lib/sfbpatch/state.db#run1",
            " ~",
            "x",
            longest.as_str(),
        ] {
            assert_eq!(holder("H", good).unwrap(), good);
        }
        let too_long = "h".repeat(MAX_HOLDER_CHARS + 1);
        for bad in [
            "",
            too_long.as_str(),
            "a\nb",
            "tab\there",
            "caf\u{e9}",
            "a\u{7f}",
            "\u{200b}",
        ] {
            assert!(holder("H", bad).is_err(), "{bad:?}");
        }
        assert_eq!(number("N", 0).unwrap(), "0");
        assert_eq!(
            number("N", 9_999_999_999_999_999_999).unwrap(),
            "9999999999999999999"
        );
        assert!(number("N", 10_000_000_000_000_000_000).is_err());
        assert!(number("N", u64::MAX).is_err());
        assert_eq!(parse_number("N", "0").unwrap(), 0);
        assert_eq!(
            parse_number("N", "1700000000000").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_number("N", "9999999999999999999").unwrap(),
            9_999_999_999_999_999_999
        );
        for bad in [
            "",
            "-1",
            "+1",
            "1.5",
            " 1",
            "12345678901234567890",
            "\u{661}",
        ] {
            assert!(parse_number("N", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn schema_versions_round_trip() {
        let mut map = BTreeMap::new();
        map.insert(StoreKind::User, "15.13.27".to_string());
        map.insert(StoreKind::Archiving, "15.13.2".to_string());
        let text = schema_versions(&map).unwrap();
        assert_eq!(text, "user=15.13.27;archiving=15.13.2");
        assert_eq!(parse_schema_versions(&text).unwrap(), map);
        assert_eq!(parse_schema_versions("").unwrap(), BTreeMap::new());
        for bad in [
            "user",
            "user=",
            "nobody=1",
            "user=1;user=2",
            "user=1;",
            "user=1'",
        ] {
            assert!(parse_schema_versions(bad).is_err(), "{bad}");
        }
    }
}
