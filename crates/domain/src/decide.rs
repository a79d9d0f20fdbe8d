//! `decide`: the only place that judges whether a command may happen.

mod governance;
mod ingestion;
mod organization;
mod sources;

use std::collections::BTreeSet;

use crate::command::{Action, Command, NewApiKey};
use crate::error::DomainError;
use crate::event::{
    Actor, Event, ExternalKeyPublic, external_key_stream, role_stream, user_stream,
};
use crate::key_status::KeyStatus;
use crate::permissions::{ADMIN_ROLE, Permission, built_in_permissions};
use crate::state::State;
use crate::time::Timestamp;
use crate::values::{KeyName, Provider, RoleName, UserId, ValidationError};

pub use governance::MAX_RECORDED_TEXT;

/// What [`decide_with_reads`] concluded: the events to record, and the streams the decision
/// read that those events do not write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub events: Vec<Event>,
    /// Append the events only if none of these streams moved since the state the decision saw
    /// (the log's stream guards). A rule that spans streams holds only this way: two
    /// administrators removing each other's role each write one user's stream, and each
    /// decision read the other's.
    pub reads: BTreeSet<String>,
}

/// Turns a command into the events that record it, or explains why it may not happen.
/// Pure: `now` is passed in, nothing is read from the outside world.
pub fn decide(state: &State, command: Command, now: Timestamp) -> Result<Vec<Event>, DomainError> {
    decide_with_reads(state, command, now).map(|decision| decision.events)
}

/// [`decide`], also naming every stream it read beyond those it writes.
pub fn decide_with_reads(
    state: &State,
    command: Command,
    now: Timestamp,
) -> Result<Decision, DomainError> {
    let mut reads = Reads::default();
    let events = judge(state, command, now, &mut reads)?;
    let mut reads = reads.0;
    for event in &events {
        reads.remove(&event.stream_id());
    }
    Ok(Decision { events, reads })
}

/// The streams a decision consulted. Every lookup that can change the outcome notes its stream.
#[derive(Default)]
struct Reads(BTreeSet<String>);

impl Reads {
    /// A user's permissions depend on their roles (their stream) and on the definitions of the
    /// custom roles among them (built-in roles never change).
    fn permissions_of(&mut self, state: &State, user: &UserId) {
        self.0.insert(user_stream(user));
        if let Some(holder) = state.user(user) {
            for role in &holder.roles {
                self.role(role);
            }
        }
    }

    fn role(&mut self, role: &RoleName) {
        if built_in_permissions(role).is_none() {
            self.0.insert(role_stream(role));
        }
    }

    fn stream(&mut self, stream: String) {
        self.0.insert(stream);
    }
}

