//! Errors for topology input: one kind per cause, each with a stable code.
//!
//! Every error names the file (its origin), the line and column where the offending element,
//! attribute or key starts, and the element or id. The codes are documented with cause and fix
//! in `docs/errors-topology.md`.

use std::fmt;

use crate::model::Span;

/// What went wrong. Each kind has a stable code (`SFB-T001` ...), see [`ErrorKind::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The text is not well-formed XML or TOML.
    Malformed,
    /// Neither a published topology, a Topology Builder file nor an inventory.
    UnknownFormat,
    /// A reference to a site, cluster, SQL instance or service that does not exist.
    DanglingReference,
    /// Two sites, clusters, SQL instances, services or machines with the same id or FQDN.
    DuplicateId,
    /// A pool whose UserServices depend on no User store.
    NoUserStore,
    /// A machine without FQDN in a cluster that is not a single-machine cluster.
    MachineWithoutFqdn,
    /// An FQDN or SQL Server instance name that breaks DNS or SQL Server naming rules.
    InvalidName,
    /// A required attribute, element or key is missing.
    MissingAttribute,
    /// A value of the wrong type or outside its allowed set, or an unknown inventory key.
    InvalidValue,
    /// References that exist but contradict each other (e.g. a User store installed on a
    /// cluster instead of a SQL instance).
    Inconsistent,
}

impl ErrorKind {
    /// The stable code, e.g. `SFB-T003`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Malformed => "SFB-T001",
            ErrorKind::UnknownFormat => "SFB-T002",
            ErrorKind::DanglingReference => "SFB-T003",
            ErrorKind::DuplicateId => "SFB-T004",
            ErrorKind::NoUserStore => "SFB-T005",
            ErrorKind::MachineWithoutFqdn => "SFB-T006",
            ErrorKind::InvalidName => "SFB-T007",
            ErrorKind::MissingAttribute => "SFB-T008",
            ErrorKind::InvalidValue => "SFB-T009",
            ErrorKind::Inconsistent => "SFB-T010",
        }
    }

    /// Every kind, in code order.
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::Malformed,
        ErrorKind::UnknownFormat,
        ErrorKind::DanglingReference,
        ErrorKind::DuplicateId,
        ErrorKind::NoUserStore,
        ErrorKind::MachineWithoutFqdn,
        ErrorKind::InvalidName,
        ErrorKind::MissingAttribute,
        ErrorKind::InvalidValue,
        ErrorKind::Inconsistent,
    ];
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A topology that cannot be read or derived.
///
/// Displays as `origin:line:column: message [code]`, for example
/// `contoso.tbxml:155:9: Service 52e0...: InstalledOn refers to SqlInstance 4cca... which does
/// not exist [SFB-T003]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}:{column}: {message} [{code}]", line = .span.line, column = .span.column, code = .kind.code())]
pub struct TopologyError {
    kind: ErrorKind,
    origin: String,
    span: Span,
    message: String,
}

impl TopologyError {
    pub(crate) fn new(
        kind: ErrorKind,
        origin: &str,
        span: Span,
        message: impl Into<String>,
    ) -> Self {
        // Messages quote the file; keep them on one line whatever it holds.
        let message: String = message
            .into()
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        TopologyError {
            kind,
            origin: origin.to_string(),
            span,
            message,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The stable code, e.g. `SFB-T003`.
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// The file name (or other origin) given to the reader.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Where the offending element, attribute or key starts (1-based).
    pub fn span(&self) -> Span {
        self.span
    }

    /// The message without location and code.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Appends an explanation to the message.
    pub(crate) fn with_hint(mut self, hint: &str) -> Self {
        self.message = format!("{} ({hint})", self.message);
        self
    }
}
