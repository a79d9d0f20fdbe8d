//! The least-privilege test of a stored key: what an ingestion of one selection needs, each
//! capability checked and reported on its own, in the provider's words when refused.
//!
//! - AWS without a selection: `identity` (`sts:GetCallerIdentity`; never ListBuckets, which a
//!   key limited to one bucket may not call).
//! - AWS with a bucket and prefix: `list`, `read` (the first object's first byte) and `region`.
//! - AWS `role` keys: `assume_role` first (AssumeRole with the platform's key and the owner's
//!   external ID); the capabilities above are then tested with the role's session.
//! - DNAnexus: `user` (`whoami`), and with a project, `project` (the token's access level on
//!   it; `VIEW` is enough to ingest).
//!
//! The guarantee: the test reads at most one byte of one object and changes nothing at the
//! provider; every refusal carries a [`SourceErrorKind`], so callers classify it the way a job
//! failing for the same reason would be.

use std::sync::Arc;

use keyledger_connect::Source;
use keyledger_connect_s3::{AssumedSession, Probe, Refusal};
use keyledger_domain::Selection;
use keyledger_vault::Lease;
use parking_lot::Mutex;

use crate::IngestConfig;
use crate::remote::{SourceError, SourceErrorKind};
use crate::source::{RoleUse, SampleSource, source_for_use};

/// What the test saw: each capability, and the role sessions it assumed (a `role` key), for
/// the caller to record.
#[derive(Clone, Debug, Default)]
pub struct Probed {
    pub reports: Vec<CapabilityReport>,
    pub assumed: Vec<AssumedSession>,
}

/// One capability the test checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapabilityReport {
    /// `assume_role`, `identity`, `list`, `read`, `region`, `user` or `project`.
    pub capability: &'static str,
    pub ok: bool,
    /// What was seen, or why it was refused (the provider's words included). Never a secret.
    pub detail: String,
    /// What kind of refusal, when not `ok`.
    pub kind: Option<SourceErrorKind>,
}

/// Checks a selection's fields the way an ingestion request's are checked; the message names
/// the field. The selection's pattern is not used by the test.
pub fn check_probe_scope(selection: &Selection) -> Result<(), String> {
    crate::selection::validate(selection).map_err(|refusal| refusal.to_string())
}

/// Tests the leased credential for what an ingestion of `scope` needs (`None`: the credential
/// itself). Fails only when no test could run at all (a scope for another provider, a key the
/// connector cannot use); refusals are in the report.
///
/// A `role` key is first assumed (capability `assume_role`, with the session policy an
/// ingestion of `scope` would get); the other capabilities are then tested with its session.
pub async fn probe(
    lease: &Lease,
    scope: Option<&Selection>,
    config: &IngestConfig,
) -> Result<Probed, SourceError> {
    if let Some(selection) = scope
        && selection.provider() != lease.provider
    {
        return Err(SourceError::new(
            SourceErrorKind::Invalid,
            format!(
                "external key {} is a {} key: it cannot be tested against a {} selection",
                lease.key,
                lease.provider.as_str(),
                selection.provider().as_str()
            ),
        ));
    }
    let assumed = Arc::new(Mutex::new(Vec::new()));
    let role_use = RoleUse {
        purpose: format!("test-{}", lease.key),
        scope: match scope {
            Some(Selection::Aws { bucket, prefix, .. }) => Some((bucket.clone(), prefix.clone())),
            _ => None,
        },
        on_assumed: Some({
            let assumed = Arc::clone(&assumed);
            Arc::new(move |session: AssumedSession| {
                assumed.lock().push(session);
                Box::pin(async {})
            })
        }),
    };
    let reports = probe_with(lease, scope, config, role_use).await?;
    let assumed = std::mem::take(&mut *assumed.lock());
    Ok(Probed { reports, assumed })
}

async fn probe_with(
    lease: &Lease,
    scope: Option<&Selection>,
    config: &IngestConfig,
    role_use: RoleUse,
) -> Result<Vec<CapabilityReport>, SourceError> {
    match source_for_use(lease, config, role_use)? {
        SampleSource::S3(source) => {
            let mut reports = Vec::new();
            if let Some(assumed) = source.source.assume_role_now().await {
                match assumed {
                    Ok(session) => reports.push(passed(
                        "assume_role",
                        format!(
                            "assumed the role with the external ID (temporary key {})",
                            session.access_key_id
                        ),
                    )),
                    Err(failure) => {
                        // Nothing else can be tested without a session.
                        reports.push(CapabilityReport {
                            capability: "assume_role",
                            ok: false,
                            detail: failure.detail,
                            kind: Some(refusal_kind(failure.refusal)),
                        });
                        return Ok(reports);
                    }
                }
            }
            let probes = match scope {
                Some(Selection::Aws { bucket, prefix, .. }) => {
                    source.source.probe_bucket(bucket, prefix).await
                }
                _ => vec![
                    source
                        .source
                        .probe_identity(config.sts_endpoint.as_deref())
                        .await,
                ],
            };
            reports.extend(probes.into_iter().map(aws_report));
            Ok(reports)
        }
        SampleSource::Dnanexus(source) => {
            let mut reports = vec![match source.source.check_access().await {
                Ok(user) => passed(
                    "user",
                    format!("DNAnexus accepted the token; it belongs to {user}"),
                ),
                Err(error) => refused("user", crate::dnanexus::source_error(error)),
            }];
            if let Some(Selection::Dnanexus { project, .. }) = scope {
                let report = match source.source.project_access(project).await {
                    Ok(access) if access.can_ingest() => passed(
                        "project",
                        format!(
                            "{} access to {} ({}): enough to ingest (VIEW is)",
                            access.level, access.name, access.id
                        ),
                    ),
                    Ok(access) => CapabilityReport {
                        capability: "project",
                        ok: false,
                        detail: format!(
                            "missing permission: {} access to {} ({}); ingesting needs VIEW or more",
                            access.level, access.name, access.id
                        ),
                        kind: Some(SourceErrorKind::AccessDenied),
                    },
                    Err(error) => refused("project", crate::dnanexus::source_error(error)),
                };
                reports.push(report);
            }
            Ok(reports)
        }
    }
}

fn passed(capability: &'static str, detail: String) -> CapabilityReport {
    CapabilityReport {
        capability,
        ok: true,
        detail,
        kind: None,
    }
}

fn refused(capability: &'static str, error: SourceError) -> CapabilityReport {
    CapabilityReport {
        capability,
        ok: false,
        detail: error.message,
        kind: Some(error.kind),
    }
}

fn aws_report(probe: Probe) -> CapabilityReport {
    match probe.outcome {
        Ok(detail) => passed(probe.capability, detail),
        Err(failure) => CapabilityReport {
            capability: probe.capability,
            ok: false,
            detail: failure.detail,
            kind: Some(refusal_kind(failure.refusal)),
        },
    }
}

pub(crate) fn refusal_kind(refusal: Refusal) -> SourceErrorKind {
    match refusal {
        Refusal::WrongSecret
        | Refusal::UnknownKey
        | Refusal::ExpiredToken
        | Refusal::InvalidToken => SourceErrorKind::CredentialsRejected,
        Refusal::MissingPermission => SourceErrorKind::AccessDenied,
        Refusal::NoSuchBucket => SourceErrorKind::NotFound,
        Refusal::Unreachable => SourceErrorKind::Unreachable,
        Refusal::Transient => SourceErrorKind::Transient,
        Refusal::ClockSkew | Refusal::WrongRegion | Refusal::Other => SourceErrorKind::Rejected,
    }
}
