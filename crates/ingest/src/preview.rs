//! A preview: what a selection picks, without fetching anything and without recording anything.
//!
//! Guarantee: a preview's time and memory are bounded whatever the size of the bucket or
//! project. It looks at no more than [`IngestConfig::preview_max_scanned`](crate::IngestConfig)
//! entries of the provider's listing (S3 asks each page for no more than what is left) and
//! says when it stopped there (`complete: false`): the counts are then a lower bound. Only the
//! first page of paths is returned; `next_cursor` continues after its last path.
//!
//! The credential is leased for the listing only, as a job does; nothing is appended to the log
//! (a preview is a read, and a debounced console preview would otherwise fill the log).

use keyledger_connect::{BoundedListing, ListBound};
use keyledger_domain::{
    Actor, DomainError, KeyStatus, Permission, Provider, Selection, ValidationError, permitted_user,
};
use serde::Serialize;

use crate::dnanexus::{normalize_folder, relative_path};
use crate::remote::SourceError;
use crate::s3::prefix_folder;
use crate::source::{SampleSource, source_for};
use crate::{IngestError, Ingestor, selection};

/// Paths in a preview's page when the caller asks for none.
pub const DEFAULT_PREVIEW_PAGE: usize = 100;
/// Most paths in one page.
pub const MAX_PREVIEW_PAGE: usize = 1000;

/// What to preview: a job's selection, a page size, and where to continue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviewRequest {
    pub selection: Selection,
    /// The `next_cursor` of an earlier preview of the same selection.
    pub cursor: Option<String>,
    /// Paths to return (1 to [`MAX_PREVIEW_PAGE`]).
    pub page_size: usize,
}

/// One file a selection picks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PreviewFile {
    /// Where a job would store it, relative to its batch folder.
    pub path: String,
    /// The provider's full path (the S3 key, the DNAnexus `/folder/name`).
    pub remote_path: String,
    pub size: u64,
}

/// What a selection picks, counted over what the preview looked at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Preview {
    pub provider: Provider,
    /// Files that match (after `cursor`, when one was given).
    pub matched: u64,
    /// Their total size in bytes.
    pub total_bytes: u64,
    /// Entries of the provider's listing looked at, matching or not.
    pub scanned: u64,
    /// Whether the listing reached the end of the selection. `false`: it stopped at `limit`
    /// entries, `matched` and `total_bytes` are lower bounds, and `note` says so.
    pub complete: bool,
    /// The most entries a preview looks at.
    pub limit: u64,
    /// Why the counts may be short, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The first page of matching files, in the provider's order.
    pub files: Vec<PreviewFile>,
    /// Pass as `cursor` for the next page; absent after the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl Ingestor {
    /// Lists what `request.selection` picks for `actor`, with `actor`'s own key for the
    /// provider, and fetches nothing. Refused as a job would be: no permission, a malformed
    /// selection, no usable key; a provider's refusal is an [`IngestError::Source`].
    pub async fn preview(
        &self,
        actor: Actor,
        request: PreviewRequest,
    ) -> Result<Preview, IngestError> {
        let shared = &self.shared;
        let now = shared.vault.now();
        let provider = request.selection.provider();
        let key = shared.vault.read(|state| {
            let owner = permitted_user(state, &actor, Permission::ImportOrganizationSamples)?;
            state
                .active_external_key(&owner, provider)
                .filter(|key| key.status_at(now) == KeyStatus::Active)
                .map(|key| key.id.clone())
                .ok_or(DomainError::NoExternalKey { provider })
        })?;
        selection::validate(&request.selection).map_err(IngestError::InvalidSelection)?;
        if !(1..=MAX_PREVIEW_PAGE).contains(&request.page_size) {
            return Err(IngestError::InvalidSelection(ValidationError::new(
                "page_size",
                format!("give 1 to {MAX_PREVIEW_PAGE}"),
            )));
        }
        let limit = shared.config.preview_max_scanned.max(1);
        let bound = ListBound {
            max_scanned: limit,
            start_after: request.cursor.clone(),
        };
        let lease = shared.vault.lease_external_key(&key)?;
        let source = source_for(&lease, &shared.config).map_err(IngestError::Source)?;
        drop(lease);
        let files = list_bounded(&source, &request.selection, &bound)
            .await
            .map_err(IngestError::Source)?;
        Ok(summarise(provider, files, limit, request.page_size))
    }
}

