//! `keyledger events tail` and `keyledger replica`: the NATS side of the vault, and the `[nats]`
//! configuration section that `serve` uses to start the outbox relay.
//!
//! `events tail` behaves like `tail`: the last 10 events, `-n N` for more, `--follow` for what
//! arrives from now on, `--from` for history. A subject filter is checked against the event
//! catalogue (`keyledger_bus::schema::EVENT_DOCS`, the one the docs are generated from) before
//! anything is read, so a typo is refused instead of printing nothing. A reader that closes
//! the pipe (`| head`) ends the command quietly with success.

use std::net::SocketAddr;
use std::path::PathBuf;

use keyledger_bus::schema::EVENT_DOCS;
use keyledger_bus::{BusConfig, BusError, StartAt, TailOptions};
use keyledger_domain::Timestamp;

use crate::config::Config;
use crate::exit::{Exit, Failure};
use crate::local;

#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// Print events from the NATS stream: the last 10, or what arrives from now on with
    /// --follow; human lines, or the published JSON with --json.
    Tail {
        /// Start at this log sequence number (0: the whole history), or at a time (RFC 3339 or
        /// a date), instead of the last events.
        #[arg(long, conflicts_with = "lines")]
        from: Option<String>,
        /// How many of the latest events to print [default: 10; with --follow: none, only new ones].
        #[arg(short = 'n', long = "lines", value_name = "N")]
        lines: Option<u64>,
        /// Keep printing new events (Ctrl-C to stop).
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only these events: a subject (`api_key.created`, or with the prefix), a type
        /// (`ApiKeyCreated`), an aggregate (`api_key`), or a pattern (`api_key.*`, `ingestion.>`).
        #[arg(long)]
        subject: Option<String>,
        /// The NATS server [default: nats.url / KEYLEDGER_NATS_URL].
        #[arg(long)]
        nats_url: Option<String>,
        /// Configuration file, merged over the embedded default.
        #[arg(long, env = "KEYLEDGER_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct ReplicaArgs {
    /// Where the replica's HTTP API (`POST /v1/keys/verify`) listens.
    #[arg(long, default_value = "127.0.0.1:8081", env = "KEYLEDGER_REPLICA_ADDR")]
    http_addr: SocketAddr,
    /// The NATS server [default: nats.url / KEYLEDGER_NATS_URL].
    #[arg(long)]
    nats_url: Option<String>,
    /// Configuration file, merged over the embedded default (for [nats] and the master key).
    #[arg(long, env = "KEYLEDGER_CONFIG")]
    config: Option<PathBuf>,
}

pub fn run(command: &EventsCommand, json: bool) -> anyhow::Result<()> {
    let EventsCommand::Tail {
        from,
        lines,
        follow,
        subject,
        nats_url,
        config,
    } = command;
    let config = Config::load(config.as_deref())?;
    let bus = require_bus(&config, nats_url.as_deref())?;
    let subject = subject
        .as_deref()
        .map(|filter| subject_filter(filter, &bus.subject_prefix))
        .transpose()?;
    let last = match (from, lines) {
        (Some(_), _) => None,
        (None, Some(n)) => Some(*n),
        // `tail -f`: only what arrives from now on.
        (None, None) if *follow => None,
        (None, None) => Some(DEFAULT_LINES),
    };
    let from = match from.as_deref() {
        None if last.is_none() => StartAt::New,
        None => StartAt::Beginning,
        Some("0") => StartAt::Beginning,
        Some(text) if text.bytes().all(|b| b.is_ascii_digit()) => StartAt::Seq(
            text.parse()
                .map_err(|_| Failure::new(Exit::Usage, format!("--from: `{text}` is too large")))?,
        ),
        Some(text) => StartAt::Time(
            Timestamp::parse_rfc3339(text)
                .map_err(|err| Failure::new(Exit::Usage, format!("--from: {err}")))?,
        ),
    };
    let options = TailOptions {
        from,
        last,
        follow: *follow,
        subject,
        json,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let mut out = std::io::stdout();
        let mut status = std::io::stderr();
        keyledger_bus::tail_with_status(&bus, &options, &mut out, &mut status).await
    });
    match result {
        Ok(_) => Ok(()),
        // The reader closed the pipe (`| head`): it has what it wanted.
        Err(BusError::Io(err)) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(err) => Err(Failure::new(Exit::Server, err.to_string()).into()),
    }
}

