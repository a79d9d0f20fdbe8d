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
            return Err(wrong_media_type());
        }
        let bytes = read_body(request, state).await?;
        parse_body(&bytes).map(ApiJson)
    }
}

/// A JSON request body that may be left out: no body (empty, whatever its content type) is
/// `None`; a body is refused and parsed exactly as [`ApiJson`] does.
#[derive(Debug)]
pub struct OptionalApiJson<T>(pub Option<T>);

impl<T, S> FromRequest<S> for OptionalApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let json = is_json(&request);
        let bytes = read_body(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalApiJson(None));
        }
        if !json {
            return Err(wrong_media_type());
        }
        parse_body(&bytes).map(|body| OptionalApiJson(Some(body)))
    }
}

/// A JSON request body kept as its bytes, for a route that checks a signature over the raw body
/// before parsing it (with [`parse_body`]). Refuses a wrong content type and an oversized body as
/// [`ApiJson`] does.
#[derive(Debug)]
pub struct RawJson(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawJson {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(&request) {
            return Err(wrong_media_type());
        }
        read_body(request, state).await.map(RawJson)
    }
}

fn wrong_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "send the body as JSON with the header `Content-Type: application/json`",
    )
}

/// The whole body, within the router's limit (413 naming the limit beyond it).
async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    let limit = request.extensions().get::<BodyLimit>().copied();
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                let accepted = match limit {
                    Some(limit) => format!(" ({limit})"),
                    None => String::new(),
                };
                ApiError::new(
                    status,
                    "payload_too_large",
                    format!("the request body is larger than the server accepts{accepted}"),
                )
            } else {
                ApiError::bad_request("unreadable_body", "the request body could not be read")
            }
        })
}

/// The body limit a router enforces (with `DefaultBodyLimit`), put beside it as a request
/// extension so that the 413 can say what the limit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit(pub usize);

