//! `fetch` against the emulator: exact bytes, verification, retries, resume, secrecy.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use keyledger_connect_dnanexus::{
    DnanexusError, DnanexusOptions, DnanexusSelection, DnanexusSource, FetchedFile, PartialFile,
    RemoteFile, Source,
};
use keyledger_testkit::dnanexus::{
    Content, DATA_PATH_PREFIX, DnanexusEmulator, Fault, FaultRun, generated_bytes,
};
use regex::Regex;
use tokio_util::sync::CancellationToken;

use crate::common::{
    CANARY_TOKEN, KIB, assert_no_secret, fast_options, named, seed, source, source_with,
};

/// `(name, size, part size, generator seed)`; with 64 KiB chunks and 4 lanes these cover
/// several parts, one part split over lanes, a single small part and an empty file.
const FILES: &[(&str, u64, u64, u64)] = &[
    ("multi.bin", 1024 * KIB + 12_345, 256 * KIB, 1),
    ("split.bin", 700 * KIB, 1024 * KIB, 2),
    ("small.bin", 100 * KIB, 1024 * KIB, 3),
    ("empty.bin", 0, 1024 * KIB, 4),
];

struct Fixture {
    emulator: DnanexusEmulator,
    source: DnanexusSource,
    files: Vec<RemoteFile>,
    dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let (mut seed, project) = seed("Transfers");
    for (name, size, part_size, generator) in FILES {
        seed.add_file(
            &project,
            &format!("/data/{name}"),
            Content::Generated {
                size: *size,
                seed: *generator,
            },
            *part_size,
        );
    }
    let emulator = DnanexusEmulator::start(seed).await.unwrap();
    let source = source(&emulator);
    let files = source
        .list(&DnanexusSelection::new(
            &project,
            "/data",
            Regex::new("").unwrap(),
        ))
        .await
        .unwrap();
    Fixture {
        emulator,
        source,
        files,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Fixture {
    fn file(&self, name: &str) -> &RemoteFile {
        named(&self.files, name)
    }

    fn partial(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.partial"))
    }
}

fn expected(name: &str) -> Vec<u8> {
    let (_, size, _, generator) = FILES
        .iter()
        .find(|(candidate, ..)| *candidate == name)
        .unwrap();
    generated_bytes(*generator, 0, *size as usize)
}

fn sidecar(partial: &Path) -> PathBuf {
    PathBuf::from(format!("{}.parts", partial.display()))
}

/// Fetches and checks the result against the generated content.
async fn fetch_exact(fixture: &Fixture, name: &str) -> FetchedFile {
    let partial = fixture.partial(name);
    let seen = Mutex::new(Vec::new());
    // Progress comes as deltas: their running total must only grow.
    let total = AtomicU64::new(0);
    let progress = |delta: u64| {
        let done = total.fetch_add(delta, Ordering::SeqCst) + delta;
        seen.lock().unwrap().push(done);
    };
    let fetched = fixture
        .source
        .fetch(
            fixture.file(name),
            &PartialFile::new(&partial),
            &progress,
            &CancellationToken::new(),
        )
        .await
        .unwrap_or_else(|error| {
            assert_no_secret(&error);
            panic!("{name}: {error}")
        });
    let bytes = std::fs::read(&partial).unwrap();
    assert!(bytes == expected(name), "{name}: bytes differ");
    assert_eq!(fetched.size, bytes.len() as u64);
    assert_eq!(
        fetched.sha256.as_slice(),
        ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref(),
        "{name}: sha256"
    );
    assert!(
        !sidecar(&partial).exists(),
        "{name}: the sidecar is removed on success"
    );
    let seen = seen.into_inner().unwrap();
    assert!(
        seen.windows(2).all(|pair| pair[0] <= pair[1]),
        "{name}: progress goes forward: {seen:?}"
    );
    assert_eq!(
        seen.last().copied().unwrap_or(0) + fetched.resumed_bytes,
        fetched.size,
        "{name}: progress (with the bytes resumed) ends at the size"
    );
    fetched
}

#[tokio::test]
async fn fetches_every_shape_of_file_exactly_without_sending_the_token_to_data_urls() {
    let fixture = fixture().await;
    for (name, ..) in FILES {
        let fetched = fetch_exact(&fixture, name).await;
        assert_eq!(
            fetched.verified,
            fixture.file(name).location.parts.len(),
            "{name}"
        );
    }
    let control = fixture.emulator.control();
    assert!(
        control.data_authorization_headers().is_empty(),
        "the token went to a data URL"
    );
    let requests = control.requests();
    let data_gets = requests.iter().filter(|request| request.data).count();
    // multi.bin: 5 parts of 4 chunks (the last one 1); split.bin 11 chunks; small.bin 2.
    assert_eq!(data_gets, 17 + 11 + 2);
    assert!(
        requests
            .iter()
            .filter(|request| !request.data)
            .all(|request| request.authorization.as_deref()
                == Some(&format!("Bearer {CANARY_TOKEN}")))
    );
    assert_eq!(
        control.download_urls_issued(),
        3,
        "one URL per non-empty file"
    );
}

#[tokio::test]
async fn recovers_from_throttling_server_errors_truncation_and_disconnects() {
    let fixture = fixture().await;
    let control = fixture.emulator.control();
    control.inject(
        FaultRun::new(
            Fault::Status {
                status: 503,
                retry_after: Some(1),
            },
            2,
        )
        .on_path("/download"),
    );
    control.inject(
        FaultRun::new(
            Fault::Status {
                status: 503,
                retry_after: Some(1),
            },
            3,
        )
        .on_path(DATA_PATH_PREFIX),
    );
    control.inject(
        FaultRun::new(
            Fault::Status {
                status: 429,
                retry_after: Some(2),
            },
            1,
        )
        .on_path(DATA_PATH_PREFIX),
    );
    control.inject(
        FaultRun::new(
            Fault::Status {
                status: 500,
                retry_after: None,
            },
            2,
        )
        .on_path(DATA_PATH_PREFIX),
    );
    control.inject(
        FaultRun::new(Fault::TruncateBody { after_bytes: 1000 }, 3).on_path(DATA_PATH_PREFIX),
    );
    control.inject(FaultRun::new(Fault::Disconnect, 2).on_path(DATA_PATH_PREFIX));
    let fetched = fetch_exact(&fixture, "multi.bin").await;
    assert_eq!(fetched.verified, 5);
    assert_eq!(
        control.pending_faults(),
        0,
        "every fault was met and ridden out"
    );
    // A cut-off body resumes where it stopped: 3 truncations cost 3 extra GETs, not refetches
    // of whole chunks (each resumed GET starts past the 1000 bytes received).
    let truncated = control
        .requests()
        .iter()
        .filter(|request| request.data && request.status == 206)
        .count();
    assert_eq!(truncated, 17 + 3);
}

#[tokio::test]
async fn a_wrong_part_md5_fails_verification_and_leaves_no_partial_file() {
    let fixture = fixture().await;
    fixture
        .emulator
        .control()
        .corrupt_part_md5(&fixture.file("multi.bin").version, 3)
        .unwrap();
    let files = fixture
        .source
        .list(&DnanexusSelection::new(
            &fixture.file("multi.bin").location.project,
            "/data",
            Regex::new("^multi").unwrap(),
        ))
        .await
        .unwrap();
    let partial = fixture.partial("multi.bin");
    let error = fixture
        .source
        .fetch(
            &files[0],
            &PartialFile::new(&partial),
            &|_| {},
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert_no_secret(&error);
    match &error {
        DnanexusError::Verification {
            file,
            part,
            expected,
            actual,
        } => {
            assert_eq!((file.as_str(), *part), (files[0].version.as_str(), 3));
            assert_ne!(expected, actual);
        }
        other => panic!("expected a verification error, got {other:?}"),
    }
    assert!(!partial.exists(), "the partial file is deleted");
    assert!(!sidecar(&partial).exists(), "the sidecar is deleted");

    // A single-part file too (verified from the bytes in flight).
    fixture
        .emulator
        .control()
        .corrupt_part_md5(&fixture.file("small.bin").version, 1)
        .unwrap();
    let small = fixture
        .source
        .list(&DnanexusSelection::new(
            &files[0].location.project,
            "/data",
            Regex::new("^small").unwrap(),
        ))
        .await
        .unwrap();
    let error = fixture
        .source
        .fetch(
            &small[0],
            &PartialFile::new(fixture.partial("small.bin")),
            &|_| {},
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, DnanexusError::Verification { part: 1, .. }),
        "{error:?}"
    );
    assert!(!fixture.partial("small.bin").exists());
}

#[tokio::test]
async fn rejected_tokens_and_missing_files_are_typed_errors() {
    let fixture = fixture().await;
    let mut missing = fixture.file("small.bin").clone();
    missing.version = "file-000000000000000000000000".to_owned();
    let error = fixture
        .source
        .fetch(
            &missing,
            &PartialFile::new(fixture.partial("missing")),
            &|_| {},
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, DnanexusError::FileNotFound { id } if *id == missing.version),
        "{error:?}"
    );

    fixture.emulator.control().expire_token(CANARY_TOKEN);
    let error = fixture
        .source
        .fetch(
            fixture.file("multi.bin"),
            &PartialFile::new(fixture.partial("multi.bin")),
            &|_| {},
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, DnanexusError::TokenRejected), "{error:?}");
    assert_no_secret(&error);
    fixture.emulator.control().revoke_token(CANARY_TOKEN);
    let error = fixture
        .source
        .fetch(
            fixture.file("small.bin"),
            &PartialFile::new(fixture.partial("small.bin")),
            &|_| {},
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, DnanexusError::TokenRejected), "{error:?}");
    assert_no_secret(&error);
}

