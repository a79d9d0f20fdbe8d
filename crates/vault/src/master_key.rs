//! The master key file: generated on first start for the embedded default, passed in for
//! production (`KEYLEDGER_MASTER_KEY` or a file path).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use keyledger_crypto::MasterKey;
use ring::rand::SystemRandom;

use crate::VaultError;

/// Where the master key came from, so the caller can warn about generated keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterKeyOrigin {
    Generated,
    File,
}

/// Reads the master key at `path`, or generates one there (mode 0600) when the file is missing.
pub fn load_or_create_master_key(path: &Path) -> Result<(MasterKey, MasterKeyOrigin), VaultError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            check_permissions(path)?;
            let key = MasterKey::parse(&text).map_err(|_| {
                VaultError::Config(format!(
                    "{} does not hold a master key (expected 32 bytes as base64 or hex)",
                    path.display()
                ))
            })?;
            Ok((key, MasterKeyOrigin::File))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let key = MasterKey::generate(&SystemRandom::new())?;
            write_master_key(path, &key)?;
            Ok((key, MasterKeyOrigin::Generated))
        }
        Err(err) => Err(VaultError::io(
            format!("cannot read master key {}", path.display()),
            err,
        )),
    }
}

/// Reads an existing master key file; never creates one.
pub fn read_master_key(path: &Path) -> Result<MasterKey, VaultError> {
    let text = fs::read_to_string(path)
        .map_err(|err| VaultError::io(format!("cannot read master key {}", path.display()), err))?;
    MasterKey::parse(&text)
        .map_err(|_| VaultError::Config(format!("{} does not hold a master key", path.display())))
}

/// Writes a master key file with mode 0600, durably, replacing any file atomically.
pub fn write_master_key(path: &Path, key: &MasterKey) -> Result<(), VaultError> {
    let io = |err: std::io::Error| {
        VaultError::io(format!("cannot write master key {}", path.display()), err)
    };
    if let Some(parent) = path.parent() {
        keyledger_log::private_files::create_dir_all(parent).map_err(io)?;
    }
    let temporary = path.with_extension("key.tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io)?;
    file.write_all(key.to_text().expose()).map_err(io)?;
    file.write_all(b"\n").map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&temporary, path).map_err(io)?;
    if let Some(parent) = path.parent() {
        fs::File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

fn check_permissions(path: &Path) -> Result<(), VaultError> {
    let mode = fs::metadata(path)
        .map_err(|err| {
            VaultError::io(
                format!(
                    "cannot read the permissions of master key {}",
                    path.display()
                ),
                err,
            )
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(VaultError::Config(format!(
            "{} is readable by other users (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}
