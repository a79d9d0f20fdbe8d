//! The STS endpoint and the S3 server's credential checks driven by the real awscli
//! (`<repo>/.venv/bin/aws`): `aws sts assume-role`, `aws sts get-caller-identity`, and
//! `aws s3 ls` / `aws s3 cp` with the issued credentials in the environment.

use std::time::Duration;

use keyledger_testkit::awscli::{CliCredentials, CliOutput, run};
use serde_json::Value;

use crate::lab::*;

/// Owned credentials, to move into a blocking task.
#[derive(Clone)]
struct Keys {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl Keys {
    fn long_lived(access_key_id: &str, secret_access_key: &str) -> Keys {
        Keys {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
            session_token: None,
        }
    }

    fn from_cli(credentials: &Value) -> Keys {
        let field = |name: &str| credentials[name].as_str().unwrap().to_owned();
        Keys {
            access_key_id: field("AccessKeyId"),
            secret_access_key: field("SecretAccessKey"),
            session_token: Some(field("SessionToken")),
        }
    }
}

/// Runs awscli off the runtime's threads (the servers answer on them).
async fn aws(endpoint: String, keys: &Keys, args: &[&str]) -> CliOutput {
    let keys = keys.clone();
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let credentials = CliCredentials {
            access_key_id: &keys.access_key_id,
            secret_access_key: &keys.secret_access_key,
            session_token: keys.session_token.as_deref(),
        };
        run(&endpoint, &credentials, &args, &[]).unwrap()
    })
    .await
    .unwrap()
}

fn json(output: &CliOutput) -> Value {
    assert!(output.success, "awscli failed: {}", output.stderr);
    serde_json::from_str(&output.stdout).unwrap()
}

fn assume_args<'a>(session_name: &'a str, external_id: &'a str) -> Vec<&'a str> {
    vec![
        "sts",
        "assume-role",
        "--role-arn",
        ROLE_ARN,
        "--role-session-name",
        session_name,
        "--external-id",
        external_id,
        "--output",
        "json",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awscli_assumes_the_role_and_reads_only_under_the_prefix() {
    let lab = lab().await;
    let platform = Keys::long_lived(PLATFORM_KEY, PLATFORM_SECRET);
    let assumed = json(
        &aws(
            lab.sts.endpoint(),
            &platform,
            &assume_args("cli-run", EXTERNAL_ID),
        )
        .await,
    );
    assert_eq!(
        assumed["AssumedRoleUser"]["Arn"],
        "arn:aws:sts::111122223333:assumed-role/lab-reader/cli-run"
    );
    let session = Keys::from_cli(&assumed["Credentials"]);
    assert!(session.access_key_id.starts_with("ASIA"));

    let listed = aws(lab.s3.endpoint(), &session, &["s3", "ls", "s3://lab/runs/"]).await;
    assert!(listed.success, "{}", listed.stderr);
    assert!(listed.stdout.contains("a.fastq"), "{}", listed.stdout);
    assert!(listed.stdout.contains("PRE 2024/"), "{}", listed.stdout);

    let copied = aws(
        lab.s3.endpoint(),
        &session,
        &["s3", "cp", "s3://lab/runs/a.fastq", "-"],
    )
    .await;
    assert!(copied.success, "{}", copied.stderr);
    assert_eq!(copied.stdout, "ACGTACGT");

    let outside = aws(
        lab.s3.endpoint(),
        &session,
        &["s3", "ls", "s3://lab/other/"],
    )
    .await;
    assert!(!outside.success);
    assert!(
        outside
            .stderr
            .contains("An error occurred (AccessDenied) when calling the ListObjectsV2 operation"),
        "{}",
        outside.stderr
    );
    let outside = aws(
        lab.s3.endpoint(),
        &session,
        &["s3", "cp", "s3://lab/other/c.fastq", "-"],
    )
    .await;
    assert!(!outside.success);
    assert!(outside.stderr.contains("403"), "{}", outside.stderr);

    let identity = json(
        &aws(
            lab.sts.endpoint(),
            &session,
            &["sts", "get-caller-identity", "--output", "json"],
        )
        .await,
    );
    assert_eq!(
        identity["Arn"],
        "arn:aws:sts::111122223333:assumed-role/lab-reader/cli-run"
    );
    let identity = json(
        &aws(
            lab.sts.endpoint(),
            &platform,
            &["sts", "get-caller-identity", "--output", "json"],
        )
        .await,
    );
    assert_eq!(identity["Arn"], PLATFORM_ARN);
    assert_eq!(identity["Account"], "123456789012");

    // Expired: the same `aws s3 ls` is refused with S3's ExpiredToken.
    lab.s3.iam().clock().advance(Duration::from_secs(3600));
    let expired = aws(lab.s3.endpoint(), &session, &["s3", "ls", "s3://lab/runs/"]).await;
    assert!(!expired.success);
    assert!(
        expired.stderr.contains("(ExpiredToken)")
            && expired.stderr.contains("The provided token has expired."),
        "{}",
        expired.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awscli_is_refused_a_wrong_external_id_and_an_untrusted_principal() {
    let lab = lab().await;
    let check = |output: CliOutput, user: &str| {
        assert!(!output.success, "{}", output.stdout);
        let expected = format!(
            "An error occurred (AccessDenied) when calling the AssumeRole operation: User: {user} \
             is not authorized to perform: sts:AssumeRole on resource: {ROLE_ARN}"
        );
        assert!(output.stderr.contains(&expected), "{}", output.stderr);
    };
    let platform = Keys::long_lived(PLATFORM_KEY, PLATFORM_SECRET);
    check(
        aws(
            lab.sts.endpoint(),
            &platform,
            &assume_args("cli-wrong", "not-the-id"),
        )
        .await,
        PLATFORM_ARN,
    );
    let outsider = Keys::long_lived(OUTSIDER_KEY, OUTSIDER_SECRET);
    check(
        aws(
            lab.sts.endpoint(),
            &outsider,
            &assume_args("cli-outsider", EXTERNAL_ID),
        )
        .await,
        "arn:aws:iam::123456789012:user/outsider",
    );
    assert!(lab.s3.iam().assumed_roles().is_empty());
}