#[tokio::test]
async fn an_interrupted_fetch_resumes_from_its_verified_parts() {
    let fixture = fixture().await;
    let control = fixture.emulator.control();
    let file = fixture.file("multi.bin");
    let partial = fixture.partial("multi.bin");

    // One lane, so parts complete one after the other; stop once half the bytes are on disk.
    let sequential = source_with(
        &fixture.emulator,
        DnanexusOptions {
            concurrency: 1,
            ..fast_options(&fixture.emulator)
        },
        CANARY_TOKEN,
    );
    let cancel = CancellationToken::new();
    let fetched_bytes = AtomicU64::new(0);
    let stop_at_half = |delta: u64| {
        if fetched_bytes.fetch_add(delta, Ordering::SeqCst) + delta >= file.size / 2 {
            cancel.cancel();
        }
    };
    let error = sequential
        .fetch(file, &PartialFile::new(&partial), &stop_at_half, &cancel)
        .await
        .unwrap_err();
    assert!(matches!(error, DnanexusError::Cancelled), "{error:?}");
    assert!(
        partial.exists() && sidecar(&partial).exists(),
        "kept for a resume"
    );
    let listed = std::fs::read_to_string(sidecar(&partial)).unwrap();
    let verified_before = listed.lines().skip(2).count();
    assert!(
        verified_before >= 1,
        "some parts were verified before the stop:\n{listed}"
    );

    control.clear_requests();
    let fetched = fetch_exact(&fixture, "multi.bin").await;
    assert_eq!(fetched.verified, 5);
    // No range of the second attempt starts inside a part verified by the first.
    let verified_end = file
        .location
        .parts
        .iter()
        .take(verified_before)
        .map(|part| part.size)
        .sum::<u64>();
    let starts: Vec<u64> = control
        .requests()
        .iter()
        .filter(|request| request.data && request.status == 206)
        .filter_map(|request| {
            request
                .range
                .as_deref()?
                .strip_prefix("bytes=")?
                .split('-')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(!starts.is_empty());
    // (A GET the cancelled attempt had already sent may land after `clear_requests`, but it is
    // for the part after the verified ones, fetched with one lane.)
    assert!(
        starts.iter().all(|start| *start >= verified_end),
        "verified parts were fetched again: {starts:?} (verified up to {verified_end})"
    );

    // A verified part damaged on disk is caught by the re-check and fetched again.
    let cancel = CancellationToken::new();
    let fetched_bytes = AtomicU64::new(0);
    let stop_at_half = |delta: u64| {
        if fetched_bytes.fetch_add(delta, Ordering::SeqCst) + delta >= file.size / 2 {
            cancel.cancel();
        }
    };
    let _ = sequential
        .fetch(file, &PartialFile::new(&partial), &stop_at_half, &cancel)
        .await;
    assert!(
        std::fs::read_to_string(sidecar(&partial))
            .unwrap()
            .lines()
            .skip(2)
            .any(|line| line.starts_with("1 "))
    );
    let data = std::fs::OpenOptions::new()
        .write(true)
        .open(&partial)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&data, b"damage", 10).unwrap();
    fetch_exact(&fixture, "multi.bin").await;
}

#[tokio::test]
async fn an_expired_or_refused_download_url_is_asked_for_again() {
    let fixture = fixture().await;
    let control = fixture.emulator.control();
    // The URL expires after the first block lands; a 403 then shows up on the next range.
    let expired_once = AtomicBool::new(false);
    let expire = |delta: u64| {
        if delta > 0 && !expired_once.swap(true, Ordering::SeqCst) {
            control.expire_download_urls();
        }
    };
    let partial = fixture.partial("multi.bin");
    fixture
        .source
        .fetch(
            fixture.file("multi.bin"),
            &PartialFile::new(&partial),
            &expire,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(std::fs::read(&partial).unwrap() == expected("multi.bin"));
    assert!(
        control.download_urls_issued() >= 2,
        "a new URL was requested"
    );
    assert!(
        control
            .requests()
            .iter()
            .any(|request| request.data && request.status == 403)
    );

    control.inject(
        FaultRun::new(
            Fault::Status {
                status: 403,
                retry_after: None,
            },
            1,
        )
        .on_path(DATA_PATH_PREFIX),
    );
    let before = control.download_urls_issued();
    fetch_exact(&fixture, "small.bin").await;
    assert_eq!(control.download_urls_issued(), before + 2);
}

#[tokio::test]
async fn cancellation_stops_the_fetch() {
    let fixture = fixture().await;
    let cancel = CancellationToken::new();
    cancel.cancel();
    let error = fixture
        .source
        .fetch(
            fixture.file("multi.bin"),
            &PartialFile::new(fixture.partial("multi.bin")),
            &|_| {},
            &cancel,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, DnanexusError::Cancelled));
    assert_eq!(
        fixture.emulator.control().download_urls_issued(),
        0,
        "nothing was asked for"
    );

    let calls = AtomicU64::new(0);
    let cancel = CancellationToken::new();
    let stop_soon = |_: u64| {
        if calls.fetch_add(1, Ordering::SeqCst) == 1 {
            cancel.cancel();
        }
    };
    let error = fixture
        .source
        .fetch(
            fixture.file("split.bin"),
            &PartialFile::new(fixture.partial("split.bin")),
            &stop_soon,
            &cancel,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, DnanexusError::Cancelled), "{error:?}");
    // Nothing is lost by stopping: the same call later completes.
    fetch_exact(&fixture, "split.bin").await;
}

