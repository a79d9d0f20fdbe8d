//! An endpoint that cannot be reached is reported at once, as what it is, and never retried:
//! a name that does not resolve (`.invalid`, RFC 6761) and a port where nothing listens.
//!
//! The retry settings would make a single retry wait a minute; each call is bounded by a
//! generous timeout that only a retry could reach, so the tests assert on the error, not on
//! time.

use std::time::Duration;

use keyledger_connect_s3::{S3Error, S3Options, S3Selection, S3Source, Source, Unreachable};
use regex::Regex;

use crate::support::{SECRET, credentials};

/// Options under which any retry takes a minute.
fn patient(endpoint: &str) -> S3Options {
    S3Options {
        endpoint: Some(endpoint.to_owned()),
        force_path_style: true,
        max_attempts: 50,
        initial_backoff: Duration::from_secs(60),
        max_backoff: Duration::from_secs(60),
        ..S3Options::default()
    }
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// Lists and checks access through `endpoint`; both must fail as `why`, naming `host`.
async fn check(endpoint: &str, host: &str, why: Unreachable, words: &str) {
    let source = S3Source::new(&credentials(SECRET), &patient(endpoint)).expect("source");
    let bound = Duration::from_secs(50);
    let listed = tokio::time::timeout(
        bound,
        source.list(&S3Selection::new("samples", "", Regex::new("").unwrap())),
    )
    .await
    .expect("the listing was retried");
    let checked = tokio::time::timeout(bound, source.check_access())
        .await
        .expect("the check was retried");
    // Each error: the kind and host, then a sentence that names the fix and carries neither
    // the SDK's `Debug` text nor the secret.
    let debug_words = [
        "{",
        "DispatchFailure",
        "ConnectorError",
        "Error(",
        "try again",
    ];
    for error in [listed.unwrap_err(), checked.unwrap_err()] {
        match &error {
            S3Error::Unreachable {
                host: named,
                why: found,
                ..
            } => assert_eq!((named.as_str(), *found), (host, why), "{error}"),
            other => panic!("not unreachable: {other:?}"),
        }
        let message = error.to_string();
        let shown = format!("{message} {error:?}");
        assert!(
            message.contains(words) && message.contains("check the endpoint"),
            "{message}"
        );
        assert!(
            debug_words.iter().all(|debug| !message.contains(debug)),
            "{message}"
        );
        assert!(!shown.contains(SECRET));
    }
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_unreachable_at_once() {
    check(
        "http://s3.nonexistent.invalid",
        "s3.nonexistent.invalid",
        Unreachable::UnknownHost,
        "cannot resolve host `s3.nonexistent.invalid`",
    )
    .await;
}

#[tokio::test]
async fn a_refused_connection_is_unreachable_at_once() {
    let host = format!("127.0.0.1:{}", closed_port());
    let (endpoint, words) = (
        format!("http://{host}"),
        format!("the connection to `{host}` was refused"),
    );
    check(&endpoint, &host, Unreachable::ConnectionRefused, &words).await;
}
