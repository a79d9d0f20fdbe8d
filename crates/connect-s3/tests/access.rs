//! "Save and test", rejected keys, missing buckets, and secrets kept out of every output.

use keyledger_connect_s3::{
    AccessCheck, AwsCredentials, S3Error, S3Options, S3Selection, S3Source, Source,
};
use regex::Regex;

use crate::support::{
    BUCKET, SECRET, assert_no_secret, fetch, options, remote, server, source, source_with_secret,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_access_lists_buckets_or_one_bucket() {
    let server = server().await;
    server.create_bucket("empty").await.unwrap();
    server.put_object(BUCKET, "a", "x").await.unwrap();
    let source = source(&options(&server.endpoint()));

    assert_eq!(
        source.check_access().await.unwrap(),
        AccessCheck::Buckets { count: 2 }
    );
    assert_eq!(
        source.check_bucket_access(BUCKET).await.unwrap(),
        AccessCheck::Bucket {
            bucket: BUCKET.to_owned(),
            is_empty: false
        }
    );
    assert_eq!(
        source.check_bucket_access("empty").await.unwrap(),
        AccessCheck::Bucket {
            bucket: "empty".to_owned(),
            is_empty: true
        }
    );
    let error = source.check_bucket_access("missing").await.unwrap_err();
    assert!(
        matches!(error, S3Error::NoSuchBucket { ref bucket } if bucket == "missing"),
        "{error:?}"
    );
    let error = source
        .list(&S3Selection::new("missing", "", Regex::new("").unwrap()))
        .await
        .unwrap_err();
    assert!(matches!(error, S3Error::NoSuchBucket { .. }), "{error:?}");
    assert!(
        error.to_string().contains("`missing` does not exist"),
        "{error}"
    );
}

/// A wrong secret is reported as a rejected key by every operation, and neither the real
/// secret nor the wrong one shows up in any error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_rejected_without_leaking_it() {
    let server = server().await;
    server.put_object(BUCKET, "small", "content").await.unwrap();
    server
        .put_generated_object(BUCKET, "large", 3000, 1)
        .await
        .unwrap();
    let options = S3Options {
        part_size: 1000,
        ..options(&server.endpoint())
    };
    let object = remote(&server, &source(&options), "small").await;
    // Fetched in parts, so it starts with a HEAD, whose 403 has no error code.
    let large = remote(&server, &source(&options), "large").await;
    let wrong_secret = "CANARYwrong0000000keyledger0000000000000X";
    let wrong = source_with_secret(&options, wrong_secret);
    let dir = tempfile::tempdir().unwrap();

    let mut errors = vec![
        wrong.check_access().await.unwrap_err(),
        wrong.check_bucket_access(BUCKET).await.unwrap_err(),
        wrong
            .list(&S3Selection::new(BUCKET, "", Regex::new("").unwrap()))
            .await
            .unwrap_err(),
        fetch(&wrong, &object, &dir.path().join("small.partial"))
            .await
            .0
            .unwrap_err(),
        fetch(&wrong, &large, &dir.path().join("large.partial"))
            .await
            .0
            .unwrap_err(),
    ];
    for error in &errors {
        assert!(
            matches!(error, S3Error::CredentialsRejected { .. }),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("the stored AWS key was rejected by S3"),
            "{error}"
        );
        assert!(!error.to_string().contains(wrong_secret));
    }

    // Unknown access key id.
    let unknown = S3Source::new(
        &AwsCredentials {
            access_key_id: "AKIAUNKNOWNUNKNOWN00".to_owned(),
            secret_access_key: SECRET.to_owned(),
            region: "us-east-1".to_owned(),
            session_token: None,
            expires_at: None,
        },
        &options,
    )
    .unwrap();
    let error = unknown.check_bucket_access(BUCKET).await.unwrap_err();
    assert!(
        matches!(error, S3Error::CredentialsRejected { .. }),
        "{error:?}"
    );
    errors.push(error);

    // A connection refused and invalid input, for good measure.
    let closed = source(&S3Options {
        max_attempts: 2,
        ..crate::support::options("http://127.0.0.1:9")
    });
    errors.push(closed.check_bucket_access(BUCKET).await.unwrap_err());
    errors.push(S3Source::new(&crate::support::credentials(""), &options).unwrap_err());

    for error in &errors {
        assert_no_secret(error);
        assert!(!format!("{error:?}").contains(wrong_secret));
    }
    let shown = format!(
        "{:?} {:?}",
        source(&options),
        crate::support::credentials(SECRET)
    );
    assert!(!shown.contains(SECRET), "{shown}");
}
