//! What an emulator starts with: users, tokens, projects, folders and files.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use anyhow::{Context, bail};
use md5::{Digest, Md5};

use super::content::{fill_generated, splitmix64};
use super::state::{
    EmulatedPart, FileEntry, Level, ProjectEntry, State, TokenEntry, UserEntry, millis,
};

/// Part size used by [`Seed::from_dir`] unless told otherwise (64 MiB).
pub const DEFAULT_PART_SIZE: u64 = 64 << 20;

/// The user [`Seed::from_dir`] creates and makes administrator of the project.
pub const FROM_DIR_USER: &str = "user-emulator";

/// Timestamps of seeded objects start here (2023-11-14), one second apart, so listings are
/// reproducible.
const BASE_TIME_MS: u64 = 1_700_000_000_000;

const ID_ALPHABET: &[u8; 32] = b"0123456789BFGJKPQVXYZbfgjkpqvxyz";

/// Where a seeded file's bytes come from.
#[derive(Clone)]
pub enum Content {
    /// These bytes (written to the emulator's temporary folder).
    Bytes(Vec<u8>),
    /// `size` bytes generated from `seed` on disk, never held in memory; see
    /// [`super::generated_bytes`].
    Generated { size: u64, seed: u64 },
    /// An existing file, served in place (not copied).
    Disk(PathBuf),
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Content::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            Content::Generated { size, seed } => {
                write!(f, "Generated {{ size: {size}, seed: {seed} }}")
            }
            Content::Disk(path) => write!(f, "Disk({})", path.display()),
        }
    }
}

/// A builder of the emulator's initial state. Ids are deterministic (derived from the order of
/// the calls), so a test can print and compare them. Mistakes (an unknown project, a bad path)
/// are reported by [`super::DnanexusEmulator::start`].
#[derive(Clone, Debug, Default)]
pub struct Seed {
    users: Vec<UserEntry>,
    tokens: Vec<SeedToken>,
    projects: Vec<SeedProject>,
    files: Vec<SeedFile>,
    serial: u64,
    /// Mistakes found while building, reported by `materialize`.
    mistakes: Vec<String>,
}

#[derive(Clone)]
struct SeedToken {
    token: String,
    user: String,
    expires: Option<SystemTime>,
}

impl std::fmt::Debug for SeedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedToken")
            .field("token", &"[redacted]")
            .field("user", &self.user)
            .finish()
    }
}

#[derive(Clone, Debug)]
struct SeedProject {
    id: String,
    name: String,
    members: Vec<(String, Level)>,
    folders: Vec<String>,
}

#[derive(Clone, Debug)]
struct SeedFile {
    id: String,
    project: String,
    path: String,
    content: Content,
    part_size: u64,
}

impl Seed {
    pub fn new() -> Self {
        Self::default()
    }

    /// A seed whose project (named after the folder) holds every regular file under `dir`,
    /// served in place, in parts of [`DEFAULT_PART_SIZE`]; subfolders become folders. The
    /// project's administrator is [`FROM_DIR_USER`], who has no token yet: add one with
    /// [`Seed::add_token`].
    pub fn from_dir(dir: impl AsRef<Path>) -> anyhow::Result<Self> {
        Self::from_dir_with_part_size(dir, DEFAULT_PART_SIZE)
    }

