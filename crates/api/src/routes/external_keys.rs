//! External keys: AWS and DNAnexus credentials. One per provider per user; the secret goes in
//! and never comes out; deleting destroys the data key (crypto-shredding).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use keyledger_domain::{
    ExternalKeyId, KeyDuration, Label, Provider, Selection, Timestamp, ValidationError,
};
use keyledger_vault::{ExternalKeyView, NewCredential};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::api_keys::{DeleteKeysRequest, DeletedResponse, parse_ids};
use super::idempotency_key;
use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::json::{ApiJson, OptionalApiJson, RawDuration, SecretField};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateExternalKeyRequest {
    /// 1 to 64 characters, no control characters.
    #[schema(example = "genomics bucket")]
    pub label: String,
    /// `aws` or `dnanexus`.
    #[schema(example = "aws")]
    pub provider: String,
    /// AWS only: `access_key` (the default: an `AKIA…` id and its secret), `session`
    /// (temporary credentials: an `ASIA…` id, its secret, `session_token` and
    /// `session_expires_at`) or `role` (an IAM role keyledger assumes per job: `aws_role`).
    /// Without `kind`, a body with a `session_token` is a `session`, one with `aws_role` a
    /// `role`.
    #[schema(example = "access_key")]
    pub kind: Option<String>,
    /// Required when `provider` is `aws`, unless the kind is `role`.
    pub aws: Option<AwsCredentialInput>,
    /// Kind `role` only: the role to assume. Its trust policy must let the platform assume it
    /// with your external ID (`GET /v1/external-keys/aws-role-setup`).
    pub aws_role: Option<AwsRoleInput>,
    /// Required when `provider` is `dnanexus`.
    pub dnanexus: Option<DnanexusCredentialInput>,
    /// Same choices as for internal keys.
    #[schema(value_type = String, example = "90d")]
    pub duration: RawDuration,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsCredentialInput {
    /// `AKIA` or `ASIA` and 16 uppercase letters or digits.
    #[schema(example = "AKIAIOSFODNN7EXAMPLE")]
    pub access_key_id: String,
    /// 40 characters. Stored encrypted; never returned.
    #[schema(value_type = String, write_only)]
    pub secret_access_key: SecretField,
    #[schema(example = "eu-west-2")]
    pub region: String,
    /// Kind `session` only: the session token of temporary credentials. Stored encrypted;
    /// never returned.
    #[schema(value_type = Option<String>, write_only)]
    pub session_token: Option<SecretField>,
    /// Kind `session` only: when the session token expires (RFC 3339), as `aws sts` or
    /// `aws configure export-credentials` print it. The key expires then at the latest.
    #[schema(example = "2026-12-05T21:30:00Z")]
    pub session_expires_at: Option<String>,
}

/// An IAM role for keyledger to assume (kind `role`): nothing secret.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsRoleInput {
    #[schema(example = "arn:aws:iam::111122223333:role/keyledger-reader")]
    pub role_arn: String,
    /// The region of the buckets the role reads (and of its STS endpoint).
    #[schema(example = "eu-west-2")]
    pub region: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DnanexusCredentialInput {
    /// The DNAnexus API token. Stored encrypted; never returned.
    #[schema(value_type = String, write_only)]
    pub token: SecretField,
}

/// A new secret for a stored external key: the object of the key's provider, with the same
/// fields as when storing one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateExternalKeyRequest {
    /// Required for an AWS key: the new access key id, secret and region.
    pub aws: Option<AwsCredentialInput>,
    /// Required for a DNAnexus key: the new token.
    pub dnanexus: Option<DnanexusCredentialInput>,
}

/// An external key as listings show it: never the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExternalKeyResponse {
    #[schema(example = "ext_9fJ2kQ0xYwV8uT7s")]
    pub id: String,
    pub label: String,
    /// `aws` or `dnanexus`.
    pub provider: String,
    /// `AKIA…WXYZ` for AWS, `…WXYZ` for a DNAnexus token.
    pub hint: String,
    /// `access_key` or `session` (AWS), `token` (DNAnexus).
    #[schema(example = "access_key")]
    pub kind: String,
    /// When a `session`'s token expires; `null` for other kinds.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub token_expires_at: Option<Timestamp>,
    /// Kind `role`: the role's ARN; `null` for other kinds.
    #[schema(example = "arn:aws:iam::111122223333:role/keyledger-reader")]
    pub role_arn: Option<String>,
    /// Kind `role`: the external ID the role's trust policy must require (not a secret);
    /// `null` for other kinds.
    #[schema(example = "kl-3f9a0c1d2e4b5a6978c0d1e2f3a4b5c6")]
    pub external_id: Option<String>,
    /// AWS only.
    pub region: Option<String>,
    /// `active` or `expired`.
    pub status: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_verified_at: Option<Timestamp>,
    pub last_verified_ok: Option<bool>,
    pub last_verified_detail: Option<String>,
    /// The nearest expiry-warning horizon, in days, announced for this active key
    /// (`ExternalKeyExpiring`); `null` before the first warning.
    #[schema(example = 7)]
    pub expiry_warning_days: Option<u32>,
}

