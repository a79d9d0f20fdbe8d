//! The OpenAPI 3 document, generated from the route handlers and their types.

use std::sync::OnceLock;

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{api_keys, audit, external_keys, health, ingestions, session, users};

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
        audit::list_events, audit::public_key, audit::checkpoint, audit::backup,
        users::create_user, users::list_users, users::grant_role, users::revoke_role, users::list_roles, users::define_role,
    ),
    modifiers(&Security),
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

/// The document as JSON (built once).
pub fn openapi_json() -> String {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT
        .get_or_init(|| {
            ApiDoc::openapi()
                .to_pretty_json()
                .unwrap_or_else(|_| "{}".to_owned())
        })
        .clone()
}
