//! Decisions about expiry warnings, leaked keys and honeytokens (decision 0027).

use super::{Reads, not_found, refuse_taken_name, require, require_system};
use crate::command::Action;
use crate::error::DomainError;
use crate::event::{Actor, Event, external_key_stream};
use crate::key_status::KeyStatus;
use crate::permissions::Permission;
use crate::state::State;
use crate::time::{MILLIS_PER_DAY, Timestamp};
use crate::values::ValidationError;

/// The longest `url`, `source`, address, user agent or route recorded, in characters.
pub const MAX_RECORDED_TEXT: usize = 2048;

pub(super) fn judge(
    state: &State,
    actor: &Actor,
    action: Action,
    now: Timestamp,
    reads: &mut Reads,
) -> Result<Vec<Event>, DomainError> {
    match action {
        Action::WarnExpiring { horizons } => {
            require_system(actor)?;
            Ok(expiry_warnings(state, &horizons, now, reads))
        }
        Action::RecordLeak { key, url, source } => {
            require_system(actor)?;
            check_length("url", &url)?;
            check_length("source", &source)?;
            // A key that no longer works has nothing left to revoke.
            let Some(found) = state
                .api_key(&key)
                .filter(|k| k.status_at(now) == KeyStatus::Active)
            else {
                return Ok(Vec::new());
            };
            Ok(vec![Event::ApiKeyLeaked {
                key,
                owner: found.owner.clone(),
                url,
                source,
                at: now,
            }])
        }
        Action::CreateHoneytoken(key) => {
            let owner = require(state, reads, actor, Permission::ManageUserApiKeys)?;
            refuse_taken_name(state, &owner, &key.name, now)?;
            Ok(vec![Event::HoneytokenCreated {
                key: key.key,
                owner,
                name: key.name,
                hint: key.hint,
                secret_hash: key.secret_hash,
                created_at: now,
                expires_at: key.duration.expires_at(now),
            }])
        }
        Action::RecordHoneytokenUse {
            key,
            source_address,
            user_agent,
            route,
        } => {
            require_system(actor)?;
            for (field, text) in [
                ("source_address", &source_address),
                ("user_agent", &user_agent),
                ("route", &route),
            ] {
                check_length(field, text)?;
            }
            let owner = state
                .api_key(&key)
                .filter(|_| state.is_honeytoken(&key))
                .map(|k| k.owner.clone())
                .ok_or_else(|| not_found("honeytoken", &key))?;
            Ok(vec![Event::HoneytokenUsed {
                key,
                owner,
                source_address,
                user_agent,
                route,
                at: now,
            }])
        }
        _ => Ok(Vec::new()),
    }
}

/// One warning per active key whose expiry is within a horizon it was not yet warned at (nor
/// at a nearer one): a key whose life starts inside several horizons is warned once, at the
/// nearest. Honeytokens are never announced.
fn expiry_warnings(
    state: &State,
    horizons: &[u32],
    now: Timestamp,
    reads: &mut Reads,
) -> Vec<Event> {
    let mut horizons: Vec<u32> = horizons.iter().copied().filter(|h| *h > 0).collect();
    horizons.sort_unstable();
    horizons.dedup();
    // The nearest horizon the expiry is within, if it was not announced at it or nearer yet.
    let due = |expires_at: Timestamp, warned: Option<u32>| {
        let left = expires_at.as_millis() - now.as_millis();
        let nearest = horizons
            .iter()
            .copied()
            .find(|h| left <= i64::from(*h) * MILLIS_PER_DAY)?;
        warned.is_none_or(|w| nearest < w).then_some(nearest)
    };
    let mut events = Vec::new();
    for key in state.api_keys() {
        let Some(expires_at) = key.expires_at else {
            continue;
        };
        if key.status_at(now) != KeyStatus::Active || state.is_honeytoken(&key.id) {
            continue;
        }
        if let Some(horizon_days) = due(expires_at, state.api_key_warned_at(&key.id)) {
            events.push(Event::ApiKeyExpiring {
                key: key.id.clone(),
                owner: key.owner.clone(),
                expires_at,
                horizon_days,
                at: now,
            });
        }
    }
    for key in state.external_keys() {
        let Some(expires_at) = key.expires_at else {
            continue;
        };
        if key.status_at(now) != KeyStatus::Active {
            continue;
        }
        if let Some(horizon_days) = due(expires_at, state.external_key_warned_at(&key.id)) {
            // The key's life (deleted, expired) is decided in its owner's provider stream.
            reads.stream(external_key_stream(&key.owner, key.provider()));
            events.push(Event::ExternalKeyExpiring {
                key: key.id.clone(),
                owner: key.owner.clone(),
                provider: key.provider(),
                expires_at,
                horizon_days,
                at: now,
            });
        }
    }
    // Deterministic order, so replays and tests see the same log.
    events.sort_by_key(Event::stream_id);
    events
}

fn check_length(field: &'static str, text: &str) -> Result<(), DomainError> {
    if text.chars().count() > MAX_RECORDED_TEXT {
        return Err(
            ValidationError::new(field, format!("at most {MAX_RECORDED_TEXT} characters")).into(),
        );
    }
    Ok(())
}
