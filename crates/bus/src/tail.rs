//! `keyledger events tail`: prints the public events, one line each, or their JSON.
//!
//! With `last: Some(n)` it prints at most the `n` most recent matching events present when it
//! starts (a bounded ring buffer, so memory stays bounded whatever the stream holds), then, with
//! `follow`, every new one. A note on the status writer says when live following begins: the
//! consumer exists from then on, so nothing appended afterwards is missed.

use std::collections::VecDeque;
use std::io::Write;

use futures::StreamExt;
use keyledger_domain::public::PublicEnvelope;

use crate::subscriber::{RawMessage, Start, get_stream, ordered};
use crate::wire::{Channel, decode_public};
use crate::{BusConfig, BusError, StartAt};

/// What `keyledger events tail` was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TailOptions {
    /// `--from SEQ` (a log sequence), or a time; the beginning by default.
    pub from: StartAt,
    /// `-n N`: only the last N matching events present at the start (`from` is then ignored).
    pub last: Option<u64>,
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
            last: None,
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
    tail_with_status(config, options, out, &mut std::io::sink()).await
}

/// [`tail`], writing one line to `status` when live following starts (`following …`).
pub async fn tail_with_status(
    config: &BusConfig,
    options: &TailOptions,
    out: &mut (dyn Write + Send),
    status: &mut (dyn Write + Send),
) -> Result<u64, BusError> {
    config.check()?;
    let client = config.connect("keyledger-events-tail").await?;
    let js = async_nats::jetstream::context::ContextBuilder::new()
        .timeout(config.ack_timeout)
        .build(client);
    let mut stream = match get_stream(&js, &config.stream).await {
        Ok(stream) => stream,
        // Following, a stream the relay has not created yet is only early (`tail -F` waits for
        // its file too); the note says what it waits for.
        Err(error) if options.follow => {
            let _ = writeln!(status, "waiting: {error}");
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                if let Ok(stream) = get_stream(&js, &config.stream).await {
                    break stream;
                }
            }
        }
        Err(error) => return Err(error),
    };
    let filter = options
        .subject
        .as_deref()
        .map(|filter| config.public_filter(filter))
        .unwrap_or_default();
    let from = match options.last {
        None => options.from,
        // Unfiltered, the last n events are the last n messages: start there rather than
        // reading the whole history. Filtered, the ring buffer below keeps the last n.
        Some(n) if filter.is_empty() => match last_log_seq(&mut stream).await? {
            Some(last) => StartAt::Seq(last.saturating_sub(n.saturating_sub(1)).max(1)),
            None => StartAt::Beginning,
        },
        Some(_) => StartAt::Beginning,
    };
    let (mut messages, start, pending_at_start) =
        ordered(&stream, Channel::Public, from, filter.clone()).await?;
    let mut printer = Printer {
        out,
        json: options.json,
        start,
        printed: 0,
        // Holds the last n until caught up; `None` prints each event as it comes.
        buffer: options.last.map(|n| (VecDeque::new(), n)),
    };
    let mut caught_up = pending_at_start == 0;
    if caught_up {
        printer.flush_buffer()?;
        if !options.follow {
            return Ok(printer.printed);
        }
        announce(status, &config.stream, &filter);
    }
    while let Some(message) = messages.next().await {
        let message = message?;
        printer.handle(&message)?;
        if !caught_up && message.pending == 0 {
            caught_up = true;
            printer.flush_buffer()?;
            if !options.follow {
                break;
            }
            announce(status, &config.stream, &filter);
        }
    }
    printer.out.flush()?;
    Ok(printer.printed)
}

fn announce(status: &mut (dyn Write + Send), stream: &str, filter: &str) {
    let what = if filter.is_empty() {
        String::new()
    } else {
        format!(" matching {filter}")
    };
    let _ = writeln!(
        status,
        "following new events on {stream}{what} (Ctrl-C to stop)"
    );
    let _ = status.flush();
}

/// The log seq of the stream's last event, `None` when the stream is empty.
async fn last_log_seq(
    stream: &mut async_nats::jetstream::stream::Stream,
) -> Result<Option<u64>, BusError> {
    let name = stream.cached_info().config.name.clone();
    let info = stream.info().await.map_err(|error| BusError::Stream {
        stream: name.clone(),
        reason: error.to_string(),
    })?;
    if info.state.messages == 0 {
        return Ok(None);
    }
    let last = info.state.last_sequence;
    match stream.get_raw_message(last).await {
        Ok(message) => Ok(Channel::Public
            .position_of(&message.payload)
            .map(|(seq, _)| seq)),
        Err(error) => Err(BusError::Stream {
            stream: name,
            reason: format!("reading message {last}: {error}"),
        }),
    }
}

/// Renders messages to lines and prints them, or keeps the last n until caught up.
struct Printer<'a> {
    out: &'a mut (dyn Write + Send),
    json: bool,
    start: Start,
    printed: u64,
    buffer: Option<(VecDeque<Vec<u8>>, u64)>,
}

impl Printer<'_> {
    fn handle(&mut self, message: &RawMessage) -> Result<(), BusError> {
        let Some(line) = self.render(message) else {
            return Ok(());
        };
        match &mut self.buffer {
            Some((lines, n)) => {
                lines.push_back(line);
                while lines.len() as u64 > *n {
                    lines.pop_front();
                }
                Ok(())
            }
            None => self.write(&line),
        }
    }

    fn flush_buffer(&mut self) -> Result<(), BusError> {
        if let Some((lines, _)) = self.buffer.take() {
            for line in lines {
                self.write(&line)?;
            }
        }
        Ok(())
    }

    fn write(&mut self, line: &[u8]) -> Result<(), BusError> {
        self.out.write_all(line)?;
        self.printed += 1;
        Ok(())
    }

    /// The line for one message, `None` when it precedes the requested start.
    fn render(&self, message: &RawMessage) -> Option<Vec<u8>> {
        let mut line = match decode_public(&message.payload) {
            Ok(envelope) => {
                let skipped = self.start.skips_seq(envelope.seq)
                    || self.start.min_time.is_some_and(|min| envelope.time < min);
                if skipped {
                    return None;
                }
                if self.json {
                    message.payload.to_vec()
                } else {
                    format_line(&envelope).into_bytes()
                }
            }
            Err(_) if self.json => message.payload.to_vec(),
            Err(reason) => format!(
                "(stream message {} on {} is not an event this version understands: {reason})",
                message.stream_seq, message.subject
            )
            .into_bytes(),
        };
        line.push(b'\n');
        Some(line)
    }
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
