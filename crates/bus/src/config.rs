//! Where NATS is and how keyledger's streams are laid out on it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::{Client, ConnectOptions};

use crate::BusError;

/// How to reach NATS and which streams and subjects to use. `Default` is a local server with
/// the standard names; publication itself is off unless the operator sets `nats.url` (the
/// caller holds an `Option<BusConfig>`: `None` on the embedded default, `Some` once a URL is
/// configured; see [`BusConfig::from_url`]).
#[derive(Clone, PartialEq, Eq)]
pub struct BusConfig {
    /// `nats://host:4222`, `tls://host:4222`, or several separated by commas.
    pub url: String,
    /// The public stream: JSON events without secrets, for any subscriber.
    pub stream: String,
    /// Public subjects are `<subject_prefix>.<aggregate>.<event>`.
    pub subject_prefix: String,
    /// The internal stream the read replicas follow: the log's binary envelopes, which carry
    /// key hashes and sealed (encrypted) external secrets. Lock it down with NATS permissions.
    pub replication_stream: String,
    /// Replication subjects are `<replication_prefix>.<aggregate>.<event>`.
    pub replication_prefix: String,
    /// Whether the relay also publishes the replication stream (needed by `keyledger replica`).
    pub replicate: bool,
    /// A NATS `.creds` file (JWT and NKey seed).
    pub credentials_file: Option<PathBuf>,
    /// A NATS authentication token. Never printed.
    pub token: Option<String>,
    pub tls_required: bool,
    /// A PEM file of extra root certificates for TLS.
    pub ca_file: Option<PathBuf>,
    /// The server drops a re-published event with the same `Nats-Msg-Id` inside this window.
    pub duplicate_window: Duration,
    /// Events published and not yet acknowledged, at most.
    pub max_in_flight: usize,
    /// How long to wait for a publish acknowledgement or a JetStream API answer.
    pub ack_timeout: Duration,
    /// How long to wait for the connection to be made.
    pub connect_timeout: Duration,
    /// Retry delays of the relay and the replica: the first, doubled after every failure up to
    /// the last.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// While idle, how often the relay compares each stream's last sequence with what it
    /// published, so a stream that lost its tail (a nats-server that restarted from a store it
    /// had not synced) is refilled even when no new event comes.
    pub stream_check_interval: Duration,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            url: "nats://127.0.0.1:4222".to_owned(),
            stream: "KEYLEDGER".to_owned(),
            subject_prefix: "keyledger.events".to_owned(),
            replication_stream: "KEYLEDGER_REPLICATION".to_owned(),
            replication_prefix: "keyledger.replication".to_owned(),
            replicate: true,
            credentials_file: None,
            token: None,
            tls_required: false,
            ca_file: None,
            duplicate_window: Duration::from_secs(120),
            max_in_flight: 256,
            ack_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            stream_check_interval: Duration::from_secs(5),
        }
    }
}

impl BusConfig {
    /// The standard layout on the server at `url`.
    pub fn from_url(url: impl Into<String>) -> BusConfig {
        BusConfig {
            url: url.into(),
            ..BusConfig::default()
        }
    }

    /// The URL without any `user:password@` part, for logs and error messages.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The public subject of an event: `keyledger.events.api_key.created`.
    pub fn public_subject(&self, subject_suffix: &str) -> String {
        format!("{}.{subject_suffix}", self.subject_prefix)
    }

    /// Turns a user's `--subject` into a full subject: `api_key.*` and
    /// `keyledger.events.api_key.*` both mean the latter.
    pub fn public_filter(&self, filter: &str) -> String {
        let filter = filter.trim().trim_matches('.');
        if filter == self.subject_prefix || filter.starts_with(&format!("{}.", self.subject_prefix))
        {
            filter.to_owned()
        } else {
            format!("{}.{filter}", self.subject_prefix)
        }
    }

    pub(crate) fn check(&self) -> Result<(), BusError> {
        let name_ok =
            |name: &str| !name.is_empty() && !name.contains(['.', ' ', '*', '>', '/', '\\']);
        for (what, name) in [
            ("stream", &self.stream),
            ("replication_stream", &self.replication_stream),
        ] {
            if !name_ok(name) {
                return Err(BusError::Config(format!(
                    "nats.{what} `{name}` is not a valid JetStream stream name (no dots, spaces, wildcards or slashes)"
                )));
            }
        }
        let prefix_ok = |prefix: &str| {
            !prefix.is_empty()
                && prefix
                    .split('.')
                    .all(|token| !token.is_empty() && !token.contains(['*', '>', ' ']))
        };
        for (what, prefix) in [
            ("subject_prefix", &self.subject_prefix),
            ("replication_prefix", &self.replication_prefix),
        ] {
            if !prefix_ok(prefix) {
                return Err(BusError::Config(format!(
                    "nats.{what} `{prefix}` is not a subject prefix (dot-separated tokens, no wildcards)"
                )));
            }
        }
        if self.replicate
            && (self.stream == self.replication_stream
                || self.subject_prefix == self.replication_prefix)
        {
            return Err(BusError::Config(
                "the public and the replication streams need different names and subject prefixes"
                    .to_owned(),
            ));
        }
        if self.max_in_flight == 0 {
            return Err(BusError::Config(
                "nats.max_in_flight must be at least 1".to_owned(),
            ));
        }
        Ok(())
    }

