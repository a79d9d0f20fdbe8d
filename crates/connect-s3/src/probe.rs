//! The least-privilege test of a stored key: each capability an ingestion of one bucket and
//! prefix needs, checked with the smallest request that needs it, and reported separately.
//!
//! - Without a bucket: `sts:GetCallerIdentity`, which every valid key may call whatever its
//!   policy (never ListBuckets: a key limited to one bucket may not call it, and need not).
//! - With a bucket and prefix: `list` (ListObjectsV2 under the prefix, one key), `read` (the first
//!   byte of the first object listed; nothing to read is not a failure) and `region` (HeadBucket's
//!   `x-amz-bucket-region`, or the region the listing was answered in).
//!
//! The guarantee: a refusal is reported in the provider's words (its error code and message)
//! with what it means for the user (wrong secret, unknown key, expired token, clock skew, wrong
//! region, missing permission); no request is retried, so a test never takes longer than one
//! attempt per capability; no secret reaches a detail.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::config::{BehaviorVersion, Region};

use crate::S3Source;
use crate::client::check_bucket_name;
use crate::error::{S3Error, ServiceAnswer, Target, classify, wrong_region};

/// What the user must change (or wait for) when a provider refused a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `SignatureDoesNotMatch`: the secret is not the one AWS has for the access key id.
    WrongSecret,
    /// `InvalidAccessKeyId` / `InvalidClientTokenId`: AWS does not know the access key id.
    UnknownKey,
    /// `ExpiredToken`: temporary credentials past their expiry.
    ExpiredToken,
    /// `InvalidToken`: a session token that is not the one issued with the key.
    InvalidToken,
    /// `RequestTimeTooSkewed` (or STS's "Signature expired"): this machine's clock is off.
    ClockSkew,
    /// The bucket is in another region than the one stored with the key.
    WrongRegion,
    /// `AccessDenied`: the key's policy does not allow the action.
    MissingPermission,
    /// The bucket does not exist.
    NoSuchBucket,
    /// The endpoint cannot be reached at all (configuration).
    Unreachable,
    /// Timeouts, throttling, server errors: try again later.
    Transient,
    /// Anything else the provider or the input refused.
    Other,
}

/// One capability that was not confirmed, and why, as a sentence for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeFailure {
    pub refusal: Refusal,
    pub detail: String,
}

/// One checked capability: `list`, `read`, `region` or `identity`, and what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub capability: &'static str,
    pub outcome: Result<String, ProbeFailure>,
}

impl S3Source {
    /// The key itself: `sts:GetCallerIdentity` at `sts_endpoint` (default: the key's regional
    /// endpoint, `https://sts.<region>.amazonaws.com`), signed exactly as S3 requests are.
    pub async fn probe_identity(&self, sts_endpoint: Option<&str>) -> Probe {
        let mut builder = aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .retry_config(aws_sdk_sts::config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_sdk_sts::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(self.options.stall_timeout)
                    .operation_attempt_timeout(self.options.stall_timeout)
                    .build(),
            )
            // The same credentials the S3 client signs with, whatever their kind.
            .credentials_provider(self.credentials.clone());
        let host = match sts_endpoint {
            Some(endpoint) => {
                builder = builder.endpoint_url(endpoint);
                crate::client::endpoint_authority(endpoint).to_owned()
            }
            None => format!("sts.{}.amazonaws.com", self.region),
        };
        let sts = aws_sdk_sts::Client::from_conf(builder.build());
        let target = Target {
            operation: "GetCallerIdentity",
            host: &host,
            bucket: "",
            key: None,
            region: &self.region,
        };
        let outcome = match sts.get_caller_identity().send().await {
            Ok(identity) => Ok(format!(
                "AWS accepted the key: account {}, {}",
                identity.account().unwrap_or("unknown"),
                identity.arn().unwrap_or("no ARN given")
            )),
            Err(error) => Err(refusal(error, target, "STS", "call sts:GetCallerIdentity")),
        };
        Probe {
            capability: "identity",
            outcome,
        }
    }

