//! Files and directories only the service's own user can read: 0600 files, 0700 directories.
//!
//! Guarantee: whatever the process umask, every file and directory keyledger's libraries create
//! through these functions has no group or other permission bit. It is kept by passing the mode
//! to the `open`/`mkdir` system call itself (a umask can only remove bits, never add them), so
//! there is no moment at which the file exists with a wider mode. Files that other code creates
//! inside (sled's own files) are tightened by [`restrict_tree`] after it ran; the 0700 directory
//! around them keeps them private in between.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

/// Mode of every file the service writes.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory the service creates.
pub const DIR_MODE: u32 = 0o700;

/// Creates (or truncates) a file for writing with mode 0600. An existing file keeps its inode
/// but loses any group or other bit.
pub fn create(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(FILE_MODE);
    let file = options.open(path)?;
    restrict_file(&file)?;
    Ok(file)
}

/// Creates a new file (failing if it exists) with mode 0600, opened for reading and writing.
pub fn create_new(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create_new(true);
    #[cfg(unix)]
    options.mode(FILE_MODE);
    options.open(path)
}

/// Writes `bytes` to `path` as [`create`] does (not atomically; see the callers for that).
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    create(path)?.write_all(bytes)
}

/// `create_dir_all` with mode 0700 for every directory it creates. Existing directories are
/// left as they are (see [`restrict_dir`]).
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(DIR_MODE);
    builder.create(path)
}

/// `create_dir` (one level, fails if it exists) with mode 0700.
pub fn create_dir(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    builder.mode(DIR_MODE);
    builder.create(path)
}

/// Removes group and other bits from an existing directory (one made by an older version, or
/// by hand).
pub fn restrict_dir(path: &Path) -> io::Result<()> {
    restrict_path(path)
}

/// Removes group and other bits from `dir` and everything below it. Symbolic links are not
/// followed.
pub fn restrict_tree(dir: &Path) -> io::Result<()> {
    restrict_dir(dir)?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            restrict_tree(&entry.path())?;
        } else if kind.is_file() {
            restrict_path(&entry.path())?;
        }
    }
    Ok(())
}

#[cfg(unix)]
fn restrict_file(file: &File) -> io::Result<()> {
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict_file(_: &File) -> io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn restrict_path(path: &Path) -> io::Result<()> {
    let mode = fs::symlink_metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict_path(_: &Path) -> io::Result<()> {
    Ok(())
}
