//! Who may call a route, as the route declaration says it (`routes::declared`): the vocabulary
//! that [`crate::access`] judges by and `/openapi.json` shows. No I/O, no state.

use keyledger_domain::Permission;

/// What a caller must be to use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Anyone, without a key.
    Public,
    /// Any authenticated caller, whatever their roles grant.
    AnyCaller,
    /// An authenticated caller whose roles grant the permission right now.
    Permission(Permission),
    /// As `Permission`, and the resource the path's `{id}` names belongs to the caller; another
    /// user's answers 404, as if it did not exist.
    Owner(Resource, Permission),
}

impl Requirement {
    /// The permission the caller's roles must grant, if any.
    pub fn permission(self) -> Option<Permission> {
        match self {
            Requirement::Public | Requirement::AnyCaller => None,
            Requirement::Permission(permission) | Requirement::Owner(_, permission) => {
                Some(permission)
            }
        }
    }

    /// Whether the route needs a key (or a session token).
    pub fn needs_caller(self) -> bool {
        self != Requirement::Public
    }
}

/// A resource that belongs to one user and is named by a route's `{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    ExternalKey,
    Ingestion,
    /// A saved source (`src_…`).
    Source,
}

/// One route: its method, its path as `/openapi.json` writes it, and who may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteAccess {
    pub method: &'static str,
    pub path: &'static str,
    pub requirement: Requirement,
}

/// One route as the declaration yields it, before the table is built.
#[derive(Debug)]
pub(crate) struct DeclaredAccess {
    pub method: &'static str,
    /// The path as the router matches it (`{*rest}` for a catch-all).
    pub routed_path: String,
    pub requirement: Requirement,
}

/// The OpenAPI form of a router path: axum's catch-all `{*path}` is OpenAPI's `{path}`.
pub(crate) fn documented_path(routed: &str) -> String {
    routed.replace("{*", "{")
}
