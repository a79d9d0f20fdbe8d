//! The decisions of the organisation's administrators (decision 0026): scoped keys, an
//! administrator's revocation of anyone's key, and offboarding in one step.

use super::{Reads, api_key_created, not_found};
use crate::command::NewApiKey;
use crate::error::DomainError;
use crate::event::{Event, user_stream};
use crate::key_status::KeyStatus;
use crate::permissions::{ADMIN_ROLE, Permission};
use crate::state::State;
use crate::time::Timestamp;
use crate::values::{ExternalKeyId, KeyId, Reason, UserId, ValidationError};

/// `ApiKeyCreated`, and `ApiKeyScoped` beside it when the key is scoped. A scope the owner
/// does not hold right now is refused: a key never starts out promising more than its owner.
pub(super) fn created_with_scope(
    state: &State,
    owner: UserId,
    key: NewApiKey,
    now: Timestamp,
) -> Result<Vec<Event>, DomainError> {
    let scope = key.scope.clone();
    if let Some(scopes) = scope.scopes {
        let held = state.permissions_of(&owner);
        if let Some(missing) = scopes.iter().find(|p| !held.contains(p)) {
            return Err(ValidationError::new(
                "scopes",
                format!(
                    "`{missing}` is not a permission of `{owner}` right now: a key's scopes are a \
                     subset of its owner's permissions ({})",
                    held.iter()
                        .map(Permission::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .into());
        }
    }
    let id = key.key.clone();
    let mut events = vec![api_key_created(owner.clone(), key, now)];
    if !scope.is_unrestricted() {
        events.push(Event::ApiKeyScoped {
            key: id,
            owner,
            scopes: scope.scopes.map(|s| s.iter().collect()).unwrap_or_default(),
            networks: scope.networks,
            at: now,
        });
    }
    Ok(events)
}

/// Refuses, naming the permission, an actor whose key's scopes leave it out.
pub(super) fn refuse_out_of_scope(
    state: &State,
    key: Option<&KeyId>,
    permission: Permission,
) -> Result<(), DomainError> {
    let scopes = key
        .and_then(|key| state.api_key(key))
        .and_then(|k| k.scopes);
    match scopes {
        Some(scopes) if !scopes.contains(&permission) => Err(DomainError::OutOfScope {
            permission,
            scopes: scopes.iter().collect(),
        }),
        _ => Ok(()),
    }
}

pub(super) fn refuse_deactivated(state: &State, user: &UserId) -> Result<(), DomainError> {
    match state.user(user) {
        Some(holder) if holder.deactivated.is_some() => Err(DomainError::UserDeactivated {
            user: user.to_string(),
        }),
        _ => Ok(()),
    }
}

pub(super) fn revoke_api_key(
    state: &State,
    key: KeyId,
    reason: Reason,
    now: Timestamp,
) -> Result<Vec<Event>, DomainError> {
    let found = state
        .api_key(&key)
        .filter(|k| k.status != KeyStatus::Deleted)
        .ok_or_else(|| not_found("API key", &key))?;
    Ok(vec![Event::ApiKeyRevoked {
        owner: found.owner.clone(),
        key,
        reason,
        at: now,
    }])
}

pub(super) fn revoke_external_key(
    state: &State,
    key: ExternalKeyId,
    reason: Reason,
    now: Timestamp,
) -> Result<Vec<Event>, DomainError> {
    let found = state
        .external_key(&key)
        .filter(|k| k.status != KeyStatus::Deleted)
        .ok_or_else(|| not_found("external key", &key))?;
    Ok(vec![Event::ExternalKeyRevoked {
        owner: found.owner.clone(),
        provider: found.provider(),
        key,
        reason,
        at: now,
    }])
}

/// The user is deactivated and every key of theirs that is not deleted yet (active or expired)
/// is revoked with the same reason, in one decision: one append. Refused for oneself and for
/// the last active administrator. Deactivating a deactivated user changes nothing.
pub(super) fn deactivate_user(
    state: &State,
    reads: &mut Reads,
    admin: &UserId,
    user: UserId,
    reason: Reason,
    now: Timestamp,
) -> Result<Vec<Event>, DomainError> {
    let holder = state.user(&user).ok_or_else(|| not_found("user", &user))?;
    if holder.deactivated.is_some() {
        return Ok(Vec::new());
    }
    if &user == admin {
        return Err(ValidationError::new(
            "user",
            "you cannot deactivate yourself: ask another administrator",
        )
        .into());
    }
    if holder.roles.iter().any(|r| r.as_str() == ADMIN_ROLE) {
        let admins: Vec<&UserId> = state
            .users()
            .filter(|u| u.deactivated.is_none() && u.roles.iter().any(|r| r.as_str() == ADMIN_ROLE))
            .map(|u| &u.id)
            .collect();
        for other in &admins {
            reads.stream(user_stream(other));
        }
        if admins.len() <= 1 {
            return Err(DomainError::LastAdmin {
                user: user.to_string(),
            });
        }
    }
    let mut events = vec![Event::UserDeactivated {
        user: user.clone(),
        reason: reason.clone(),
        at: now,
    }];
    events.extend(revocations(state, &user, &reason, now));
    Ok(events)
}

/// The account works again with its roles; revoked keys stay revoked (a new key is the way
/// back, as after any revocation). A key created in the instant of the deactivation (decided
/// against the state before it) is revoked now, so that none comes back.
pub(super) fn reactivate_user(
    state: &State,
    user: UserId,
    now: Timestamp,
) -> Result<Vec<Event>, DomainError> {
    let holder = state.user(&user).ok_or_else(|| not_found("user", &user))?;
    let Some(deactivation) = &holder.deactivated else {
        return Ok(Vec::new());
    };
    let mut events = vec![Event::UserReactivated {
        user: user.clone(),
        at: now,
    }];
    events.extend(revocations(state, &user, &deactivation.reason, now));
    Ok(events)
}

/// The revocation of every key of `user` that is not deleted yet: internal keys in creation
/// order, then external keys by stream (a deterministic order for replays and tests).
fn revocations(state: &State, user: &UserId, reason: &Reason, now: Timestamp) -> Vec<Event> {
    let mut events: Vec<Event> = state
        .api_keys_owned_by(user)
        .filter(|k| k.status != KeyStatus::Deleted)
        .map(|k| Event::ApiKeyRevoked {
            key: k.id.clone(),
            owner: user.clone(),
            reason: reason.clone(),
            at: now,
        })
        .collect();
    let mut external: Vec<Event> = state
        .external_keys()
        .filter(|k| &k.owner == user && k.status != KeyStatus::Deleted)
        .map(|k| Event::ExternalKeyRevoked {
            key: k.id.clone(),
            owner: user.clone(),
            provider: k.provider(),
            reason: reason.clone(),
            at: now,
        })
        .collect();
    external.sort_by_key(Event::stream_id);
    events.extend(external);
    events
}
