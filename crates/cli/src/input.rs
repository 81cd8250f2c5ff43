//! Reading the user's files. Every error names the file.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use sfbpatch_plan::{Installer, Package};
use sfbpatch_topology::Deployment;

use crate::exit::Failure;

pub fn read_text(path: &Path, what: &str) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|e| Failure::bad_input(anyhow!("cannot read {what} {}: {e}", path.display())))
}

/// The topology's text and what derives from it. UTF-8 (with or without a byte order mark)
/// and UTF-16 with a byte order mark, as `Get-CsTopology -AsXml > file` writes it, are read.
pub fn topology(path: &Path) -> Result<(String, Deployment), Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::bad_input(anyhow!("cannot read topology {}: {e}", path.display())))?;
    let deployment = sfbpatch_topology::load_bytes(&bytes, &path.display().to_string())
        .map_err(Failure::bad_input)?;
    Ok((String::from_utf8_lossy(&bytes).into_owned(), deployment))
}

/// The package manifest, with a relative installer path resolved against the manifest's folder.
pub fn package(path: &Path) -> Result<Package, Failure> {
    let text = read_text(path, "package manifest")?;
    let mut package = sfbpatch_plan::parse_manifest(&text, &path.display().to_string())
        .map_err(Failure::bad_input)?;
    if let Installer::Path(p) = &package.installer {
        let p = PathBuf::from(p);
        if p.is_relative() {
            let base = path.parent().unwrap_or(Path::new("."));
            let joined = base.join(&p);
            let absolute = std::path::absolute(&joined).unwrap_or(joined);
            package.installer = Installer::Path(absolute.display().to_string());
        }
    }
    Ok(package)
}
