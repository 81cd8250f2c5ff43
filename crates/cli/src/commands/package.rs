//! `sfbpatch package new`: a manifest a new user can use as it is.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use sfbpatch_plan::{Build, Installer, Package};

use crate::cli::PackageCommand;
use crate::exit::{CmdResult, Exit, Failure};
use crate::{input, output};

pub fn run(cmd: PackageCommand) -> CmdResult {
    match cmd {
        PackageCommand::New {
            installer,
            version,
            product,
            name,
            out,
        } => new(
            &installer,
            version.as_deref(),
            product,
            name,
            out.as_deref(),
        ),
    }
}

fn new(
    installer: &Path,
    version: Option<&str>,
    product: Option<crate::cli::ProductChoice>,
    name: Option<String>,
    out: Option<&Path>,
) -> CmdResult {
    let bytes = std::fs::read(installer).map_err(|e| {
        Failure::bad_input(anyhow!(
            "cannot read installer {}: {e}",
            installer.display()
        ))
    })?;
    let stated = sfbpatch_plan::pe_file_version(&bytes);
    let given = version
        .map(|v| {
            v.parse::<Build>()
                .map_err(|e| Failure::bad_input(anyhow!("--version: {e}")))
        })
        .transpose()?;
    let version = match (stated, given) {
        (Some(stated), Some(given)) if stated != given => {
            return Err(Failure::bad_input(anyhow!(
                "{} states version {stated}, not {given}: check that it is the update you mean, \
                 or leave out --version",
                installer.display()
            )));
        }
        (Some(build), _) | (None, Some(build)) => build,
        (None, None) => {
            return Err(Failure::bad_input(anyhow!(
                "{} has no version resource to read the build from: give it with --version \
                 (for example --version 7.0.2046.553)",
                installer.display()
            )));
        }
    };
    let product = product.map(|p| p.line());
    let line = product.or_else(|| sfbpatch_topology::ProductLine::from_build(version.0));
    let name = name.unwrap_or_else(|| match line {
        Some(line) => format!("{} cumulative update {version}", line.name()),
        None => format!("Cumulative update {version}"),
    });
    let package = Package {
        name,
        version,
        installer: Installer::Path(installer_as_seen_from(installer, out)),
        sha256: input::sha256_hex(&bytes),
        schema_versions: Default::default(),
        product,
    };
    let text = sfbpatch_plan::manifest_text(&package);
    // What is written must read back as the same package.
    let origin = out.map_or_else(|| "manifest".to_string(), |p| p.display().to_string());
    let back = sfbpatch_plan::parse_manifest(&text, &origin)
        .map_err(|e| Failure::bad_input(anyhow!("{e}")))?;
    debug_assert_eq!(back, package);
    match out {
        None => output::data(&text)?,
        Some(out) => {
            std::fs::write(out, &text)
                .map_err(|e| Failure::bad_input(anyhow!("cannot write {}: {e}", out.display())))?;
            output::note(&format!(
                "wrote {} for {} {} (SHA-256 {})",
                out.display(),
                installer.display(),
                version,
                package.sha256
            ));
        }
    }
    Ok(Exit::Success)
}

/// The installer's path as the manifest names it: relative to the manifest's folder when the
/// installer is inside it, absolute otherwise.
fn installer_as_seen_from(installer: &Path, manifest: Option<&Path>) -> String {
    let absolute = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let installer = absolute(installer);
    let folder: PathBuf = match manifest {
        Some(m) => absolute(
            m.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        ),
        None => absolute(Path::new(".")),
    };
    installer
        .strip_prefix(&folder)
        .map(Path::to_path_buf)
        .unwrap_or(installer)
        .display()
        .to_string()
}
