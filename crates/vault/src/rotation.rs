//! The vault's own secrets sealed under the master key — the pepper of internal-key hashes and
//! the checkpoint signing key — and master-key rotation.
//!
//! Each such secret is sealed exactly like a credential: a fresh data key seals it (nonce and
//! ciphertext in `meta` under `sealed/<id>`, never rewritten), and that data key, wrapped by
//! the master key, sits in the `data_keys` tree under `<id>` (`vault/…`). One atomic
//! `data_keys().replace_all` therefore re-wraps credentials, pepper and signing key together.
//!
//! The pepper is random and kept, not derived from the master key, so rotating the master key
//! leaves every stored internal-key hash valid (docs/decisions/0005-audit-and-key-rotation.md).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keyledger_crypto::{DATA_KEY_WRAP_LEN, Keyring, MasterKey, SecretBytes};
use keyledger_domain::{Action, Actor, Command, SealedSecret};
use keyledger_log::{EventLog, LogConfig};
use ring::rand::SystemRandom;

use crate::{Clock, Vault, VaultConfig, VaultError, read_master_key, write_master_key};

/// Prefix of the `data_keys` ids that hold the vault's own secrets, not credentials.
pub const VAULT_SECRET_PREFIX: &str = "vault/";
/// Where the sealed pepper lives: its wrapped data key in `data_keys` under this id.
pub const PEPPER_ID: &str = "vault/pepper";
pub(crate) const SIGNING_KEY_ID: &str = "vault/checkpoint_signing_key";
const MASTER_KEY_CHECK: &str = "master_key_check";
const NONCE_LEN: usize = 12;

/// Whether a `data_keys` id belongs to the vault's own secrets rather than to a credential.
pub fn is_vault_secret(id: &str) -> bool {
    id.starts_with(VAULT_SECRET_PREFIX)
}

/// What re-wrapping found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RewrapReport {
    /// Credential data keys, all now wrapped by the new master key.
    pub credentials: u64,
    /// The vault's own secrets (pepper, signing key) and the master-key check.
    pub vault_secrets: u64,
    /// Of those, entries that were already wrapped by the new key (a resumed rotation).
    pub already_rewrapped: u64,
}

/// The result of [`rotate_master_key_offline`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationOutcome {
    pub old_fingerprint: String,
    pub new_fingerprint: String,
    /// The master-key generation recorded by `MasterKeyRotated`.
    pub generation: u32,
    pub rewrap: RewrapReport,
    /// An interrupted rotation (a `<file>.new` left behind) was finished instead of a new one.
    pub resumed: bool,
}

/// Rotates the master key of a data directory that no process has open (the server must be
/// stopped: sled's lock refuses a second opener).
///
/// 1. A new key is written to `<master_key_file>.new` (or the one found there is reused: an
///    earlier run was interrupted).
/// 2. Every data key, the pepper, the signing key and the master-key check are re-wrapped
///    (`data_keys().replace_all`, one atomic step, then the check). Entries already wrapped by
///    the new key are kept, so this step can be repeated after a crash.
/// 3. `MasterKeyRotated` is recorded (no key material; idempotent per old/new key pair).
/// 4. `<file>.new` replaces `<file>` atomically. The old key is kept nowhere.
///
/// Between 2 and 4 the vault refuses to open with either key, so an interrupted rotation can
/// never serve from a half-rotated directory; running this again finishes it.
pub fn rotate_master_key_offline(
    config: &VaultConfig,
    master_key_file: &Path,
    clock: Arc<dyn Clock>,
) -> Result<RotationOutcome, VaultError> {
    let old = read_master_key(master_key_file)?;
    let pending = pending_key_path(master_key_file);
    let (new, resumed) = if pending.exists() {
        (read_master_key(&pending)?, true)
    } else {
        let new = MasterKey::generate(&SystemRandom::new())?;
        write_master_key(&pending, &new)?;
        (new, false)
    };
    if new.fingerprint() == old.fingerprint() {
        return Err(VaultError::Config(format!(
            "{} holds the same key as {}; remove it and run the rotation again",
            pending.display(),
            master_key_file.display()
        )));
    }

    let mut log_config = LogConfig::new(config.log_dir());
    log_config.durability = config.durability;
    let log = EventLog::open(log_config, Box::new(|_: &[keyledger_log::Envelope]| {}))?;
    let rewrap = rewrap_sealed_material(&log, &old, &new);
    let still_opening = rewrap
        .as_ref()
        .ok()
        .map(|_| entries_opened_by(&log, &old))
        .transpose();
    log.close();
    let rewrap = rewrap?;
    if let Some(count) = still_opening?.filter(|count| *count > 0) {
        return Err(VaultError::Corrupt(format!(
            "{count} entries still open with the old master key after re-wrapping"
        )));
    }

    let vault = Vault::open(config.clone(), &new, clock)?;
    let command = Command::new(
        Actor::Operator,
        Action::RecordMasterKeyRotation {
            data_keys: rewrap.credentials,
        },
    );
    match vault.execute_blocking(command, Some(rotation_request_id(&old, &new))) {
        Ok(_) | Err(VaultError::DuplicateRequest { .. }) => {}
        Err(err) => return Err(err),
    }
    let generation = vault.read(|state| state.master_key_generation());
    drop(vault);

    std::fs::rename(&pending, master_key_file).map_err(|source| {
        VaultError::RotationNotFinished {
            pending: pending.clone(),
            master_key_file: master_key_file.to_path_buf(),
            source,
        }
    })?;
    if let Some(parent) = master_key_file.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        std::fs::File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(|err| VaultError::io(format!("cannot sync {}", parent.display()), err))?;
    }
    Ok(RotationOutcome {
        old_fingerprint: old.fingerprint(),
        new_fingerprint: new.fingerprint(),
        generation,
        rewrap,
        resumed,
    })
}

