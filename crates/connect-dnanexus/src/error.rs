//! What can go wrong talking to DNAnexus. No variant ever carries the token or a download URL.
//!
//! Every message is a sentence built from the failure's kind and DNAnexus' own words (its
//! error type and message), never a `Debug` form. A request that got no answer is classified
//! by walking the transport error's causes to the root: an endpoint that cannot be reached (a
//! name that does not resolve, a refused connection, a TLS failure) is permanent and never
//! retried; timeouts and broken connections are.

use keyledger_connect::Unreachable;
use keyledger_connect::network::{describe_causes, network_cause, root_cause};

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
    #[error("{}", api_message(kind, *status, message))]
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
    /// The endpoint cannot be reached at all; retrying cannot help until the configuration
    /// (or the network) changes.
    #[error("{}", why.message(host, detail, "the DNAnexus api_url setting"))]
    Unreachable {
        /// `host` or `host:port`; never a download URL's path or query.
        host: String,
        why: Unreachable,
        /// The TLS library's words, for the TLS case.
        detail: String,
    },
    /// Timeouts and broken connections that outlasted the retries.
    #[error("could not talk to DNAnexus: {0}; try again later")]
    Transport(String),
    #[error("invalid DNAnexus request: {0}")]
    InvalidInput(String),
    #[error("local file error: {0}")]
    Io(#[from] std::io::Error),
}

fn api_message(kind: &str, status: u16, message: &str) -> String {
    if message.is_empty() {
        format!("DNAnexus answered {kind} (HTTP {status})")
    } else {
        format!("DNAnexus answered {kind} (HTTP {status}): {message}")
    }
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

/// A request that got no answer: [`DnanexusError::Unreachable`] when the endpoint cannot be
/// reached at all (never retried), else [`DnanexusError::Transport`] (retried).
pub(crate) fn transport_error(error: reqwest::Error, fallback_host: &str) -> DnanexusError {
    let host = error
        .url()
        .and_then(|url| {
            let host = url.host_str()?;
            Some(match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            })
        })
        .unwrap_or_else(|| fallback_host.to_owned());
    // Download URLs are credentials: nothing below may show one.
    let error = error.without_url();
    match network_cause(&error).unreachable() {
        Some(why) => DnanexusError::Unreachable {
            host,
            why,
            detail: root_cause(&error),
        },
        None if error.is_timeout() => {
            DnanexusError::Transport(format!("the request to `{host}` timed out"))
        }
        None => DnanexusError::Transport(format!(
            "the request to `{host}` failed: {}",
            describe_causes(&error)
        )),
    }
}
