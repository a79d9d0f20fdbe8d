//! What can go wrong talking to DNAnexus. No variant ever carries the token or a download URL.

/// An error from the DNAnexus connector.
#[derive(Debug, thiserror::Error)]
pub enum DnanexusError {
    #[error("the stored DNAnexus token was rejected (expired or revoked)")]
    TokenRejected,
    #[error("DNAnexus project {project} was not found or this token cannot see it")]
    ProjectNotFound { project: String },
    #[error("DNAnexus file {id} was not found or this token cannot see it")]
    FileNotFound { id: String },
    #[error("the DNAnexus token lacks the permission this request needs")]
    PermissionDenied,
    #[error("DNAnexus answered {kind} (HTTP {status}): {message}")]
    Api {
        kind: String,
        status: u16,
        message: String,
    },
    /// `part` 0 stands for the whole file (a size mismatch).
    #[error(
        "DNAnexus file {file} part {part} failed verification: expected {expected}, got {actual}"
    )]
    Verification {
        file: String,
        part: u32,
        expected: String,
        actual: String,
    },
    #[error("the DNAnexus transfer was cancelled")]
    Cancelled,
    #[error("could not talk to DNAnexus: {0}")]
    Transport(String),
    #[error("invalid DNAnexus request: {0}")]
    InvalidInput(String),
    #[error("local file error: {0}")]
    Io(#[from] std::io::Error),
}

impl DnanexusError {
    /// Whether trying again later may succeed (network trouble, throttling, server errors).
    pub fn is_transient(&self) -> bool {
        match self {
            DnanexusError::Transport(_) => true,
            DnanexusError::Api { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// A reply that does not have the shape the API documents.
    pub(crate) fn invalid_response(message: impl Into<String>) -> Self {
        DnanexusError::Api {
            kind: "InvalidResponse".into(),
            status: 200,
            message: message.into(),
        }
    }
}
