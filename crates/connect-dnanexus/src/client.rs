//! The API client: authenticated JSON POSTs with dxpy's retry rules, and the helpers the data
//! GETs share with it.

use std::time::{Duration, SystemTime};

use keyledger_connect::RetryPolicy;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use serde_json::Value;

use crate::error::transport_error;
use crate::{DnanexusError, DnanexusOptions, DnanexusToken};
use keyledger_connect::network::describe_causes;

/// Longest error message kept from a server answer.
const MAX_MESSAGE_CHARS: usize = 500;
/// Longest error type kept (DNAnexus' own are single words such as `ResourceNotFound`).
const MAX_KIND_CHARS: usize = 64;

pub(crate) struct ApiClient {
    pub http: reqwest::Client,
    base_url: String,
    /// `host[:port]` of the API server, to name it in errors.
    pub host: String,
    authorization: HeaderValue,
    token: DnanexusToken,
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base_url", &self.base_url)
            .field("token", &self.token)
            .finish()
    }
}

/// One attempt's verdict.
pub(crate) enum Attempt<T> {
    Done(T),
    Retry {
        error: DnanexusError,
        retry_after: Option<Duration>,
    },
    Fatal(DnanexusError),
}

impl ApiClient {
    pub fn new(token: &DnanexusToken, options: &DnanexusOptions) -> Result<Self, DnanexusError> {
        let base_url = options.api_url.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base_url).map_err(|error| {
            DnanexusError::InvalidInput(format!("api_url {base_url:?}: {error}"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(DnanexusError::InvalidInput(format!(
                "api_url {base_url:?} must be http or https"
            )));
        }
        if token.0.trim().is_empty() {
            return Err(DnanexusError::InvalidInput(
                "the DNAnexus token is empty".into(),
            ));
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", token.0.trim()))
            .map_err(|_| {
                DnanexusError::InvalidInput(
                    "the DNAnexus token contains characters not allowed in a header".into(),
                )
            })?;
        authorization.set_sensitive(true);
        let http = reqwest::Client::builder()
            .user_agent(concat!(
                "keyledger-connect-dnanexus/",
                env!("CARGO_PKG_VERSION")
            ))
            .connect_timeout(Duration::from_secs(30))
            // dxpy's timeout for data requests; applies to each read, so long transfers are fine.
            .read_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()
            .map_err(|error| DnanexusError::Transport(describe_transport(error)))?;
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => base_url.clone(),
        };
        Ok(Self {
            http,
            base_url,
            host,
            authorization,
            token: token.clone(),
            retry: RetryPolicy {
                max_attempts: options.max_attempts,
                initial_backoff: options.initial_backoff,
                max_backoff: options.max_backoff,
            },
        })
    }

    /// `POST <api_url><route>` with `input`, retried per [`RetryPolicy`].
    pub async fn call(&self, route: &str, input: &Value) -> Result<Value, DnanexusError> {
        let url = format!("{}{}", self.base_url, route);
        let body = Bytes::from(input.to_string());
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_call(&url, body.clone()).await {
                Attempt::Done(output) => return Ok(output),
                Attempt::Fatal(error) => return Err(error),
                Attempt::Retry { error, retry_after } => {
                    if !self.retry.allows_another(attempt) {
                        return Err(error);
                    }
                    let delay = self.retry.delay(attempt, retry_after);
                    tracing::debug!(route, attempt, ?delay, %error, "retrying DNAnexus API call");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn try_call(&self, url: &str, body: Bytes) -> Attempt<Value> {
        let sent = self
            .http
            .post(url)
            .header(AUTHORIZATION, self.authorization.clone())
            .header("DNAnexus-API", "1.0.0")
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                let error = transport_error(error, &self.host);
                // An endpoint that cannot be reached stays so: asking again only makes the
                // user wait (a name that does not resolve took 55 s of retries to report).
                if matches!(error, DnanexusError::Unreachable { .. }) {
                    return Attempt::Fatal(error);
                }
                return Attempt::Retry {
                    error,
                    retry_after: None,
                };
            }
        };
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            // A body cut short (or a reset) is retried like dxpy's ContentLengthError.
            Err(error) => {
                return Attempt::Retry {
                    error: transport_error(error, &self.host),
                    retry_after: None,
                };
            }
        };
        if (200..300).contains(&status) {
            return match serde_json::from_slice(&bytes) {
                Ok(output) => Attempt::Done(output),
                Err(_) => Attempt::Retry {
                    error: DnanexusError::invalid_response("the reply is not valid JSON"),
                    retry_after: None,
                },
            };
        }
        let error = self.api_error(status, &bytes);
        if is_retryable_status(status) {
            Attempt::Retry { error, retry_after }
        } else {
            Attempt::Fatal(error)
        }
    }

    /// Maps an error answer (`{"error": {"type", "message"}}`) to a [`DnanexusError`].
    pub fn api_error(&self, status: u16, body: &[u8]) -> DnanexusError {
        let parsed: Option<(String, String)> =
            serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|value| {
                    let error = value.get("error")?;
                    let kind = error.get("type")?.as_str()?.to_owned();
                    let message = error
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    Some((kind, message))
                });
        let (kind, message) = parsed.unwrap_or_else(|| {
            // Not DNAnexus' error shape (a proxy's page, say): keep plain text only, never a
            // markup or JSON document, which is no sentence for people.
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let plain = !text.starts_with(['{', '[', '<']);
            let message = if plain {
                text.lines().next().unwrap_or("")
            } else {
                ""
            };
            ("HTTPError".to_owned(), message.to_owned())
        });
        if kind == "PermissionDenied" {
            return DnanexusError::PermissionDenied;
        }
        if status == 401 {
            return DnanexusError::TokenRejected;
        }
        // Both halves came from the server, which could echo the token in either.
        DnanexusError::Api {
            kind: shorten(&self.redact(&kind), MAX_KIND_CHARS),
            status,
            message: self.redact(&message),
        }
    }

    /// Removes the token from text that came from elsewhere (a server could echo it).
    pub fn redact(&self, text: &str) -> String {
        let token = self.token.0.trim();
        let cleaned = if token.len() >= 4 {
            text.replace(token, "[redacted]")
        } else {
            text.to_owned()
        };
        shorten(&cleaned, MAX_MESSAGE_CHARS)
    }
}

/// `text` if it has at most `limit` characters, else its longest prefix that ends at a word
/// boundary and fits with an ellipsis: never a word cut in half.
pub(crate) fn shorten(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let cut: String = text.chars().take(limit.saturating_sub(1)).collect();
    let kept = match cut.rfind(char::is_whitespace) {
        Some(end) if end > 0 => cut[..end].trim_end(),
        _ => cut.as_str(),
    };
    format!("{kept}…")
}

/// dxpy's rules: 429 and 5xx are retried, every other status is final.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    status == 429 || status >= 500
}

/// `Retry-After` as seconds or an HTTP-date; anything else is ignored.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    keyledger_connect::retry_after(value, SystemTime::now())
}

/// A transport error's text without the URL (download URLs are credentials), with its causes.
pub(crate) fn describe_transport(error: reqwest::Error) -> String {
    describe_causes(&error.without_url())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_between_words() {
        assert_eq!(shorten("short", 10), "short");
        assert_eq!(shorten("one two three four", 12), "one two…");
        assert_eq!(shorten("abcdefghijklmnop", 8), "abcdefg…");
    }

    /// Found by the `dnanexus_responses` fuzz target: the token echoed in the error's type.
    #[test]
    fn a_token_echoed_in_the_error_type_is_redacted() {
        let token = "fuzz-token-0123456789";
        let body =
            format!(r#"{{"error":{{"type":"{token}ResourceNotFound","message":"{token}"}}}}"#);
        let client = ApiClient::new(
            &DnanexusToken(token.to_owned()),
            &DnanexusOptions::default(),
        )
        .expect("a client");
        let error = client.api_error(503, body.as_bytes()).to_string();
        assert!(!error.contains(token), "{error}");
        assert!(error.contains("[redacted]ResourceNotFound"), "{error}");
    }
}
