//! The S3 adapter of [`SampleSource`](crate::SampleSource), over `keyledger-connect-s3`.
//!
//! Selection: bucket + prefix + a regex matched (unanchored) against the full object key.
//! Stored path: the key relative to the prefix's folder (the prefix up to its last `/`), so
//! prefix `runs/2024-` stores `runs/2024-01/a.csv` as `2024-01/a.csv`.

use keyledger_connect::{PartialFile, Source};
use keyledger_connect_s3::{
    AccessCheck, AssumeRoleSettings, AwsCredentials, S3Error, S3Selection, S3Source,
    read_only_session_policy, session_name,
};
use keyledger_domain::Selection;
use keyledger_vault::{ExternalCredential, Lease};
use tokio_util::sync::CancellationToken;

use crate::IngestConfig;
use crate::remote::{Fetched, Listed, Progress, RemoteFile, SourceError, SourceErrorKind};
use crate::selection::compile_pattern;
use crate::source::RoleUse;

/// Lists and fetches with one leased AWS key.
#[derive(Debug, Clone)]
pub struct S3SampleSource {
    pub(crate) source: S3Source,
}

impl S3SampleSource {
    pub fn from_lease(
        lease: &Lease,
        config: &IngestConfig,
        role_use: RoleUse,
    ) -> Result<S3SampleSource, SourceError> {
        S3SampleSource::from_credential(lease.key.as_str(), &lease.credential, config, role_use)
    }

    /// The source for a credential of the external key `key` (named in errors only); a `role`
    /// key's sessions are for `role_use`.
    pub fn from_credential(
        key: &str,
        credential: &ExternalCredential,
        config: &IngestConfig,
        role_use: RoleUse,
    ) -> Result<S3SampleSource, SourceError> {
        let options = &config.s3;
        if let ExternalCredential::AwsRole {
            role_arn,
            region,
            external_id,
        } = credential
        {
            let settings = role_settings(role_arn, region, external_id, config, &role_use)?;
            let source = S3Source::assuming_role(settings, options, role_use.on_assumed)
                .map_err(source_error)?;
            return Ok(S3SampleSource { source });
        }
        let Some(credentials) = aws_credentials(credential) else {
            return Err(SourceError::new(
                SourceErrorKind::Invalid,
                format!("external key {key} is not an AWS key"),
            ));
        };
        let source = S3Source::new(&credentials, options).map_err(source_error)?;
        Ok(S3SampleSource { source })
    }

    /// The source of a worker's job on a `role` key: signs with `first` (the session the vault
    /// leased with the job), then with sessions `issue` asks the vault for, before each ends
    /// and when S3 answers `ExpiredToken`.
    pub fn with_issued_sessions(
        key: &str,
        first: &ExternalCredential,
        config: &IngestConfig,
        issue: keyledger_connect_s3::SessionIssuer,
    ) -> Result<S3SampleSource, SourceError> {
        let Some(first) = aws_credentials(first) else {
            return Err(SourceError::new(
                SourceErrorKind::Invalid,
                format!("external key {key}: the vault leased no AWS session for its role"),
            ));
        };
        let source =
            S3Source::with_issued_sessions(first, &config.s3, issue).map_err(source_error)?;
        Ok(S3SampleSource { source })
    }

    /// For a role key: assumes the role now, so that a refusal ends the job before anything
    /// else, in STS's words. Nothing to do for other keys.
    pub async fn assume_role_now(&self) -> Result<(), SourceError> {
        match self.source.assume_role_now().await {
            Some(Err(failure)) => Err(SourceError::new(
                crate::probe::refusal_kind(failure.refusal),
                format!("the role could not be assumed: {}", failure.detail),
            )),
            _ => Ok(()),
        }
    }

    /// "Save and test" against one bucket (ListObjectsV2), for keys that may not list buckets.
    pub async fn check_bucket(&self, bucket: &str) -> Result<String, SourceError> {
        let check = self
            .source
            .check_bucket_access(bucket)
            .await
            .map_err(source_error)?;
        Ok(describe_check(&check))
    }

    /// "Save and test": ListBuckets.
    pub async fn check(&self) -> Result<String, SourceError> {
        let check = self.source.check_access().await.map_err(source_error)?;
        Ok(describe_check(&check))
    }

    /// The objects an AWS selection picks, stored relative to the prefix's folder.
    pub async fn list(&self, selection: &Selection) -> Result<Vec<RemoteFile>, SourceError> {
        let Selection::Aws {
            bucket,
            prefix,
            pattern,
        } = selection
        else {
            return Err(SourceError::new(
                SourceErrorKind::Invalid,
                "an AWS key cannot list a DNAnexus selection",
            ));
        };
        let pattern = compile_pattern(pattern)
            .map_err(|message| SourceError::new(SourceErrorKind::Invalid, message))?;
        let objects = self
            .source
            .list(&S3Selection::new(bucket.as_str(), prefix.as_str(), pattern))
            .await
            .map_err(source_error)?;
        let folder = prefix_folder(prefix);
        Ok(objects
            .into_iter()
            .map(|object| RemoteFile {
                path: object
                    .path
                    .strip_prefix(folder)
                    .unwrap_or(&object.path)
                    .to_owned(),
                size: object.size,
                etag: object.version.clone(),
                listed: Listed::S3(object),
            })
            .collect())
    }

