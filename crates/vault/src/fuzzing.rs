//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, never on in the service):
//! the vault's private decoders of outside bytes. Each calls the real decoder; nothing here
//! decodes on its own.

use keyledger_domain::State;

use crate::AuthFailure;
use crate::snapshot::{BackupManifest, decode_snapshot_body, parse_snapshot_file};

/// A session token's claims, as `Vault::authenticate` takes them apart before checking the tag
/// (which needs the key's secret hash): the key id and the expiry in milliseconds.
pub fn session_claims(presented: &str) -> Result<(String, i64), AuthFailure> {
    crate::auth::session_claims(presented).map(|claims| {
        (
            claims.key.as_str().to_owned(),
            claims.expires_at.as_millis(),
        )
    })
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