    /// What an ingestion of `bucket` under `prefix` needs: `list`, `read` and `region`, in
    /// that order.
    pub async fn probe_bucket(&self, bucket: &str, prefix: &str) -> Vec<Probe> {
        if let Err(error) = check_bucket_name(bucket) {
            let failure = ProbeFailure {
                refusal: Refusal::Other,
                detail: error.to_string(),
            };
            return ["list", "read", "region"]
                .into_iter()
                .map(|capability| Probe {
                    capability,
                    outcome: Err(failure.clone()),
                })
                .collect();
        }
        let under = place(bucket, prefix);
        let listed = self.probe_list(bucket, prefix).await;
        let read = match &listed {
            Ok(Some((key, size))) => self.probe_read(bucket, key, *size).await,
            Ok(None) => Ok(format!(
                "nothing to read under {under} (no object to try): not a failure"
            )),
            Err(failure) => Err(ProbeFailure {
                refusal: failure.refusal,
                detail: format!("not tested: the listing of {under} failed, so no object is known"),
            }),
        };
        let region = self.probe_region(bucket, listed.as_ref().err()).await;
        let list = listed.map(|first| match first {
            Some((key, _)) => format!("listed {under} (first object: {key})"),
            None => format!("listed {under}: it is empty"),
        });
        vec![
            Probe {
                capability: "list",
                outcome: list,
            },
            Probe {
                capability: "read",
                outcome: read,
            },
            Probe {
                capability: "region",
                outcome: region,
            },
        ]
    }