/// What `events tail` prints without --from or -n.
const DEFAULT_LINES: u64 = 10;

/// The NATS filter for `--subject`, or a refusal listing the valid subjects when it names no
/// event: a type name (`ApiKeyCreated`) becomes its subject, an aggregate (`api_key`) all of
/// its events, and a subject or pattern must match at least one catalogued subject.
fn subject_filter(filter: &str, prefix: &str) -> anyhow::Result<String> {
    let filter = filter.trim().trim_matches('.');
    let catalogue = || EVENT_DOCS.iter().map(|doc| doc.subject_suffix);
    if let Some(doc) = EVENT_DOCS.iter().find(|doc| doc.type_name == filter) {
        return Ok(doc.subject_suffix.to_owned());
    }
    let suffix = filter
        .strip_prefix(prefix)
        .map(|rest| rest.trim_start_matches('.'))
        .unwrap_or(filter);
    let suffix = if suffix.is_empty() { ">" } else { suffix };
    if catalogue().any(|subject| subject.split('.').next() == Some(suffix)) {
        return Ok(format!("{suffix}.*"));
    }
    if catalogue().any(|subject| subject_matches(suffix, subject)) {
        return Ok(suffix.to_owned());
    }
    let valid: Vec<&str> = catalogue().collect();
    Err(Failure::new(
        Exit::Usage,
        format!(
            "--subject `{filter}` matches no event; use a subject, a type (ApiKeyCreated), an aggregate (api_key) or a pattern (api_key.*); the subjects are: {}",
            valid.join(", ")
        ),
    )
    .into())
}

/// NATS subject matching: `*` is one token, a final `>` one or more.
fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for token in pattern.split('.') {
        match (token, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (token, Some(actual)) if token == actual => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

pub fn run_replica(args: &ReplicaArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    local::init_tracing(&config);
    let bus = require_bus(&config, args.nats_url.as_deref())?;
    let master_key = local::master_key_existing(&config)?;
    let limits = local::lag_limits(&config)?;
    let replica = keyledger_bus::replica::ReplicaConfig {
        bus,
        master_key,
        limits,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        keyledger_api::replica::run(replica, args.http_addr, local::shutdown_signal())
            .await
            .map_err(|err| Failure::new(Exit::Server, err.to_string()))
    })?;
    Ok(())
}

fn require_bus(config: &Config, url: Option<&str>) -> anyhow::Result<BusConfig> {
    local::bus_config(config, url)?.ok_or_else(|| {
        Failure::new(Exit::Usage, "no NATS server configured: pass --nats-url, set KEYLEDGER_NATS_URL, or nats.url in the configuration").into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(filter: &str, expect: Result<&str, ()>) {
        let got = subject_filter(filter, "keyledger.events").map_err(|_| ());
        assert_eq!(got.as_deref(), expect.as_deref(), "{filter}");
    }

    #[test]
    fn subject_filters_name_known_events_or_are_refused() {
        check("api_key.created", Ok("api_key.created"));
        check("keyledger.events.api_key.created", Ok("api_key.created"));
        check("ApiKeyCreated", Ok("api_key.created"));
        check("api_key", Ok("api_key.*"));
        check("api_key.*", Ok("api_key.*"));
        check("ingestion.>", Ok("ingestion.>"));
        check("*.created", Ok("*.created"));
        check(">", Ok(">"));
        check("keyledger.events", Ok(">"));
        check("api_key.creatd", Err(()));
        check("apikey.*", Err(()));
        check("api_key.created.extra", Err(()));
        check("ApiKeyCreate", Err(()));
    }
}
