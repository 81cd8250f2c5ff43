//! Reading the user's files. Every error names the file.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use sfbpatch_plan::{CheckError, Installer, Package};
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

/// The package manifest, with a relative controller path of its installer resolved against the
/// manifest's folder. A path on the server (`\\\\server\\share\\...`, `C:\\...`) and a URL are
/// kept exactly as written.
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

/// The lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The lower-case hex SHA-256 of a file, read in pieces.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut hasher = sha2::Sha256::new();
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// A controller's installer must be there and be the manifest's file before anything is
/// recorded (SFB-P013, SFB-P014). Paths on the servers and URLs are for the servers to check.
pub fn check_installer(package: &Package) -> Result<(), Failure> {
    let Installer::Path(path) = &package.installer else {
        return Ok(());
    };
    let unreadable = |e: std::io::Error| {
        Failure::bad_input(CheckError::InstallerUnreadable {
            path: path.clone(),
            reason: e.to_string(),
        })
    };
    let actual = sha256_file(Path::new(path)).map_err(unreadable)?;
    if actual != package.sha256 {
        return Err(Failure::bad_input(CheckError::InstallerHashMismatch {
            path: path.clone(),
            expected: package.sha256.clone(),
            actual,
        }));
    }
    Ok(())
}
