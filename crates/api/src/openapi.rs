//! The OpenAPI 3 document, generated from the route declaration (`routes::declared`): each
//! handler's `#[utoipa::path]`, and who may call it from the access table.
//!
//! Guarantee: every status the server can answer an operation with is in the document, each
//! error status with its codes, and every operation says who may call it (the security
//! requirement, `x-required-permission`, `x-owner-only`). How it is kept: the statuses that
//! follow from what a route *is* (it takes a JSON body, has ids in its path, needs a key or a
//! permission) are added by [`ImpliedResponses`] from the access table and the operation itself,
//! so a new route gets them without anyone remembering; route-specific ones (409, 501, …) are
//! written on the handler. Tests walk every route with bad input, and a schema-driven fuzzer
//! checks the running binary.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::access::route_table;
use crate::error::codes_for_status;
use crate::requirement::{Requirement, Resource, RouteAccess, documented_path};

#[derive(OpenApi)]
#[openapi(info(
    title = "keyledger",
    description = "API keys and external credentials of the genomics data platform. Errors are always `{\"error\": {\"code\", \"message\"}}`."
))]
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

/// Writes on every operation who may call it, from the access table.
struct RequiredAccess;

impl Modify for RequiredAccess {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for_each_operation(openapi, |route, operation| {
            if route.requirement.needs_caller() {
                operation.security = Some(vec![SecurityRequirement::new(
                    "api_key",
                    Vec::<String>::new(),
                )]);
            }
            let mut extensions = ExtensionsBuilder::new();
            if let Some(permission) = route.requirement.permission() {
                extensions = extensions.add("x-required-permission", permission.as_str());
            }
            if let Requirement::Owner(resource, _) = route.requirement {
                let owned = match resource {
                    Resource::ExternalKey => "external_key",
                    Resource::Ingestion => "ingestion",
                    Resource::Source => "source",
                };
                extensions = extensions.add("x-owner-only", owned);
            }
            operation
                .extensions
                .get_or_insert_with(Default::default)
                .merge(extensions.build());
        });
    }
}

/// Calls `visit` with each operation of the document and its entry of the access table.
fn for_each_operation(
    openapi: &mut utoipa::openapi::OpenApi,
    mut visit: impl FnMut(&RouteAccess, &mut Operation),
) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        let operations = [
            ("GET", item.get.as_mut()),
            ("POST", item.post.as_mut()),
            ("PUT", item.put.as_mut()),
            ("DELETE", item.delete.as_mut()),
        ];
        for (method, operation) in operations {
            if let (Some(operation), Some(route)) = (operation, route_info(method, path)) {
                visit(route, operation);
            }
        }
    }
}

/// Adds to every operation the error statuses that follow from its route, and lists the codes
/// of every error status in its description.
struct ImpliedResponses;

impl Modify for ImpliedResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for_each_operation(openapi, |route, operation| {
            for status in implied_statuses(route, operation) {
                operation
                    .responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| error_response(""));
            }
            describe_error_codes(operation);
        });
    }
}

/// The route table's entry for an operation of the document.
pub(crate) fn route_info(method: &str, path: &str) -> Option<&'static RouteAccess> {
    route_table()
        .iter()
        .find(|route| route.method == method && route.path == path)
}

/// What every route of its kind can answer, whatever its handler does.
pub(crate) fn implied_statuses(route: &RouteAccess, operation: &Operation) -> BTreeSet<u16> {
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
    if route.requirement.needs_caller() {
        // No or a bad key; too many failed authentications from the address.
        statuses.extend([401, 429]);
    }
    if route.requirement.permission().is_some() {
        statuses.insert(403);
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

/// The document as JSON.
pub fn openapi_json() -> String {
    openapi_text().to_owned()
}

/// The document as JSON, built once per process.
pub(crate) fn openapi_text() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        openapi_document()
            .to_pretty_json()
            .unwrap_or_else(|_| "{}".to_owned())
    })
}

/// The document as a value, for tests and tools.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    document.merge(crate::routes::declared().router.into_openapi());
    document.paths.paths = std::mem::take(&mut document.paths.paths)
        .into_iter()
        .map(|(path, item)| (documented_path(&path), item))
        .collect();
    for modifier in [&Security as &dyn Modify, &RequiredAccess, &ImpliedResponses] {
        modifier.modify(&mut document);
    }
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document and the access table name exactly the same operations, and each says
    /// who may call it.
    #[test]
    fn every_route_is_documented_with_who_may_call_it() {
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
                let Some(operation) = operation else { continue };
                documented.insert((method.to_owned(), path.clone()));
                let route = route_info(method, path).unwrap();
                let extensions = operation.extensions.clone().unwrap_or_default();
                assert_eq!(
                    extensions
                        .get("x-required-permission")
                        .and_then(|v| v.as_str()),
                    route.requirement.permission().map(|p| p.as_str()),
                    "{method} {path}"
                );
                assert_eq!(
                    operation.security.is_some(),
                    route.requirement.needs_caller(),
                    "{method} {path}"
                );
            }
        }
        let routed: BTreeSet<(String, String)> = route_table()
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
