//! Authentication: internal keys and the short-lived session tokens derived from them.

use base64::Engine;
use keyledger_crypto::{Keyring, SecretString, check_api_key_format};
use keyledger_domain::{
    FromTrusted, KeyId, KeyStatus, Permission, PermissionSet, SecretKind, Timestamp, UserId,
};

use crate::Vault;

/// Who is calling, with the permissions their roles grant right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: UserId,
    pub key: KeyId,
    pub permissions: PermissionSet,
    pub expires_at: Option<Timestamp>,
    pub via_session: bool,
    /// The key's slot in the projection ([`keyledger_domain::State::api_key_at`]): uses are
    /// counted by it.
    pub(crate) slot: usize,
}

impl Principal {
    pub fn has(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }

    pub fn actor(&self) -> keyledger_domain::Actor {
        keyledger_domain::Actor::User {
            user: self.user.clone(),
            key: Some(self.key.clone()),
        }
    }
}

/// Why a presented credential was not accepted. Messages never echo the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("{0}")]
    Malformed(String),
    #[error("unknown key")]
    UnknownKey,
    #[error("key expired")]
    Expired,
    #[error("key deleted")]
    Deleted,
    #[error("the key's previous secret stopped working after it was rolled; use the new secret")]
    RolledOver,
    #[error("session expired; log in again")]
    SessionExpired,
    #[error("invalid session token")]
    InvalidSession,
    #[error("the key's owner no longer exists")]
    UnknownOwner,
}

impl AuthFailure {
    /// A stable, short reason for metrics labels and `{valid: false, reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::Malformed(_) => "malformed",
            AuthFailure::UnknownKey => "unknown_key",
            AuthFailure::Expired => "expired",
            AuthFailure::Deleted => "deleted",
            AuthFailure::RolledOver => "rolled_over",
            AuthFailure::SessionExpired => "session_expired",
            AuthFailure::InvalidSession => "invalid_session",
            AuthFailure::UnknownOwner => "unknown_owner",
        }
    }
}

/// A session token: `kls_` + base64url(key id, expiry) + `.` + base64url(HMAC tag).
#[derive(Debug, Clone)]
pub struct SessionToken {
    pub token: SecretString,
    pub expires_at: Timestamp,
}

pub const SESSION_PREFIX: &str = "kls_";

impl Vault {
    /// Authenticates an internal key or a session token, and notes the key's use.
    pub fn authenticate(&self, presented: &str) -> Result<Principal, AuthFailure> {
        let now = self.now();
        let principal = if presented.starts_with(SESSION_PREFIX) {
            self.authenticate_session(presented, now)?
        } else {
            self.check_key(presented, now)?
        };
        self.note_use(principal.slot, now);
        Ok(principal)
    }

    /// Checks a key without recording a use (for `POST /v1/keys/verify` by other services, which
    /// do record one: see `verify_key`).
    pub fn authenticate_key(&self, presented: &str) -> Result<Principal, AuthFailure> {
        self.check_key(presented, self.now())
    }

    fn check_key(&self, presented: &str, now: Timestamp) -> Result<Principal, AuthFailure> {
        self.read(|state| check_api_key(state, self.keyring(), presented, now))
    }

    /// Verifies a key for another service: the same checks, and the use is recorded.
    pub fn verify_key(&self, presented: &str) -> Result<Principal, AuthFailure> {
        let now = self.now();
        let principal = self.check_key(presented, now)?;
        self.note_use(principal.slot, now);
        Ok(principal)
    }

    /// Exchanges an authenticated key for a short-lived session token that dies with the key.
    pub fn issue_session(&self, principal: &Principal) -> SessionToken {
        let ttl = self.inner.config.session_ttl.as_millis() as i64;
        let mut expires_at = self.now().plus_millis(ttl);
        if let Some(key_expiry) = principal.expires_at {
            expires_at = expires_at.min(key_expiry);
        }
        let claims = format!("{}|{}", principal.key, expires_at.as_millis());
        let tag = self.keyring().sign_session(claims.as_bytes());
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let token = format!("{SESSION_PREFIX}{}.{}", b64.encode(claims), b64.encode(tag));
        SessionToken {
            token: SecretString::new(token),
            expires_at,
        }
    }