impl fmt::Display for BodyLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            bytes if bytes >= 1024 && bytes % 1024 == 0 => write!(f, "{} KiB", bytes / 1024),
            bytes => write!(f, "{bytes} bytes"),
        }
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
    serde_json::from_slice(bytes).map_err(|err| match err.classify() {
        serde_json::error::Category::Data => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!(
                "the request body does not have the expected shape: {}",
                scrub(&err.to_string())
            ),
        ),
        // serde_json's syntax messages name the syntax rule and the position, never the input.
        _ => ApiError::bad_request(
            "malformed_json",
            format!("the request body is not valid JSON: {err}"),
        ),
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

/// Rewrites serde's message for a body of the wrong shape so that it repeats nothing the client
/// sent, only what the schema says. serde puts at most one quoted piece of input in such a
/// message, before `, expected …` (`invalid type: string "…"`, `invalid value: integer `7``,
/// `unknown variant `…``), and the quote is not escaped reliably, so everything from the first
/// quote up to the last `, expected` goes. Field names the schema knows (`missing field `name``)
/// stay, and so does an unknown field's name when it looks like one (short snake_case), since
/// naming the typo is the point of the message. Syntax errors never quote the input and are
/// not passed through here.
fn scrub(message: &str) -> String {
    let (core, location) = split_location(message);
    let (found, expected) = match core.rfind(", expected") {
        Some(at) => core.split_at(at),
        None => (core, ""),
    };
    let mut out = String::with_capacity(message.len());
    match found.find(['"', '`']) {
        None => out.push_str(found),
        Some(quote) => {
            let before = &found[..quote];
            // The quoted text, without its opening quote and (when it is the last character)
            // its closing one.
            let quoted = &found[quote + 1..];
            let quoted = quoted.strip_suffix(['"', '`']).unwrap_or(quoted);
            let named_by_schema =
                before.ends_with("missing field ") || before.ends_with("duplicate field ");
            let safe_unknown_field = before.ends_with("unknown field ")
                && (1..=40).contains(&quoted.len())
                && quoted
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if named_by_schema || safe_unknown_field {
                out.push_str(found);
            } else {
                out.push_str(before.trim_end());
            }
        }
    }
    out.push_str(expected);
    out.push_str(location);
    out.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(300)
        .collect()
}

/// Splits serde_json's ` at line L column C` off the end of a message.
fn split_location(message: &str) -> (&str, &str) {
    let Some(at) = message.rfind(" at line ") else {
        return (message, "");
    };
    let tail = &message[at + " at line ".len()..];
    let well_formed = tail.split_once(" column ").is_some_and(|(line, column)| {
        [line, column]
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    if well_formed {
        message.split_at(at)
    } else {
        (message, "")
    }
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

    fn check_scrub(message: &str, expect: &str) {
        assert_eq!(scrub(message), expect, "{message}");
    }

    #[test]
    fn scrub_removes_submitted_values() {
        check_scrub(
            "invalid type: string \"hunter2\", expected a sequence at line 1 column 9",
            "invalid type: string, expected a sequence at line 1 column 9",
        );
        check_scrub(
            "unknown field `nmae`, expected `name` or `duration` at line 1 column 7",
            "unknown field `nmae`, expected `name` or `duration` at line 1 column 7",
        );
        check_scrub(
            "unknown field `kl_SECRETsecret`, expected `name`",
            "unknown field, expected `name`",
        );
        check_scrub(
            "unknown variant `hunter2`, expected `aws` or `dnanexus`",
            "unknown variant, expected `aws` or `dnanexus`",
        );
        check_scrub(
            "invalid value: integer `1234567`, expected u8 at line 1 column 3",
            "invalid value: integer, expected u8 at line 1 column 3",
        );
        check_scrub(
            "missing field `name` at line 1 column 2",
            "missing field `name` at line 1 column 2",
        );
        check_scrub(
            "invalid type: string \"unterminated",
            "invalid type: string",
        );
        check_scrub(
            "invalid type: string \"a\\\", expected b\", expected a sequence at line 1 column 9",
            "invalid type: string, expected a sequence at line 1 column 9",
        );
        check_scrub(
            "unknown variant `x`, expected y`, expected `aws` or `dnanexus`",
            "unknown variant, expected `aws` or `dnanexus`",
        );
        check_scrub("a\nb", "a?b");
    }

    #[test]
    fn parse_errors_never_echo_values() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Body {
            name: String,
            count: u8,
            kind: Kind,
            tags: Vec<String>,
        }
        #[derive(Debug, Deserialize)]
        #[serde(rename_all = "lowercase")]
        enum Kind {
            Aws,
        }
        let canary = "CANARYsecret";
        for body in [
            r#"{"name": 5, "count": 1, "kind": "aws", "tags": []}"#.to_owned(),
            format!(r#"{{"name": "x", "count": "{canary}", "kind": "aws", "tags": []}}"#),
            format!(r#"{{"name": "x", "count": 1, "kind": "{canary}", "tags": []}}"#),
            format!(r#"{{"name": "x", "count": 1, "kind": "aws", "tags": "{canary}"}}"#),
            format!(r#"{{"name": "x", "count": 1, "kind": "aws", "tags": [], "{canary}": 1}}"#),
            format!(
                r#"{{"name": "x", "count": 1, "kind": "aws", "tags": [], "extra": "{canary}"}}"#
            ),
            format!(r#"{{"name": ["{canary}"], "count": 1, "kind": "aws", "tags": []}}"#),
            format!(
                r#"{{"name": "{canary}", "count": 1, "kind": "aws", "tags": [{{"a": "{canary}"}}]}}"#
            ),
            format!(r#"{{"name": "{canary}\q"}}"#),
            format!(r#"{{"name": "{canary}"#),
            "{\"name\": 1234567890123}".to_owned(),
        ] {
            let err = parse_body::<Body>(body.as_bytes()).unwrap_err();
            assert!(
                !err.message.contains("CANARY") && !err.message.contains("1234567890123"),
                "{body}: {}",
                err.message
            );
        }
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
