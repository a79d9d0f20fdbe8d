//! `keyledger ingest manifest` and `keyledger ingest download`: a batch's files, described and
//! fetched to the machine running the CLI.
//!
//! Guarantee: a downloaded file appears under its final name only complete and with the SHA-256
//! the batch's manifest records. It is written to a temporary name beside it
//! (`.<hash of its path>.keyledger-part`), hashed as it is written, fsynced and renamed; a
//! broken run leaves at most such temporary files, which the next run replaces. Files already present
//! with the right SHA-256 are not fetched again. Paths come from the server and are checked
//! before any file is touched: only relative paths without `.`/`..` components land, under the
//! target folder.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use keyledger_domain::public::hex;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::client::{Client, segment};
use crate::exit::{Exit, Failure};
use crate::output::{field, items, print_json, print_table};

use super::bytes;

/// Time allowed per file: a minute, plus a second per MiB (a transfer slower than 1 MiB/s
/// is treated as stalled; run the command again to go on).
fn transfer_timeout(size: u64) -> Duration {
    Duration::from_secs(60 + size / (1024 * 1024))
}

pub fn run(client: &Client, id: &str, to: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let manifest = client.get(&format!("/v1/ingestions/{}/manifest", segment(id)))?;
    let batch_id = manifest["batch_id"].as_str().unwrap_or_default();
    let dir = match to {
        Some(dir) => dir.to_path_buf(),
        None => safe_relative(batch_id)?,
    };
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Every path is checked before any file is touched.
    let mut wanted: Vec<Wanted> = Vec::new();
    for file in items(&manifest, "files") {
        let path = field(file, "path");
        wanted.push(Wanted {
            target: dir.join(safe_relative(&path)?),
            sha256: field(file, "sha256"),
            size: file["size"].as_u64().unwrap_or(0),
            path,
        });
    }
    let tally = Tally::default();
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_DOWNLOADS.min(wanted.len()) {
            scope.spawn(|| {
                while first_error.lock().is_none() {
                    let Some(file) = wanted.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        return;
                    };
                    if let Err(error) = download_one(client, id, file, &tally, json) {
                        first_error.lock().get_or_insert(error);
                    }
                }
            });
        }
    });
    if let Some(error) = first_error.lock().take() {
        return Err(error);
    }
    let downloaded = tally.downloaded.load(Ordering::Relaxed);
    let present = tally.present.load(Ordering::Relaxed);
    let transferred = tally.bytes.load(Ordering::Relaxed);
    let listed: Vec<(&str, &str)> = wanted
        .iter()
        .map(|file| (file.path.as_str(), file.sha256.as_str()))
        .collect();
    let sums = keyledger_api::sha256sums(listed.iter().copied());
    let pretty = serde_json::to_vec_pretty(&manifest).context("cannot encode the manifest")?;
    for (name, content) in [("SHA256SUMS", sums.as_bytes()), ("manifest.json", &pretty)] {
        // A sample of that name is kept, as in the server's batch folder.
        if !listed.iter().any(|(path, _)| *path == name) {
            write_atomically(&dir.join(name), content)?;
        }
    }

    let failed = items(&manifest, "failed").len();
    if json {
        print_json(&json!({
            "ingestion": manifest["ingestion"],
            "batch_id": batch_id,
            "directory": dir.display().to_string(),
            "files": listed.len(),
            "downloaded": downloaded,
            "already_present": present,
            "bytes_downloaded": transferred,
            "failed_at_ingestion": failed,
        }));
    } else {
        println!(
            "{} files in {} ({downloaded} downloaded, {}; {present} already present). Check \
             them with: (cd {} && sha256sum -c SHA256SUMS)",
            listed.len(),
            dir.display(),
            bytes(transferred),
            shell_word(&dir.display().to_string()),
        );
    }
    if failed > 0 {
        eprintln!(
            "note: {failed} files of this batch failed at ingestion and are not in it: see \
             `keyledger ingest manifest {id}`"
        );
    }
    if !matches!(
        manifest["state"].as_str(),
        Some("completed" | "failed" | "cancelled")
    ) {
        eprintln!(
            "note: ingestion {id} is still running; run this command again when it has ended \
             for the rest of its files"
        );
    }
    Ok(())
}

