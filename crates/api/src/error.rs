//! The one error shape every route answers with: `{"error": {"code", "message"}}` (plus `field`
//! when a single input field is at fault, and `permission` on a 403 that a missing permission
//! caused), with the HTTP status that says whose problem it is.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyledger_domain::{DomainError, Permission, ValidationError};
use keyledger_vault::{AuthFailure, VaultError};
use serde::Serialize;
use utoipa::ToSchema;

/// An error answer. Messages never contain a secret: they are built from validated values,
/// domain errors and fixed text.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<&'static str>,
    /// The permission whose absence caused a 403.
    pub permission: Option<Permission>,
    pub retry_after_secs: Option<u64>,
}

/// One error code the server can answer with, and the status it comes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode {
    pub status: u16,
    pub code: &'static str,
}

const fn code(status: u16, code: &'static str) -> ErrorCode {
    ErrorCode { status, code }
}

/// Every `(status, code)` pair the server emits. The OpenAPI document describes each error
/// status with the codes listed here, `docs/api.md` must name each code, and a test scans this
/// crate's sources so that a code used in a route but missing here fails the build's tests.
pub const ERROR_CODES: &[ErrorCode] = &[
    code(400, "validation_failed"),
    code(400, "malformed_json"),
    code(400, "unreadable_body"),
    code(400, "invalid_input"),
    code(400, "invalid_query"),
    code(400, "invalid_selection"),
    code(400, "bad_request"),
    code(401, "unauthenticated"),
    code(403, "permission_denied"),
    code(403, "not_handed_out"),
    code(404, "not_found"),
    code(404, "not_found_at_provider"),
    code(405, "method_not_allowed"),
    code(408, "timeout"),
    code(409, "external_key_exists"),
    code(409, "no_external_key"),
    code(409, "session_expired"),
    code(409, "key_name_taken"),
    code(409, "user_exists"),
    code(409, "already_bootstrapped"),
    code(409, "not_active"),
    code(409, "built_in_role"),
    code(409, "last_admin"),
    code(409, "ingestion_finished"),
    code(409, "lease_ended"),
    code(409, "duplicate_request"),
    code(409, "not_empty"),
    code(409, "user_deactivated"),
    code(409, "key_rejected"),
    code(409, "provider_refused"),
    code(409, "not_renewable"),
    code(409, "role_not_assumed"),
    code(409, "source_running"),
    code(409, "source_name_taken"),
    code(413, "payload_too_large"),
    code(415, "unsupported_media_type"),
    code(422, "invalid_body"),
    code(422, "unknown_role"),
    code(429, "too_many_failed_authentications"),
    code(429, "too_many_requests"),
    code(500, "internal"),
    code(501, "not_implemented"),
    code(502, "provider_unavailable"),
    code(503, "timeout"),
    code(503, "storage_unavailable"),
    code(503, "contended"),
    code(503, "store_unavailable"),
    code(503, "unavailable"),
];

/// The codes that come with `status`, in catalogue order.
pub fn codes_for_status(status: u16) -> impl Iterator<Item = &'static str> {
    ERROR_CODES
        .iter()
        .filter(move |entry| entry.status == status)
        .map(|entry| entry.code)
}

/// The JSON body of every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code such as `validation_failed` or `permission_denied`.
    pub code: String,
    /// A sentence for people: what was wrong and what to do.
    pub message: String,
    /// The request field at fault, when there is exactly one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// On a 403 for a missing permission: that permission (e.g. `manage_user_api_keys`). The
    /// message says which role grants it and who can grant that role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            permission: None,
            retry_after_secs: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// Names the request field at fault.
    pub fn with_field_name(mut self, field: &'static str) -> ApiError {
        self.field = Some(field);
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after_secs = Some(secs.max(1));
        self
    }

    /// What a status means when nothing more specific is known (used to rewrite axum's and
    /// tower's plain-text rejections).
    pub fn for_status(status: StatusCode) -> ApiError {
        let (code, message) = match status.as_u16() {
            400 => ("bad_request", "the request could not be understood"),
            401 => ("unauthenticated", "authentication is required"),
            403 => ("permission_denied", "you may not do this"),
            404 => (
                "not_found",
                "there is no such route; see /openapi.json for the routes this server has",
            ),
            405 => (
                "method_not_allowed",
                "this route does not accept that HTTP method; see the Allow header",
            ),
            408 => (
                "timeout",
                "the request took too long and was abandoned; try again",
            ),
            413 => ("payload_too_large", "the request body is too large"),
            415 => (
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ),
            422 => (
                "invalid_body",
                "the request body does not have the expected fields",
            ),
            429 => (
                "too_many_requests",
                "too many requests; slow down and retry later",
            ),
            501 => ("not_implemented", "this is not available in this build"),
            503 => (
                "unavailable",
                "the service is temporarily unavailable; try again",
            ),
            _ if status.is_client_error() => ("bad_request", "the request was refused"),
            _ => (
                "internal",
                "the server failed to answer this request; see its log",
            ),
        };
        ApiError::new(status, code, message)
    }
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> ApiError {
        let message = err.to_string();
        ApiError {
            field: Some(err.field),
            ..ApiError::bad_request("validation_failed", message)
        }
    }
}

