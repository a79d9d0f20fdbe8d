//! Who am I, sessions, and key verification for other platform services.

use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use keyledger_domain::{KeyId, Timestamp, UserId};
use keyledger_vault::SESSION_PREFIX;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiState;
use crate::auth::{Caller, ClientAddress, throttle_check};
use crate::error::{ApiError, ErrorBody};
use crate::json::{ApiJson, SecretField};

#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    pub user: String,
    pub display_name: Option<String>,
    pub roles: Vec<String>,
    /// What the roles grant right now.
    pub permissions: Vec<String>,
    /// The internal key the request was made with (or that the session was issued for).
    pub key_id: String,
    pub via_session: bool,
    /// When the credential used stops working; `null` for a key that never expires.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    /// A scoped key's scopes (absent: unscoped); `permissions` is already what they leave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// The client networks the key is allowed from (absent: anywhere).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    /// An internal key, `kl_…`.
    #[schema(value_type = String, write_only)]
    pub key: SecretField,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionResponse {
    /// A session token, `kls_…`: send it as `Authorization: Bearer`. It dies with its key.
    pub token: String,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    pub user: String,
    pub key_id: String,
}

/// The answer to `POST /v1/keys/verify`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum VerifyResponse {
    Valid(ValidKey),
    Invalid(InvalidKey),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ValidKey {
    /// Always `true`.
    pub valid: bool,
    #[schema(value_type = String)]
    pub key_id: KeyId,
    #[schema(value_type = String)]
    pub owner: UserId,
    /// What the key may do now: its scopes ∩ its owner's permissions.
    pub permissions: Vec<&'static str>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    /// A scoped key's scopes (absent: unscoped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<&'static str>>,
    /// The client networks the key is allowed from (absent: anywhere): the verifying service
    /// judges its own client's address against them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvalidKey {
    /// Always `false`.
    pub valid: bool,
    /// `malformed`, `unknown_key`, `expired`, `deleted`, `rolled_over`, `unknown_owner` or
    /// `owner_deactivated`.
    pub reason: String,
    pub message: String,
}

/// The caller: user, roles, permissions right now, and the key used.
#[utoipa::path(get, path = "/v1/me", tag = "identity",
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorBody)))]
pub(crate) async fn me(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<MeResponse>, ApiError> {
    let principal = &caller.principal;
    let (display_name, roles, networks) = state.vault().read(|s| {
        let (display_name, roles) = s
            .user(&principal.user)
            .map(|u| {
                (
                    u.display_name.as_ref().map(|d| d.to_string()),
                    u.roles.iter().map(|r| r.to_string()).collect(),
                )
            })
            .unwrap_or_default();
        let networks = s
            .api_key(&principal.key)
            .map(|k| k.networks.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        (display_name, roles, networks)
    });
    Ok(Json(MeResponse {
        user: principal.user.to_string(),
        display_name,
        roles,
        permissions: principal
            .permissions
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        key_id: principal.key.to_string(),
        via_session: principal.via_session,
        expires_at: principal.expires_at,
        scopes: principal
            .scopes
            .map(|s| s.iter().map(|p| p.as_str().to_owned()).collect()),
        networks,
    }))
}

/// Exchanges an internal key for a short-lived session token.
#[utoipa::path(post, path = "/v1/auth/login", tag = "identity", request_body = KeyRequest,
    responses((status = 200, body = SessionResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 429, description = "Too many failed attempts from this address", body = ErrorBody)))]
