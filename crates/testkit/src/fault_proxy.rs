//! A fault-injecting HTTP/1 reverse proxy to put in front of any HTTP server (the S3 test
//! server, the DNAnexus emulator).
//!
//! Requests are forwarded unchanged (the `Host` header included, so SigV4 signatures made for
//! the proxy's address still verify upstream). A test schedules faults for the next N requests
//! that match a method, a path substring and optionally the presence of a `Range` header; every
//! request is recorded so a test can assert what was asked for. A proxy-wide [`Throttle`]
//! limits the rate of every response body, as a server that limits each connection's rate.
//!
//! ```no_run
//! # async fn demo(upstream: std::net::SocketAddr) -> anyhow::Result<()> {
//! use keyledger_testkit::fault_proxy::{Fault, FaultProxy, RequestMatch};
//! let proxy = FaultProxy::start(upstream).await?;
//! proxy.inject(RequestMatch::get().ranged_only(), Fault::DropMidBody { after_bytes: 1000 }, 2);
//! // point the client at proxy.endpoint()
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};

use anyhow::Context as _;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyDataStream, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnectionBuilder;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// What to do to one matching request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward the response head and the first `after_bytes` bytes of the body, then close the
    /// connection (the client sees a truncated body).
    DropMidBody { after_bytes: u64 },
    /// Answer `503` with S3's `SlowDown` XML error and `Retry-After: 1`, without forwarding.
    Status503SlowDown,
    /// Forward the response with the body byte at `offset` inverted.
    FlipByte { offset: u64 },
    /// Wait `duration` before forwarding the request (the client sees no response head).
    Stall { duration: Duration },
    /// Forward the head and `after_bytes` bytes of the body, then wait `duration` before the
    /// rest.
    StallMidBody {
        after_bytes: u64,
        duration: Duration,
    },
    /// Answer with this response, without forwarding.
    Respond(CannedResponse),
    /// Hold the request until the gate is opened, then forward it: keeps a transfer running
    /// for exactly as long as a test needs, with no sleep.
    Hold(Gate),
}

/// What a [`Fault::Hold`] waits for. Clones share one gate; opening it releases every request
/// held on it, and later ones pass at once.
#[derive(Clone, Debug)]
pub struct Gate(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Gate {
    fn default() -> Gate {
        Gate(Arc::new(tokio::sync::watch::Sender::new(false)))
    }
}

impl Gate {
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    async fn opened(&self) {
        let mut opened = self.0.subscribe();
        let _ = opened.wait_for(|open| *open).await;
    }
}

impl PartialEq for Gate {
    fn eq(&self, other: &Gate) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Gate {}

/// A complete response the proxy answers with instead of forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CannedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl CannedResponse {
    /// An S3-style XML error (`<Error><Code>..</Code><Message>..</Message></Error>`).
    pub fn s3_error(status: u16, code: &str, message: &str) -> CannedResponse {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
             <Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>"
        );
        CannedResponse {
            status,
            headers: vec![("content-type".to_owned(), "application/xml".to_owned())],
            body: Bytes::from(body),
        }
    }

    /// S3's answer to too many requests: `503 SlowDown` with `Retry-After: 1`.
    pub fn s3_slow_down() -> CannedResponse {
        CannedResponse::s3_error(503, "SlowDown", "Please reduce your request rate.")
            .with_header("retry-after", "1")
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> CannedResponse {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// Which requests a fault applies to. Every condition set must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestMatch {
    pub method: Option<Method>,
    /// Substring of the path and query (`/bucket/key?x-id=GetObject`).
    pub path_contains: Option<String>,
    /// Only requests carrying a `Range` header.
    pub ranged_only: bool,
}

impl RequestMatch {
    /// Every request.
    pub fn any() -> RequestMatch {
        RequestMatch::default()
    }

    /// Every GET request.
    pub fn get() -> RequestMatch {
        RequestMatch::any().method(Method::GET)
    }

    pub fn method(mut self, method: Method) -> RequestMatch {
        self.method = Some(method);
        self
    }

    pub fn path_contains(mut self, fragment: &str) -> RequestMatch {
        self.path_contains = Some(fragment.to_owned());
        self
    }

    pub fn ranged_only(mut self) -> RequestMatch {
        self.ranged_only = true;
        self
    }

    fn matches(&self, method: &Method, path_and_query: &str, has_range: bool) -> bool {
        self.method.as_ref().is_none_or(|wanted| wanted == method)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|fragment| path_and_query.contains(fragment))
            && (!self.ranged_only || has_range)
    }
}

/// One request the proxy received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenRequest {
    pub method: Method,
    pub path_and_query: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The fault applied to it, if any.
    pub fault: Option<Fault>,
}

