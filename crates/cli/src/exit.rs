//! Exit codes scripts can rely on, and the error that carries one.

use std::fmt;

/// The process exit codes (docs/operations.md lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// Bad usage or input refused as invalid (400, 413, 415, 422).
    Usage = 1,
    /// Not authenticated, not permitted, or throttled (401, 403, 429).
    Auth = 2,
    /// Something named does not exist (404).
    NotFound = 3,
    /// Conflict with the current state (409).
    Conflict = 4,
    /// The server failed or could not be reached (5xx, connection errors).
    Server = 5,
    /// `audit verify` (or a restore's check) found a problem in the log.
    VerificationFailed = 6,
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
