//! The network side of the transfer: a lane's ranged GETs, resumed from the last byte
//! received after a break, with a fresh download URL when one is refused.
//!
//! Guarantee: a byte reaches the file only from an answer that is exactly the requested range
//! (`206` with the asked-for start, or `200` for a whole-file lane), and never beyond the lane's
//! end.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use keyledger_connect::Progress;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, RANGE};

use super::layout::Lane;
use super::transfer::Transfer;
use super::urls::{DownloadUrl, DownloadUrls};
use crate::DnanexusError;
use crate::client::{ApiClient, describe_transport, is_retryable_status, retry_after};
use crate::error::transport_error;

/// Bytes a lane collects before writing and hashing them.
const BLOCK_BYTES: usize = 1 << 20;

/// What a lane needs besides the transfer itself.
pub(super) struct Network<'a> {
    pub api: &'a ApiClient,
    pub urls: &'a DownloadUrls,
    pub progress: &'a Progress<'a>,
}

/// How a ranged GET failed.
enum RangeFailure {
    /// Retrying cannot help.
    Fatal(DnanexusError),
    /// The URL expired or was refused: ask for a new one.
    UrlRejected(DnanexusError),
    /// Throttling, a server error or a broken connection: wait, then resume.
    Retry {
        error: DnanexusError,
        retry_after: Option<Duration>,
    },
}

impl RangeFailure {
    fn retry(error: DnanexusError, retry_after: Option<Duration>) -> Self {
        RangeFailure::Retry { error, retry_after }
    }
}

impl Transfer {
    /// Fetches a lane with one ranged GET; a GET that breaks off is resumed from the last byte
    /// received.
    pub(super) async fn run_lane(
        self: &Arc<Self>,
        network: &Network<'_>,
        lane: Lane,
    ) -> Result<(), DnanexusError> {
        let mut offset = lane.start;
        let mut failures = 0u32;
        while offset < lane.end {
            let url = network
                .urls
                .get(network.api, &self.file_id, &self.project)
                .await?;
            let (reached, outcome) = self
                .fetch_range(network, &url, lane.part, offset, lane.end)
                .await;
            if reached > offset {
                failures = 0;
                offset = reached;
            }
            let failure = match outcome {
                Ok(()) => continue,
                Err(failure) => failure,
            };
            failures += 1;
            match failure {
                RangeFailure::Fatal(error) => return Err(error),
                RangeFailure::UrlRejected(error) => {
                    if !network.api.retry.allows_another(failures) {
                        return Err(error);
                    }
                    tracing::debug!(file = %self.file_id, %error, "download URL rejected; asking for a new one");
                    network.urls.invalidate(url.generation).await;
                }
                RangeFailure::Retry { error, retry_after } => {
                    if !network.api.retry.allows_another(failures) {
                        return Err(error);
                    }
                    let delay = network.api.retry.delay(failures, retry_after);
                    tracing::debug!(file = %self.file_id, failures, ?delay, %error, "retrying a ranged GET");
                    tokio::time::sleep(delay).await;
                }
            }
        }
        Ok(())
    }

    /// GETs `[start, end)` and writes it; returns how far the data got, and how it ended.
    async fn fetch_range(
        self: &Arc<Self>,
        network: &Network<'_>,
        url: &DownloadUrl,
        part: usize,
        start: u64,
        end: u64,
    ) -> (u64, Result<(), RangeFailure>) {
        let request = network
            .api
            .http
            .get(&url.url)
            .headers(url.headers.clone())
            .header(RANGE, format!("bytes={start}-{}", end - 1));
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let error = transport_error(error, &network.api.host);
                let failure = if matches!(error, DnanexusError::Unreachable { .. }) {
                    RangeFailure::Fatal(error)
                } else {
                    RangeFailure::retry(error, None)
                };
                return (start, Err(failure));
            }
        };
        let status = response.status();
        let whole_file = start == 0 && end == self.size;
        if status != StatusCode::PARTIAL_CONTENT && !(status == StatusCode::OK && whole_file) {
            let code = status.as_u16();
            let wait = retry_after(response.headers());
            let body = response.bytes().await.unwrap_or_default();
            let error = network.api.api_error(code, &body);
            let failure = match code {
                200 => RangeFailure::Fatal(DnanexusError::invalid_response(
                    "the download server ignored the Range header",
                )),
                403 | 404 | 410 => RangeFailure::UrlRejected(error),
                code if is_retryable_status(code) => RangeFailure::retry(error, wait),
                _ => RangeFailure::Fatal(error),
            };
            return (start, Err(failure));
        }
        if status == StatusCode::PARTIAL_CONTENT {
            let range_start = response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|value| value.to_str().ok())
                .and_then(content_range_start);
            if range_start.is_some_and(|range_start| range_start != start) {
                return (
                    start,
                    Err(RangeFailure::Fatal(DnanexusError::invalid_response(
                        "the download server answered a different range",
                    ))),
                );
            }
        }

        // Frames are collected (not copied) until about a block's worth, then written and
        // hashed together on a blocking thread.
        let mut position = start;
        let mut frames: Vec<Bytes> = Vec::new();
        let mut collected = 0u64;
        let ending = loop {
            match response.chunk().await {
                Ok(Some(bytes)) => {
                    if position + collected + bytes.len() as u64 > end {
                        break Err(RangeFailure::Fatal(DnanexusError::invalid_response(
                            "the download server sent more bytes than asked",
                        )));
                    }
                    collected += bytes.len() as u64;
                    frames.push(bytes);
                    if collected >= BLOCK_BYTES as u64 {
                        if let Err(error) = self
                            .write_block(part, position, std::mem::take(&mut frames))
                            .await
                        {
                            return (position, Err(RangeFailure::Fatal(error)));
                        }
                        position = self.advanced(network, position, std::mem::take(&mut collected));
                    }
                }
                Ok(None) => break Ok(()),
                // A body cut short: keep what arrived, resume from there.
                Err(error) => {
                    break Err(RangeFailure::retry(
                        DnanexusError::Transport(describe_transport(error)),
                        None,
                    ));
                }
            }
        };
        if collected > 0 {
            if let Err(error) = self.write_block(part, position, frames).await {
                return (position, Err(RangeFailure::Fatal(error)));
            }
            position = self.advanced(network, position, collected);
        }
        match ending {
            Ok(()) if position < end => (
                position,
                Err(RangeFailure::retry(
                    DnanexusError::Transport(format!(
                        "the download ended after {} of {} bytes",
                        position - start,
                        end - start
                    )),
                    None,
                )),
            ),
            ending => (position, ending),
        }
    }

    fn advanced(&self, network: &Network<'_>, position: u64, len: u64) -> u64 {
        (network.progress)(len);
        position + len
    }
}

/// `bytes 5-9/100` → 5.
fn content_range_start(header: &str) -> Option<u64> {
    header
        .trim()
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(content_range_start("bytes 5-9/100"), Some(5));
    }
}
