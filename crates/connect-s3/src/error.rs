//! The connector's error type, and the mapping from SDK errors to it.
//!
//! Every message is a sentence that says what went wrong and what to do, built from the
//! failure's kind and S3's own words (error code and message); never the SDK's `Debug` text.
//! The transport's cause chain is walked to its root (a name that does not resolve, a refused
//! connection, a TLS failure, a timeout) so that permanent failures are not retried. No message
//! carries a secret: errors are built from S3 error codes and messages, bucket and key names,
//! host names and the operating system's words for a network failure only.

use std::error::Error as StdError;
use std::fmt;
use std::time::{Duration, SystemTime};

use keyledger_connect::network::{NetworkCause, describe_causes, network_cause, root_cause};
use keyledger_connect::{Unreachable, retry_after};

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// Why listing, checking or fetching failed.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error(
        "the stored AWS key was rejected by S3 ({code}): check the key in the vault or replace it"
    )]
    CredentialsRejected {
        /// S3's error code, such as `InvalidAccessKeyId` or `SignatureDoesNotMatch`.
        code: String,
    },
    #[error("{}", access_denied_message(bucket))]
    AccessDenied { bucket: String },
    #[error("bucket `{bucket}` does not exist: check the bucket name")]
    NoSuchBucket { bucket: String },
    #[error(
        "bucket `{bucket}` is in region {region}, not in the region stored with the key: \
         update the key's region"
    )]
    WrongRegion { bucket: String, region: String },
    #[error("object `{key}` was not found: it may have been deleted since it was listed")]
    NotFound { key: String },
    #[error(
        "object `{key}` changed while it was being fetched (its ETag is no longer the one \
         listed): list the files again and retry"
    )]
    ObjectChanged { key: String },
    #[error(
        "object `{key}` failed verification ({what}): expected {expected}, got {actual}; the \
         partial file was deleted. A new fetch helps only if the bytes were damaged on the way; \
         if it fails the same way, the stored object does not match its own checksum: upload it again"
    )]
    Verification {
        key: String,
        what: Verification,
        expected: String,
        actual: String,
    },
    #[error("the fetch was cancelled")]
    Cancelled,
    /// The endpoint cannot be reached at all; retrying cannot help until the configuration
    /// (or the network) changes.
    #[error("{}", why.message(host, detail, "the S3 endpoint setting"))]
    Unreachable {
        /// `host` or `host:port` of the endpoint.
        host: String,
        why: Unreachable,
        /// The operating system's or TLS library's words, for the TLS case.
        detail: String,
    },
    /// Timeouts, broken connections, throttling and server errors that outlasted the retries.
    #[error("S3 request failed: {0}; try again later")]
    Transport(String),
    /// S3 answered the request with an error this connector has no better name for.
    #[error("S3 refused {operation} with {status} {code}: {message}")]
    Rejected {
        operation: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    /// An answer that does not have the shape S3 documents.
    #[error("unexpected answer from S3: {0}")]
    UnexpectedAnswer(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("local file error: {0}")]
    Io(#[from] std::io::Error),
}

/// A property of a fetched object that was checked against what S3 reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verification {
    /// The byte count equals the object's size.
    Size,
    /// The MD5 of the content equals the ETag (single-part uploads without SSE-KMS/SSE-C).
    EtagMd5,
    ChecksumCrc32,
    ChecksumCrc32c,
    ChecksumCrc64Nvme,
    ChecksumSha1,
    ChecksumSha256,
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verification::Size => "size",
            Verification::EtagMd5 => "ETag MD5",
            Verification::ChecksumCrc32 => "x-amz-checksum-crc32",
            Verification::ChecksumCrc32c => "x-amz-checksum-crc32c",
            Verification::ChecksumCrc64Nvme => "x-amz-checksum-crc64nvme",
            Verification::ChecksumSha1 => "x-amz-checksum-sha1",
            Verification::ChecksumSha256 => "x-amz-checksum-sha256",
        })
    }
}

fn access_denied_message(bucket: &str) -> String {
    if bucket.is_empty() {
        "access denied: the key may not list buckets (s3:ListAllMyBuckets); test it against \
         a bucket instead"
            .to_owned()
    } else {
        format!(
            "access to bucket `{bucket}` was denied: the key's policy must allow s3:ListBucket \
             and s3:GetObject on it"
        )
    }
}

/// What a request was about, to name it in errors.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target<'a> {
    pub operation: &'static str,
    /// `host[:port]` of the endpoint the client talks to.
    pub host: &'a str,
    /// Empty for ListBuckets.
    pub bucket: &'a str,
    pub key: Option<&'a str>,
    /// The region the client signs for, to tell a wrong-region answer apart.
    pub region: &'a str,
}