    /// ListObjectsV2 under the prefix, one key: the first object's key and size, if any.
    async fn probe_list(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Option<(String, i64)>, ProbeFailure> {
        let target = self.target("ListObjectsV2", bucket, None);
        let output = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .max_keys(1)
            .send()
            .await
            .map_err(|error| refusal(error, target, "S3", &list_permission(prefix)))?;
        Ok(output.contents().first().map(|object| {
            (
                object.key().unwrap_or_default().to_owned(),
                object.size().unwrap_or(0),
            )
        }))
    }

    /// GetObject of the first byte (`Range: bytes=0-0`; the whole object when it is empty,
    /// which has no byte 0).
    async fn probe_read(&self, bucket: &str, key: &str, size: i64) -> Result<String, ProbeFailure> {
        let target = self.target("GetObject", bucket, Some(key));
        let mut request = self.client.get_object().bucket(bucket).key(key);
        if size > 0 {
            request = request.range("bytes=0-0");
        }
        let permission = format!("read {}", place(bucket, key));
        let output = request
            .send()
            .await
            .map_err(|error| refusal(error, target, "S3", &permission))?;
        output.body.collect().await.map_err(|error| ProbeFailure {
            refusal: Refusal::Transient,
            detail: format!("reading {} was cut off: {error}", place(bucket, key)),
        })?;
        Ok(format!("read the first byte of {}", place(bucket, key)))
    }

    /// HeadBucket's `x-amz-bucket-region`. A key limited to a prefix may not call HeadBucket
    /// (it needs `s3:ListBucket` without a prefix condition); then the listing's answer decides:
    /// a bucket in another region refuses it with its region, so a listing answered here proves
    /// the region right.
    async fn probe_region(
        &self,
        bucket: &str,
        listing: Option<&ProbeFailure>,
    ) -> Result<String, ProbeFailure> {
        // A refusal of the request itself (its region, its time, its credential) is the
        // region's answer too: HeadBucket would meet it again, and a HEAD answer has no body to
        // say so (a skewed clock would read as a bare 403, "missing permission").
        if let Some(failure) = listing.filter(|failure| {
            matches!(
                failure.refusal,
                Refusal::WrongRegion
                    | Refusal::ClockSkew
                    | Refusal::WrongSecret
                    | Refusal::UnknownKey
                    | Refusal::ExpiredToken
                    | Refusal::InvalidToken
            )
        }) {
            return Err(failure.clone());
        }
        let target = self.target("HeadBucket", bucket, None);
        let headed = self.client.head_bucket().bucket(bucket).send().await;
        let same = || {
            format!(
                "bucket `{bucket}` answers in {}, the key's region",
                self.region
            )
        };
        match headed {
            Ok(output) => match output.bucket_region() {
                Some(region) if region != self.region => Err(wrong_region_failure(
                    bucket,
                    region,
                    &self.region,
                    "HeadBucket",
                )),
                _ => Ok(same()),
            },
            Err(error) => {
                let failure = refusal(error, target, "S3", "call HeadBucket");
                match failure.refusal {
                    Refusal::MissingPermission | Refusal::NoSuchBucket if listing.is_none() => {
                        Ok(format!("{} (the listing was answered there)", same()))
                    }
                    _ => Err(failure),
                }
            }
        }
    }
}

/// `s3://bucket/prefix`.
fn place(bucket: &str, prefix: &str) -> String {
    format!("s3://{bucket}/{prefix}")
}

/// The words a user searches their policy for: "list under runs/".
fn list_permission(prefix: &str) -> String {
    if prefix.is_empty() {
        "list the bucket".to_owned()
    } else {
        format!("list under {prefix}")
    }
}

fn wrong_region_failure(bucket: &str, region: &str, configured: &str, how: &str) -> ProbeFailure {
    ProbeFailure {
        refusal: Refusal::WrongRegion,
        detail: format!(
            "wrong region: bucket `{bucket}` is in {region}, not in the key's region \
             {configured} ({how}): store the key with region {region}"
        ),
    }
}

/// A failed request as a refusal, in the provider's words. `permission` names what was being
/// done, for a missing permission ("list under other/").
pub(crate) fn refusal<E>(
    error: SdkError<E, HttpResponse>,
    target: Target<'_>,
    service: &str,
    permission: &str,
) -> ProbeFailure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let SdkError::ServiceError(context) = &error {
        let raw = context.raw();
        let code = error.code().unwrap_or_default().to_owned();
        let message = error.message().unwrap_or_default().to_owned();
        let answer = ServiceAnswer {
            status: raw.status().as_u16(),
            code: &code,
            message: &message,
            bucket_region: raw.headers().get("x-amz-bucket-region").map(str::to_owned),
            retry_after: None,
        };
        if let Some(failure) = service_refusal(&answer, target, service, permission) {
            return failure;
        }
    }
    let error = classify(error, target).error;
    if let S3Error::Unreachable { host, why, detail } = &error
        && service == "STS"
    {
        return ProbeFailure {
            refusal: Refusal::Unreachable,
            detail: why.message(host, detail, "`[ingest] sts_endpoint`"),
        };
    }
    let refusal = match &error {
        S3Error::Unreachable { .. } => Refusal::Unreachable,
        S3Error::Transport(_) => Refusal::Transient,
        S3Error::NoSuchBucket { .. } => Refusal::NoSuchBucket,
        S3Error::AccessDenied { .. } => Refusal::MissingPermission,
        S3Error::CredentialsRejected { .. } => Refusal::UnknownKey,
        _ => Refusal::Other,
    };
    ProbeFailure {
        refusal,
        detail: error.to_string(),
    }
}

