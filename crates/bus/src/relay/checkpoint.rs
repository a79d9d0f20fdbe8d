//! The relay's checkpoint in the log's `meta` tree: the newest event every stream acknowledged.

use std::time::Duration;

use keyledger_log::{Meta, Seq};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::BusError;

pub(super) fn read_checkpoint(meta: &Meta, key: &str) -> Result<Seq, BusError> {
    match meta.get(key)? {
        None => Ok(0),
        Some(bytes) => <[u8; 8]>::try_from(bytes.as_slice())
            .map(Seq::from_be_bytes)
            .map_err(|_| BusError::Log(format!("the relay checkpoint `{key}` is not 8 bytes"))),
    }
}

/// Records the newest acknowledged position after each batch of acknowledgements, at most every
/// [`CHECKPOINT_INTERVAL`]: each save is one durable `meta` write (an fsync) on a blocking
/// thread, so the relay never waits for the disk. A checkpoint behind the stream costs nothing
/// but a look at the stream's last message on the next start.
pub(super) const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

pub(super) fn spawn_checkpoint_writer(
    meta: Meta,
    key: String,
    mut latest: watch::Receiver<Seq>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut saved = *latest.borrow_and_update();
        loop {
            let open = latest.changed().await.is_ok();
            let seq = *latest.borrow_and_update();
            if seq != saved {
                let (meta, key) = (meta.clone(), key.clone());
                match tokio::task::spawn_blocking(move || meta.put(key, seq.to_be_bytes())).await {
                    Ok(Ok(())) => saved = seq,
                    Ok(Err(error)) => {
                        tracing::warn!(%error, seq, "cannot record the relay checkpoint; will retry")
                    }
                    Err(error) => {
                        tracing::warn!(%error, seq, "cannot record the relay checkpoint; will retry")
                    }
                }
            }
            if !open {
                return;
            }
            tokio::time::sleep(CHECKPOINT_INTERVAL).await;
        }
    })
}
