//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, never on in the service):
//! the vault's private decoders of outside bytes. Each calls the real decoder; nothing here
//! decodes on its own.

use keyledger_crypto::Keyring;
use keyledger_domain::State;

use crate::AuthFailure;
use crate::snapshot::{BackupManifest, decode_snapshot_body, parse_snapshot_file};

/// A session token's claims, as `Vault::authenticate` reads them: the key id and the expiry in
/// milliseconds, if the token is well formed and its MAC holds under `keyring`.
pub fn session_claims(keyring: &Keyring, presented: &str) -> Result<(String, i64), AuthFailure> {
    crate::auth::session_claims(keyring, presented)
        .map(|(key, expires_at)| (key.as_str().to_owned(), expires_at.as_millis()))
}

/// A snapshot file as start-up reads it, minus the signature and log checks (which need the
/// vault's key and log): the header, the payload digest, then the payload's state.
pub fn decode_snapshot(bytes: &[u8]) -> Result<(u64, State), String> {
    let file = parse_snapshot_file(bytes)?;
    let body = decode_snapshot_body(file.payload)?;
    Ok((file.seq, body.state))
}

/// The bytes of a backup's `backup.json`, as restore reads them.
pub fn parse_backup_manifest(text: &[u8]) -> Result<BackupManifest, String> {
    crate::snapshot::parse_backup_manifest(text)
}
