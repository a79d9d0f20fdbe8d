//! Who is calling: an internal key (`Authorization: Bearer kl_…` or `X-API-Key: kl_…`) or a
//! session token (`Bearer kls_…`), checked against the vault at request time, so that a revoked
//! role or a deleted key takes effect at once. What the caller may do is judged in `access`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use keyledger_vault::Principal;

use crate::ApiState;
use crate::error::ApiError;

/// The authenticated caller of a route, as `access::judge` admitted it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
}

impl Caller {
    pub fn actor(&self) -> keyledger_domain::Actor {
        self.principal.actor()
    }
}

/// The caller [`crate::access::judge`] authenticated and admitted to the route.
impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &ApiState) -> Result<Caller, ApiError> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            // A handler that needs a caller on a route declared `Public`: a bug, not the
            // client's fault.
            tracing::error!("a route that needs a caller is declared public");
            ApiError::internal("this route is misconfigured; see the server log")
        })
    }
}

/// Authenticates the request's key or session token against the vault, now: 401 without a
/// usable credential, 429 after too many failures from the client's address.
pub(crate) fn authenticate(parts: &Parts, state: &ApiState) -> Result<Principal, ApiError> {
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
    match state.vault().authenticate_from(presented, client) {
        Ok(principal) => {
            tracing::Span::current().record("key_id", tracing::field::display(&principal.key));
            Ok(principal)
        }
        Err(failure) => {
            state.throttle().record_failure(client);
            state.metrics().refusal(failure.reason());
            tracing::info!(reason = failure.reason(), "authentication refused");
            if let keyledger_vault::AuthFailure::Honeytoken { key } = &failure {
                let route = format!("{} {}", parts.method, parts.uri.path());
                record_honeytoken_use(state, key.clone(), client, &parts.headers, route);
            }
            Err(failure.into())
        }
    }
}

/// Records a use of a honeytoken (`HoneytokenUsed`) without making the refusal wait for it: the
/// answer is the same, and as fast, as for an unknown key.
pub(crate) fn record_honeytoken_use(
    state: &ApiState,
    key: keyledger_domain::KeyId,
    client: IpAddr,
    headers: &HeaderMap,
    route: String,
) {
    let user_agent = headers
        .get(header::USER_AGENT)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .unwrap_or_default();
    let vault = state.vault().clone();
    tokio::spawn(async move {
        let address = client.to_string();
        match vault
            .record_honeytoken_use(key.clone(), &address, &user_agent, &route)
            .await
        {
            Ok(_) => {
                tracing::warn!(honeytoken = %key, client = %address, %route, "honeytoken used")
            }
            Err(err) => {
                tracing::error!(honeytoken = %key, error = %err, "recording a honeytoken use failed")
            }
        }
    });
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

/// The client's address: the socket's peer, or, behind `trusted_proxy_hops` proxies, the
/// `X-Forwarded-For` entry the outermost trusted proxy added.
pub(crate) fn client_address(parts: &Parts, state: &ApiState) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    forwarded_client(&parts.headers, peer, state.config().trusted_proxy_hops)
}

/// Proxies append the address they received the request from to `X-Forwarded-For`, so only the
/// rightmost `hops` entries were written by proxies we trust; everything to their left came from
/// the client and may be forged. The client is therefore the `hops`-th entry counted from the
/// right. Several header lines count as one list, in order. When the list is shorter than `hops`
/// or one of those entries is not an address, nothing in it can be trusted: the peer is used.
pub(crate) fn forwarded_client(headers: &HeaderMap, peer: IpAddr, hops: usize) -> IpAddr {
    if hops == 0 {
        return peer;
    }
    let mut entries: Vec<&str> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return peer;
        };
        entries.extend(text.split(','));
    }
    if entries.len() < hops {
        return peer;
    }
    let mut client = peer;
    for entry in entries.iter().rev().take(hops) {
        match parse_forwarded_entry(entry) {
            Some(address) => client = address,
            None => return peer,
        }
    }
    client
}

/// An address as proxies write it: `192.0.2.1`, `2001:db8::1`, `192.0.2.1:4711`, `[2001:db8::1]:4711`.
fn parse_forwarded_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| inner.parse::<IpAddr>().ok())
        })
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

    fn check_forwarded(lines: &[&str], hops: usize, expect: &str) {
        let peer: IpAddr = "10.9.9.9".parse().unwrap();
        let mut map = HeaderMap::new();
        for line in lines {
            map.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
        }
        assert_eq!(
            forwarded_client(&map, peer, hops),
            expect.parse::<IpAddr>().unwrap(),
            "{lines:?} with {hops} trusted hops"
        );
    }

    #[test]
    fn the_client_is_the_entry_the_outermost_trusted_proxy_added() {
        // No trusted proxy: the header is ignored.
        check_forwarded(&["1.1.1.1"], 0, "10.9.9.9");
        // The client forged `6.6.6.6`; our one proxy appended the address it saw.
        check_forwarded(&["6.6.6.6, 203.0.113.7"], 1, "203.0.113.7");
        check_forwarded(&["6.6.6.6, 203.0.113.7, 10.0.0.2"], 2, "203.0.113.7");
        // Several header lines are one list.
        check_forwarded(&["6.6.6.6", "203.0.113.7"], 1, "203.0.113.7");
        check_forwarded(&["6.6.6.6, 203.0.113.7", "10.0.0.2"], 2, "203.0.113.7");
        // Forms proxies write.
        check_forwarded(&["203.0.113.7:4711"], 1, "203.0.113.7");
        check_forwarded(&["[2001:db8::7]:4711"], 1, "2001:db8::7");
        check_forwarded(&["[2001:db8::7]"], 1, "2001:db8::7");
        check_forwarded(&[" 2001:db8::7 "], 1, "2001:db8::7");
        // Too short, garbage or empty: the peer.
        check_forwarded(&["203.0.113.7"], 2, "10.9.9.9");
        check_forwarded(&[], 1, "10.9.9.9");
        check_forwarded(&["6.6.6.6, garbage"], 1, "10.9.9.9");
        check_forwarded(&["203.0.113.7, garbage"], 2, "10.9.9.9");
        check_forwarded(&["6.6.6.6,"], 1, "10.9.9.9");
        check_forwarded(&["unknown"], 1, "10.9.9.9");
    }
}
