//! Users and roles, for admins (`manage_organization_users`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use keyledger_domain::{
    Action, BUILT_IN_ROLES, Command, DisplayName, Permission, RoleName, State as DomainState,
    Timestamp, User, UserId,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::idempotency_key;
use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// 1 to 64 lowercase letters, digits, `.`, `_` or `-`.
    #[schema(example = "alice")]
    pub user: String,
    pub display_name: Option<String>,
    /// Roles to grant at once, e.g. `["developer"]`.
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    pub user: String,
    pub display_name: Option<String>,
    pub roles: Vec<String>,
    /// What the roles grant right now.
    pub permissions: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// Present while the user is deactivated: when, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deactivated: Option<DeactivatedResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeactivatedResponse {
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserResponse>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineRoleRequest {
    /// Permission names, e.g. `["manage_user_api_keys"]`.
    pub permissions: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoleResponse {
    pub role: String,
    pub permissions: Vec<String>,
    pub built_in: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoleList {
    pub roles: Vec<RoleResponse>,
}

/// Creates a user, optionally with roles.
#[utoipa::path(post, path = "/v1/users", tag = "users and roles", request_body = CreateUserRequest,
    responses((status = 201, body = UserResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, description = "The user exists", body = ErrorBody),
        (status = 422, description = "A role does not exist", body = ErrorBody)))]
pub(crate) async fn create_user(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<ApiJson<CreateUserRequest>, ApiError>,
) -> Result<(StatusCode, Json<UserResponse>), ApiError> {
    let ApiJson(body) = body?;
    let user = UserId::parse(&body.user)?;
    let display_name = body
        .display_name
        .as_deref()
        .map(DisplayName::parse)
        .transpose()?;
    let roles = body
        .roles
        .iter()
        .map(|r| RoleName::parse(r))
        .collect::<Result<Vec<_>, _>>()?;
    let request_id = idempotency_key(&headers, &caller, "POST /v1/users")?;
    let command = Command::new(
        caller.actor(),
        Action::CreateUser {
            user: user.clone(),
            display_name,
            roles,
        },
    );
    state.vault().execute(command, request_id).await?;
    tracing::info!(user = %user, "user created");
    Ok((StatusCode::CREATED, Json(user_response(&state, &user)?)))
}

/// Lists every user with their roles.
#[utoipa::path(get, path = "/v1/users", tag = "users and roles",
    responses((status = 200, body = UserList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list_users(State(state): State<ApiState>) -> Result<Json<UserList>, ApiError> {
    let users = state
        .vault()
        .read(|s| s.users().map(|u| to_response(s, u)).collect());
    Ok(Json(UserList { users }))
}

/// Grants a role. Takes effect on the user's next request.
#[utoipa::path(put, path = "/v1/users/{user}/roles/{role}", tag = "users and roles",
    params(("user" = String, Path), ("role" = String, Path)),
    responses((status = 200, body = UserResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, description = "The role does not exist", body = ErrorBody)))]
pub(crate) async fn grant_role(
    State(state): State<ApiState>,
    caller: Caller,
    Path((user, role)): Path<(String, String)>,
) -> Result<Json<UserResponse>, ApiError> {
    let (user, role) = (UserId::parse(&user)?, RoleName::parse(&role)?);
    state
        .vault()
        .run(
            caller.actor(),
            Action::GrantRole {
                user: user.clone(),
                role: role.clone(),
            },
        )
        .await?;
    tracing::info!(user = %user, role = %role, "role granted");
    Ok(Json(user_response(&state, &user)?))
}

/// Revokes a role. Takes effect on the user's next request; the last admin keeps `admin`.
#[utoipa::path(delete, path = "/v1/users/{user}/roles/{role}", tag = "users and roles",
    params(("user" = String, Path), ("role" = String, Path)),
    responses((status = 200, body = UserResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "The last admin", body = ErrorBody)))]
pub(crate) async fn revoke_role(
    State(state): State<ApiState>,
    caller: Caller,
    Path((user, role)): Path<(String, String)>,
) -> Result<Json<UserResponse>, ApiError> {
    let (user, role) = (UserId::parse(&user)?, RoleName::parse(&role)?);
    state
        .vault()
        .run(
            caller.actor(),
            Action::RevokeRole {
                user: user.clone(),
                role: role.clone(),
            },
        )
        .await?;
    tracing::info!(user = %user, role = %role, "role revoked");
    Ok(Json(user_response(&state, &user)?))
}

/// Lists the built-in and custom roles.
#[utoipa::path(get, path = "/v1/roles", tag = "users and roles",
    responses((status = 200, body = RoleList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list_roles(State(state): State<ApiState>) -> Result<Json<RoleList>, ApiError> {
    let mut roles: Vec<RoleResponse> = BUILT_IN_ROLES
        .iter()
        .map(|(name, permissions)| RoleResponse {
            role: (*name).to_owned(),
            permissions: permissions.iter().map(|p| p.as_str().to_owned()).collect(),
            built_in: true,
        })
        .collect();
    state.vault().read(|s| {
        roles.extend(s.custom_roles().map(|(role, permissions)| RoleResponse {
            role: role.to_string(),
            permissions: permissions.iter().map(|p| p.as_str().to_owned()).collect(),
            built_in: false,
        }))
    });
    Ok(Json(RoleList { roles }))
}

/// Defines (or redefines) a custom role. Holders' permissions change on their next request.
#[utoipa::path(put, path = "/v1/roles/{role}", tag = "users and roles", request_body = DefineRoleRequest,
    params(("role" = String, Path)),
    responses((status = 200, body = RoleResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, description = "A built-in role", body = ErrorBody)))]
pub(crate) async fn define_role(
    State(state): State<ApiState>,
    caller: Caller,
    Path(role): Path<String>,
    body: Result<ApiJson<DefineRoleRequest>, ApiError>,
) -> Result<Json<RoleResponse>, ApiError> {
    let ApiJson(body) = body?;
    let role = RoleName::parse(&role)?;
    let permissions = body
        .permissions
        .iter()
        .map(|p| Permission::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    state
        .vault()
        .run(
            caller.actor(),
            Action::DefineRole {
                role: role.clone(),
                permissions,
            },
        )
        .await?;
    tracing::info!(role = %role, "role defined");
    let permissions = state
        .vault()
        .read(|s| s.role_permissions(&role))
        .unwrap_or_default();
    Ok(Json(RoleResponse {
        role: role.to_string(),
        permissions: permissions.iter().map(|p| p.as_str().to_owned()).collect(),
        built_in: false,
    }))
}

fn user_response(state: &ApiState, user: &UserId) -> Result<UserResponse, ApiError> {
    state
        .vault()
        .read(|s| s.user(user).map(|u| to_response(s, u)))
        .ok_or_else(|| ApiError::not_found(format!("user `{user}` was not found")))
}

pub(crate) fn to_response(state: &DomainState, user: &User) -> UserResponse {
    UserResponse {
        deactivated: user.deactivated.as_ref().map(|d| DeactivatedResponse {
            at: d.at,
            reason: d.reason.to_string(),
        }),
        user: user.id.to_string(),
        display_name: user.display_name.as_ref().map(|d| d.to_string()),
        roles: user.roles.iter().map(|r| r.to_string()).collect(),
        permissions: state
            .permissions_of(&user.id)
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        created_at: user.created_at,
    }
}
