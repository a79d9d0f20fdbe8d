//! The DNAnexus adapter of [`SampleSource`](crate::SampleSource), over
//! `keyledger-connect-dnanexus`.
//!
//! Selection: project (id or exact name) + folder + a regex matched (unanchored) against the
//! file's path relative to that folder (`sub/x.csv` under `/reads`). Stored path: that same
//! relative path.

use keyledger_connect::{PartialFile, Source};
use keyledger_connect_dnanexus::{
    DnanexusError, DnanexusOptions, DnanexusSelection, DnanexusSource, DnanexusToken,
    RemoteFile as DxFile,
};
use keyledger_domain::Selection;
use keyledger_vault::{ExternalCredential, Lease};
use tokio_util::sync::CancellationToken;

use crate::remote::{Fetched, Listed, Progress, RemoteFile, SourceError, SourceErrorKind};
use crate::selection::compile_pattern;

/// Lists and fetches with one leased DNAnexus token.
#[derive(Debug, Clone)]
pub struct DnanexusSampleSource {
    pub(crate) source: DnanexusSource,
}

impl DnanexusSampleSource {
    pub fn from_lease(
        lease: &Lease,
        options: &DnanexusOptions,
    ) -> Result<DnanexusSampleSource, SourceError> {
        DnanexusSampleSource::from_credential(lease.key.as_str(), &lease.credential, options)
    }

    /// The source for a credential of the external key `key` (named in errors only).
    pub fn from_credential(
        key: &str,
        credential: &ExternalCredential,
        options: &DnanexusOptions,
    ) -> Result<DnanexusSampleSource, SourceError> {
        let ExternalCredential::Dnanexus { token } = credential else {
            return Err(SourceError::new(
                SourceErrorKind::Invalid,
                format!("external key {key} is not a DNAnexus token"),
            ));
        };
        let token = DnanexusToken(token.expose().to_owned());
        let source = DnanexusSource::new(&token, options).map_err(source_error)?;
        Ok(DnanexusSampleSource { source })
    }

    /// "Save and test": the user the token belongs to.
    pub async fn check(&self) -> Result<String, SourceError> {
        let user = self.source.check_access().await.map_err(source_error)?;
        Ok(format!("DNAnexus accepted the token; it belongs to {user}"))
    }

    /// The files a DNAnexus selection picks, stored by their path below the folder.
    pub async fn list(&self, selection: &Selection) -> Result<Vec<RemoteFile>, SourceError> {
        let Selection::Dnanexus {
            project,
            folder,
            pattern,
        } = selection
        else {
            return Err(SourceError::new(
                SourceErrorKind::Invalid,
                "a DNAnexus token cannot list an AWS selection",
            ));
        };
        let pattern = compile_pattern(pattern)
            .map_err(|message| SourceError::new(SourceErrorKind::Invalid, message))?;
        let files = self
            .source
            .list(&DnanexusSelection::new(
                project.as_str(),
                folder.as_str(),
                pattern,
            ))
            .await
            .map_err(source_error)?;
        let scope = normalize_folder(folder);
        Ok(files
            .into_iter()
            .map(|file| RemoteFile {
                path: relative_path(&scope, &file),
                size: file.size,
                etag: file.version.clone(),
                listed: Listed::Dnanexus(file),
            })
            .collect())
    }

    /// Fetches one listed file into `partial`.
    pub async fn fetch(
        &self,
        file: &DxFile,
        partial: &PartialFile,
        progress: &Progress<'_>,
        cancel: &CancellationToken,
    ) -> Result<Fetched, SourceError> {
        let fetched = self
            .source
            .fetch(file, partial, progress, cancel)
            .await
            .map_err(source_error)?;
        Ok(fetched.into())
    }
}

/// `""`, `"/"` → `/`; `/a/b/` → `/a/b` (the connector refuses anything stranger).
pub(crate) fn normalize_folder(folder: &str) -> String {
    let trimmed = folder.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// The file's path below `scope`, without a leading slash.
pub(crate) fn relative_path(scope: &str, file: &DxFile) -> String {
    let file = &file.location;
    let below = if scope == "/" {
        file.folder.trim_start_matches('/')
    } else {
        match file.folder.strip_prefix(scope) {
            Some(rest) => rest.trim_start_matches('/'),
            // The connector only lists files below the scope; fall back to the full path.
            None => file.folder.trim_start_matches('/'),
        }
    };
    if below.is_empty() {
        file.name.clone()
    } else {
        format!("{below}/{}", file.name)
    }
}

pub(crate) fn source_error(error: DnanexusError) -> SourceError {
    let kind = match &error {
        DnanexusError::TokenRejected => SourceErrorKind::CredentialsRejected,
        DnanexusError::PermissionDenied => SourceErrorKind::AccessDenied,
        DnanexusError::ProjectNotFound { .. } | DnanexusError::FileNotFound { .. } => {
            SourceErrorKind::NotFound
        }
        DnanexusError::Verification { .. } => SourceErrorKind::Verification,
        DnanexusError::Cancelled => SourceErrorKind::Cancelled,
        DnanexusError::Io(_) => SourceErrorKind::Local,
        DnanexusError::InvalidInput(_) => SourceErrorKind::Invalid,
        DnanexusError::Unreachable { .. } => SourceErrorKind::Unreachable,
        other if other.is_transient() => SourceErrorKind::Transient,
        DnanexusError::Api { status: 404, .. } => SourceErrorKind::NotFound,
        // DNAnexus refused the request and says why (its error type and message).
        DnanexusError::Api { status, .. } if (400..500).contains(status) => {
            SourceErrorKind::Rejected
        }
        _ => SourceErrorKind::Invalid,
    };
    SourceError::new(kind, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(folder: &str, name: &str) -> DxFile {
        keyledger_connect_dnanexus::remote_file(
            String::new(),
            String::new(),
            folder.to_owned(),
            name.to_owned(),
            0,
            Vec::new(),
        )
    }

    #[test]
    fn relative_paths() {
        for (scope, folder, name, expected) in [
            ("", "/", "a.csv", "a.csv"),
            ("/", "/sub", "a.csv", "sub/a.csv"),
            ("/reads/", "/reads", "a.csv", "a.csv"),
            ("/reads", "/reads/x/y", "a.csv", "x/y/a.csv"),
        ] {
            assert_eq!(
                relative_path(&normalize_folder(scope), &file(folder, name)),
                expected,
                "{scope} {folder} {name}"
            );
        }
    }
}
