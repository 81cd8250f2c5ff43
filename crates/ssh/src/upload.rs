//! Sending a controller's installer to a server: SFTP on a channel of the server's own SSH
//! connection, into the staging folder, before `stage-update` checks its SHA-256 there.

use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use russh_sftp::client::SftpSession;
use tokio::io::AsyncWriteExt as _;

use crate::session::{Connection, ExecError, describe};

/// How much of the file is read and sent at a time.
const CHUNK: usize = 256 * 1024;

/// A Windows path as Windows OpenSSH's SFTP server names it: `C:\a\b` is `/C:/a/b`.
pub(crate) fn sftp_path(windows: &str) -> String {
    format!("/{}", windows.replace('\\', "/"))
}

/// Every folder above `windows` on its drive, outermost first: `C:\a\b\f.exe` gives `/C:/a`,
/// `/C:/a/b`.
fn parents(windows: &str) -> Vec<String> {
    let path = sftp_path(windows);
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    (2..parts.len())
        .map(|n| format!("/{}", parts[..n].join("/")))
        .collect()
}

/// What went wrong with an upload: the connection (its outcome unknown), or the server's
/// answer (nothing was staged).
#[derive(Debug)]
pub(crate) enum UploadError {
    Connection(ExecError),
    /// The local file could not be read, or the server refused a folder or the file.
    Failed(String),
}

impl Connection {
    /// Copy `local` to `destination` (a Windows path on the server), creating its folders.
    /// Returns the bytes sent.
    pub(crate) async fn upload(
        &self,
        local: &Path,
        destination: &str,
        timeout: Duration,
    ) -> Result<u64, UploadError> {
        let mut file = std::fs::File::open(local)
            .map_err(|e| UploadError::Failed(format!("cannot read {}: {e}", local.display())))?;
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| UploadError::Connection(ExecError::NotStarted(describe(&e))))?;
        let send = async {
            channel
                .request_subsystem(true, "sftp")
                .await
                .map_err(|e| UploadError::Connection(ExecError::Lost(describe(&e))))?;
            let sftp = SftpSession::new(channel.into_stream()).await.map_err(|e| {
                UploadError::Failed(format!("the server's SFTP did not start: {e}"))
            })?;
            for dir in parents(destination) {
                if !sftp.try_exists(dir.as_str()).await.unwrap_or(false) {
                    sftp.create_dir(dir.as_str()).await.map_err(|e| {
                        UploadError::Failed(format!("cannot create folder {dir}: {e}"))
                    })?;
                }
            }
            let target = sftp_path(destination);
            let mut remote = sftp
                .create(target.as_str())
                .await
                .map_err(|e| UploadError::Failed(format!("cannot create {target}: {e}")))?;
            let mut sent = 0u64;
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = file.read(&mut buf).map_err(|e| {
                    UploadError::Failed(format!("cannot read {}: {e}", local.display()))
                })?;
                if n == 0 {
                    break;
                }
                remote
                    .write_all(&buf[..n])
                    .await
                    .map_err(|e| UploadError::Failed(format!("writing {target} failed: {e}")))?;
                sent += n as u64;
            }
            remote
                .shutdown()
                .await
                .map_err(|e| UploadError::Failed(format!("closing {target} failed: {e}")))?;
            let _ = sftp.close().await;
            Ok(sent)
        };
        match tokio::time::timeout(timeout, send).await {
            Ok(result) => result,
            Err(_) => Err(UploadError::Connection(ExecError::TimedOut)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_paths_become_sftp_paths() {
        let dest = r"C:\ProgramData\sfbpatch\staging\7.0.2046.553\SkypeServerUpdateInstaller.exe";
        assert_eq!(
            sftp_path(dest),
            "/C:/ProgramData/sfbpatch/staging/7.0.2046.553/SkypeServerUpdateInstaller.exe"
        );
        assert_eq!(
            parents(dest),
            [
                "/C:/ProgramData",
                "/C:/ProgramData/sfbpatch",
                "/C:/ProgramData/sfbpatch/staging",
                "/C:/ProgramData/sfbpatch/staging/7.0.2046.553",
            ]
        );
    }
}
