//! The package manifest: a small TOML file naming a cumulative update, where its installer is
//! and the installer's SHA-256. See `docs/manifest.md` for the format and
//! `docs/errors-plan.md` for the error codes.
//!
//! Every value that later reaches a PowerShell command is checked here, so that a manifest can
//! never inject PowerShell syntax: the commands also quote every string they insert.

// A manifest error carries every mistake the file has, so it is larger than clippy likes for an
// `Err`; it is built once per bad manifest, never on a hot path.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use sfbpatch_topology::StoreKind;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use sfbpatch_topology::ProductLine;

use crate::model::{Build, Installer, Package};
use crate::text::{clean, describe_char, is_printable, is_quote, is_single_quote};

/// The keys a manifest may have, in the order they are documented.
const KEYS: [&str; 6] = [
    "name",
    "version",
    "installer",
    "sha256",
    "product",
    "schema_versions",
];

/// The keys of an `installer = { ... }` table: one of them, naming the kind of source.
const INSTALLER_KINDS: [&str; 3] = ["file", "server", "url"];

/// The longest accepted package name, in characters.
const MAX_NAME_CHARS: usize = 128;

/// Where in the manifest an error is (1-based; the column counts characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: u32,
    pub column: u32,
}

/// Why a manifest was rejected. Displays as
/// `<origin>:<line>:<column>: <field>: <message> [<code>]`; the location is left out when the
/// error has none (a missing key), the field when it concerns the whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// The manifest's name as the user gave it (a path, usually).
    pub origin: String,
    pub location: Option<Location>,
    /// The key concerned (`sha256`, `schema_versions.user`), if any.
    pub field: Option<String>,
    pub kind: ManifestErrorKind,
    /// The manifest's other mistakes, after this one: each is reported.
    pub more: Vec<ManifestError>,
}

/// The cause of a [`ManifestError`]; each has a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestErrorKind {
    /// SFB-M001
    #[error("not valid TOML: {0}")]
    Syntax(String),
    /// SFB-M002
    #[error("unknown key '{key}' (known keys: {known})")]
    UnknownKey { key: String, known: String },
    /// SFB-M003
    #[error("{0}")]
    InvalidValue(String),
    /// SFB-M004
    #[error("required key is missing")]
    MissingKey,
    /// SFB-M005
    #[error("expected {expected}, found {found}")]
    WrongType {
        expected: &'static str,
        found: &'static str,
    },
    /// SFB-M006
    #[error(
        "'{0}' uses plain http, which is refused: give an https:// URL, or download the installer and give its path"
    )]
    InsecureUrl(String),
}

impl ManifestErrorKind {
    /// The stable code, documented in `docs/errors-plan.md`.
    pub fn code(&self) -> &'static str {
        match self {
            ManifestErrorKind::Syntax(_) => "SFB-M001",
            ManifestErrorKind::UnknownKey { .. } => "SFB-M002",
            ManifestErrorKind::InvalidValue(_) => "SFB-M003",
            ManifestErrorKind::MissingKey => "SFB-M004",
            ManifestErrorKind::WrongType { .. } => "SFB-M005",
            ManifestErrorKind::InsecureUrl(_) => "SFB-M006",
        }
    }
}

impl ManifestError {
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }
}

impl fmt::Display for ManifestError {
    /// One line per mistake.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_one(f)?;
        for other in &self.more {
            f.write_str("\n")?;
            other.fmt_one(f)?;
        }
        Ok(())
    }
}

impl ManifestError {
    fn fmt_one(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(Location { line, column }) = self.location {
            write!(f, ":{line}:{column}")?;
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        write!(f, "{} [{}]", self.kind, self.kind.code())
    }
}

impl std::error::Error for ManifestError {}

/// Parse and validate a package manifest. `origin` names the manifest in error messages.
///
/// Every mistake is reported, not only the first: the error is the first one in the file and
/// [`ManifestError::more`] holds the others (unknown keys and bad values in file order, then
/// missing keys).
///
/// A controller path ([`Installer::Path`]) is kept as written (relative to the manifest's
/// folder, or absolute); resolving it is the caller's business. A path on the server
/// ([`Installer::Server`]) is never resolved.
pub fn parse_manifest(text: &str, origin: &str) -> Result<Package, ManifestError> {
    let cx = Cx { text, origin };
    let table = DeTable::parse(text).map_err(|e| {
        let message = e.message().trim_end().to_string();
        cx.error(e.span(), None, ManifestErrorKind::Syntax(message))
    })?;
    let table = table.get_ref();

    // Validate in document order, so that problems are listed as they appear in the file.
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);