impl From<ExternalKeyView> for ExternalKeyResponse {
    fn from(view: ExternalKeyView) -> Self {
        ExternalKeyResponse {
            id: view.id.to_string(),
            label: view.label.to_string(),
            provider: view.provider.as_str().to_owned(),
            hint: view.hint.to_string(),
            kind: view.kind.as_str().to_owned(),
            token_expires_at: view.token_expires_at,
            role_arn: view.role.as_ref().map(|(arn, _)| arn.to_string()),
            external_id: view.role.as_ref().map(|(_, id)| id.to_string()),
            region: view.region.map(|r| r.to_string()),
            status: view.status.as_str().to_owned(),
            created_at: view.created_at,
            expires_at: view.expires_at,
            last_used_at: view.last_used_at,
            last_verified_at: view.last_verified_at,
            last_verified_ok: view.last_verified_ok,
            last_verified_detail: view.last_verified_detail,
            expiry_warning_days: view.expiry_warning_days,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExternalKeyList {
    /// By provider.
    pub keys: Vec<ExternalKeyResponse>,
}

/// Stores an external credential for the caller. One per provider: a second one is refused
/// with 409 until the first is deleted.
#[utoipa::path(post, path = "/v1/external-keys", tag = "external keys", request_body = CreateExternalKeyRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried create safe")),
    responses((status = 201, description = "Stored; the secret is not returned", body = ExternalKeyResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "You already have a key for this provider: delete it first", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(crate) async fn create_external_key(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<ApiJson<CreateExternalKeyRequest>, ApiError>,
) -> Result<(StatusCode, Json<ExternalKeyResponse>), ApiError> {
    let ApiJson(body) = body?;
    let label = Label::parse(&body.label)?;
    let provider = Provider::parse(&body.provider)?;
    let credential = match (&body.kind, body.aws_role) {
        (Some(kind), role) if kind == "role" || role.is_some() => role_credential(
            provider,
            kind,
            role,
            body.aws.is_some(),
            body.dnanexus.is_some(),
        )?,
        (None, Some(role)) => role_credential(
            provider,
            "role",
            Some(role),
            body.aws.is_some(),
            body.dnanexus.is_some(),
        )?,
        (_, _) => credential_input(provider, body.kind.as_deref(), body.aws, body.dnanexus)?,
    };
    let duration = KeyDuration::parse(&body.duration.0, &state.vault().config().duration_policy)?;
    let request_id = idempotency_key(&headers, &caller, "POST /v1/external-keys")?;
    let view = state
        .vault()
        .create_external_key(caller.actor(), label, credential, duration, request_id)
        .await?;
    tracing::info!(external_key = %view.id, provider = %view.provider, "external key stored");
    Ok((StatusCode::CREATED, Json(view.into())))
}

/// A `role` credential from the `aws_role` object; the external ID is the owner's, added by
/// the vault.
fn role_credential(
    provider: Provider,
    kind: &str,
    role: Option<AwsRoleInput>,
    has_aws: bool,
    has_dnanexus: bool,
) -> Result<NewCredential, ApiError> {
    if provider != Provider::Aws || has_dnanexus {
        return Err(
            ValidationError::new("aws_role", "`aws_role` is for provider `aws` only").into(),
        );
    }
    if kind != "role" {
        return Err(ValidationError::new(
            "kind",
            "`aws_role` is a credential of kind `role`: set kind `role` or leave it out",
        )
        .into());
    }
    if has_aws {
        return Err(ValidationError::new(
            "aws",
            "kind `role` has no access key: leave out the `aws` object and send `aws_role`",
        )
        .into());
    }
    let Some(role) = role else {
        return Err(ValidationError::new(
            "aws_role",
            "kind `role` needs an `aws_role` object with role_arn and region",
        )
        .into());
    };
    Ok(NewCredential::aws_role(&role.role_arn, &role.region)?)
}

/// The credential of a create or a rotation, from the provider's object in the body: the one
/// parser of credential fields, so a kind of credential that can be stored can be rotated.
fn credential_input(
    provider: Provider,
    kind: Option<&str>,
    aws: Option<AwsCredentialInput>,
    dnanexus: Option<DnanexusCredentialInput>,
) -> Result<NewCredential, ApiError> {
    let credential = match (provider, aws, dnanexus) {
        (Provider::Aws, Some(aws), None) => aws_credential(kind, aws)?,
        (Provider::Dnanexus, None, Some(dnanexus)) => NewCredential::dnanexus(dnanexus.token.0)?,
        (Provider::Aws, None, _) => {
            return Err(ValidationError::new("aws", "provider `aws` needs an `aws` object with access_key_id, secret_access_key and region").into());
        }
        (Provider::Dnanexus, _, None) => {
            return Err(ValidationError::new(
                "dnanexus",
                "provider `dnanexus` needs a `dnanexus` object with a token",
            )
            .into());
        }
        (Provider::Aws, Some(_), Some(_)) => {
            return Err(ValidationError::new(
                "dnanexus",
                "provider is `aws`: leave out the `dnanexus` object",
            )
            .into());
        }
        (Provider::Dnanexus, Some(_), Some(_)) => {
            return Err(ValidationError::new(
                "aws",
                "provider is `dnanexus`: leave out the `aws` object",
            )
            .into());
        }
    };
    if provider == Provider::Dnanexus && kind.is_some_and(|kind| kind != "token") {
        return Err(ValidationError::new(
            "kind",
            "a DNAnexus credential is a token: leave out `kind`",
        )
        .into());
    }
    Ok(credential)
}

/// Parses an AWS credential of the kind asked for. Refusals name the field, never its value.
fn aws_credential(kind: Option<&str>, aws: AwsCredentialInput) -> Result<NewCredential, ApiError> {
    let kind = kind.unwrap_or(if aws.session_token.is_some() {
        "session"
    } else {
        "access_key"
    });
    match kind {
        "access_key" => {
            if aws.session_token.is_some() || aws.session_expires_at.is_some() {
                return Err(ValidationError::new(
                    "kind",
                    "an `access_key` has no session token: set kind `session` for temporary credentials",
                )
                .into());
            }
            Ok(NewCredential::aws(
                &aws.access_key_id,
                aws.secret_access_key.0,
                &aws.region,
            )?)
        }
        "session" => {
            let Some(session_token) = aws.session_token else {
                return Err(ValidationError::new(
                    "session_token",
                    "kind `session` needs the session_token that came with the ASIA… access key id",
                )
                .into());
            };
            let Some(expires_at) = aws.session_expires_at else {
                return Err(ValidationError::new(
                    "session_expires_at",
                    "kind `session` needs session_expires_at: when the session token expires (RFC 3339, e.g. 2026-12-05T21:30:00Z)",
                )
                .into());
            };
            let expires_at = Timestamp::parse_rfc3339(expires_at.trim()).map_err(|_| {
                ValidationError::new(
                    "session_expires_at",
                    "not a time: use RFC 3339 such as 2026-12-05T21:30:00Z",
                )
            })?;
            Ok(NewCredential::aws_session(
                &aws.access_key_id,
                aws.secret_access_key.0,
                session_token.0,
                expires_at,
                &aws.region,
            )?)
        }
        _ => Err(ValidationError::new(
            "kind",
            "not a kind of AWS credential: use access_key, session or role",
        )
        .into()),
    }
}

/// Lists the caller's external keys, masked.
#[utoipa::path(get, path = "/v1/external-keys", tag = "external keys",
    responses((status = 200, body = ExternalKeyList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list_external_keys(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<ExternalKeyList>, ApiError> {
    let keys = state
        .vault()
        .list_external_keys(&caller.principal.user)
        .into_iter()
        .map(ExternalKeyResponse::from)
        .collect();
    Ok(Json(ExternalKeyList { keys }))
}

/// Deletes several of the caller's external keys atomically and destroys their data keys.
#[utoipa::path(post, path = "/v1/external-keys/delete", tag = "external keys", request_body = DeleteKeysRequest,
    responses((status = 200, body = DeletedResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, description = "An id is unknown; nothing was deleted", body = ErrorBody)))]
pub(crate) async fn delete_external_keys(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<ApiJson<DeleteKeysRequest>, ApiError>,
) -> Result<Json<DeletedResponse>, ApiError> {
    let ApiJson(body) = body?;
    let ids = parse_ids(&body.ids, ExternalKeyId::parse)?;
    delete(&state, &caller, ids).await
}

/// Deletes one of the caller's external keys and destroys its data key.
#[utoipa::path(delete, path = "/v1/external-keys/{id}", tag = "external keys", params(("id" = String, Path, description = "The key's id, `ext_…`")),
    responses((status = 200, body = DeletedResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete_external_key(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeletedResponse>, ApiError> {
    let id = ExternalKeyId::parse(&id)?;
    delete(&state, &caller, vec![id]).await
}

/// What to test a key for: the selection an ingestion would use. Leave it out to test the
/// credential itself.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyExternalKeyRequest {
    /// AWS: the bucket to test list, read and region on.
    #[schema(example = "lab")]
    pub bucket: Option<String>,
    /// AWS: the key prefix under the bucket (default: the bucket's root). Needs `bucket`.
    #[schema(example = "runs/")]
    pub prefix: Option<String>,
    /// DNAnexus: the project (id or exact name) to report the token's access level on.
    #[schema(example = "project-0123456789ABCDEF01234567")]
    pub project: Option<String>,
}

/// Tests a stored credential against its provider and records the result ("save and test").
/// Without a body it tests the credential itself (AWS: `sts:GetCallerIdentity`, never
/// ListBuckets; DNAnexus: `whoami`); with `{bucket, prefix}` or `{project}` it tests what an
/// ingestion of that selection needs, capability by capability.
#[utoipa::path(post, path = "/v1/external-keys/{id}/verify", tag = "external keys", params(("id" = String, Path, description = "The key's id, `ext_…`")),
    request_body(content = Option<VerifyExternalKeyRequest>, description = "Optional: what to test the key for"),
    responses((status = 200, description = "Tested; see last_verified_ok, last_verified_kind and capabilities", body = ExternalKeyVerification),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The key is expired", body = ErrorBody),
        (status = 400, description = "A field that does not fit the key's provider, or an invalid bucket, prefix or project", body = ErrorBody),
        (status = 422, description = "An unknown field", body = ErrorBody),
        (status = 501, description = "No connector is configured in this server", body = ErrorBody)))]
pub(crate) async fn verify_external_key(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<OptionalApiJson<VerifyExternalKeyRequest>, ApiError>,
) -> Result<Json<ExternalKeyVerification>, ApiError> {
    // `access::judge` admitted only the key's owner, and only while the key is not deleted.
    let id = ExternalKeyId::parse(&id)?;
    let OptionalApiJson(body) = body?;
    let Some(checker) = state.checker().cloned() else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            "testing stored credentials against their provider is not available in this server (no connector is configured)",
        ));
    };
    let lease = state.vault().lease_external_key(&id)?;
    let scope = probe_scope(lease.provider, body.unwrap_or_default())?;
    let outcome = checker.check(&lease, scope.as_ref()).await;
    drop(lease);
    let view = state
        .vault()
        .record_external_key_verification(caller.actor(), id, outcome.ok, outcome.detail)
        .await?;
    Ok(Json(ExternalKeyVerification {
        key: view.into(),
        last_verified_kind: outcome.kind.map(|kind| kind.as_str().to_owned()),
        capabilities: outcome
            .capabilities
            .into_iter()
            .map(|checked| CapabilityResponse {
                capability: checked.capability,
                ok: checked.ok,
                detail: checked.detail,
            })
            .collect(),
    }))
}

/// The selection a test body names, for the key's provider; `None` tests the credential.
fn probe_scope(
    provider: Provider,
    body: VerifyExternalKeyRequest,
) -> Result<Option<Selection>, ValidationError> {
    let not_for = |field: &'static str, what: &str| {
        ValidationError::new(field, format!("not used with {what} key"))
    };
    let scope = match provider {
        Provider::Aws => {
            if body.project.is_some() {
                return Err(not_for("project", "an AWS"));
            }
            match (body.bucket, body.prefix) {
                (Some(bucket), prefix) => Some(Selection::Aws {
                    bucket,
                    prefix: prefix.unwrap_or_default(),
                    pattern: String::new(),
                }),
                (None, Some(_)) => {
                    return Err(ValidationError::new(
                        "prefix",
                        "a prefix needs the `bucket` it is in",
                    ));
                }
                (None, None) => None,
            }
        }
        Provider::Dnanexus => {
            if body.bucket.is_some() {
                return Err(not_for("bucket", "a DNAnexus"));
            }
            if body.prefix.is_some() {
                return Err(not_for("prefix", "a DNAnexus"));
            }
            body.project.map(|project| Selection::Dnanexus {
                project,
                folder: "/".to_owned(),
                pattern: String::new(),
            })
        }
    };
    if let Some(selection) = &scope {
        keyledger_ingest::check_probe_scope(selection).map_err(|message| {
            // The message names the field when it is not the bucket or project itself.
            let field = match selection {
                _ if message.starts_with("prefix") => "prefix",
                Selection::Aws { .. } => "bucket",
                Selection::Dnanexus { .. } => "project",
            };
            ValidationError::new(field, message)
        })?;
    }
    Ok(scope)
}

/// Replaces the secret of one of the caller's external keys in place (rotation without
/// downtime): the key keeps its id, label, provider and expiry; new jobs use the new secret,
/// running jobs finish on the one they started with, and the old secret's data key is destroyed
/// once none of them holds it.
#[utoipa::path(put, path = "/v1/external-keys/{id}/credential", tag = "external keys", request_body = RotateExternalKeyRequest,
    params(("id" = String, Path, description = "The key's id, `ext_…`")),
    responses((status = 200, description = "Replaced; the secret is not returned", body = ExternalKeyResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The key is expired: store a new one instead", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(crate) async fn rotate_external_key(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<ApiJson<RotateExternalKeyRequest>, ApiError>,
) -> Result<Json<ExternalKeyResponse>, ApiError> {
    // `access::judge` admitted only the key's owner, and only while the key is not deleted.
    let id = ExternalKeyId::parse(&id)?;
    let ApiJson(body) = body?;
    let view = state.vault().external_key_view(&id).ok_or_else(|| {
        keyledger_domain::DomainError::NotFound {
            what: "external key",
            id: id.to_string(),
        }
    })?;
    if view.kind == keyledger_domain::CredentialKind::Role {
        return Err(ValidationError::new(
            "kind",
            "a `role` key holds no secret to replace: to use another role, delete the key and store the new role",
        )
        .into());
    }
    let provider = view.provider;
    let credential = credential_input(provider, None, body.aws, body.dnanexus)?;
    let view = state
        .vault()
        .rotate_external_key(caller.actor(), id, credential)
        .await?;
    tracing::info!(external_key = %view.id, provider = %view.provider, "external key rotated");
    Ok(Json(view.into()))
}

/// The tested key, what kind of failure the test met, and each capability checked.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExternalKeyVerification {
    #[serde(flatten)]
    pub key: ExternalKeyResponse,
    /// `null` when the provider accepted the key; else `provider_rejected`, `not_found`,
    /// `unreachable` (the endpoint cannot be reached: check it, retrying will not help),
    /// `transient` (try again later) or `internal`. (Not `kind`: that is the key's own field,
    /// the kind of credential, beside it in this object.)
    #[schema(example = "unreachable")]
    pub last_verified_kind: Option<String>,
    /// In order: AWS `identity`, or `list`, `read` and `region` — after `assume_role` for a
    /// `role` key (alone when refused); DNAnexus `user`, then `project`. Empty when no test
    /// could run (see `last_verified_detail`).
    pub capabilities: Vec<CapabilityResponse>,
}

/// One capability of the test.
#[derive(Debug, Serialize, ToSchema)]
pub struct CapabilityResponse {
    #[schema(example = "list")]
    pub capability: String,
    pub ok: bool,
    /// What was seen, or the provider's words when refused ("missing permission: list under
    /// other/ (S3 said AccessDenied: …)").
    pub detail: String,
}

async fn delete(
    state: &ApiState,
    caller: &Caller,
    ids: Vec<ExternalKeyId>,
) -> Result<Json<DeletedResponse>, ApiError> {
    let executed = state
        .vault()
        .delete_external_keys(caller.actor(), ids)
        .await?;
    let deleted = executed
        .events
        .iter()
        .filter_map(|event| match event {
            keyledger_domain::Event::ExternalKeyDeleted { key, .. } => Some(key.to_string()),
            _ => None,
        })
        .collect();
    Ok(Json(DeletedResponse { deleted }))
}