/// An error and whether trying again may help.
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: S3Error,
    pub retryable: bool,
    /// From the server's `Retry-After` header.
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub fn fatal(error: S3Error) -> Failure {
        Failure {
            error,
            retryable: false,
            retry_after: None,
        }
    }

    pub fn retryable(error: S3Error) -> Failure {
        Failure {
            error,
            retryable: true,
            retry_after: None,
        }
    }
}

/// S3 error codes that mean "try again later".
const RETRYABLE_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "RequestLimitExceeded",
];

/// S3 error codes that mean the key itself is not accepted.
const CREDENTIAL_CODES: &[&str] = &[
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    // What s3s answers for an unknown access key id.
    "NotSignedUp",
];

pub(crate) fn classify<E>(
    error: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    target: Target<'_>,
) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let operation = target.operation;
    match &error {
        SdkError::ConstructionFailure(_) => Failure::fatal(S3Error::InvalidInput(format!(
            "could not build the {operation} request: {}",
            describe_causes(&error)
        ))),
        SdkError::TimeoutError(_) => Failure::retryable(S3Error::Transport(format!(
            "{operation} to `{}` timed out",
            target.host
        ))),
        SdkError::DispatchFailure(failure) => {
            if failure.is_user() {
                return Failure::fatal(S3Error::InvalidInput(format!(
                    "{operation} could not be sent: {}",
                    describe_causes(&error)
                )));
            }
            network_failure(&error, target, failure.is_timeout())
        }
        SdkError::ResponseError(_) => Failure::retryable(S3Error::Transport(format!(
            "{operation}: the answer from `{}` could not be read: {}",
            target.host,
            describe_causes(&error)
        ))),
        SdkError::ServiceError(context) => {
            let raw = context.raw();
            let status = raw.status().as_u16();
            let header = |name: &str| raw.headers().get(name).map(str::to_owned);
            let code = error.code().unwrap_or_default().to_owned();
            let message = error.message().unwrap_or_default().to_owned();
            classify_service_error(
                target,
                ServiceAnswer {
                    status,
                    code: &code,
                    message: &message,
                    bucket_region: header("x-amz-bucket-region"),
                    retry_after: header("retry-after"),
                },
            )
        }
        _ => Failure::fatal(S3Error::Internal(format!(
            "{operation} failed: {}",
            describe_causes(&error)
        ))),
    }
}

/// A request that never got an answer: permanent when the endpoint cannot be reached at all,
/// retried otherwise (a timeout, a reset).
fn network_failure(
    error: &(dyn StdError + 'static),
    target: Target<'_>,
    timed_out: bool,
) -> Failure {
    let host = target.host.to_owned();
    let detail = root_cause(error);
    let cause = network_cause(error);
    if let Some(why) = cause.unreachable() {
        return Failure::fatal(S3Error::Unreachable { host, why, detail });
    }
    match cause {
        NetworkCause::TimedOut => Failure::retryable(S3Error::Transport(format!(
            "{} to `{host}` timed out",
            target.operation
        ))),
        NetworkCause::Other if timed_out => Failure::retryable(S3Error::Transport(format!(
            "{} to `{host}` timed out",
            target.operation
        ))),
        _ => Failure::retryable(S3Error::Transport(format!(
            "{} to `{host}` failed: {detail}",
            target.operation
        ))),
    }
}

/// The parts of an S3 error response that decide what it means.
#[derive(Debug)]
pub(crate) struct ServiceAnswer<'a> {
    pub status: u16,
    pub code: &'a str,
    pub message: &'a str,
    pub bucket_region: Option<String>,
    pub retry_after: Option<String>,
}

pub(crate) fn classify_service_error(target: Target<'_>, answer: ServiceAnswer<'_>) -> Failure {
    let bucket = target.bucket.to_owned();
    let ServiceAnswer {
        status,
        code,
        message,
        ..
    } = answer;

    if let Some(region) = wrong_region(&answer, target.region) {
        return Failure::fatal(S3Error::WrongRegion { bucket, region });
    }
    if CREDENTIAL_CODES.contains(&code) {
        // The code is safe to log; the message is not needed (and never echoes the secret).
        tracing::warn!(
            operation = target.operation,
            code,
            "S3 rejected the stored AWS key"
        );
        return Failure::fatal(S3Error::CredentialsRejected {
            code: code.to_owned(),
        });
    }
    if RETRYABLE_CODES.contains(&code) || status >= 500 || status == 429 {
        let retry_after = answer
            .retry_after
            .as_deref()
            .and_then(|value| retry_after(value, SystemTime::now()));
        return Failure {
            error: S3Error::Transport(format!(
                "{} answered {status} {code}: {message}",
                target.operation
            )),
            retryable: true,
            retry_after,
        };
    }
    match (status, code) {
        (_, "NoSuchBucket") => Failure::fatal(S3Error::NoSuchBucket { bucket }),
        (_, "NoSuchKey") => Failure::fatal(S3Error::NotFound {
            key: target.key.unwrap_or_default().to_owned(),
        }),
        // HEAD answers carry no body, hence no code.
        (404, _) => match target.key {
            Some(key) => Failure::fatal(S3Error::NotFound {
                key: key.to_owned(),
            }),
            None => Failure::fatal(S3Error::NoSuchBucket { bucket }),
        },
        (_, "AccessDenied" | "AllAccessDisabled" | "AccountProblem") | (403, _) => {
            Failure::fatal(S3Error::AccessDenied { bucket })
        }
        (_, "PreconditionFailed" | "InvalidRange") | (412 | 416, _) => {
            Failure::fatal(S3Error::ObjectChanged {
                key: target.key.unwrap_or_default().to_owned(),
            })
        }
        _ => Failure::fatal(S3Error::Rejected {
            operation: target.operation,
            status,
            code: code.to_owned(),
            message: message.to_owned(),
        }),
    }
}

