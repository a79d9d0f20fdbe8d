//! Authentication: internal keys and the short-lived session tokens derived from them.

use std::net::IpAddr;

use base64::Engine;
use keyledger_crypto::{Keyring, SecretString, check_api_key_format};
use keyledger_domain::{
    ApiKey, FromTrusted, KeyId, KeyScope, KeyStatus, Permission, PermissionSet, SecretHash,
    SecretKind, Timestamp, User, UserId,
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
    /// Which of the key's secrets authenticated the call (for a session: the one it came from).
    /// A session is bound to it and dies when that secret stops working.
    pub secret: SecretKind,
    /// The key's slot in the projection ([`keyledger_domain::State::api_key_at`]): uses are
    /// counted by it.
    pub(crate) slot: usize,
    /// The key's scopes, if it is scoped; `permissions` is already their intersection with the
    /// owner's permissions.
    pub scopes: Option<PermissionSet>,
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
    #[error("invalid session token (forged, damaged, or its key was rolled since); log in again")]
    InvalidSession,
    #[error("the key's owner no longer exists")]
    UnknownOwner,
    /// A honeytoken was presented. Said exactly as [`AuthFailure::UnknownKey`] (message and
    /// reason), so the caller learns nothing; the API records the use (`HoneytokenUsed`).
    #[error("unknown key")]
    Honeytoken { key: KeyId },
    #[error("the key's owner is deactivated")]
    OwnerDeactivated,
    #[error("this key is not allowed from your network address")]
    NetworkNotAllowed,
}

impl AuthFailure {
    /// A stable, short reason for metrics labels and `{valid: false, reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::Malformed(_) => "malformed",
            AuthFailure::UnknownKey | AuthFailure::Honeytoken { .. } => "unknown_key",
            AuthFailure::Expired => "expired",
            AuthFailure::Deleted => "deleted",
            AuthFailure::RolledOver => "rolled_over",
            AuthFailure::SessionExpired => "session_expired",
            AuthFailure::InvalidSession => "invalid_session",
            AuthFailure::UnknownOwner => "unknown_owner",
            AuthFailure::OwnerDeactivated => "owner_deactivated",
            AuthFailure::NetworkNotAllowed => "network_not_allowed",
        }
    }
}

/// A session token: `kls_` + base64url(key id, expiry) + `.` + base64url(HMAC tag). The tag
/// also covers the peppered hash of the key secret the session was minted from (never in the
/// token itself), so a session stops working when that secret does: at a roll with no grace,
/// or at the end of the grace when it came from the previous secret.
#[derive(Debug, Clone)]
pub struct SessionToken {
    pub token: SecretString,
    pub expires_at: Timestamp,
}

pub const SESSION_PREFIX: &str = "kls_";

impl Vault {
    /// Authenticates an internal key or a session token, and notes the key's use. The key's
    /// networks are not judged (no client address is known): the API uses
    /// [`Vault::authenticate_from`].
    pub fn authenticate(&self, presented: &str) -> Result<Principal, AuthFailure> {
        self.authenticate_with(presented, None)
    }

    /// [`Vault::authenticate`] for a request from `client`: a key limited to some networks
    /// works only from them.
    pub fn authenticate_from(
        &self,
        presented: &str,
        client: IpAddr,
    ) -> Result<Principal, AuthFailure> {
        self.authenticate_with(presented, Some(client))
    }