#[tokio::test]
async fn default_chunking_streams_megabyte_blocks_exactly() {
    // Default options (8 MiB ranges, 1 MiB write blocks) on parts of 2 MiB and a split part.
    let (mut seed, project) = seed("Blocks");
    let size = 5 * 1024 * KIB + 7;
    seed.add_file(
        &project,
        "/parts.bin",
        Content::Generated { size, seed: 11 },
        2048 * KIB,
    );
    seed.add_file(
        &project,
        "/one.bin",
        Content::Generated {
            size: 40 * 1024 * KIB,
            seed: 12,
        },
        64 * 1024 * KIB,
    );
    let emulator = DnanexusEmulator::start(seed).await.unwrap();
    let options = DnanexusOptions {
        api_url: emulator.endpoint(),
        ..DnanexusOptions::default()
    };
    let source = source_with(&emulator, options, CANARY_TOKEN);
    let files = source
        .list(&DnanexusSelection::new(
            &project,
            "/",
            Regex::new("").unwrap(),
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, seed, size) in [("parts.bin", 11, size), ("one.bin", 12, 40 * 1024 * KIB)] {
        let partial = dir.path().join(name);
        let fetched = source
            .fetch(
                named(&files, name),
                &PartialFile::new(&partial),
                &|_| {},
                &CancellationToken::new(),
            )
            .await
            .unwrap();
        assert_eq!(fetched.size, size);
        let bytes = std::fs::read(&partial).unwrap();
        assert!(
            bytes == generated_bytes(seed, 0, size as usize),
            "{name} differs"
        );
        assert_eq!(
            fetched.sha256.as_slice(),
            ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref()
        );
        assert_eq!(fetched.verified, named(&files, name).location.parts.len());
    }
    // one.bin: a single 40 MiB part, fetched as 5 ranges on parallel lanes and hashed in order.
    let data_gets = emulator
        .control()
        .requests()
        .iter()
        .filter(|request| request.data)
        .count();
    assert_eq!(data_gets, 3 + 5);
}
