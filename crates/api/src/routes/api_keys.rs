//! Internal keys: create (the one response that carries the key), list (masked), delete one or
//! many atomically, roll.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use keyledger_domain::{GracePeriod, KeyDuration, KeyId, KeyName, KeyScope, Timestamp};
use keyledger_vault::{ApiKeyView, CreatedApiKey, VaultError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::idempotency_key;
use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::json::{ApiJson, RawDuration};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    /// 1 to 64 characters, no control characters.
    #[schema(example = "ci pipeline")]
    pub name: String,
    /// `1d`, `7d`, `30d`, `60d`, `90d`, `1y`, a number of days (`45d` or `45`), or `never`.
    #[schema(value_type = String, example = "30d")]
    pub duration: RawDuration,
    /// `true` creates a honeytoken: a key that grants nothing (every request with it is refused
    /// as with an unknown key) and whose every use is recorded as `HoneytokenUsed`.
    #[serde(default)]
    pub honeytoken: bool,
    /// Limits the key to these of its owner's permissions (e.g. `["verify_api_keys"]`); left
    /// out: all of them. What the key may do is always its scopes ∩ its owner's permissions now.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Client networks (CIDR, e.g. `203.0.113.0/24`) the key is allowed from; left out: anywhere.
    #[serde(default)]
    pub networks: Option<Vec<String>>,
}

impl CreateApiKeyRequest {
    fn scope(&self) -> Result<KeyScope, ApiError> {
        Ok(KeyScope::parse(
            self.scopes.as_deref(),
            self.networks.as_deref(),
        )?)
    }
}

/// A key just created or rolled. The only response that ever carries the key itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKeyResponse {
    #[schema(example = "key_3hQ9kZ0xYwV8uT7s")]
    pub id: String,
    pub name: String,
    /// The key in clear text. Store it now: it is never shown again.
    #[schema(example = "kl_...")]
    pub key: String,
    /// The masked form that listings show.
    #[schema(example = "kl_AbCd…wXyZ")]
    pub hint: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// `null` for a key that never expires.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    /// After a roll: until when the previous secret keeps working.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub previous_valid_until: Option<Timestamp>,
    /// A scoped key's scopes (absent: unscoped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// The client networks the key is allowed from (absent: anywhere).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
}

impl From<CreatedApiKey> for CreatedApiKeyResponse {
    fn from(created: CreatedApiKey) -> Self {
        CreatedApiKeyResponse {
            id: created.id.to_string(),
            name: created.name.to_string(),
            key: created.secret.expose().to_owned(),
            hint: created.hint.to_string(),
            created_at: created.created_at,
            expires_at: created.expires_at,
            previous_valid_until: created.previous_valid_until,
            scopes: None,
            networks: Vec::new(),
        }
    }
}

impl CreatedApiKeyResponse {
    fn scoped(mut self, scope: &KeyScope) -> Self {
        self.scopes = scope
            .scopes
            .map(|s| s.iter().map(|p| p.as_str().to_owned()).collect());
        self.networks = scope.networks.iter().map(ToString::to_string).collect();
        self
    }
}

/// An internal key as listings show it: never the key.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyResponse {
    pub id: String,
    pub name: String,
    #[schema(example = "kl_AbCd…wXyZ")]
    pub hint: String,
    /// `active` or `expired`.
    #[schema(example = "active")]
    pub status: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub rolled_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub previous_valid_until: Option<Timestamp>,
    /// The nearest expiry-warning horizon, in days, announced for this active key
    /// (`ApiKeyExpiring`); `null` before the first warning.
    #[schema(example = 7)]
    pub expiry_warning_days: Option<u32>,
    /// A honeytoken: it grants nothing, and every use is recorded.
    pub honeytoken: bool,
    /// A scoped key's scopes (absent: unscoped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// The client networks the key is allowed from (absent: anywhere).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
}

