//! The routes, one module per area, declared once in [`declared`]: each handler with who may
//! call it. The router, the OpenAPI paths and the access table (`crate::access`) all come from
//! that one list, so no route can be served undocumented or unguarded.

pub(crate) mod api_keys;
pub(crate) mod audit;
pub(crate) mod aws_role;
pub(crate) mod external_keys;
pub(crate) mod governance;
pub(crate) mod health;
pub(crate) mod ingestions;
pub(crate) mod samples;
pub(crate) mod secret_scanning;
pub(crate) mod session;
pub(crate) mod sources;
pub(crate) mod users;
pub(crate) mod workers;

use axum::http::HeaderMap;
use keyledger_domain::Permission;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::requirement::{DeclaredAccess, Requirement, Resource};

/// The routes, their OpenAPI paths, and who may call each.
pub(crate) struct Declared {
    pub router: OpenApiRouter<ApiState>,
    pub access: Vec<DeclaredAccess>,
}

impl Declared {
    fn new() -> Declared {
        Declared {
            router: OpenApiRouter::default(),
            access: Vec::new(),
        }
    }

    /// Adds the handler of `routes!(…)`, whose `#[utoipa::path]` gives its method, path and
    /// documentation, with who may call it.
    fn with(mut self, requirement: Requirement, routes: UtoipaMethodRouter<ApiState>) -> Declared {
        for (path, item) in &routes.1.paths {
            let operations = [
                ("GET", item.get.is_some()),
                ("POST", item.post.is_some()),
                ("PUT", item.put.is_some()),
                ("DELETE", item.delete.is_some()),
                ("PATCH", item.patch.is_some()),
            ];
            for (method, _) in operations.into_iter().filter(|(_, present)| *present) {
                self.access.push(DeclaredAccess {
                    method,
                    routed_path: path.clone(),
                    requirement,
                });
            }
        }
        self.router = self.router.routes(routes);
        self
    }
}

/// Every route of the API and who may call it: the single declaration.
pub(crate) fn declared() -> Declared {
    use Requirement::{AnyCaller, Owner, Public};
    let needs = Requirement::Permission;
    let keys = needs(Permission::ManageUserApiKeys);
    let users = needs(Permission::ManageOrganizationUsers);
    let audit_log = needs(Permission::ViewAuditLog);
    let import = needs(Permission::ImportOrganizationSamples);
    let run_jobs = needs(Permission::RunIngestionJobs);
    let own_external_key = Owner(Resource::ExternalKey, Permission::ManageUserApiKeys);
    let own_ingestion = Owner(Resource::Ingestion, Permission::ImportOrganizationSamples);
    let own_source = Owner(Resource::Source, Permission::ImportOrganizationSamples);
    Declared::new()
        .with(Public, routes!(health::healthz))
        .with(Public, routes!(health::readyz))
        .with(Public, routes!(health::metrics))
        .with(Public, routes!(health::openapi))
        .with(Public, routes!(session::login))
        .with(AnyCaller, routes!(session::me))
        .with(
            needs(Permission::VerifyApiKeys),
            routes!(session::verify_key),
        )
        .with(keys, routes!(api_keys::create_api_key))
        .with(keys, routes!(api_keys::list_api_keys))
        .with(keys, routes!(api_keys::delete_api_keys))
        .with(keys, routes!(api_keys::delete_api_key))
        .with(keys, routes!(api_keys::roll_api_key))
        .with(keys, routes!(external_keys::create_external_key))
        .with(keys, routes!(external_keys::list_external_keys))
        .with(keys, routes!(aws_role::aws_role_setup))
        .with(keys, routes!(external_keys::delete_external_keys))
        .with(keys, routes!(external_keys::delete_external_key))
        .with(
            own_external_key,
            routes!(external_keys::verify_external_key),
        )
        .with(
            own_external_key,
            routes!(external_keys::rotate_external_key),
        )
        .with(users, routes!(users::create_user))
        .with(users, routes!(users::list_users))
        .with(users, routes!(users::grant_role))
        .with(users, routes!(users::revoke_role))
        .with(users, routes!(api_keys::issue_api_key))
        .with(import, routes!(ingestions::start_ingestion))
        .with(import, routes!(ingestions::preview::preview_ingestion))
        .with(import, routes!(ingestions::list_ingestions))
        .with(own_ingestion, routes!(ingestions::get_ingestion))
        // Cancelling another user's job is refused by `decide`, which judges the command.
        .with(import, routes!(ingestions::cancel_ingestion))
        .with(own_ingestion, routes!(ingestions::get_ingestion_manifest))
        .with(own_ingestion, routes!(ingestions::get_ingestion_file))
        .with(import, routes!(samples::sample_lineage))
        .with(audit_log, routes!(audit::list_events))
        .with(Public, routes!(audit::public_key))
        .with(audit_log, routes!(audit::checkpoint))
        .with(users, routes!(audit::backup))
        .with(users, routes!(users::list_roles))
        .with(users, routes!(users::define_role))
        // Signed by GitHub, not called with a key: the handler checks the signature.
        .with(Public, routes!(secret_scanning::github_alert))
        .with(run_jobs, routes!(workers::lease_job))
        .with(run_jobs, routes!(workers::report_job))
        .with(
            needs(Permission::AuditOrganizationKeys),
            routes!(governance::inventory),
        )
        .with(
            needs(Permission::RevokeOrganizationKeys),
            routes!(governance::revoke_key),
        )
        .with(users, routes!(governance::deactivate_user))
        .with(users, routes!(governance::reactivate_user))
        .with(run_jobs, routes!(workers::renew_session))
        .with(import, routes!(sources::save_source))
        .with(import, routes!(sources::list_sources))
        .with(own_source, routes!(sources::get_source))
        .with(own_source, routes!(sources::run_source))
        .with(own_source, routes!(sources::pause_source))
        .with(own_source, routes!(sources::resume_source))
        .with(own_source, routes!(sources::delete_source))
        .with(run_jobs, routes!(workers::unchanged_files))
}

/// The request id for a create: the `Idempotency-Key` header (any printable string of at most
/// 64 characters), hashed with the caller and the route to 16 bytes, so that two callers' keys
/// never collide.
pub(crate) fn idempotency_key(
    headers: &HeaderMap,
    caller: &Caller,
    route: &str,
) -> Result<Option<[u8; 16]>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let text = value.to_str().ok().filter(|t| {
        !t.is_empty() && t.len() <= 64 && t.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    });
    let Some(text) = text else {
        return Err(ApiError {
            field: Some("Idempotency-Key"),
            ..ApiError::bad_request(
                "validation_failed",
                "Idempotency-Key: use 1 to 64 printable ASCII characters",
            )
        });
    };
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [
        b"keyledger-idempotency".as_slice(),
        caller.principal.user.as_str().as_bytes(),
        route.as_bytes(),
        text.as_bytes(),
    ] {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part);
    }
    let digest = context.finish();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest.as_ref()[..16]);
    Ok(Some(id))
}
