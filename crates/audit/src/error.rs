use std::path::PathBuf;

use keyledger_log::LogError;
use keyledger_vault::VaultError;

use crate::verify::Problem;

/// Why an audit operation could not be carried out. A damaged log found while verifying is not
/// an error but a [`crate::verify::VerifyOutcome`] with a problem; while replaying it is
/// [`AuditError::Damaged`].
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{0}")]
    Log(#[from] LogError),
    #[error("{0}")]
    Vault(#[from] VaultError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{0} is not a keyledger data directory (no `log/` inside); pass the directory given as data_dir"
    )]
    NotADataDir(PathBuf),
    /// The `keyledger` commands replace this with the command that works next to the server.
    #[error(
        "the data directory {0} is in use by a running server; stop it, or work on a copy \
         (`keyledger admin backup --remote DIR`)"
    )]
    InUse(PathBuf),
    #[error("line {line} of the export: {reason}")]
    Export { line: u64, reason: String },
    #[error("the log is damaged at {0}; run `keyledger audit verify` for details")]
    Damaged(Problem),
    #[error("{0}")]
    Usage(String),
}

impl AuditError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> AuditError {
        AuditError::Io {
            path: path.into(),
            source,
        }
    }
}