    /// Connects with the configured credentials and TLS. The client reconnects on its own
    /// after a connection is lost.
    pub async fn connect(&self, name: &str) -> Result<Client, BusError> {
        let connect_error = |reason: String| BusError::Connect {
            url: self.display_url(),
            reason,
        };
        let mut options = ConnectOptions::new()
            .name(name)
            .connection_timeout(self.connect_timeout)
            .request_timeout(Some(self.ack_timeout))
            .max_reconnects(None);
        if let Some(path) = &self.credentials_file {
            options = options.credentials_file(path).await.map_err(|error| {
                connect_error(format!(
                    "cannot read credentials file {}: {error}",
                    path.display()
                ))
            })?;
        }
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if self.tls_required {
            options = options.require_tls(true);
        }
        if let Some(ca_file) = &self.ca_file {
            options = options.add_root_certificates(ca_file.clone());
        }
        let mut addresses = Vec::new();
        let mut url_credentials = None;
        for url in self
            .url
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
        {
            let (address, credentials) = split_user_info(url);
            url_credentials = url_credentials.or(credentials);
            let address = address.parse::<async_nats::ServerAddr>().map_err(|error| {
                connect_error(format!(
                    "not a NATS URL: {}",
                    redact_url(&error.to_string())
                ))
            })?;
            addresses.push(address);
        }
        // async-nats ignores credentials in URLs; `nats://user:password@host` and
        // `nats://token@host` are honoured here.
        match url_credentials {
            Some((user, Some(password))) => options = options.user_and_password(user, password),
            Some((token, None)) if self.token.is_none() => options = options.token(token),
            _ => {}
        }
        options
            .connect(addresses)
            .await
            .map_err(|error| connect_error(redact_url(&error.to_string())))
    }
}

impl fmt::Debug for BusConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusConfig")
            .field("url", &self.display_url())
            .field("stream", &self.stream)
            .field("subject_prefix", &self.subject_prefix)
            .field("replication_stream", &self.replication_stream)
            .field("replication_prefix", &self.replication_prefix)
            .field("replicate", &self.replicate)
            .field("credentials_file", &self.credentials_file)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("tls_required", &self.tls_required)
            .field("ca_file", &self.ca_file)
            .field("duplicate_window", &self.duplicate_window)
            .field("max_in_flight", &self.max_in_flight)
            .field("ack_timeout", &self.ack_timeout)
            .finish_non_exhaustive()
    }
}

/// `nats://user:password@host:4222` → (`nats://host:4222`, user and password).
fn split_user_info(url: &str) -> (String, Option<(String, Option<String>)>) {
    let Some(scheme_end) = url.find("://") else {
        return (url.to_owned(), None);
    };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return (url.to_owned(), None);
    };
    let user_info = &rest[..at];
    let credentials = match user_info.split_once(':') {
        Some((user, password)) => (user.to_owned(), Some(password.to_owned())),
        None => (user_info.to_owned(), None),
    };
    (format!("{scheme}{}", &rest[at + 1..]), Some(credentials))
}

/// Replaces the user information of every URL in `text` (`nats://user:pw@host`) with
/// `[redacted]`.
pub(crate) fn redact_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let (head, tail) = rest.split_at(scheme_end + 3);
        out.push_str(head);
        let authority_end = tail.find(['/', ',', ' ', '"', '\'']).unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(at) => {
                out.push_str("[redacted]");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        let check = |raw: &str, expect: &str| assert_eq!(redact_url(raw), expect, "{raw}");
        check("nats://127.0.0.1:4222", "nats://127.0.0.1:4222");
        check(
            "nats://alice:s3cret@host:4222",
            "nats://[redacted]@host:4222",
        );
        check(
            "tls://tok@a:1,nats://b:2",
            "tls://[redacted]@a:1,nats://b:2",
        );
        check(
            "error for nats://u:p@h:1/x: refused",
            "error for nats://[redacted]@h:1/x: refused",
        );
    }

    #[test]
    fn url_credentials_are_split_off() {
        let check = |raw: &str, address: &str, credentials: Option<(&str, Option<&str>)>| {
            let (got_address, got) = split_user_info(raw);
            assert_eq!(got_address, address);
            assert_eq!(
                got.as_ref().map(|(u, p)| (u.as_str(), p.as_deref())),
                credentials
            );
        };
        check("nats://127.0.0.1:4222", "nats://127.0.0.1:4222", None);
        check(
            "nats://alice:pw@host:1",
            "nats://host:1",
            Some(("alice", Some("pw"))),
        );
        check("tls://tok@host:1", "tls://host:1", Some(("tok", None)));
        check("host:4222", "host:4222", None);
    }

    #[test]
    fn debug_hides_the_token_and_url_credentials() {
        let config = BusConfig {
            url: "nats://user:hunter2@localhost:4222".to_owned(),
            token: Some("tok-very-secret".to_owned()),
            ..BusConfig::default()
        };
        let printed = format!("{config:?}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("tok-very-secret"),
            "{printed}"
        );
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn subject_filters_accept_suffixes_and_full_subjects() {
        let config = BusConfig::default();
        assert_eq!(
            config.public_filter("api_key.*"),
            "keyledger.events.api_key.*"
        );
        assert_eq!(
            config.public_filter("keyledger.events.user.>"),
            "keyledger.events.user.>"
        );
        assert_eq!(config.public_filter(">"), "keyledger.events.>");
        assert_eq!(
            config.public_subject("api_key.created"),
            "keyledger.events.api_key.created"
        );
    }

    #[test]
    fn bad_names_are_refused() {
        let bad = |change: fn(&mut BusConfig)| {
            let mut config = BusConfig::default();
            change(&mut config);
            assert!(config.check().is_err(), "{config:?}");
        };
        bad(|c| c.stream = "KEY.LEDGER".to_owned());
        bad(|c| c.subject_prefix = "keyledger.>".to_owned());
        bad(|c| c.replication_prefix = c.subject_prefix.clone());
        bad(|c| c.max_in_flight = 0);
        assert!(BusConfig::default().check().is_ok());
    }
}