fn judge(
    state: &State,
    command: Command,
    now: Timestamp,
    reads: &mut Reads,
) -> Result<Vec<Event>, DomainError> {
    let Command { actor, action } = command;
    match action {
        Action::BootstrapAdmin { admin, key } => {
            // Not guarded: "no users yet" spans every user stream. Bootstrap runs only in the
            // process that holds the data directory's lock, before it serves anything.
            if state.has_users() {
                return Err(DomainError::AlreadyBootstrapped);
            }
            require_operator(&actor)?;
            let role = RoleName::parse(ADMIN_ROLE)?;
            Ok(vec![
                Event::UserCreated {
                    user: admin.clone(),
                    display_name: None,
                    at: now,
                },
                Event::RoleGranted {
                    user: admin.clone(),
                    role,
                    at: now,
                },
                api_key_created(admin, key, now),
            ])
        }
        Action::CreateUser {
            user,
            display_name,
            roles,
        } => {
            require(state, reads, &actor, Permission::ManageOrganizationUsers)?;
            if state.user(&user).is_some() {
                return Err(DomainError::UserExists {
                    user: user.to_string(),
                });
            }
            let roles: BTreeSet<RoleName> = roles.into_iter().collect();
            for role in &roles {
                require_role_exists(state, reads, role)?;
            }
            let mut events = vec![Event::UserCreated {
                user: user.clone(),
                display_name,
                at: now,
            }];
            events.extend(roles.into_iter().map(|role| Event::RoleGranted {
                user: user.clone(),
                role,
                at: now,
            }));
            Ok(events)
        }
        Action::GrantRole { user, role } => {
            require(state, reads, &actor, Permission::ManageOrganizationUsers)?;
            let holder = state.user(&user).ok_or_else(|| not_found("user", &user))?;
            require_role_exists(state, reads, &role)?;
            if holder.roles.contains(&role) {
                return Ok(Vec::new());
            }
            Ok(vec![Event::RoleGranted {
                user,
                role,
                at: now,
            }])
        }
        Action::RevokeRole { user, role } => {
            require(state, reads, &actor, Permission::ManageOrganizationUsers)?;
            let holder = state.user(&user).ok_or_else(|| not_found("user", &user))?;
            if !holder.roles.contains(&role) {
                return Ok(Vec::new());
            }
            if role.as_str() == ADMIN_ROLE {
                // A deactivated administrator administers nothing.
                let admins: Vec<&UserId> = state
                    .users()
                    .filter(|u| {
                        u.deactivated.is_none() && u.roles.iter().any(|r| r.as_str() == ADMIN_ROLE)
                    })
                    .map(|u| &u.id)
                    .collect();
                // The count spans users: each administrator's stream is part of the decision.
                for admin in &admins {
                    reads.stream(user_stream(admin));
                }
                if admins.len() <= 1 {
                    return Err(DomainError::LastAdmin {
                        user: user.to_string(),
                    });
                }
            }
            Ok(vec![Event::RoleRevoked {
                user,
                role,
                at: now,
            }])
        }
        Action::DefineRole { role, permissions } => {
            require(state, reads, &actor, Permission::ManageOrganizationUsers)?;
            if built_in_permissions(&role).is_some() {
                return Err(DomainError::BuiltInRole {
                    role: role.to_string(),
                });
            }
            let permissions: Vec<Permission> = permissions
                .into_iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            // Decision 0012: an import uses the importer's own external key.
            if permissions.contains(&Permission::ImportOrganizationSamples)
                && !permissions.contains(&Permission::ManageUserApiKeys)
            {
                return Err(ValidationError::new(
                    "permissions",
                    "`import_organization_samples` needs `manage_user_api_keys` too: an import \
                     uses the importer's own external key, and only that permission stores one",
                )
                .into());
            }
            Ok(vec![Event::RoleDefined {
                role,
                permissions,
                at: now,
            }])
        }

        Action::CreateApiKey(key) => {
            let owner = require(state, reads, &actor, Permission::ManageUserApiKeys)?;
            refuse_taken_name(state, &owner, &key.name, now)?;
            organization::created_with_scope(state, owner, key, now)
        }
        Action::IssueApiKey { owner, key } => {
            require(state, reads, &actor, Permission::ManageOrganizationUsers)?;
            if state.user(&owner).is_none() {
                return Err(not_found("user", &owner));
            }
            reads.permissions_of(state, &owner);
            organization::refuse_deactivated(state, &owner)?;
            refuse_taken_name(state, &owner, &key.name, now)?;
            organization::created_with_scope(state, owner, key, now)
        }
        Action::DeleteApiKeys { keys } => {
            let owner = require(state, reads, &actor, Permission::ManageUserApiKeys)?;
            let keys = distinct(keys, "ids")?;
            let mut events = Vec::with_capacity(keys.len());
            for id in keys {
                // Someone else's key is reported exactly like a missing one: ids do not leak.
                match state.api_key(&id) {
                    Some(key) if key.owner == owner && key.status != KeyStatus::Deleted => {
                        events.push(Event::ApiKeyDeleted {
                            key: id,
                            owner: owner.clone(),
                            at: now,
                        });
                    }
                    _ => return Err(not_found("API key", &id)),
                }
            }
            Ok(events)
        }
        Action::RollApiKey {
            key,
            grace,
            hint,
            secret_hash,
        } => {
            let owner = require(state, reads, &actor, Permission::ManageUserApiKeys)?;
            let current = state
                .api_key(&key)
                .filter(|k| k.owner == owner && k.status != KeyStatus::Deleted);
            let current = current.ok_or_else(|| not_found("API key", &key))?;
            let status = current.status_at(now);
            if status != KeyStatus::Active {
                return Err(DomainError::NotActive {
                    what: "API key",
                    id: key.to_string(),
                    status,
                });
            }
            // The grace period never outlives the key itself.
            let mut previous_valid_until = now.plus_millis(grace.as_millis());
            if let Some(expires) = current.expires_at {
                previous_valid_until = previous_valid_until.min(expires);
            }
            Ok(vec![Event::ApiKeyRolled {
                key,
                owner,
                hint,
                secret_hash,
                previous_valid_until,
                at: now,
            }])
        }
        Action::RecordApiKeyUsage { usages } => {
            require_system(&actor)?;
            Ok(usages
                .into_iter()
                .filter_map(|usage| {
                    let key = state
                        .api_key(&usage.key)
                        .filter(|k| k.status != KeyStatus::Deleted)?;
                    Some(Event::ApiKeyUsed {
                        key: usage.key,
                        owner: key.owner.clone(),
                        last_used_at: usage.last_used_at,
                        uses: usage.uses,
                    })
                })
                .collect())
        }
        Action::ExpireDue => {
            require_system(&actor)?;
            let mut events: Vec<Event> = state
                .api_keys()
                .filter(|k| k.status == KeyStatus::Active && k.expires_at.is_some_and(|e| e <= now))
                .map(|k| Event::ApiKeyExpired {
                    key: k.id.clone(),
                    owner: k.owner.clone(),
                    at: now,
                })
                .collect();
            events.extend(
                state
                    .external_keys()
                    .filter(|k| {
                        k.status == KeyStatus::Active && k.expires_at.is_some_and(|e| e <= now)
                    })
                    .map(|k| Event::ExternalKeyExpired {
                        key: k.id.clone(),
                        owner: k.owner.clone(),
                        provider: k.provider(),
                        at: now,
                    }),
            );
            // Deterministic order, so replays and tests see the same log.
            events.sort_by_key(Event::stream_id);
            Ok(events)
        }

        Action::CreateExternalKey(new) => {
            let owner = require(state, reads, &actor, Permission::ManageUserApiKeys)?;
            let provider = new.public.provider();
            if state
                .active_external_key(&owner, provider)
                .is_some_and(|k| k.status_at(now) == KeyStatus::Active)
            {
                return Err(DomainError::ExternalKeyExists { provider });
            }
            let mut events = Vec::with_capacity(2);
            // An expired key still holds the provider's slot until recorded as expired.
            if let Some(stale) = state.active_external_key(&owner, provider) {
                events.push(Event::ExternalKeyExpired {
                    key: stale.id.clone(),
                    owner: owner.clone(),
                    provider,
                    at: now,
                });
            }
            // A session token cannot be extended: the key ends with it at the latest.
            let token_expires_at = new.public.token_expires_at();
            if token_expires_at.is_some_and(|token| token <= now) {
                return Err(ValidationError::new(
                    "session_expires_at",
                    "the session token has already expired: get new temporary credentials and store those",
                )
                .into());
            }
            let expires_at = match (new.duration.expires_at(now), token_expires_at) {
                (Some(chosen), Some(token)) => Some(chosen.min(token)),
                (chosen, token) => chosen.or(token),
            };
            events.push(Event::ExternalKeyCreated {
                key: new.key,
                owner,
                label: new.label,
                public: new.public,
                sealed: new.sealed,
                created_at: now,
                expires_at,
            });
            Ok(events)
        }
        Action::DeleteExternalKeys { keys } => {
            let owner = require(state, reads, &actor, Permission::ManageUserApiKeys)?;
            let keys = distinct(keys, "ids")?;
            let mut events = Vec::with_capacity(keys.len());
            for id in keys {
                match state.external_key(&id) {
                    Some(key) if key.owner == owner && key.status != KeyStatus::Deleted => {
                        events.push(Event::ExternalKeyDeleted {
                            key: id,
                            owner: owner.clone(),
                            provider: key.provider(),
                            at: now,
                        });
                    }
                    _ => return Err(not_found("external key", &id)),
                }
            }
            Ok(events)
        }
        Action::RecordExternalKeyVerification { key, ok, detail } => {
            let external = state
                .external_key(&key)
                .filter(|k| k.status != KeyStatus::Deleted);
            let external = external.ok_or_else(|| not_found("external key", &key))?;
            reads.stream(external_key_stream(&external.owner, external.provider()));
            if actor != Actor::System {
                let caller = require(state, reads, &actor, Permission::ManageUserApiKeys)?;
                if caller != external.owner {
                    return Err(not_found("external key", &key));
                }
            }
            let detail: String = detail.chars().take(300).collect();
            Ok(vec![Event::ExternalKeyVerified {
                key,
                owner: external.owner.clone(),
                ok,
                detail,
                at: now,
            }])
        }
        Action::RotateExternalKey(rotation) => {
            let owner = require(state, reads, &actor, Permission::ManageUserApiKeys)?;
            let external = state
                .external_key(&rotation.key)
                .filter(|k| k.owner == owner && k.status != KeyStatus::Deleted)
                .ok_or_else(|| not_found("external key", &rotation.key))?;
            let status = external.status_at(now);
            if status != KeyStatus::Active {
                return Err(DomainError::NotActive {
                    what: "external key",
                    id: rotation.key.to_string(),
                    status,
                });
            }
            let provider = external.provider();
            if rotation.public.provider() != provider {
                return Err(ValidationError::new(
                    "provider",
                    format!(
                        "this key holds a {} credential: send a `{provider}` credential to replace it",
                        provider.display_name()
                    ),
                )
                .into());
            }
            if rotation
                .public
                .token_expires_at()
                .is_some_and(|token| token <= now)
            {
                return Err(ValidationError::new(
                    "session_expires_at",
                    "the session token has already expired: get new temporary credentials and rotate to those",
                )
                .into());
            }
            Ok(vec![Event::ExternalKeyRotated {
                previous_data_key: state.data_key_of(&rotation.key),
                key: rotation.key,
                owner,
                public: rotation.public,
                sealed: rotation.sealed,
                data_key: rotation.data_key,
                at: now,
            }])
        }
        Action::RecordDataKeyDestroyed { key, data_key } => {
            require_system(&actor)?;
            if !state.is_retired(&key, &data_key) {
                return Ok(Vec::new());
            }
            let owner = state
                .external_key(&key)
                .map(|k| k.owner.clone())
                .ok_or_else(|| not_found("external key", &key))?;
            Ok(vec![Event::ExternalKeyDataKeyDestroyed {
                key,
                owner,
                data_key,
                at: now,
            }])
        }

        Action::RecordRoleAssumed(assumed) => {
            let external = state
                .external_key(&assumed.key)
                .filter(|k| k.status != KeyStatus::Deleted)
                .ok_or_else(|| not_found("external key", &assumed.key))?;
            if actor != Actor::System {
                let caller = require(state, reads, &actor, Permission::ManageUserApiKeys)?;
                if caller != external.owner {
                    return Err(not_found("external key", &assumed.key));
                }
            }
            let ExternalKeyPublic::AwsRole { role_arn, .. } = &external.public else {
                return Err(ValidationError::new(
                    "kind",
                    "only a `role` key is assumed: this key is not a role",
                )
                .into());
            };
            let session_name: String = assumed.session_name.chars().take(64).collect();
            Ok(vec![Event::ExternalKeyRoleAssumed {
                key: assumed.key,
                owner: external.owner.clone(),
                ingestion: assumed.ingestion,
                role_arn: role_arn.clone(),
                session_name,
                access_key_id: assumed.access_key_id,
                session_expires_at: assumed.session_expires_at,
                at: now,
            }])
        }

        action @ (Action::RequestIngestion { .. }
        | Action::CancelIngestion { .. }
        | Action::RecordIngestion { .. }
        | Action::LeaseIngestion { .. }
        | Action::ReportIngestion { .. }) => ingestion::judge(state, actor, action, now, reads),
        action @ (Action::SaveSource { .. }
        | Action::PauseSource { .. }
        | Action::ResumeSource { .. }
        | Action::DeleteSource { .. }
        | Action::RunSource { .. }
        | Action::RecordSourceRefusal { .. }) => sources::judge(state, actor, action, now, reads),

        action @ (Action::WarnExpiring { .. }
        | Action::RecordLeak { .. }
        | Action::CreateHoneytoken(_)
        | Action::RecordHoneytokenUse { .. }) => {
            governance::judge(state, &actor, action, now, reads)
        }
        Action::RecordMasterKeyRotation { data_keys } => {
            require_operator(&actor)?;
            Ok(vec![Event::MasterKeyRotated {
                generation: state.master_key_generation() + 1,
                data_keys,
                at: now,
            }])
        }

        Action::RevokeApiKey { key, reason } => {
            require(state, reads, &actor, Permission::RevokeOrganizationKeys)?;
            organization::revoke_api_key(state, key, reason, now)
        }
        Action::RevokeExternalKey { key, reason } => {
            require(state, reads, &actor, Permission::RevokeOrganizationKeys)?;
            organization::revoke_external_key(state, key, reason, now)
        }
        Action::DeactivateUser { user, reason } => {
            let admin = require(state, reads, &actor, Permission::ManageOrganizationUsers)?;
            organization::deactivate_user(state, reads, &admin, user, reason, now)
        }
        Action::ReactivateUser { user } => {
            require(state, reads, &actor, Permission::ManageOrganizationUsers)?;
            organization::reactivate_user(state, user, now)
        }
    }
}