    pub fn from_dir_with_part_size(dir: impl AsRef<Path>, part_size: u64) -> anyhow::Result<Self> {
        let dir = dir
            .as_ref()
            .canonicalize()
            .with_context(|| format!("reading {}", dir.as_ref().display()))?;
        let name = dir
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("emulated")
            .to_owned();
        let mut seed = Seed::new();
        let user = seed.add_user(FROM_DIR_USER.trim_start_matches("user-"));
        let project = seed.add_project(&name, &user);
        let mut pending = vec![(dir, String::new())];
        while let Some((folder, remote)) = pending.pop() {
            let mut entries = std::fs::read_dir(&folder)
                .with_context(|| format!("reading {}", folder.display()))?
                .collect::<Result<Vec<_>, _>>()?;
            entries.sort_by_key(|entry| entry.file_name());
            for entry in entries {
                let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
                    bail!("{} is not valid UTF-8", entry.path().display());
                };
                let remote_path = format!("{remote}/{file_name}");
                let metadata = std::fs::metadata(entry.path())?;
                if metadata.is_dir() {
                    seed.add_folder(&project, &remote_path);
                    pending.push((entry.path(), remote_path));
                } else if metadata.is_file() {
                    seed.add_file(
                        &project,
                        &remote_path,
                        Content::Disk(entry.path()),
                        part_size,
                    );
                }
            }
        }
        Ok(seed)
    }

    /// Adds user `user-<handle>` and returns that id.
    pub fn add_user(&mut self, handle: &str) -> String {
        let id = format!("user-{handle}");
        self.users.push(UserEntry {
            id: id.clone(),
            handle: handle.to_owned(),
        });
        id
    }

    /// Adds a bearer token that authenticates as `user` and never expires.
    pub fn add_token(&mut self, user: &str, token: &str) {
        self.tokens.push(SeedToken {
            token: token.to_owned(),
            user: user.to_owned(),
            expires: None,
        });
    }

    pub fn add_expiring_token(&mut self, user: &str, token: &str, expires: SystemTime) {
        self.tokens.push(SeedToken {
            token: token.to_owned(),
            user: user.to_owned(),
            expires: Some(expires),
        });
    }

    /// Adds a project administered by `owner` and returns its id (`project-` + 24 characters).
    pub fn add_project(&mut self, name: &str, owner: &str) -> String {
        let id = self.next_id("project");
        self.projects.push(SeedProject {
            id: id.clone(),
            name: name.to_owned(),
            members: vec![(owner.to_owned(), Level::Administer)],
            folders: Vec::new(),
        });
        id
    }

    /// Gives `user` a level in a project (replacing any earlier level).
    pub fn add_member(&mut self, project: &str, user: &str, level: Level) {
        match self.projects.iter_mut().find(|entry| entry.id == project) {
            Some(entry) => {
                entry.members.retain(|(member, _)| member != user);
                entry.members.push((user.to_owned(), level));
            }
            None => self
                .mistakes
                .push(format!("add_member: unknown project {project}")),
        }
    }

    /// Adds a folder (and its ancestors), which may stay empty.
    pub fn add_folder(&mut self, project: &str, folder: &str) {
        match self.projects.iter_mut().find(|entry| entry.id == project) {
            Some(entry) => entry.folders.push(folder.to_owned()),
            None => self
                .mistakes
                .push(format!("add_folder: unknown project {project}")),
        }
    }

    /// Adds a closed file at `path` (absolute, e.g. `/reads/a.fastq`; folders are created as
    /// needed) split into parts of `part_size` bytes (the last one shorter). Returns its id.
    pub fn add_file(
        &mut self,
        project: &str,
        path: &str,
        content: Content,
        part_size: u64,
    ) -> String {
        let id = self.next_id("file");
        self.files.push(SeedFile {
            id: id.clone(),
            project: project.to_owned(),
            path: path.to_owned(),
            content,
            part_size,
        });
        id
    }

    /// The id of the first project with this name.
    pub fn project_id(&self, name: &str) -> Option<&str> {
        self.projects
            .iter()
            .find(|project| project.name == name)
            .map(|project| project.id.as_str())
    }

    fn next_id(&mut self, class: &str) -> String {
        self.serial += 1;
        make_id(class, self.serial)
    }

    /// Validates the seed, writes file content under `storage` and computes every part's MD5.
    pub(crate) fn materialize(self, storage: &Path) -> anyhow::Result<State> {
        if let Some(mistake) = self.mistakes.first() {
            bail!("{mistake}");
        }
        let mut state = State::default();
        for user in self.users {
            if state.users.contains_key(&user.id) {
                bail!("user {} added twice", user.id);
            }
            state.users.insert(user.id.clone(), user);
        }
        for token in self.tokens {
            state.add_token(&token.user, &token.token, token.expires)?;
        }
        let mut project_index = HashMap::new();
        for (index, project) in self.projects.into_iter().enumerate() {
            let mut members = BTreeMap::new();
            for (user, level) in project.members {
                if !state.users.contains_key(&user) {
                    bail!("project {} names unknown user {user}", project.name);
                }
                members.insert(user, level);
            }
            let mut folders = BTreeSet::from(["/".to_owned()]);
            for folder in &project.folders {
                add_folder_with_ancestors(&mut folders, &normalize_folder(folder)?);
            }
            let time = BASE_TIME_MS + index as u64 * 1000;
            project_index.insert(project.id.clone(), state.projects.len());
            state.projects.push(ProjectEntry {
                id: project.id,
                name: project.name,
                members,
                folders,
                created_ms: time,
                modified_ms: time,
            });
        }

        let mut jobs = Vec::new();
        let mut files = Vec::new();
        for (index, seeded) in self.files.into_iter().enumerate() {
            let Some(&project_at) = project_index.get(&seeded.project) else {
                bail!(
                    "file {} names unknown project {}",
                    seeded.path,
                    seeded.project
                );
            };
            let (folder, name) = split_path(&seeded.path)?;
            add_folder_with_ancestors(&mut state.projects[project_at].folders, &folder);
            if seeded.part_size == 0 {
                bail!("file {}: part size must be positive", seeded.path);
            }
            let (size, disk_path) = match &seeded.content {
                Content::Bytes(bytes) => {
                    let disk_path = storage.join(&seeded.id);
                    std::fs::write(&disk_path, bytes)?;
                    (bytes.len() as u64, disk_path)
                }
                Content::Generated { size, .. } => {
                    let disk_path = storage.join(&seeded.id);
                    File::create(&disk_path)?.set_len(*size)?;
                    (*size, disk_path)
                }
                Content::Disk(path) => {
                    let size = std::fs::metadata(path)
                        .with_context(|| format!("reading {}", path.display()))?
                        .len();
                    (size, path.clone())
                }
            };
            let generated_seed = match seeded.content {
                Content::Generated { seed, .. } => Some(seed),
                _ => None,
            };
            let mut parts = Vec::new();
            let mut offset = 0;
            // An empty file still has one (empty) part, as an upload of nothing produces.
            while offset < size || parts.is_empty() {
                let part_size = seeded.part_size.min(size - offset);
                jobs.push(PartJob {
                    file: files.len(),
                    part: parts.len(),
                    offset,
                    size: part_size,
                    generated_seed,
                });
                parts.push(EmulatedPart {
                    size: part_size,
                    md5: String::new(),
                });
                offset += part_size;
            }
            let time = BASE_TIME_MS + index as u64 * 1000;
            files.push(FileEntry {
                id: seeded.id,
                project: seeded.project,
                folder,
                name,
                size,
                parts,
                disk_path,
                created_ms: time,
                modified_ms: time,
                corrupt_parts: BTreeSet::new(),
            });
        }

        let digests = hash_parts(&files, &jobs)?;
        for (job, md5) in jobs.iter().zip(digests) {
            files[job.file].parts[job.part].md5 = md5;
        }
        for file in files {
            state.files.insert(file.id.clone(), file);
        }
        Ok(state)
    }
}