pub(crate) async fn login(
    State(state): State<ApiState>,
    ClientAddress(client): ClientAddress,
    headers: axum::http::HeaderMap,
    body: Result<ApiJson<KeyRequest>, ApiError>,
) -> Result<Json<SessionResponse>, ApiError> {
    throttle_check(&state, client)?;
    let ApiJson(body) = body?;
    let presented = body.key.0.expose();
    if presented.starts_with(SESSION_PREFIX) {
        return Err(ApiError::bad_request(
            "validation_failed",
            "log in with an internal key (`kl_…`), not a session token",
        ));
    }
    let principal = match state.vault().authenticate_from(presented, client) {
        Ok(principal) => principal,
        Err(failure) => {
            state.throttle().record_failure(client);
            state.metrics().refusal(failure.reason());
            if let keyledger_vault::AuthFailure::Honeytoken { key } = &failure {
                let route = "POST /v1/auth/login".to_owned();
                crate::auth::record_honeytoken_use(&state, key.clone(), client, &headers, route);
            }
            return Err(failure.into());
        }
    };
    tracing::Span::current().record("key_id", tracing::field::display(&principal.key));
    let session = state.vault().issue_session(&principal);
    Ok(Json(SessionResponse {
        token: session.token.expose().to_owned(),
        expires_at: session.expires_at,
        user: principal.user.to_string(),
        key_id: principal.key.to_string(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyKeyRequest {
    /// An internal key, `kl_…`.
    #[schema(value_type = String, write_only)]
    pub key: SecretField,
    /// The address the key's holder presented it from (your own client's, which only you
    /// know). Given, a key limited to some networks is `valid: false` (`network_not_allowed`)
    /// from elsewhere; left out, its `networks` are returned for you to judge.
    #[schema(example = "203.0.113.7")]
    pub client_address: Option<String>,
}

/// `client_address` of a verification, if given: an IPv4 or IPv6 address, else 400.
pub(crate) fn parse_client_address(text: Option<&str>) -> Result<Option<IpAddr>, ApiError> {
    let Some(text) = text else {
        return Ok(None);
    };
    text.trim().parse().map(Some).map_err(|_| {
        ApiError::bad_request(
            "validation_failed",
            format!(
                "client_address must be an IPv4 or IPv6 address, such as 203.0.113.7 (got {text:?})"
            ),
        )
        .with_field_name("client_address")
    })
}

/// Verifies an internal key for another platform service.
#[utoipa::path(post, path = "/v1/keys/verify", tag = "identity", request_body = VerifyKeyRequest,
    responses((status = 200, description = "`valid` says whether the key is usable", body = VerifyResponse),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn verify_key(
    State(state): State<ApiState>,
    client: crate::auth::ClientAddress,
    headers: axum::http::HeaderMap,
    body: Result<ApiJson<VerifyKeyRequest>, ApiError>,
) -> Result<Json<VerifyResponse>, ApiError> {
    let ApiJson(body) = body?;
    let client_address = parse_client_address(body.client_address.as_deref())?;
    let verified = state
        .vault()
        .verify_key_from(body.key.0.expose(), client_address);
    // A honeytoken shown to another service is a use too; its address is that service's.
    if let Err(keyledger_vault::AuthFailure::Honeytoken { key }) = &verified {
        let route = "POST /v1/keys/verify".to_owned();
        crate::auth::record_honeytoken_use(&state, key.clone(), client.0, &headers, route);
    }
    let answer = match verified {
        Ok(principal) => VerifyResponse::Valid(ValidKey {
            valid: true,
            networks: networks_of(&state, &principal),
            scopes: principal
                .scopes
                .map(|s| s.iter().map(|p| p.as_str()).collect()),
            permissions: principal.permissions.iter().map(|p| p.as_str()).collect(),
            key_id: principal.key,
            owner: principal.user,
            expires_at: principal.expires_at,
        }),
        Err(failure) => VerifyResponse::Invalid(InvalidKey {
            valid: false,
            reason: failure.reason().to_owned(),
            message: failure.to_string(),
        }),
    };
    Ok(Json(answer))
}

/// The networks a verified key is limited to (none for almost every key: no allocation then).
fn networks_of(state: &ApiState, principal: &keyledger_vault::Principal) -> Vec<String> {
    state.vault().read(|s| {
        s.api_key(&principal.key)
            .map(|k| k.networks.iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    })
}
