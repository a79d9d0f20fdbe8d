//! One range of the object into the file: a ranged GET pinned to the ETag, streamed to disk
//! in [`WRITE_BUFFER`] writes, retried from where an interrupted body stopped.
//!
//! Guarantee: memory per range is one write buffer whatever the range's size, and no byte
//! reaches the file unless the answer is exactly the requested range of the pinned object
//! ([`check_range_response`]).

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::sync::{Arc, OnceLock};

use aws_sdk_s3::operation::get_object::GetObjectOutput;
use keyledger_connect::sleep_unless_cancelled;

use crate::RemoteFile;
use crate::error::{Failure, S3Error, classify};
use crate::fetch::context::{AttemptEnd, PartContext, RangeSink, failed, quoted};
use crate::list::unquote;

/// Bytes a part accumulates before one positional write.
const WRITE_BUFFER: usize = 1 << 20;

impl PartContext {
    /// Fetches bytes `start..end` into the file at the same offsets, retrying from where an
    /// interrupted body stopped.
    pub(crate) async fn fetch_range(
        &self,
        file: &Arc<File>,
        start: u64,
        end: u64,
        sink: &mut dyn RangeSink,
    ) -> Result<(), S3Error> {
        let policy = self.source.options.retry_policy();
        let mut position = start;
        let mut failures = 0;
        let mut renewed = false;
        let mut buffer = Vec::with_capacity(
            WRITE_BUFFER.min(usize::try_from(end - start).unwrap_or(WRITE_BUFFER)),
        );
        while position < end {
            if self.cancel.is_cancelled() {
                return Err(S3Error::Cancelled);
            }
            let started = std::time::Instant::now();
            let attempt = self
                .stream_range(file, position, end, &mut buffer, sink)
                .await;
            position += attempt.written;
            let failure = match attempt.outcome {
                Ok(()) if position == end => return Ok(()),
                Ok(()) => Failure::retryable(S3Error::Transport(format!(
                    "the body of {} ended {} bytes early",
                    self.object.path,
                    end - position
                ))),
                Err(failure) => failure,
            };
            // A role session S3 called expired is replaced, and the range asked again at once.
            if self
                .source
                .renew_expired(&failure.error, started, &mut renewed)
                .await
            {
                continue;
            }
            // A connection that delivered bytes before failing is not counted against the part.
            failures = if attempt.written > 0 { 1 } else { failures + 1 };
            if !failure.retryable || !policy.allows_another(failures) {
                return Err(failure.error);
            }
            let delay = policy.delay(failures, failure.retry_after);
            tracing::warn!(
                bucket = %self.object.location.bucket,
                key = %self.object.path,
                resume_at = position,
                attempt = failures,
                delay_ms = delay.as_millis() as u64,
                error = %failure.error,
                "ranged GET failed, retrying"
            );
            if !sleep_unless_cancelled(delay, Some(&self.cancel)).await {
                return Err(S3Error::Cancelled);
            }
        }
        Ok(())
    }

    /// One GET of `position..end`, streamed to disk in [`WRITE_BUFFER`] writes.
    async fn stream_range(
        &self,
        file: &Arc<File>,
        position: u64,
        end: u64,
        buffer: &mut Vec<u8>,
        sink: &mut dyn RangeSink,
    ) -> AttemptEnd {
        let object = &self.object;
        let stall_timeout = self.source.options.stall_timeout;
        let target = self
            .source
            .target("GetObject", &object.location.bucket, Some(&object.path));
        let request = self
            .source
            .client
            .get_object()
            .bucket(&object.location.bucket)
            .key(&object.path)
            .range(format!("bytes={position}-{}", end - 1))
            .set_if_match(self.etag.get().map(|etag| quoted(etag)))
            // S3 returns checksums only when asked. Asked with a raw header rather than
            // `checksum_mode`, which would also make the SDK re-hash the body itself (twice the
            // work, and a mismatch surfacing as a broken body that is retried).
            .customize()
            .mutate_request(|request| {
                request
                    .headers_mut()
                    .insert("x-amz-checksum-mode", "ENABLED");
            });
        let response = tokio::select! {
            () = self.cancel.cancelled() => return failed(0, Failure::fatal(S3Error::Cancelled)),
            response = request.send() => response,
        };
        let response = match response {
            Ok(response) => response,
            Err(error) => return failed(0, classify(error, target)),
        };
        if let Err(failure) = check_range_response(&response, object, &self.etag, position, end) {
            return failed(0, failure);
        }
        sink.on_response(&response);

        let mut body = response.body;
        let mut flushed = 0u64;
        buffer.clear();
        let outcome = loop {
            let chunk = tokio::select! {
                () = self.cancel.cancelled() => return failed(flushed, Failure::fatal(S3Error::Cancelled)),
                chunk = tokio::time::timeout(stall_timeout, body.next()) => chunk,
            };
            let bytes = match chunk {
                Err(_) => {
                    break Err(Failure::retryable(S3Error::Transport(format!(
                        "no data for {stall_timeout:?} while reading {}",
                        object.path
                    ))));
                }
                Ok(None) => break Ok(()),
                Ok(Some(Err(error))) => {
                    break Err(Failure::retryable(S3Error::Transport(format!(
                        "the body of {} was interrupted: {}",
                        object.path,
                        keyledger_connect::network::describe_causes(&error)
                    ))));
                }
                Ok(Some(Ok(bytes))) => bytes,
            };
            let received = flushed + buffer.len() as u64 + bytes.len() as u64;
            if position + received > end {
                break Err(Failure::fatal(S3Error::UnexpectedAnswer(format!(
                    "S3 sent more bytes than requested for {}",
                    object.path
                ))));
            }
            buffer.extend_from_slice(&bytes);
            if buffer.len() >= WRITE_BUFFER {
                match write_at(file, buffer, position + flushed).await {
                    Ok(()) => {
                        sink.on_written(buffer);
                        flushed += buffer.len() as u64;
                        buffer.clear();
                    }
                    Err(error) => return failed(flushed, Failure::fatal(S3Error::Io(error))),
                }
            }
        };
        // Bytes received before an interruption are good: keep them and resume after them.
        if !buffer.is_empty() {
            match write_at(file, buffer, position + flushed).await {
                Ok(()) => {
                    sink.on_written(buffer);
                    flushed += buffer.len() as u64;
                    buffer.clear();
                }
                Err(error) => return failed(flushed, Failure::fatal(S3Error::Io(error))),
            }
        }
        AttemptEnd {
            written: flushed,
            outcome,
        }
    }
}

