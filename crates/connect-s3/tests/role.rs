//! A role source: AssumeRole with the platform's key, the external ID and a session policy;
//! each AssumeRole reported to the hook; a session S3 calls expired replaced once per request,
//! for listings (`with_retries`), HEADs (a bodiless 400) and ranged GETs alike.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keyledger_connect_s3::{
    AssumeRoleSettings, AwsCredentials, OnAssumed, S3Error, S3Options, S3Selection, S3Source,
    Source, read_only_session_policy,
};
use keyledger_testkit::iam::{AccessKey, Policy, Role};
use keyledger_testkit::sts::StsServer;
use regex::Regex;

use crate::support::{BUCKET, fetch, options, server, sha256};

const PLATFORM_KEY: &str = "AKIAROLEPLATFORM0002";
const PLATFORM_SECRET: &str = "rolePlatformSecret0123456789abcdefghijkm";
const ROLE: &str = "arn:aws:iam::111122223333:role/reader";

fn settings(sts: &StsServer, external_id: &str) -> AssumeRoleSettings {
    AssumeRoleSettings {
        role_arn: ROLE.to_owned(),
        external_id: external_id.to_owned(),
        session_name: "keyledger-test".to_owned(),
        session_policy: Some(read_only_session_policy(BUCKET, "runs/").unwrap()),
        duration: Duration::from_secs(900),
        region: "us-east-1".to_owned(),
        sts_endpoint: Some(sts.endpoint()),
        base: AwsCredentials {
            access_key_id: PLATFORM_KEY.to_owned(),
            secret_access_key: PLATFORM_SECRET.to_owned(),
            region: "us-east-1".to_owned(),
            session_token: None,
            expires_at: None,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_replaced_once_per_request_and_the_work_goes_on() {
    let server = server().await;
    let content = keyledger_testkit::s3::generated_bytes(3, 0, 700_000);
    server
        .put_object(BUCKET, "runs/big.bam", content.clone())
        .await
        .unwrap();
    server
        .iam()
        .add_access_key(AccessKey::new(PLATFORM_KEY, PLATFORM_SECRET));
    server.iam().add_role(
        Role::new(ROLE, Policy::allow_all())
            .trust(PLATFORM_KEY)
            .external_id("kl-test"),
    );
    let sts = StsServer::start(server.iam().clone()).await.unwrap();
    let assumed = Arc::new(AtomicUsize::new(0));
    let hook: OnAssumed = {
        let assumed = Arc::clone(&assumed);
        Arc::new(move |_| {
            assumed.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {})
        })
    };
    let options = S3Options {
        part_size: 256 * 1024,
        concurrency: 3,
        ..options(&server.endpoint())
    };
    let source = S3Source::assuming_role(settings(&sts, "kl-test"), &options, Some(hook)).unwrap();
    let runs = S3Selection::new(BUCKET, "runs/", Regex::new("").unwrap());

    let listed = source.list(&runs).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(assumed.load(Ordering::SeqCst), 1);
    // The session policy narrows the role (which allows everything) to runs/.
    let other = S3Selection::new(BUCKET, "other/", Regex::new("").unwrap());
    assert!(matches!(
        source.list(&other).await,
        Err(S3Error::AccessDenied { .. })
    ));

    // The listing after the session's end: ExpiredToken, one AssumeRole, the listing again.
    server.iam().clock().advance(Duration::from_secs(3600));
    let mut object = source.list(&runs).await.unwrap().remove(0);
    assert_eq!(assumed.load(Ordering::SeqCst), 2);
    object.version = server
        .client()
        .head_object()
        .bucket(BUCKET)
        .key("runs/big.bam")
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned();

    // The fetch after the next session's end: its HEAD and parts find it expired; the parts
    // that find it so first replace it, and the rest use the new one.
    server.iam().clock().advance(Duration::from_secs(3600));
    let dir = tempfile::tempdir().unwrap();
    let (fetched, _) = fetch(&source, &object, &dir.path().join("big.partial")).await;
    assert_eq!(fetched.unwrap().sha256, sha256(&content));
    let after = assumed.load(Ordering::SeqCst);
    assert!(
        (3..=3 + 3).contains(&after),
        "one AssumeRole per request at most, shared by requests that failed together: {after}"
    );
    assert_eq!(server.iam().assumed_roles().len(), after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_external_id_is_refused_in_sts_words() {
    let server = server().await;
    server
        .iam()
        .add_access_key(AccessKey::new(PLATFORM_KEY, PLATFORM_SECRET));
    server.iam().add_role(
        Role::new(ROLE, Policy::allow_all())
            .trust(PLATFORM_KEY)
            .external_id("kl-right"),
    );
    let sts = StsServer::start(server.iam().clone()).await.unwrap();
    let source = S3Source::assuming_role(
        settings(&sts, "kl-wrong"),
        &options(&server.endpoint()),
        None,
    )
    .unwrap();
    let failure = source.assume_role_now().await.unwrap().unwrap_err();
    assert!(
        failure.detail.contains("STS said AccessDenied")
            && failure.detail.contains("external ID kl-wrong"),
        "{}",
        failure.detail
    );
    assert!(!failure.detail.contains(PLATFORM_SECRET));
    assert!(server.iam().assumed_roles().is_empty());
}
