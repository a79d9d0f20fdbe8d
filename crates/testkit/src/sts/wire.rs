//! STS's Query protocol on the wire: form parameters in, XML out, errors as AWS writes them
//! (`<ErrorResponse><Error><Type>Sender</Type><Code>…</Code><Message>…</Message></Error>`).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::iam::{Identity, PolicyError, TemporaryCredentials};

const NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// The form parameters of a request: its query string, then its form-encoded body.
#[derive(Debug)]
pub(super) struct Params {
    pairs: Vec<(String, String)>,
}

/// An STS error answer.
#[derive(Debug)]
pub(super) struct StsError {
    pub status: StatusCode,
    code: &'static str,
    message: String,
}

impl Params {
    pub(super) fn parse(query: &str, body: &[u8]) -> Params {
        let pairs = form_urlencoded::parse(query.as_bytes())
            .chain(form_urlencoded::parse(body))
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        Params { pairs }
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// A required parameter; `member` is its name in AWS's validation messages.
    pub(super) fn required(&self, name: &str, member: &str) -> Result<&str, StsError> {
        self.get(name).ok_or_else(|| {
            StsError::validation(&format!(
                "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
            ))
        })
    }

    /// An optional number of seconds within `min..=max`.
    pub(super) fn duration(
        &self,
        name: &str,
        member: &str,
        min: u64,
        max: u64,
    ) -> Result<Option<Duration>, StsError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        let seconds: u64 = text.parse().map_err(|_| {
            StsError::validation(&format!("Value '{text}' at '{member}' is not an integer"))
        })?;
        if seconds < min {
            return Err(StsError::validation(&format!(
                "1 validation error detected: Value '{seconds}' at '{member}' failed to satisfy constraint: Member must have value greater than or equal to {min}"
            )));
        }
        if seconds > max {
            return Err(StsError::validation(&format!(
                "1 validation error detected: Value '{seconds}' at '{member}' failed to satisfy constraint: Member must have value less than or equal to {max}"
            )));
        }
        Ok(Some(Duration::from_secs(seconds)))
    }
}

pub(super) fn check_length(
    value: &str,
    member: &str,
    min: usize,
    max: usize,
) -> Result<(), StsError> {
    let length = value.chars().count();
    if (min..=max).contains(&length) {
        return Ok(());
    }
    let bound = if length < min {
        format!("greater than or equal to {min}")
    } else {
        format!("less than or equal to {max}")
    };
    Err(StsError::validation(&format!(
        "1 validation error detected: Value at '{member}' failed to satisfy constraint: Member must have length {bound}"
    )))
}

/// Length within `min..=max`, characters word characters or one of `extra`; `pattern` is how
/// AWS's message spells that.
pub(super) fn check_pattern(
    value: &str,
    member: &str,
    min: usize,
    max: usize,
    pattern: &str,
    extra: &str,
) -> Result<(), StsError> {
    check_length(value, member, min, max)?;
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || extra.contains(c))
    {
        return Ok(());
    }
    Err(StsError::validation(&format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must satisfy regular expression pattern: {pattern}"
    )))
}

impl StsError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: &str) -> StsError {
        StsError {
            status,
            code,
            message: message.to_owned(),
        }
    }

    pub(super) fn validation(message: &str) -> StsError {
        StsError::new(StatusCode::BAD_REQUEST, "ValidationError", message)
    }

    pub(super) fn access_denied(message: &str) -> StsError {
        StsError::new(StatusCode::FORBIDDEN, "AccessDenied", message)
    }

    pub(super) fn signature_does_not_match(message: &str) -> StsError {
        StsError::new(StatusCode::FORBIDDEN, "SignatureDoesNotMatch", message)
    }

    pub(super) fn invalid_client_token_id() -> StsError {
        StsError::new(
            StatusCode::FORBIDDEN,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        )
    }

    pub(super) fn malformed_policy(error: &PolicyError) -> StsError {
        StsError::new(
            StatusCode::BAD_REQUEST,
            "MalformedPolicyDocument",
            &error.to_string(),
        )
    }

    pub(super) fn invalid_action(action: &str) -> StsError {
        StsError::new(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            &format!("Could not find operation {action} for version 2011-06-15"),
        )
    }

    pub(super) fn missing_action() -> StsError {
        StsError::new(StatusCode::BAD_REQUEST, "MissingAction", "Missing Action")
    }

    pub(super) fn to_xml(&self, request_id: &str) -> String {
        let kind = if self.status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        };
        format!(
            "<ErrorResponse xmlns=\"{NAMESPACE}\">\n  <Error>\n    <Type>{kind}</Type>\n    \
             <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  \
             <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
            self.code,
            escape(&self.message)
        )
    }
}

pub(super) fn response(
    status: StatusCode,
    body: String,
    request_id: &str,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/xml"),
    );
    if let Ok(value) = http::HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", value);
    }
    response
}

/// A fresh request id in AWS's UUID form.
pub(super) fn request_id() -> String {
    let mut bytes = [0u8; 16];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        return "00000000-0000-0000-0000-000000000000".to_owned();
    }
    let hex = super::sigv4::hex(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

pub(super) fn caller_identity(identity: &Identity, request_id: &str) -> String {
    wrap(
        "GetCallerIdentity",
        &format!(
            "<Arn>{}</Arn>\n    <UserId>{}</UserId>\n    <Account>{}</Account>",
            escape(&identity.arn),
            escape(&identity.user_id),
            escape(&identity.account)
        ),
        request_id,
    )
}

pub(super) fn assume_role_result(
    credentials: &TemporaryCredentials,
    identity: &Identity,
    packed_policy_size: Option<usize>,
    request_id: &str,
) -> String {
    let mut result = format!(
        "<AssumedRoleUser>\n      <AssumedRoleId>{}</AssumedRoleId>\n      <Arn>{}</Arn>\n    \
         </AssumedRoleUser>\n    {}",
        escape(&identity.user_id),
        escape(&identity.arn),
        credentials_xml(credentials)
    );
    if let Some(size) = packed_policy_size {
        result.push_str(&format!(
            "\n    <PackedPolicySize>{size}</PackedPolicySize>"
        ));
    }
    wrap("AssumeRole", &result, request_id)
}

pub(super) fn session_token_result(credentials: &TemporaryCredentials, request_id: &str) -> String {
    wrap("GetSessionToken", &credentials_xml(credentials), request_id)
}

fn credentials_xml(credentials: &TemporaryCredentials) -> String {
    format!(
        "<Credentials>\n      <AccessKeyId>{}</AccessKeyId>\n      \
         <SecretAccessKey>{}</SecretAccessKey>\n      <SessionToken>{}</SessionToken>\n      \
         <Expiration>{}</Expiration>\n    </Credentials>",
        escape(&credentials.access_key_id),
        escape(&credentials.secret_access_key),
        escape(&credentials.session_token),
        iso8601(credentials.expiration)
    )
}

fn wrap(action: &str, result: &str, request_id: &str) -> String {
    format!(
        "<{action}Response xmlns=\"{NAMESPACE}\">\n  <{action}Result>\n    {result}\n  \
         </{action}Result>\n  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  \
         </ResponseMetadata>\n</{action}Response>\n"
    )
}

/// `2026-12-05T19:09:25Z`, as STS writes `Expiration`.
pub(crate) fn iso8601(at: SystemTime) -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    OffsetDateTime::from(at).format(format).unwrap_or_default()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}
