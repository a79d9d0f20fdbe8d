//! The S3 client built from a stored AWS key, "save and test", and the retry loop every
//! request goes through.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, IdentityCache, Region, RequestChecksumCalculation,
    ResponseChecksumValidation, SharedCredentialsProvider, StalledStreamProtectionConfig,
};
use keyledger_connect::{RetryPolicy, sleep_unless_cancelled};
use tokio_util::sync::CancellationToken;

use crate::error::{Failure, S3Error, Target, classify};
use crate::probe::ProbeFailure;
use crate::role::{
    AssumeRoleSettings, AssumedSession, OnAssumed, RoleCredentials, SessionIssuer, SharedRole,
};

/// An AWS access key as stored in the vault. `Debug` shows the access key id only.
#[derive(Clone)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
    /// Temporary credentials (`ASIA…`) only: signed into every request as
    /// `X-Amz-Security-Token`.
    pub session_token: Option<String>,
    /// When temporary credentials stop working; `None` for a long-lived key.
    pub expires_at: Option<SystemTime>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field("region", &self.region)
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[redacted]"),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// How the connector talks to S3.
#[derive(Clone, Debug)]
pub struct S3Options {
    /// An S3-compatible endpoint (`http://127.0.0.1:9000`); `None` for AWS.
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most S3-compatible stores.
    pub force_path_style: bool,
    /// Size of each ranged GET.
    pub part_size: u64,
    /// Ranged GETs in flight per object.
    pub concurrency: usize,
    /// Attempts per request (and per part, counted since the part last made progress).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    /// Upper bound of one backoff, `Retry-After` included.
    pub max_backoff: Duration,
    /// A request without a response head, or a body without a byte, for this long is
    /// abandoned and retried.
    pub stall_timeout: Duration,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            endpoint: None,
            force_path_style: false,
            part_size: 16 * 1024 * 1024,
            concurrency: 8,
            max_attempts: 6,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(20),
            stall_timeout: Duration::from_secs(30),
        }
    }
}

/// What a successful "save and test" saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessCheck {
    /// ListBuckets succeeded.
    Buckets { count: usize },
    /// ListObjectsV2 on the bucket succeeded.
    Bucket { bucket: String, is_empty: bool },
}

/// Lists and fetches objects with one stored AWS key. Cheap to clone.
#[derive(Clone)]
pub struct S3Source {
    pub(crate) client: aws_sdk_s3::Client,
    /// What the client signs with; the least-privilege test's STS client signs with it too.
    pub(crate) credentials: SharedCredentialsProvider,
    pub(crate) options: S3Options,
    pub(crate) region: String,
    /// `host[:port]` of the endpoint, to name it in errors.
    pub(crate) host: String,
    /// For a role source: the sessions it signs with, renewed on `ExpiredToken`.
    pub(crate) role: Option<Arc<RoleCredentials>>,
}

