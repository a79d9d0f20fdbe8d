//! Exit codes scripts can rely on, and the error that carries one. The table is a contract,
//! documented in docs/cli.md and tested per command: a code keeps its meaning forever; new
//! meanings get new numbers.

use std::fmt;

/// The process exit codes (docs/cli.md lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// Bad usage or input refused as invalid (400, 413, 415, 422).
    Usage = 1,
    /// Not authenticated, not permitted, or throttled (401, 403, 429); not logged in.
    Auth = 2,
    /// Something named does not exist (404).
    NotFound = 3,
    /// Conflict with the current state (409).
    Conflict = 4,
    /// The server failed or could not be reached (5xx, connection errors).
    Server = 5,
    /// `audit verify` (or a restore's check) found a problem in the log, or a required
    /// checkpoint or expected head is missing.
    VerificationFailed = 6,
    /// The command did part of its work: some files of an ingestion failed, some keys of a
    /// batch could not be deleted. The output names each failure.
    PartialFailure = 7,
    /// A selection (bucket + prefix + pattern, project + folder + pattern, an events filter)
    /// matched nothing.
    NothingMatched = 8,
    /// The provider (AWS, DNAnexus) refused: credentials rejected or expired, bucket or
    /// project missing, access denied, the endpoint's name does not resolve. Retrying the same
    /// command does not help; the message says what to change.
    ProviderRejected = 9,
    /// The user interrupted the command (Ctrl-C); what it started was cancelled, or the
    /// message says what still runs.
    Interrupted = 130,
}

impl Exit {
    pub fn for_status(status: u16) -> Exit {
        match status {
            401 | 403 | 429 => Exit::Auth,
            404 => Exit::NotFound,
            409 => Exit::Conflict,
            400..=499 => Exit::Usage,
            _ => Exit::Server,
        }
    }
}

/// An error with the exit code it should end the process with. Anything else that reaches
/// `main` exits with [`Exit::Usage`].
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}
