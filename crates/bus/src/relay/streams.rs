//! Where the relay stands in each JetStream stream: creating a stream, resynchronising from its
//! last message after any failure, noticing a stream that lost its tail, and refusing a stream
//! that belongs to another log.

use async_nats::jetstream::context::Context;
use async_nats::jetstream::stream::{self, Stream};
use keyledger_domain::public::hex;
use keyledger_log::{LogView, Seq};

use crate::wire::Channel;
use crate::{BusConfig, BusError};

/// One stream the relay publishes to, and where it stands in it.
pub(super) struct Target {
    pub(super) stream: String,
    /// Every event up to this one is in the stream, or was published and awaits its ack.
    pub(super) position: Seq,
    /// The stream sequence the last of those took: the next publish expects it.
    pub(super) last_stream_seq: u64,
}

/// Gets the stream, or creates it: file storage, `<prefix>.>`, the configured duplicate window.
pub async fn ensure_stream(
    js: &Context,
    config: &BusConfig,
    channel: Channel,
) -> Result<Stream, BusError> {
    let name = channel.stream(config);
    let subjects = format!("{}.>", channel.prefix(config));
    let stream = js
        .get_or_create_stream(stream::Config {
            name: name.to_owned(),
            subjects: vec![subjects.clone()],
            storage: stream::StorageType::File,
            duplicate_window: config.duplicate_window,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(|error| BusError::Stream {
            stream: name.to_owned(),
            reason: error.to_string(),
        })?;
    if !stream.cached_info().config.subjects.contains(&subjects) {
        return Err(BusError::Stream {
            stream: name.to_owned(),
            reason: format!(
                "it exists with subjects {:?}, not {subjects}; fix nats.subject_prefix or the stream",
                stream.cached_info().config.subjects
            ),
        });
    }
    Ok(stream)
}

/// Where the stream stands: its last message says which event it holds last.
pub(super) async fn resync(
    channel: Channel,
    stream: &mut Stream,
    log: &LogView,
    checkpoint: Seq,
) -> Result<Target, BusError> {
    let name = channel_stream_name(stream);
    let stream_error = |reason: String| BusError::Stream {
        stream: name.clone(),
        reason,
    };
    let info = stream
        .get_info()
        .await
        .map_err(|error| stream_error(error.to_string()))?;
    let last_stream_seq = info.state.last_sequence;
    let position = if last_stream_seq == 0 {
        // A stream that never held a message (new or recreated) gets the whole log.
        0
    } else if info.state.messages == 0 {
        // Purged or expired: nothing to compare with, so the checkpoint decides.
        checkpoint
    } else {
        match stream.get_raw_message(last_stream_seq).await {
            Ok(message) => match channel.position_of(&message.payload) {
                Some((seq, id)) => {
                    check_same_log(log, &name, seq, &id)?;
                    seq
                }
                None => {
                    tracing::warn!(stream = %name, "the stream's last message is not a keyledger event; the checkpoint decides");
                    checkpoint
                }
            },
            Err(error) => {
                tracing::warn!(stream = %name, %error, "cannot read the stream's last message; the checkpoint decides");
                checkpoint
            }
        }
    };
    Ok(Target {
        stream: name,
        position,
        last_stream_seq,
    })
}

/// With nothing in flight, every stream must end exactly where the relay's last publish landed;
/// anything else (a server that came back without its unsynced tail, a purge, a foreign
/// publisher) ends the session, and the next one resynchronises from the stream.
pub(super) async fn check_streams(
    streams: &mut [Stream],
    targets: &[Target],
) -> Result<(), BusError> {
    for (stream, target) in streams.iter_mut().zip(targets) {
        let info = stream.get_info().await.map_err(|error| BusError::Stream {
            stream: target.stream.clone(),
            reason: error.to_string(),
        })?;
        if info.state.last_sequence != target.last_stream_seq {
            return Err(BusError::StreamMoved {
                stream: target.stream.clone(),
                expected: target.last_stream_seq,
                found: info.state.last_sequence,
            });
        }
    }
    Ok(())
}

pub(super) fn channel_stream_name(stream: &Stream) -> String {
    stream.cached_info().config.name.clone()
}

/// The stream's last event must be this log's event at that seq, or the stream belongs to
/// another log (another data directory published to the same stream name).
pub(super) fn check_same_log(
    log: &LogView,
    stream: &str,
    seq: Seq,
    id: &str,
) -> Result<(), BusError> {
    let foreign = |detail: String| BusError::ForeignStream {
        stream: stream.to_owned(),
        detail,
    };
    match log.get(seq)? {
        Some(envelope) if hex(&envelope.event_id) == id => Ok(()),
        Some(_) => Err(foreign(format!(
            "its event {seq} has id {id}, this log's has another"
        ))),
        None => Err(foreign(format!(
            "it holds event {seq} but this log ends at {}",
            log.head().0
        ))),
    }
}
