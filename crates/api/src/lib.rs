//! The REST API (axum): authentication by internal key or session token, permission checks
//! against the caller's roles at request time, internal and external keys, users and roles,
//! health, readiness, metrics and the OpenAPI document. Every route is declared once
//! (`routes::declared`) with who may call it; `access` judges that for every request.
//!
//! Architecture invariants:
//! - Every answer that is not a success is `{"error": {"code", "message"}}` with a 4xx status
//!   for anything the caller did wrong; a 5xx only when the server itself failed.
//! - No response after creation, no log line and no metric carries a secret.
//! - Permissions are checked before a request body is looked at, so a caller who may not use a
//!   route learns nothing from it.
//! - No client holds a connection open for free: request heads, idle connections, requests and
//!   the shutdown all have deadlines, and the number of connections is capped (`server`).
//!
//! Entry points: [`router`] (in-process, used by the bench and tests) and [`serve`]; the read
//! replica's HTTP side is [`replica`].

mod access;
mod auth;
pub mod console;
mod error;
mod json;
mod metrics;
mod middleware;
mod openapi;
pub mod replica;
mod requirement;
mod routes;
mod server;
mod throttle;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use keyledger_vault::{Lease, Vault};

pub use access::route_table;
pub use auth::Caller;
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use metrics::HttpMetrics;
pub use openapi::openapi_json;
pub use requirement::{Requirement, Resource, RouteAccess};
/// The `SHA256SUMS` format of batch manifests, for the CLI's downloads.
pub use routes::ingestions::sha256sums;
/// Checks a configured secret-scanning public key (PEM).
pub use routes::secret_scanning::parse_public_key as parse_scanning_public_key;
pub use routes::sources::spawn_source_scheduler;
pub use server::{connection_cap, derived_connection_cap, file_limit};
pub use throttle::AuthThrottle;

/// How the HTTP layer behaves. `Default` is what `config/keyledger.toml` ships with.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body accepted, in bytes (413 beyond).
    pub body_limit: usize,
    /// How long a request may take before it is abandoned (503 with `Retry-After`).
    pub request_timeout: Duration,
    /// Failed authentications one client address may make per window before getting 429.
    /// 0 disables throttling.
    pub auth_failure_limit: u32,
    pub auth_failure_window: Duration,
    /// How many client addresses the throttle remembers at most.
    pub throttle_capacity: usize,
    /// How many proxies in front of the server append to `X-Forwarded-For`. 0: the header is
    /// ignored and the client is the socket's peer; n: the client is the n-th entry from the
    /// right (the one the outermost trusted proxy added); garbage or too few entries: the peer.
    pub trusted_proxy_hops: usize,
    /// A request head must be complete this long after its first byte (slow clients are cut off).
    pub header_read_timeout: Duration,
    /// A connection with no request in progress is closed after this long without a byte.
    pub idle_timeout: Duration,
    /// Connections open at once; 0 derives the cap from the file limit (see [`connection_cap`]).
    pub max_connections: usize,
    /// After shutdown is asked for, how long requests in flight may take to finish.
    pub shutdown_grace: Duration,
    /// GitHub's secret-scanning public keys (PEM) by their identifier; empty: every alert is
    /// refused with 401 (`POST /v1/secret-scanning/github`).
    pub github_scanning_keys: std::collections::BTreeMap<String, String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            body_limit: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            auth_failure_limit: 10,
            auth_failure_window: Duration::from_secs(60),
            throttle_capacity: 10_000,
            trusted_proxy_hops: 0,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 0,
            shutdown_grace: Duration::from_secs(10),
            github_scanning_keys: std::collections::BTreeMap::new(),
        }
    }
}

/// The result of testing a stored credential against its provider ("save and test").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// Whether every capability checked passed.
    pub ok: bool,
    /// What the provider said, as a sentence for people (the first refusal when not `ok`).
    /// Must not contain the secret.
    pub detail: String,
    /// What kind of failure, when not `ok`: whether fixing the key, the endpoint or waiting
    /// helps.
    pub kind: Option<keyledger_domain::FailureKind>,
    /// Each capability checked, in order (empty when no test could run).
    pub capabilities: Vec<CheckedCapability>,
}

/// One capability of a least-privilege test: `assume_role`, `identity`, `list`, `read`,
/// `region`, `user` or `project`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCapability {
    pub capability: String,
    pub ok: bool,
    /// What was seen, or the provider's words when refused. Never a secret.
    pub detail: String,
}

impl CheckOutcome {
    /// The outcome of a test that could not run (`kind` says why).
    pub fn failed(kind: keyledger_domain::FailureKind, detail: String) -> CheckOutcome {
        CheckOutcome {
            ok: false,
            detail,
            kind: Some(kind),
            capabilities: Vec::new(),
        }
    }
}

/// Tests a leased external credential against its provider: what an ingestion of `scope`
/// needs, or without a scope the credential itself. Implemented by the connectors; without
/// one, `POST /v1/external-keys/{id}/verify` answers 501.
pub trait CredentialChecker: Send + Sync + 'static {
    fn check<'a>(
        &'a self,
        lease: &'a Lease,
        scope: Option<&'a keyledger_domain::Selection>,
    ) -> Pin<Box<dyn Future<Output = CheckOutcome> + Send + 'a>>;
}

