//! Who is calling: an internal key (`Authorization: Bearer kl_…` or `X-API-Key: kl_…`) or a
//! session token (`Bearer kls_…`), checked against the vault at request time, so that a revoked
//! role or a deleted key takes effect at once.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use keyledger_domain::Permission;
use keyledger_vault::Principal;

use crate::ApiState;
use crate::error::ApiError;

/// The authenticated caller of a route. Extracting it authenticates the request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
}

impl Caller {
    /// Refuses with 403 unless the caller's roles grant `permission` right now.
    pub fn require(&self, state: &ApiState, permission: Permission) -> Result<(), ApiError> {
        if self.principal.has(permission) {
            return Ok(());
        }
        state.metrics().refusal("permission_denied");
        Err(keyledger_domain::DomainError::PermissionDenied { permission }.into())
    }

    pub fn actor(&self) -> keyledger_domain::Actor {
        self.principal.actor()
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Caller, ApiError> {
        let presented = match presented_credential(&parts.headers) {
            Ok(Some(presented)) => presented,
            Ok(None) => {
                state.metrics().refusal("missing_credentials");
                return Err(ApiError::unauthenticated(
                    "no API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
                ));
            }
            Err(err) => {
                state.metrics().refusal("malformed");
                return Err(err);
            }
        };
        let client = client_address(parts, state);
        throttle_check(state, client)?;
        match state.vault().authenticate(presented) {
            Ok(principal) => {
                tracing::Span::current().record("key_id", tracing::field::display(&principal.key));
                Ok(Caller { principal })
            }
            Err(failure) => {
                state.throttle().record_failure(client);
                state.metrics().refusal(failure.reason());
                tracing::info!(reason = failure.reason(), "authentication refused");
                Err(failure.into())
            }
        }
    }
}

/// The client's address (see [`client_address`]), as an extractor.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub IpAddr);

impl FromRequestParts<ApiState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<ClientAddress, Self::Rejection> {
        Ok(ClientAddress(client_address(parts, state)))
    }
}

/// Refuses with 429 when `client` has failed to authenticate too often.
pub(crate) fn throttle_check(state: &ApiState, client: IpAddr) -> Result<(), ApiError> {
    state.throttle().check(client).map_err(|retry_after| {
        state.metrics().refusal("throttled");
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failed_authentications",
            format!(
                "too many failed authentications from your address; try again in {retry_after} s"
            ),
        )
        .with_retry_after(retry_after)
    })
}

/// The credential in the request's headers, if any. The value is never logged or echoed.
pub(crate) fn presented_credential(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value.to_str().map_err(|_| {
            ApiError::unauthenticated(
                "the Authorization header must be `Bearer <key>` in plain ASCII",
            )
        })?;
        let (scheme, token) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(ApiError::unauthenticated(
                "the Authorization header must be `Bearer <key>`",
            ));
        }
        return Ok(Some(token.trim()));
    }
    if let Some(value) = headers.get("x-api-key") {
        let text = value
            .to_str()
            .map_err(|_| ApiError::unauthenticated("the X-API-Key header must be plain ASCII"))?;
        if text.trim().is_empty() {
            return Err(ApiError::unauthenticated("the X-API-Key header is empty"));
        }
        return Ok(Some(text.trim()));
    }
    Ok(None)
}

/// The client's address: the socket peer, or the first `X-Forwarded-For` hop when the server is
/// configured to trust a proxy in front of it.
pub(crate) fn client_address(parts: &Parts, state: &ApiState) -> IpAddr {
    if state.config().trust_forwarded_for {
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|first| first.trim().parse::<IpAddr>().ok());
        if let Some(address) = forwarded {
            return address;
        }
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn check(headers: &[(&'static str, &str)], expect: Result<Option<&str>, ()>) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        assert_eq!(
            presented_credential(&map).map_err(|_| ()),
            expect,
            "{headers:?}"
        );
    }

    #[test]
    fn credentials_come_from_either_header() {
        check(&[], Ok(None));
        check(&[("authorization", "Bearer kl_abc")], Ok(Some("kl_abc")));
        check(&[("authorization", "bearer   kl_abc ")], Ok(Some("kl_abc")));
        check(&[("x-api-key", "kl_abc")], Ok(Some("kl_abc")));
        check(&[("authorization", "Basic dXNlcjpwYXNz")], Err(()));
        check(&[("authorization", "Bearer")], Err(()));
        check(&[("x-api-key", " ")], Err(()));
    }
}
