//! The JSON a worker process and the vault exchange (decision 0025): the grant of a job's
//! credential, and reports of its progress. The API serves these types; `keyledger worker`
//! reads them, so both sides share one definition.
//!
//! The grant and a renewed `role` session (`WireCredential`, decision 0030) are the only JSON
//! that carries a secret: their `Debug` redacts it, and it is zeroized when dropped. A `role`
//! key's credential is never sent: the vault assumes the role and sends the session.

use std::fmt;

use keyledger_crypto::SecretString;
use keyledger_domain::public::hex;
use keyledger_domain::{FailureKind, IngestionProgress, Selection, Timestamp};
use keyledger_vault::{AwsSessionToken, ExternalCredential, JobGrant};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// `POST /v1/worker/ingestions/{id}/lease`: the ticket the job's message carried.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    pub ticket: String,
}

impl fmt::Debug for LeaseRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LeaseRequest { ticket: [redacted] }")
    }
}

/// The job and its credential, leased to one worker.
#[derive(Serialize, Deserialize)]
pub struct GrantBody {
    pub lease: String,
    /// RFC 3339.
    pub expires_at: String,
    pub ingestion: String,
    pub owner: String,
    pub external_key: String,
    pub selection: Selection,
    pub destination: String,
    pub batch_id: String,
    /// Whether the listing is already recorded (a resumed job).
    pub listed: bool,
    /// Paths that already have their outcome: a resumed job skips them.
    pub recorded: Vec<String>,
    pub credential: WireCredential,
    /// The credential is a session of a `role` key that the vault assumed for this job: ask
    /// `POST /v1/worker/ingestions/{id}/session` for the next one (decision 0030).
    #[serde(default)]
    pub renewable: bool,
}

/// `POST /v1/worker/ingestions/{id}/session`: a new session of the job's `role` key, under
/// the job's lease.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    pub lease: String,
}

impl fmt::Debug for GrantBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantBody")
            .field("lease", &self.lease)
            .field("ingestion", &self.ingestion)
            .field("external_key", &self.external_key)
            .field("credential", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// A decrypted credential on the wire. Zeroized on drop; never printed.
#[derive(Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case")]
pub enum WireCredential {
    Aws {
        access_key_id: String,
        secret_access_key: String,
        region: String,
        session_token: Option<String>,
        /// RFC 3339; with `session_token` only.
        token_expires_at: Option<String>,
    },
    Dnanexus {
        token: String,
    },
}

impl fmt::Debug for WireCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Drop for WireCredential {
    fn drop(&mut self) {
        match self {
            WireCredential::Aws {
                secret_access_key,
                session_token,
                ..
            } => {
                secret_access_key.zeroize();
                session_token.zeroize();
            }
            WireCredential::Dnanexus { token } => token.zeroize(),
        }
    }
}

impl GrantBody {
    /// The grant as sent; a `role` key's credential must have been replaced by a session
    /// first (`session_for_job`), which `renewable` says.
    pub fn from_grant(grant: &JobGrant, renewable: bool) -> Result<GrantBody, String> {
        let job = &grant.job;
        Ok(GrantBody {
            lease: grant.lease.clone(),
            expires_at: grant.expires_at.to_rfc3339(),
            ingestion: job.id.to_string(),
            owner: job.owner.to_string(),
            external_key: job.external_key.to_string(),
            selection: job.selection.clone(),
            destination: job.destination.clone(),
            batch_id: job.batch_id.clone(),
            listed: job.files_selected.is_some(),
            recorded: job.files.iter().map(|file| file.path.clone()).collect(),
            credential: WireCredential::from_credential(&grant.credential)?,
            renewable,
        })
    }
}

impl WireCredential {
    /// A `role` key's credential never goes on the wire: the vault assumes the role and sends
    /// the session.
    pub fn from_credential(credential: &ExternalCredential) -> Result<WireCredential, String> {
        Ok(match credential {
            ExternalCredential::Aws {
                access_key_id,
                secret_access_key,
                region,
                session,
            } => WireCredential::Aws {
                access_key_id: access_key_id.clone(),
                secret_access_key: secret_access_key.expose().to_owned(),
                region: region.clone(),
                session_token: session.as_ref().map(|s| s.token.expose().to_owned()),
                token_expires_at: session.as_ref().map(|s| s.expires_at.to_rfc3339()),
            },
            ExternalCredential::Dnanexus { token } => WireCredential::Dnanexus {
                token: token.expose().to_owned(),
            },
            ExternalCredential::AwsRole { .. } => {
                return Err("a role key's credential is a session the vault assumes".to_owned());
            }
        })
    }

    /// The credential in the secret types the connectors take.
    pub fn to_credential(&self) -> Result<ExternalCredential, String> {
        Ok(match self {
            WireCredential::Aws {
                access_key_id,
                secret_access_key,
                region,
                session_token,
                token_expires_at,
            } => ExternalCredential::Aws {
                access_key_id: access_key_id.clone(),
                secret_access_key: SecretString::new(secret_access_key.clone()),
                region: region.clone(),
                session: match (session_token, token_expires_at) {
                    (Some(token), Some(at)) => Some(AwsSessionToken {
                        token: SecretString::new(token.clone()),
                        expires_at: Timestamp::parse_rfc3339(at)
                            .map_err(|error| format!("token_expires_at: {error}"))?,
                    }),
                    (None, None) => None,
                    _ => {
                        return Err("session_token and token_expires_at come together".to_owned());
                    }
                },
            },
            WireCredential::Dnanexus { token } => ExternalCredential::Dnanexus {
                token: SecretString::new(token.clone()),
            },
        })
    }
}

/// `POST /v1/worker/ingestions/{id}/report`: progress under a lease, recorded all or none.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    pub lease: String,
    pub items: Vec<ReportItem>,
}