    let mut errors = Vec::new();
    let mut name = None;
    let mut version = None;
    let mut installer = None;
    let mut sha256 = None;
    let mut product = None;
    let mut schema_versions = BTreeMap::new();
    for (key, value) in entries {
        let checked = match key.get_ref().as_ref() {
            "name" => cx
                .string(value, "name")
                .and_then(|s| cx.name(value, s))
                .map(|v| name = Some(v)),
            "version" => cx.version(value).map(|v| version = Some(v)),
            "installer" => cx.installer(value).map(|v| installer = Some(v)),
            "sha256" => cx
                .string(value, "sha256")
                .and_then(|s| cx.sha256(value, s))
                .map(|v| sha256 = Some(v)),
            "product" => cx.product(value).map(|v| product = Some(v)),
            "schema_versions" => cx.schema_versions(value).map(|v| schema_versions = v),
            other => Err(cx.error(
                Some(key.span()),
                None,
                ManifestErrorKind::UnknownKey {
                    key: clean(other).into_owned(),
                    known: KEYS.join(", "),
                },
            )),
        };
        if let Err(e) = checked {
            errors.push(e);
        }
    }

    let table_has = |k: &str| table.get(k).is_some();
    for required in ["name", "version", "installer", "sha256"] {
        if !table_has(required) {
            errors.push(cx.error(None, Some(required), ManifestErrorKind::MissingKey));
        }
    }
    let mut errors = errors.into_iter();
    if let Some(mut first) = errors.next() {
        first.more = errors.collect();
        return Err(first);
    }
    let (Some(name), Some(version), Some(installer), Some(sha256)) =
        (name, version, installer, sha256)
    else {
        unreachable!("every required key is present and valid when no error was recorded")
    };
    Ok(Package {
        name,
        version,
        installer,
        sha256,
        schema_versions,
        product,
    })
}

/// The text being parsed, for turning spans into errors.
struct Cx<'t> {
    text: &'t str,
    origin: &'t str,
}

type Value<'i> = Spanned<DeValue<'i>>;