    fn authenticate_with(
        &self,
        presented: &str,
        client: Option<IpAddr>,
    ) -> Result<Principal, AuthFailure> {
        let now = self.now();
        let principal = if presented.starts_with(SESSION_PREFIX) {
            self.authenticate_session(presented, now, client)?
        } else {
            self.read(|state| check_api_key_from(state, self.keyring(), presented, now, client))?
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
        self.verify_key_from(presented, None)
    }

    /// [`Vault::verify_key`] for a key its holder presented from `client` (the verifying
    /// service's own client, which only that service knows): a key limited to some networks
    /// is refused from elsewhere.
    pub fn verify_key_from(
        &self,
        presented: &str,
        client: Option<IpAddr>,
    ) -> Result<Principal, AuthFailure> {
        let now = self.now();
        let principal =
            self.read(|state| check_api_key_from(state, self.keyring(), presented, now, client))?;
        self.note_use(principal.slot, now);
        Ok(principal)
    }

    /// Exchanges an authenticated key for a short-lived session token that dies with the key,
    /// and with the secret it was presented with.
    pub fn issue_session(&self, principal: &Principal) -> SessionToken {
        let ttl = self.inner.config.session_ttl.as_millis() as i64;
        let mut expires_at = self.now().plus_millis(ttl);
        if let Some(key_expiry) = principal.expires_at {
            expires_at = expires_at.min(key_expiry);
        }
        let claims = format!("{}|{}", principal.key, expires_at.as_millis());
        let binding = self.read(|state| {
            let key = state.api_key_at(principal.slot)?;
            match principal.secret {
                SecretKind::Current => Some(key.secret_hash),
                SecretKind::Previous => {
                    let previous = key.previous.as_ref()?;
                    // Never outlives the grace of the secret it came from.
                    expires_at = expires_at.min(previous.valid_until);
                    Some(previous.secret_hash)
                }
            }
        });
        // A key rolled between authentication and here binds to nothing that can verify.
        let binding = binding.unwrap_or(SecretHash([0; 32]));
        let tag = self
            .keyring()
            .sign_session(&session_message(claims.as_bytes(), &binding));
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
        client: Option<IpAddr>,
    ) -> Result<Principal, AuthFailure> {
        let SessionClaims {
            key,
            expires_at,
            claims,
            tag,
        } = session_claims(presented)?;
        self.read(|state| {
            let slot = state
                .api_key_slot(&key)
                .ok_or(AuthFailure::InvalidSession)?;
            let api_key = state.api_key_at(slot).ok_or(AuthFailure::InvalidSession)?;
            // The tag names the secret the session came from: the current one, or the previous
            // one (while its grace lasts). Only a genuine tag gets past this point.
            let signed_by = |hash: &SecretHash| {
                self.keyring()
                    .verify_session(&session_message(&claims, hash), &tag)
            };
            let secret = if signed_by(&api_key.secret_hash) {
                SecretKind::Current
            } else {
                match &api_key.previous {
                    Some(previous) if signed_by(&previous.secret_hash) => {
                        if previous.valid_until <= now {
                            return Err(AuthFailure::RolledOver);
                        }
                        SecretKind::Previous
                    }
                    _ => return Err(AuthFailure::InvalidSession),
                }
            };
            if expires_at <= now {
                return Err(AuthFailure::SessionExpired);
            }
            match api_key.status_at(now) {
                KeyStatus::Active => {}
                KeyStatus::Expired => return Err(AuthFailure::Expired),
                KeyStatus::Deleted => return Err(AuthFailure::Deleted),
            }
            let (owner, permissions) = admitted(state, api_key, client)?;
            Ok(Principal {
                user: owner.id.clone(),
                key,
                permissions,
                expires_at: Some(expires_at),
                via_session: true,
                secret,
                slot,
                scopes: api_key.scopes,
            })
        })
    }
}

/// A session token taken apart, before its tag is checked (that needs the key's secret hash:
/// see [`session_message`]). Every malformed token is `InvalidSession`.
pub(crate) struct SessionClaims {
    pub(crate) key: KeyId,
    pub(crate) expires_at: Timestamp,
    /// The signed bytes, as they were presented.
    pub(crate) claims: Vec<u8>,
    pub(crate) tag: Vec<u8>,
}

pub(crate) fn session_claims(presented: &str) -> Result<SessionClaims, AuthFailure> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let body = presented
        .strip_prefix(SESSION_PREFIX)
        .ok_or(AuthFailure::InvalidSession)?;
    let (claims, tag) = body.split_once('.').ok_or(AuthFailure::InvalidSession)?;
    let claims = b64
        .decode(claims)
        .map_err(|_| AuthFailure::InvalidSession)?;
    let tag = b64.decode(tag).map_err(|_| AuthFailure::InvalidSession)?;
    let text = std::str::from_utf8(&claims).map_err(|_| AuthFailure::InvalidSession)?;
    let (key, expires) = text.split_once('|').ok_or(AuthFailure::InvalidSession)?;
    let expires_at =
        Timestamp::from_millis(expires.parse().map_err(|_| AuthFailure::InvalidSession)?);
    let key = KeyId::from_trusted(key.to_owned());
    Ok(SessionClaims {
        key,
        expires_at,
        claims,
        tag,
    })
}