/// The bucket's real region, when S3 says the request went to the wrong one.
pub(crate) fn wrong_region(answer: &ServiceAnswer<'_>, configured: &str) -> Option<String> {
    let redirect_like = matches!(answer.status, 301 | 307 | 400)
        || matches!(
            answer.code,
            "PermanentRedirect"
                | "AuthorizationHeaderMalformed"
                | "IllegalLocationConstraintException"
        );
    if !redirect_like {
        return None;
    }
    let region = answer.bucket_region.clone().or_else(|| {
        // "... the region 'us-east-1' is wrong; expecting 'eu-west-1'"
        let (_, rest) = answer.message.split_once("expecting '")?;
        let (region, _) = rest.split_once('\'')?;
        Some(region.to_owned())
    })?;
    (!region.is_empty() && region != configured).then_some(region)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(status: u16, code: &str, message: &str, region_header: Option<&str>, expect: &str) {
        let target = Target {
            operation: "GetObject",
            host: "s3.example",
            bucket: "b",
            key: Some("k"),
            region: "us-east-1",
        };
        let failure = classify_service_error(
            target,
            ServiceAnswer {
                status,
                code,
                message,
                bucket_region: region_header.map(str::to_owned),
                retry_after: Some("2".to_owned()),
            },
        );
        let actual = format!("{:?} retryable={}", failure.error, failure.retryable);
        assert_eq!(actual, expect, "status {status} code {code}");
    }

    #[test]
    fn service_errors_are_classified() {
        check(
            403,
            "SignatureDoesNotMatch",
            "",
            None,
            "CredentialsRejected { code: \"SignatureDoesNotMatch\" } retryable=false",
        );
        check(
            403,
            "InvalidAccessKeyId",
            "",
            None,
            "CredentialsRejected { code: \"InvalidAccessKeyId\" } retryable=false",
        );
        check(
            403,
            "AccessDenied",
            "",
            None,
            "AccessDenied { bucket: \"b\" } retryable=false",
        );
        check(
            403,
            "",
            "",
            None,
            "AccessDenied { bucket: \"b\" } retryable=false",
        );
        check(
            404,
            "NoSuchBucket",
            "",
            None,
            "NoSuchBucket { bucket: \"b\" } retryable=false",
        );
        check(
            404,
            "NoSuchKey",
            "",
            None,
            "NotFound { key: \"k\" } retryable=false",
        );
        check(404, "", "", None, "NotFound { key: \"k\" } retryable=false");
        check(
            412,
            "PreconditionFailed",
            "",
            None,
            "ObjectChanged { key: \"k\" } retryable=false",
        );
        check(
            301,
            "PermanentRedirect",
            "",
            Some("eu-west-1"),
            "WrongRegion { bucket: \"b\", region: \"eu-west-1\" } retryable=false",
        );
        check(
            400,
            "AuthorizationHeaderMalformed",
            "The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-central-1'",
            None,
            "WrongRegion { bucket: \"b\", region: \"eu-central-1\" } retryable=false",
        );
        check(
            503,
            "SlowDown",
            "Please reduce your request rate.",
            None,
            "Transport(\"GetObject answered 503 SlowDown: Please reduce your request rate.\") retryable=true",
        );
        check(
            500,
            "InternalError",
            "x",
            None,
            "Transport(\"GetObject answered 500 InternalError: x\") retryable=true",
        );
        check(
            400,
            "RequestTimeout",
            "x",
            None,
            "Transport(\"GetObject answered 400 RequestTimeout: x\") retryable=true",
        );
        check(
            400,
            "InvalidArgument",
            "x",
            None,
            "Rejected { operation: \"GetObject\", status: 400, code: \"InvalidArgument\", message: \"x\" } retryable=false",
        );
    }
}