/// The response must be the requested range of the listed object.
pub(crate) fn check_range_response(
    response: &GetObjectOutput,
    object: &RemoteFile,
    pinned: &OnceLock<String>,
    position: u64,
    end: u64,
) -> Result<(), Failure> {
    let changed = || {
        Failure::fatal(S3Error::ObjectChanged {
            key: object.path.clone(),
        })
    };
    // Servers that ignore If-Match are caught here.
    let etag = unquote(response.e_tag().unwrap_or_default());
    if etag.is_empty() {
        return Err(Failure::fatal(S3Error::UnexpectedAnswer(format!(
            "S3 answered GetObject for {} without an ETag",
            object.path
        ))));
    }
    if *pinned.get_or_init(|| etag.clone()) != etag {
        return Err(changed());
    }
    let Some(range) = response.content_range() else {
        return Err(Failure::fatal(S3Error::UnexpectedAnswer(format!(
            "S3 ignored the Range header for {}",
            object.path
        ))));
    };
    // "bytes <first>-<last>/<total>"
    let parsed = range
        .strip_prefix("bytes ")
        .and_then(|rest| rest.split_once('/'))
        .and_then(|(span, total)| {
            let (first, last) = span.split_once('-')?;
            Some((
                first.parse::<u64>().ok()?,
                last.parse::<u64>().ok()?,
                total.parse::<u64>().ok(),
            ))
        });
    match parsed {
        Some((_, _, Some(total))) if total != object.size => Err(changed()),
        Some((first, last, _)) if first == position && last.checked_add(1) == Some(end) => Ok(()),
        _ => Err(Failure::fatal(S3Error::UnexpectedAnswer(format!(
            "S3 answered range `{range}` for bytes {position}-{} of {}",
            end - 1,
            object.path
        )))),
    }
}

async fn write_at(file: &Arc<File>, buffer: &mut Vec<u8>, offset: u64) -> std::io::Result<()> {
    let file = Arc::clone(file);
    let data = std::mem::take(buffer);
    let (data, result) = tokio::task::spawn_blocking(move || {
        let result = file.write_all_at(&data, offset);
        (data, result)
    })
    .await
    .map_err(std::io::Error::other)?;
    *buffer = data;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::S3Location;

    /// `Content-Range: bytes 0-18446744073709551615/10` overflowed `last + 1` (a panic in
    /// debug builds, a wrapped comparison in release ones) instead of being refused.
    #[test]
    fn a_range_ending_at_u64_max_is_refused() {
        let response = GetObjectOutput::builder()
            .e_tag("\"abc\"")
            .content_range("bytes 0-18446744073709551615/10")
            .build();
        let object = RemoteFile {
            path: "key".to_owned(),
            size: 10,
            version: "abc".to_owned(),
            location: S3Location {
                bucket: "bucket".to_owned(),
                last_modified_ms: None,
            },
        };
        let checked = check_range_response(&response, &object, &OnceLock::new(), 0, 10);
        assert!(checked.is_err());
    }
}
