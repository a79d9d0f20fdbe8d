//! `keyledger events tail`: prints the public events, one line each, or their JSON.

use std::io::Write;

use futures::StreamExt;
use keyledger_domain::public::PublicEnvelope;

use crate::subscriber::{get_stream, ordered};
use crate::wire::{Channel, decode_public};
use crate::{BusConfig, BusError, StartAt};

/// What `keyledger events tail` was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TailOptions {
    /// `--from SEQ` (a log sequence), or a time; the beginning by default.
    pub from: StartAt,
    /// `--follow`: keep printing new events; otherwise stop once caught up.
    pub follow: bool,
    /// `--subject`: a public subject or suffix, wildcards allowed (`api_key.*`).
    pub subject: Option<String>,
    /// `--json`: the event's JSON exactly as published, one per line.
    pub json: bool,
}

impl Default for TailOptions {
    fn default() -> Self {
        TailOptions {
            from: StartAt::Beginning,
            follow: false,
            subject: None,
            json: false,
        }
    }
}

/// Prints the stream's events from `options.from`; returns how many were printed. Without
/// `follow` it returns once the events present at the start are printed; with it, it runs until
/// the future is dropped (select it against Ctrl-C) or the connection fails.
pub async fn tail(
    config: &BusConfig,
    options: &TailOptions,
    out: &mut (dyn Write + Send),
) -> Result<u64, BusError> {
    config.check()?;
    let client = config.connect("keyledger-events-tail").await?;
    let js = async_nats::jetstream::context::ContextBuilder::new()
        .timeout(config.ack_timeout)
        .build(client);
    let stream = get_stream(&js, &config.stream).await?;
    let filter = options
        .subject
        .as_deref()
        .map(|filter| config.public_filter(filter))
        .unwrap_or_default();
    let (mut messages, start, pending_at_start) =
        ordered(&stream, Channel::Public, options.from, filter).await?;
    if !options.follow && pending_at_start == 0 {
        return Ok(0);
    }
    let mut printed = 0;
    while let Some(message) = messages.next().await {
        let message = message?;
        match decode_public(&message.payload) {
            Ok(envelope) => {
                let skipped = start.skips_seq(envelope.seq)
                    || start.min_time.is_some_and(|min| envelope.time < min);
                if !skipped {
                    if options.json {
                        out.write_all(&message.payload)?;
                        out.write_all(b"\n")?;
                    } else {
                        writeln!(out, "{}", format_line(&envelope))?;
                    }
                    printed += 1;
                }
            }
            Err(reason) => {
                if options.json {
                    out.write_all(&message.payload)?;
                    out.write_all(b"\n")?;
                } else {
                    writeln!(
                        out,
                        "(stream message {} on {} is not an event this version understands: {reason})",
                        message.stream_seq, message.subject
                    )?;
                }
                printed += 1;
            }
        }
        if !options.follow && message.pending == 0 {
            break;
        }
    }
    out.flush()?;
    Ok(printed)
}

/// The human form of one event: seq, time, type, stream, actor, then the data as compact JSON.
///
/// `    42  2026-11-26T16:24:57.123Z  ApiKeyCreated  api_key/key_…  user:alice  {"key":…}`
pub fn format_line(envelope: &PublicEnvelope) -> String {
    let data = serde_json::to_value(&envelope.event)
        .ok()
        .and_then(|mut value| value.get_mut("data").map(serde_json::Value::take))
        .map(|data| data.to_string())
        .unwrap_or_default();
    format!(
        "{:>8}  {}  {:<22}  {}  {}  {}",
        envelope.seq,
        envelope.time,
        envelope.event.type_name(),
        envelope.subject,
        envelope.actor,
        data
    )
}