impl Cx<'_> {
    fn error(
        &self,
        span: Option<Range<usize>>,
        field: Option<&str>,
        kind: ManifestErrorKind,
    ) -> ManifestError {
        ManifestError {
            origin: self.origin.to_string(),
            location: span.map(|s| self.location(s.start)),
            field: field.map(str::to_string),
            kind,
            more: Vec::new(),
        }
    }

    /// An invalid value, located at the start of its content (inside the quotes).
    fn invalid(&self, value: &Value<'_>, field: &str, message: String) -> ManifestError {
        self.error(
            Some(self.content_span(value)),
            Some(field),
            ManifestErrorKind::InvalidValue(message),
        )
    }

    fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let mut column = before[line_start..].chars().count();
        if line_start == 0 && before.starts_with('\u{feff}') {
            column -= 1; // editors do not count the byte order mark
        }
        Location {
            line: u32::try_from(before.matches('\n').count() + 1).unwrap_or(u32::MAX),
            column: u32::try_from(column + 1).unwrap_or(u32::MAX),
        }
    }

    /// The span of a string value without its opening delimiter.
    fn content_span(&self, value: &Value<'_>) -> Range<usize> {
        let span = value.span();
        let rest = self.text.get(span.start..).unwrap_or("");
        let skip = ["\"\"\"", "'''", "\"", "'"]
            .into_iter()
            .find(|d| rest.starts_with(d))
            .map_or(0, str::len);
        span.start + skip..span.end
    }

    fn string<'v>(&self, value: &'v Value<'_>, field: &str) -> Result<&'v str, ManifestError> {
        match value.get_ref() {
            DeValue::String(s) => Ok(s.as_ref()),
            other => Err(self.error(
                Some(value.span()),
                Some(field),
                ManifestErrorKind::WrongType {
                    expected: "a string",
                    found: other.type_str(),
                },
            )),
        }
    }

    fn name(&self, value: &Value<'_>, s: &str) -> Result<String, ManifestError> {
        let invalid = |message: String| self.invalid(value, "name", message);
        if s.trim().is_empty() {
            return Err(invalid("must not be empty".into()));
        }
        if s.trim() != s {
            return Err(invalid(
                "must not start or end with white space".to_string(),
            ));
        }
        if s.chars().count() > MAX_NAME_CHARS {
            return Err(invalid(format!(
                "is longer than {MAX_NAME_CHARS} characters"
            )));
        }
        if let Some(c) = s.chars().find(|&c| !is_printable(c) || is_quote(c)) {
            return Err(invalid(format!(
                "character {} is not allowed (no control characters or quotes)",
                describe_char(c)
            )));
        }
        Ok(s.to_string())
    }

    fn version(&self, value: &Value<'_>) -> Result<Build, ManifestError> {
        let s = self.string(value, "version")?;
        if let Some(c) = s.chars().find(|&c| !is_printable(c)) {
            let message = format!("character {} is not allowed", describe_char(c));
            return Err(self.invalid(value, "version", message));
        }
        s.parse::<Build>()
            .map_err(|reason| self.invalid(value, "version", reason))
    }

    fn product(&self, value: &Value<'_>) -> Result<ProductLine, ManifestError> {
        let s = self.string(value, "product")?;
        ProductLine::parse(s).ok_or_else(|| {
            self.invalid(
                value,
                "product",
                format!(
                    "'{}' is not a product line: give \"2013\", \"2015\" or \"2019\" \
                     (or lync-2013, sfb-2015, sfb-2019)",
                    clean(s)
                ),
            )
        })
    }

    /// `installer = "..."` (its kind read from its shape) or `installer = { file | server |
    /// url = "..." }`.
    fn installer(&self, value: &Value<'_>) -> Result<Installer, ManifestError> {
        let DeValue::Table(table) = value.get_ref() else {
            let s = self.string(value, "installer")?;
            let kind = if s.to_ascii_lowercase().contains("://") {
                "url"
            } else if is_server_path(s) {
                "server"
            } else {
                "file"
            };
            return self.installer_of(kind, value, s);
        };
        let entries: Vec<_> = table.iter().collect();
        match entries.as_slice() {
            [(key, inner)] if INSTALLER_KINDS.contains(&key.get_ref().as_ref()) => {
                let field = format!("installer.{}", key.get_ref());
                let s = self.string(inner, &field)?;
                self.installer_of(key.get_ref(), inner, s)
            }
            _ => Err(self.error(
                Some(value.span()),
                Some("installer"),
                ManifestErrorKind::InvalidValue(format!(
                    "a table names exactly one kind of source: {{ file = \"...\" }} (on this \
                     machine), {{ server = '...' }} (a UNC path or a path on the server) or {{ url \
                     = \"https://...\" }}; found {}",
                    if entries.is_empty() {
                        "no key".to_string()
                    } else {
                        entries
                            .iter()
                            .map(|(k, _)| format!("'{}'", clean(k.get_ref())))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                )),
            )),
        }
    }

    fn installer_of(
        &self,
        kind: &str,
        value: &Value<'_>,
        s: &str,
    ) -> Result<Installer, ManifestError> {
        let field = "installer";
        let invalid = |message: String| self.invalid(value, field, message);
        if s.is_empty() {
            return Err(invalid(
                "must not be empty: give a file on this machine (relative to the manifest), a \
                 UNC path or a path on the server, or an https:// URL"
                    .into(),
            ));
        }
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("http://") {
            return Err(self.error(
                Some(self.content_span(value)),
                Some(field),
                ManifestErrorKind::InsecureUrl(clean(s).into_owned()),
            ));
        }
        if kind == "url" {
            if !lower.starts_with("https://") {
                let scheme = s.split_once("://").map_or(s, |(scheme, _)| scheme);
                return Err(invalid(format!(
                    "'{}://' URLs are not supported: give an https:// URL or a path",
                    clean(scheme)
                )));
            }
            return check_url(s).map(Installer::Url).map_err(invalid);
        }
        if let Some(c) = s.chars().find(|&c| !is_printable(c) || is_single_quote(c)) {
            return Err(invalid(format!(
                "character {} is not allowed in a path (no control characters or single quotes)",
                describe_char(c)
            )));
        }
        if kind == "server" {
            if !is_server_path(s) {
                return Err(invalid(format!(
                    "'{}' is not a UNC path (\\\\server\\share\\...) or an absolute path on the \
                     server (C:\\...)",
                    clean(s)
                )));
            }
            return Ok(Installer::Server(s.to_string()));
        }
        Ok(Installer::Path(s.to_string()))
    }

    fn sha256(&self, value: &Value<'_>, s: &str) -> Result<String, ManifestError> {
        let count = s.chars().count();
        if count != 64 {
            return Err(self.invalid(
                value,
                "sha256",
                format!("expected 64 hexadecimal characters, found {count}"),
            ));
        }
        if let Some(c) = s.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(self.invalid(
                value,
                "sha256",
                format!(
                    "expected 64 hexadecimal characters, found {}",
                    describe_char(c)
                ),
            ));
        }
        Ok(s.to_ascii_lowercase())
    }

    fn schema_versions(
        &self,
        value: &Value<'_>,
    ) -> Result<BTreeMap<StoreKind, String>, ManifestError> {
        let DeValue::Table(table) = value.get_ref() else {
            return Err(self.error(
                Some(value.span()),
                Some("schema_versions"),
                ManifestErrorKind::WrongType {
                    expected: "a table of store names and versions",
                    found: value.get_ref().type_str(),
                },
            ));
        };
        let mut entries: Vec<_> = table.iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);
        let mut out = BTreeMap::new();
        for (key, version) in entries {
            let Some(store) = StoreKind::parse(key.get_ref()) else {
                let known: Vec<_> = StoreKind::ALL.iter().map(|k| k.as_str()).collect();
                return Err(self.error(
                    Some(key.span()),
                    Some("schema_versions"),
                    ManifestErrorKind::UnknownKey {
                        key: clean(key.get_ref()).into_owned(),
                        known: known.join(", "),
                    },
                ));
            };
            let field = format!("schema_versions.{store}");
            let s = self.string(version, &field)?;
            if !is_dotted_number(s) {
                return Err(self.invalid(
                    version,
                    &field,
                    format!(
                        "{s:?} is not a schema version (numbers separated by dots, like \"15.13.27\")"
                    ),
                ));
            }
            out.insert(store, s.to_string());
        }
        Ok(out)
    }
}

