//! `keyledger ingest manifest` and `keyledger ingest download`: a batch's files, described and
//! fetched to the machine running the CLI.
//!
//! Guarantee: a downloaded file appears under its final name only complete and with the SHA-256
//! the batch's manifest records. It is written to a temporary name beside it
//! (`.<sha256 prefix>.keyledger-part`), hashed as it is written, fsynced and renamed; a broken
//! run leaves at most such temporary files, which the next run replaces. Files already present
//! with the right SHA-256 are not fetched again. Paths come from the server and are checked
//! before any file is touched: only relative paths without `.`/`..` components land, under the
//! target folder.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use keyledger_domain::public::hex;
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
    let files = items(&manifest, "files");
    let mut listed: Vec<(String, String)> = Vec::with_capacity(files.len());
    let (mut downloaded, mut present, mut transferred) = (0u64, 0u64, 0u64);
    for file in files {
        let path = field(file, "path");
        let sha256 = field(file, "sha256");
        let size = file["size"].as_u64().unwrap_or(0);
        let target = dir.join(safe_relative(&path)?);
        if has_sha256(&target, &sha256)? {
            present += 1;
        } else {
            fetch_file(client, id, &path, &target, size, &sha256)?;
            downloaded += 1;
            transferred += size;
            if !json {
                eprintln!("downloaded {path} ({})", bytes(size));
            }
        }
        listed.push((path, sha256));
    }
    let sums = keyledger_api::sha256sums(listed.iter().map(|(p, s)| (p.as_str(), s.as_str())));
    write_atomically(&dir.join("SHA256SUMS"), sums.as_bytes())?;
    let pretty = serde_json::to_vec_pretty(&manifest).context("cannot encode the manifest")?;
    write_atomically(&dir.join("manifest.json"), &pretty)?;

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
fn fetch_file(
    client: &Client,
    id: &str,
    path: &str,
    target: &Path,
    size: u64,
    expected: &str,
) -> anyhow::Result<()> {
    let folder = target.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(folder).with_context(|| format!("cannot create {}", folder.display()))?;
    let prefix: String = expected.chars().take(16).collect();
    let partial = folder.join(format!(".{prefix}.keyledger-part"));
    let url = format!(
        "/v1/ingestions/{}/files/{}",
        segment(id),
        path.split('/').map(segment).collect::<Vec<_>>().join("/")
    );
    let result = (|| -> anyhow::Result<()> {
        let mut response = client.get_file(&url, transfer_timeout(size))?;
        let mut out = File::create(&partial)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buffer = vec![0u8; 256 * 1024];
        let mut written = 0u64;
        loop {
            let read = response.read(&mut buffer).map_err(|error| {
                Failure::new(
                    Exit::Server,
                    format!(
                        "the download of {path} broke off after {written} bytes ({error}); run \
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
        if written != size || actual != expected {
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
