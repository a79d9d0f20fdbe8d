use std::sync::Mutex;

use crate::support::resume_record_path;
use bytes::Bytes;
use keyledger_connect_s3::{
    CancellationToken, S3Error, S3Options, S3Selection, Source, Verification,
};
use keyledger_testkit::fault_proxy::FaultProxy;
use keyledger_testkit::s3::generated_bytes;
use regex::Regex;

use crate::support::{BUCKET, fetch, fetch_with, listed, options, remote, server, sha256, source};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_object_arrives_exact_and_verified() {
    let server = server().await;
    let content = generated_bytes(1, 0, 100_000);
    server
        .put_object(BUCKET, "a/small.fastq", content.clone())
        .await
        .unwrap();
    let source = source(&options(&server.endpoint()));
    let object = remote(&server, &source, "a/small.fastq").await;
    let dir = tempfile::tempdir().unwrap();
    let partial = dir.path().join("small.partial");

    let (fetched, progressed) = fetch(&source, &object, &partial).await;
    let fetched = fetched.unwrap();

    assert_eq!(std::fs::read(&partial).unwrap(), content);
    assert_eq!(fetched.size, 100_000);
    assert_eq!(fetched.sha256, sha256(&content));
    assert_eq!(fetched.version, object.version);
    assert_eq!(fetched.resumed_bytes, 0);
    // The seeding SDK sent a CRC32, which the server returns with a whole-object GET; the
    // ETag's MD5 is not computed when a checksum exists.
    assert_eq!(
        fetched.verified,
        vec![Verification::Size, Verification::ChecksumCrc32]
    );
    assert_eq!(progressed, 100_000);
    assert!(!resume_record_path(&partial).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_object_arrives_in_parallel_parts() {
    let server = server().await;
    let size = 3 * 1024 * 1024 + 123;
    // Streamed PutObject: exercises the SDK's aws-chunked upload with a CRC32 trailer.
    let etag = server
        .put_generated_object(BUCKET, "big.bam", size, 7)
        .await
        .unwrap();
    let proxy = FaultProxy::start(server.address()).await.unwrap();
    let options = S3Options {
        part_size: 256 * 1024,
        concurrency: 4,
        ..options(&proxy.endpoint())
    };
    let source = source(&options);
    // As s3s-fs lists it, without an ETag: the fetch pins to the HEAD's.
    let object = listed(&source, "big.bam").await;
    let dir = tempfile::tempdir().unwrap();
    let partial = dir.path().join("big.partial");

    let (fetched, progressed) = fetch(&source, &object, &partial).await;
    let fetched = fetched.unwrap();

    let expected = generated_bytes(7, 0, usize::try_from(size).unwrap());
    assert!(
        std::fs::read(&partial).unwrap() == expected,
        "content differs"
    );
    assert_eq!(fetched.sha256, sha256(&expected));
    assert_eq!(fetched.version, etag);
    assert_eq!(
        fetched.verified,
        vec![Verification::Size, Verification::ChecksumCrc32]
    );
    assert_eq!(progressed, size);
    let ranges: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter_map(|request| request.range)
        .collect();
    assert_eq!(ranges.len(), 13, "{ranges:?}");
    assert!(
        ranges.contains(&format!("bytes=3145728-{}", size - 1)),
        "{ranges:?}"
    );
    assert!(!resume_record_path(&partial).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_upload_and_an_empty_object_are_fetched() {
    let server = server().await;
    let content = Bytes::from(generated_bytes(3, 0, 6 * 1024 * 1024 + 5));
    let etag = server
        .put_object_multipart(BUCKET, "multi.cram", content.clone(), 5 * 1024 * 1024)
        .await
        .unwrap();
    assert!(etag.ends_with("-2"), "{etag}");
    server
        .put_object(BUCKET, "empty.txt", Bytes::new())
        .await
        .unwrap();
    let source = source(&S3Options {
        part_size: 1024 * 1024,
        ..options(&server.endpoint())
    });
    let dir = tempfile::tempdir().unwrap();

    let object = remote(&server, &source, "multi.cram").await;
    let partial = dir.path().join("multi.partial");
    let fetched = fetch(&source, &object, &partial).await.0.unwrap();
    assert!(
        std::fs::read(&partial).unwrap() == content,
        "content differs"
    );
    assert_eq!(fetched.sha256, sha256(&content));
    // A multipart upload created without a checksum algorithm has no object checksum, and
    // its ETag is not an MD5 of the content: only the size is checked.
    assert_eq!(fetched.verified, vec![Verification::Size]);

    let object = remote(&server, &source, "empty.txt").await;
    let partial = dir.path().join("empty.partial");
    let fetched = fetch(&source, &object, &partial).await.0.unwrap();
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), 0);
    assert_eq!(fetched.sha256, sha256(b""));
    assert_eq!(
        fetched.verified,
        vec![Verification::Size, Verification::ChecksumCrc32]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_or_deleted_object_fails_cleanly() {
    let server = server().await;
    server
        .put_object(BUCKET, "small", generated_bytes(1, 0, 1000))
        .await
        .unwrap();
    server
        .put_generated_object(BUCKET, "large", 600_000, 2)
        .await
        .unwrap();
    server.put_object(BUCKET, "gone", "x").await.unwrap();
    let options = S3Options {
        part_size: 100_000,
        ..options(&server.endpoint())
    };
    let source = source(&options);
    let small = remote(&server, &source, "small").await;
    let large = remote(&server, &source, "large").await;
    let gone = remote(&server, &source, "gone").await;
    server
        .put_object(BUCKET, "small", generated_bytes(9, 0, 1000))
        .await
        .unwrap();
    server
        .put_generated_object(BUCKET, "large", 600_000, 9)
        .await
        .unwrap();
    server
        .client()
        .delete_object()
        .bucket(BUCKET)
        .key("gone")
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    for (object, partial) in [(&small, "small.partial"), (&large, "large.partial")] {
        let partial = dir.path().join(partial);
        let error = fetch(&source, object, &partial).await.0.unwrap_err();
        assert!(
            matches!(error, S3Error::ObjectChanged { ref key } if *key == object.path),
            "{error:?}"
        );
        assert!(!partial.exists());
        assert!(!resume_record_path(&partial).exists());
    }
    let partial = dir.path().join("gone.partial");
    let error = fetch(&source, &gone, &partial).await.0.unwrap_err();
    assert!(
        matches!(error, S3Error::NotFound { ref key } if key == "gone"),
        "{error:?}"
    );
    assert!(!partial.exists());
}

/// Cancel halfway, then fetch again: completed parts are not downloaded again, and the whole
/// content is still verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_fetch_resumes_without_refetching_completed_parts() {
    let server = server().await;
    let part_size = 128 * 1024u64;
    let size = 16 * part_size + 1000;
    server
        .put_generated_object(BUCKET, "resume.bam", size, 11)
        .await
        .unwrap();
    let proxy = FaultProxy::start(server.address()).await.unwrap();
    let options = S3Options {
        part_size,
        concurrency: 1,
        ..options(&proxy.endpoint())
    };
    let source = source(&options);
    let object = remote(&server, &source, "resume.bam").await;
    let dir = tempfile::tempdir().unwrap();
    let partial = dir.path().join("resume.partial");

    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let (first, first_written) = fetch_with(&source, &object, &partial, &cancel, move |total| {
        if total > 5 * part_size {
            trigger.cancel();
        }
    })
    .await;
    assert!(matches!(first, Err(S3Error::Cancelled)), "{first:?}");
    assert!(partial.exists() && resume_record_path(&partial).exists());
    let recorded = std::fs::read_to_string(resume_record_path(&partial)).unwrap();
    let done: Vec<u64> = recorded
        .lines()
        .skip(2)
        .map(|line| line.parse().unwrap())
        .collect();
    assert!(done.len() >= 5, "recorded {done:?}");

    proxy.control().clear_requests();
    let (second, second_written) = fetch(&source, &object, &partial).await;
    let second = second.unwrap();
    let expected = generated_bytes(11, 0, usize::try_from(size).unwrap());
    assert!(
        std::fs::read(&partial).unwrap() == expected,
        "content differs"
    );
    assert_eq!(second.sha256, sha256(&expected));
    assert_eq!(second.resumed_bytes, done.len() as u64 * part_size);
    assert_eq!(second_written, size - second.resumed_bytes);
    assert!(first_written >= 5 * part_size);
    let ranges: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter_map(|request| request.range)
        .collect();
    for part in &done {
        let start = part * part_size;
        assert!(
            !ranges
                .iter()
                .any(|range| range.starts_with(&format!("bytes={start}-"))),
            "part {part} fetched again: {ranges:?}"
        );
    }
    assert_eq!(ranges.len(), 17 - done.len());
    assert!(!resume_record_path(&partial).exists());
}

/// Bytes from an earlier run are hashed again: corruption on disk is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_parts_are_verified_again() {
    let server = server().await;
    let part_size = 64 * 1024u64;
    let size = 8 * part_size;
    server
        .put_generated_object(BUCKET, "resume.bam", size, 12)
        .await
        .unwrap();
    let options = S3Options {
        part_size,
        concurrency: 1,
        ..options(&server.endpoint())
    };
    let source = source(&options);
    let object = remote(&server, &source, "resume.bam").await;
    let dir = tempfile::tempdir().unwrap();
    let partial = dir.path().join("resume.partial");
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let (first, _) = fetch_with(&source, &object, &partial, &cancel, move |total| {
        if total > 3 * part_size {
            trigger.cancel();
        }
    })
    .await;
    assert!(matches!(first, Err(S3Error::Cancelled)), "{first:?}");

    let mut bytes = std::fs::read(&partial).unwrap();
    bytes[10] ^= 0x01;
    std::fs::write(&partial, &bytes).unwrap();
    let error = fetch(&source, &object, &partial).await.0.unwrap_err();
    assert!(
        matches!(
            error,
            S3Error::Verification {
                what: Verification::ChecksumCrc32,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!partial.exists() && !resume_record_path(&partial).exists());
}

/// 32 small objects fetched concurrently, as the ingestion does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_objects_fetch_concurrently() {
    use futures::StreamExt as _;
    let server = server().await;
    server
        .put_generated_objects(BUCKET, 64, 64 * 1024, 100, |index| {
            format!("many/{index:03}.vcf")
        })
        .await
        .unwrap();
    let source = source(&options(&server.endpoint()));
    let objects = source
        .list(&S3Selection::new(BUCKET, "many/", Regex::new("").unwrap()))
        .await
        .unwrap();
    assert_eq!(objects.len(), 64);
    let dir = tempfile::tempdir().unwrap();
    let failures = Mutex::new(Vec::new());
    futures::stream::iter(objects.iter().enumerate())
        .for_each_concurrent(32, |(index, object)| {
            let partial = dir.path().join(format!("{index}.partial"));
            let source = &source;
            let failures = &failures;
            async move {
                let (result, _) = fetch(source, object, &partial).await;
                let expected = generated_bytes(100 + index as u64, 0, 64 * 1024);
                if result.is_err() || std::fs::read(&partial).ok() != Some(expected) {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{}: {result:?}", object.path));
                }
            }
        })
        .await;
    assert!(
        failures.lock().unwrap().is_empty(),
        "{:?}",
        failures.lock().unwrap()
    );
}
