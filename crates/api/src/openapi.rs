//! The OpenAPI 3 document, generated from the route handlers and their types.
//!
//! Guarantee: every status the server can answer an operation with is in the document, each
//! error status with its codes. How it is kept: the statuses that follow from what a route *is*
//! (it takes a JSON body, has ids in its path, needs a key or a permission) are added by
//! [`ImpliedResponses`] from the route table ([`ROUTES`]) and the operation itself, so a new
//! route gets them without anyone remembering; route-specific ones (409, 501, …) are written on
//! the handler. Tests check that the document and the route table name the same operations,
//! walk every route with bad input, and a schema-driven fuzzer checks the running binary.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::error::codes_for_status;
use crate::routes::{
    ROUTES, RouteInfo, api_keys, audit, external_keys, health, ingestions, session, users,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "keyledger", description = "API keys and external credentials of the genomics data platform. Errors are always `{\"error\": {\"code\", \"message\"}}`."),
    paths(
        health::healthz, health::readyz, health::metrics, health::openapi,
        session::login, session::me, session::verify_key,
        api_keys::create_api_key, api_keys::issue_api_key, api_keys::list_api_keys, api_keys::delete_api_keys, api_keys::delete_api_key, api_keys::roll_api_key,
        external_keys::create_external_key, external_keys::list_external_keys, external_keys::delete_external_keys,
        external_keys::delete_external_key, external_keys::verify_external_key,
        ingestions::start_ingestion, ingestions::list_ingestions, ingestions::get_ingestion, ingestions::cancel_ingestion,
        ingestions::get_ingestion_manifest, ingestions::get_ingestion_file,
        audit::list_events, audit::public_key, audit::checkpoint, audit::backup,
        users::create_user, users::list_users, users::grant_role, users::revoke_role, users::list_roles, users::define_role,
    ),
    modifiers(&Security, &ImpliedResponses),
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An internal key `kl_…` or a session token `kls_…`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "x_api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// Adds to every operation the error statuses that follow from its route, and lists the codes
/// of every error status in its description.
struct ImpliedResponses;

impl Modify for ImpliedResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                ("GET", item.get.as_mut()),
                ("POST", item.post.as_mut()),
                ("PUT", item.put.as_mut()),
                ("DELETE", item.delete.as_mut()),
            ];
            for (method, operation) in operations {
                let (Some(operation), Some(route)) = (operation, route_info(method, path)) else {
                    continue;
                };
                for status in implied_statuses(route, operation) {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error_response(""));
                }
                describe_error_codes(operation);
            }
        }
    }
}

/// The route table's entry for an operation of the document.
pub(crate) fn route_info(method: &str, path: &str) -> Option<&'static RouteInfo> {
    ROUTES
        .iter()
        .find(|route| route.method == method && route.path == path)
}

/// What every route of its kind can answer, whatever its handler does.
pub(crate) fn implied_statuses(route: &RouteInfo, operation: &Operation) -> BTreeSet<u16> {
    // The middleware refuses an oversized declared body (413) and abandons a slow request (503)
    // on every route.
    let mut statuses = BTreeSet::from([413, 503]);
    if operation.request_body.is_some() {
        // Malformed JSON or an invalid field; no JSON content type; the wrong shape.
        statuses.extend([400, 415, 422]);
    }
    if route.path.contains('{') {
        // A malformed id, or no such object.
        statuses.extend([400, 404]);
    }
    let has_query = operation.parameters.iter().flatten().any(|parameter| {
        matches!(
            parameter.parameter_in,
            utoipa::openapi::path::ParameterIn::Query
        )
    });
    if has_query {
        // A query parameter that does not parse.
        statuses.insert(400);
    }
    match route.permission {
        None => {}
        Some(permission) => {
            // No or a bad key; too many failed authentications from the address.
            statuses.extend([401, 429]);
            if !permission.is_empty() {
                statuses.insert(403);
            }
        }
    }
    statuses
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
        .build()
        .into()
}

/// Appends the codes of each error status to its description (`Codes: a, b.`).
fn describe_error_codes(operation: &mut Operation) {
    for (status, response) in operation.responses.responses.iter_mut() {
        let (Ok(status), RefOr::T(response)) = (status.parse::<u16>(), response) else {
            continue;
        };
        let codes: Vec<String> = codes_for_status(status)
            .map(|code| format!("`{code}`"))
            .collect();
        if status < 400 || codes.is_empty() || response.description.contains("Codes:") {
            continue;
        }
        let codes = format!("Codes: {}.", codes.join(", "));
        response.description = if response.description.is_empty() {
            codes
        } else {
            format!("{} {codes}", response.description)
        };
    }
}

/// The document as JSON (built once).
pub fn openapi_json() -> String {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT
        .get_or_init(|| {
            openapi_document()
                .to_pretty_json()
                .unwrap_or_else(|_| "{}".to_owned())
        })
        .clone()
}

/// The document as a value, for tests and tools.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document and the route table name exactly the same operations.
    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let document = openapi_document();
        let mut documented = BTreeSet::new();
        for (path, item) in &document.paths.paths {
            for (method, operation) in [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("DELETE", &item.delete),
                ("PATCH", &item.patch),
            ] {
                if operation.is_some() {
                    documented.insert((method.to_owned(), path.clone()));
                }
            }
        }
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|route| (route.method.to_owned(), route.path.to_owned()))
            .collect();
        assert_eq!(documented, routed);
    }

    /// Every error response of every operation carries the error body and names its codes.
    #[test]
    fn error_responses_name_their_codes() {
        let document: serde_json::Value = serde_json::from_str(&openapi_json()).unwrap();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    let status: u16 = status.parse().unwrap();
                    if status < 400 || (path == "/readyz" && status == 503) {
                        continue;
                    }
                    let description = response["description"].as_str().unwrap();
                    assert!(
                        description.contains("Codes: `"),
                        "{method} {path} {status}: {description}"
                    );
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}