    /// Fetches one listed object into `partial`.
    pub async fn fetch(
        &self,
        object: &keyledger_connect_s3::RemoteFile,
        partial: &PartialFile,
        progress: &Progress<'_>,
        cancel: &CancellationToken,
    ) -> Result<Fetched, SourceError> {
        let fetched = self
            .source
            .fetch(object, partial, progress, cancel)
            .await
            .map_err(source_error)?;
        Ok(fetched.into())
    }
}

/// The folder part of a prefix: everything up to and including its last `/`.
pub(crate) fn prefix_folder(prefix: &str) -> &str {
    match prefix.rfind('/') {
        Some(end) => &prefix[..=end],
        None => "",
    }
}

fn describe_check(check: &AccessCheck) -> String {
    match check {
        AccessCheck::Buckets { count } => {
            format!("S3 accepted the key; it can see {count} bucket(s)")
        }
        AccessCheck::Bucket { bucket, is_empty } => format!(
            "S3 accepted the key; it can list bucket `{bucket}`{}",
            if *is_empty { " (empty)" } else { "" }
        ),
    }
}

pub(crate) fn source_error(error: S3Error) -> SourceError {
    let kind = match &error {
        S3Error::CredentialsRejected { .. } => SourceErrorKind::CredentialsRejected,
        S3Error::AccessDenied { .. } => SourceErrorKind::AccessDenied,
        // The provider refused the request as configured (the key's region): fix the key.
        S3Error::WrongRegion { .. } | S3Error::Rejected { .. } => SourceErrorKind::Rejected,
        S3Error::NoSuchBucket { .. } | S3Error::NotFound { .. } => SourceErrorKind::NotFound,
        S3Error::InvalidInput(_) | S3Error::UnexpectedAnswer(_) | S3Error::Internal(_) => {
            SourceErrorKind::Invalid
        }
        S3Error::ObjectChanged { .. } => SourceErrorKind::Changed,
        S3Error::Verification { .. } => SourceErrorKind::Verification,
        S3Error::Cancelled => SourceErrorKind::Cancelled,
        S3Error::Unreachable { .. } => SourceErrorKind::Unreachable,
        S3Error::Transport(_) => SourceErrorKind::Transient,
        S3Error::Io(_) => SourceErrorKind::Local,
    };
    SourceError::new(kind, error.to_string())
}

/// An AWS key (long-lived or a session) in the connector's form; `None` for other kinds.
pub fn aws_credentials(credential: &ExternalCredential) -> Option<AwsCredentials> {
    let ExternalCredential::Aws {
        access_key_id,
        secret_access_key,
        region,
        session,
    } = credential
    else {
        return None;
    };
    Some(AwsCredentials {
        access_key_id: access_key_id.clone(),
        secret_access_key: secret_access_key.expose().to_owned(),
        region: region.clone(),
        session_token: session.as_ref().map(|s| s.token.expose().to_owned()),
        expires_at: session.as_ref().map(|s| {
            let millis = u64::try_from(s.expires_at.as_millis()).unwrap_or(0);
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis)
        }),
    })
}

/// How to assume a `role` key's role for `role_use`: the platform's key and session length
/// from `[ingest] aws_role_*`, the session named after the purpose, narrowed to its scope.
pub(crate) fn role_settings(
    role_arn: &str,
    region: &str,
    external_id: &str,
    config: &IngestConfig,
    role_use: &RoleUse,
) -> Result<AssumeRoleSettings, SourceError> {
    let Some(platform) = &config.aws_role else {
        return Err(SourceError::new(
            SourceErrorKind::Invalid,
            "this server has no AWS credentials of its own to assume roles with: the \
             operator sets `[ingest] aws_role_credentials_file` (docs/operations.md)",
        ));
    };
    let session_policy = match &role_use.scope {
        Some((bucket, prefix)) => {
            Some(read_only_session_policy(bucket, prefix).map_err(source_error)?)
        }
        None => None,
    };
    Ok(AssumeRoleSettings {
        role_arn: role_arn.to_owned(),
        external_id: external_id.to_owned(),
        session_name: session_name(&role_use.purpose),
        session_policy,
        duration: platform.session_duration,
        region: region.to_owned(),
        sts_endpoint: config.sts_endpoint.clone(),
        base: platform.credentials.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_folders() {
        for (prefix, folder) in [
            ("", ""),
            ("runs", ""),
            ("runs/", "runs/"),
            ("runs/2024-", "runs/"),
            ("a/b/c", "a/b/"),
        ] {
            assert_eq!(prefix_folder(prefix), folder, "{prefix}");
        }
    }
}
