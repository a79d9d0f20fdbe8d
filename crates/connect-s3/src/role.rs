//! Credentials of a `role` key: STS AssumeRole with the platform's own long-lived key, the
//! owner's external ID, a session name that names the job and a session policy that narrows
//! the session to what the job reads; assumed again before the session ends, and at once when
//! S3 answers `ExpiredToken`.
//!
//! The guarantee: every S3 request of a role source is signed with a session of the role (the
//! SDK's identity cache is off for it, so [`RoleCredentials`] alone decides which); a session
//! is assumed again when less than [`RoleCredentials::refresh_margin`] is left, and concurrent
//! requests that find it expired cause one AssumeRole, not one each. No default credential
//! chain is consulted: the STS client signs with exactly the base key it is given. Each
//! AssumeRole is reported to the [`OnAssumed`] hook (the caller records it) before its
//! credentials sign anything. No secret reaches an error, a log line or a `Debug` output.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::future;
use aws_sdk_s3::config::{Credentials, ProvideCredentials};
use aws_sdk_sts::config::{BehaviorVersion, Region};
use futures::future::BoxFuture;

use crate::client::{AwsCredentials, S3Options, endpoint_authority};
use crate::error::{S3Error, Target};
use crate::probe::{ProbeFailure, Refusal, refusal};

/// How to assume the role of one `role` key for one job (or one test).
#[derive(Clone)]
pub struct AssumeRoleSettings {
    pub role_arn: String,
    /// The owner's external ID, which the role's trust policy requires.
    pub external_id: String,
    /// 2 to 64 of `[\w+=,.@-]`: names the job in CloudTrail (see [`session_name`]).
    pub session_name: String,
    /// A session policy (JSON) narrowing the session; see [`read_only_session_policy`].
    pub session_policy: Option<String>,
    /// How long each session lasts (900 s to the role's maximum).
    pub duration: Duration,
    /// The key's region: the STS client's, and the S3 client's.
    pub region: String,
    /// An STS endpoint; `None`: `https://sts.<region>.amazonaws.com`.
    pub sts_endpoint: Option<String>,
    /// The platform's own long-lived key, which the role's trust policy names.
    pub base: AwsCredentials,
}

impl fmt::Debug for AssumeRoleSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssumeRoleSettings")
            .field("role_arn", &self.role_arn)
            .field("session_name", &self.session_name)
            .field("duration", &self.duration)
            .field("region", &self.region)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// One successful AssumeRole: what may be recorded (no secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssumedSession {
    pub session_name: String,
    /// The temporary `ASIA…` access key id (not a secret; CloudTrail shows it).
    pub access_key_id: String,
    pub expires_at: SystemTime,
}

/// Called after each AssumeRole, before its credentials are used.
pub type OnAssumed = Arc<dyn Fn(AssumedSession) -> BoxFuture<'static, ()> + Send + Sync>;

/// AWS's longest role session policy, in characters of its JSON text.
const MAX_SESSION_POLICY: usize = 2048;

/// A role session name for `purpose` (a job or key id): `keyledger-<purpose>`, cut to AWS's 64
/// characters and to its alphabet `[\w+=,.@-]` (anything else becomes `-`).
pub fn session_name(purpose: &str) -> String {
    format!("keyledger-{purpose}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect()
}

/// The session policy of a job reading `s3://bucket/prefix…`: `s3:ListBucket` on the bucket
/// under the prefix (`s3:prefix` condition) and `s3:GetObject` (GET and HEAD) below it —
/// nothing else, whatever the role itself allows. Refused when the bucket or prefix holds an
/// IAM wildcard (`*`, `?`), which would widen it, or when it is longer than AWS accepts.
pub fn read_only_session_policy(bucket: &str, prefix: &str) -> Result<String, S3Error> {
    if [bucket, prefix]
        .iter()
        .any(|part| part.contains(['*', '?']))
    {
        return Err(S3Error::InvalidInput(format!(
            "s3://{bucket}/{prefix} holds `*` or `?`, which a session policy would read as \
             wildcards: choose a prefix without them to ingest with a role"
        )));
    }
    let mut list = serde_json::json!({
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": format!("arn:aws:s3:::{bucket}"),
    });
    if !prefix.is_empty() {
        list["Condition"] = serde_json::json!({"StringLike": {"s3:prefix": format!("{prefix}*")}});
    }
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            list,
            {
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": format!("arn:aws:s3:::{bucket}/{prefix}*"),
            }
        ]
    })
    .to_string();
    if policy.len() > MAX_SESSION_POLICY {
        return Err(S3Error::InvalidInput(format!(
            "the session policy for s3://{bucket}/{prefix} would be {} characters, more than \
             AWS's {MAX_SESSION_POLICY}: choose a shorter prefix",
            policy.len()
        )));
    }
    Ok(policy)
}