    fn authenticate_session(
        &self,
        presented: &str,
        now: Timestamp,
    ) -> Result<Principal, AuthFailure> {
        let (key, expires_at) = session_claims(self.keyring(), presented)?;
        if expires_at <= now {
            return Err(AuthFailure::SessionExpired);
        }
        self.read(|state| {
            let slot = state.api_key_slot(&key).ok_or(AuthFailure::UnknownKey)?;
            let api_key = state.api_key_at(slot).ok_or(AuthFailure::UnknownKey)?;
            match api_key.status_at(now) {
                KeyStatus::Active => {}
                KeyStatus::Expired => return Err(AuthFailure::Expired),
                KeyStatus::Deleted => return Err(AuthFailure::Deleted),
            }
            let owner = state
                .user(&api_key.owner)
                .ok_or(AuthFailure::UnknownOwner)?;
            Ok(Principal {
                user: owner.id.clone(),
                key,
                permissions: state.permissions_of(&owner.id),
                expires_at: Some(expires_at),
                via_session: true,
                slot,
            })
        })
    }
}

/// The claims of a session token whose MAC holds: the key it was minted from and its expiry.
/// Every malformed or forged token is `InvalidSession`.
pub(crate) fn session_claims(
    keyring: &Keyring,
    presented: &str,
) -> Result<(KeyId, Timestamp), AuthFailure> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let body = presented
        .strip_prefix(SESSION_PREFIX)
        .ok_or(AuthFailure::InvalidSession)?;
    let (claims, tag) = body.split_once('.').ok_or(AuthFailure::InvalidSession)?;
    let claims = b64
        .decode(claims)
        .map_err(|_| AuthFailure::InvalidSession)?;
    let tag = b64.decode(tag).map_err(|_| AuthFailure::InvalidSession)?;
    if !keyring.verify_session(&claims, &tag) {
        return Err(AuthFailure::InvalidSession);
    }
    let claims = String::from_utf8(claims).map_err(|_| AuthFailure::InvalidSession)?;
    let (key, expires) = claims.split_once('|').ok_or(AuthFailure::InvalidSession)?;
    let expires_at =
        Timestamp::from_millis(expires.parse().map_err(|_| AuthFailure::InvalidSession)?);
    Ok((KeyId::from_trusted(key.to_owned()), expires_at))
}

/// Checks a presented internal key against a projection: format and checksum offline, then the
/// peppered hash, status at `now`, the rolled-over grace period and the owner's permissions now.
/// The vault and read replicas both verify keys with this.
pub fn check_api_key(
    state: &keyledger_domain::State,
    keyring: &Keyring,
    presented: &str,
    now: Timestamp,
) -> Result<Principal, AuthFailure> {
    check_api_key_format(presented).map_err(|err| AuthFailure::Malformed(err.to_string()))?;
    let hash = keyring.hash_api_key(presented);
    // The lookup compares HMAC outputs, never the key itself, and says which secret matched.
    let (slot, secret) = state
        .api_key_slot_for_secret(&hash)
        .ok_or(AuthFailure::UnknownKey)?;
    let key = state.api_key_at(slot).ok_or(AuthFailure::UnknownKey)?;
    match key.status_at(now) {
        KeyStatus::Active => {}
        KeyStatus::Expired => return Err(AuthFailure::Expired),
        KeyStatus::Deleted => return Err(AuthFailure::Deleted),
    }
    if secret == SecretKind::Previous && key.previous.as_ref().is_none_or(|p| p.valid_until <= now)
    {
        return Err(AuthFailure::RolledOver);
    }
    let owner = state.user(&key.owner).ok_or(AuthFailure::UnknownOwner)?;
    Ok(Principal {
        user: owner.id.clone(),
        key: key.id.clone(),
        permissions: state.permissions_of_user(owner),
        expires_at: key.expires_at,
        via_session: false,
        slot,
    })
}