/// Lists with the connector's bounded listing and maps each file to its stored path as a job
/// would (`s3::list`, `dnanexus::list`).
async fn list_bounded(
    source: &SampleSource,
    selection: &Selection,
    bound: &ListBound,
) -> Result<(Vec<PreviewFile>, u64, bool), SourceError> {
    let pattern = match selection {
        Selection::Aws { pattern, .. } | Selection::Dnanexus { pattern, .. } => pattern,
    };
    let pattern = selection::compile_pattern(pattern)
        .map_err(|message| SourceError::new(crate::SourceErrorKind::Invalid, message))?;
    match (source, selection) {
        (SampleSource::S3(source), Selection::Aws { bucket, prefix, .. }) => {
            let BoundedListing {
                files,
                scanned,
                complete,
            } = source
                .source
                .list_bounded(
                    &keyledger_connect_s3::S3Selection::new(
                        bucket.as_str(),
                        prefix.as_str(),
                        pattern,
                    ),
                    bound,
                )
                .await
                .map_err(crate::s3::source_error)?;
            let folder = prefix_folder(prefix);
            let entries = files
                .into_iter()
                .map(|object| PreviewFile {
                    path: object
                        .path
                        .strip_prefix(folder)
                        .unwrap_or(&object.path)
                        .to_owned(),
                    remote_path: object.path,
                    size: object.size,
                })
                .collect();
            Ok((entries, scanned, complete))
        }
        (
            SampleSource::Dnanexus(source),
            Selection::Dnanexus {
                project, folder, ..
            },
        ) => {
            let BoundedListing {
                mut files,
                scanned,
                complete,
            } = source
                .source
                .list_bounded(
                    &keyledger_connect_dnanexus::DnanexusSelection::new(
                        project.as_str(),
                        folder.as_str(),
                        pattern,
                    ),
                    bound,
                )
                .await
                .map_err(crate::dnanexus::source_error)?;
            files.sort_by(|a, b| a.path.cmp(&b.path));
            let scope = normalize_folder(folder);
            let entries = files
                .into_iter()
                .map(|file| PreviewFile {
                    path: relative_path(&scope, &file),
                    remote_path: file.path,
                    size: file.size,
                })
                .collect();
            Ok((entries, scanned, complete))
        }
        _ => Err(SourceError::new(
            crate::SourceErrorKind::Invalid,
            "the key's provider does not match the selection's",
        )),
    }
}

fn summarise(
    provider: Provider,
    (entries, scanned, complete): (Vec<PreviewFile>, u64, bool),
    limit: u64,
    page_size: usize,
) -> Preview {
    let matched = entries.len() as u64;
    let total_bytes = entries.iter().map(|file| file.size).sum();
    let more = entries.len() > page_size;
    let files: Vec<PreviewFile> = entries.into_iter().take(page_size).collect();
    // After a stopped listing, the next page continues the listing itself.
    let next_cursor = (more || !complete)
        .then(|| files.last().map(|file| file.remote_path.clone()))
        .flatten();
    let note = (!complete).then(|| {
        format!(
            "the preview stopped listing after {scanned} entries (its limit is {limit}); more files may match: the counts are at least these. Narrow the prefix or folder to see all"
        )
    });
    Preview {
        provider,
        matched,
        total_bytes,
        scanned,
        complete,
        limit,
        note,
        files,
        next_cursor,
    }
}