/// Issues a fresh session on request: for a worker, the vault (which assumes the role for the
/// job and records it). An error is a sentence for people, without a secret.
pub type SessionIssuer =
    Arc<dyn Fn() -> BoxFuture<'static, Result<AwsCredentials, String>> + Send + Sync>;

/// Where a role source's sessions come from.
enum Issuer {
    /// AssumeRole here, with the platform's key.
    Sts {
        sts: aws_sdk_sts::Client,
        settings: AssumeRoleSettings,
        sts_host: String,
        on_assumed: Option<OnAssumed>,
    },
    /// Someone else assumes (the vault, for a worker's job); `first` is the session leased
    /// with the job, used before asking.
    Remote {
        issue: SessionIssuer,
        first: std::sync::Mutex<Option<AwsCredentials>>,
    },
}

/// The credentials provider of a role source: one session at a time, assumed again when
/// near its end or found expired.
pub(crate) struct RoleCredentials {
    issuer: Issuer,
    current: tokio::sync::Mutex<Option<Session>>,
}

#[derive(Clone)]
struct Session {
    credentials: Credentials,
    expires_at: SystemTime,
    assumed_at: Instant,
    /// Replaced when less than this is left: a fifth of its lifetime, at most five minutes.
    margin: Duration,
}

impl Session {
    /// `lifetime`: how long it was issued for; `None`: until `expires_at` from now.
    fn new(
        credentials: Credentials,
        expires_at: SystemTime,
        lifetime: Option<Duration>,
    ) -> Session {
        let lifetime = lifetime.unwrap_or_else(|| {
            expires_at
                .duration_since(SystemTime::now())
                .unwrap_or_default()
        });
        Session {
            credentials,
            expires_at,
            assumed_at: Instant::now(),
            margin: (lifetime / 5).min(Duration::from_secs(300)),
        }
    }
}

impl fmt::Debug for RoleCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.issuer {
            Issuer::Sts { settings, .. } => f
                .debug_struct("RoleCredentials")
                .field("settings", settings)
                .finish_non_exhaustive(),
            Issuer::Remote { .. } => f.write_str("RoleCredentials { issuer: remote, .. }"),
        }
    }
}

/// Assumes the role once with the platform's key (the vault, leasing a `role` key's job to a
/// worker): the session's credentials and what may be recorded of it.
pub async fn assume_role_once(
    settings: AssumeRoleSettings,
    options: &S3Options,
) -> Result<(AwsCredentials, AssumedSession), ProbeFailure> {
    let region = settings.region.clone();
    let session_name = settings.session_name.clone();
    let role = RoleCredentials::new(settings, options, None).map_err(|error| ProbeFailure {
        refusal: Refusal::Other,
        detail: error.to_string(),
    })?;
    let session = role.assume().await?;
    let credentials = &session.credentials;
    let assumed = AssumedSession {
        session_name,
        access_key_id: credentials.access_key_id().to_owned(),
        expires_at: session.expires_at,
    };
    Ok((
        AwsCredentials {
            access_key_id: credentials.access_key_id().to_owned(),
            secret_access_key: credentials.secret_access_key().to_owned(),
            region,
            session_token: credentials.session_token().map(str::to_owned),
            expires_at: Some(session.expires_at),
        },
        assumed,
    ))
}

