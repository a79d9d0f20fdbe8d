//! The STS endpoint and the S3 server's credential checks driven by the real Rust SDK clients
//! (`aws-sdk-sts`, `aws-sdk-s3`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::error::ProvideErrorMetadata as _;
use aws_sdk_s3::primitives::ByteStream;
use keyledger_testkit::iam::{Policy, Role};

use crate::lab::*;

/// One S3 request a test makes with some credentials.
#[derive(Clone, Copy, Debug)]
enum Probe {
    List(&'static str),
    ListWithoutPrefix,
    Get(&'static str),
    Head(&'static str),
    Put(&'static str),
    ListBuckets,
}

/// `ok <what came back>` or `<status> <code>`.
async fn probe(client: &aws_sdk_s3::Client, probe: Probe) -> String {
    fn refused<E: aws_sdk_s3::error::ProvideErrorMetadata>(
        error: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> String {
        let status = error
            .raw_response()
            .map_or(0, |response| response.status().as_u16());
        match error.code() {
            Some(code) => format!("{status} {code}"),
            None => format!("{status}"),
        }
    }
    match probe {
        Probe::List(prefix) => match client
            .list_objects_v2()
            .bucket("lab")
            .prefix(prefix)
            .send()
            .await
        {
            Ok(output) => {
                let keys: Vec<&str> = output.contents().iter().filter_map(|o| o.key()).collect();
                format!("ok {}", keys.join(","))
            }
            Err(error) => refused(error),
        },
        Probe::ListWithoutPrefix => match client.list_objects_v2().bucket("lab").send().await {
            Ok(output) => format!("ok {}", output.contents().len()),
            Err(error) => refused(error),
        },
        Probe::Get(key) => match client.get_object().bucket("lab").key(key).send().await {
            Ok(output) => {
                let bytes = output.body.collect().await.unwrap().into_bytes();
                format!("ok {}", String::from_utf8_lossy(&bytes))
            }
            Err(error) => refused(error),
        },
        Probe::Head(key) => match client.head_object().bucket("lab").key(key).send().await {
            Ok(output) => format!("ok {}", output.content_length().unwrap_or_default()),
            Err(error) => refused(error),
        },
        Probe::Put(key) => match client
            .put_object()
            .bucket("lab")
            .key(key)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
        {
            Ok(_) => "ok".to_owned(),
            Err(error) => refused(error),
        },
        Probe::ListBuckets => match client.list_buckets().send().await {
            Ok(output) => format!("ok {}", output.buckets().len()),
            Err(error) => refused(error),
        },
    }
}

/// Runs every probe and compares all answers at once, so a failure shows the whole picture.
async fn check_access(client: &aws_sdk_s3::Client, cases: &[(Probe, &str)]) {
    let mut actual = Vec::new();
    for (request, _) in cases {
        actual.push(format!("{request:?} → {}", probe(client, *request).await));
    }
    let expected: Vec<String> = cases
        .iter()
        .map(|(request, answer)| format!("{request:?} → {answer}"))
        .collect();
    assert_eq!(actual, expected);
}

/// What a credential limited to `lab/runs/` read-only may and may not do.
const RUNS_ONLY: &[(Probe, &str)] = &[
    (Probe::List("runs/"), "ok runs/2024/b.fastq,runs/a.fastq"),
    (Probe::List("runs/2024/"), "ok runs/2024/b.fastq"),
    (Probe::Get("runs/a.fastq"), "ok ACGTACGT"),
    (Probe::Head("runs/2024/b.fastq"), "ok 5"),
    (Probe::List("other/"), "403 AccessDenied"),
    (Probe::List("runs"), "403 AccessDenied"),
    (Probe::ListWithoutPrefix, "403 AccessDenied"),
    (Probe::Get("other/c.fastq"), "403 AccessDenied"),
    (Probe::Head("other/c.fastq"), "403"),
    (Probe::Put("runs/new.fastq"), "403 AccessDenied"),
    (Probe::ListBuckets, "403 AccessDenied"),
];

async fn assume(
    lab: &Lab,
    session_name: &str,
    configure: impl FnOnce(
        aws_sdk_sts::operation::assume_role::builders::AssumeRoleFluentBuilder,
    )
        -> aws_sdk_sts::operation::assume_role::builders::AssumeRoleFluentBuilder,
) -> Result<aws_sdk_sts::operation::assume_role::AssumeRoleOutput, String> {
    let client = sts_client(lab, PLATFORM_KEY, PLATFORM_SECRET, None);
    let request = client
        .assume_role()
        .role_arn(ROLE_ARN)
        .role_session_name(session_name)
        .external_id(EXTERNAL_ID);
    configure(request).send().await.map_err(|error| {
        let status = error
            .raw_response()
            .map_or(0, |response| response.status().as_u16());
        format!(
            "{status} {}: {}",
            error.code().unwrap_or("?"),
            error.message().unwrap_or("?")
        )
    })
}

fn seconds_from_now(at: &aws_sdk_sts::primitives::DateTime) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    at.secs() - i64::try_from(now).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assumed_role_credentials_read_under_the_prefix_and_nowhere_else() {
    let lab = lab().await;
    let output = assume(&lab, "ingest-42", |request| request).await.unwrap();
    let credentials = output.credentials().unwrap();
    assert!(credentials.access_key_id().starts_with("ASIA"));
    assert_eq!(credentials.access_key_id().len(), 20);
    assert_eq!(credentials.secret_access_key().len(), 40);
    assert!(credentials.session_token().len() > 100);
    // Default duration: one hour.
    let left = seconds_from_now(credentials.expiration());
    assert!((3540..=3600).contains(&left), "{left}");
    let user = output.assumed_role_user().unwrap();
    assert_eq!(
        user.arn(),
        "arn:aws:sts::111122223333:assumed-role/lab-reader/ingest-42"
    );
    assert!(user.assumed_role_id().starts_with("AROA"));
    assert!(user.assumed_role_id().ends_with(":ingest-42"));

    let recorded = lab.s3.iam().assumed_roles();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].session_name, "ingest-42");
    assert_eq!(recorded[0].caller_access_key_id, PLATFORM_KEY);
    assert_eq!(recorded[0].external_id.as_deref(), Some(EXTERNAL_ID));
    assert_eq!(
        recorded[0].issued_access_key_id,
        credentials.access_key_id()
    );

    let client = s3_client(
        &lab,
        credentials.access_key_id(),
        credentials.secret_access_key(),
        Some(credentials.session_token()),
    );
    check_access(&client, RUNS_ONLY).await;

    let error = client
        .list_objects_v2()
        .bucket("lab")
        .prefix("other/")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error.message(),
        Some(
            "User: arn:aws:sts::111122223333:assumed-role/lab-reader/ingest-42 is not authorized \
             to perform: s3:ListBucket on resource: \"arn:aws:s3:::lab\" because no \
             identity-based policy allows the s3:ListBucket action"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assume_role_refusals_use_aws_codes_and_words() {
    let lab = lab().await;
    let denied = format!(
        "403 AccessDenied: User: {PLATFORM_ARN} is not authorized to perform: sts:AssumeRole on resource: {ROLE_ARN}"
    );
    let check = |answer: Result<_, String>, expected: &str| {
        assert_eq!(
            answer.map(|_| "ok".to_owned()).unwrap_or_else(|e| e),
            expected
        );
    };
    check(
        assume(&lab, "wrong-id", |r| r.external_id("someone-elses-id")).await,
        &denied,
    );
    check(
        assume(&lab, "no-id", |r| r.set_external_id(None)).await,
        &denied,
    );
    check(
        assume(&lab, "unknown", |r| {
            r.role_arn("arn:aws:iam::111122223333:role/nobody")
        })
        .await,
        &format!(
            "403 AccessDenied: User: {PLATFORM_ARN} is not authorized to perform: sts:AssumeRole \
             on resource: arn:aws:iam::111122223333:role/nobody"
        ),
    );
    check(
        assume(&lab, "too-long", |r| r.duration_seconds(3 * 3600)).await,
        "400 ValidationError: The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
    );
    check(
        assume(&lab, "too-short", |r| r.duration_seconds(899)).await,
        "400 ValidationError: 1 validation error detected: Value '899' at 'durationSeconds' failed \
         to satisfy constraint: Member must have value greater than or equal to 900",
    );
    check(
        assume(&lab, "bad name!", |r| r).await,
        "400 ValidationError: 1 validation error detected: Value 'bad name!' at 'roleSessionName' \
         failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*",
    );
    check(
        assume(&lab, "bad-policy", |r| r.policy("{not json")).await,
        "400 MalformedPolicyDocument: the policy is not valid JSON: key must be a string at line 1 column 2",
    );

    // A principal the role does not trust, even with the right external ID.
    let outsider = sts_client(&lab, OUTSIDER_KEY, OUTSIDER_SECRET, None);
    let error = outsider
        .assume_role()
        .role_arn(ROLE_ARN)
        .role_session_name("sneaky")
        .external_id(EXTERNAL_ID)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("AccessDenied"));
    assert_eq!(
        error.message(),
        Some(
            "User: arn:aws:iam::123456789012:user/outsider is not authorized to perform: \
             sts:AssumeRole on resource: arn:aws:iam::111122223333:role/lab-reader"
        )
    );

    // Wrong secret, unknown key.
    let wrong_secret = sts_client(&lab, PLATFORM_KEY, OUTSIDER_SECRET, None);
    let error = wrong_secret.get_caller_identity().send().await.unwrap_err();
    assert_eq!(error.code(), Some("SignatureDoesNotMatch"));
    let unknown = sts_client(&lab, "AKIAUNKNOWN000000001", PLATFORM_SECRET, None);
    let error = unknown.get_caller_identity().send().await.unwrap_err();
    assert_eq!(error.code(), Some("InvalidClientTokenId"));
    assert!(lab.s3.iam().assumed_roles().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_policy_and_duration_narrow_the_role() {
    let lab = lab().await;
    // A role that may read the whole bucket, narrowed by the session policy to `runs/`.
    let wide = "arn:aws:iam::111122223333:role/lab-wide";
    lab.s3.iam().add_role(
        Role::new(wide, Policy::read_only("lab", ""))
            .trust(PLATFORM_ARN)
            .max_session(Duration::from_secs(4 * 3600)),
    );
    let client = sts_client(&lab, PLATFORM_KEY, PLATFORM_SECRET, None);
    let assume = |policy: Option<String>| {
        client
            .assume_role()
            .role_arn(wide)
            .role_session_name("narrowed")
            .duration_seconds(900)
            .set_policy(policy)
            .send()
    };
    let wide_output = assume(None).await.unwrap();
    let credentials = wide_output.credentials().unwrap();
    let left = seconds_from_now(credentials.expiration());
    assert!((840..=900).contains(&left), "{left}");
    let wide_client = s3_client(
        &lab,
        credentials.access_key_id(),
        credentials.secret_access_key(),
        Some(credentials.session_token()),
    );
    check_access(
        &wide_client,
        &[
            (Probe::List("other/"), "ok other/c.fastq"),
            (Probe::Get("other/c.fastq"), "ok GGGG"),
            (Probe::Put("other/new.fastq"), "403 AccessDenied"),
        ],
    )
    .await;

    let narrowed = assume(Some(Policy::read_only("lab", "runs/").to_json()))
        .await
        .unwrap();
    let credentials = narrowed.credentials().unwrap();
    let narrow_client = s3_client(
        &lab,
        credentials.access_key_id(),
        credentials.secret_access_key(),
        Some(credentials.session_token()),
    );
    check_access(&narrow_client, RUNS_ONLY).await;
    let error = narrow_client
        .get_object()
        .bucket("lab")
        .key("other/c.fastq")
        .send()
        .await
        .unwrap_err();
    assert!(
        error
            .message()
            .unwrap()
            .ends_with("because no session policy allows the s3:GetObject action"),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_forged_session_credentials_are_refused() {
    let lab = lab().await;
    let output = assume(&lab, "short", |r| r.duration_seconds(900))
        .await
        .unwrap();
    let credentials = output.credentials().unwrap();
    let (key, secret, token) = (
        credentials.access_key_id(),
        credentials.secret_access_key(),
        credentials.session_token(),
    );
    let client = s3_client(&lab, key, secret, Some(token));
    check_access(&client, &[(Probe::Get("runs/a.fastq"), "ok ACGTACGT")]).await;

    // The same key with another token, or with none.
    let forged = s3_client(&lab, key, secret, Some("IQoJb3JpZ2luX2VjEForged"));
    check_access(&forged, &[(Probe::Get("runs/a.fastq"), "400 InvalidToken")]).await;
    let bare = s3_client(&lab, key, secret, None);
    check_access(
        &bare,
        &[(Probe::Get("runs/a.fastq"), "403 InvalidAccessKeyId")],
    )
    .await;
    let long_lived_with_token = s3_client(&lab, ADMIN_KEY, ADMIN_SECRET, Some(token));
    check_access(
        &long_lived_with_token,
        &[(Probe::Get("runs/a.fastq"), "400 InvalidToken")],
    )
    .await;

    // 100 s of margin for the real time this test takes.
    lab.s3.iam().clock().advance(Duration::from_secs(800));
    check_access(
        &client,
        &[(Probe::List("runs/2024/"), "ok runs/2024/b.fastq")],
    )
    .await;
    lab.s3.iam().clock().advance(Duration::from_secs(100));
    check_access(
        &client,
        &[
            (Probe::List("runs/"), "400 ExpiredToken"),
            (Probe::Get("runs/a.fastq"), "400 ExpiredToken"),
        ],
    )
    .await;
    let error = client
        .get_object()
        .bucket("lab")
        .key("runs/a.fastq")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.message(), Some("The provided token has expired."));

    let sts = sts_client(&lab, key, secret, Some(token));
    let error = sts.get_caller_identity().send().await.unwrap_err();
    assert_eq!(error.code(), Some("ExpiredToken"));
    assert_eq!(
        error.message(),
        Some("The security token included in the request is expired")
    );
    // Long-lived keys do not expire.
    check_access(
        &s3_client(&lab, ADMIN_KEY, ADMIN_SECRET, None),
        &[(Probe::Get("runs/a.fastq"), "ok ACGTACGT")],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_identity_names_users_and_role_sessions() {
    let lab = lab().await;
    let identity = sts_client(&lab, PLATFORM_KEY, PLATFORM_SECRET, None)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(identity.arn(), Some(PLATFORM_ARN));
    assert_eq!(identity.account(), Some("123456789012"));
    assert!(identity.user_id().unwrap().starts_with("AIDA"));

    let output = assume(&lab, "who-am-i", |r| r).await.unwrap();
    let credentials = output.credentials().unwrap();
    let session = sts_client(
        &lab,
        credentials.access_key_id(),
        credentials.secret_access_key(),
        Some(credentials.session_token()),
    );
    let identity = session.get_caller_identity().send().await.unwrap();
    assert_eq!(
        identity.arn(),
        Some("arn:aws:sts::111122223333:assumed-role/lab-reader/who-am-i")
    );
    assert_eq!(identity.account(), Some("111122223333"));
    assert_eq!(
        identity.user_id(),
        output
            .assumed_role_user()
            .map(|user| user.assumed_role_id())
    );

    // Role chaining: a role that trusts lab-reader, capped at one hour whatever its maximum.
    let chained = "arn:aws:iam::111122223333:role/lab-chained";
    lab.s3.iam().add_role(
        Role::new(chained, Policy::read_only("lab", "runs/2024/"))
            .trust(ROLE_ARN)
            .max_session(Duration::from_secs(4 * 3600)),
    );
    let chain = |seconds| {
        session
            .assume_role()
            .role_arn(chained)
            .role_session_name("chained")
            .duration_seconds(seconds)
            .send()
    };
    let error = chain(7200).await.unwrap_err();
    assert_eq!(error.code(), Some("ValidationError"));
    assert_eq!(
        error.message(),
        Some(
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining."
        )
    );
    let output = chain(3600).await.unwrap();
    assert_eq!(
        output.assumed_role_user().map(|user| user.arn()),
        Some("arn:aws:sts::111122223333:assumed-role/lab-chained/chained")
    );
    // The role's own session is not trusted by a role that trusts only the platform key.
    let error = session
        .assume_role()
        .role_arn(ROLE_ARN)
        .role_session_name("again")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("AccessDenied"));
    // A role session may not get a session token.
    let error = session.get_session_token().send().await.unwrap_err();
    assert_eq!(error.code(), Some("AccessDenied"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_tokens_carry_their_users_bounds() {
    let lab = lab().await;
    let output = sts_client(&lab, LIMITED_KEY, LIMITED_SECRET, None)
        .get_session_token()
        .duration_seconds(900)
        .send()
        .await
        .unwrap();
    let credentials = output.credentials().unwrap();
    let client = s3_client(
        &lab,
        credentials.access_key_id(),
        credentials.secret_access_key(),
        Some(credentials.session_token()),
    );
    check_access(&client, RUNS_ONLY).await;
    let identity = sts_client(
        &lab,
        credentials.access_key_id(),
        credentials.secret_access_key(),
        Some(credentials.session_token()),
    )
    .get_caller_identity()
    .send()
    .await
    .unwrap();
    assert_eq!(
        identity.arn(),
        Some("arn:aws:iam::123456789012:user/lab-runs")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_lived_key_limited_to_a_prefix_reads_only_there() {
    let lab = lab().await;
    let limited = s3_client(&lab, LIMITED_KEY, LIMITED_SECRET, None);
    check_access(&limited, RUNS_ONLY).await;
    // Keys without a policy keep full access.
    let admin = s3_client(&lab, ADMIN_KEY, ADMIN_SECRET, None);
    check_access(
        &admin,
        &[
            (Probe::ListWithoutPrefix, "ok 3"),
            (Probe::Get("other/c.fastq"), "ok GGGG"),
            (Probe::Put("other/new.fastq"), "ok"),
            (Probe::ListBuckets, "ok 1"),
        ],
    )
    .await;
    let unknown = s3_client(&lab, "AKIAUNKNOWN000000001", LIMITED_SECRET, None);
    check_access(
        &unknown,
        &[(Probe::Get("runs/a.fastq"), "403 InvalidAccessKeyId")],
    )
    .await;
}
