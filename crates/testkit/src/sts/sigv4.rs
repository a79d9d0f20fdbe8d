//! Checking an AWS Signature Version 4 `Authorization` header, as AWS's query-protocol
//! services do: the canonical request over the method, path, query, signed headers and the
//! SHA-256 of the body, the string to sign over the credential scope, and the HMAC chain from
//! the secret. A request is accepted only if the signature is the one its secret produces, the
//! scope names the expected service, and its date is within 15 minutes of the server's time (the
//! real time unless a test moved it).

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use ring::{digest, hmac};
use time::OffsetDateTime;
use time::macros::format_description;

/// How far a request's date may be from the server's, as AWS allows.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// The parts of an `Authorization: AWS4-HMAC-SHA256 …` header.
#[derive(Debug)]
pub(super) struct Authorization {
    pub access_key_id: String,
    /// `yyyymmdd/region/service/aws4_request`.
    scope: String,
    service: String,
    signed_headers: Vec<String>,
    signature: Vec<u8>,
}

/// What a request needs for its signature to be checked.
#[derive(Debug)]
pub(super) struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// Why a signature was refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SignatureRefusal {
    /// No `Authorization` header at all.
    Missing,
    /// The header or `X-Amz-Date` cannot be read; the message says what is wrong.
    Malformed(String),
    /// Signed for another service.
    WrongService {
        expected: &'static str,
    },
    /// Signed too long ago or in the future.
    Expired {
        signed_at: String,
        now: String,
    },
    Mismatch,
}

impl Authorization {
    pub(super) fn parse(headers: &HeaderMap) -> Result<Authorization, SignatureRefusal> {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(SignatureRefusal::Missing);
        };
        let value = value
            .to_str()
            .map_err(|_| malformed("the Authorization header is not ASCII"))?;
        let rest = value.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
            malformed("Authorization header requires the AWS4-HMAC-SHA256 algorithm")
        })?;
        let (mut credential, mut signed_headers, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let Some((name, value)) = part.trim().split_once('=') else {
                return Err(malformed(&format!(
                    "Authorization header requires each component to be name=value: {part}"
                )));
            };
            match name {
                "Credential" => credential = Some(value),
                "SignedHeaders" => signed_headers = Some(value),
                "Signature" => signature = Some(value),
                _ => {}
            }
        }
        let (Some(credential), Some(signed_headers), Some(signature)) =
            (credential, signed_headers, signature)
        else {
            return Err(malformed(
                "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters",
            ));
        };
        let fields: Vec<&str> = credential.split('/').collect();
        let &[access_key_id, date, region, service, "aws4_request"] = fields.as_slice() else {
            return Err(malformed(&format!(
                "Credential should be <access key>/<date>/<region>/<service>/aws4_request, not {credential}"
            )));
        };
        Ok(Authorization {
            access_key_id: access_key_id.to_owned(),
            scope: format!("{date}/{region}/{service}/aws4_request"),
            service: service.to_owned(),
            signed_headers: signed_headers.split(';').map(str::to_owned).collect(),
            signature: decode_hex(signature)
                .ok_or_else(|| malformed("the Signature is not hex"))?,
        })
    }

    /// Checks the signature of `request` with `secret`, for `service`, at the server's time
    /// `now` (the real time unless a test moved the server's clock).
    pub(super) fn verify(
        &self,
        request: &SignedRequest<'_>,
        secret: &str,
        service: &'static str,
        now: SystemTime,
    ) -> Result<(), SignatureRefusal> {
        if self.service != service {
            return Err(SignatureRefusal::WrongService { expected: service });
        }
        let amz_date = header(request.headers, "x-amz-date")
            .ok_or_else(|| malformed("the request needs an X-Amz-Date header"))?;
        let signed_at = parse_amz_date(&amz_date)?;
        if !self.scope.starts_with(&amz_date[..8]) {
            return Err(malformed(
                "the Credential's date does not match the X-Amz-Date header",
            ));
        }
        let skew = now
            .duration_since(signed_at)
            .unwrap_or_else(|error| error.duration());
        if skew > MAX_SKEW {
            return Err(SignatureRefusal::Expired {
                signed_at: amz_date,
                now: format_amz_date(now),
            });
        }
        let canonical = self.canonical_request(request)?;
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{}\n{}",
            self.scope,
            hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
        );
        let mut key = format!("AWS4{secret}").into_bytes();
        for part in self.scope.split('/') {
            key = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), part.as_bytes())
                .as_ref()
                .to_vec();
        }
        hmac::verify(
            &hmac::Key::new(hmac::HMAC_SHA256, &key),
            string_to_sign.as_bytes(),
            &self.signature,
        )
        .map_err(|_| SignatureRefusal::Mismatch)
    }

    fn canonical_request(&self, request: &SignedRequest<'_>) -> Result<String, SignatureRefusal> {
        let mut canonical_headers = String::new();
        for name in &self.signed_headers {
            let values: Vec<String> = request
                .headers
                .get_all(name.as_str())
                .iter()
                .map(|value| collapse_spaces(&String::from_utf8_lossy(value.as_bytes())))
                .collect();
            if values.is_empty() {
                return Err(malformed(&format!("the signed header {name} is missing")));
            }
            canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
        }
        // The path is taken as sent: clients of query-protocol services send `/`.
        Ok(format!(
            "{}\n{}\n{}\n{canonical_headers}\n{}\n{}",
            request.method,
            if request.path.is_empty() {
                "/"
            } else {
                request.path
            },
            canonical_query(request.query),
            self.signed_headers.join(";"),
            hex(digest::digest(&digest::SHA256, request.body).as_ref()),
        ))
    }
}

fn malformed(message: &str) -> SignatureRefusal {
    SignatureRefusal::Malformed(message.to_owned())
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_owned)
}

/// Pairs decoded, re-encoded with SigV4's encoding, sorted.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(name, value)| (uri_encode(&name), uri_encode(&value)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn uri_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(byte).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn collapse_spaces(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn parse_amz_date(text: &str) -> Result<SystemTime, SignatureRefusal> {
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    let parsed = time::PrimitiveDateTime::parse(text, format).map_err(|_| {
        malformed(&format!(
            "X-Amz-Date must be in the ISO8601 basic format yyyyMMdd'T'HHmmss'Z', not {text}"
        ))
    })?;
    Ok(parsed.assume_utc().into())
}

fn format_amz_date(at: SystemTime) -> String {
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    OffsetDateTime::from(at).format(format).unwrap_or_default()
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_canonicalised() {
        let check = |query: &str, expected: &str| {
            assert_eq!(canonical_query(query), expected, "{query}");
        };
        check("", "");
        check("b=2&a=1", "a=1&b=2");
        check("prefix=runs%2F&list-type=2", "list-type=2&prefix=runs%2F");
        check("a=x+y", "a=x%20y");
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(
            decode_hex(&hex(&[0, 1, 254, 255])),
            Some(vec![0, 1, 254, 255])
        );
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
    }
}
