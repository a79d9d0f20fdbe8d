//! The least-privilege test of a stored token: the user it belongs to (`whoami`, as
//! [`Source::check_access`](keyledger_connect::Source::check_access)), and with a project, the
//! access level the token has on it (`/project-…/describe` → `level`).
//!
//! The guarantee: an ingestion needs `VIEW` (listing and downloading need nothing more), so
//! [`ProjectAccess::can_ingest`] is true exactly for `VIEW`, `UPLOAD`, `CONTRIBUTE` and
//! `ADMINISTER`; a level DNAnexus does not document is reported as is and never counted as
//! enough.

use serde_json::{Value, json};

use crate::{DnanexusError, DnanexusSource};

/// The access a token has on one project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectAccess {
    /// `project-…`.
    pub id: String,
    pub name: String,
    /// DNAnexus' word: `VIEW`, `UPLOAD`, `CONTRIBUTE`, `ADMINISTER` (or `NONE`).
    pub level: String,
}

impl ProjectAccess {
    /// Whether the level lets an ingestion list and download the project's files.
    pub fn can_ingest(&self) -> bool {
        matches!(
            self.level.as_str(),
            "VIEW" | "UPLOAD" | "CONTRIBUTE" | "ADMINISTER"
        )
    }
}

impl DnanexusSource {
    /// The token's access level on `project` (an id, or an exact name looked up with
    /// `findProjects`).
    pub async fn project_access(&self, project: &str) -> Result<ProjectAccess, DnanexusError> {
        let id = crate::list::resolve_project(&self.api, project).await?;
        let output = self
            .api
            .call(
                &format!("/{id}/describe"),
                &json!({"fields": {"id": true, "name": true, "level": true}}),
            )
            .await
            .map_err(|error| match error {
                DnanexusError::Api { status: 404, .. } => DnanexusError::ProjectNotFound {
                    project: project.to_owned(),
                },
                other => other,
            })?;
        let text = |field: &str| output.get(field).and_then(Value::as_str).map(str::to_owned);
        Ok(ProjectAccess {
            name: text("name").unwrap_or_else(|| project.to_owned()),
            level: text("level").ok_or_else(|| {
                DnanexusError::invalid_response("project describe returned no level")
            })?,
            id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_is_enough_to_ingest() {
        for (level, enough) in [
            ("VIEW", true),
            ("UPLOAD", true),
            ("CONTRIBUTE", true),
            ("ADMINISTER", true),
            ("NONE", false),
            ("", false),
        ] {
            let access = ProjectAccess {
                id: "project-x".to_owned(),
                name: "x".to_owned(),
                level: level.to_owned(),
            };
            assert_eq!(access.can_ingest(), enough, "{level}");
        }
    }
}
