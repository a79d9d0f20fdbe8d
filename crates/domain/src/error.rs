use std::fmt;

use crate::key_status::KeyStatus;
use crate::permissions::Permission;
use crate::time::Timestamp;
use crate::values::{Provider, RoleName, UserId, ValidationError};

/// Why the domain refused a command. Each message says what was wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    /// The message names the missing permission, the roles the user holds, and who can grant
    /// it with which command (see [`Refused`]).
    #[error("{}", Refused { permission: *permission, holder: holder.as_ref() })]
    PermissionDenied {
        permission: Permission,
        /// The refused user and their roles; `None` when the actor is not a user.
        holder: Option<Holder>,
    },
    #[error("{what} `{id}` was not found")]
    NotFound { what: &'static str, id: String },
    #[error("you already have an external key for {} ({provider}); delete it first to store a new one", provider.display_name())]
    ExternalKeyExists { provider: Provider },
    #[error("you have no usable external key for {} ({provider}); store one first", provider.display_name())]
    NoExternalKey { provider: Provider },
    #[error("your {} session credentials expired at {at}: a session token cannot be extended; store new temporary credentials (or a role) and start again", provider.display_name())]
    SessionExpired { provider: Provider, at: Timestamp },
    /// The message names the existing key, not the name: refusals never echo what was sent.
    #[error(
        "you already have an active key with this name ({hint}, id {id}): choose another name, or delete that key first"
    )]
    KeyNameTaken { hint: String, id: String },
    #[error("user `{user}` already exists")]
    UserExists { user: String },
    #[error("the vault is already bootstrapped: an admin exists")]
    AlreadyBootstrapped,
    #[error("{what} `{id}` is {}, not active", status.as_str())]
    NotActive {
        what: &'static str,
        id: String,
        status: KeyStatus,
    },
    #[error("role `{role}` does not exist")]
    UnknownRole { role: String },
    #[error("role `{role}` is built in and cannot be redefined")]
    BuiltInRole { role: String },
    #[error("`{user}` is the last admin; grant admin to someone else first")]
    LastAdmin { user: String },
    #[error("ingestion `{id}` has already finished")]
    IngestionFinished { id: String },
    /// A worker's lease of a job's credential ended (decision 0025): the worker stops the job.
    #[error("{reason}; stop the job")]
    LeaseEnded { reason: String },
    /// A worker asked for a job the work queue did not hand it (its ticket does not match).
    #[error(
        "ingestion `{id}` was not handed to you by the work queue: a worker may lease only the jobs it received, with their ticket"
    )]
    NotHandedOut { id: String },
    /// The user's roles grant the permission, the key's scopes do not.
    #[error(
        "this needs the permission `{permission}` ({}), which this key's scopes ({}) leave out; use another key, or create one with that scope: `keyledger keys create --scope {permission}`",
        permission.allows(),
        scopes.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
    )]
    OutOfScope {
        permission: Permission,
        scopes: Vec<Permission>,
    },
    #[error("user `{user}` is deactivated; reactivate them first")]
    UserDeactivated { user: String },
    /// A run of the source whose job has not finished: a source never runs twice at once.
    #[error(
        "source `{id}` is still running (ingestion `{ingestion}`): wait for that job to finish, or cancel it, then run the source again"
    )]
    SourceRunning { id: String, ingestion: String },
    #[error(
        "you already have a source with this name (id {id}): choose another name, or delete that source first"
    )]
    SourceNameTaken { id: String },
}

/// A user refused a permission, and the roles they held at that moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub user: UserId,
    pub roles: Vec<RoleName>,
}

impl DomainError {
    /// A refusal of an actor that is not a user (the vault itself, the local operator).
    pub fn permission_denied(permission: Permission) -> DomainError {
        DomainError::PermissionDenied {
            permission,
            holder: None,
        }
    }
}

/// The sentence of a [`DomainError::PermissionDenied`]: what is missing, what the user holds,
/// and the command that fixes it, so nobody has to guess whom to ask.
struct Refused<'a> {
    permission: Permission,
    holder: Option<&'a Holder>,
}

impl fmt::Display for Refused<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let permission = self.permission;
        write!(
            f,
            "this needs the permission `{permission}` ({})",
            permission.allows()
        )?;
        let Some(holder) = self.holder else {
            return f.write_str(", which only a user's roles can grant");
        };
        if holder.roles.is_empty() {
            f.write_str(", and you hold no role")?;
        } else {
            let roles: Vec<&str> = holder.roles.iter().map(RoleName::as_str).collect();
            write!(f, ", which your roles ({}) do not grant", roles.join(", "))?;
        }
        write!(
            f,
            "; a user with `{}` (the admin role) can grant it: `keyledger admin users grant {} {}`",
            Permission::ManageOrganizationUsers,
            holder.user,
            permission.smallest_built_in_role()
        )
    }
}
