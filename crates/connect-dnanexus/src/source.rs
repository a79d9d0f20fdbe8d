//! [`DnanexusSource`]: one token's view of DNAnexus, and its [`Source`] implementation.

use std::sync::Arc;

use keyledger_connect::{PartialFile, Progress, Source};
use tokio_util::sync::CancellationToken;

use crate::client::ApiClient;
use crate::verify::PartVerifier;
use crate::{
    DnanexusError, DnanexusLocation, DnanexusOptions, DnanexusSelection, DnanexusToken,
    FetchedFile, RemoteFile,
};

/// One token's view of DNAnexus. Cheap to clone; clones share connections and the part
/// verifier (parts of files fetched at the same time are checked together).
#[derive(Clone, Debug)]
pub struct DnanexusSource {
    pub(crate) api: Arc<ApiClient>,
    verifier: Arc<PartVerifier>,
    options: DnanexusOptions,
}

impl DnanexusSource {
    pub fn new(token: &DnanexusToken, options: &DnanexusOptions) -> Result<Self, DnanexusError> {
        if options.concurrency == 0 {
            return Err(DnanexusError::InvalidInput(
                "concurrency must be at least 1".into(),
            ));
        }
        if options.chunk_size < 64 << 10 {
            return Err(DnanexusError::InvalidInput(
                "chunk_size must be at least 64 KiB".into(),
            ));
        }
        if options.max_attempts == 0 {
            return Err(DnanexusError::InvalidInput(
                "max_attempts must be at least 1".into(),
            ));
        }
        if !(1..=1000).contains(&options.list_page_size) {
            return Err(DnanexusError::InvalidInput(
                "list_page_size must be from 1 to 1000".into(),
            ));
        }
        let api = ApiClient::new(token, options)?;
        Ok(Self {
            api: Arc::new(api),
            verifier: Arc::new(PartVerifier::new()),
            options: options.clone(),
        })
    }

    /// Like [`Source::list`], but looks at no more than `bound.max_scanned` files of
    /// `findDataObjects`, so a preview answers in bounded time and memory. DNAnexus pages by an
    /// opaque cursor, not by path: `bound.start_after` drops the files up to that path from
    /// what the bounded listing found (the full `/folder/name`).
    pub async fn list_bounded(
        &self,
        selection: &DnanexusSelection,
        bound: &keyledger_connect::ListBound,
    ) -> Result<keyledger_connect::BoundedListing<DnanexusLocation>, DnanexusError> {
        let (mut files, scanned, complete) = crate::list::list(
            &self.api,
            self.options.list_page_size,
            &selection.container,
            &selection.within,
            &selection.pattern,
            bound.max_scanned,
        )
        .await?;
        if let Some(after) = &bound.start_after {
            files.retain(|file| file.path.as_str() > after.as_str());
        }
        Ok(keyledger_connect::BoundedListing {
            files,
            scanned,
            complete,
        })
    }
}

impl Source for DnanexusSource {
    type Selection = DnanexusSelection;
    type Location = DnanexusLocation;
    type Verified = usize;
    /// The user id (`user-…`) the token belongs to.
    type Access = String;
    type Error = DnanexusError;

    /// `/system/whoami`; fails with [`DnanexusError::TokenRejected`] for an expired or revoked
    /// token.
    async fn check_access(&self) -> Result<String, DnanexusError> {
        let output = self
            .api
            .call("/system/whoami", &serde_json::json!({}))
            .await?;
        output
            .get("id")
            .and_then(|id| id.as_str())
            .map(str::to_owned)
            .ok_or_else(|| DnanexusError::invalid_response("whoami returned no id"))
    }

    /// The relative path has no leading slash: under `/reads`, file `/reads/sub/x.csv` is
    /// matched as `sub/x.csv` and `/reads/y.csv` as `y.csv`. The pattern is unanchored (as
    /// [`regex::Regex::is_match`]): write `^…$` to match whole paths. Results are ordered by
    /// folder, then name. A folder that does not exist yields no files.
    async fn list(&self, selection: &DnanexusSelection) -> Result<Vec<RemoteFile>, DnanexusError> {
        let (files, _, _) = crate::list::list(
            &self.api,
            self.options.list_page_size,
            &selection.container,
            &selection.within,
            &selection.pattern,
            u64::MAX,
        )
        .await?;
        Ok(files)
    }

    /// Resume: for a multi-part file the resume record lists the parts written in full; a
    /// later call for the same file re-checks those parts' MD5 on disk and fetches only the
    /// rest.
    async fn fetch(
        &self,
        file: &RemoteFile,
        partial: &PartialFile,
        progress: &Progress<'_>,
        cancel: &CancellationToken,
    ) -> Result<FetchedFile, DnanexusError> {
        crate::fetch::fetch(
            &self.api,
            &self.verifier,
            &self.options,
            file,
            partial,
            progress,
            cancel,
        )
        .await
    }
}
