//! The relay's reading side: events read from the log in order, decoded once and encoded for
//! every channel ahead of publishing, so the publisher only sends.

use bytes::Bytes;
use keyledger_domain::public::hex;
use keyledger_log::{EventIter, LogView, Seq};
use keyledger_vault::decode_event;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::wire::Channel;
use crate::{BusConfig, BusError};

/// The streams the relay publishes to, in the order of [`Prepared::messages`].
pub(super) fn channels(config: &BusConfig) -> Vec<Channel> {
    if config.replicate {
        vec![Channel::Public, Channel::Replication]
    } else {
        vec![Channel::Public]
    }
}

/// One event, read from the log and encoded for every channel (in channel order).
pub(super) struct Prepared {
    pub(super) seq: Seq,
    pub(super) id: String,
    pub(super) messages: Vec<(String, Bytes)>,
}

/// Events prepared ahead of publishing, at most this many.
pub(super) const PREPARED_AHEAD: usize = 512;

/// Reads the log from `from` and prepares every event for publishing; follows new commits, or
/// stops after `until`. The channel closes when it stops (or the log closes).
pub(super) fn spawn_producer(
    log: LogView,
    config: BusConfig,
    from: Seq,
    until: Option<Seq>,
) -> (mpsc::Receiver<Result<Prepared, BusError>>, JoinHandle<()>) {
    let (sender, receiver) = mpsc::channel(PREPARED_AHEAD);
    let task = tokio::spawn(async move {
        let channels = channels(&config);
        let mut commits = log.subscribe();
        let mut reader = LogReader::new(log, from);
        loop {
            if until.is_some_and(|until| reader.next_seq > until) {
                return;
            }
            let next = match reader.next() {
                Ok(Some(envelope)) => match decode_event(&envelope.body) {
                    Ok(event) => Ok(Prepared {
                        seq: envelope.seq,
                        id: hex(&envelope.event_id),
                        messages: channels
                            .iter()
                            .map(|channel| {
                                (
                                    channel.subject(&config, &event),
                                    channel.payload(&envelope, &event),
                                )
                            })
                            .collect(),
                    }),
                    Err(reason) => Err(BusError::Decode {
                        seq: envelope.seq,
                        reason,
                    }),
                },
                Ok(None) => {
                    if until.is_some() || commits.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
                Err(error) => Err(error),
            };
            let failed = next.is_err();
            if sender.send(next).await.is_err() || failed {
                return;
            }
        }
    });
    (receiver, task)
}

/// Reads committed events in order, re-opening the iterator when it reaches the head it was
/// opened at.
pub(crate) struct LogReader {
    log: LogView,
    next_seq: Seq,
    events: Option<EventIter>,
}

impl LogReader {
    pub(crate) fn new(log: LogView, next_seq: Seq) -> LogReader {
        LogReader {
            log,
            next_seq,
            events: None,
        }
    }

    pub(crate) fn next(&mut self) -> Result<Option<keyledger_log::Envelope>, BusError> {
        for _ in 0..2 {
            let events = match &mut self.events {
                Some(events) => events,
                None => {
                    if self.log.head().0 < self.next_seq {
                        return Ok(None);
                    }
                    self.events.insert(self.log.read_from(self.next_seq))
                }
            };
            match events.next() {
                Some(envelope) => {
                    let envelope = envelope?;
                    if envelope.seq != self.next_seq {
                        return Err(BusError::Log(format!(
                            "the log skipped from event {} to {}; run `keyledger audit verify`",
                            self.next_seq, envelope.seq
                        )));
                    }
                    self.next_seq += 1;
                    return Ok(Some(envelope));
                }
                None => self.events = None,
            }
        }
        Ok(None)
    }
}
