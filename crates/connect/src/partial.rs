//! The partial file a fetch writes into, and its resume record `<partial>.parts`.
//!
//! Guarantees:
//! - A connector writes only these two files; the caller renames the partial file into place
//!   once the fetch returned it verified, or calls [`PartialFile::discard`].
//! - Both are private (0600) whatever the umask; the mode survives the rename.
//! - A fresh partial file has its full size reserved before the first byte is written, so a
//!   full disk fails the fetch at its start rather than halfway through.
//! - A resume record is trusted only when its format line and identity line are the ones the
//!   connector expects for this very file, and only for lines that end in a newline (a torn
//!   last line is ignored). A connector appends a claim only for bytes already on disk, and
//!   re-checks claims as its format requires before it trusts them.
//!
//! Record format (text): the connector's format line (`keyledger-s3-parts 1`), an identity line
//! (what the partial file holds parts of: size, part layout, the provider's identity of the
//! content), then one claim per line (a part the connector found complete).

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::FallocateFlags;

/// A partial file and its resume record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartialFile {
    path: PathBuf,
    record: PathBuf,
}

/// What a resume record must start with to be trusted for a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordIdentity<'a> {
    /// The connector's format line, such as `keyledger-s3-parts 1`.
    pub format: &'a str,
    /// The file's identity line, such as `<size> <part size> <etag>`.
    pub identity: &'a str,
}

/// A partial file opened for a fetch.
#[derive(Debug)]
pub struct Opened {
    pub file: File,
    /// The claims of a matching record, when the file's content was kept for them.
    pub claims: Vec<String>,
    /// The file was created or was empty: no earlier attempt left anything (nor a record).
    pub fresh: bool,
}

impl PartialFile {
    pub fn new(path: impl Into<PathBuf>) -> PartialFile {
        let path = path.into();
        let mut record = OsString::from(path.as_os_str());
        record.push(".parts");
        PartialFile {
            path,
            record: PathBuf::from(record),
        }
    }

    /// The partial file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its resume record, `<partial>.parts`.
    pub fn record_path(&self) -> &Path {
        &self.record
    }

    /// Opens the partial file for content of `size` bytes. When `resume` names a record that
    /// matches and the file has that size, its content is kept and the record's claims
    /// returned; otherwise the file is emptied and `size` bytes reserved. Blocking.
    pub fn open(&self, size: u64, resume: Option<RecordIdentity<'_>>) -> io::Result<Opened> {
        let claims = resume.and_then(|identity| self.read_claims(identity));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&self.path)?;
        let on_disk = file.metadata()?.len();
        if let Some(claims) = claims
            && !claims.is_empty()
            && on_disk == size
        {
            return Ok(Opened {
                file,
                claims,
                fresh: false,
            });
        }
        if on_disk != 0 {
            // Nothing to keep: drop whatever bytes an earlier attempt left.
            file.set_len(0)?;
        }
        reserve(&file, size)?;
        Ok(Opened {
            file,
            claims: Vec::new(),
            fresh: on_disk == 0,
        })
    }

    /// Creates (or truncates) the partial file and reserves `size` bytes; no resume. Blocking.
    pub fn create(&self, size: u64) -> io::Result<File> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&self.path)?;
        reserve(&file, size)?;
        Ok(file)
    }

    /// Writes a new resume record: `identity`, then `claims`. Returns it open for appending.
    /// Blocking.
    pub fn start_record(
        &self,
        identity: RecordIdentity<'_>,
        claims: &[String],
    ) -> io::Result<File> {
        let mut text = format!("{}\n{}\n", identity.format, identity.identity);
        for claim in claims {
            text.push_str(claim);
            text.push('\n');
        }
        let mut record = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&self.record)?;
        record.write_all(text.as_bytes())?;
        Ok(record)
    }

    /// Appends claims to the resume record. Call it only once the bytes claimed are on disk
    /// (after `fdatasync` when the claim must survive a crash). Blocking.
    pub fn append_claims(&self, claims: &[String]) -> io::Result<()> {
        if claims.is_empty() {
            return Ok(());
        }
        let mut record = OpenOptions::new().append(true).open(&self.record)?;
        append_claims_to(&mut record, claims)
    }

    /// Removes the resume record (a missing one is fine): the file is complete. Blocking.
    pub fn remove_record(&self) -> io::Result<()> {
        remove_if_present(&self.record)
    }

    /// Deletes the partial file and its resume record (missing files are fine): the caller
    /// gives up on the file. Blocking.
    pub fn discard(&self) -> io::Result<()> {
        remove_if_present(&self.path)?;
        remove_if_present(&self.record)
    }

    /// The claims of a record that starts with `identity`; `None` for a missing, foreign or
    /// unreadable record.
    fn read_claims(&self, identity: RecordIdentity<'_>) -> Option<Vec<String>> {
        let text = std::fs::read(&self.record).ok()?;
        let text = String::from_utf8_lossy(&text);
        // Only newline-terminated lines count.
        let complete = &text[..text.rfind('\n')? + 1];
        let mut lines = complete.lines();
        if lines.next()? != identity.format || lines.next()? != identity.identity {
            return None;
        }
        Some(lines.map(str::to_owned).collect())
    }
}

