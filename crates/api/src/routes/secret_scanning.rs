//! Leak response: the intake of GitHub's secret scanning partner program (decision 0027).
//!
//! GitHub POSTs the `kl_` tokens it found in public as a JSON array of `{token, type, url,
//! source}`, signed with ECDSA P-256 / SHA-256 over the raw body: the signature (base64 DER) in
//! `Github-Public-Key-Signature`, the signing key's identifier in
//! `Github-Public-Key-Identifier`. The public keys are configured by identifier
//! (`[secret_scanning.github_public_keys]`, from GitHub's `/meta/public_keys/secret_scanning`).
//! A body whose signature does not verify is refused with 401 before it is even parsed, so
//! nothing is revoked. Otherwise each active key found is revoked at once (`ApiKeyLeaked`) and
//! the answer labels every token `true_positive` or `false_positive`, as GitHub expects.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use base64::Engine;
use keyledger_crypto::SecretString;
use keyledger_vault::LeakReport;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiState;
use crate::error::{ApiError, ErrorBody};
use crate::json::RawJson;

/// The header naming the key GitHub signed with.
pub const KEY_IDENTIFIER_HEADER: &str = "github-public-key-identifier";
/// The header carrying the signature: base64 of a DER ECDSA P-256 signature over the raw body.
pub const SIGNATURE_HEADER: &str = "github-public-key-signature";

/// One token GitHub found.
#[derive(Debug, Deserialize, ToSchema)]
pub struct FoundToken {
    /// The token as found.
    #[schema(example = "kl_...")]
    pub token: String,
    /// The secret type registered with GitHub, echoed back as `token_type`.
    #[serde(rename = "type")]
    #[schema(example = "keyledger_api_key")]
    pub token_type: String,
    /// Where it was found.
    #[serde(default)]
    #[schema(example = "https://github.com/octocat/Hello-World/blob/1234567/foo/bar.txt")]
    pub url: String,
    /// What kind of place it was found in (`content`, `commit`, `issue_comment`, …).
    #[serde(default)]
    #[schema(example = "content")]
    pub source: String,
}

/// GitHub's feedback format: whether a reported token is one of ours.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenLabel {
    /// The token as reported.
    pub token_raw: String,
    /// The reported type.
    pub token_type: String,
    /// `true_positive` (a key this vault issued; an active one is revoked now) or
    /// `false_positive`.
    #[schema(example = "true_positive")]
    pub label: &'static str,
}

/// A public key for the signatures, in PEM (`-----BEGIN PUBLIC KEY-----`, an ECDSA P-256
/// SubjectPublicKeyInfo): the 65-byte uncompressed point it holds, or why it is not one.
pub fn parse_public_key(pem: &str) -> Result<Vec<u8>, String> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| "is not PEM (base64 between BEGIN and END lines)".to_owned())?;
    match der.strip_prefix(P256_SPKI_PREFIX.as_slice()) {
        Some(point) if point.len() == 65 && point[0] == 4 => Ok(point.to_vec()),
        _ => Err("is not an ECDSA P-256 public key (SubjectPublicKeyInfo)".to_owned()),
    }
}

/// The DER of a P-256 SubjectPublicKeyInfo up to its uncompressed point: SEQUENCE, the
/// algorithm (id-ecPublicKey, prime256v1), BIT STRING of 66 bytes.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Receives the tokens GitHub's secret scanning found in public, revokes the active keys among
/// them at once, and labels each one.
#[utoipa::path(post, path = "/v1/secret-scanning/github", tag = "leak response",
    request_body = Vec<FoundToken>,
    params(
        ("Github-Public-Key-Identifier" = String, Header, description = "The identifier of the key GitHub signed with"),
        ("Github-Public-Key-Signature" = String, Header, description = "Base64 DER ECDSA P-256 SHA-256 signature of the raw body")),
    responses(
        (status = 200, description = "Each token labelled; active keys among them were revoked (`ApiKeyLeaked`)", body = Vec<TokenLabel>),
        (status = 400, body = ErrorBody),
        (status = 401, description = "Missing, unknown or wrong signature: nothing was read or revoked", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn github_alert(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<RawJson, ApiError>,
) -> Result<Json<Vec<TokenLabel>>, ApiError> {
    let RawJson(body) = body?;
    if let Err(message) = check_signature(&state, &headers, &body) {
        state.metrics().refusal("secret_scanning_signature");
        tracing::warn!(reason = message, "secret scanning alert refused");
        return Err(ApiError::unauthenticated(message));
    }
    // Not `parse_body`, which wants an object: GitHub sends an array. The error never repeats
    // a value (the tokens are secrets).
    let found: Vec<FoundToken> = serde_json::from_slice(&body).map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "send a JSON array of {\"token\", \"type\", \"url\", \"source\"} objects",
        )
    })?;
    let reports: Vec<LeakReport> = found
        .iter()
        .map(|found| LeakReport {
            token: SecretString::new(found.token.clone()),
            url: found.url.clone(),
            source: found.source.clone(),
        })
        .collect();
    let verdicts = state.vault().report_leaks(&reports).await?;
    let labels = found
        .into_iter()
        .zip(verdicts)
        .map(|(found, verdict)| TokenLabel {
            token_raw: found.token,
            token_type: found.token_type,
            label: verdict.label.as_str(),
        })
        .collect();
    Ok(Json(labels))
}

/// Checks the request's signature against the configured key it names. The error says what
/// was wrong, never which keys are configured.
fn check_signature(state: &ApiState, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    let (Some(identifier), Some(signature)) =
        (header(KEY_IDENTIFIER_HEADER), header(SIGNATURE_HEADER))
    else {
        return Err(
            "send the Github-Public-Key-Identifier and Github-Public-Key-Signature headers"
                .to_owned(),
        );
    };
    let pem = state
        .config()
        .github_scanning_keys
        .get(identifier)
        .ok_or("Github-Public-Key-Identifier names no configured public key")?;
    let point = parse_public_key(pem).map_err(|_| "the configured public key is not usable")?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .map_err(|_| "Github-Public-Key-Signature is not base64")?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point)
        .verify(body, &signature)
        .map_err(|_| "the signature does not match the body and the key".to_owned())
}