/// The refusals the test names; `None` leaves the answer to the connector's classification.
fn service_refusal(
    answer: &ServiceAnswer<'_>,
    target: Target<'_>,
    service: &str,
    permission: &str,
) -> Option<ProbeFailure> {
    let said = if answer.message.is_empty() {
        format!("{service} answered {} {}", answer.status, answer.code)
            .trim_end()
            .to_owned()
    } else {
        format!("{service} said {}: {}", answer.code, answer.message)
    };
    let (refusal, meaning) = match answer.code {
        "SignatureDoesNotMatch" if answer.message.contains("Signature expired") => (
            Refusal::ClockSkew,
            "clock skew: this server's clock is more than 15 minutes off AWS's; set it right (NTP)",
        ),
        "SignatureDoesNotMatch" => (
            Refusal::WrongSecret,
            "wrong secret: the secret access key is not the one AWS has for this access key id; \
             replace the stored secret",
        ),
        "InvalidAccessKeyId" | "InvalidClientTokenId" | "NotSignedUp" => (
            Refusal::UnknownKey,
            "unknown key: AWS has no such access key id (deleted, deactivated or mistyped); \
             store a current key",
        ),
        "ExpiredToken" | "TokenRefreshRequired" => (
            Refusal::ExpiredToken,
            "expired token: the temporary credentials have expired; store fresh ones",
        ),
        "InvalidToken" => (
            Refusal::InvalidToken,
            "invalid token: the session token is not the one issued with this access key id",
        ),
        "RequestTimeTooSkewed" => (
            Refusal::ClockSkew,
            "clock skew: this server's clock is more than 15 minutes off AWS's; set it right (NTP)",
        ),
        _ => {
            if let Some(region) = wrong_region(answer, target.region) {
                return Some(wrong_region_failure(
                    target.bucket,
                    &region,
                    target.region,
                    target.operation,
                ));
            }
            if answer.code == "AccessDenied" || (answer.status == 403 && answer.code.is_empty()) {
                return Some(ProbeFailure {
                    refusal: Refusal::MissingPermission,
                    detail: format!("missing permission: {permission} ({said})"),
                });
            }
            if answer.code == "NoSuchBucket" || (answer.status == 404 && target.key.is_none()) {
                return Some(ProbeFailure {
                    refusal: Refusal::NoSuchBucket,
                    detail: format!(
                        "bucket `{}` does not exist: check its name ({said})",
                        target.bucket
                    ),
                });
            }
            return None;
        }
    };
    Some(ProbeFailure {
        refusal,
        detail: format!("{meaning} ({said})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(status: u16, code: &str, message: &str, region: Option<&str>, expect: &str) {
        let target = Target {
            operation: "ListObjectsV2",
            host: "s3.example",
            bucket: "lab",
            key: None,
            region: "us-east-1",
        };
        let answer = ServiceAnswer {
            status,
            code,
            message,
            bucket_region: region.map(str::to_owned),
            retry_after: None,
        };
        let actual = service_refusal(&answer, target, "S3", "list under other/")
            .map(|failure| format!("{:?}: {}", failure.refusal, failure.detail));
        assert_eq!(actual.as_deref(), Some(expect), "{status} {code}");
    }

    #[test]
    fn refusals_are_named() {
        check(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match",
            None,
            "WrongSecret: wrong secret: the secret access key is not the one AWS has for this \
             access key id; replace the stored secret (S3 said SignatureDoesNotMatch: The request \
             signature we calculated does not match)",
        );
        check(
            403,
            "InvalidAccessKeyId",
            "",
            None,
            "UnknownKey: unknown key: AWS has no such access key id (deleted, deactivated or \
             mistyped); store a current key (S3 answered 403 InvalidAccessKeyId)",
        );
        check(
            400,
            "ExpiredToken",
            "The provided token has expired.",
            None,
            "ExpiredToken: expired token: the temporary credentials have expired; store fresh \
             ones (S3 said ExpiredToken: The provided token has expired.)",
        );
        check(
            403,
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
            None,
            "ClockSkew: clock skew: this server's clock is more than 15 minutes off AWS's; set it \
             right (NTP) (S3 said RequestTimeTooSkewed: The difference between the request time \
             and the current time is too large.)",
        );
        check(
            403,
            "AccessDenied",
            "User: arn:aws:iam::1:user/x is not authorized to perform: s3:ListBucket",
            None,
            "MissingPermission: missing permission: list under other/ (S3 said AccessDenied: \
             User: arn:aws:iam::1:user/x is not authorized to perform: s3:ListBucket)",
        );
        check(
            301,
            "PermanentRedirect",
            "",
            Some("eu-west-1"),
            "WrongRegion: wrong region: bucket `lab` is in eu-west-1, not in the key's region \
             us-east-1 (ListObjectsV2): store the key with region eu-west-1",
        );
        check(
            404,
            "NoSuchBucket",
            "The specified bucket does not exist",
            None,
            "NoSuchBucket: bucket `lab` does not exist: check its name (S3 said NoSuchBucket: \
             The specified bucket does not exist)",
        );
    }

    #[test]
    fn list_permissions_name_the_prefix() {
        assert_eq!(list_permission("other/"), "list under other/");
        assert_eq!(list_permission(""), "list the bucket");
    }
}
