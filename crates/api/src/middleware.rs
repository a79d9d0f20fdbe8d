//! What every request goes through, whatever its route: a request id and a tracing span, the body
//! size limit, the timeout, the judgement of who may call the route (`access::judge`), the JSON
//! error shape for rejections that did not come from a route,
//! security headers, and the request metrics.
//!
//! A connection stays usable after an answer given before the request body was read (401, 403,
//! 415, 429, an unknown route): hyper would otherwise close it (the unread body is still on the
//! wire) without saying so, and a client reusing it would send into a closed socket. The request
//! body is wrapped ([`WatchedBody`]) so that what the route left unread comes back here; it is
//! read and discarded (at most `body_limit` bytes, within the request timeout) before the answer
//! goes out. When that is not possible (413, a timeout, a broken body) the answer carries
//! `Connection: close` and hyper closes the connection after it.

use std::pin::Pin;
use std::sync::Arc;

use parking_lot::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::ApiState;
use crate::access;
use crate::error::ApiError;

pub async fn around_every_request(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    // The caller's `X-Request-Id` when it is short and printable, or a fresh one.
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(fresh_request_id);
    let span = tracing::info_span!("http", request_id = %request_id, method = %method, route = %route, key_id = tracing::field::Empty);

    let limit = state.config().body_limit;
    let declared_length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let has_body = declared_length.is_some_and(|length| length > 0)
        || request.headers().contains_key(header::TRANSFER_ENCODING);
    // Only a request that has a body can leave some of it unread: the others (most GETs, every
    // verification without a body) go through unwrapped.
    let unread_body: Option<UnreadBody> = has_body.then(UnreadBody::default);
    let request = match &unread_body {
        Some(unread) => request.map(|body| {
            Body::new(WatchedBody {
                inner: body,
                finished: false,
                unread: Arc::clone(unread),
            })
        }),
        None => request,
    };
    let response = if declared_length.is_some_and(|length| length > limit as u64) {
        drop(request);
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than the {limit} bytes the server accepts"),
        )
        .into_response()
    } else {
        let timeout = state.config().request_timeout;
        let matched_path = matched.as_ref().map(MatchedPath::as_str);
        // Who may call the route is judged here, for every route, before it runs.
        let judged_then_run = async {
            let mut request = request;
            match access::judge(&state, &mut request, matched_path).await {
                Ok(()) => next.run(request).await,
                Err(refusal) => refusal.into_response(),
            }
        };
        match tokio::time::timeout(timeout, judged_then_run.instrument(span.clone())).await {
            Ok(response) => response,
            Err(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "the request did not finish within {} ms and was abandoned; try again",
                    timeout.as_millis()
                ),
            )
            .with_retry_after(1)
            .into_response(),
        }
    };
    let mut response = json_errors(response);
    secure(&mut response, &request_id);
    let unread = unread_body.and_then(|unread| unread.lock().take());
    let drained = match unread {
        None => true,
        // Too large to read through; the client was told so.
        Some(_) if response.status() == StatusCode::PAYLOAD_TOO_LARGE => false,
        Some(body) => {
            let time_left = state
                .config()
                .request_timeout
                .saturating_sub(started.elapsed())
                .max(Duration::from_millis(100));
            discard(body, limit, time_left).await
        }
    };
    if !drained {
        // The rest of the body is still on the wire: the connection cannot carry another request.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }

    let status = response.status().as_u16();
    state
        .metrics()
        .observe(method.as_str(), route, status, started.elapsed());
    span.in_scope(|| {
        let elapsed_ms = (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0;
        if status >= 500 {
            tracing::warn!(status, elapsed_ms, "request failed");
        } else {
            tracing::info!(status, elapsed_ms, "request finished");
        }
    });
    response
}

/// Where a request body the route did not read to its end is handed back.
type UnreadBody = Arc<Mutex<Option<Body>>>;

/// A request body that, when dropped before its end, hands the rest back to the middleware.
struct WatchedBody {
    inner: Body,
    finished: bool,
    unread: UnreadBody,
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        if !self.finished && !self.inner.is_end_stream() {
            let rest = std::mem::replace(&mut self.inner, Body::empty());
            *self.unread.lock() = Some(rest);
        }
    }
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.finished = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Reads the rest of a body and throws it away: true when it ended within `limit` bytes and
/// `time_left`.
async fn discard(mut body: Body, limit: usize, time_left: Duration) -> bool {
    let read_to_end = async {
        let mut read = 0usize;
        loop {
            let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
            match frame {
                None => return true,
                Some(Err(_)) => return false,
                Some(Ok(frame)) => {
                    read += frame.data_ref().map_or(0, |data| data.len());
                    if read > limit {
                        return false;
                    }
                }
            }
        }
    };
    tokio::time::timeout(time_left, read_to_end)
        .await
        .unwrap_or(false)
}

/// Replaces a non-JSON error response (axum's and tower's plain-text rejections, an unknown
/// route, a wrong method) with the JSON error shape.
fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut replaced = ApiError::for_status(status).into_response();
    if let Some(allow) = allow {
        replaced.headers_mut().insert(header::ALLOW, allow);
    }
    replaced
}

/// Headers every response carries: OWASP's list for REST APIs (HSTS belongs to the TLS
/// terminator). `no-store` matters most: responses can hold key material. The console's
/// pages add the browser-only ones (Referrer-Policy, COOP/CORP, …) themselves.
fn secure(response: &mut Response, request_id: &str) {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // A route that set its own policy (the console's assets) keeps it.
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'",
        ));
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", value);
    }
}

/// A random per-process prefix and a counter: unique, cheap (no system call per request), and
/// not guessable across restarts. The id is for correlation, not security.
fn fresh_request_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 8];
        // A failing system RNG leaves zeros; the counter still keeps ids unique.
        let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
        u64::from_le_bytes(bytes)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:08x}{n:08x}", prefix >> 32)
}
