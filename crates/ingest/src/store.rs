//! The sample store: a folder tree `<root>/<destination>/<batch id>/<relative path>`.
//!
//! Invariants:
//! - A file appears under its final name only complete and verified: connectors write into
//!   `<root>/.partial/<ingestion>/<n>.partial`, the store fsyncs it, renames it into place (same
//!   file system, so the rename is atomic) and fsyncs the directory before the ingestion event
//!   that names the file is recorded.
//! - No path leaves the root: destinations and remote paths are checked component by component
//!   (no `..`, no absolute paths, no control characters) before any file operation.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use keyledger_domain::{IngestionId, UserId, check_visible_text};
use keyledger_vault::private_files;
use parking_lot::Mutex;

pub mod object;

/// The folder, directly under the root, that holds in-flight downloads.
pub const PARTIAL_DIR: &str = ".partial";

/// Longest path component most file systems accept, in bytes.
const MAX_COMPONENT_BYTES: usize = 255;

#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    /// Folders known to exist durably, so each is created and synced once.
    created: Mutex<HashSet<PathBuf>>,
    /// An `s3://` store (decision 0029): files go there once verified; `root` then holds only
    /// the partial area (a local scratch folder).
    object: Option<Arc<object::ObjectTarget>>,
}

impl Store {
    pub fn new(root: PathBuf) -> Store {
        Store {
            root,
            created: Mutex::new(HashSet::new()),
            object: None,
        }
    }

    /// A store whose files go to `object`; `scratch` holds the partial downloads.
    pub fn with_object(scratch: PathBuf, object: Arc<object::ObjectTarget>) -> Store {
        Store {
            object: Some(object),
            ..Store::new(scratch)
        }
    }