/// A running proxy. Stops when dropped.
pub struct FaultProxy {
    address: SocketAddr,
    upstream: SocketAddr,
    control: FaultControl,
    accept_task: tokio::task::JoinHandle<()>,
}

/// Schedules faults and reads the request log; cheap to clone.
#[derive(Clone, Default)]
pub struct FaultControl {
    state: Arc<Mutex<ControlState>>,
}

#[derive(Default)]
struct ControlState {
    rules: Vec<Rule>,
    seen: Vec<SeenRequest>,
    throttle: Option<Throttle>,
}

/// A limit on the rate of every response body the proxy forwards, as a source that limits each
/// connection's rate: every response gets its own token bucket, starting empty, holding at
/// most 1/20 s of bytes (at least one), so a body of `n` bytes takes at least
/// `n / bytes_per_second` seconds however fast upstream is. One HTTP/1 connection carries one
/// response at a time, so this is each connection's rate; N connections at once get N times
/// it. Composes with the faults (a throttled body can also be dropped, flipped or stalled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttle {
    pub bytes_per_second: u64,
}

struct Rule {
    matcher: RequestMatch,
    fault: Fault,
    remaining: u32,
}

impl FaultProxy {
    /// Listens on `127.0.0.1:<free port>` and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the fault proxy")?;
        let address = listener.local_addr()?;
        let control = FaultControl::default();
        let accept_control = control.clone();
        let accept_task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let (socket, _) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "fault proxy: accept failed");
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                let control = accept_control.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| {
                        let control = control.clone();
                        async move { Ok::<_, Infallible>(handle(request, upstream, control).await) }
                    });
                    let _ = ConnectionBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(FaultProxy {
            address,
            upstream,
            control,
            accept_task,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn control(&self) -> FaultControl {
        self.control.clone()
    }

    /// Applies `fault` to the next `times` requests matching `matcher` (see
    /// [`FaultControl::inject`]).
    pub fn inject(&self, matcher: RequestMatch, fault: Fault, times: u32) {
        self.control.inject(matcher, fault, times);
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.control.requests()
    }

    /// How many scheduled faults have not fired yet.
    pub fn pending_faults(&self) -> u32 {
        self.control.pending_faults()
    }

    /// Limits every response that starts from now on (see [`FaultControl::throttle`]).
    pub fn throttle(&self, limit: Option<Throttle>) {
        self.control.throttle(limit);
    }
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("address", &self.address)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl FaultControl {
    /// Applies `fault` to the next `times` requests matching `matcher`. Rules are consulted in
    /// the order they were added; one request gets at most one fault.
    pub fn inject(&self, matcher: RequestMatch, fault: Fault, times: u32) {
        self.lock().rules.push(Rule {
            matcher,
            fault,
            remaining: times,
        });
    }

    /// Forgets every scheduled fault that has not fired.
    pub fn clear_faults(&self) {
        self.lock().rules.clear();
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.lock().seen.clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.lock().seen.clear();
    }

    /// How many scheduled faults have not fired yet.
    pub fn pending_faults(&self) -> u32 {
        self.lock().rules.iter().map(|rule| rule.remaining).sum()
    }

    /// Limits the rate of every response body that starts from now on; `None` lifts the limit
    /// (responses already under way keep theirs). A rate of zero is taken as one byte a second.
    pub fn throttle(&self, limit: Option<Throttle>) {
        self.lock().throttle = limit;
    }

    fn current_throttle(&self) -> Option<Throttle> {
        self.lock().throttle
    }

    /// Records the request and takes the fault it gets, if any.
    fn take_fault(
        &self,
        method: &Method,
        path_and_query: &str,
        range: Option<&str>,
    ) -> Option<Fault> {
        let mut state = self.lock();
        let fault = state
            .rules
            .iter_mut()
            .find(|rule| {
                rule.remaining > 0
                    && rule
                        .matcher
                        .matches(method, path_and_query, range.is_some())
            })
            .map(|rule| {
                rule.remaining -= 1;
                rule.fault.clone()
            });
        state.rules.retain(|rule| rule.remaining > 0);
        state.seen.push(SeenRequest {
            method: method.clone(),
            path_and_query: path_and_query.to_owned(),
            range: range.map(str::to_owned),
            fault: fault.clone(),
        });
        fault
    }

    fn lock(&self) -> MutexGuard<'_, ControlState> {
        // A test that panicked while holding the lock left consistent data behind.
        self.state.lock()
    }
}

impl fmt::Debug for FaultControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultControl")
            .field("pending_faults", &self.pending_faults())
            .finish()
    }
}

