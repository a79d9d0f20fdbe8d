//! Why a request got no answer, read from the transport error's cause chain.
//!
//! Guarantee: an endpoint that cannot be reached at all (a name that does not resolve, a refused
//! connection, a TLS failure) is told apart from trouble that may pass (a timeout, a broken
//! connection), so that connectors retry only the latter (decision 0013). The texts built here
//! are the causes' own `Display` words, never a `Debug` form, so no request URL or header the
//! caller stripped beforehand can come back.

use std::error::Error as StdError;

/// Why an endpoint cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreachable {
    /// Its name does not resolve.
    UnknownHost,
    /// Nothing listens at its address and port.
    ConnectionRefused,
    /// The TLS handshake failed (a certificate not trusted, not for this name, a protocol
    /// mismatch).
    Tls,
}

impl Unreachable {
    /// The sentence a connector's error shows: what failed, and what to check. `setting` names
    /// the configuration that holds the endpoint (`the S3 endpoint setting`).
    pub fn message(self, host: &str, detail: &str, setting: &str) -> String {
        match self {
            Unreachable::UnknownHost => {
                format!("cannot resolve host `{host}`: check the endpoint ({setting})")
            }
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
}

/// The root cause of a network failure, found by walking the error's source chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkCause {
    UnknownHost,
    Refused,
    Tls,
    TimedOut,
    /// Reset, aborted, closed early.
    Broken,
    Other,
}

impl NetworkCause {
    /// The permanent causes, which no retry can cure.
    pub fn unreachable(self) -> Option<Unreachable> {
        match self {
            NetworkCause::UnknownHost => Some(Unreachable::UnknownHost),
            NetworkCause::Refused => Some(Unreachable::ConnectionRefused),
            NetworkCause::Tls => Some(Unreachable::Tls),
            NetworkCause::TimedOut | NetworkCause::Broken | NetworkCause::Other => None,
        }
    }
}

/// Walks `error`'s sources: the first cause that says what happened decides. Resolver
/// failures reach us as text only (`dns error`, getaddrinfo's words), hence the text tests.
pub fn network_cause(error: &(dyn StdError + 'static)) -> NetworkCause {
    let mut found = NetworkCause::Other;
    let mut cause: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(current) = cause {
        let here = cause_of(current);
        // A precise cause deeper in the chain beats a vague one above it.
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
pub fn root_cause(error: &(dyn StdError + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// The error's text and its causes', joined by `: `, without repeats. Unlike the SDK's
/// `DisplayErrorContext`, never the `Debug` form.
pub fn describe_causes(error: &(dyn StdError + 'static)) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    /// An error with a source, as transport layers nest them.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<dyn StdError + Send + Sync>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl StdError for Layer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.1
                .as_deref()
                .map(|source| source as &(dyn StdError + 'static))
        }
    }

    fn layers(texts: &[&'static str], root: std::io::Error) -> Layer {
        let mut error: Box<dyn StdError + Send + Sync> = Box::new(root);
        for text in texts.iter().rev() {
            error = Box::new(Layer(text, Some(error)));
        }
        *error.downcast::<Layer>().unwrap()
    }

    #[test]
    fn network_causes_are_found_at_the_root() {
        use std::io::{Error, ErrorKind};
        let check = |error: Layer, expect: NetworkCause, text: &str| {
            assert_eq!(network_cause(&error), expect, "{error:?}");
            assert_eq!(describe_causes(&error), text);
        };
        check(
            layers(
                &[
                    "dispatch failure",
                    "io error",
                    "client error (Connect)",
                    "dns error",
                ],
                Error::other("failed to lookup address information: Name or service not known"),
            ),
            NetworkCause::UnknownHost,
            "dispatch failure: io error: client error (Connect): dns error: failed to lookup \
             address information: Name or service not known",
        );
        check(
            layers(
                &["io error", "client error (Connect)"],
                Error::new(
                    ErrorKind::ConnectionRefused,
                    "Connection refused (os error 111)",
                ),
            ),
            NetworkCause::Refused,
            "io error: client error (Connect): Connection refused (os error 111)",
        );
        check(
            layers(
                &["io error"],
                Error::new(
                    ErrorKind::InvalidData,
                    "invalid peer certificate: UnknownIssuer",
                ),
            ),
            NetworkCause::Tls,
            "io error: invalid peer certificate: UnknownIssuer",
        );
        check(
            layers(
                &["io error"],
                Error::new(ErrorKind::ConnectionReset, "reset"),
            ),
            NetworkCause::Broken,
            "io error: reset",
        );
        check(
            layers(&["timeout"], Error::new(ErrorKind::TimedOut, "timed out")),
            NetworkCause::TimedOut,
            "timeout: timed out",
        );
    }
}