    /// The object store files go to, if not the local folder tree.
    pub fn object(&self) -> Option<&Arc<object::ObjectTarget>> {
        self.object.as_ref()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<destination>/<batch id>`.
    pub fn batch_dir(&self, destination: &str, batch_id: &str) -> PathBuf {
        self.root.join(destination).join(batch_id)
    }

    /// `<root>/.partial/<ingestion>`: everything in it is removed when the job ends.
    pub fn partial_dir(&self, ingestion: &IngestionId) -> PathBuf {
        self.root.join(PARTIAL_DIR).join(ingestion.as_str())
    }

    /// Creates the root and the partial area.
    pub fn prepare(&self) -> io::Result<()> {
        // Samples are private to the service, whatever the umask (0700 folders, 0600 files).
        private_files::create_dir_all(&self.root.join(PARTIAL_DIR))?;
        private_files::restrict_dir(&self.root)
    }

    /// Creates `<partial_dir>` for a job.
    pub fn prepare_job(&self, ingestion: &IngestionId) -> io::Result<PathBuf> {
        let dir = self.partial_dir(ingestion);
        private_files::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Moves verified partial files to `<batch_dir>/<relative>`: creates the folders (each
    /// synced into its parent), refuses to replace anything, renames, then fsyncs each folder
    /// that received files once. The partial files are already fsynced (the [`SampleSource`]
    /// contract). A file whose folder cannot be synced is removed again. Blocking.
    ///
    /// [`SampleSource`]: crate::SampleSource
    pub fn publish_all(
        &self,
        batch_dir: &Path,
        items: &[(PathBuf, String)],
    ) -> Vec<io::Result<PathBuf>> {
        let mut results: Vec<io::Result<PathBuf>> = Vec::with_capacity(items.len());
        let mut folders: BTreeMap<PathBuf, Vec<usize>> = BTreeMap::new();
        for (index, (partial, relative)) in items.iter().enumerate() {
            let placed = self.place(partial, &batch_dir.join(relative));
            if let Ok((_, folder)) = &placed {
                folders.entry(folder.clone()).or_default().push(index);
            }
            results.push(placed.map(|(target, _)| target));
        }
        for (folder, members) in folders {
            let Err(error) = sync_dir(&folder) else {
                continue;
            };
            for index in members {
                if let Ok(target) = &results[index] {
                    let _ = fs::remove_file(target);
                }
                results[index] = Err(io::Error::new(
                    error.kind(),
                    format!("syncing {} failed: {error}", folder.display()),
                ));
            }
        }
        results
    }

    /// [`Store::publish_all`] for files whose size and SHA-256 were verified: on an `s3://`
    /// store each one is uploaded and completed only if the bytes sent match (decision 0029),
    /// and its partial file removed; the result names `<root>/<relative>` as the file store's
    /// does (the object's key is the same path under the store's prefix). Blocking; call it on
    /// a blocking thread of the runtime.
    pub fn publish_verified(
        &self,
        batch_dir: &Path,
        items: &[(PathBuf, String, u64, [u8; 32])],
    ) -> Vec<io::Result<PathBuf>> {
        let Some(object) = &self.object else {
            let items: Vec<(PathBuf, String)> = items
                .iter()
                .map(|(partial, relative, _, _)| (partial.clone(), relative.clone()))
                .collect();
            return self.publish_all(batch_dir, &items);
        };
        let handle = tokio::runtime::Handle::current();
        items
            .iter()
            .map(|(partial, relative, size, sha256)| {
                let target = batch_dir.join(relative);
                let key = self.object_key(object, &target)?;
                let sent = handle.block_on(object.publish(partial, &key, *size, sha256));
                let _ = fs::remove_file(partial);
                sent.map(|()| target).map_err(io::Error::other)
            })
            .collect()
    }

    /// Removes a stored file (`<root>/<relative>`, as [`Store::publish_verified`] named it)
    /// whose event was not recorded. Blocking, on a blocking thread of the runtime.
    pub fn remove_stored(&self, target: &Path) -> io::Result<()> {
        match &self.object {
            None => fs::remove_file(target),
            Some(object) => {
                let key = self.object_key(object, target)?;
                tokio::runtime::Handle::current()
                    .block_on(object.remove(&key))
                    .map_err(io::Error::other)
            }
        }
    }

    /// The object key of `<root>/<relative>`.
    fn object_key(
        &self,
        object: &object::ObjectTarget,
        target: &Path,
    ) -> io::Result<object_store::path::Path> {
        let relative = target
            .strip_prefix(&self.root)
            .ok()
            .and_then(Path::to_str)
            .ok_or_else(|| io::Error::other("a file outside the sample store"))?;
        object.key_of(relative).map_err(io::Error::other)
    }

    /// Renames one partial file to `target`; returns the target and its folder.
    fn place(&self, partial: &Path, target: &Path) -> io::Result<(PathBuf, PathBuf)> {
        let folder = target
            .parent()
            .ok_or_else(|| io::Error::other("the target has no parent folder"))?
            .to_path_buf();
        self.create_dirs(&folder)?;
        if fs::symlink_metadata(target).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} already exists", target.display()),
            ));
        }
        fs::rename(partial, target)?;
        Ok((target.to_path_buf(), folder))
    }

    /// Creates `dir` and its missing ancestors below the root, each one synced into its parent.
    fn create_dirs(&self, dir: &Path) -> io::Result<()> {
        if self.is_known(dir) {
            return Ok(());
        }
        let relative = dir
            .strip_prefix(&self.root)
            .map_err(|_| io::Error::other("a folder outside the sample store"))?;
        let mut current = self.root.clone();
        for component in relative.components() {
            let parent = current.clone();
            current.push(component);
            if self.is_known(&current) {
                continue;
            }
            match private_files::create_dir(&current) {
                Ok(()) => sync_dir(&parent)?,
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    if !current.is_dir() {
                        return Err(io::Error::other(format!(
                            "{} exists and is not a folder",
                            current.display()
                        )));
                    }
                }
                Err(error) => return Err(error),
            }
            self.created.lock().insert(current.clone());
        }
        Ok(())
    }

    fn is_known(&self, dir: &Path) -> bool {
        self.created.lock().contains(dir)
    }

    /// Removes a job's partial area (missing is fine). Blocking.
    pub fn remove_partial_dir(&self, ingestion: &IngestionId) -> io::Result<()> {
        remove_dir_if_present(&self.partial_dir(ingestion))
    }

    /// The job ids that have a partial area.
    pub fn partial_jobs(&self) -> io::Result<Vec<String>> {
        let area = self.root.join(PARTIAL_DIR);
        let entries = match fs::read_dir(&area) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut jobs = Vec::new();
        for entry in entries {
            if let Some(name) = entry?.file_name().to_str() {
                jobs.push(name.to_owned());
            }
        }
        Ok(jobs)
    }

    /// Removes a partial area by its folder name (for areas no job in the log owns).
    pub fn remove_partial_area(&self, name: &str) -> io::Result<()> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Ok(());
        }
        remove_dir_if_present(&self.root.join(PARTIAL_DIR).join(name))
    }

    /// Deletes files under `batch_dir` that `keep` does not name (relative paths): files a
    /// crash left renamed into place without their event. Returns how many it deleted.
    /// On an `s3://` store, the objects under the batch's key (blocking, on a blocking thread
    /// of the runtime).
    pub fn remove_unrecorded(&self, batch_dir: &Path, keep: &HashSet<String>) -> io::Result<u64> {
        if let Some(object) = &self.object {
            let batch = batch_dir
                .strip_prefix(&self.root)
                .ok()
                .and_then(Path::to_str)
                .ok_or_else(|| io::Error::other("a folder outside the sample store"))?;
            return tokio::runtime::Handle::current()
                .block_on(object.remove_unrecorded_under(batch, keep))
                .map_err(io::Error::other);
        }
        let mut removed = 0;
        let mut pending = vec![batch_dir.to_path_buf()];
        while let Some(dir) = pending.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            for entry in entries {
                let entry = entry?;
                let path = entry.path();
                if entry.file_type()?.is_dir() {
                    pending.push(path);
                    continue;
                }
                let relative = path
                    .strip_prefix(batch_dir)
                    .ok()
                    .and_then(Path::to_str)
                    .unwrap_or_default();
                if !keep.contains(relative) {
                    fs::remove_file(&path)?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// Checks a destination folder name (relative to the store root) and returns it normalised.
///
/// Allowed: 1 to 8 `/`-separated components of printable characters, none empty, none starting
/// with `.` (which rules out `.`, `..` and the store's own `.partial`), no `\`; at most 255
/// bytes in all.
pub fn validate_destination(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim().trim_end_matches('/');
    // The input is never echoed: it may be a secret pasted into the wrong field.
    let refuse = |why: &str| {
        Err(format!(
            "destination: {why}; use a relative folder name such as `alice/run-1`"
        ))
    };
    check_visible_text("destination", trimmed).map_err(|error| error.to_string())?;
    if trimmed.is_empty() {
        return refuse("is empty");
    }
    if trimmed.len() > 255 {
        return refuse("is longer than 255 bytes");
    }
    if trimmed.starts_with('/') {
        return refuse("is an absolute path");
    }
    if trimmed.contains('\\') {
        return refuse("contains backslashes");
    }
    let components: Vec<&str> = trimmed.split('/').collect();
    if components.len() > 8 {
        return refuse("has more than 8 levels");
    }
    for component in &components {
        if component.is_empty() {
            return refuse("has an empty level (`//`)");
        }
        if component.starts_with('.') {
            return refuse("has a level starting with `.` (such as `..`)");
        }
        if component.trim() != *component {
            return refuse("has a level starting or ending with spaces");
        }
    }
    Ok(components.join("/"))
}

/// Whether a (validated) destination lies in `owner`'s own area of the store: the folder named
/// after the owner, or a folder under it. Users' areas are separate so that one importer cannot
/// add files to (or collide with) another's.
pub fn destination_belongs_to(destination: &str, owner: &UserId) -> bool {
    destination.split('/').next() == Some(owner.as_str())
}

/// Turns a remote path into a safe path relative to the batch folder, or says why it cannot be
/// stored. Empty and `.` components are dropped (`a//b`, `/a`, `./a` become `a/b`, `a`, `a`);
/// `..` and control characters are refused rather than guessed around.
pub fn sanitize_remote_path(raw: &str) -> Result<String, String> {
    let refuse = |why: &str| {
        Err(format!(
            "the remote path `{}` {why}; it was not stored",
            printable(raw)
        ))
    };
    let mut components = Vec::new();
    for component in raw.split('/') {
        match component {
            "" | "." => continue,
            ".." => return refuse("climbs out of its folder (`..`)"),
            _ if component.chars().any(char::is_control) => {
                return refuse("contains control characters");
            }
            _ if component.len() > MAX_COMPONENT_BYTES => {
                return refuse("has a name longer than 255 bytes");
            }
            _ => components.push(component),
        }
    }
    if components.is_empty() {
        return refuse("names no file");
    }
    Ok(components.join("/"))
}

/// Assigns stored paths to listed files in order: the first file to claim a path (or a folder
/// of it) wins, later ones are refused.
#[derive(Debug, Default)]
pub struct PathClaims {
    files: HashSet<String>,
    folders: HashSet<String>,
}

impl PathClaims {
    pub fn claim(&mut self, path: &str) -> Result<(), String> {
        if self.files.contains(path) {
            return Err(format!(
                "another selected file is stored as `{path}`; it was not stored"
            ));
        }
        if self.folders.contains(path) {
            return Err(format!(
                "`{path}` is also a folder of other selected files; it was not stored"
            ));
        }
        let mut ancestors = Vec::new();
        let mut end = 0;
        while let Some(offset) = path[end..].find('/') {
            end += offset;
            let ancestor = &path[..end];
            if self.files.contains(ancestor) {
                return Err(format!(
                    "`{ancestor}` is both a selected file and a folder of `{path}`; it was not stored"
                ));
            }
            ancestors.push(ancestor.to_owned());
            end += 1;
        }
        self.folders.extend(ancestors);
        self.files.insert(path.to_owned());
        Ok(())
    }
}

/// A short, printable excerpt of a remote path (named by the provider, not typed by a user) for
/// a file's error message.
fn printable(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .take(80)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if raw.chars().count() > 80 {
        out.push('…');
    }
    out
}

fn remove_dir_if_present(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: fn(&str) -> Result<String, String>, input: &str, expect: Result<&str, &str>) {
        let got = f(input);
        match expect {
            Ok(path) => assert_eq!(got.as_deref(), Ok(path), "{input:?}"),
            Err(fragment) => assert!(
                got.as_ref().is_err_and(|m| m.contains(fragment)),
                "{input:?}: {got:?}"
            ),
        }
    }

    #[test]
    fn the_store_is_private_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let previous = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("samples"));
        store.prepare().unwrap();
        let job = IngestionId::parse("ing_AAAAAAAAAAAAAAAA").unwrap();
        let partial = store.prepare_job(&job).unwrap().join("one.partial");
        private_files::write(&partial, b"sample").unwrap();
        let batch = store.batch_dir("alice", "batch-1");
        let placed = store.publish_all(&batch, &[(partial, "run/one.fastq".to_owned())]);
        rustix::process::umask(previous);
        let target = placed.into_iter().next().unwrap().unwrap();

        // Every folder from the file up to the store's root (the temporary directory above it
        // is not the store's).
        let mut path = target.as_path();
        while path != dir.path() {
            let mode = fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
            path = path.parent().unwrap();
        }
        let partial_area = dir.path().join("samples").join(PARTIAL_DIR);
        let mode = fs::metadata(partial_area).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0);
    }

    #[test]
    fn destinations() {
        let d = validate_destination;
        check(d, "alice", Ok("alice"));
        check(d, " project-x/run 1/ ", Ok("project-x/run 1"));
        check(d, "a/b/c", Ok("a/b/c"));
        check(d, "", Err("is empty"));
        check(d, "/", Err("is empty"));
        check(d, "/etc", Err("absolute"));
        check(d, "..", Err("starting with `.`"));
        check(d, "../x", Err("starting with `.`"));
        check(d, "a/../../x", Err("starting with `.`"));
        check(d, ".partial", Err("starting with `.`"));
        check(d, "a//b", Err("empty level"));
        check(d, "a\u{0}b", Err("control"));
        check(d, "a\nb", Err("control"));
        check(d, "a\u{202E}b", Err("bidirectional"));
        check(d, "a\\..\\b", Err("backslash"));
        check(d, "/CANARYsecret", Err("absolute"));
        assert!(!d("/CANARYsecret").unwrap_err().contains("CANARY"));
        check(d, "a/ b", Err("spaces"));
        check(d, &"x/".repeat(9), Err("more than 8"));
        check(d, &"x".repeat(300), Err("255"));
    }

    #[test]
    fn destinations_belong_to_their_owner() {
        let alice = UserId::parse("alice").unwrap();
        let check = |destination: &str, expect: bool| {
            assert_eq!(
                destination_belongs_to(destination, &alice),
                expect,
                "{destination}"
            );
        };
        check("alice", true);
        check("alice/run-1", true);
        check("bob", false);
        check("bob/alice", false);
        check("alice2", false);
        check("alicex/run", false);
        check("project-x", false);
    }

    #[test]
    fn remote_paths() {
        let s = sanitize_remote_path;
        check(s, "a.csv", Ok("a.csv"));
        check(s, "run1/deep/a.csv", Ok("run1/deep/a.csv"));
        check(s, "/abs/a.csv", Ok("abs/a.csv"));
        check(s, "a//b/./c", Ok("a/b/c"));
        check(s, ".hidden", Ok(".hidden"));
        check(s, "..", Err("climbs out"));
        check(s, "../../etc/passwd", Err("climbs out"));
        check(s, "a/../../b", Err("climbs out"));
        check(s, "a/\u{7}b", Err("control"));
        check(s, "", Err("names no file"));
        check(s, "/./", Err("names no file"));
        check(s, &"x".repeat(256), Err("longer than 255"));
    }

    #[test]
    fn claims() {
        let mut claims = PathClaims::default();
        assert!(claims.claim("a/b.csv").is_ok());
        assert!(claims.claim("a/c.csv").is_ok());
        assert!(claims.claim("a/b.csv").is_err(), "duplicate");
        assert!(claims.claim("a").is_err(), "a folder already");
        assert!(claims.claim("a/b.csv/x").is_err(), "under a file");
        assert!(claims.claim("b").is_ok());
    }
}