fn api_key_created(owner: UserId, key: NewApiKey, now: Timestamp) -> Event {
    Event::ApiKeyCreated {
        key: key.key,
        owner,
        name: key.name,
        hint: key.hint,
        secret_hash: key.secret_hash,
        created_at: now,
        expires_at: key.duration.expires_at(now),
    }
}

/// A name tells a user's keys apart, so no two of their active keys share one (as GitHub refuses
/// a second token with the same note). Expired and deleted keys free their name. Not guarded:
/// two creates of one new name decided against the same state both pass, since each writes only
/// its own new stream (a double click, which the console's Idempotency-Key already covers).
fn refuse_taken_name(
    state: &State,
    owner: &UserId,
    name: &KeyName,
    now: Timestamp,
) -> Result<(), DomainError> {
    let taken = state
        .api_keys_owned_by(owner)
        .find(|key| &key.name == name && key.status_at(now) == KeyStatus::Active);
    match taken {
        Some(key) => Err(DomainError::KeyNameTaken {
            hint: key.hint.to_string(),
            id: key.id.to_string(),
        }),
        None => Ok(()),
    }
}

/// The acting user, if they hold `permission` right now (and the key they act with, if scoped,
/// includes it): the one rule for "may this actor do
/// this", used by [`decide`] and by work that must refuse before anything is decided (an
/// ingestion asks before it leases a secret and calls a provider).
pub fn permitted_user(
    state: &State,
    actor: &Actor,
    permission: Permission,
) -> Result<UserId, DomainError> {
    match actor {
        Actor::User { user, key } if state.has_permission(user, permission) => {
            organization::refuse_out_of_scope(state, key.as_ref(), permission)?;
            Ok(user.clone())
        }
        Actor::User { user, .. } => Err(state.permission_denied(user, permission)),
        _ => Err(DomainError::permission_denied(permission)),
    }
}

