//! Shared set-up: a signed S3 server, a connector pointed at it (directly or through the
//! fault proxy), and fast retry settings.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use keyledger_connect_s3::{
    AwsCredentials, CancellationToken, FetchedFile, PartialFile, RemoteFile, S3Error, S3Options,
    S3Selection, S3Source, Source,
};
use keyledger_testkit::s3::S3Server;

pub const ACCESS_KEY_ID: &str = "AKIAKEYLEDGERTEST001";
/// 40 characters, like an AWS secret; must never appear in any output.
pub const SECRET: &str = "CANARYsecret0000keyledger0000DO0NOT0LEAK";
pub const BUCKET: &str = "samples";

pub async fn server() -> S3Server {
    let server = S3Server::start(ACCESS_KEY_ID, SECRET)
        .await
        .expect("start the S3 server");
    server
        .create_bucket(BUCKET)
        .await
        .expect("create the bucket");
    server
}

/// Small backoffs, so fault tests stay fast. The stall timeout stays generous (a short one
/// fails sound requests when both cores are busy); the stall test sets its own.
pub fn options(endpoint: &str) -> S3Options {
    S3Options {
        endpoint: Some(endpoint.to_owned()),
        force_path_style: true,
        max_attempts: 6,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        stall_timeout: Duration::from_secs(30),
        ..S3Options::default()
    }
}

pub fn credentials(secret: &str) -> AwsCredentials {
    AwsCredentials {
        access_key_id: ACCESS_KEY_ID.to_owned(),
        secret_access_key: secret.to_owned(),
        region: "us-east-1".to_owned(),
        session_token: None,
        expires_at: None,
    }
}

pub fn source(options: &S3Options) -> S3Source {
    S3Source::new(&credentials(SECRET), options).expect("build the source")
}

pub fn source_with_secret(options: &S3Options, secret: &str) -> S3Source {
    S3Source::new(&credentials(secret), options).expect("build the source")
}

/// Lists the single object `key`. s3s-fs 0.14.1 lists no ETags; AWS S3 always does, so the
/// ETag is filled in from a HEAD, as S3 would have listed it.
pub async fn remote(server: &S3Server, source: &S3Source, key: &str) -> RemoteFile {
    let mut object = listed(source, key).await;
    let head = server
        .client()
        .head_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .expect("head");
    object.version = head
        .e_tag()
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned();
    object
}

/// Lists the single object `key`, as the server lists it.
pub async fn listed(source: &S3Source, key: &str) -> RemoteFile {
    let pattern = regex::Regex::new(&format!("^{}$", regex::escape(key))).expect("regex");
    let mut objects = source
        .list(&S3Selection::new(BUCKET, "", pattern.clone()))
        .await
        .expect("list");
    assert_eq!(objects.len(), 1, "{key} listed once");
    objects.remove(0)
}

/// Fetches and returns the result with the number of bytes reported through `progress`.
pub async fn fetch(
    source: &S3Source,
    object: &RemoteFile,
    partial: &Path,
) -> (Result<FetchedFile, S3Error>, u64) {
    fetch_with(source, object, partial, &CancellationToken::new(), |_| {}).await
}

pub async fn fetch_with(
    source: &S3Source,
    object: &RemoteFile,
    partial: &Path,
    cancel: &CancellationToken,
    on_progress: impl Fn(u64) + Send + Sync,
) -> (Result<FetchedFile, S3Error>, u64) {
    let written = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&written);
    let progress = move |bytes: u64| {
        let total = counter.fetch_add(bytes, Ordering::SeqCst) + bytes;
        on_progress(total);
    };
    let result = source
        .fetch(object, &PartialFile::new(partial), &progress, cancel)
        .await;
    (result, written.load(Ordering::SeqCst))
}

/// The resume record of a partial file (`<partial>.parts`).
pub fn resume_record_path(partial: &Path) -> PathBuf {
    PartialFile::new(partial).record_path().to_path_buf()
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The error's Display and Debug must not contain the secret.
pub fn assert_no_secret(error: &S3Error) {
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains(SECRET), "secret leaked: {shown}");
        assert!(!shown.contains("CANARY"), "secret leaked: {shown}");
    }
}

pub fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest as _;
    md5::Md5::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
