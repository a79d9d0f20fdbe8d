use crate::permissions::Permission;
use crate::state::KeyStatus;
use crate::values::{Provider, ValidationError};

/// Why the domain refused a command. Each message says what was wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    #[error("this requires the `{permission}` permission, which none of your roles grants")]
    PermissionDenied { permission: Permission },
    #[error("{what} `{id}` was not found")]
    NotFound { what: &'static str, id: String },
    #[error("you already have an external key for {} ({provider}); delete it first to store a new one", provider.display_name())]
    ExternalKeyExists { provider: Provider },
    #[error("you have no usable external key for {} ({provider}); store one first", provider.display_name())]
    NoExternalKey { provider: Provider },
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
}