/// [`permitted_user`], noting the read so that a concurrent change of the actor's roles
/// conflicts with this decision.
fn require(
    state: &State,
    reads: &mut Reads,
    actor: &Actor,
    permission: Permission,
) -> Result<UserId, DomainError> {
    if let Actor::User { user, .. } = actor {
        reads.permissions_of(state, user);
    }
    permitted_user(state, actor, permission)
}

fn require_system(actor: &Actor) -> Result<(), DomainError> {
    match actor {
        Actor::System => Ok(()),
        _ => Err(DomainError::permission_denied(
            Permission::ManageOrganizationUsers,
        )),
    }
}

fn require_operator(actor: &Actor) -> Result<(), DomainError> {
    match actor {
        Actor::Operator => Ok(()),
        _ => Err(DomainError::permission_denied(
            Permission::ManageOrganizationUsers,
        )),
    }
}

fn require_role_exists(
    state: &State,
    reads: &mut Reads,
    role: &RoleName,
) -> Result<(), DomainError> {
    reads.role(role);
    match state.role_permissions(role) {
        Some(_) => Ok(()),
        None => Err(DomainError::UnknownRole {
            role: role.to_string(),
        }),
    }
}

fn not_found(what: &'static str, id: &impl ToString) -> DomainError {
    DomainError::NotFound {
        what,
        id: id.to_string(),
    }
}

fn distinct<T: Ord + Clone>(ids: Vec<T>, field: &'static str) -> Result<Vec<T>, DomainError> {
    if ids.is_empty() {
        return Err(ValidationError::new(field, "list at least one id").into());
    }
    if ids.len() > 1000 {
        return Err(ValidationError::new(field, "at most 1000 ids at once").into());
    }
    let mut seen = BTreeSet::new();
    Ok(ids
        .into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect())
}

/// Why `owner` has no usable key for `provider`: a session whose token ran out (recorded as
/// expired or not yet) gets its own reason, since only new credentials help.
fn no_usable_key(state: &State, owner: &UserId, provider: Provider, now: Timestamp) -> DomainError {
    let newest = state
        .external_keys_of(owner)
        .into_iter()
        .find(|key| key.provider() == provider);
    match newest.and_then(|key| key.public.token_expires_at()) {
        Some(at) if at <= now => DomainError::SessionExpired { provider, at },
        _ => DomainError::NoExternalKey { provider },
    }
}