/// Files fetched at once: many small files are dominated by round trips.
const PARALLEL_DOWNLOADS: usize = 4;

/// One file of the manifest, where it goes here.
#[derive(Debug)]
struct Wanted {
    path: String,
    target: PathBuf,
    sha256: String,
    size: u64,
}

#[derive(Debug, Default)]
struct Tally {
    downloaded: AtomicU64,
    present: AtomicU64,
    bytes: AtomicU64,
}

/// Fetches one file unless it is already there with the right SHA-256.
fn download_one(
    client: &Client,
    id: &str,
    file: &Wanted,
    tally: &Tally,
    json: bool,
) -> anyhow::Result<()> {
    if has_sha256(&file.target, &file.sha256)? {
        tally.present.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    fetch_file(client, id, file)?;
    tally.downloaded.fetch_add(1, Ordering::Relaxed);
    tally.bytes.fetch_add(file.size, Ordering::Relaxed);
    if !json {
        eprintln!("downloaded {} ({})", file.path, bytes(file.size));
    }
    Ok(())
}

/// Prints a manifest as tables: stored files, then failed ones.
pub fn show_manifest(manifest: &Value) {
    let rows: Vec<Vec<String>> = items(manifest, "files")
        .iter()
        .map(|file| {
            vec![
                field(file, "path"),
                bytes(file["size"].as_u64().unwrap_or(0)),
                field(file, "sha256"),
                source(&file["source"]),
            ]
        })
        .collect();
    println!(
        "Ingestion {} ({}), batch {} in {}:",
        field(manifest, "ingestion"),
        field(manifest, "state"),
        field(manifest, "batch_id"),
        field(manifest, "store_path")
    );
    if rows.is_empty() {
        println!("No stored files.");
    } else {
        print_table(&["PATH", "SIZE", "SHA256", "SOURCE"], &rows);
    }
    let failed: Vec<Vec<String>> = items(manifest, "failed")
        .iter()
        .map(|file| vec![field(file, "path"), field(file, "reason")])
        .collect();
    if !failed.is_empty() {
        println!();
        print_table(&["FAILED FILE", "REASON"], &failed);
    }
}

/// `s3://bucket/key` or `project-…:file-…`.
fn source(source: &Value) -> String {
    if let Some(bucket) = source["bucket"].as_str() {
        return format!("s3://{bucket}/{}", source["key"].as_str().unwrap_or(""));
    }
    match (source["project"].as_str(), source["file_id"].as_str()) {
        (Some(project), Some(file)) => format!("{project}:{file}"),
        _ => "-".to_owned(),
    }
}

/// A path the server named, as a relative path that stays under the target folder.
fn safe_relative(path: &str) -> Result<PathBuf, Failure> {
    let candidate = Path::new(path);
    let safe = !path.is_empty()
        && !path.contains('\0')
        && candidate
            .components()
            .all(|component| matches!(component, Component::Normal(_)));
    if safe {
        Ok(candidate.to_path_buf())
    } else {
        Err(Failure::new(
            Exit::Server,
            "the server named a file path that would leave the download folder; nothing was \
             written for it",
        ))
    }
}

/// Whether `target` is a file with this SHA-256 (lowercase hex).
fn has_sha256(target: &Path, expected: &str) -> anyhow::Result<bool> {
    let mut file = match File::open(target) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read {}", target.display()));
        }
    };
    if !file.metadata()?.is_file() {
        return Err(Failure::new(
            Exit::Usage,
            format!(
                "{} exists and is not a file; move it away and run the command again",
                target.display()
            ),
        )
        .into());
    }
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read = file
            .read(&mut buffer)
            .with_context(|| format!("cannot read {}", target.display()))?;
        if read == 0 {
            break;
        }
        digest.update(&buffer[..read]);
    }
    Ok(hex(digest.finish().as_ref()) == expected)
}