/// `<class>-` + 24 characters of the DNAnexus id alphabet, derived from `serial`.
fn make_id(class: &str, serial: u64) -> String {
    let class_salt = class.bytes().fold(0u64, |acc, byte| {
        acc.wrapping_mul(31).wrapping_add(byte as u64)
    });
    let mut bits =
        (splitmix64(serial ^ class_salt) as u128) << 64 | splitmix64(!serial ^ class_salt) as u128;
    let mut id = String::with_capacity(class.len() + 25);
    id.push_str(class);
    id.push('-');
    for _ in 0..24 {
        id.push(ID_ALPHABET[(bits & 31) as usize] as char);
        bits >>= 5;
    }
    id
}

/// `/a/b/` → `/a/b`; rejects relative and empty-component paths.
pub(crate) fn normalize_folder(folder: &str) -> anyhow::Result<String> {
    if !folder.starts_with('/') {
        bail!("folder {folder:?} must start with /");
    }
    let trimmed = folder.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok("/".to_owned());
    }
    if trimmed.split('/').skip(1).any(str::is_empty) {
        bail!("folder {folder:?} has an empty component");
    }
    Ok(trimmed.to_owned())
}

fn split_path(path: &str) -> anyhow::Result<(String, String)> {
    let Some((folder, name)) = path.rsplit_once('/') else {
        bail!("file path {path:?} must be absolute");
    };
    if name.is_empty() {
        bail!("file path {path:?} has no name");
    }
    let folder = if folder.is_empty() {
        "/".to_owned()
    } else {
        normalize_folder(folder)?
    };
    Ok((folder, name.to_owned()))
}

fn add_folder_with_ancestors(folders: &mut BTreeSet<String>, folder: &str) {
    let mut current = folder.to_owned();
    while current != "/" && folders.insert(current.clone()) {
        match current.rsplit_once('/') {
            Some(("", _)) | None => break,
            Some((parent, _)) => current = parent.to_owned(),
        }
    }
}