/// Where a rotation keeps the new key until it is committed: `<file>.new`.
pub fn pending_key_path(master_key_file: &Path) -> PathBuf {
    let mut name = OsString::from(master_key_file.as_os_str());
    name.push(".new");
    PathBuf::from(name)
}

/// Re-wraps every entry of `data_keys` and the master-key check from `old` to `new`. Entries
/// already wrapped by `new` are kept, so a crashed rotation is finished by running this again.
/// Fails, changing nothing, if an entry opens with neither key.
pub fn rewrap_sealed_material(
    log: &EventLog,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<RewrapReport, VaultError> {
    let (from, to) = (Keyring::new(old)?, Keyring::new(new)?);
    let mut report = RewrapReport {
        credentials: 0,
        vault_secrets: 0,
        already_rewrapped: 0,
    };
    let mut rewrapped = Vec::new();
    for (id, wrapped) in log.data_keys().iter()? {
        let (bytes, moved) = rewrap_one(&id, &wrapped, &from, &to)?;
        if is_vault_secret(&id) {
            report.vault_secrets += 1;
        } else {
            report.credentials += 1;
        }
        if !moved {
            report.already_rewrapped += 1;
        }
        rewrapped.push((id, bytes));
    }
    let check = match log.meta().get(MASTER_KEY_CHECK)? {
        Some(stored) if stored.len() > DATA_KEY_WRAP_LEN => {
            let (wrapped, sealed) = stored.split_at(DATA_KEY_WRAP_LEN);
            let (bytes, moved) = rewrap_one(MASTER_KEY_CHECK, wrapped, &from, &to)?;
            let mut value = bytes;
            value.extend_from_slice(sealed);
            Some((value, moved))
        }
        _ => None,
    };
    // The data keys first, in one atomic step; the check last. In between, the old key passes
    // the check but cannot open the pepper, and the new key fails the check: nobody serves.
    log.data_keys().replace_all(rewrapped)?;
    if let Some((value, moved)) = check {
        log.meta().put(MASTER_KEY_CHECK, value)?;
        report.vault_secrets += 1;
        if !moved {
            report.already_rewrapped += 1;
        }
    }
    Ok(report)
}

/// How many entries (data keys and the master-key check) `master` can still unwrap.
pub fn entries_opened_by(log: &EventLog, master: &MasterKey) -> Result<u64, VaultError> {
    let keyring = Keyring::new(master)?;
    let mut opened = 0;
    for (id, wrapped) in log.data_keys().iter()? {
        if opens(&keyring, &id, &wrapped) {
            opened += 1;
        }
    }
    let check = log.meta().get(MASTER_KEY_CHECK)?;
    if check.is_some_and(|stored| {
        stored.len() > DATA_KEY_WRAP_LEN
            && opens(&keyring, MASTER_KEY_CHECK, &stored[..DATA_KEY_WRAP_LEN])
    }) {
        opened += 1;
    }
    Ok(opened)
}

/// The request id that makes recording one rotation idempotent: the same old and new key give
/// the same id, so a resumed rotation cannot record `MasterKeyRotated` twice.
pub fn rotation_request_id(old: &MasterKey, new: &MasterKey) -> [u8; 16] {
    let text = format!(
        "keyledger/master-key-rotation/v1|{}|{}",
        old.fingerprint(),
        new.fingerprint()
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest.as_ref()[..16]);
    id
}

/// Loads the sealed pepper, or creates a random one for a new data directory, and returns the
/// keyring built with it. `wrapping` is the master key's keyring without a
/// pepper, which seals it.
pub(crate) fn keyring_with_pepper(
    log: &EventLog,
    master: &MasterKey,
    wrapping: &Keyring,
) -> Result<Keyring, VaultError> {
    let pepper = match unseal(log, PEPPER_ID, wrapping)? {
        Some(pepper) => pepper,
        None => {
            // The pepper is sealed before the first event, so a log with events and no pepper was
            // damaged (or written by a pre-release build, whose format is not read).
            if log.head().0 > 0 {
                return Err(VaultError::Corrupt(
                    "the log has events but no sealed pepper for its key hashes; restore the data \
                     directory from a backup"
                        .to_owned(),
                ));
            }
            let pepper = Keyring::generate_pepper(wrapping.rng())?;
            seal_into(log, PEPPER_ID, pepper.expose(), wrapping)?;
            pepper
        }
    };
    Ok(Keyring::with_pepper(master, &pepper)?)
}

/// Seals `secret` under a fresh data key wrapped by `keyring`; durable when it returns.
pub(crate) fn seal_into(
    log: &EventLog,
    id: &str,
    secret: &[u8],
    keyring: &Keyring,
) -> Result<(), VaultError> {
    let (wrapped, sealed) = keyring.seal(id, secret, id.as_bytes())?;
    let mut value = Vec::with_capacity(NONCE_LEN + sealed.ciphertext.len());
    value.extend_from_slice(&sealed.nonce);
    value.extend_from_slice(&sealed.ciphertext);
    // The ciphertext first: a wrapped key without its ciphertext reads as "absent".
    log.meta().put(sealed_key(id), value)?;
    log.data_keys().put(id, &wrapped)?;
    Ok(())
}

/// Opens a secret sealed by [`seal_into`]; `None` when it was never stored (or only half).
pub(crate) fn unseal(
    log: &EventLog,
    id: &str,
    keyring: &Keyring,
) -> Result<Option<SecretBytes>, VaultError> {
    let (Some(wrapped), Some(stored)) = (log.data_keys().get(id)?, log.meta().get(sealed_key(id))?)
    else {
        return Ok(None);
    };
    if stored.len() <= NONCE_LEN {
        return Err(VaultError::Corrupt(format!("the sealed {id} is truncated")));
    }
    let (nonce, ciphertext) = stored.split_at(NONCE_LEN);
    let sealed = SealedSecret {
        nonce: nonce.try_into().unwrap_or_default(),
        ciphertext: ciphertext.to_vec(),
    };
    keyring
        .open(id, &wrapped, &sealed, id.as_bytes())
        .map(Some)
        .map_err(|_| {
            VaultError::Config(format!(
                "the master key (fingerprint {}) opens this data directory's check but not its {id}: \
                 a master-key rotation was interrupted; run `keyledger admin rotate-master-key` again to finish it",
                keyring.fingerprint()
            ))
        })
}

/// The `meta` key of a sealed entry's nonce and ciphertext.
pub fn sealed_key(id: &str) -> String {
    format!("sealed/{id}")
}

/// Re-wraps one entry; `(bytes, true)` if it moved from `from`, `(unchanged, false)` if it was
/// already under `to`.
fn rewrap_one(
    id: &str,
    wrapped: &[u8],
    from: &Keyring,
    to: &Keyring,
) -> Result<(Vec<u8>, bool), VaultError> {
    if let Ok(bytes) = from.rewrap(id, wrapped, to) {
        return Ok((bytes, true));
    }
    if opens(to, id, wrapped) {
        return Ok((wrapped.to_vec(), false));
    }
    Err(VaultError::Corrupt(format!(
        "the data key {id} opens with neither the old nor the new master key; nothing was changed"
    )))
}

fn opens(keyring: &Keyring, id: &str, wrapped: &[u8]) -> bool {
    // Re-wrapping to itself unwraps first: it succeeds exactly when `keyring` opens the entry.
    keyring.rewrap(id, wrapped, keyring).is_ok()
}
