//! Serving TCP connections: the accept loop and one task per connection (hyper's HTTP/1 server
//! in front of the router). Whatever clients do, four limits hold:
//!
//! - **Header read timeout.** A request head must be complete within `header_read_timeout` of
//!   its first byte, so a client sending headers a byte at a time (slowloris) is cut off.
//! - **Idle timeout.** A connection with no request in progress is closed after `idle_timeout`
//!   without a byte from the client, so idle keep-alive connections do not pile up.
//! - **Connection cap.** At most `max_connections` connections are open at once (by default the
//!   process's file limit minus a reserve for the log, NATS and files, see
//!   [`derived_connection_cap`]). At the cap the loop stops accepting: new connections wait in
//!   the kernel's listen backlog until a slot frees up, and the server keeps its file descriptors
//!   for the work it already accepted. Reaching the cap is logged (at most once a minute) and
//!   counted (`keyledger_http_connection_limit_reached_total`).
//! - **Shutdown deadline.** When `shutdown` resolves the listener is closed, idle connections are
//!   closed, requests in flight get `shutdown_grace` to finish, then every connection left is
//!   dropped and [`serve`] returns, so the caller can close the vault and exit.
//!
//! How the timeouts are kept: hyper's own header timer also runs while a connection is idle, so
//! it cannot give the two limits different values. Instead the socket is wrapped
//! ([`WatchedStream`]) to note when the first byte of a new request arrives, the service notes
//! when a request starts and when its response is ready, and a watchdog next to each connection
//! computes the one deadline that applies from those facts and drops the connection when it
//! passes. A request in progress is bounded by the router's `request_timeout` instead.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::ApiState;

/// Files kept free under the file limit when the connection cap is derived from it: a quarter of
/// the limit, at least 64 and at most 4096 (the log, NATS, ingestion's files and sockets).
pub fn derived_connection_cap(file_limit: u64) -> usize {
    let reserve = (file_limit / 4).clamp(64, 4096);
    usize::try_from(file_limit.saturating_sub(reserve).max(1)).unwrap_or(usize::MAX)
}

/// The process's soft limit on open files (`RLIMIT_NOFILE`); `None` when it is unlimited.
pub fn file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// The connection cap in effect: the configured one, or [`derived_connection_cap`] when it is 0.
pub fn connection_cap(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    // Unlimited files: the cap guards memory and the reserve only.
    derived_connection_cap(file_limit().unwrap_or(1 << 20))
}

const TIMED_OUT: &str = "keyledger_http_connections_timed_out_total";
const TIMED_OUT_HELP: &str = "HTTP connections closed for a slow request head or for being idle.";
const CAP_WARNING_INTERVAL: Duration = Duration::from_secs(60);
/// After a failed `accept` (e.g. EMFILE), wait this long before trying again instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves the API on `listener` until `shutdown` resolves, then stops within the shutdown grace.
pub(crate) async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let address = listener.local_addr()?;
    let config = state.config().clone();
    let telemetry = state.vault().telemetry();
    let cap = connection_cap(config.max_connections);
    telemetry.set_gauge(
        "keyledger_http_connection_limit",
        "",
        "Connections the HTTP server accepts at once (http.max_connections).",
        cap as f64,
    );
    telemetry.add_counter(
        "keyledger_http_connection_limit_reached_total",
        "",
        "Times the HTTP server reached its connection limit and stopped accepting for a while.",
        0.0,
    );
    for expiry in [Expiry::HeaderReadTimeout, Expiry::IdleTimeout] {
        telemetry.add_counter(TIMED_OUT, expiry.label(), TIMED_OUT_HELP, 0.0);
    }
    telemetry.set_component("http", true, format!("listening on {address}"));
    tracing::info!(
        %address,
        max_connections = cap,
        header_read_timeout_ms = config.header_read_timeout.as_millis() as u64,
        idle_timeout_ms = config.idle_timeout.as_millis() as u64,
        "HTTP server started"
    );

    let timeouts = Timeouts {
        header_read: config.header_read_timeout,
        idle: config.idle_timeout,
    };
    let app = crate::router(state.clone());
    let slots = Arc::new(Semaphore::new(cap));
    let (stop_sender, stop) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut last_cap_warning: Option<Instant> = None;
    let mut last_accept_warning: Option<Instant> = None;
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        while connections.try_join_next().is_some() {}
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                telemetry.add_counter("keyledger_http_connection_limit_reached_total", "", "", 1.0);
                if last_cap_warning.is_none_or(|at| at.elapsed() >= CAP_WARNING_INTERVAL) {
                    last_cap_warning = Some(Instant::now());
                    tracing::warn!(
                        max_connections = cap,
                        "the HTTP server has reached its connection limit: new connections wait \
                         until open ones finish or time out (http.max_connections, \
                         http.idle_timeout_ms; logged at most once a minute)"
                    );
                }
                tokio::select! {
                    slot = Arc::clone(&slots).acquire_owned() => {
                        slot.expect("the connection semaphore is never closed")
                    }
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    if last_accept_warning.is_none_or(|at| at.elapsed() >= CAP_WARNING_INTERVAL) {
                        last_accept_warning = Some(Instant::now());
                        tracing::warn!(error = %err, open = connections.len(),
                            "cannot accept a connection (logged at most once a minute)");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(
            stream,
            peer,
            app.clone(),
            timeouts,
            stop.clone(),
            slot,
            state.clone(),
        ));
    }

    drop(listener);
    let _ = stop_sender.send(true);
    let in_flight = connections.len();
    tracing::info!(
        connections = in_flight,
        grace_ms = config.shutdown_grace.as_millis() as u64,
        "HTTP server stopping: no new connections; requests in flight may finish"
    );
    let drained = tokio::time::timeout(config.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !drained {
        tracing::warn!(
            connections = connections.len(),
            "shutdown grace over (http.shutdown_grace_ms): closing the connections left"
        );
        connections.shutdown().await;
    }
    telemetry.set_component("http", false, "stopped");
    Ok(())
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header_read: Duration,
    idle: Duration,
}

