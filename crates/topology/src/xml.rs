//! What the two XML formats share: parsing, format detection and element helpers.
//!
//! Elements and attributes are matched by local name, so namespace prefixes and the several
//! namespaces real files declare do not matter. Anything not asked for is ignored.

use std::fmt::Display;

use roxmltree::{Document, Node, ParsingOptions};

use crate::error::{ErrorKind, TopologyError};
use crate::model::{Machine, Span, Topology};
use crate::names::{Fqdn, SqlInstanceName};
use crate::source::{Source, excerpt};
use crate::{published, tbxml};

/// The namespace of `Get-CsTopology -AsXml` output (and of many Topology Builder elements).
pub const PUBLISHED_NAMESPACE: &str = "urn:schema:Microsoft.Rtc.Management.Deploy.Topology.2008";

pub(crate) type Result<T> = std::result::Result<T, TopologyError>;

pub(crate) fn read(src: &Source<'_>) -> Result<Topology> {
    let options = ParsingOptions {
        allow_dtd: false,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(src.text, options).map_err(|e| {
        let pos = e.pos();
        let message = e.to_string().replace(&format!(" at {pos}"), "");
        // roxmltree places the errors that mean "the file ends too early" at 1:1; the place to
        // look is where the file ends.
        let span = match e {
            roxmltree::Error::UnexpectedEndOfStream
            | roxmltree::Error::UnclosedRootNode
            | roxmltree::Error::NoRootNode => src.span(src.text.len()),
            _ => Span {
                line: pos.row,
                column: pos.col,
            },
        };
        src.error(
            ErrorKind::Malformed,
            span,
            format!("malformed XML: {message}"),
        )
    })?;
    let root = doc.root_element();
    let name = root.tag_name();
    match (name.name(), name.namespace()) {
        ("Topology", Some(PUBLISHED_NAMESPACE)) => published::read(src, root),
        ("TopologyBuilder", _) => tbxml::read(src, root),
        (local, namespace) => Err(src.error(
            ErrorKind::UnknownFormat,
            span(src, root),
            format!(
                "root element {local}{} is neither a published topology (Topology in namespace \
                 {PUBLISHED_NAMESPACE}) nor a Topology Builder file (TopologyBuilder)",
                namespace.map_or(String::new(), |ns| format!(" in namespace {}", excerpt(ns)))
            ),
        )),
    }
}

pub(crate) fn span(src: &Source<'_>, node: Node<'_, '_>) -> Span {
    src.span(node.range().start)
}

/// Child elements with the given local name.
pub(crate) fn children<'a, 'i>(
    node: Node<'a, 'i>,
    name: &'static str,
) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

pub(crate) fn child<'a, 'i>(node: Node<'a, 'i>, name: &'static str) -> Option<Node<'a, 'i>> {
    children(node, name).next()
}

/// `node/outer/inner` elements, plus `inner` elements that are direct children of `node`
/// (files differ in whether `Machine` elements sit in a `Machines` wrapper).
pub(crate) fn wrapped<'a, 'i>(
    node: Node<'a, 'i>,
    outer: &'static str,
    inner: &'static str,
) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children()
        .filter(|c| c.is_element())
        .flat_map(move |c| {
            let local = c.tag_name().name();
            let direct = (local == inner).then_some(c);
            let nested = (local == outer).then(|| children(c, inner));
            direct.into_iter().chain(nested.into_iter().flatten())
        })
}

/// An attribute by local name, whatever its namespace.
pub(crate) fn attr<'a>(node: Node<'a, '_>, name: &str) -> Option<&'a str> {
    node.attributes()
        .find(|a| a.name() == name)
        .map(|a| a.value())
}

pub(crate) fn required<'a>(
    src: &Source<'_>,
    node: Node<'a, '_>,
    name: &str,
    what: &dyn Display,
) -> Result<&'a str> {
    attr(node, name).ok_or_else(|| {
        src.error(
            ErrorKind::MissingAttribute,
            span(src, node),
            format!("{what}: missing required attribute {name}"),
        )
    })
}

pub(crate) fn required_child<'a, 'i>(
    src: &Source<'_>,
    node: Node<'a, 'i>,
    name: &'static str,
    what: &dyn Display,
) -> Result<Node<'a, 'i>> {
    child(node, name).ok_or_else(|| {
        src.error(
            ErrorKind::MissingAttribute,
            span(src, node),
            format!("{what}: missing required element {name}"),
        )
    })
}

