//! Who may call what, judged in one place.
//!
//! Guarantee: every route's [`Requirement`] is declared beside its handler in
//! `routes::declared` and nowhere else, and [`judge`] enforces it before the route runs, so a
//! handler never checks a permission or an owner itself. The same table ([`route_table`]) puts
//! the requirement in `/openapi.json` (`x-required-permission`, `x-owner-only`, the security
//! requirement) and drives the permission-matrix test. The domain's `decide` still judges each
//! command it is given (the last admin, an active external key, …): this module decides whether a
//! request may reach a route at all.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use keyledger_domain::{DomainError, ExternalKeyId, IngestionId, KeyStatus, Permission, SourceId};
use keyledger_vault::Principal;

use crate::ApiState;
use crate::auth::{Caller, authenticate};
use crate::error::ApiError;
use crate::requirement::{Requirement, Resource, RouteAccess, documented_path};

/// Every route of the API with its requirement, in declaration order (built once from the
/// route declaration).
pub fn route_table() -> &'static [RouteAccess] {
    &table().routes
}

/// The table and, for the middleware, its index by (method, path as the router matched it).
struct Table {
    routes: Vec<RouteAccess>,
    by_matched_path: HashMap<(Method, &'static str), Requirement>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut routes = Vec::new();
        let mut by_matched_path = HashMap::new();
        for declared in crate::routes::declared().access {
            // Built once per process: the few path strings live as long as the table.
            let routed: &'static str = Box::leak(declared.routed_path.into_boxed_str());
            let documented: &'static str = Box::leak(documented_path(routed).into_boxed_str());
            let Ok(method) = Method::from_bytes(declared.method.as_bytes()) else {
                continue;
            };
            by_matched_path.insert((method, routed), declared.requirement);
            routes.push(RouteAccess {
                method: declared.method,
                path: documented,
                requirement: declared.requirement,
            });
        }
        Table {
            routes,
            by_matched_path,
        }
    })
}

/// The requirement of the route a request matched. HEAD is served by a GET route.
fn requirement_of(method: &Method, matched_path: &str) -> Option<Requirement> {
    let method = if method == Method::HEAD {
        Method::GET
    } else {
        method.clone()
    };
    table()
        .by_matched_path
        .get(&(method, matched_path))
        .copied()
}

/// Judges a request against its route's requirement: authenticates the caller (401, 429),
/// checks the permission (403 naming it and the grant that fixes it) and the owner of the
/// resource (404). On success the [`Caller`] is left in the request for the route. A request
/// that matched no route (404, 405) passes untouched: the router answers it.
pub(crate) async fn judge(
    state: &ApiState,
    request: &mut Request,
    matched_path: Option<&str>,
) -> Result<(), ApiError> {
    let Some(requirement) = matched_path.and_then(|path| requirement_of(request.method(), path))
    else {
        return Ok(());
    };
    if !requirement.needs_caller() {
        return Ok(());
    }
    let (mut parts, body) = std::mem::take(request).into_parts();
    let judged = async {
        let principal = authenticate(&parts, state)?;
        if let Some(permission) = requirement.permission() {
            require(state, &principal, permission)?;
        }
        if let Requirement::Owner(resource, _) = requirement {
            require_owner(state, &mut parts, &principal, resource).await?;
        }
        Ok::<Principal, ApiError>(principal)
    }
    .await;
    let outcome = judged.map(|principal| {
        parts.extensions.insert(Caller { principal });
    });
    *request = Request::from_parts(parts, body);
    outcome
}

/// Refuses with 403 unless the caller's roles grant `permission` right now and, for a scoped
/// key, its scopes include it (decision 0026).
fn require(
    state: &ApiState,
    principal: &Principal,
    permission: Permission,
) -> Result<(), ApiError> {
    if principal.has(permission) {
        return Ok(());
    }
    state.metrics().refusal("permission_denied");
    let user = &principal.user;
    Err(state
        .vault()
        .read(|projection| match principal.scopes {
            // The owner holds it; the key's scopes leave it out: say so, not "grant a role".
            Some(scopes) if projection.has_permission(user, permission) => {
                DomainError::OutOfScope {
                    permission,
                    scopes: scopes.iter().collect(),
                }
            }
            _ => projection.permission_denied(user, permission),
        })
        .into())
}

/// Refuses with 404 unless the resource the path's `{id}` names is the caller's: another
/// user's resource is not revealed. A malformed id is a 400 that names the field.
async fn require_owner(
    state: &ApiState,
    parts: &mut axum::http::request::Parts,
    principal: &Principal,
    resource: Resource,
) -> Result<(), ApiError> {
    use axum::extract::FromRequestParts;
    let params = axum::extract::RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|_| ApiError::for_status(StatusCode::BAD_REQUEST))?;
    let raw = params
        .iter()
        .find_map(|(name, value)| (name == "id").then_some(value))
        .unwrap_or_default();
    let user = &principal.user;
    let owned = match resource {
        Resource::ExternalKey => {
            let id = ExternalKeyId::parse(raw)?;
            let owned = state.vault().read(|s| {
                s.external_key(&id)
                    .is_some_and(|key| &key.owner == user && key.status != KeyStatus::Deleted)
            });
            owned.then_some(()).ok_or(DomainError::NotFound {
                what: "external key",
                id: id.to_string(),
            })
        }
        Resource::Ingestion => {
            let id = IngestionId::parse(raw)?;
            let owned = state
                .vault()
                .read(|s| s.ingestion(&id).is_some_and(|job| &job.owner == user));
            owned.then_some(()).ok_or(DomainError::NotFound {
                what: "ingestion",
                id: id.to_string(),
            })
        }
        Resource::Source => {
            let id = SourceId::parse(raw)?;
            let owned = state
                .vault()
                .read(|s| s.source(&id).is_some_and(|source| &source.owner == user));
            owned.then_some(()).ok_or(DomainError::NotFound {
                what: "source",
                id: id.to_string(),
            })
        }
    };
    Ok(owned?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_table_once() {
        let mut seen = std::collections::BTreeSet::new();
        for route in route_table() {
            assert!(
                seen.insert((route.method, route.path)),
                "{} {} is declared twice",
                route.method,
                route.path
            );
        }
        assert_eq!(seen.len(), table().by_matched_path.len());
    }

    #[test]
    fn a_catch_all_is_documented_as_a_plain_parameter() {
        assert_eq!(
            documented_path("/v1/ingestions/{id}/files/{*path}"),
            "/v1/ingestions/{id}/files/{path}"
        );
        assert_eq!(
            requirement_of(&Method::HEAD, "/v1/api-keys"),
            Some(Requirement::Permission(Permission::ManageUserApiKeys))
        );
    }
}