async fn handle(
    request: Request<Incoming>,
    upstream: SocketAddr,
    control: FaultControl,
) -> Response<ProxyBody> {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|value| value.as_str().to_owned())
        .unwrap_or_default();
    let range = request
        .headers()
        .get(http::header::RANGE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let fault = control.take_fault(request.method(), &path_and_query, range.as_deref());

    let body_fault = match fault {
        None => None,
        Some(Fault::Respond(canned)) => return canned_response(canned),
        Some(Fault::Status503SlowDown) => return canned_response(CannedResponse::s3_slow_down()),
        Some(Fault::Stall { duration }) => {
            tokio::time::sleep(duration).await;
            None
        }
        Some(Fault::Hold(gate)) => {
            gate.opened().await;
            None
        }
        Some(Fault::DropMidBody { after_bytes }) => Some(BodyFault::Drop { after_bytes }),
        Some(Fault::FlipByte { offset }) => Some(BodyFault::Flip { offset }),
        Some(Fault::StallMidBody {
            after_bytes,
            duration,
        }) => Some(BodyFault::Stall {
            after_bytes,
            duration,
        }),
    };

    let response = match forward(request, upstream).await {
        Ok(response) => response,
        Err(error) => {
            let body = format!("fault proxy: upstream {upstream} failed: {error}");
            return text_response(StatusCode::BAD_GATEWAY, body);
        }
    };
    let (parts, body) = response.into_parts();
    let body = match body_fault {
        None => body.map_err(BoxError::from).boxed_unsync(),
        Some(fault) => faulty_body(body, fault),
    };
    let body = match control.current_throttle() {
        None => body,
        Some(limit) => throttled_body(body, limit),
    };
    Response::from_parts(parts, body)
}

async fn forward(
    request: Request<Incoming>,
    upstream: SocketAddr,
) -> Result<Response<Incoming>, BoxError> {
    let stream = TcpStream::connect(upstream).await?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection task ends once the response body has been read or dropped.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender.send_request(request).await?)
}

