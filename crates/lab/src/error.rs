//! The lab's errors. Each has a stable code (`SFB-L001`...), explained in `docs/lab.md`.

use std::path::PathBuf;

/// Why a lab could not be created, opened or read. Each message ends with its code.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// `SFB-L001`: a file or folder of the lab could not be read or written.
    #[error("{action} {path}: {source} [SFB-L001]")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// `SFB-L002`: `init` found a lab in the folder already.
    #[error(
        "a lab already exists in {dir} (lab.db): choose an empty folder or remove it [SFB-L002]"
    )]
    AlreadyExists { dir: PathBuf },

    /// `SFB-L003`: `open` found no lab in the folder.
    #[error("{dir} holds no lab (no lab.db): create one with `sfbpatch lab init` [SFB-L003]")]
    NotALab { dir: PathBuf },

    /// `SFB-L004`: the lab database failed.
    #[error("lab database {path}: {source} [SFB-L004]")]
    Database {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    /// `SFB-L005`: the faults file is not valid.
    #[error("{origin}:{line}: {}{message} [SFB-L005]", fault_prefix(*.index))]
    Faults {
        origin: String,
        line: u32,
        /// The 1-based position of the `[[fault]]` table, when the error is inside one.
        index: Option<usize>,
        message: String,
    },

    /// `SFB-L006`: a fault names a server the lab does not have.
    #[error(
        "{origin}:{line}: fault {index}: server '{server}' is not a server of this lab (the lab's servers: {known}) [SFB-L006]"
    )]
    FaultServer {
        origin: String,
        line: u32,
        index: usize,
        server: String,
        known: String,
    },

    /// `SFB-L007`: the deployment cannot be turned into a lab.
    #[error("the deployment cannot be simulated: {0} [SFB-L007]")]
    Deployment(String),

    /// `SFB-L008`: `lab.db` was written by an incompatible version of sfbpatch.
    #[error("{path} has lab format {found}; this sfbpatch reads format {expected} [SFB-L008]")]
    Format {
        path: PathBuf,
        found: i64,
        expected: i64,
    },

    /// `SFB-L009`: a server that is not part of the lab was asked for.
    #[error("server '{0}' is not part of this lab [SFB-L009]")]
    UnknownServer(String),

    /// `SFB-L010`: a lab option is out of range.
    #[error("invalid lab option: {0} [SFB-L010]")]
    InvalidOption(String),
}

fn fault_prefix(index: Option<usize>) -> String {
    index.map(|i| format!("fault {i}: ")).unwrap_or_default()
}

impl LabError {
    /// The stable code, for messages and documentation.
    pub fn code(&self) -> &'static str {
        match self {
            LabError::Io { .. } => "SFB-L001",
            LabError::AlreadyExists { .. } => "SFB-L002",
            LabError::NotALab { .. } => "SFB-L003",
            LabError::Database { .. } => "SFB-L004",
            LabError::Faults { .. } => "SFB-L005",
            LabError::FaultServer { .. } => "SFB-L006",
            LabError::Deployment(_) => "SFB-L007",
            LabError::Format { .. } => "SFB-L008",
            LabError::UnknownServer(_) => "SFB-L009",
            LabError::InvalidOption(_) => "SFB-L010",
        }
    }
}