/// Most items in one report.
pub const MAX_REPORT_ITEMS: usize = 1000;

/// `POST /v1/worker/ingestions/{id}/unchanged`: part of the job's listing, with versions, under
/// the job's lease (decision 0033).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnchangedRequest {
    pub lease: String,
    pub files: Vec<crate::ListedVersion>,
}

/// Which files of an [`UnchangedRequest`] the store already holds in the same version from the
/// same source: their indices in `files`. Empty for a forced job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnchangedAnswer {
    pub unchanged: Vec<usize>,
}

/// Most files in one [`UnchangedRequest`]; a worker also keeps each request well under the
/// API's body limit.
pub const MAX_UNCHANGED_FILES: usize = 1000;

/// One step of a job, as a worker reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReportItem {
    Listed {
        files: u64,
        bytes: u64,
    },
    FileFetched {
        path: String,
        size: u64,
        /// Hex.
        sha256: String,
        source_etag: String,
    },
    FileFailed {
        path: String,
        reason: String,
        failure_kind: FailureKind,
    },
    Completed,
    Failed {
        reason: String,
        failure_kind: FailureKind,
    },
    /// Files the vault said the store already holds in the same version (`unchanged`):
    /// recorded once, as `IngestionFilesSkipped`.
    Skipped {
        files: u64,
        bytes: u64,
    },
}

/// What a report recorded: items already recorded are skipped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportAnswer {
    pub recorded: usize,
    pub skipped: usize,
}

impl ReportItem {
    pub fn fetched(path: String, size: u64, sha256: &[u8; 32], source_etag: String) -> Self {
        ReportItem::FileFetched {
            path,
            size,
            sha256: hex(sha256),
            source_etag,
        }
    }

    /// The domain's form; a message naming the field when the item is malformed.
    pub fn into_progress(self) -> Result<IngestionProgress, String> {
        let bounded = |field: &str, text: &str, max: usize| {
            if text.chars().count() > max {
                Err(format!("{field}: at most {max} characters"))
            } else {
                Ok(())
            }
        };
        Ok(match self {
            ReportItem::Listed { files, bytes } => IngestionProgress::Listed { files, bytes },
            ReportItem::FileFetched {
                path,
                size,
                sha256,
                source_etag,
            } => {
                bounded("path", &path, 4096)?;
                bounded("source_etag", &source_etag, 1024)?;
                let digest = (sha256.len() == 64)
                    .then(|| {
                        let mut out = [0u8; 32];
                        for (index, byte) in out.iter_mut().enumerate() {
                            *byte = u8::from_str_radix(sha256.get(index * 2..index * 2 + 2)?, 16)
                                .ok()?;
                        }
                        Some(out)
                    })
                    .flatten()
                    .ok_or("sha256: 64 hexadecimal digits")?;
                IngestionProgress::FileFetched {
                    path,
                    size,
                    sha256: digest,
                    source_etag,
                }
            }
            ReportItem::FileFailed {
                path,
                reason,
                failure_kind,
            } => {
                bounded("path", &path, 4096)?;
                bounded("reason", &reason, 1000)?;
                IngestionProgress::FileFailed {
                    path,
                    reason,
                    failure_kind,
                }
            }
            ReportItem::Completed => IngestionProgress::Completed,
            ReportItem::Skipped { files, bytes } => IngestionProgress::Skipped { files, bytes },
            ReportItem::Failed {
                reason,
                failure_kind,
            } => {
                bounded("reason", &reason, 1000)?;
                IngestionProgress::Failed {
                    reason,
                    failure_kind,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_keys_credential_never_goes_on_the_wire() {
        let role = ExternalCredential::AwsRole {
            role_arn: "arn:aws:iam::111122223333:role/lab".to_owned(),
            region: "us-east-1".to_owned(),
            external_id: "kl-x".to_owned(),
        };
        assert!(WireCredential::from_credential(&role).is_err());
        // Only `aws` and `dnanexus` credentials are read back.
        let sent = r#"{"provider":"aws_role","role_arn":"a","region":"r","external_id":"e"}"#;
        assert!(serde_json::from_str::<WireCredential>(sent).is_err());
    }

    #[test]
    fn a_session_round_trips_with_its_expiry() {
        let sent = r#"{"provider":"aws","access_key_id":"ASIAX","secret_access_key":"s","region":"us-east-1","session_token":"t","token_expires_at":"2026-12-06T00:15:00Z"}"#;
        let wire: WireCredential = serde_json::from_str(sent).unwrap();
        let Ok(ExternalCredential::Aws {
            session: Some(session),
            ..
        }) = wire.to_credential()
        else {
            panic!("not a session");
        };
        assert_eq!(session.expires_at.to_rfc3339(), "2026-12-06T00:15:00.000Z");
        assert_eq!(format!("{wire:?}"), "[redacted]");
    }
}