impl RoleCredentials {
    pub(crate) fn new(
        settings: AssumeRoleSettings,
        options: &S3Options,
        on_assumed: Option<OnAssumed>,
    ) -> Result<RoleCredentials, S3Error> {
        let base = &settings.base;
        if base.access_key_id.trim().is_empty() || base.secret_access_key.is_empty() {
            return Err(S3Error::InvalidInput(
                "no platform credentials to assume roles with: set `[ingest] \
                 aws_role_credentials_file` (see docs/operations.md)"
                    .to_owned(),
            ));
        }
        let mut builder = aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .timeout_config(
                aws_sdk_sts::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(options.stall_timeout)
                    .operation_attempt_timeout(options.stall_timeout)
                    .build(),
            )
            // Exactly the platform's key: never the environment, a profile or instance metadata.
            .credentials_provider(Credentials::new(
                base.access_key_id.clone(),
                base.secret_access_key.clone(),
                base.session_token.clone(),
                base.expires_at,
                "keyledger-platform",
            ));
        let sts_host = match &settings.sts_endpoint {
            Some(endpoint) => {
                builder = builder.endpoint_url(endpoint);
                endpoint_authority(endpoint).to_owned()
            }
            None => format!("sts.{}.amazonaws.com", settings.region),
        };
        Ok(RoleCredentials {
            issuer: Issuer::Sts {
                sts: aws_sdk_sts::Client::from_conf(builder.build()),
                settings,
                sts_host,
                on_assumed,
            },
            current: tokio::sync::Mutex::new(None),
        })
    }