/// Tests credentials with the same connectors ingestion uses (`keyledger_ingest::probe`):
/// AWS `sts:GetCallerIdentity`, or list, read and region for a bucket and prefix; DNAnexus
/// `whoami`, and the access level on a project.
///
/// A `role` key is assumed first; with a vault ([`ProviderChecker::recording_in`]) each
/// AssumeRole of a test is recorded (`ExternalKeyRoleAssumed`, actor `system`, no job).
#[derive(Debug, Clone)]
pub struct ProviderChecker {
    config: keyledger_ingest::IngestConfig,
    vault: Option<Vault>,
}

impl ProviderChecker {
    pub fn new(config: keyledger_ingest::IngestConfig) -> ProviderChecker {
        ProviderChecker {
            config,
            vault: None,
        }
    }

    /// Records the roles a test assumes in `vault`.
    pub fn recording_in(mut self, vault: Vault) -> ProviderChecker {
        self.vault = Some(vault);
        self
    }
}

impl CredentialChecker for ProviderChecker {
    fn check<'a>(
        &'a self,
        lease: &'a Lease,
        scope: Option<&'a keyledger_domain::Selection>,
    ) -> Pin<Box<dyn Future<Output = CheckOutcome> + Send + 'a>> {
        Box::pin(async move {
            match keyledger_ingest::probe(lease, scope, &self.config).await {
                Ok(probed) => {
                    if let Some(vault) = &self.vault {
                        for session in probed.assumed {
                            keyledger_ingest::record_role_assumed(vault, &lease.key, None, session)
                                .await;
                        }
                    }
                    outcome_of(probed.reports)
                }
                Err(err) => CheckOutcome::failed(err.failure_kind(), err.message),
            }
        })
    }
}

/// The capabilities as one outcome: ok when all passed; else the first refusal's kind and
/// words.
fn outcome_of(reports: Vec<keyledger_ingest::CapabilityReport>) -> CheckOutcome {
    let refused = reports.iter().find(|report| !report.ok);
    let (ok, detail, kind) = match refused {
        Some(report) => (
            false,
            format!("{}: {}", report.capability, report.detail),
            report.kind.map(|kind| kind.failure_kind()),
        ),
        None => (
            true,
            reports
                .iter()
                .map(|report| report.detail.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            None,
        ),
    };
    CheckOutcome {
        ok,
        detail,
        kind,
        capabilities: reports
            .into_iter()
            .map(|report| CheckedCapability {
                capability: report.capability.to_owned(),
                ok: report.ok,
                detail: report.detail,
            })
            .collect(),
    }
}

/// Everything a route needs. Cloned several times per request (extractors, middleware), so it
/// is one `Arc`: a clone is one atomic increment.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<ApiStateInner>,
}

struct ApiStateInner {
    vault: Vault,
    config: ApiConfig,
    throttle: AuthThrottle,
    metrics: HttpMetrics,
    checker: Option<Arc<dyn CredentialChecker>>,
    ingestor: Option<keyledger_ingest::Ingestor>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("vault", &self.inner.vault)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    pub fn new(vault: Vault, config: ApiConfig) -> ApiState {
        // Present from the first scrape, even before anything is appended.
        vault.telemetry().add_counter(
            "keyledger_log_appended_events_total",
            "",
            "Events appended to the log.",
            0.0,
        );
        let throttle = AuthThrottle::new(
            config.auth_failure_limit,
            config.auth_failure_window,
            config.throttle_capacity,
        );
        ApiState {
            inner: Arc::new(ApiStateInner {
                vault,
                config,
                throttle,
                metrics: HttpMetrics::default(),
                checker: None,
                ingestor: None,
            }),
        }
    }

    /// The parts, for the builder methods below (called before the state is shared).
    fn parts(&mut self) -> &mut ApiStateInner {
        Arc::get_mut(&mut self.inner).expect("ApiState is configured before it is cloned")
    }

    /// Enables the ingestion routes (`/v1/ingestions`).
    pub fn with_ingestor(mut self, ingestor: keyledger_ingest::Ingestor) -> ApiState {
        self.parts().ingestor = Some(ingestor);
        self
    }

    pub(crate) fn ingestor(&self) -> Option<&keyledger_ingest::Ingestor> {
        self.inner.ingestor.as_ref()
    }

    /// Enables `POST /v1/external-keys/{id}/verify`.
    pub fn with_credential_checker(mut self, checker: Arc<dyn CredentialChecker>) -> ApiState {
        self.parts().checker = Some(checker);
        self
    }

    pub fn vault(&self) -> &Vault {
        &self.inner.vault
    }

    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    pub fn metrics(&self) -> &HttpMetrics {
        &self.inner.metrics
    }

    pub fn throttle(&self) -> &AuthThrottle {
        &self.inner.throttle
    }

    pub(crate) fn checker(&self) -> Option<&Arc<dyn CredentialChecker>> {
        self.inner.checker.as_ref()
    }
}

/// The whole API as an axum router, ready to serve (or to call in-process with `oneshot`).
pub fn router(state: ApiState) -> Router {
    let body_limit = state.config().body_limit;
    let (routes, _) = routes::declared().router.split_for_parts();
    routes
        .fallback(|| async { ApiError::for_status(axum::http::StatusCode::NOT_FOUND) })
        .merge(console::routes())
        .layer(axum::Extension(routes::health::OpenApiDocument(
            openapi::openapi_text(),
        )))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::Extension(json::BodyLimit(body_limit)))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::around_every_request,
        ))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves, under the connection limits of
/// [`ApiConfig`] (header read and idle timeouts, connection cap). After `shutdown`, requests in
/// flight get `shutdown_grace` to finish; then every connection is closed and this returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, state, shutdown).await
}