struct PartJob {
    file: usize,
    part: usize,
    offset: u64,
    size: u64,
    generated_seed: Option<u64>,
}

/// Generates (where asked) and hashes every part, on all cores.
fn hash_parts(files: &[FileEntry], jobs: &[PartJob]) -> anyhow::Result<Vec<String>> {
    let results: Mutex<Vec<Option<anyhow::Result<String>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(jobs.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(index) else { break };
                    let outcome = hash_part(&files[job.file].disk_path, job);
                    if let Ok(mut results) = results.lock() {
                        results[index] = Some(outcome);
                    }
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a hashing thread panicked"))?;
    results
        .into_iter()
        .map(|outcome| outcome.unwrap_or_else(|| bail!("a part was not hashed")))
        .collect()
}

fn hash_part(path: &Path, job: &PartJob) -> anyhow::Result<String> {
    const BLOCK: u64 = 1 << 20;
    let file = if job.generated_seed.is_some() {
        OpenOptions::new().write(true).read(true).open(path)?
    } else {
        File::open(path)?
    };
    let mut buffer = vec![0u8; BLOCK.min(job.size.max(1)) as usize];
    let mut hasher = Md5::new();
    let mut done = 0;
    while done < job.size {
        let len = (job.size - done).min(BLOCK) as usize;
        let block = &mut buffer[..len];
        let offset = job.offset + done;
        match job.generated_seed {
            Some(seed) => {
                fill_generated(seed, offset, block);
                file.write_all_at(block, offset)?;
            }
            None => file
                .read_exact_at(block, offset)
                .with_context(|| format!("reading {}", path.display()))?,
        }
        hasher.update(&*block);
        done += len as u64;
    }
    Ok(hex(&hasher.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl TokenEntry {
    pub(crate) fn new(user: &str, expires: Option<SystemTime>) -> Self {
        Self {
            user: user.to_owned(),
            expires_ms: expires.map(millis),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_use_the_dnanexus_alphabet() {
        let id = make_id("project", 1);
        assert!(id.starts_with("project-"));
        let body = &id["project-".len()..];
        assert_eq!(body.len(), 24);
        assert!(body.bytes().all(|byte| ID_ALPHABET.contains(&byte)));
        assert_ne!(make_id("project", 1), make_id("project", 2));
        assert_ne!(make_id("project", 1)[8..], make_id("file", 1)[5..]);
    }

    #[test]
    fn mistakes_are_reported_at_start() {
        let storage = tempfile::tempdir().unwrap();
        let check = |build: &dyn Fn(&mut Seed), expected: &str| {
            let mut seed = Seed::new();
            let user = seed.add_user("u");
            seed.add_project("p", &user);
            build(&mut seed);
            let error = seed
                .materialize(storage.path())
                .err()
                .map(|error| error.to_string())
                .unwrap_or_default();
            assert!(error.contains(expected), "{expected:?} not in {error:?}");
        };
        check(
            &|seed| seed.add_member("project-nope", "user-u", Level::View),
            "unknown project",
        );
        check(
            &|seed| seed.add_folder("project-nope", "/a"),
            "unknown project",
        );
        check(&|seed| seed.add_token("user-nobody", "t"), "unknown user");
        check(
            &|seed| drop(seed.add_file("project-nope", "/a", Content::Bytes(Vec::new()), 1)),
            "unknown project",
        );
        let project = |seed: &Seed| seed.project_id("p").unwrap_or_default().to_owned();
        check(
            &|seed| drop(seed.add_file(&project(seed), "relative", Content::Bytes(Vec::new()), 1)),
            "must be absolute",
        );
        check(
            &|seed| drop(seed.add_file(&project(seed), "/a/", Content::Bytes(Vec::new()), 1)),
            "has no name",
        );
        check(
            &|seed| drop(seed.add_file(&project(seed), "/a", Content::Bytes(Vec::new()), 0)),
            "part size",
        );
    }

    #[test]
    fn folders_normalize() {
        for (input, expected) in [
            ("/", Some("/")),
            ("/a/", Some("/a")),
            ("/a/b", Some("/a/b")),
            ("a", None),
            ("/a//b", None),
        ] {
            assert_eq!(normalize_folder(input).ok().as_deref(), expected, "{input}");
        }
    }
}
