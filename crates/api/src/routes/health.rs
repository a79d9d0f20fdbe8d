//! Liveness, readiness, metrics and the OpenAPI document: no key needed.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ApiState;

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// Always `ok`: the process answers.
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyResponse {
    pub ready: bool,
    /// Why the vault cannot serve correctly, if it cannot.
    pub broken: Option<String>,
    pub components: BTreeMap<String, ComponentResponse>,
    /// Last event committed to the log.
    pub log_head_seq: u64,
    /// Last event the projection has applied.
    pub applied_seq: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ComponentResponse {
    pub ready: bool,
    pub detail: String,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = HealthResponse)))]
pub(crate) async fn healthz() -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok".to_owned(),
    })
}

/// 200 when the vault is sound and every component reports ready; 503 otherwise.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = ReadyResponse), (status = 503, description = "Not ready; the body says which part", body = ReadyResponse)))]
pub(crate) async fn readyz(State(state): State<ApiState>) -> (StatusCode, Json<ReadyResponse>) {
    let vault = state.vault();
    let broken = vault.broken();
    let components: BTreeMap<String, ComponentResponse> = vault
        .telemetry()
        .components()
        .into_iter()
        .map(|(name, health)| {
            (
                name,
                ComponentResponse {
                    ready: health.ready,
                    detail: health.detail,
                },
            )
        })
        .collect();
    let ready = broken.is_none() && components.values().all(|c| c.ready);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = ReadyResponse {
        ready,
        broken,
        components,
        log_head_seq: vault.log().head().0,
        applied_seq: vault.applied_seq(),
    };
    (status, Json(body))
}

/// Prometheus metrics, text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(State(state): State<ApiState>) -> Response {
    let text = state.metrics().render(state.vault());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// This API's OpenAPI 3 document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, content_type = "application/json", body = Object)))]
pub(crate) async fn openapi(Extension(document): Extension<OpenApiDocument>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document.0).into_response()
}

/// The OpenAPI document's JSON, handed to [`openapi`] by the router (which builds it from the
/// route declaration), so this module does not depend on the document's builder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenApiDocument(pub &'static str);
