//! An API server that cannot be reached is reported at once, as what it is, and never
//! retried: a name that does not resolve (`.invalid`, RFC 6761) and a port where nothing
//! listens.
//!
//! The retry settings would make a single retry wait a minute; each call is bounded by a
//! generous timeout that only a retry could reach, so the tests assert on the error, not on
//! time.

use std::time::Duration;

use keyledger_connect_dnanexus::{
    DnanexusError, DnanexusOptions, DnanexusSelection, DnanexusSource, DnanexusToken, Source,
    Unreachable,
};
use regex::Regex;

use crate::common::CANARY_TOKEN;

/// Lists and asks `whoami` through `api_url`; both must fail as `why`, naming `host`.
async fn check(api_url: &str, host: &str, why: Unreachable, words: &str) {
    let options = DnanexusOptions {
        api_url: api_url.to_owned(),
        max_attempts: 50,
        initial_backoff: Duration::from_secs(60),
        max_backoff: Duration::from_secs(60),
        ..DnanexusOptions::default()
    };
    let source =
        DnanexusSource::new(&DnanexusToken(CANARY_TOKEN.to_owned()), &options).expect("source");
    let bound = Duration::from_secs(50);
    let pattern = Regex::new("").unwrap();
    let listed = tokio::time::timeout(
        bound,
        source.list(&DnanexusSelection::new("rnaseq", "/", pattern.clone())),
    )
    .await
    .expect("the listing was retried");
    let checked = tokio::time::timeout(bound, source.check_access())
        .await
        .expect("whoami was retried");
    for error in [listed.unwrap_err(), checked.unwrap_err()] {
        let DnanexusError::Unreachable {
            host: ref named,
            why: found,
            ..
        } = error
        else {
            panic!("not unreachable: {error:?}");
        };
        assert_eq!((named.as_str(), found), (host, why), "{error}");
        assert!(!error.is_transient());
        let message = error.to_string();
        assert!(message.contains(words), "{message}");
        assert!(message.contains("check the endpoint"), "{message}");
        for debug in ["{", "Error(", "reqwest", "try again"] {
            assert!(!message.contains(debug), "{message}");
        }
        crate::common::assert_no_secret(&error);
    }
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_unreachable_at_once() {
    check(
        "https://api.nonexistent.invalid",
        "api.nonexistent.invalid",
        Unreachable::UnknownHost,
        "cannot resolve host `api.nonexistent.invalid`",
    )
    .await;
}

#[tokio::test]
async fn a_refused_connection_is_unreachable_at_once() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let host = format!("127.0.0.1:{port}");
    check(
        &format!("http://{host}"),
        &host,
        Unreachable::ConnectionRefused,
        &format!("the connection to `{host}` was refused"),
    )
    .await;
}
