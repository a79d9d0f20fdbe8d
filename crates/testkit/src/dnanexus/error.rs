//! The emulator's error answers, in DNAnexus's JSON form.

use serde_json::json;

/// A DNAnexus error answer: `{"error": {"type": kind, "message": message}}` with `status`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: u16,
    pub kind: String,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, kind: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind: kind.to_owned(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "ResourceNotFound", message)
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(422, "InvalidInput", message)
    }

    pub fn malformed_json() -> Self {
        Self::new(
            400,
            "MalformedJSON",
            "The input could not be parsed as JSON",
        )
    }

    /// The error type DNAnexus uses for an HTTP status (for injected faults).
    pub fn for_status(status: u16) -> Self {
        let (kind, message) = match status {
            400 => ("BadRequest", "The request is invalid due to bad syntax"),
            401 => (
                "InvalidAuthentication",
                "The provided access token is invalid",
            ),
            403 => ("PermissionDenied", "Access to this resource is forbidden"),
            404 => (
                "ResourceNotFound",
                "A specified entity or resource could not be found",
            ),
            408 => ("RequestTimeout", "The request timed out"),
            429 => (
                "RateLimitConditional",
                "Too many requests; please try again later",
            ),
            500 => ("InternalError", "The server encountered an internal error"),
            503 => (
                "ServiceUnavailable",
                "Some resource was temporarily unavailable; please try again later",
            ),
            _ if status >= 500 => ("InternalError", "The server encountered an internal error"),
            _ => ("BadRequest", "The request could not be processed"),
        };
        Self::new(status, kind, message)
    }

    pub fn body(&self) -> Vec<u8> {
        json!({"error": {"type": self.kind, "message": self.message}})
            .to_string()
            .into_bytes()
    }
}
