//! Who may do what on the S3 test server: s3s's `S3Auth` (the secret behind an access key id,
//! so s3s can check the SigV4 signature) and `S3Access` (what AWS checks after the signature)
//! backed by the shared [`Iam`].
//!
//! The guarantee, in AWS's order and words: an unknown access key id, or a temporary one sent
//! without its session token, is `InvalidAccessKeyId` (403); a token that is not the one issued
//! with the key is `InvalidToken` (400); an expired one is `ExpiredToken` (400); a request that
//! a policy bounding the credential does not allow is `AccessDenied` (403), naming the action,
//! the resource and the kind of policy, as S3 does for same-account requests. The session token
//! is read from `X-Amz-Security-Token`, header or (presigned URLs) query parameter.

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::path::S3Path;
use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};

use crate::iam::{AccessRequest, CredentialRefusal, Iam};

/// `S3Auth` over the shared identities.
#[derive(Debug)]
pub(crate) struct IamAuth(pub Iam);

/// `S3Access` over the shared identities.
#[derive(Debug)]
pub(crate) struct IamAccess(pub Iam);

#[async_trait::async_trait]
impl S3Auth for IamAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        self.0
            .secret_of(access_key)
            .map(SecretKey::from)
            .ok_or_else(invalid_access_key_id)
    }
}

#[async_trait::async_trait]
impl S3Access for IamAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let Some(credentials) = cx.credentials() else {
            return Err(s3_error!(AccessDenied, "Signature is required"));
        };
        let token = security_token(cx);
        let principal = self
            .0
            .authenticate(&credentials.access_key, token.as_deref())
            .map_err(|refusal| match refusal {
                CredentialRefusal::UnknownAccessKey | CredentialRefusal::MissingToken => {
                    invalid_access_key_id()
                }
                CredentialRefusal::InvalidToken => S3Error::with_message(
                    S3ErrorCode::InvalidToken,
                    "The provided token is malformed or otherwise invalid.",
                ),
                CredentialRefusal::ExpiredToken => S3Error::with_message(
                    S3ErrorCode::ExpiredToken,
                    "The provided token has expired.",
                ),
            })?;
        let request = access_request(cx.s3_op().name(), cx.s3_path(), cx.uri().query());
        principal.authorize(&request).map_err(|denial| {
            S3Error::with_message(
                S3ErrorCode::AccessDenied,
                format!(
                    "User: {} is not authorized to perform: {} on resource: \"{}\" because {}",
                    principal.identity.arn,
                    request.action,
                    request.resource,
                    denial.reason(&request.action)
                ),
            )
        })
    }
}

fn invalid_access_key_id() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::InvalidAccessKeyId,
        "The AWS Access Key Id you provided does not exist in our records.",
    )
}

fn security_token(cx: &S3AccessContext<'_>) -> Option<String> {
    if let Some(value) = cx.headers().get("x-amz-security-token") {
        return value.to_str().ok().map(str::to_owned);
    }
    let query = cx.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "X-Amz-Security-Token")
        .map(|(_, value)| value.into_owned())
}

/// The IAM action, resource and condition keys of an S3 operation (as in AWS's "Actions,
/// resources, and condition keys for Amazon S3"). Operations not listed map to `s3:<Name>`.
fn access_request(operation: &str, path: &S3Path, query: Option<&str>) -> AccessRequest {
    let (bucket, key) = match path {
        S3Path::Root => (None, None),
        S3Path::Bucket { bucket } => (Some(&**bucket), None),
        S3Path::Object { bucket, key } => (Some(&**bucket), Some(&**key)),
    };
    let action = match operation {
        "ListObjects" | "ListObjectsV2" | "HeadBucket" => "s3:ListBucket",
        "ListBuckets" => "s3:ListAllMyBuckets",
        "GetObject" | "HeadObject" => "s3:GetObject",
        "PutObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "CompleteMultipartUpload"
        | "CopyObject"
        | "UploadPartCopy" => "s3:PutObject",
        "AbortMultipartUpload" => "s3:AbortMultipartUpload",
        "ListParts" => "s3:ListMultipartUploadParts",
        "ListMultipartUploads" => "s3:ListBucketMultipartUploads",
        "DeleteObject" | "DeleteObjects" => "s3:DeleteObject",
        other => return generic(other, bucket, key),
    };
    let resource = match (action, bucket, key) {
        ("s3:ListAllMyBuckets", _, _) => "*".to_owned(),
        (_, Some(bucket), Some(key)) => format!("arn:aws:s3:::{bucket}/{key}"),
        (_, Some(bucket), None) => format!("arn:aws:s3:::{bucket}"),
        (_, None, _) => "*".to_owned(),
    };
    let mut context = Vec::new();
    if matches!(operation, "ListObjects" | "ListObjectsV2")
        && let Some(query) = query
    {
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "prefix" => context.push(("s3:prefix".to_owned(), value.into_owned())),
                "delimiter" => context.push(("s3:delimiter".to_owned(), value.into_owned())),
                "max-keys" => context.push(("s3:max-keys".to_owned(), value.into_owned())),
                _ => {}
            }
        }
    }
    AccessRequest {
        action: action.to_owned(),
        resource,
        context,
    }
}

fn generic(operation: &str, bucket: Option<&str>, key: Option<&str>) -> AccessRequest {
    let resource = match (bucket, key) {
        (Some(bucket), Some(key)) => format!("arn:aws:s3:::{bucket}/{key}"),
        (Some(bucket), None) => format!("arn:aws:s3:::{bucket}"),
        _ => "*".to_owned(),
    };
    AccessRequest {
        action: format!("s3:{operation}"),
        resource,
        context: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_map_to_iam_actions() {
        let object = S3Path::Object {
            bucket: "lab".into(),
            key: "runs/a.bam".into(),
        };
        let bucket = S3Path::Bucket {
            bucket: "lab".into(),
        };
        let check = |operation: &str,
                     path: &S3Path,
                     query: Option<&str>,
                     expected: (&str, &str, &[(&str, &str)])| {
            let request = access_request(operation, path, query);
            let context: Vec<(&str, &str)> = request
                .context
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str()))
                .collect();
            assert_eq!(
                (
                    request.action.as_str(),
                    request.resource.as_str(),
                    context.as_slice()
                ),
                expected,
                "{operation}"
            );
        };
        check(
            "GetObject",
            &object,
            None,
            ("s3:GetObject", "arn:aws:s3:::lab/runs/a.bam", &[]),
        );
        check(
            "HeadObject",
            &object,
            None,
            ("s3:GetObject", "arn:aws:s3:::lab/runs/a.bam", &[]),
        );
        check(
            "ListObjectsV2",
            &bucket,
            Some("list-type=2&prefix=runs%2F&max-keys=1"),
            (
                "s3:ListBucket",
                "arn:aws:s3:::lab",
                &[("s3:prefix", "runs/"), ("s3:max-keys", "1")],
            ),
        );
        check(
            "HeadBucket",
            &bucket,
            None,
            ("s3:ListBucket", "arn:aws:s3:::lab", &[]),
        );
        check(
            "ListBuckets",
            &S3Path::Root,
            None,
            ("s3:ListAllMyBuckets", "*", &[]),
        );
        check(
            "PutObject",
            &object,
            None,
            ("s3:PutObject", "arn:aws:s3:::lab/runs/a.bam", &[]),
        );
        check(
            "GetBucketLocation",
            &bucket,
            None,
            ("s3:GetBucketLocation", "arn:aws:s3:::lab", &[]),
        );
    }
}