fn canned_response(canned: CannedResponse) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(canned.body)
            .map_err(BoxError::from)
            .boxed_unsync(),
    );
    *response.status_mut() =
        StatusCode::from_u16(canned.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in canned.headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::try_from(name),
            HeaderValue::try_from(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

fn text_response(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(BoxError::from)
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
}

#[derive(Clone, Copy, Debug)]
enum BodyFault {
    Drop {
        after_bytes: u64,
    },
    Flip {
        offset: u64,
    },
    Stall {
        after_bytes: u64,
        duration: Duration,
    },
}

/// The upstream body with one fault applied as it streams through.
struct FaultyBody {
    inner: BodyDataStream<Incoming>,
    position: u64,
    fault: Option<BodyFault>,
    /// The rest of a chunk split at the fault position.
    held: Option<Bytes>,
    fail_next: bool,
    finished: bool,
}

fn faulty_body(body: Incoming, fault: BodyFault) -> ProxyBody {
    let state = FaultyBody {
        inner: body.into_data_stream(),
        position: 0,
        fault: Some(fault),
        held: None,
        fail_next: false,
        finished: false,
    };
    let stream = futures::stream::unfold(state, |mut state| async move {
        let item = state.next_chunk().await?;
        Some((item.map(Frame::data), state))
    });
    StreamBody::new(stream).boxed_unsync()
}

impl FaultyBody {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, BoxError>> {
        if self.finished {
            return None;
        }
        if self.fail_next {
            self.finished = true;
            return Some(Err("fault proxy: connection dropped mid-body".into()));
        }
        let mut chunk = match self.held.take() {
            Some(chunk) => chunk,
            None => match self.inner.next().await? {
                Ok(chunk) => chunk,
                Err(error) => {
                    self.finished = true;
                    return Some(Err(error.into()));
                }
            },
        };
        let start = self.position;
        let end = start + chunk.len() as u64;
        match self.fault {
            Some(BodyFault::Drop { after_bytes }) if end > after_bytes => {
                if start >= after_bytes {
                    self.finished = true;
                    return Some(Err("fault proxy: connection dropped mid-body".into()));
                }
                chunk.truncate(usize::try_from(after_bytes - start).unwrap_or(0));
                self.fail_next = true;
            }
            Some(BodyFault::Flip { offset }) if (start..end).contains(&offset) => {
                let mut flipped = chunk.to_vec();
                let index = usize::try_from(offset - start).unwrap_or(0);
                flipped[index] ^= 0xFF;
                chunk = Bytes::from(flipped);
                self.fault = None;
            }
            Some(BodyFault::Stall {
                after_bytes,
                duration,
            }) if end > after_bytes => {
                if start >= after_bytes {
                    tokio::time::sleep(duration).await;
                    self.fault = None;
                } else {
                    let rest = chunk.split_off(usize::try_from(after_bytes - start).unwrap_or(0));
                    self.held = Some(rest);
                }
            }
            _ => {}
        }
        self.position += chunk.len() as u64;
        Some(Ok(chunk))
    }
}

/// The body, each piece of at most one bucketful released once the bucket has refilled for it.
struct ThrottledBody {
    inner: BodyDataStream<ProxyBody>,
    bytes_per_second: u64,
    /// The bucket's size: 1/20 s of bytes.
    piece: usize,
    started: tokio::time::Instant,
    sent: u64,
    /// The rest of a chunk larger than one piece.
    held: Option<Bytes>,
}

fn throttled_body(body: ProxyBody, limit: Throttle) -> ProxyBody {
    let bytes_per_second = limit.bytes_per_second.max(1);
    let state = ThrottledBody {
        inner: body.into_data_stream(),
        bytes_per_second,
        piece: usize::try_from(bytes_per_second / 20)
            .unwrap_or(usize::MAX)
            .max(1),
        started: tokio::time::Instant::now(),
        sent: 0,
        held: None,
    };
    let stream = futures::stream::unfold(state, |mut state| async move {
        let item = state.next_piece().await?;
        Some((item.map(Frame::data), state))
    });
    StreamBody::new(stream).boxed_unsync()
}

impl ThrottledBody {
    async fn next_piece(&mut self) -> Option<Result<Bytes, BoxError>> {
        let mut chunk = match self.held.take() {
            Some(chunk) => chunk,
            None => match self.inner.next().await? {
                Ok(chunk) => chunk,
                Err(error) => return Some(Err(error)),
            },
        };
        if chunk.len() > self.piece {
            self.held = Some(chunk.split_off(self.piece));
        }
        // The bucket started empty and fills at the rate: this piece may leave once it has
        // filled for every byte sent so far and this piece's.
        self.sent += chunk.len() as u64;
        let due = Duration::from_secs_f64(self.sent as f64 / self.bytes_per_second as f64);
        tokio::time::sleep_until(self.started + due).await;
        Some(Ok(chunk))
    }
}