impl From<ApiKeyView> for ApiKeyResponse {
    fn from(view: ApiKeyView) -> Self {
        ApiKeyResponse {
            id: view.id.to_string(),
            name: view.name.to_string(),
            hint: view.hint.to_string(),
            status: view.status.as_str().to_owned(),
            created_at: view.created_at,
            expires_at: view.expires_at,
            last_used_at: view.last_used_at,
            rolled_at: view.rolled_at,
            previous_valid_until: view.previous_valid_until,
            expiry_warning_days: view.expiry_warning_days,
            honeytoken: view.honeytoken,
            scopes: view
                .scopes
                .map(|s| s.iter().map(|p| p.as_str().to_owned()).collect()),
            networks: view.networks.iter().map(ToString::to_string).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    /// Newest first.
    pub keys: Vec<ApiKeyResponse>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteKeysRequest {
    /// 1 to 1000 ids. All are deleted, or none (an unknown id refuses the whole request).
    pub ids: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedResponse {
    pub deleted: Vec<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollApiKeyRequest {
    /// How long the previous secret keeps working: `0` (default), `30s`, `15m`, `1h`, `24h`, up
    /// to `7d`.
    #[schema(example = "1h")]
    pub grace: Option<String>,
}

/// Creates an internal key for the caller.
#[utoipa::path(post, path = "/v1/api-keys", tag = "internal keys", request_body = CreateApiKeyRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried create safe: a repeat is refused with 409 instead of creating a second key")),
    responses(
        (status = 201, description = "Created; the response holds the key in clear text, once", body = CreatedApiKeyResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "Idempotency-Key already used, or you have an active key with this name", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn create_api_key(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<ApiJson<CreateApiKeyRequest>, ApiError>,
) -> Result<(StatusCode, Json<CreatedApiKeyResponse>), ApiError> {
    let ApiJson(body) = body?;
    let name = KeyName::parse(&body.name)?;
    let duration = KeyDuration::parse(&body.duration.0, &state.vault().config().duration_policy)?;
    let scope = body.scope()?;
    let request_id = idempotency_key(&headers, &caller, "POST /v1/api-keys")?;
    let vault = state.vault();
    if body.honeytoken && (body.scopes.is_some() || body.networks.is_some()) {
        return Err(keyledger_domain::ValidationError::new(
            "honeytoken",
            "a honeytoken grants nothing, so it takes no scopes or networks: leave them out",
        )
        .into());
    }
    let created = if body.honeytoken {
        vault
            .create_honeytoken(caller.actor(), name, duration, request_id)
            .await
    } else {
        vault
            .create_scoped_api_key(caller.actor(), name, duration, scope.clone(), request_id)
            .await
    };
    let created = created.map_err(|err| refusal_of_create(&state, request_id, err))?;
    tracing::info!(created_key = %created.id, honeytoken = body.honeytoken, "internal key created");
    let response = CreatedApiKeyResponse::from(created).scoped(&scope);
    Ok((StatusCode::CREATED, Json(response)))
}

/// Lists the caller's internal keys, masked.
#[utoipa::path(get, path = "/v1/api-keys", tag = "internal keys",
    responses((status = 200, body = ApiKeyList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list_api_keys(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<ApiKeyList>, ApiError> {
    let keys = state
        .vault()
        .list_api_keys(&caller.principal.user)
        .into_iter()
        .map(ApiKeyResponse::from)
        .collect();
    Ok(Json(ApiKeyList { keys }))
}

/// Deletes several of the caller's internal keys in one atomic step: all of them, or none.
#[utoipa::path(post, path = "/v1/api-keys/delete", tag = "internal keys", request_body = DeleteKeysRequest,
    responses((status = 200, body = DeletedResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, description = "An id is unknown; nothing was deleted", body = ErrorBody)))]
pub(crate) async fn delete_api_keys(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<ApiJson<DeleteKeysRequest>, ApiError>,
) -> Result<Json<DeletedResponse>, ApiError> {
    let ApiJson(body) = body?;
    let ids = parse_ids(&body.ids, KeyId::parse)?;
    delete(&state, &caller, ids).await
}

/// Deletes one of the caller's internal keys.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "internal keys", params(("id" = String, Path, description = "The key's id, `key_…`")),
    responses((status = 200, body = DeletedResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete_api_key(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeletedResponse>, ApiError> {
    let id = KeyId::parse(&id)?;
    delete(&state, &caller, vec![id]).await
}

/// Gives a key a new secret under the same id; the previous secret keeps working for `grace`.
#[utoipa::path(post, path = "/v1/api-keys/{id}/roll", tag = "internal keys", request_body = RollApiKeyRequest,
    params(("id" = String, Path, description = "The key's id, `key_…`")),
    responses((status = 200, description = "The new secret, shown once", body = CreatedApiKeyResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The key is expired", body = ErrorBody)))]
pub(crate) async fn roll_api_key(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<ApiJson<RollApiKeyRequest>, ApiError>,
) -> Result<Json<CreatedApiKeyResponse>, ApiError> {
    let ApiJson(body) = body?;
    let id = KeyId::parse(&id)?;
    let grace = GracePeriod::parse(body.grace.as_deref().unwrap_or("0"))?;
    let rolled = state
        .vault()
        .roll_api_key(caller.actor(), id, grace)
        .await?;
    tracing::info!(rolled_key = %rolled.id, "internal key rolled");
    Ok(Json(rolled.into()))
}

async fn delete(
    state: &ApiState,
    caller: &Caller,
    ids: Vec<KeyId>,
) -> Result<Json<DeletedResponse>, ApiError> {
    let executed = state.vault().delete_api_keys(caller.actor(), ids).await?;
    let deleted = executed
        .events
        .iter()
        .filter_map(|event| match event {
            keyledger_domain::Event::ApiKeyDeleted { key, .. } => Some(key.to_string()),
            _ => None,
        })
        .collect();
    Ok(Json(DeletedResponse { deleted }))
}

/// A create refused because its name is taken may be the retry of the very create that took
/// it (the name is checked before the log sees the request id): that retry is answered
/// `duplicate_request`, as the Idempotency-Key promises, not `key_name_taken`.
fn refusal_of_create(state: &ApiState, request_id: Option<[u8; 16]>, err: VaultError) -> ApiError {
    let name_taken = matches!(
        err,
        VaultError::Domain(keyledger_domain::DomainError::KeyNameTaken { .. })
    );
    if let (true, Some(request_id)) = (name_taken, request_id)
        && let Ok(Some(first)) = state.vault().log().committed_request(&request_id)
    {
        return VaultError::DuplicateRequest {
            first_seq: first.first_seq,
        }
        .into();
    }
    err.into()
}

/// Parses every id of a bulk request, naming the first bad one by position.
pub(crate) fn parse_ids<T>(
    raw: &[String],
    parse: impl Fn(&str) -> Result<T, keyledger_domain::ValidationError>,
) -> Result<Vec<T>, ApiError> {
    if raw.is_empty() {
        return Err(keyledger_domain::ValidationError::new("ids", "list at least one id").into());
    }
    if raw.len() > 1000 {
        return Err(
            keyledger_domain::ValidationError::new("ids", "at most 1000 ids at once").into(),
        );
    }
    raw.iter()
        .enumerate()
        .map(|(index, id)| {
            parse(id).map_err(|err| {
                keyledger_domain::ValidationError::new(
                    "ids",
                    format!("ids[{index}]: {}", err.message),
                )
                .into()
            })
        })
        .collect()
}

/// An admin creates a key for another user: a new user's first key, or a service account's.
/// The key is in this response only.
#[utoipa::path(post, path = "/v1/users/{user}/api-keys", tag = "users and roles", request_body = CreateApiKeyRequest,
    params(("user" = String, Path)),
    responses((status = 201, body = CreatedApiKeyResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "The user has an active key with this name", body = ErrorBody)))]
pub(crate) async fn issue_api_key(
    State(state): State<ApiState>,
    caller: Caller,
    Path(user): Path<String>,
    headers: HeaderMap,
    body: Result<ApiJson<CreateApiKeyRequest>, ApiError>,
) -> Result<(StatusCode, Json<CreatedApiKeyResponse>), ApiError> {
    let ApiJson(body) = body?;
    if body.honeytoken {
        return Err(ApiError {
            field: Some("honeytoken"),
            ..ApiError::bad_request(
                "validation_failed",
                "honeytoken: a honeytoken is created by its owner with POST /v1/api-keys, not issued",
            )
        });
    }
    let owner = keyledger_domain::UserId::parse(&user)?;
    let name = KeyName::parse(&body.name)?;
    let duration = KeyDuration::parse(&body.duration.0, &state.vault().config().duration_policy)?;
    let scope = body.scope()?;
    let request_id = idempotency_key(&headers, &caller, "POST /v1/users/{user}/api-keys")?;
    let created = state
        .vault()
        .issue_scoped_api_key(
            caller.actor(),
            owner.clone(),
            name,
            duration,
            scope.clone(),
            request_id,
        )
        .await
        .map_err(|err| refusal_of_create(&state, request_id, err))?;
    tracing::info!(created_key = %created.id, owner = %owner, "internal key issued by an admin");
    let response = CreatedApiKeyResponse::from(created).scoped(&scope);
    Ok((StatusCode::CREATED, Json(response)))
}
