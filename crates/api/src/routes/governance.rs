//! Governance, for the people who run the platform (decision 0026): the inventory of every key
//! (`audit_organization_keys`), revoking anyone's key with a reason (`revoke_organization_keys`),
//! and offboarding a user in one step (`manage_organization_users`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use keyledger_domain::{Event, ExternalKeyId, KeyId, Provider, Reason, Timestamp, UserId};
use keyledger_vault::{InventoryItem, InventoryQuery, InventorySort, InventoryStatus};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;
use crate::routes::users::{UserResponse, to_response};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InventoryParams {
    /// Only this user's keys.
    pub user: Option<String>,
    /// `active`, `expired`, `deleted` (by its owner) or `revoked` (by an administrator or an offboarding).
    pub status: Option<String>,
    /// `internal` (keyledger's own `kl_` keys), `aws` or `dnanexus`.
    pub provider: Option<String>,
    /// Only active keys that expire within this many days (0 to 3650).
    pub expiring_within_days: Option<u32>,
    /// `created` (default), `expires`, `last_used`, `owner` or `name`; a leading `-` sorts descending.
    pub sort: Option<String>,
    /// At most this many keys (1 to 500, default 50).
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page (with the same filters and sort).
    pub cursor: Option<String>,
}

/// One key of the organisation: never a secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct InventoryKey {
    /// `internal` or `external`.
    pub kind: String,
    /// `key_…` or `ext_…`.
    pub id: String,
    pub owner: String,
    /// Whether the owner is deactivated.
    pub owner_deactivated: bool,
    /// The key's name, or the external key's label.
    pub name: String,
    /// The masked key (`kl_AbCd…wXyZ`) or access key id (`AKIA…WXYZ`).
    pub hint: String,
    /// `internal`, `aws` or `dnanexus`.
    pub provider: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
    /// `active`, `expired`, `deleted` or `revoked`.
    pub status: String,
    /// Why it was revoked, as the administrator wrote it.
    pub revoked_reason: Option<String>,
    /// Internal keys: what the key may do now (its scopes ∩ its owner's permissions).
    pub effective_permissions: Vec<String>,
    /// Internal keys: the scopes it was created with; `null`: unscoped.
    pub scopes: Option<Vec<String>>,
    /// Client networks (CIDR) the key is allowed from; empty: anywhere.
    pub networks: Vec<String>,
}

