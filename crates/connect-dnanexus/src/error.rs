//! What can go wrong talking to DNAnexus. No variant ever carries the token or a download URL.
//!
//! Every message is a sentence built from the failure's kind and DNAnexus' own words (its
//! error type and message), never a `Debug` form. A request that got no answer is classified
//! by walking the transport error's causes to the root: an endpoint that cannot be reached (a
//! name that does not resolve, a refused connection, a TLS failure) is permanent and never
//! retried; timeouts and broken connections are.

use std::error::Error as StdError;

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
    #[error("{}", unreachable_message(host, *why, detail))]
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

/// Why an endpoint cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreachable {
    /// Its name does not resolve.
    UnknownHost,
    /// Nothing listens at its address and port.
    ConnectionRefused,
    /// The TLS handshake failed.
    Tls,
}

fn api_message(kind: &str, status: u16, message: &str) -> String {
    if message.is_empty() {
        format!("DNAnexus answered {kind} (HTTP {status})")
    } else {
        format!("DNAnexus answered {kind} (HTTP {status}): {message}")
    }
}

fn unreachable_message(host: &str, why: Unreachable, detail: &str) -> String {
    match why {
        Unreachable::UnknownHost => format!(
            "cannot resolve host `{host}`: check the endpoint (the DNAnexus api_url setting)"
        ),
        Unreachable::ConnectionRefused => format!(
            "the connection to `{host}` was refused: check the endpoint and that the service \
             is running"
        ),
        Unreachable::Tls => format!(
            "the TLS handshake with `{host}` failed ({detail}): check the endpoint and its \
             certificate"
        ),
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
    let why = match network_cause(&error) {
        NetworkCause::UnknownHost => Some(Unreachable::UnknownHost),
        NetworkCause::Refused => Some(Unreachable::ConnectionRefused),
        NetworkCause::Tls => Some(Unreachable::Tls),
        NetworkCause::TimedOut | NetworkCause::Broken | NetworkCause::Other => None,
    };
    match why {
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

/// The root cause of a network failure, found by walking the error's source chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NetworkCause {
    UnknownHost,
    Refused,
    Tls,
    TimedOut,
    /// Reset, aborted, closed early.
    Broken,
    Other,
}

/// Walks `error`'s sources; the most precise cause found decides. Resolver failures reach us
/// as text only (`dns error`, getaddrinfo's words), hence the text tests.
pub(crate) fn network_cause(error: &(dyn StdError + 'static)) -> NetworkCause {
    let mut found = NetworkCause::Other;
    let mut cause: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(current) = cause {
        let here = cause_of(current);
        if rank(here) > rank(found) {
            found = here;
        }
        cause = current.source();
    }
    found
}

fn cause_of(error: &(dyn StdError + 'static)) -> NetworkCause {
    if let Some(io) = error.downcast_ref::<std::io::Error>() {
        use std::io::ErrorKind;
        match io.kind() {
            ErrorKind::ConnectionRefused => return NetworkCause::Refused,
            ErrorKind::TimedOut => return NetworkCause::TimedOut,
            ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof => return NetworkCause::Broken,
            _ => {}
        }
    }
    let text = error.to_string().to_lowercase();
    let has = |words: &[&str]| words.iter().any(|word| text.contains(word));
    if has(&[
        "dns error",
        "failed to lookup address",
        "name or service not known",
        "nodename nor servname",
        "no address associated",
        "name resolution",
    ]) {
        NetworkCause::UnknownHost
    } else if has(&["connection refused"]) {
        NetworkCause::Refused
    } else if has(&["certificate", "tls", "ssl", "handshake"]) {
        NetworkCause::Tls
    } else if has(&["timed out", "timeout"]) {
        NetworkCause::TimedOut
    } else if has(&["connection reset", "broken pipe", "connection closed"]) {
        NetworkCause::Broken
    } else {
        NetworkCause::Other
    }
}

fn rank(cause: NetworkCause) -> u8 {
    match cause {
        NetworkCause::Other => 0,
        NetworkCause::Broken => 1,
        NetworkCause::TimedOut => 2,
        NetworkCause::Tls => 3,
        NetworkCause::Refused => 4,
        NetworkCause::UnknownHost => 5,
    }
}

/// The innermost cause's text: the operating system's or the TLS library's own words.
fn root_cause(error: &(dyn StdError + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// The error's text and its causes', joined by `: `, without repeats; never a `Debug` form.
pub(crate) fn describe_causes(error: &(dyn StdError + 'static)) -> String {
    let mut text = String::new();
    let mut cause: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(current) = cause {
        let part = current.to_string();
        if !part.is_empty() && !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        cause = current.source();
    }
    text
}