impl fmt::Debug for S3Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Source")
            .field("region", &self.region)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl S3Source {
    /// Builds a client signing with exactly these credentials: no environment variables, no
    /// profile files, no instance metadata.
    pub fn new(credentials: &AwsCredentials, options: &S3Options) -> Result<Self, S3Error> {
        if credentials.access_key_id.trim().is_empty() || credentials.secret_access_key.is_empty() {
            return Err(S3Error::InvalidInput(
                "the AWS access key id and secret must not be empty".to_owned(),
            ));
        }
        if credentials.region.trim().is_empty() {
            return Err(S3Error::InvalidInput(
                "the AWS region must not be empty".to_owned(),
            ));
        }
        check_options(options)?;
        // A static provider: never refreshed, so a session ends with its token.
        let provider = SharedCredentialsProvider::new(Credentials::new(
            credentials.access_key_id.clone(),
            credentials.secret_access_key.clone(),
            credentials.session_token.clone(),
            credentials.expires_at,
            "keyledger",
        ));
        Ok(S3Source::build(
            provider,
            &credentials.region,
            options,
            None,
        ))
    }

    /// Builds a client signing with sessions of an IAM role, assumed with the platform's key
    /// (`settings.base`) on first use, again before each session ends, and once more when S3
    /// answers `ExpiredToken`. Each AssumeRole is reported to `on_assumed`.
    pub fn assuming_role(
        settings: AssumeRoleSettings,
        options: &S3Options,
        on_assumed: Option<OnAssumed>,
    ) -> Result<Self, S3Error> {
        if settings.region.trim().is_empty() {
            return Err(S3Error::InvalidInput(
                "the AWS region must not be empty".to_owned(),
            ));
        }
        check_options(options)?;
        let region = settings.region.clone();
        let role = Arc::new(RoleCredentials::new(settings, options, on_assumed)?);
        let provider = SharedCredentialsProvider::new(SharedRole(Arc::clone(&role)));
        Ok(S3Source::build(provider, &region, options, Some(role)))
    }

    /// Builds a client signing with sessions someone else issues (a worker's job on a `role`
    /// key: the vault assumes the role): `first` until near its end, then `issue` again, and
    /// at once when S3 answers `ExpiredToken`.
    pub fn with_issued_sessions(
        first: AwsCredentials,
        options: &S3Options,
        issue: SessionIssuer,
    ) -> Result<Self, S3Error> {
        if first.region.trim().is_empty() {
            return Err(S3Error::InvalidInput(
                "the AWS region must not be empty".to_owned(),
            ));
        }
        check_options(options)?;
        let region = first.region.clone();
        let role = Arc::new(RoleCredentials::remote(first, issue));
        let provider = SharedCredentialsProvider::new(SharedRole(Arc::clone(&role)));
        Ok(S3Source::build(provider, &region, options, Some(role)))
    }

    /// For a role source, assumes the role now (or finds the current session good), so that a
    /// refusal is reported in STS's words before anything else is asked; `None` for other
    /// sources.
    pub async fn assume_role_now(&self) -> Option<Result<AssumedSession, ProbeFailure>> {
        let role = self.role.as_ref()?;
        Some(role.credentials().await.map(|credentials| AssumedSession {
            session_name: String::new(),
            access_key_id: credentials.access_key_id().to_owned(),
            expires_at: credentials.expiry().unwrap_or(SystemTime::UNIX_EPOCH),
        }))
    }

    /// After S3 answered `ExpiredToken` to a request started at `started`: a role source
    /// assumes its role again, once per request (`renewed`), and the request is repeated at
    /// once. Other credentials cannot be renewed: `false`.
    pub(crate) async fn renew_expired(
        &self,
        error: &S3Error,
        started: Instant,
        renewed: &mut bool,
    ) -> bool {
        let Some(role) = &self.role else {
            return false;
        };
        let expired = match error {
            S3Error::CredentialsRejected { code } => code == "ExpiredToken",
            // A HEAD answer has no body, so no code: S3's 400 to a HEAD signed with an expired
            // session says nothing more. One renewal settles it either way.
            S3Error::Rejected { status, code, .. } => *status == 400 && code.is_empty(),
            _ => false,
        };
        if !expired || *renewed {
            return false;
        }
        *renewed = true;
        role.renew(started).await
    }

    fn build(
        provider: SharedCredentialsProvider,
        region: &str,
        options: &S3Options,
        role: Option<Arc<RoleCredentials>>,
    ) -> S3Source {
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .credentials_provider(provider.clone())
            // Retries, stall detection and checksum validation are ours, so that a truncated
            // body resumes where it stopped and every failure is classified in one place.
            .retry_config(RetryConfig::disabled())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(options.stall_timeout)
                    // For GetObject this covers the response head only; the body has its own
                    // per-chunk timeout.
                    .operation_attempt_timeout(options.stall_timeout)
                    .build(),
            )
            .force_path_style(options.force_path_style);
        if let Some(endpoint) = &options.endpoint {
            builder = builder.endpoint_url(endpoint.clone());
        }
        if role.is_some() {
            // The role's provider keeps the session and knows when it was renewed; the SDK's
            // cache would keep signing with a session S3 already called expired.
            builder = builder.identity_cache(IdentityCache::no_cache());
        }
        let host = match &options.endpoint {
            Some(endpoint) => endpoint_authority(endpoint).to_owned(),
            None => format!("s3.{region}.amazonaws.com"),
        };
        S3Source {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            credentials: provider,
            options: options.clone(),
            region: region.to_owned(),
            host,
            role,
        }
    }

    /// "Save and test" for every bucket: ListBuckets.
    pub(crate) async fn check_buckets(&self) -> Result<AccessCheck, S3Error> {
        let target = self.target("ListBuckets", "", None);
        let output = self
            .with_retries(target, None, move || async move {
                self.client
                    .list_buckets()
                    .send()
                    .await
                    .map_err(|error| classify(error, target))
            })
            .await?;
        Ok(AccessCheck::Buckets {
            count: output.buckets().len(),
        })
    }

    /// "Save and test" against one bucket, for keys that may not list buckets: ListObjectsV2
    /// with `max-keys=1` (what ingestion will need).
    pub async fn check_bucket_access(&self, bucket: &str) -> Result<AccessCheck, S3Error> {
        check_bucket_name(bucket)?;
        let target = self.target("ListObjectsV2", bucket, None);
        let output = self
            .with_retries(target, None, move || async move {
                self.client
                    .list_objects_v2()
                    .bucket(bucket)
                    .max_keys(1)
                    .send()
                    .await
                    .map_err(|error| classify(error, target))
            })
            .await?;
        Ok(AccessCheck::Bucket {
            bucket: bucket.to_owned(),
            is_empty: output.contents().is_empty() && output.common_prefixes().is_empty(),
        })
    }

    pub(crate) fn target<'a>(
        &'a self,
        operation: &'static str,
        bucket: &'a str,
        key: Option<&'a str>,
    ) -> Target<'a> {
        Target {
            operation,
            host: &self.host,
            bucket,
            key,
            region: &self.region,
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, runs out of attempts, or `cancel`
    /// fires.
    pub(crate) async fn with_retries<T, F, Fut>(
        &self,
        target: Target<'_>,
        cancel: Option<&CancellationToken>,
        mut attempt: F,
    ) -> Result<T, S3Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let policy = self.options.retry_policy();
        let mut failures = 0;
        let mut renewed = false;
        loop {
            let started = Instant::now();
            let failure = match attempt().await {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            if self
                .renew_expired(&failure.error, started, &mut renewed)
                .await
            {
                continue;
            }
            failures += 1;
            if !failure.retryable || !policy.allows_another(failures) {
                return Err(failure.error);
            }
            let delay = policy.delay(failures, failure.retry_after);
            tracing::warn!(
                operation = target.operation,
                bucket = target.bucket,
                key = target.key,
                attempt = failures,
                delay_ms = delay.as_millis() as u64,
                error = %failure.error,
                "S3 request failed, retrying"
            );
            if !sleep_unless_cancelled(delay, cancel).await {
                return Err(S3Error::Cancelled);
            }
        }
    }
}

