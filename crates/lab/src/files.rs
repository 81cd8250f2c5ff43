//! The files the lab's servers see: Windows paths mapped, component by component, into the lab's
//! `files/` folder, never through the controller's path rules.
//!
//! - A UNC path `\\host\share\dir\file` is `files/unc/<host>/<share>/dir/file`: every server
//!   sees the same share.
//! - A local path `C:\dir\file` on server `se01.example.com` is
//!   `files/se01.example.com/C/dir/file`: each server has its own disks.
//!
//! `\` and `/` both separate components, as on Windows; host names and drive letters are
//! compared ignoring case (kept in lower and upper case). `.`, `..`, empty components and
//! characters Windows forbids in a name are refused, so no path leaves `files/`.

use std::path::{Path, PathBuf};

/// The folder under a lab's directory that holds every server's files.
pub const FILES_DIR: &str = "files";

/// Where the lab keeps the file `windows_path` names on `server`, or why it cannot.
pub fn server_file(lab_dir: &Path, server: &str, windows_path: &str) -> Result<PathBuf, String> {
    let why = |why: &str| format!("'{windows_path}' is not a path the lab can map: {why}");
    let bad = |reason: &str| Err(why(reason));
    let mut out = lab_dir.join(FILES_DIR);
    let rest = if let Some(unc) = windows_path.strip_prefix(r"\\") {
        let mut parts = unc.splitn(3, ['\\', '/']);
        let (Some(host), Some(share)) = (parts.next(), parts.next()) else {
            return bad("a UNC path names a server and a share");
        };
        for part in [host, share] {
            check(part).map_err(|e| why(&e))?;
        }
        out.push("unc");
        out.push(host.to_ascii_lowercase());
        out.push(share);
        parts.next().unwrap_or("")
    } else {
        let b = windows_path.as_bytes();
        if !(b.len() >= 3
            && b[0].is_ascii_alphabetic()
            && b[1] == b':'
            && matches!(b[2], b'\\' | b'/'))
        {
            return bad("neither a UNC path nor a path with a drive letter");
        }
        out.push(server.to_ascii_lowercase());
        out.push((b[0] as char).to_ascii_uppercase().to_string());
        &windows_path[3..]
    };
    for part in rest.split(['\\', '/']) {
        check(part).map_err(|e| why(&e))?;
        out.push(part);
    }
    Ok(out)
}

fn check(part: &str) -> Result<(), String> {
    if part.is_empty() || part == "." || part == ".." {
        return Err(format!("component '{part}' is empty or relative"));
    }
    if let Some(c) = part
        .chars()
        .find(|&c| c.is_control() || "<>:\"|?*".contains(c))
    {
        return Err(format!("character {c:?} is not allowed in a name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_paths_map_into_the_lab() {
        let lab = Path::new("/lab");
        assert_eq!(
            server_file(lab, "SE01.example.com", r"c:\ProgramData\x\a.exe").unwrap(),
            Path::new("/lab/files/se01.example.com/C/ProgramData/x/a.exe")
        );
        assert_eq!(
            server_file(
                lab,
                "se01.example.com",
                r"\\Files.contoso.com\updates\cu\a.exe"
            )
            .unwrap(),
            Path::new("/lab/files/unc/files.contoso.com/updates/cu/a.exe")
        );
        for bad in [
            r"relative\a.exe",
            "/home/ops/a.exe",
            r"C:\..\a.exe",
            r"\\host",
            r"C:\a\\b.exe",
            r"C:\a:b",
        ] {
            assert!(server_file(lab, "se01.example.com", bad).is_err(), "{bad}");
        }
    }
}