/// Appends claims to an open resume record, one line each, in one write.
pub fn append_claims_to(record: &mut File, claims: &[String]) -> io::Result<()> {
    let mut lines = String::new();
    for claim in claims {
        lines.push_str(claim);
        lines.push('\n');
    }
    record.write_all(lines.as_bytes())
}

/// Reserves `size` bytes of `file`.
fn reserve(file: &File, size: u64) -> io::Result<()> {
    if size == 0 {
        return Ok(());
    }
    match rustix::fs::fallocate(file, FallocateFlags::empty(), 0, size) {
        Ok(()) => Ok(()),
        // Some file systems (tmpfs on old kernels, NFS) cannot reserve: a sparse file will do.
        Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => file.set_len(size),
        Err(error) => Err(error.into()),
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDENTITY: RecordIdentity<'static> = RecordIdentity {
        format: "test-parts 1",
        identity: "10 4 abc-2",
    };

    fn claims(opened: &Opened) -> Vec<&str> {
        opened.claims.iter().map(String::as_str).collect()
    }

    #[test]
    fn resume_trusts_only_a_matching_record() {
        let dir = tempfile::tempdir().unwrap();
        let partial = PartialFile::new(dir.path().join("object.partial"));
        assert_eq!(
            partial.record_path(),
            dir.path().join("object.partial.parts")
        );
        let opened = partial.open(10, Some(IDENTITY)).unwrap();
        assert!(opened.fresh && opened.claims.is_empty());
        assert_eq!(opened.file.metadata().unwrap().len(), 10, "reserved");
        partial.start_record(IDENTITY, &["0".to_owned()]).unwrap();
        partial
            .append_claims(&["2".to_owned(), "7".to_owned()])
            .unwrap();
        // A torn last line is ignored.
        let mut record = OpenOptions::new()
            .append(true)
            .open(partial.record_path())
            .unwrap();
        record.write_all(b"1").unwrap();

        let opened = partial.open(10, Some(IDENTITY)).unwrap();
        assert_eq!(claims(&opened), ["0", "2", "7"]);
        assert!(!opened.fresh);

        let changed = RecordIdentity {
            identity: "10 4 def-2",
            ..IDENTITY
        };
        let opened = partial.open(10, Some(changed)).unwrap();
        assert!(opened.claims.is_empty(), "another object's record");
        let foreign = RecordIdentity {
            format: "other-parts 1",
            ..IDENTITY
        };
        assert!(partial.open(10, Some(foreign)).unwrap().claims.is_empty());
    }

    #[test]
    fn a_file_of_another_size_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let partial = PartialFile::new(dir.path().join("file.partial"));
        std::fs::write(partial.path(), b"0123").unwrap();
        partial.start_record(IDENTITY, &["0".to_owned()]).unwrap();
        let opened = partial.open(10, Some(IDENTITY)).unwrap();
        assert!(opened.claims.is_empty() && !opened.fresh);
        assert_eq!(std::fs::read(partial.path()).unwrap(), [0u8; 10]);
    }

    #[test]
    fn discard_removes_both_and_tolerates_neither() {
        let dir = tempfile::tempdir().unwrap();
        let partial = PartialFile::new(dir.path().join("file.partial"));
        partial.discard().unwrap();
        partial.create(3).unwrap();
        partial.start_record(IDENTITY, &[]).unwrap();
        partial.discard().unwrap();
        assert!(!partial.path().exists() && !partial.record_path().exists());
    }

    #[test]
    fn files_are_private_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let partial = PartialFile::new(dir.path().join("file.partial"));
        partial.create(1).unwrap();
        partial.start_record(IDENTITY, &[]).unwrap();
        for path in [partial.path(), partial.record_path()] {
            let mode = std::fs::metadata(path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{}", path.display());
        }
    }
}
