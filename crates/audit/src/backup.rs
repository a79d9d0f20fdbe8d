//! Backups and restores of a data directory. The copy itself is made by the log
//! (`EventLog::backup_to`, consistent while appends go on); the master key is never part of it.

use std::fs;
use std::path::Path;

use keyledger_log::private_files;
use keyledger_vault::{BackupManifest, backup_log, read_backup_manifest};

use crate::AuditError;
use crate::export::hash_hex;
use crate::source::open_log_offline;
use crate::verify::{VerifyOptions, VerifyOutcome, verify_log};

/// What a restore did and what verifying the restored log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreOutcome {
    pub manifest: BackupManifest,
    pub verify: VerifyOutcome,
}

/// Backs up a data directory no server holds open (no master key needed).
pub fn backup_offline(data_dir: &Path, backup_dir: &Path) -> Result<BackupManifest, AuditError> {
    let log = open_log_offline(data_dir)?;
    let manifest = backup_log(&log, backup_dir);
    log.close();
    Ok(manifest?)
}

/// Copies a backup into `data_dir` (which must not have a log yet), checks that the restored
/// head is the one the manifest records, and verifies the chain and the checkpoints.
pub fn restore(
    backup_dir: &Path,
    data_dir: &Path,
    options: VerifyOptions,
) -> Result<RestoreOutcome, AuditError> {
    let manifest = read_backup_manifest(backup_dir)?;
    let source = backup_dir.join("log");
    if !source.join("db").is_file() {
        return Err(AuditError::NotADataDir(backup_dir.to_path_buf()));
    }
    let target = data_dir.join("log");
    if fs::read_dir(&target).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(AuditError::Usage(format!(
            "{} already holds a log; restore into a new, empty data directory",
            data_dir.display()
        )));
    }
    let staging = data_dir.join("log.restoring");
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|err| AuditError::io(&staging, err))?;
    }
    copy_tree(&source, &staging)?;
    // A backup copied by hand may have wider modes; the restored log is private.
    private_files::restrict_tree(&staging).map_err(|err| AuditError::io(&staging, err))?;
    if target.exists() {
        fs::remove_dir(&target).map_err(|err| AuditError::io(&target, err))?;
    }
    fs::rename(&staging, &target).map_err(|err| AuditError::io(&target, err))?;
    fs::File::open(data_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|err| AuditError::io(data_dir, err))?;

    let log = open_log_offline(data_dir)?;
    let (head, head_hash) = log.head();
    let verify = verify_log(&log.view(), options);
    log.close();
    let verify = verify?;
    if head != manifest.head || hash_hex(&head_hash) != manifest.head_hash {
        return Err(AuditError::Usage(format!(
            "the restored log ends at seq {head} ({}), but the manifest records seq {} ({}): the backup is incomplete",
            hash_hex(&head_hash),
            manifest.head,
            manifest.head_hash
        )));
    }
    Ok(RestoreOutcome { manifest, verify })
}

/// Copies a directory tree, fsyncing every file and directory.
fn copy_tree(from: &Path, to: &Path) -> Result<(), AuditError> {
    private_files::create_dir_all(to).map_err(|err| AuditError::io(to, err))?;
    for entry in fs::read_dir(from).map_err(|err| AuditError::io(from, err))? {
        let entry = entry.map_err(|err| AuditError::io(from, err))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if source.is_dir() {
            copy_tree(&source, &target)?;
        } else {
            fs::copy(&source, &target).map_err(|err| AuditError::io(&source, err))?;
            fs::File::open(&target)
                .and_then(|file| file.sync_all())
                .map_err(|err| AuditError::io(&target, err))?;
        }
    }
    fs::File::open(to)
        .and_then(|dir| dir.sync_all())
        .map_err(|err| AuditError::io(to, err))
}
