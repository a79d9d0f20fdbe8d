//! The providers a job can read from, behind one enum: each variant wraps a connector that
//! implements [`keyledger_connect::Source`], so a job lists and fetches without knowing which.

use std::path::Path;

use keyledger_connect::PartialFile;
use keyledger_domain::{Provider, Selection};
use keyledger_vault::{ExternalCredential, Lease};
use tokio_util::sync::CancellationToken;

use crate::IngestConfig;
use crate::dnanexus::DnanexusSampleSource;
use crate::remote::{Fetched, Listed, Progress, RemoteFile, SourceError, SourceErrorKind};
use crate::s3::S3SampleSource;

/// Where sample files come from: one provider, one leased credential.
///
/// Never puts a secret into an error, a log line or a `Debug` output.
#[derive(Debug, Clone)]
pub enum SampleSource {
    S3(S3SampleSource),
    Dnanexus(DnanexusSampleSource),
}

impl SampleSource {
    pub fn provider(&self) -> Provider {
        match self {
            SampleSource::S3(_) => Provider::Aws,
            SampleSource::Dnanexus(_) => Provider::Dnanexus,
        }
    }

    /// "Save and test": checks the credential against the provider and describes what it saw.
    pub async fn check(&self) -> Result<String, SourceError> {
        match self {
            SampleSource::S3(source) => source.check().await,
            SampleSource::Dnanexus(source) => source.check().await,
        }
    }

    /// The files a selection picks, in a stable order.
    pub async fn list(&self, selection: &Selection) -> Result<Vec<RemoteFile>, SourceError> {
        match self {
            SampleSource::S3(source) => source.list(selection).await,
            SampleSource::Dnanexus(source) => source.list(selection).await,
        }
    }

    /// Downloads and verifies one listed file into `partial_path`. On success the partial file
    /// is complete and fsynced; the caller moves it into place. On failure the caller discards
    /// it (and its resume record, `<partial_path>.parts`).
    pub async fn fetch(
        &self,
        file: &RemoteFile,
        partial_path: &Path,
        progress: &Progress<'_>,
        cancel: &CancellationToken,
    ) -> Result<Fetched, SourceError> {
        let partial = PartialFile::new(partial_path);
        match (self, &file.listed) {
            (SampleSource::S3(source), Listed::S3(listed)) => {
                source.fetch(listed, &partial, progress, cancel).await
            }
            (SampleSource::Dnanexus(source), Listed::Dnanexus(listed)) => {
                source.fetch(listed, &partial, progress, cancel).await
            }
            (source, _) => {
                let provider = match source {
                    SampleSource::S3(_) => "S3",
                    SampleSource::Dnanexus(_) => "DNAnexus",
                };
                Err(SourceError::new(
                    SourceErrorKind::Invalid,
                    format!("{} was not listed from {provider}", file.path),
                ))
            }
        }
    }
}

/// What a `role` key's sessions are for: the session name's purpose (a job or key id), the
/// bucket and prefix the session policy narrows them to (`None`: no session policy, for a
/// test of the credential alone), and who records each AssumeRole.
#[derive(Clone, Default)]
pub struct RoleUse {
    pub purpose: String,
    pub scope: Option<(String, String)>,
    pub on_assumed: Option<keyledger_connect_s3::OnAssumed>,
}

impl std::fmt::Debug for RoleUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleUse")
            .field("purpose", &self.purpose)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Builds the adapter for a leased credential (a role's sessions named after the key).
pub fn source_for(lease: &Lease, config: &IngestConfig) -> Result<SampleSource, SourceError> {
    let role_use = RoleUse {
        purpose: lease.key.to_string(),
        ..RoleUse::default()
    };
    source_for_use(lease, config, role_use)
}

/// Builds the adapter for a leased credential; a `role` key's sessions are for `role_use`.
pub fn source_for_use(
    lease: &Lease,
    config: &IngestConfig,
    role_use: RoleUse,
) -> Result<SampleSource, SourceError> {
    source_for_credential(lease.key.as_str(), &lease.credential, config, role_use)
}

/// Builds the adapter for a credential of the external key `key` (named in errors only): what
/// a worker process does with the credential the vault leased it.
pub fn source_for_credential(
    key: &str,
    credential: &ExternalCredential,
    config: &IngestConfig,
    role_use: RoleUse,
) -> Result<SampleSource, SourceError> {
    match credential {
        ExternalCredential::Aws { .. } | ExternalCredential::AwsRole { .. } => {
            Ok(SampleSource::S3(S3SampleSource::from_credential(
                key, credential, config, role_use,
            )?))
        }
        ExternalCredential::Dnanexus { .. } => Ok(SampleSource::Dnanexus(
            DnanexusSampleSource::from_credential(key, credential, &config.dnanexus)?,
        )),
    }
}