/// Why the watchdog closed a connection (also the metric's label).
#[derive(Debug, Clone, Copy)]
enum Expiry {
    HeaderReadTimeout,
    IdleTimeout,
}

impl Expiry {
    fn label(self) -> &'static str {
        match self {
            Expiry::HeaderReadTimeout => "reason=\"header_read_timeout\"",
            Expiry::IdleTimeout => "reason=\"idle_timeout\"",
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
    state: ApiState,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(WatchedStream {
        stream,
        activity: Arc::clone(&activity),
    });
    let requests = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let in_progress = requests.request_started();
        let app = app.clone();
        async move {
            let response = app.oneshot(request.map(Body::new)).await;
            drop(in_progress);
            response
        }
    });
    let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let mut stopping = *stop.borrow();
    if stopping {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "HTTP connection ended with an error");
                }
                return;
            }
            expiry = activity.expired(timeouts) => {
                tracing::debug!(%peer, ?expiry, "closing an HTTP connection");
                state.vault().telemetry().add_counter(
                    TIMED_OUT,
                    expiry.label(),
                    TIMED_OUT_HELP,
                    1.0,
                );
                return;
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    // Idle connections close now; a request in flight finishes first.
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// What the watchdog of one connection knows: requests in progress, since when the connection
/// has been idle, and when the first byte of the next request head arrived.
#[derive(Debug)]
struct Activity {
    state: Mutex<ActivityState>,
    changed: Notify,
}

#[derive(Debug, Clone, Copy)]
struct ActivityState {
    requests_in_progress: usize,
    idle_since: Instant,
    head_started: Option<Instant>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            state: Mutex::new(ActivityState {
                requests_in_progress: 0,
                idle_since: Instant::now(),
                head_started: None,
            }),
            changed: Notify::new(),
        }
    }

    fn update(&self, change: impl FnOnce(&mut ActivityState)) {
        change(&mut self.state.lock());
        self.changed.notify_one();
    }

    fn bytes_arrived(&self) {
        let mut state = self.state.lock();
        if state.requests_in_progress == 0 && state.head_started.is_none() {
            state.head_started = Some(Instant::now());
            drop(state);
            self.changed.notify_one();
        }
    }

    fn request_started(self: &Arc<Self>) -> RequestInProgress {
        self.update(|state| {
            state.requests_in_progress += 1;
            state.head_started = None;
        });
        RequestInProgress {
            activity: Arc::clone(self),
        }
    }

    /// The deadline that applies now, if any.
    fn deadline(&self, timeouts: Timeouts) -> Option<(Instant, Expiry)> {
        let state = *self.state.lock();
        if state.requests_in_progress > 0 {
            return None;
        }
        Some(match state.head_started {
            Some(started) => (started + timeouts.header_read, Expiry::HeaderReadTimeout),
            None => (state.idle_since + timeouts.idle, Expiry::IdleTimeout),
        })
    }

    /// Resolves when the deadline that applies has passed. Each round waits for the deadline or
    /// for a change of activity, whichever comes first, then looks again.
    async fn expired(&self, timeouts: Timeouts) -> Expiry {
        loop {
            match self.deadline(timeouts) {
                None => self.changed.notified().await,
                Some((at, expiry)) if at <= Instant::now() => return expiry,
                Some((at, _)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = self.changed.notified() => {}
                    }
                }
            }
        }
    }
}

/// Held while a request is answered; when the response is ready the connection counts as idle.
#[derive(Debug)]
struct RequestInProgress {
    activity: Arc<Activity>,
}

impl Drop for RequestInProgress {
    fn drop(&mut self) {
        self.activity.update(|state| {
            state.requests_in_progress = state.requests_in_progress.saturating_sub(1);
            if state.requests_in_progress == 0 {
                state.idle_since = Instant::now();
                state.head_started = None;
            }
        });
    }
}

/// The client's socket, noting when bytes arrive for the watchdog.
#[derive(Debug)]
struct WatchedStream {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_derived_cap_keeps_a_reserve_under_the_file_limit() {
        let check = |limit: u64, expect: usize| assert_eq!(derived_connection_cap(limit), expect);
        check(1024, 768);
        check(20_000, 15_904);
        check(65_536, 61_440);
        check(1 << 20, (1 << 20) - 4096);
        check(100, 36);
        check(10, 1);
    }
}