/// Accepts `https://host[:port]/path` with the characters RFC 3986 allows, except `'`
/// (percent-encode it as `%27`) and credentials in the authority.
fn check_url(s: &str) -> Result<String, String> {
    let rest = &s["https://".len()..];
    let (authority, _) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    if authority.is_empty() {
        return Err(format!("'{s}' has no host name"));
    }
    if authority.contains('@') {
        return Err("a URL with a user name or password is not allowed".into());
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(format!("'{authority}' is not a host name"));
    }
    if port.is_some_and(|p| p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!("'{authority}' has an invalid port"));
    }
    if let Some(c) = s.chars().find(|&c| !is_url_char(c)) {
        return Err(format!(
            "character {} is not allowed in a URL (percent-encode it)",
            describe_char(c)
        ));
    }
    Ok(s.to_string())
}

fn is_url_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&()*+,;=%".contains(c)
}

fn is_dotted_number(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

/// A UNC path (`\\\\server\\share\\...`) or an absolute Windows path (`C:\\...`): a
/// location as a Windows server sees it, which the controller's path rules must never touch.
pub fn is_server_path(s: &str) -> bool {
    let b = s.as_bytes();
    s.starts_with(r"\\")
        || (b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\')
}

/// A manifest's text for `package`, with a comment per key: what `sfbpatch package new` writes.
/// The installer is written as the kind it is (`installer = "..."` for a file on this machine,
/// `installer = { server = '...' }`, `installer = { url = "..." }`).
pub fn manifest_text(package: &Package) -> String {
    let toml_string = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut out = String::new();
    out.push_str("# A cumulative update for sfbpatch (docs/manifest.md).\n");
    out.push_str("# A label for people.\n");
    out.push_str(&format!("name = {}\n", toml_string(&package.name)));
    out.push_str(
        "# The build the update installs; verify checks Get-CsServerPatchVersion shows it.\n",
    );
    out.push_str(&format!(
        "version = {}\n",
        toml_string(&package.version.to_string())
    ));
    if let Some(line) = package.product {
        out.push_str("# The product line the package updates.\n");
        out.push_str(&format!("product = \"{}\"\n", line.year()));
    }
    match &package.installer {
        Installer::Path(path) => {
            out.push_str(
                "# A file on this machine (relative to this manifest), uploaded to each server.\n",
            );
            out.push_str(&format!("installer = {}\n", toml_string(path)));
        }
        Installer::Server(path) => {
            out.push_str("# A path each server reads, used as written.\n");
            out.push_str(&format!(
                "installer = {{ server = {} }}\n",
                toml_string(path)
            ));
        }
        Installer::Url(url) => {
            out.push_str("# Downloaded by each server.\n");
            out.push_str(&format!("installer = {{ url = {} }}\n", toml_string(url)));
        }
    }
    out.push_str("# The installer's SHA-256; stage-update refuses any other file.\n");
    out.push_str(&format!("sha256 = \"{}\"\n", package.sha256));
    out
}
