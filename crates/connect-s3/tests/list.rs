use bytes::Bytes;
use keyledger_connect_s3::{S3Selection, Source};
use regex::Regex;

use crate::support::{BUCKET, md5_hex, options, server, source};

/// 1,500 objects across nested prefixes: more than one ListObjectsV2 page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_paginates_and_selects_by_prefix_and_regex() {
    let server = server().await;
    let key_of = |index: u64| {
        let extension = if index.is_multiple_of(5) {
            "bai"
        } else {
            "fastq.gz"
        };
        format!("runs/2024/run{}/sample{index:04}.{extension}", index % 3)
    };
    let objects =
        (0..1500u64).map(|index| (key_of(index), Bytes::from(format!("content of {index}"))));
    server.put_objects(BUCKET, objects).await.expect("seed");
    server
        .put_object(BUCKET, "runs/README.txt", "top")
        .await
        .expect("seed");
    let source = source(&options(&server.endpoint()));

    let everything = source
        .list(&S3Selection::new(BUCKET, "", Regex::new("").unwrap()))
        .await
        .unwrap();
    assert_eq!(everything.len(), 1501);
    let keys: Vec<&str> = everything
        .iter()
        .map(|object| object.path.as_str())
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted, "key order");

    let fastq = Regex::new(r"^runs/2024/run1/.*\.fastq\.gz$").unwrap();
    let selected = source
        .list(&S3Selection::new(BUCKET, "runs/2024/", fastq.clone()))
        .await
        .unwrap();
    let expected: Vec<String> = (0..1500u64)
        .filter(|index| index % 3 == 1 && index % 5 != 0)
        .map(key_of)
        .collect();
    assert_eq!(
        selected
            .iter()
            .map(|object| object.path.clone())
            .collect::<Vec<_>>(),
        expected
    );

    let first = &selected[0];
    let body = format!("content of {}", 1);
    assert_eq!(first.location.bucket, BUCKET);
    assert_eq!(first.size, body.len() as u64);
    // s3s-fs 0.14.1 lists no ETags (AWS does); the fetch then pins to the first response's.
    assert!(
        first.version.is_empty() || first.version == md5_hex(body.as_bytes()),
        "{}",
        first.version
    );
    assert!(
        first
            .location
            .last_modified_ms
            .is_some_and(|ms| ms > 1_600_000_000_000)
    );

    // The prefix is applied by S3, the regex to the full key.
    let bai_of_run2 = S3Selection::new(BUCKET, "runs/2024/run2/", Regex::new(r"\.bai$").unwrap());
    let run2 = source.list(&bai_of_run2).await.unwrap();
    assert_eq!(
        run2.len(),
        (0..1500)
            .filter(|index| index % 3 == 2 && index % 5 == 0)
            .count()
    );
    let none = source
        .list(&S3Selection::new(
            BUCKET,
            "runs/2025/",
            Regex::new("").unwrap(),
        ))
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_placeholders_are_skipped() {
    let server = server().await;
    server
        .put_object(BUCKET, "folder/", Bytes::new())
        .await
        .expect("placeholder");
    server
        .put_object(BUCKET, "folder/a.bam", "a")
        .await
        .expect("seed");
    let source = source(&options(&server.endpoint()));
    let listed = source
        .list(&S3Selection::new(BUCKET, "folder", Regex::new("").unwrap()))
        .await
        .unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|object| object.path.as_str())
            .collect::<Vec<_>>(),
        vec!["folder/a.bam"]
    );
}