/// Streams one file into a temporary name beside `target`, checking size and SHA-256, then
/// renames it into place. On any failure the temporary file is removed.
fn fetch_file(client: &Client, id: &str, file: &Wanted) -> anyhow::Result<()> {
    let Wanted {
        path,
        target,
        sha256: expected,
        size,
    } = file;
    let size = *size;
    let folder = target.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(folder).with_context(|| format!("cannot create {}", folder.display()))?;
    // Named after the file (a hash of its path), so a later run replaces what a broken one
    // left, and two files fetched at once never share one.
    let partial = folder.join(format!(".{}.keyledger-part", path_tag(path)));
    let url = format!(
        "/v1/ingestions/{}/files/{}",
        segment(id),
        path.split('/').map(segment).collect::<Vec<_>>().join("/")
    );
    let result = (|| -> anyhow::Result<()> {
        let mut response = client
            .get_file(&url, transfer_timeout(size))
            .map_err(|error| match error.downcast::<Failure>() {
                // The server went away: say which file, and that running again goes on.
                Ok(failure) if failure.exit == Exit::Server => Failure::new(
                    Exit::Server,
                    format!(
                        "the download of {path} failed: {}; run the command again to go on",
                        failure.message
                    ),
                )
                .into(),
                Ok(failure) => failure.into(),
                Err(error) => error,
            })?;
        let mut out = File::create(&partial)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buffer = vec![0u8; 256 * 1024];
        let mut written = 0u64;
        loop {
            let read = response.read(&mut buffer).map_err(|error| {
                // The innermost cause says what happened (`connection closed before message
                // completed`); the outer ones only that reading failed.
                let mut cause: &dyn std::error::Error = &error;
                while let Some(next) = cause.source() {
                    cause = next;
                }
                Failure::new(
                    Exit::Server,
                    format!(
                        "the download of {path} broke off after {written} bytes ({cause}); run \
                         the command again to go on"
                    ),
                )
            })?;
            if read == 0 {
                break;
            }
            digest.update(&buffer[..read]);
            out.write_all(&buffer[..read])
                .with_context(|| format!("cannot write {}", partial.display()))?;
            written += read as u64;
        }
        let actual = hex(digest.finish().as_ref());
        if written != size || actual != *expected {
            return Err(Failure::new(
                Exit::Server,
                format!(
                    "{path} arrived with {written} bytes and SHA-256 {actual}, but the manifest \
                     records {size} bytes and {expected}; nothing was kept, run the command again"
                ),
            )
            .into());
        }
        out.sync_all()
            .with_context(|| format!("cannot write {}", partial.display()))?;
        fs::rename(&partial, target)
            .with_context(|| format!("cannot write {}", target.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&partial);
    }
    result
}

/// 16 hex digits of the SHA-256 of a path: a short, fixed-length temporary-file name.
fn path_tag(path: &str) -> String {
    hex(&ring::digest::digest(&ring::digest::SHA256, path.as_bytes()).as_ref()[..8])
}

/// Writes a small file by temporary name, fsync and rename: readers see the old or the new
/// content, never a part.
fn write_atomically(target: &Path, content: &[u8]) -> anyhow::Result<()> {
    let name = target
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("file");
    let temporary = target.with_file_name(format!(".{name}.keyledger-part"));
    let written = (|| -> std::io::Result<()> {
        let mut file = File::create(&temporary)?;
        file.write_all(content)?;
        file.sync_all()?;
        fs::rename(&temporary, target)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written.with_context(|| format!("cannot write {}", target.display()))
}

/// A path quoted for the shell when it needs it.
fn shell_word(text: &str) -> String {
    if text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relative_paths_without_dot_components_are_used() {
        let check = |path: &str, ok: bool| assert_eq!(safe_relative(path).is_ok(), ok, "{path:?}");
        check("a.csv", true);
        check("plate-1/deep/a.csv", true);
        check("", false);
        check("/etc/passwd", false);
        check("../x", false);
        check("a/../../x", false);
        check("./a", false);
        check("a\0b", false);
    }
}