impl S3Options {
    /// The retry policy these options describe.
    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            initial_backoff: self.initial_backoff,
            max_backoff: self.max_backoff,
        }
    }
}

/// `host[:port]` of an endpoint URL: `http://127.0.0.1:9000/x` → `127.0.0.1:9000`.
pub(crate) fn endpoint_authority(endpoint: &str) -> &str {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    // Credentials in the URL are never shown.
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

fn check_options(options: &S3Options) -> Result<(), S3Error> {
    if options.part_size == 0 || options.concurrency == 0 || options.max_attempts == 0 {
        return Err(S3Error::InvalidInput(
            "part_size, concurrency and max_attempts must be positive".to_owned(),
        ));
    }
    Ok(())
}

pub(crate) fn check_bucket_name(bucket: &str) -> Result<(), S3Error> {
    if bucket.is_empty() || bucket.contains('/') {
        return Err(S3Error::InvalidInput(format!(
            "`{bucket}` is not a bucket name (give the bare name, without s3:// or a path)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        let credentials = AwsCredentials {
            access_key_id: "AKIAEXAMPLEEXAMPLE12".to_owned(),
            secret_access_key: "canary-secret-0123456789".to_owned(),
            region: "eu-west-1".to_owned(),
            session_token: Some("canary-token-0123456789".to_owned()),
            expires_at: None,
        };
        let shown = format!("{credentials:?}");
        assert!(shown.contains("AKIAEXAMPLEEXAMPLE12"));
        assert!(!shown.contains("canary-secret"));
        assert!(!shown.contains("canary-token"));
        let source = S3Source::new(&credentials, &S3Options::default()).unwrap();
        assert!(!format!("{source:?}").contains("canary-secret"));
    }
}
