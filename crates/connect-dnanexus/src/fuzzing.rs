//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, never on in the service):
//! the connector's parsers of what the DNAnexus API answers. Each calls the real parser on
//! the bytes as `ApiClient::call` receives them; nothing here parses on its own.

use std::sync::OnceLock;
use std::time::Duration;

use regex::Regex;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use serde_json::Value;

use crate::client::{ApiClient, retry_after};
use crate::list::{normalize_folder, parse_page};
use crate::{DnanexusError, DnanexusOptions, DnanexusToken, RemoteFile};
use keyledger_connect::RetryPolicy;

/// The token of the client that parses error answers: what redaction must remove.
pub const FUZZ_TOKEN: &str = "fuzz-token-0123456789";

/// A `findDataObjects` reply body, listed below `folder` with files matching `pattern`.
pub fn find_data_objects_page(
    body: &[u8],
    folder: &str,
    pattern: &Regex,
) -> Result<(Vec<RemoteFile>, Value), DnanexusError> {
    let page: Value = serde_json::from_slice(body)
        .map_err(|_| DnanexusError::invalid_response("the reply is not valid JSON"))?;
    let folder = normalize_folder(folder)?;
    parse_page(&page, &folder, pattern)
}

/// An error answer (`status`, body) as the client maps it.
pub fn api_error(status: u16, body: &[u8]) -> DnanexusError {
    static CLIENT: OnceLock<ApiClient> = OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        ApiClient::new(
            &DnanexusToken(FUZZ_TOKEN.to_owned()),
            &DnanexusOptions::default(),
        )
        .expect("the default options and a non-empty token make a client")
    });
    client.api_error(status, body)
}

/// The wait before attempt `attempt + 1` after an answer with this `Retry-After` header, under
/// the default retry policy; `None` if the header value is not a valid header.
pub fn retry_delay(retry_after_header: &[u8], attempt: u32) -> Option<Duration> {
    let mut headers = HeaderMap::new();
    headers.insert(
        RETRY_AFTER,
        HeaderValue::from_bytes(retry_after_header).ok()?,
    );
    let options = DnanexusOptions::default();
    let policy = RetryPolicy {
        max_attempts: options.max_attempts,
        initial_backoff: options.initial_backoff,
        max_backoff: options.max_backoff,
    };
    Some(policy.delay(attempt, retry_after(&headers)))
}
