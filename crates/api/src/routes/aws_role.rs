//! What a user needs before storing a `role` key: the external ID keyledger will send when it
//! assumes their role, the platform's principal, and the trust policy that puts both together.
//! The external ID is derived per user (decision 0023), so it is known before any key exists
//! and is the same every time it is asked.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};

/// The external ID and trust policy for the caller's role.
#[derive(Debug, Serialize, ToSchema)]
pub struct AwsRoleSetup {
    /// The external ID keyledger sends with every AssumeRole of your role: put it in the
    /// role's trust policy (`sts:ExternalId`). Yours alone, the same every time; not a secret.
    #[schema(example = "kl-3f9a0c1d2e4b5a6978c0d1e2f3a4b5c6")]
    pub external_id: String,
    /// The principal that assumes your role (the platform's AWS user or role); `null` when the
    /// operator has not configured it (`[ingest] aws_role_principal_arn`): ask them for it.
    #[schema(example = "arn:aws:iam::999988887777:user/keyledger")]
    pub principal_arn: Option<String>,
    /// Whether this server can assume roles at all (the operator configured its credentials).
    pub assume_role_configured: bool,
    /// The role's trust policy, ready to paste (with `principal_arn` in it when known).
    #[schema(value_type = Object)]
    pub trust_policy: serde_json::Value,
    /// The permissions policy the role needs for an ingestion of one bucket and prefix
    /// (replace `BUCKET` and `PREFIX`); each job's session is narrowed to its own bucket and
    /// prefix, read-only, whatever the role allows.
    #[schema(value_type = Object)]
    pub permissions_policy: serde_json::Value,
}

/// The external ID for your `role` AWS key, the platform's principal and the trust policy to
/// give your role, before you store the key (`kind: role`).
#[utoipa::path(get, path = "/v1/external-keys/aws-role-setup", tag = "external keys",
    responses((status = 200, body = AwsRoleSetup), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn aws_role_setup(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<AwsRoleSetup>, ApiError> {
    let external_id = state
        .vault()
        .aws_external_id(&caller.principal.user)
        .to_string();
    let platform = state
        .ingestor()
        .and_then(|ingestor| ingestor.config().aws_role.as_ref());
    let principal_arn = platform.and_then(|platform| platform.principal_arn.clone());
    let principal = principal_arn.clone().unwrap_or_else(|| {
        "<the platform's principal ARN: ask your keyledger operator>".to_owned()
    });
    Ok(Json(AwsRoleSetup {
        trust_policy: trust_policy(&principal, &external_id),
        permissions_policy: permissions_policy(),
        external_id,
        principal_arn,
        assume_role_configured: platform.is_some(),
    }))
}

/// AWS's trust policy for a third party: the platform may assume the role only with this
/// external ID (the confused-deputy guard).
pub fn trust_policy(principal_arn: &str, external_id: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": principal_arn},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": external_id}}
        }]
    })
}

fn permissions_policy() -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": "arn:aws:s3:::BUCKET",
                "Condition": {"StringLike": {"s3:prefix": "PREFIX*"}}
            },
            {
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::BUCKET/PREFIX*"
            }
        ]
    })
}