impl From<AuthFailure> for ApiError {
    fn from(failure: AuthFailure) -> ApiError {
        ApiError::unauthenticated(failure.to_string())
    }
}

impl From<DomainError> for ApiError {
    fn from(err: DomainError) -> ApiError {
        let message = err.to_string();
        let (status, code) = match &err {
            DomainError::Invalid(validation) => return validation.clone().into(),
            DomainError::PermissionDenied { permission, .. } => {
                return ApiError {
                    permission: Some(*permission),
                    ..ApiError::new(StatusCode::FORBIDDEN, "permission_denied", message)
                };
            }
            DomainError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            DomainError::ExternalKeyExists { .. } => (StatusCode::CONFLICT, "external_key_exists"),
            DomainError::NoExternalKey { .. } => (StatusCode::CONFLICT, "no_external_key"),
            DomainError::SessionExpired { .. } => (StatusCode::CONFLICT, "session_expired"),
            DomainError::KeyNameTaken { .. } => (StatusCode::CONFLICT, "key_name_taken"),
            DomainError::UserExists { .. } => (StatusCode::CONFLICT, "user_exists"),
            DomainError::AlreadyBootstrapped => (StatusCode::CONFLICT, "already_bootstrapped"),
            DomainError::NotActive { .. } => (StatusCode::CONFLICT, "not_active"),
            DomainError::UnknownRole { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_role"),
            DomainError::BuiltInRole { .. } => (StatusCode::CONFLICT, "built_in_role"),
            DomainError::LastAdmin { .. } => (StatusCode::CONFLICT, "last_admin"),
            DomainError::IngestionFinished { .. } => (StatusCode::CONFLICT, "ingestion_finished"),
            DomainError::LeaseEnded { .. } => (StatusCode::CONFLICT, "lease_ended"),
            DomainError::NotHandedOut { .. } => (StatusCode::FORBIDDEN, "not_handed_out"),
            DomainError::OutOfScope { permission, .. } => {
                return ApiError {
                    permission: Some(*permission),
                    ..ApiError::new(StatusCode::FORBIDDEN, "permission_denied", message)
                };
            }
            DomainError::UserDeactivated { .. } => (StatusCode::CONFLICT, "user_deactivated"),
            DomainError::SourceRunning { .. } => (StatusCode::CONFLICT, "source_running"),
            DomainError::SourceNameTaken { .. } => (StatusCode::CONFLICT, "source_name_taken"),
        };
        ApiError::new(status, code, message)
    }
}

impl From<VaultError> for ApiError {
    fn from(err: VaultError) -> ApiError {
        match err {
            VaultError::Domain(domain) => domain.into(),
            VaultError::Auth(failure) => failure.into(),
            VaultError::DuplicateRequest { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "duplicate_request",
                "this Idempotency-Key was already used for an earlier request, which succeeded; \
                 its result (and any secret in it) cannot be shown twice — list your keys to see it",
            ),
            VaultError::Contended => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "contended",
                "the request raced too many concurrent changes; try again",
            )
            .with_retry_after(1),
            storage @ (VaultError::Log(_)
            | VaultError::Append(_)
            | VaultError::Inconsistent { .. }
            | VaultError::SnapshotEncode(_)) => {
                tracing::error!(error = %storage, "storage failure while serving a request");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "the event log could not store the change; try again later",
                )
                .with_retry_after(5)
            }
            other => {
                tracing::error!(error = %other, "vault failure while serving a request");
                ApiError::internal("the vault failed to answer this request; see the server log")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                field: self.field.map(str::to_owned),
                permission: self.permission.map(|p| p.as_str().to_owned()),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(value) = self
            .retry_after_secs
            .and_then(|secs| HeaderValue::from_str(&secs.to_string()).ok())
        {
            headers.insert(header::RETRY_AFTER, value);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"keyledger\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::fs;
    use std::path::Path;

    use super::*;
    use keyledger_domain::Provider;

    /// The codes this crate's sources pass to `ApiError` constructors: a string literal right
    /// after `StatusCode::…,` or `bad_request(`, or first in a `=> ("…",` arm.
    fn codes_in_sources() -> BTreeSet<(String, String)> {
        let source_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![source_dir.clone()];
        let mut found = BTreeSet::new();
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(
                    fs::read_dir(&path)
                        .unwrap()
                        .map(|entry| entry.unwrap().path()),
                );
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let text = fs::read_to_string(&path).unwrap();
            // Tests (this scanner among them) are not answers.
            let text = text.split("#[cfg(test)]").next().unwrap_or("");
            let compact: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            for marker in ["bad_request(\"", "=> (\""] {
                for (at, _) in compact.match_indices(marker) {
                    let rest = &compact[at + marker.len()..];
                    let code = rest.split('"').next().unwrap_or("");
                    found.insert((code.to_owned(), path.display().to_string()));
                }
            }
            for (at, _) in compact.match_indices("StatusCode::") {
                let rest = &compact[at..];
                let Some((status, after)) = rest.split_once(", \"") else {
                    continue;
                };
                // Only `StatusCode::NAME, "code"`: the status constant directly before the code.
                if status.contains([' ', '(', ')']) {
                    continue;
                }
                let code = after.split('"').next().unwrap_or("");
                found.insert((code.to_owned(), path.display().to_string()));
            }
        }
        found
            .into_iter()
            .filter(|(code, _)| {
                !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            })
            .collect()
    }

    #[test]
    fn every_code_in_the_sources_is_catalogued() {
        let catalogued: BTreeSet<&str> = ERROR_CODES.iter().map(|entry| entry.code).collect();
        let found = codes_in_sources();
        assert!(found.len() > 20, "the scan found too little: {found:?}");
        let missing: Vec<_> = found
            .iter()
            .filter(|(code, _)| !catalogued.contains(code.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "codes missing from ERROR_CODES: {missing:?}"
        );
    }

    #[test]
    fn every_catalogued_code_is_in_api_md() {
        let api_md = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md");
        let text = fs::read_to_string(&api_md).unwrap();
        let missing: Vec<&str> = ERROR_CODES
            .iter()
            .map(|entry| entry.code)
            .filter(|code| !text.contains(&format!("`{code}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "codes missing from docs/api.md: {missing:?}"
        );
    }

    #[test]
    fn every_status_for_status_gives_is_catalogued() {
        // The statuses axum, tower and the middleware produce without a route's own error.
        for status in [
            400, 401, 403, 404, 405, 408, 413, 415, 422, 429, 500, 501, 503,
        ] {
            let error = ApiError::for_status(StatusCode::from_u16(status).unwrap());
            assert!(
                ERROR_CODES.contains(&code(status, error.code)),
                "{status} {}",
                error.code
            );
        }
    }

    #[test]
    fn domain_errors_map_to_statuses() {
        let check = |err: DomainError, status: u16, code: &str| {
            let api: ApiError = err.into();
            assert_eq!((api.status.as_u16(), api.code), (status, code));
        };
        check(
            DomainError::permission_denied(Permission::ManageUserApiKeys),
            403,
            "permission_denied",
        );
        check(
            DomainError::NotFound {
                what: "API key",
                id: "key_x".into(),
            },
            404,
            "not_found",
        );
        check(
            DomainError::ExternalKeyExists {
                provider: Provider::Aws,
            },
            409,
            "external_key_exists",
        );
        check(
            DomainError::KeyNameTaken {
                hint: "kl_AbCd…wXyZ".into(),
                id: "key_x".into(),
            },
            409,
            "key_name_taken",
        );
        check(
            DomainError::UserExists { user: "a".into() },
            409,
            "user_exists",
        );
        check(
            DomainError::LastAdmin { user: "a".into() },
            409,
            "last_admin",
        );
        check(
            ValidationError::new("name", "must not be empty").into(),
            400,
            "validation_failed",
        );
    }
}
