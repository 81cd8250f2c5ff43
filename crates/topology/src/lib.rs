//! Reads Skype for Business topologies into one model and derives every pool's back end.
//!
//! Three inputs are recognised by their content:
//!
//! - a published topology (`Get-CsTopology -AsXml`): root `Topology` in namespace
//!   `urn:schema:Microsoft.Rtc.Management.Deploy.Topology.2008`;
//! - a Topology Builder file (`.tbxml`): root `TopologyBuilder`;
//! - sfbpatch's TOML inventory for hand-written deployments (`docs/inventory.md`).
//!
//! [`read_topology`] gives the [`Topology`] close to the file, [`derive`] the [`Deployment`]
//! the rest of sfbpatch works with, [`load`] both in one step. Bad input yields a
//! [`TopologyError`] naming file, line, column and element, with a stable code
//! (`docs/errors-topology.md`). No input makes these functions panic.
//!
//! ```
//! use sfbpatch_topology::{DatabaseUpdate, Edition, load};
//!
//! let inventory = r#"
//! [[pool]]
//! fqdn = "pool01.contoso.com"
//! site = "Redmond"
//! machines = ["fe01.contoso.com", "fe02.contoso.com"]
//! backend = { sql_server = "sql01.contoso.com", stores = ["user", "application", "archiving"] }
//!
//! [[pool]]
//! fqdn = "se01.contoso.com"
//! site = "Redmond"
//! edition = "standard"
//! "#;
//! let deployment = load(inventory, "contoso.toml")?;
//! let pool = deployment.pool("POOL01.contoso.com").unwrap();
//! assert_eq!(pool.backend.sql_server_fqdn.as_str(), "sql01.contoso.com");
//! assert_eq!(pool.database_update, DatabaseUpdate::ConfiguredExcludeCollocated);
//! assert_eq!(deployment.pools[1].edition, Edition::Standard);
//!
//! let error = load("[[pool]]\nfqdn = \"a.example.com;Remove-Item x\"\n", "bad.toml").unwrap_err();
//! assert_eq!(error.code(), "SFB-T007");
//! assert!(error.to_string().starts_with("bad.toml:2:8: "));
//! # Ok::<(), sfbpatch_topology::TopologyError>(())
//! ```

mod derive;
mod error;
mod generate;
mod inventory;
mod model;
mod names;
mod product;
mod published;
mod quorum;
mod source;
mod tbxml;
mod xml;

pub use derive::derive;
pub use error::{ErrorKind, TopologyError};
pub use generate::{generate, generate_product};
pub use model::*;
pub use names::{Fqdn, NameError, SqlInstanceName};
pub use product::ProductLine;
pub use quorum::quorum;
pub use xml::PUBLISHED_NAMESPACE;

use source::Source;

/// Reads a topology in any of the three formats, detected by content, and checks that its ids
/// are unique and its references resolve. `origin` (usually the file name) is used in errors.
///
/// A UTF-8 byte order mark, CRLF line ends, namespace prefixes and elements or attributes the
/// tool does not need are accepted.
pub fn read_topology(text: &str, origin: &str) -> Result<Topology, TopologyError> {
    let topology = read_unchecked(text, origin)?;
    derive::Index::build(&topology)?;
    Ok(topology)
}

/// The topology as the file states it; ids and references are checked by the caller.
fn read_unchecked(text: &str, origin: &str) -> Result<Topology, TopologyError> {
    let src = Source::new(text, origin);
    if src.text.trim_start().starts_with('<') {
        xml::read(&src)
    } else {
        inventory::read(&src)
    }
}

/// [`read_topology`], then [`derive`].
pub fn load(text: &str, origin: &str) -> Result<Deployment, TopologyError> {
    // `derive` checks ids and references itself.
    derive(&read_unchecked(text, origin)?)
}

/// [`read_topology`] for a file's bytes: UTF-8 (with or without byte order mark) or UTF-16 with
/// a byte order mark, which is what Windows PowerShell writes for
/// `Get-CsTopology -AsXml > topology.xml`.
pub fn read_topology_bytes(bytes: &[u8], origin: &str) -> Result<Topology, TopologyError> {
    read_topology(&source::decode(bytes, origin)?, origin)
}

/// [`read_topology_bytes`], then [`derive`].
pub fn load_bytes(bytes: &[u8], origin: &str) -> Result<Deployment, TopologyError> {
    load(&source::decode(bytes, origin)?, origin)
}
