//! Request bodies: a JSON extractor whose every rejection is an [`ApiError`] with a message that
//! names the problem, and small input types shared by several routes.

use std::fmt;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use keyledger_crypto::SecretString;
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

use crate::error::ApiError;

/// A JSON request body. Refuses a wrong content type (415), an oversized body (413), malformed
/// JSON (400) and a body of the wrong shape, including unknown fields (422).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(&request) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with the header `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                let status = rejection.status();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        status,
                        "payload_too_large",
                        "the request body is larger than the server accepts (64 KiB)",
                    )
                } else {
                    ApiError::bad_request("unreadable_body", "the request body could not be read")
                }
            })?;
        parse_body(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body, turning serde's errors into messages that name the field but never echo
/// a submitted string value (it might be a secret put in the wrong field).
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "malformed_json",
            "the request body is empty; send a JSON object",
        ));
    }
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| {
        *b == b'[' || b.is_ascii_digit() || matches!(b, b'"' | b'-' | b't' | b'f' | b'n')
    }) {
        // serde would accept an array for a struct (fields by position): refuse anything but an object.
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "the request body must be a JSON object (`{...}`)",
        ));
    }
    serde_json::from_slice(bytes).map_err(|err| {
        let message = scrub(&err.to_string());
        match err.classify() {
            serde_json::error::Category::Data => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("the request body does not have the expected shape: {message}"),
            ),
            _ => ApiError::bad_request(
                "malformed_json",
                format!("the request body is not valid JSON: {message}"),
            ),
        }
    })
}

fn is_json(request: &Request) -> bool {
    let Some(value) = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Removes quoted string values from a serde message (`invalid type: string "…", expected …`),
/// and control characters from what is left.
fn scrub(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find("string \"") {
        out.push_str(&rest[..start + "string".len()]);
        let after = &rest[start + "string \"".len()..];
        rest = match after.find('"') {
            Some(end) => &after[end + 1..],
            None => "",
        };
    }
    out.push_str(rest);
    out.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(300)
        .collect()
}

/// A duration as users send it: `"30d"`, `"1y"`, `"never"`, or a number of days (`30`).
/// Parsed into a [`keyledger_domain::KeyDuration`] against the server's policy by the route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDuration(pub String);

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a duration such as \"30d\", \"1y\", \"never\", or a whole number of days",
                )
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<RawDuration, E> {
                Ok(RawDuration(value.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<RawDuration, E> {
                Ok(RawDuration(format!("{value}d")))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<RawDuration, E> {
                Ok(RawDuration(format!("{value}d")))
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<RawDuration, E> {
                Ok(RawDuration(format!("{value}d")))
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// A secret field of a request body: held as a [`SecretString`] from the moment it is parsed.
#[derive(Debug, Clone)]
pub struct SecretField(pub SecretString);

impl<'de> Deserialize<'de> for SecretField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretVisitor;
        impl Visitor<'_> for SecretVisitor {
            type Value = SecretField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<SecretField, E> {
                Ok(SecretField(SecretString::new(value.to_owned())))
            }
            fn visit_string<E: de::Error>(self, value: String) -> Result<SecretField, E> {
                Ok(SecretField(SecretString::new(value)))
            }
        }
        deserializer.deserialize_string(SecretVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_string_values() {
        assert_eq!(
            scrub("invalid type: string \"hunter2\", expected a sequence at line 1 column 9"),
            "invalid type: string, expected a sequence at line 1 column 9"
        );
        assert_eq!(
            scrub("unknown field `nmae`, expected `name`"),
            "unknown field `nmae`, expected `name`"
        );
        assert_eq!(scrub("a\nb"), "a?b");
    }

    #[test]
    fn durations_accept_strings_and_numbers() {
        let parse = |json: &str| serde_json::from_str::<RawDuration>(json).map(|d| d.0).ok();
        assert_eq!(parse("\"30d\""), Some("30d".to_owned()));
        assert_eq!(parse("30"), Some("30d".to_owned()));
        assert_eq!(parse("-3"), Some("-3d".to_owned()));
        assert_eq!(parse("null"), None);
    }
}