/// Checks a presented internal key against a projection: format and checksum offline, then the
/// peppered hash, status at `now`, the rolled-over grace period, the owner (not deactivated) and
/// the permissions the key may use now (its scopes ∩ its owner's permissions). The vault and
/// read replicas both verify keys with this. The key's networks are not judged (no client
/// address is known): the answer carries them, for the verifying service to judge.
pub fn check_api_key(
    state: &keyledger_domain::State,
    keyring: &Keyring,
    presented: &str,
    now: Timestamp,
) -> Result<Principal, AuthFailure> {
    check_api_key_from(state, keyring, presented, now, None)
}

/// [`check_api_key`], and, with a `client` address, the key's networks.
pub fn check_api_key_from(
    state: &keyledger_domain::State,
    keyring: &Keyring,
    presented: &str,
    now: Timestamp,
    client: Option<IpAddr>,
) -> Result<Principal, AuthFailure> {
    check_api_key_format(presented).map_err(|err| AuthFailure::Malformed(err.to_string()))?;
    let hash = keyring.hash_api_key(presented);
    // The lookup compares HMAC outputs, never the key itself, and says which secret matched.
    let (slot, secret) = state
        .api_key_slot_for_secret(&hash)
        .ok_or(AuthFailure::UnknownKey)?;
    let key = state.api_key_at(slot).ok_or(AuthFailure::UnknownKey)?;
    if state.is_honeytoken_slot(slot) {
        return Err(AuthFailure::Honeytoken {
            key: key.id.clone(),
        });
    }
    match key.status_at(now) {
        KeyStatus::Active => {}
        KeyStatus::Expired => return Err(AuthFailure::Expired),
        KeyStatus::Deleted => return Err(AuthFailure::Deleted),
    }
    if secret == SecretKind::Previous && key.previous.as_ref().is_none_or(|p| p.valid_until <= now)
    {
        return Err(AuthFailure::RolledOver);
    }
    let (owner, permissions) = admitted(state, key, client)?;
    Ok(Principal {
        user: owner.id.clone(),
        key: key.id.clone(),
        permissions,
        expires_at: key.expires_at,
        via_session: false,
        secret,
        slot,
        scopes: key.scopes,
    })
}

/// The key's owner, if not deactivated, and what the key may do now: its scopes ∩ the owner's
/// permissions. With a `client` address, a key limited to some networks must be used from one
/// of them. No allocation: a bitmask and a scan of the key's few networks.
fn admitted<'s>(
    state: &'s keyledger_domain::State,
    key: &ApiKey,
    client: Option<IpAddr>,
) -> Result<(&'s User, PermissionSet), AuthFailure> {
    let owner = state.user(&key.owner).ok_or(AuthFailure::UnknownOwner)?;
    if owner.deactivated.is_some() {
        return Err(AuthFailure::OwnerDeactivated);
    }
    if let Some(client) = client
        && !KeyScope::admits(&key.networks, client)
    {
        return Err(AuthFailure::NetworkNotAllowed);
    }
    let held = state.permissions_of_user(owner);
    Ok((
        owner,
        key.scopes.map_or(held, |scopes| scopes.intersection(held)),
    ))
}

/// What a session tag signs: the claims, then the peppered hash of the key secret the session
/// came from (a fixed 32 bytes after a separator, so no two inputs share an encoding).
fn session_message(claims: &[u8], secret: &SecretHash) -> Vec<u8> {
    let mut message = Vec::with_capacity(claims.len() + 1 + secret.0.len());
    message.extend_from_slice(claims);
    message.push(0);
    message.extend_from_slice(&secret.0);
    message
}