    /// Sessions issued by `issue` (the vault), starting with `first`.
    pub(crate) fn remote(first: AwsCredentials, issue: SessionIssuer) -> RoleCredentials {
        RoleCredentials {
            issuer: Issuer::Remote {
                issue,
                first: std::sync::Mutex::new(Some(first)),
            },
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// The current session's credentials, assuming the role first if there is none or it is
    /// near its end.
    pub(crate) async fn credentials(&self) -> Result<Credentials, ProbeFailure> {
        let mut current = self.current.lock().await;
        if let Some(session) = current.as_ref()
            && session
                .expires_at
                .duration_since(SystemTime::now())
                .is_ok_and(|left| left > session.margin)
        {
            return Ok(session.credentials.clone());
        }
        let session = self.assume().await?;
        let credentials = session.credentials.clone();
        *current = Some(session);
        Ok(credentials)
    }

    /// After S3 answered `ExpiredToken` to a request that started at `started`: drops the
    /// session unless another request already replaced it since, and assumes the role again.
    /// `false` when that failed (the request's error stands).
    pub(crate) async fn renew(&self, started: Instant) -> bool {
        {
            let mut current = self.current.lock().await;
            if current
                .as_ref()
                .is_some_and(|session| session.assumed_at <= started)
            {
                *current = None;
            }
        }
        match self.credentials().await {
            Ok(_) => true,
            Err(failure) => {
                tracing::warn!(error = %failure.detail, "could not get a new session after ExpiredToken");
                false
            }
        }
    }

    /// A new session: one AssumeRole reported to the hook, or one from the remote issuer.
    async fn assume(&self) -> Result<Session, ProbeFailure> {
        let (sts, settings, sts_host, on_assumed) = match &self.issuer {
            Issuer::Sts {
                sts,
                settings,
                sts_host,
                on_assumed,
            } => (sts, settings, sts_host, on_assumed),
            Issuer::Remote { issue, first } => {
                let leased = first
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                let issued = match leased {
                    Some(first) => first,
                    None => issue().await.map_err(|detail| ProbeFailure {
                        refusal: Refusal::Other,
                        detail,
                    })?,
                };
                let Some(expires_at) = issued.expires_at else {
                    return Err(ProbeFailure {
                        refusal: Refusal::Other,
                        detail: "the issued session has no expiry".to_owned(),
                    });
                };
                let credentials = Credentials::new(
                    issued.access_key_id.clone(),
                    issued.secret_access_key.clone(),
                    issued.session_token.clone(),
                    Some(expires_at),
                    "keyledger-leased-role",
                );
                return Ok(Session::new(credentials, expires_at, None));
            }
        };
        let seconds = i32::try_from(settings.duration.as_secs()).unwrap_or(i32::MAX);
        let mut request = sts
            .assume_role()
            .role_arn(&settings.role_arn)
            .role_session_name(&settings.session_name)
            .external_id(&settings.external_id)
            .duration_seconds(seconds);
        if let Some(policy) = &settings.session_policy {
            request = request.policy(policy);
        }
        let target = Target {
            operation: "AssumeRole",
            host: sts_host,
            bucket: "",
            key: None,
            region: &settings.region,
        };
        let permission = format!(
            "assume role {} with external ID {} (the role's trust policy must allow the \
             platform's principal to call sts:AssumeRole with this sts:ExternalId)",
            settings.role_arn, settings.external_id
        );
        let output = request
            .send()
            .await
            .map_err(|error| refusal(error, target, "STS", &permission))?;
        let Some(issued) = output.credentials() else {
            return Err(ProbeFailure {
                refusal: Refusal::Other,
                detail: "STS answered AssumeRole without credentials".to_owned(),
            });
        };
        let expires_at = SystemTime::try_from(*issued.expiration()).map_err(|_| ProbeFailure {
            refusal: Refusal::Other,
            detail: "STS answered AssumeRole with an expiration out of range".to_owned(),
        })?;
        let credentials = Credentials::new(
            issued.access_key_id(),
            issued.secret_access_key(),
            Some(issued.session_token().to_owned()),
            Some(expires_at),
            "keyledger-role",
        );
        tracing::info!(role = %settings.role_arn, session = %settings.session_name, access_key_id = issued.access_key_id(), "assumed the role");
        if let Some(hook) = on_assumed {
            hook(AssumedSession {
                session_name: settings.session_name.clone(),
                access_key_id: issued.access_key_id().to_owned(),
                expires_at,
            })
            .await;
        }
        Ok(Session::new(
            credentials,
            expires_at,
            Some(settings.duration),
        ))
    }
}

/// The SDK's view: the S3 client asks for credentials before every request.
#[derive(Clone, Debug)]
pub(crate) struct SharedRole(pub(crate) Arc<RoleCredentials>);

impl ProvideCredentials for SharedRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.0
                .credentials()
                .await
                .map_err(|failure| CredentialsError::provider_error(RoleRefused(failure.detail)))
        })
    }
}

/// Why the role could not be assumed, in STS's words.
#[derive(Debug)]
struct RoleRefused(String);

impl fmt::Display for RoleRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the role could not be assumed: {}", self.0)
    }
}

impl std::error::Error for RoleRefused {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_fit_aws() {
        assert_eq!(
            session_name("ing_7TzR3pYc0MvA6gLu"),
            "keyledger-ing_7TzR3pYc0MvA6gLu"
        );
        assert_eq!(session_name("a b/c"), "keyledger-a-b-c");
        assert_eq!(session_name(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn session_policies_read_only_the_prefix() {
        let policy = read_only_session_policy("lab", "runs/").unwrap();
        assert_eq!(
            policy,
            r#"{"Statement":[{"Action":"s3:ListBucket","Condition":{"StringLike":{"s3:prefix":"runs/*"}},"Effect":"Allow","Resource":"arn:aws:s3:::lab"},{"Action":"s3:GetObject","Effect":"Allow","Resource":"arn:aws:s3:::lab/runs/*"}],"Version":"2012-10-17"}"#
        );
        let whole = read_only_session_policy("lab", "").unwrap();
        assert!(!whole.contains("Condition"), "{whole}");
        assert!(read_only_session_policy("lab", "runs/*").is_err());
        assert!(read_only_session_policy("lab", &"p".repeat(2000)).is_err());
    }
}
