//! The worker's own HTTP port: `/healthz` (the process runs), `/readyz` (bound to the job
//! queue and taking jobs), `/metrics` (Prometheus text). Counts only: no job id, no path, no
//! secret.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::WorkerError;

/// What a worker counts.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Bound to the job queue and not draining.
    pub ready: AtomicBool,
    pub jobs_running: AtomicI64,
    pub jobs_completed: AtomicU64,
    pub jobs_failed: AtomicU64,
    /// Jobs handed back to the queue (drain, vault unreachable).
    pub jobs_handed_back: AtomicU64,
    /// Jobs stopped because their lease ended.
    pub jobs_stopped: AtomicU64,
    pub files_fetched: AtomicU64,
    pub bytes_fetched: AtomicU64,
    pub files_failed: AtomicU64,
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(&str, String)]| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, value) in lines {
                out.push_str(&format!("{name}{labels} {value}\n"));
            }
        };
        metric(
            "keyledger_worker_ready",
            "gauge",
            "1 while the worker is bound to the job queue and takes jobs.",
            &[("", u8::from(self.ready.load(Ordering::Relaxed)).to_string())],
        );
        metric(
            "keyledger_worker_jobs_running",
            "gauge",
            "Jobs running in this worker.",
            &[("", self.jobs_running.load(Ordering::Relaxed).to_string())],
        );
        metric(
            "keyledger_worker_jobs_finished_total",
            "counter",
            "Jobs this worker ended, by outcome.",
            &[
                (
                    "{outcome=\"completed\"}",
                    load(&self.jobs_completed).to_string(),
                ),
                ("{outcome=\"failed\"}", load(&self.jobs_failed).to_string()),
                (
                    "{outcome=\"handed_back\"}",
                    load(&self.jobs_handed_back).to_string(),
                ),
                (
                    "{outcome=\"lease_ended\"}",
                    load(&self.jobs_stopped).to_string(),
                ),
            ],
        );
        metric(
            "keyledger_worker_files_fetched_total",
            "counter",
            "Sample files fetched, verified, stored and recorded.",
            &[("", load(&self.files_fetched).to_string())],
        );
        metric(
            "keyledger_worker_bytes_fetched_total",
            "counter",
            "Bytes of sample files fetched, verified, stored and recorded.",
            &[("", load(&self.bytes_fetched).to_string())],
        );
        metric(
            "keyledger_worker_files_failed_total",
            "counter",
            "Sample files that could not be fetched, verified or stored.",
            &[("", load(&self.files_failed).to_string())],
        );
        out
    }
}

/// Serves the health port until `stop`; returns the address it listens on.
pub(crate) async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Result<SocketAddr, WorkerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| WorkerError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| WorkerError::Listen { addr, source })?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(metrics);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the health port stopped");
        }
    });
    Ok(bound)
}

async fn readyz(State(metrics): State<Arc<Metrics>>) -> (StatusCode, &'static str) {
    if metrics.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: not bound to the job queue, or draining\n",
        )
    }
}

async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> String {
    metrics.render()
}
