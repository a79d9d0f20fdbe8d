//! The account the STS and least-privilege tests share: an S3 test server holding bucket `lab`
//! (`runs/…` and `other/…`), a platform key trusted by the role `lab-reader` (read-only on
//! `lab/runs/`, external ID required), an outsider key the role does not trust, a long-lived key
//! limited to `s3://lab/runs/*`, and an STS endpoint over the same identities.

use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use keyledger_testkit::iam::{AccessKey, Policy, Role};
use keyledger_testkit::s3::S3Server;
use keyledger_testkit::sts::StsServer;

pub const ADMIN_KEY: &str = "AKIAADMIN00000000001";
pub const ADMIN_SECRET: &str = "admin-secret-0000000000000000000000000000";
pub const PLATFORM_KEY: &str = "AKIAPLATFORM00000001";
pub const PLATFORM_SECRET: &str = "platform-secret-000000000000000000000000";
pub const PLATFORM_ARN: &str = "arn:aws:iam::123456789012:user/keyledger";
pub const OUTSIDER_KEY: &str = "AKIAOUTSIDER00000001";
pub const OUTSIDER_SECRET: &str = "outsider-secret-000000000000000000000000";
pub const LIMITED_KEY: &str = "AKIALIMITED000000001";
pub const LIMITED_SECRET: &str = "limited-secret-0000000000000000000000000";
pub const ROLE_ARN: &str = "arn:aws:iam::111122223333:role/lab-reader";
pub const EXTERNAL_ID: &str = "kl-ext-7f3a9c01";
/// The role's `MaxSessionDuration`.
pub const ROLE_MAX_SESSION: Duration = Duration::from_secs(2 * 3600);

/// Every object of the lab, with its content.
pub const OBJECTS: &[(&str, &str)] = &[
    ("runs/a.fastq", "ACGTACGT"),
    ("runs/2024/b.fastq", "TTGCA"),
    ("other/c.fastq", "GGGG"),
];

pub struct Lab {
    pub s3: S3Server,
    pub sts: StsServer,
}

pub async fn lab() -> Lab {
    let s3 = S3Server::start(ADMIN_KEY, ADMIN_SECRET).await.unwrap();
    s3.create_bucket("lab").await.unwrap();
    for (key, content) in OBJECTS {
        s3.put_object("lab", key, content.as_bytes().to_vec())
            .await
            .unwrap();
    }
    let iam = s3.iam();
    iam.add_access_key(AccessKey::new(PLATFORM_KEY, PLATFORM_SECRET).user("keyledger"));
    iam.add_access_key(AccessKey::new(OUTSIDER_KEY, OUTSIDER_SECRET).user("outsider"));
    iam.add_access_key(
        AccessKey::new(LIMITED_KEY, LIMITED_SECRET)
            .user("lab-runs")
            .policy(Policy::read_only("lab", "runs/")),
    );
    iam.add_role(
        Role::new(ROLE_ARN, Policy::read_only("lab", "runs/"))
            .trust(PLATFORM_KEY)
            .external_id(EXTERNAL_ID)
            .max_session(ROLE_MAX_SESSION),
    );
    let sts = StsServer::start(iam.clone()).await.unwrap();
    Lab { s3, sts }
}

/// An S3 client of the lab signed with these credentials.
pub fn s3_client(lab: &Lab, key: &str, secret: &str, token: Option<&str>) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(lab.s3.endpoint())
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            key,
            secret,
            token.map(str::to_owned),
            None,
            "lab",
        ))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// An STS client of the lab signed with these credentials.
pub fn sts_client(lab: &Lab, key: &str, secret: &str, token: Option<&str>) -> aws_sdk_sts::Client {
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new("us-east-1"))
        .endpoint_url(lab.sts.endpoint())
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            key,
            secret,
            token.map(str::to_owned),
            None,
            "lab",
        ))
        .build();
    aws_sdk_sts::Client::from_conf(config)
}
