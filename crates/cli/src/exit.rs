//! Exit codes. Documented in README.md and `sfbpatch --help`; scripts rely on them.

/// What the process's exit code means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Everything asked for was done.
    Success = 0,
    /// A run ended with failed or skipped servers.
    RunFailed = 1,
    /// Bad input: a file, a flag, a topology, a manifest. Nothing was changed.
    BadInput = 2,
    /// Refused: a lease held by another run, a confirmation not given, nothing to resume, a run
    /// or a state store that does not exist, a server to retry that did not fail.
    Refused = 3,
    /// The run was interrupted (Ctrl-C, once or twice), stopped at the end of its maintenance
    /// window, or awaits approval; `sfbpatch resume` continues it.
    Interrupted = 4,
    /// The state store or a target failed, or a bug.
    Internal = 5,
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn new(exit: Exit, error: impl Into<anyhow::Error>) -> Self {
        Failure {
            exit,
            error: error.into(),
        }
    }

    pub fn bad_input(error: impl Into<anyhow::Error>) -> Self {
        Self::new(Exit::BadInput, error)
    }

    pub fn refused(error: impl Into<anyhow::Error>) -> Self {
        Self::new(Exit::Refused, error)
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::new(Exit::Internal, error)
    }
}

pub type CmdResult = Result<Exit, Failure>;

impl From<sfbpatch_engine::StoreError> for Failure {
    /// A run that is not in the store is a refusal (exit 3), as for every command that takes
    /// `--run`; the store failing is an internal error (exit 5).
    fn from(e: sfbpatch_engine::StoreError) -> Self {
        Failure::from_store_ref(&e)
    }
}

impl Failure {
    /// [`From<StoreError>`], for an error held elsewhere (inside an engine error): whichever
    /// way a store error arrives, it maps to one exit code.
    fn from_store_ref(e: &sfbpatch_engine::StoreError) -> Self {
        use sfbpatch_engine::StoreError::*;
        let exit = match e {
            NoSuchRun(_) | NoStore { .. } => Exit::Refused,
            _ => Exit::Internal,
        };
        let code = e.code();
        Failure::new(exit, anyhow::anyhow!("{e} [{code}]"))
    }
}

impl From<sfbpatch_engine::EngineError> for Failure {
    fn from(e: sfbpatch_engine::EngineError) -> Self {
        use sfbpatch_engine::EngineError::*;
        let exit = match e {
            // A run that is not there, or no store at all: the same refusal as everywhere.
            Store(ref store) => Failure::from_store_ref(store).exit,
            Protocol(_) | StoreOutage { .. } => Exit::Internal,
            Leased { .. }
            | LeaseLost { .. }
            | Fenced { .. }
            | NotResumable { .. }
            | NothingToApprove { .. } => Exit::Refused,
        };
        let code = e.code();
        if let Leased { pool, lease } = &e {
            // The holder by name, and the expiry as the operator's local time.
            use crate::output::printable;
            use sfbpatch_engine::Clock as _;
            return Failure::new(
                exit,
                anyhow::anyhow!(
                    "pool {pool} is leased by run {} (controller {}, {} as {}, pid {}) until {}; \
                     wait for it, or, once that controller is gone, break the lease with \
                     `sfbpatch unlock {pool}` [{code}]",
                    lease.run,
                    printable(&lease.instance),
                    printable(&lease.host),
                    printable(&lease.holder),
                    lease.pid,
                    crate::output::expiry(lease.expires_at, sfbpatch_engine::SystemClock.now())
                ),
            );
        }
        Failure::new(exit, anyhow::anyhow!("{e} [{code}]"))
    }
}

#[cfg(test)]
mod tests {
    use sfbpatch_engine::{EngineError, StoreError};

    use super::*;

    #[test]
    fn a_missing_run_or_store_is_a_refusal_however_it_arrives() {
        let missing = || {
            [
                StoreError::NoSuchRun(99),
                StoreError::NoStore {
                    location: "sqlite:x.db".into(),
                    reason: "no such file".into(),
                },
            ]
        };
        for e in missing() {
            assert_eq!(Failure::from(e).exit, Exit::Refused);
        }
        for e in missing() {
            let f = Failure::from(EngineError::Store(e));
            assert_eq!(f.exit, Exit::Refused, "{:#}", f.error);
            assert!(
                f.error.to_string().contains("does not exist")
                    || f.error.to_string().contains("no state store"),
                "{:#}",
                f.error
            );
        }
        let f = Failure::from(EngineError::Store(StoreError::Query(
            "disk I/O error".into(),
        )));
        assert_eq!(f.exit, Exit::Internal);
        let f = Failure::from(StoreError::Unavailable("connection refused".into()));
        assert_eq!(f.exit, Exit::Internal);
    }
}