pub(crate) fn fqdn(
    src: &Source<'_>,
    node: Node<'_, '_>,
    value: &str,
    what: &dyn Display,
    attribute: &str,
) -> Result<Fqdn> {
    Fqdn::parse(value).map_err(|e| {
        src.error(
            ErrorKind::InvalidName,
            span(src, node),
            format!(
                "{what}: {attribute} is not a valid FQDN '{}': {e}",
                excerpt(value)
            ),
        )
    })
}

pub(crate) fn instance_name(
    src: &Source<'_>,
    node: Node<'_, '_>,
    value: &str,
    what: &dyn Display,
) -> Result<SqlInstanceName> {
    SqlInstanceName::parse(value).map_err(|e| {
        src.error(
            ErrorKind::InvalidName,
            span(src, node),
            format!(
                "{what}: Name is not a valid SQL Server instance name '{}': {e}",
                excerpt(value)
            ),
        )
    })
}

/// A boolean attribute; absent means false.
pub(crate) fn flag(
    src: &Source<'_>,
    node: Node<'_, '_>,
    name: &str,
    what: &dyn Display,
) -> Result<bool> {
    match attr(node, name) {
        None => Ok(false),
        Some(v) if v.trim().eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.trim().eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(src.error(
            ErrorKind::InvalidValue,
            span(src, node),
            format!("{what}: {name} is '{}', expected true or false", excerpt(v)),
        )),
    }
}

/// An optional FQDN attribute; an empty value counts as absent.
pub(crate) fn optional_fqdn(
    src: &Source<'_>,
    node: Node<'_, '_>,
    name: &str,
    what: &dyn Display,
) -> Result<Option<Fqdn>> {
    match attr(node, name).map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => fqdn(src, node, v, what, name).map(Some),
    }
}

/// The text of a site's `Name` child, if any.
pub(crate) fn site_name(node: Node<'_, '_>) -> Option<String> {
    child(node, "Name")
        .and_then(|n| n.text())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A cluster's machines, from `Machine` or `Machines/Machine` children. A machine without
/// `Fqdn` is the cluster itself when the cluster is a single-machine cluster; a single-machine
/// cluster that lists no machine has the one machine the cluster FQDN names.
pub(crate) fn machines(
    src: &Source<'_>,
    cluster: Node<'_, '_>,
    cluster_fqdn: &Fqdn,
    single_machine: bool,
    what: &dyn Display,
) -> Result<Vec<Machine>> {
    let mut machines = Vec::new();
    for m in wrapped(cluster, "Machines", "Machine") {
        let fqdn = match attr(m, "Fqdn").map(str::trim) {
            Some(v) if !v.is_empty() => {
                fqdn(src, m, v, &format_args!("Machine in {what}"), "Fqdn")?
            }
            _ if single_machine => cluster_fqdn.clone(),
            _ => {
                return Err(src.error(
                    ErrorKind::MachineWithoutFqdn,
                    span(src, m),
                    format!(
                        "Machine in {what} has no Fqdn, and {what} is not a single-machine \
                         cluster (IsSingleMachineOnly=\"true\")"
                    ),
                ));
            }
        };
        machines.push(Machine {
            fqdn,
            upgrade_domain: attr(m, "UpgradeDomain").map(str::to_string),
            fault_domain: attr(m, "FaultDomain").map(str::to_string),
            sfb_components: false,
        });
    }
    if machines.is_empty() && single_machine {
        machines.push(Machine::new(cluster_fqdn.clone()));
    }
    Ok(machines)
}

/// What an element shows of SQL Server database mirroring: an element or attribute whose local
/// name contains "Mirror", or a `Usage` naming a mirror, anywhere inside `node`. Described with
/// file, line and column, never guessed from anything else.
pub(crate) fn mirroring(
    src: &Source<'_>,
    node: Node<'_, '_>,
    what: &dyn Display,
) -> Option<String> {
    let is_mirror = |s: &str| s.to_ascii_lowercase().contains("mirror");
    for e in node.descendants().filter(|n| n.is_element()) {
        let at = span(src, e);
        let local = e.tag_name().name();
        let shown = if is_mirror(local) {
            Some(format!("element {}", excerpt(local)))
        } else {
            e.attributes().find_map(|a| {
                if is_mirror(a.name()) {
                    Some(format!(
                        "{} attribute {}=\"{}\"",
                        excerpt(local),
                        excerpt(a.name()),
                        excerpt(a.value())
                    ))
                } else if a.name() == "Usage" && is_mirror(a.value()) {
                    Some(format!(
                        "{} Usage=\"{}\"",
                        excerpt(local),
                        excerpt(a.value())
                    ))
                } else {
                    None
                }
            })
        };
        if let Some(shown) = shown {
            return Some(format!(
                "{}:{}:{}: {what} shows database mirroring ({shown})",
                src.origin, at.line, at.column
            ));
        }
    }
    None
}
