//! Faults injected between the connector and the S3 server.

use std::time::Duration;

use crate::support::resume_record_path;
use http::Method;
use keyledger_connect_s3::{S3Error, S3Options, S3Selection, Source, Verification};
use keyledger_testkit::fault_proxy::{CannedResponse, Fault, FaultProxy, RequestMatch};
use keyledger_testkit::s3::{S3Server, generated_bytes};
use regex::Regex;

use crate::support::{BUCKET, fetch, options, remote, server, sha256, source};

const SIZE: u64 = 1024 * 1024 + 17;

/// A server with one generated object of [`SIZE`] bytes behind a fault proxy, and a connector
/// fetching it in 256 KiB parts through the proxy.
async fn setup() -> (S3Server, FaultProxy, keyledger_connect_s3::S3Source) {
    setup_with(options("").stall_timeout).await
}

async fn setup_with(
    stall_timeout: Duration,
) -> (S3Server, FaultProxy, keyledger_connect_s3::S3Source) {
    let server = server().await;
    server
        .put_generated_object(BUCKET, "sample.bam", SIZE, 5)
        .await
        .unwrap();
    let proxy = FaultProxy::start(server.address()).await.unwrap();
    let source = source(&S3Options {
        part_size: 256 * 1024,
        concurrency: 3,
        stall_timeout,
        ..options(&proxy.endpoint())
    });
    (server, proxy, source)
}

fn expected_content() -> Vec<u8> {
    generated_bytes(5, 0, usize::try_from(SIZE).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_mid_body_are_resumed() {
    let (server, proxy, source) = setup().await;
    let object = remote(&server, &source, "sample.bam").await;
    proxy.inject(
        RequestMatch::get().ranged_only(),
        Fault::DropMidBody {
            after_bytes: 10_000,
        },
        3,
    );
    let dir = tempfile::tempdir().unwrap();
    let partial = dir.path().join("sample.partial");

    let (fetched, written) = fetch(&source, &object, &partial).await;
    let fetched = fetched.unwrap();

    assert_eq!(proxy.pending_faults(), 0);
    assert!(
        std::fs::read(&partial).unwrap() == expected_content(),
        "content differs"
    );
    assert_eq!(fetched.sha256, sha256(&expected_content()));
    assert_eq!(written, SIZE, "no byte written twice");
    // Each interrupted part continued from the byte where it stopped (the proxy's last
    // buffered bytes may not reach the client, so not exactly at 10,000).
    let resumed = proxy
        .requests()
        .into_iter()
        .filter_map(|request| request.range)
        .filter(|range| {
            let start: u64 = range["bytes=".len()..]
                .split('-')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            (1..=10_000).contains(&(start % (256 * 1024)))
        })
        .count();
    assert_eq!(resumed, 3, "{:#?}", proxy.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_down_answers_are_retried() {
    let (server, proxy, source) = setup().await;
    proxy.inject(
        RequestMatch::get().path_contains("list-type=2"),
        Fault::Status503SlowDown,
        2,
    );
    let object = remote(&server, &source, "sample.bam").await;
    proxy.inject(
        RequestMatch::any().method(Method::HEAD),
        Fault::Status503SlowDown,
        1,
    );
    proxy.inject(
        RequestMatch::get().ranged_only(),
        Fault::Status503SlowDown,
        4,
    );
    let dir = tempfile::tempdir().unwrap();
    let partial = dir.path().join("sample.partial");

    let fetched = fetch(&source, &object, &partial).await.0.unwrap();

    assert_eq!(proxy.pending_faults(), 0);
    assert_eq!(fetched.sha256, sha256(&expected_content()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_errors_give_up_after_max_attempts() {
    let (server, proxy, source) = setup().await;
    let object = remote(&server, &source, "sample.bam").await;
    proxy.inject(
        RequestMatch::get().ranged_only(),
        Fault::Status503SlowDown,
        1000,
    );
    let dir = tempfile::tempdir().unwrap();
    let partial = dir.path().join("sample.partial");

    let error = fetch(&source, &object, &partial).await.0.unwrap_err();

    assert!(
        matches!(error, S3Error::Transport(ref message) if message.contains("SlowDown")),
        "{error:?}"
    );
    // Kept for a later resume.
    assert!(resume_record_path(&partial).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_responses_are_abandoned_and_retried() {
    // Abandoned after 2 s, far short of the 20 s stall and far above a sound response.
    let (server, proxy, source) = setup_with(Duration::from_secs(2)).await;
    let object = remote(&server, &source, "sample.bam").await;
    proxy.inject(
        RequestMatch::get().ranged_only(),
        Fault::Stall {
            duration: Duration::from_secs(20),
        },
        1,
    );
    proxy.inject(
        RequestMatch::get().ranged_only(),
        Fault::StallMidBody {
            after_bytes: 1000,
            duration: Duration::from_secs(20),
        },
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    let partial = dir.path().join("sample.partial");

    let fetched = fetch(&source, &object, &partial).await.0.unwrap();

    assert_eq!(proxy.pending_faults(), 0);
    assert_eq!(fetched.sha256, sha256(&expected_content()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_fails_verification_and_removes_the_partial_file() {
    let (server, proxy, source) = setup().await;
    server
        .put_object(BUCKET, "small.txt", generated_bytes(8, 0, 5000))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    for key in ["sample.bam", "small.txt"] {
        let object = remote(&server, &source, key).await;
        proxy.inject(
            RequestMatch::get().ranged_only(),
            Fault::FlipByte { offset: 77 },
            1,
        );
        let partial = dir.path().join(format!("{key}.partial"));
        let error = fetch(&source, &object, &partial).await.0.unwrap_err();
        assert_eq!(proxy.pending_faults(), 0);
        assert!(
            matches!(error, S3Error::Verification { what: Verification::ChecksumCrc32, ref key, .. } if *key == object.path),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("x-amz-checksum-crc32"),
            "{error}"
        );
        assert!(!partial.exists(), "partial file removed");
        assert!(!resume_record_path(&partial).exists());
    }
}

/// s3s-fs accepts any region in the signature's scope, so it cannot answer "wrong region"
/// itself; the proxy answers the way S3 does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_in_another_region_is_reported() {
    let (_server, proxy, source) = setup().await;
    let redirect = CannedResponse::s3_error(
        301,
        "PermanentRedirect",
        "The bucket you are attempting to access must be addressed using the specified endpoint.",
    )
    .with_header("x-amz-bucket-region", "eu-west-1");
    proxy.inject(RequestMatch::any(), Fault::Respond(redirect), 1);
    let error = source
        .list(&S3Selection::new(BUCKET, "", Regex::new("").unwrap()))
        .await
        .unwrap_err();
    assert!(
        matches!(error, S3Error::WrongRegion { ref bucket, ref region } if bucket == BUCKET && region == "eu-west-1"),
        "{error:?}"
    );

    let malformed = CannedResponse::s3_error(
        400,
        "AuthorizationHeaderMalformed",
        "The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'ap-southeast-2'",
    );
    proxy.inject(RequestMatch::any(), Fault::Respond(malformed), 1);
    let error = source.check_bucket_access(BUCKET).await.unwrap_err();
    assert!(
        matches!(error, S3Error::WrongRegion { ref region, .. } if region == "ap-southeast-2"),
        "{error:?}"
    );
}
