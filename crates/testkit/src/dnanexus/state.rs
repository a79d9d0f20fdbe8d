//! The emulator's model, behind one mutex (critical sections are short: no I/O under the lock).

use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::bail;

use super::{EmulatedFile, FaultRun, RequestRecord};

pub(crate) struct Shared {
    pub address: SocketAddr,
    state: Mutex<State>,
}

impl Shared {
    pub fn new(state: State, address: SocketAddr) -> Self {
        Self {
            address,
            state: Mutex::new(state),
        }
    }

    pub fn with_state<T>(&self, action: impl FnOnce(&mut State) -> T) -> T {
        // A panic while holding the lock leaves the model usable: every mutation is one step.
        let mut state = self.state.lock();
        action(&mut state)
    }
}

#[derive(Default)]
pub(crate) struct State {
    pub users: BTreeMap<String, UserEntry>,
    pub tokens: HashMap<String, TokenEntry>,
    /// In creation order, which is also the order of search results across projects.
    pub projects: Vec<ProjectEntry>,
    pub files: HashMap<String, FileEntry>,
    /// Download URL key → what it serves.
    pub downloads: HashMap<String, DownloadEntry>,
    pub faults: Vec<FaultRun>,
    pub requests: Vec<RequestRecord>,
}

#[derive(Clone, Debug)]
pub(crate) struct UserEntry {
    pub id: String,
    pub handle: String,
}

pub(crate) struct TokenEntry {
    pub user: String,
    pub expires_ms: Option<u64>,
}

pub(crate) struct ProjectEntry {
    pub id: String,
    pub name: String,
    pub members: BTreeMap<String, Level>,
    /// Every folder path, "/" included.
    pub folders: BTreeSet<String>,
    pub created_ms: u64,
    pub modified_ms: u64,
}

pub(crate) struct FileEntry {
    pub id: String,
    pub project: String,
    pub folder: String,
    pub name: String,
    pub size: u64,
    pub parts: Vec<EmulatedPart>,
    pub disk_path: PathBuf,
    pub created_ms: u64,
    pub modified_ms: u64,
    /// Parts (from 1) whose MD5 `describe` reports wrongly.
    pub corrupt_parts: BTreeSet<u32>,
}

pub(crate) struct EmulatedPart {
    pub size: u64,
    pub md5: String,
}

pub(crate) struct DownloadEntry {
    pub file: String,
    pub expires_ms: u64,
}

/// Why a token did not authenticate.
pub(crate) enum AuthFailure {
    Unknown,
    Expired,
}

impl State {
    pub fn add_token(
        &mut self,
        user: &str,
        token: &str,
        expires: Option<SystemTime>,
    ) -> anyhow::Result<()> {
        if !self.users.contains_key(user) {
            bail!("token for unknown user {user}");
        }
        self.tokens
            .insert(token.to_owned(), TokenEntry::new(user, expires));
        Ok(())
    }

    pub fn authenticate(&self, token: &str, now_ms: u64) -> Result<String, AuthFailure> {
        let entry = self.tokens.get(token).ok_or(AuthFailure::Unknown)?;
        match entry.expires_ms {
            Some(expires) if expires <= now_ms => Err(AuthFailure::Expired),
            _ => Ok(entry.user.clone()),
        }
    }

    pub fn project(&self, id: &str) -> Option<&ProjectEntry> {
        self.projects.iter().find(|project| project.id == id)
    }

    /// The user's level in a project, if they are a member.
    pub fn level(&self, project: &str, user: &str) -> Option<Level> {
        self.project(project)
            .and_then(|project| project.members.get(user).copied())
    }

    /// Files of a project in search order: most recently modified first, then by id.
    pub fn project_files(&self, project: &str) -> Vec<&FileEntry> {
        let mut files: Vec<&FileEntry> = self
            .files
            .values()
            .filter(|file| file.project == project)
            .collect();
        files.sort_by(|a, b| {
            b.modified_ms
                .cmp(&a.modified_ms)
                .then_with(|| a.id.cmp(&b.id))
        });
        files
    }

    pub fn corrupt_part_md5(&mut self, file_id: &str, part: u32) -> anyhow::Result<()> {
        let Some(file) = self.files.get_mut(file_id) else {
            bail!("no file {file_id}")
        };
        if part == 0 || part as usize > file.parts.len() {
            bail!("{file_id} has no part {part}");
        }
        file.corrupt_parts.insert(part);
        Ok(())
    }
}

impl FileEntry {
    /// The MD5 `describe` reports for part `index` (from 1).
    pub fn reported_md5(&self, index: u32) -> String {
        let md5 = &self.parts[index as usize - 1].md5;
        if self.corrupt_parts.contains(&index) {
            // Flip the first hex digit: still well-formed, certainly wrong.
            let first = if md5.starts_with('0') { '1' } else { '0' };
            format!("{first}{}", &md5[1..])
        } else {
            md5.clone()
        }
    }

    pub fn to_public(&self) -> EmulatedFile {
        EmulatedFile {
            id: self.id.clone(),
            project: self.project.clone(),
            folder: self.folder.clone(),
            name: self.name.clone(),
            size: self.size,
            parts: self
                .parts
                .iter()
                .map(|part| (part.size, part.md5.clone()))
                .collect(),
            disk_path: self.disk_path.clone(),
        }
    }
}

pub(crate) fn millis(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

pub(crate) fn now_ms() -> u64 {
    millis(SystemTime::now())
}

/// A project permission level, ordered from least to most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    View,
    Upload,
    Contribute,
    Administer,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::View => "VIEW",
            Level::Upload => "UPLOAD",
            Level::Contribute => "CONTRIBUTE",
            Level::Administer => "ADMINISTER",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "VIEW" => Some(Level::View),
            "UPLOAD" => Some(Level::Upload),
            "CONTRIBUTE" => Some(Level::Contribute),
            "ADMINISTER" => Some(Level::Administer),
            _ => None,
        }
    }
}
