//! Checks a package must pass before anything is recorded: the product line of every server it
//! would patch, no downgrade of any server, an installer a hand-run script can reach.
//!
//! Pure like the rest of the crate: the caller reads files and asks targets for installed builds,
//! then hands the facts here. Codes are documented in `docs/errors-plan.md`.

use sfbpatch_topology::{Deployment, Fqdn, ProductLine};

use crate::model::{Build, Installer, Package, Plan};

/// A server and what is known of it, in an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLine {
    pub server: Fqdn,
    /// The pool the plan patches it for.
    pub pool: Fqdn,
    /// The line the topology (or the installed build) shows.
    pub line: ProductLine,
    /// Set when the line comes from the build the server runs rather than the topology.
    pub installed: Option<Build>,
}

/// Why a package may not be applied, or not exported. Each has a stable code
/// ([`CheckError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// SFB-P010: a package of another product line than servers it would patch.
    #[error(
        "package {package} {version} is for {}, but {}: a package of one product line must never be applied to another [SFB-P010]",
        line_name(*.package_line),
        servers_on_lines(.servers)
    )]
    WrongProductLine {
        package: String,
        version: Build,
        /// `None` when neither the manifest's `product` nor its build names a line.
        package_line: Option<ProductLine>,
        servers: Vec<ServerLine>,
    },
    /// SFB-P011: a package older than what a server runs.
    #[error(
        "package {package} {version} is older than what {} run{}: {}; sfbpatch does not downgrade [SFB-P011]",
        if .servers.len() == 1 { "this server" } else { "these servers" },
        if .servers.len() == 1 { "s" } else { "" },
        .servers.iter().map(|(s, b)| format!("{s} runs {b}")).collect::<Vec<_>>().join(", ")
    )]
    Downgrade {
        package: String,
        version: Build,
        servers: Vec<(Fqdn, Build)>,
    },
    /// SFB-P012: a script run by hand on a server cannot reach a file on the controller.
    #[error(
        "installer '{path}' is a file on this machine, which a script run on the server cannot reach: for --format powershell give the manifest's installer as a UNC path or a path on the server (installer = {{ server = '\\\\files.example.com\\updates\\SkypeServerUpdateInstaller.exe' }}) or an https:// URL [SFB-P012]"
    )]
    ControllerInstaller { path: String },
    /// SFB-P013: the installer a manifest names on the controller cannot be read.
    #[error("installer {path} cannot be read: {reason} [SFB-P013]")]
    InstallerUnreadable { path: String, reason: String },
    /// SFB-P014: the installer on the controller is not the manifest's file.
    #[error(
        "installer {path} has SHA-256 {actual}, the manifest says {expected}: not the package's file [SFB-P014]"
    )]
    InstallerHashMismatch {
        path: String,
        expected: String,
        actual: String,
    },
}

impl CheckError {
    /// The stable code, documented in `docs/errors-plan.md`.
    pub fn code(&self) -> &'static str {
        match self {
            CheckError::WrongProductLine { .. } => "SFB-P010",
            CheckError::Downgrade { .. } => "SFB-P011",
            CheckError::ControllerInstaller { .. } => "SFB-P012",
            CheckError::InstallerUnreadable { .. } => "SFB-P013",
            CheckError::InstallerHashMismatch { .. } => "SFB-P014",
        }
    }
}

fn line_name(line: Option<ProductLine>) -> String {
    match line {
        Some(line) => line.to_string(),
        None => "no product line sfbpatch knows (add product = \"2015\" or \"2019\" to the manifest if the package says what it updates)".to_string(),
    }
}

fn servers_on_lines(servers: &[ServerLine]) -> String {
    let mut lines: Vec<ProductLine> = servers.iter().map(|s| s.line).collect();
    lines.sort();
    lines.dedup();
    lines
        .iter()
        .map(|line| {
            let names: Vec<String> = servers
                .iter()
                .filter(|s| s.line == *line)
                .map(|s| match s.installed {
                    Some(build) => format!("{} (pool {}, runs {build})", s.server, s.pool),
                    None => format!("{} (pool {})", s.server, s.pool),
                })
                .collect();
            format!(
                "{} run{} {line}",
                names.join(", "),
                if names.len() == 1 { "s" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Refuses a package whose product line differs from the line the topology shows for any
/// server the plan would patch. Pools whose topology does not say are not checked here (the
/// installed build is, by [`check_installed`]).
pub fn check_product_line(deployment: &Deployment, plan: &Plan) -> Result<(), CheckError> {
    let package_line = plan.package.product_line();
    let servers: Vec<ServerLine> = plan
        .servers
        .iter()
        .filter_map(|s| {
            let line = deployment.pool(s.pool.as_str())?.product?;
            (Some(line) != package_line).then(|| ServerLine {
                server: s.fqdn.clone(),
                pool: s.pool.clone(),
                line,
                installed: None,
            })
        })
        .collect();
    wrong_line(&plan.package, package_line, servers)
}

/// Refuses a package older than the build a server runs, or of another line than it.
/// `installed` gives each server's build where the target knows it (the lab always; a real
/// server from its pre-flight probe).
pub fn check_installed(plan: &Plan, installed: &[(Fqdn, Build)]) -> Result<(), CheckError> {
    let package = &plan.package;
    let package_line = package.product_line();
    let build_of = |fqdn: &Fqdn| installed.iter().find(|(f, _)| f == fqdn).map(|(_, b)| *b);
    let mut other_line = Vec::new();
    let mut newer = Vec::new();
    for s in &plan.servers {
        let Some(build) = build_of(&s.fqdn) else {
            continue;
        };
        match ProductLine::from_build(build.0) {
            Some(line) if Some(line) != package_line => other_line.push(ServerLine {
                server: s.fqdn.clone(),
                pool: s.pool.clone(),
                line,
                installed: Some(build),
            }),
            _ if build > package.version => newer.push((s.fqdn.clone(), build)),
            _ => {}
        }
    }
    wrong_line(package, package_line, other_line)?;
    if newer.is_empty() {
        Ok(())
    } else {
        Err(CheckError::Downgrade {
            package: package.name.clone(),
            version: package.version,
            servers: newer,
        })
    }
}

fn wrong_line(
    package: &Package,
    package_line: Option<ProductLine>,
    servers: Vec<ServerLine>,
) -> Result<(), CheckError> {
    if servers.is_empty() {
        return Ok(());
    }
    Err(CheckError::WrongProductLine {
        package: package.name.clone(),
        version: package.version,
        package_line,
        servers,
    })
}

/// Refuses, for a script run by hand on each server, an installer only the controller has.
pub fn check_exportable(package: &Package) -> Result<(), CheckError> {
    match &package.installer {
        Installer::Path(path) => Err(CheckError::ControllerInstaller { path: path.clone() }),
        Installer::Server(_) | Installer::Url(_) => Ok(()),
    }
}
