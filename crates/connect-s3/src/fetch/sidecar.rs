//! The resume record kept next to a partial file: `<partial>.parts`.
//!
//! Format (text): a header line `keyledger-s3-parts 1`, an identity line
//! `<size> <part_size> <etag>`, then one line per completed part index. A part index is
//! appended only after `fdatasync` of the partial file returned, so every part the sidecar
//! names is on disk; the sidecar itself is not synced (a lost line only costs a re-fetch),
//! and a torn last line (no newline) is ignored.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::FallocateFlags;

const MAGIC: &str = "keyledger-s3-parts 1";

/// What the partial file holds parts of; a sidecar for anything else is discarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub size: u64,
    pub part_size: u64,
    pub etag: String,
}

pub(crate) fn sidecar_path(partial: &Path) -> PathBuf {
    let mut name = OsString::from(partial.as_os_str());
    name.push(".parts");
    PathBuf::from(name)
}

/// Opens the partial file for a ranged fetch. When the sidecar matches `identity` and the file
/// has the full size, returns the parts already on disk; otherwise starts over: an empty file
/// reserved to the full size, and a fresh sidecar.
pub(crate) fn open_for_resume(
    partial: &Path,
    identity: &Identity,
) -> io::Result<(File, BTreeSet<u64>)> {
    let part_count = identity.size.div_ceil(identity.part_size);
    if let Some(completed) = read_completed(partial, identity, part_count) {
        let file = OpenOptions::new().read(true).write(true).open(partial)?;
        if file.metadata()?.len() == identity.size {
            return Ok((file, completed));
        }
    }
    let file = create_reserved(partial, identity.size)?;
    let mut sidecar = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(sidecar_path(partial))?;
    writeln!(sidecar, "{MAGIC}")?;
    writeln!(
        sidecar,
        "{} {} {}",
        identity.size, identity.part_size, identity.etag
    )?;
    Ok((file, BTreeSet::new()))
}

/// Creates (or truncates) `path` and reserves `size` bytes, so a full disk fails now rather
/// than halfway through.
pub(crate) fn create_reserved(path: &Path, size: u64) -> io::Result<File> {
    // Sample data is private to the service whatever the umask (the mode survives the rename).
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    if size > 0 {
        match rustix::fs::fallocate(&file, FallocateFlags::empty(), 0, size) {
            Ok(()) => {}
            // Some file systems (tmpfs on old kernels, NFS) cannot reserve: a sparse file will do.
            Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => file.set_len(size)?,
            Err(error) => return Err(error.into()),
        }
    }
    Ok(file)
}

/// Records parts whose bytes have been synced.
pub(crate) fn append_completed(partial: &Path, parts: &[u64]) -> io::Result<()> {
    if parts.is_empty() {
        return Ok(());
    }
    let mut lines = String::new();
    for part in parts {
        lines.push_str(&part.to_string());
        lines.push('\n');
    }
    let mut sidecar = OpenOptions::new()
        .append(true)
        .open(sidecar_path(partial))?;
    sidecar.write_all(lines.as_bytes())
}

/// Removes the sidecar (a missing one is fine).
pub(crate) fn remove(partial: &Path) -> io::Result<()> {
    match std::fs::remove_file(sidecar_path(partial)) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

fn read_completed(partial: &Path, identity: &Identity, part_count: u64) -> Option<BTreeSet<u64>> {
    let text = std::fs::read(sidecar_path(partial)).ok()?;
    let text = String::from_utf8_lossy(&text);
    // Only newline-terminated lines count.
    let complete = &text[..text.rfind('\n')? + 1];
    let mut lines = complete.lines();
    if lines.next()? != MAGIC {
        return None;
    }
    let mut fields = lines.next()?.splitn(3, ' ');
    let size: u64 = fields.next()?.parse().ok()?;
    let part_size: u64 = fields.next()?.parse().ok()?;
    let etag = fields.next()?;
    if size != identity.size || part_size != identity.part_size || etag != identity.etag {
        return None;
    }
    Some(
        lines
            .filter_map(|line| line.parse::<u64>().ok())
            .filter(|part| *part < part_count)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_trusts_only_a_matching_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let partial = dir.path().join("object.partial");
        let identity = Identity {
            size: 10,
            part_size: 4,
            etag: "abc-2".to_owned(),
        };
        let (_, completed) = open_for_resume(&partial, &identity).unwrap();
        assert!(completed.is_empty());
        append_completed(&partial, &[0, 2, 7]).unwrap();
        // A torn last line is ignored.
        let mut sidecar = OpenOptions::new()
            .append(true)
            .open(sidecar_path(&partial))
            .unwrap();
        sidecar.write_all(b"1").unwrap();

        let (_, completed) = open_for_resume(&partial, &identity).unwrap();
        assert_eq!(completed.into_iter().collect::<Vec<_>>(), vec![0, 2]);

        let changed = Identity {
            etag: "def-2".to_owned(),
            ..identity.clone()
        };
        let (_, completed) = open_for_resume(&partial, &changed).unwrap();
        assert!(completed.is_empty());
        let (_, completed) = open_for_resume(&partial, &identity).unwrap();
        assert!(
            completed.is_empty(),
            "the sidecar was rewritten for the changed object"
        );
    }
}
