//! The lab server's SFTP: what `lab shell` serves when the SSH target uploads a controller's
//! installer. Windows paths as Windows OpenSSH names them (`/C:/dir/file`) map into the lab's
//! files of this server (`sfbpatch_lab::server_file`); only what an upload needs is offered:
//! look up, make folders, create and write files.

use std::collections::HashMap;
use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use russh_sftp::protocol::{
    Attrs, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode, Version,
};

use crate::exit::{CmdResult, Exit, Failure};

/// What sshd runs for the `sftp` subsystem (scripts/sshd-lab.sh); under the ForceCommand it
/// reaches `lab shell` as `SSH_ORIGINAL_COMMAND`.
pub const SUBSYSTEM_COMMAND: &str = "sfbpatch-lab-sftp";

/// Serve SFTP on stdin and stdout until the client closes the channel.
pub fn serve(lab_dir: &Path, host: &str) -> CmdResult {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::internal(anyhow!("cannot start SFTP: {e}")))?;
    runtime.block_on(async {
        let (done, mut ended) = tokio::sync::mpsc::channel::<()>(1);
        let files = LabFiles {
            lab_dir: lab_dir.to_path_buf(),
            host: host.to_string(),
            open: HashMap::new(),
            next: 0,
            _done: done,
        };
        let stream = tokio::io::join(tokio::io::stdin(), tokio::io::stdout());
        russh_sftp::server::run(stream, files).await;
        // The server's task owns the handler: its sender goes when the session ends.
        let _ = ended.recv().await;
    });
    Ok(Exit::Success)
}

struct LabFiles {
    lab_dir: PathBuf,
    host: String,
    open: HashMap<String, std::fs::File>,
    next: u64,
    _done: tokio::sync::mpsc::Sender<()>,
}

impl LabFiles {
    /// The lab's file for an SFTP path (`/C:/dir/file`).
    fn local(&self, path: &str) -> Result<PathBuf, StatusCode> {
        let windows = path.strip_prefix('/').unwrap_or(path);
        sfbpatch_lab::server_file(&self.lab_dir, &self.host, windows)
            .map_err(|_| StatusCode::NoSuchFile)
    }

    fn attrs(&self, path: &str) -> Result<FileAttributes, StatusCode> {
        let meta = std::fs::metadata(self.local(path)?).map_err(|_| StatusCode::NoSuchFile)?;
        Ok(FileAttributes::from(&meta))
    }
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".to_string(),
        language_tag: "en-US".to_string(),
    }
}

fn io_status(e: &std::io::Error) -> StatusCode {
    match e.kind() {
        std::io::ErrorKind::NotFound => StatusCode::NoSuchFile,
        std::io::ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
        _ => StatusCode::Failure,
    }
}

impl russh_sftp::server::Handler for LabFiles {
    type Error = StatusCode;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        Ok(Version::new())
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let path = if path.is_empty() || path == "." {
            "/".to_string()
        } else {
            path
        };
        Ok(Name {
            id,
            files: vec![File::dummy(path)],
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        Ok(Attrs {
            id,
            attrs: self.attrs(&path)?,
        })
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.stat(id, path).await
    }

    async fn mkdir(
        &mut self,
        id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        let dir = self.local(&path)?;
        // The drive itself (`/C:`) exists on every server.
        std::fs::create_dir_all(&dir).map_err(|e| io_status(&e))?;
        Ok(ok(id))
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        if !pflags.contains(OpenFlags::WRITE) {
            return Err(StatusCode::OpUnsupported);
        }
        let path = self.local(&filename)?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(pflags.contains(OpenFlags::CREATE))
            .truncate(pflags.contains(OpenFlags::TRUNCATE))
            .open(&path)
            .map_err(|e| io_status(&e))?;
        self.next += 1;
        let handle = self.next.to_string();
        self.open.insert(handle.clone(), file);
        Ok(Handle { id, handle })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        let file = self.open.get_mut(&handle).ok_or(StatusCode::Failure)?;
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.write_all(&data))
            .map_err(|e| io_status(&e))?;
        Ok(ok(id))
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        match self.open.remove(&handle) {
            Some(file) => file.sync_all().map_err(|e| io_status(&e)).map(|()| ok(id)),
            None => Err(StatusCode::Failure),
        }
    }
}
