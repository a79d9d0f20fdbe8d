//! The `s3://` sample store (decision 0029) against the testkit S3 server: an object appears
//! only when the bytes sent are the verified ones; a mismatch aborts the upload and leaves
//! nothing visible; nothing is replaced; unrecorded objects are swept.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use keyledger_domain::{Event, KeyDuration};
use keyledger_ingest::{JobState, ObjectTarget};
use keyledger_testkit::iam::AccessKey;
use keyledger_testkit::s3::{S3Server, generated_bytes};
use object_store::ObjectStoreExt;

use crate::support::{
    ACCESS_KEY_ID as USER_ID, BUCKET, SECRET as USER_SECRET, assert_finished, aws_selection,
    harness, s3_options,
};
const STORE_ID: &str = "AKIASTOREOPERATOR001";
const STORE_SECRET: &str = "storeSecretKey0123456789abcdefghijklmnop";

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

async fn setup() -> (S3Server, ObjectTarget) {
    let s3 = S3Server::start(USER_ID, USER_SECRET).await.unwrap();
    s3.create_bucket("store").await.unwrap();
    // The store's identity is the operator's own, not the users' key.
    s3.iam()
        .add_access_key(AccessKey::new(STORE_ID, STORE_SECRET));
    let options = [
        ("ENDPOINT", s3.endpoint()),
        ("REGION", "us-east-1".to_owned()),
        ("ACCESS_KEY_ID", STORE_ID.to_owned()),
        ("SECRET_ACCESS_KEY", STORE_SECRET.to_owned()),
        ("ALLOW_HTTP", "true".to_owned()),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    let target = ObjectTarget::from_url("s3://store/shared", options).unwrap();
    (s3, target)
}

async fn listed(target: &ObjectTarget) -> Vec<String> {
    let mut keys: Vec<String> = target
        .inner()
        .list(None)
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_appears_only_with_the_verified_bytes() {
    let (_s3, target) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    // Two parts and a bit: the multipart path for real.
    let bytes: Vec<u8> = (0..(17 * 1024 * 1024 + 123))
        .map(|i| (i * 7) as u8)
        .collect();
    let partial = dir.path().join("0.partial");
    std::fs::write(&partial, &bytes).unwrap();
    let key = target.key("alice", "batch-1", "run/a.bin").unwrap();
    assert_eq!(key.as_ref(), "shared/alice/batch-1/run/a.bin");

    // The file on disk is not what was verified (a bit flipped after the check): aborted.
    let mut wrong = sha256(&bytes);
    wrong[0] ^= 1;
    let refused = target
        .publish(&partial, &key, bytes.len() as u64, &wrong)
        .await
        .unwrap_err();
    assert!(refused.contains("aborted"), "{refused}");
    let refused = target
        .publish(&partial, &key, bytes.len() as u64 + 1, &sha256(&bytes))
        .await
        .unwrap_err();
    assert!(refused.contains("aborted"), "{refused}");
    assert_eq!(
        listed(&target).await,
        Vec::<String>::new(),
        "nothing visible"
    );

    target
        .publish(&partial, &key, bytes.len() as u64, &sha256(&bytes))
        .await
        .unwrap();
    assert_eq!(listed(&target).await, vec![key.to_string()]);
    let stored = target
        .inner()
        .get(&key)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256(&stored), sha256(&bytes));

    // Nothing is replaced.
    let again = target
        .publish(&partial, &key, bytes.len() as u64, &sha256(&bytes))
        .await
        .unwrap_err();
    assert!(again.contains("already exists"), "{again}");

    // A small file and an empty one (one part each).
    for (name, content) in [("b.csv", b"x,y\n1,2\n".to_vec()), ("empty", Vec::new())] {
        std::fs::write(&partial, &content).unwrap();
        let key = target.key("alice", "batch-1", name).unwrap();
        target
            .publish(&partial, &key, content.len() as u64, &sha256(&content))
            .await
            .unwrap();
        let stored = target
            .inner()
            .get(&key)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(stored.as_ref(), content.as_slice(), "{name}");
    }

    // A resumed job removes what no event names.
    let keep: HashSet<String> = ["run/a.bin".to_owned()].into();
    let removed = target
        .remove_unrecorded("alice", "batch-1", &keep)
        .await
        .unwrap();
    assert_eq!(removed, 2);
    assert_eq!(listed(&target).await, vec![key.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_store_secret_is_refused_without_echoing_it() {
    let (s3, _) = setup().await;
    let options = [
        ("ENDPOINT", s3.endpoint()),
        ("ACCESS_KEY_ID", STORE_ID.to_owned()),
        (
            "SECRET_ACCESS_KEY",
            "CANARYwrongSecret0123456789".to_owned(),
        ),
        ("ALLOW_HTTP", "true".to_owned()),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    let target = ObjectTarget::from_url("s3://store", options).unwrap();
    assert!(!format!("{target:?}").contains("CANARY"));
    let dir = tempfile::tempdir().unwrap();
    let partial = dir.path().join("0.partial");
    std::fs::write(&partial, b"data").unwrap();
    let key = target.key("alice", "b", "f").unwrap();
    let error = target
        .publish(&partial, &key, 4, &sha256(b"data"))
        .await
        .unwrap_err();
    assert!(!error.contains("CANARY"), "{error}");

    let bad = ObjectTarget::from_url("s3://store", [("NOPE".to_owned(), "x".to_owned())]);
    assert!(bad.unwrap_err().contains("KEYLEDGER_STORE_NOPE"));
    assert!(ObjectTarget::from_url("file:///x", []).is_err());
    assert!(ObjectTarget::from_url("s3:///x", []).is_err());
}

/// `keyledger serve`'s embedded jobs on an `s3://` store: the files are objects, nothing but
/// the (emptied) partial area is on the local disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_job_stores_its_files_as_objects() {
    let (s3, target) = setup().await;
    s3.create_bucket(BUCKET).await.unwrap();
    let sizes = [10usize, 70_000, 9 * 1024 * 1024 + 5];
    let objects: Vec<(String, Bytes)> = sizes
        .iter()
        .enumerate()
        .map(|(i, size)| {
            let bytes = generated_bytes(i as u64, 0, *size);
            (format!("run/f{i}.bin"), Bytes::from(bytes))
        })
        .collect();
    s3.put_objects(BUCKET, objects.clone()).await.unwrap();
    let target = Arc::new(target);
    let h = harness(|config| {
        config.s3 = s3_options(&s3.endpoint());
        config.object_store = Some(Arc::clone(&target));
    })
    .await;
    h.store_aws_key(USER_SECRET, KeyDuration::Days(30)).await;

    let view = h.ingest(aws_selection(BUCKET, "run/", "")).await;

    assert_finished(&view, JobState::Completed);
    let fetched: Vec<(String, [u8; 32])> = h
        .events_of(&view.id)
        .into_iter()
        .filter_map(|event| match event {
            Event::IngestionFileFetched { path, sha256, .. } => Some((path, sha256)),
            _ => None,
        })
        .collect();
    assert_eq!(fetched.len(), 3);
    // Stored under the batch by their path below the selected prefix.
    let name = |key: &str| key.strip_prefix("run/").unwrap().to_owned();
    let mut expected: Vec<String> = objects
        .iter()
        .map(|(key, _)| format!("shared/{}/{}", view.store_path, name(key)))
        .collect();
    expected.sort();
    assert_eq!(listed(&target).await, expected);
    for (key, bytes) in &objects {
        let key = &name(key);
        let stored_key = target
            .key_of(&format!("{}/{key}", view.store_path))
            .unwrap();
        let stored = target
            .inner()
            .get(&stored_key)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(stored, *bytes, "{key}");
        let recorded = fetched.iter().find(|(path, _)| path == key).unwrap();
        assert_eq!(recorded.1, sha256(bytes), "{key}");
    }
    assert!(
        h.stored_files().is_empty(),
        "nothing stored on the local disk"
    );
    assert!(h.partial_leftovers().is_empty());
}