impl From<InventoryItem> for InventoryKey {
    fn from(item: InventoryItem) -> Self {
        let names = |permissions: Vec<keyledger_domain::Permission>| {
            permissions.iter().map(|p| p.as_str().to_owned()).collect()
        };
        InventoryKey {
            kind: match item.kind {
                keyledger_vault::InventoryKind::Internal => "internal",
                keyledger_vault::InventoryKind::External => "external",
            }
            .to_owned(),
            id: item.id,
            owner: item.owner.to_string(),
            owner_deactivated: item.owner_deactivated,
            name: item.name,
            hint: item.hint,
            provider: item
                .provider
                .map_or("internal", Provider::as_str)
                .to_owned(),
            created_at: item.created_at,
            expires_at: item.expires_at,
            last_used_at: item.last_used_at,
            status: item.status.as_str().to_owned(),
            revoked_reason: item.revoked_reason,
            effective_permissions: names(item.effective_permissions),
            scopes: item.scopes.map(names),
            networks: item.networks,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InventoryResponse {
    pub keys: Vec<InventoryKey>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    /// How many keys match the filters, over all pages.
    pub total: usize,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonRequest {
    /// Why: 1 to 300 characters, recorded in the event and shown in the inventory.
    #[schema(example = "left the company")]
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedResponse {
    /// The revoked key's id.
    pub revoked: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeactivatedUserResponse {
    pub user: UserResponse,
    /// The internal keys revoked with the deactivation.
    pub revoked_api_keys: Vec<String>,
    /// The external keys revoked with it; their data keys are destroyed.
    pub revoked_external_keys: Vec<String>,
}

/// Every internal and external key of the organisation, with filters, a sort and cursor pages.
#[utoipa::path(get, path = "/v1/admin/keys", tag = "governance", params(InventoryParams),
    responses((status = 200, body = InventoryResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn inventory(
    State(state): State<ApiState>,
    params: Result<Query<InventoryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<InventoryResponse>, ApiError> {
    // serde's message would quote the submitted parameter; say what is allowed instead.
    let Query(params) = params.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "the query takes `user`, `status`, `provider`, `expiring_within_days` (0 to 3650), \
             `sort`, `limit` (1 to 500) and `cursor`",
        )
    })?;
    let query = inventory_query(params)?;
    let page = state.vault().inventory(&query)?;
    Ok(Json(InventoryResponse {
        keys: page.keys.into_iter().map(InventoryKey::from).collect(),
        next_cursor: page.next_cursor,
        total: page.total,
    }))
}

fn inventory_query(params: InventoryParams) -> Result<InventoryQuery, ApiError> {
    let (sort, descending) = match params.sort.as_deref() {
        Some(raw) => InventorySort::parse(raw)?,
        None => (InventorySort::default(), false),
    };
    let provider = match params.provider.as_deref() {
        None => None,
        Some("internal") => Some(None),
        Some(raw) => Some(Some(Provider::parse(raw).map_err(|_| {
            keyledger_domain::ValidationError::new(
                "provider",
                "use `internal`, `aws` or `dnanexus`",
            )
        })?)),
    };
    if params.expiring_within_days.is_some_and(|days| days > 3650) {
        return Err(keyledger_domain::ValidationError::new(
            "expiring_within_days",
            "use 0 to 3650 days",
        )
        .into());
    }
    let limit = params.limit.unwrap_or(InventoryQuery::DEFAULT_LIMIT);
    if !(1..=InventoryQuery::MAX_LIMIT).contains(&limit) {
        return Err(keyledger_domain::ValidationError::new("limit", "use 1 to 500").into());
    }
    Ok(InventoryQuery {
        user: params.user.as_deref().map(UserId::parse).transpose()?,
        status: params
            .status
            .as_deref()
            .map(InventoryStatus::parse)
            .transpose()?,
        provider,
        expiring_within_days: params.expiring_within_days,
        sort,
        descending,
        limit,
        cursor: params.cursor,
    })
}

/// Revokes anyone's key (`key_…` internal, `ext_…` external), recording the reason in the
/// event. An external key's data key is destroyed: its secret can never be decrypted again.
#[utoipa::path(post, path = "/v1/admin/keys/{id}/revoke", tag = "governance", request_body = ReasonRequest,
    params(("id" = String, Path, description = "`key_…` or `ext_…`")),
    responses((status = 200, body = RevokedResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, description = "No such key, or already deleted or revoked", body = ErrorBody)))]
pub(crate) async fn revoke_key(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<ApiJson<ReasonRequest>, ApiError>,
) -> Result<Json<RevokedResponse>, ApiError> {
    let ApiJson(body) = body?;
    let reason = Reason::parse(&body.reason)?;
    if id.starts_with(ExternalKeyId::PREFIX) {
        let key = ExternalKeyId::parse(&id)?;
        state
            .vault()
            .revoke_external_key(caller.actor(), key.clone(), reason)
            .await?;
        tracing::info!(revoked_key = %key, "external key revoked by an administrator");
        return Ok(Json(RevokedResponse {
            revoked: key.to_string(),
        }));
    }
    let key = KeyId::parse(&id).map_err(|_| {
        keyledger_domain::ValidationError::new(
            "id",
            "not a valid id: use `key_…` (internal) or `ext_…` (external) followed by 16 letters or digits",
        )
    })?;
    state
        .vault()
        .revoke_api_key(caller.actor(), key.clone(), reason)
        .await?;
    tracing::info!(revoked_key = %key, "internal key revoked by an administrator");
    Ok(Json(RevokedResponse {
        revoked: key.to_string(),
    }))
}

/// Offboarding in one step: the user is deactivated and every key of theirs revoked in one
/// atomic append; their external keys' data keys are destroyed. Their sessions end at once.
#[utoipa::path(post, path = "/v1/users/{user}/deactivate", tag = "governance", request_body = ReasonRequest,
    params(("user" = String, Path)),
    responses((status = 200, body = DeactivatedUserResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "The last active administrator", body = ErrorBody)))]
pub(crate) async fn deactivate_user(
    State(state): State<ApiState>,
    caller: Caller,
    Path(user): Path<String>,
    body: Result<ApiJson<ReasonRequest>, ApiError>,
) -> Result<Json<DeactivatedUserResponse>, ApiError> {
    let ApiJson(body) = body?;
    let user = UserId::parse(&user)?;
    let reason = Reason::parse(&body.reason)?;
    let executed = state
        .vault()
        .deactivate_user(caller.actor(), user.clone(), reason)
        .await?;
    let mut revoked_api_keys = Vec::new();
    let mut revoked_external_keys = Vec::new();
    for event in &executed.events {
        match event {
            Event::ApiKeyRevoked { key, .. } => revoked_api_keys.push(key.to_string()),
            Event::ExternalKeyRevoked { key, .. } => revoked_external_keys.push(key.to_string()),
            _ => {}
        }
    }
    tracing::info!(deactivated_user = %user, keys = revoked_api_keys.len() + revoked_external_keys.len(), "user deactivated");
    Ok(Json(DeactivatedUserResponse {
        user: user_response(&state, &user)?,
        revoked_api_keys,
        revoked_external_keys,
    }))
}

/// Reactivates a deactivated user: their roles apply again; none of their revoked keys comes
/// back (an administrator issues a new one).
#[utoipa::path(post, path = "/v1/users/{user}/reactivate", tag = "governance",
    params(("user" = String, Path)),
    responses((status = 200, body = UserResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, description = "No such user", body = ErrorBody)))]
pub(crate) async fn reactivate_user(
    State(state): State<ApiState>,
    caller: Caller,
    Path(user): Path<String>,
) -> Result<Json<UserResponse>, ApiError> {
    let user = UserId::parse(&user)?;
    state
        .vault()
        .reactivate_user(caller.actor(), user.clone())
        .await?;
    tracing::info!(reactivated_user = %user, "user reactivated");
    Ok(Json(user_response(&state, &user)?))
}

fn user_response(state: &ApiState, user: &UserId) -> Result<UserResponse, ApiError> {
    state
        .vault()
        .read(|s| s.user(user).map(|u| to_response(s, u)))
        .ok_or_else(|| {
            keyledger_domain::DomainError::NotFound {
                what: "user",
                id: user.to_string(),
            }
            .into()
        })
}
