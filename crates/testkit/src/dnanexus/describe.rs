//! What `describe` answers for files and projects, and which of those fields a request selects.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::input::{optional_bool, optional_object};
use super::state::Level;
use super::state::{FileEntry, ProjectEntry, State};

pub(super) const FILE_DEFAULT_FIELDS: &[&str] = &[
    "id",
    "project",
    "class",
    "types",
    "created",
    "modified",
    "state",
    "hidden",
    "links",
    "name",
    "folder",
    "sponsored",
    "tags",
    "media",
    "archivalState",
    "size",
    "createdBy",
];

pub(super) fn file_fields(
    state: &State,
    file: &FileEntry,
) -> (Map<String, Value>, &'static [&'static str]) {
    let owner = state
        .project(&file.project)
        .and_then(|project| project.members.keys().next().cloned())
        .unwrap_or_default();
    let parts: Map<String, Value> = (1..=file.parts.len() as u32)
        .map(|index| {
            let part = &file.parts[index as usize - 1];
            (
                index.to_string(),
                json!({"size": part.size, "md5": file.reported_md5(index), "state": "complete"}),
            )
        })
        .collect();
    let fields = json!({
        "id": file.id, "project": file.project, "class": "file", "types": [], "created": file.created_ms, "modified": file.modified_ms,
        "state": "closed", "hidden": false, "links": [], "name": file.name, "folder": file.folder, "sponsored": false, "tags": [],
        "media": "application/octet-stream", "archivalState": "live", "size": file.size, "createdBy": {"user": owner},
        "parts": parts, "properties": {}, "details": {}, "checksumType": null,
    });
    (into_map(fields), FILE_DEFAULT_FIELDS)
}

pub(super) const PROJECT_DEFAULT_FIELDS: &[&str] = &[
    "id",
    "class",
    "name",
    "created",
    "modified",
    "region",
    "billTo",
    "level",
    "dataUsage",
    "sponsoredDataUsage",
    "remoteDataUsage",
    "version",
    "summary",
    "description",
    "protected",
    "restricted",
    "containsPHI",
    "downloadRestricted",
    "tags",
    "createdBy",
];

pub(super) fn project_fields<'a>(
    project: &ProjectEntry,
    user: &str,
) -> (Map<String, Value>, &'a [&'a str]) {
    let owner = project
        .members
        .iter()
        .find(|(_, level)| **level == Level::Administer)
        .map(|(user, _)| user.clone())
        .unwrap_or_default();
    let level = project
        .members
        .get(user)
        .map_or("NONE", |level| level.as_str());
    let fields = json!({
        "id": project.id, "class": "project", "name": project.name, "created": project.created_ms, "modified": project.modified_ms,
        "region": "aws:us-east-1", "billTo": owner, "level": level, "dataUsage": 0.0, "sponsoredDataUsage": 0.0, "remoteDataUsage": 0.0,
        "version": 1, "summary": "", "description": "", "protected": false, "restricted": false, "containsPHI": false,
        "downloadRestricted": false, "tags": [], "createdBy": {"user": owner}, "properties": {},
        "folders": project.folders.iter().collect::<Vec<_>>(),
    });
    (into_map(fields), PROJECT_DEFAULT_FIELDS)
}

pub(super) fn into_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Which describe fields to return: the default set or not, plus extras.
pub(super) struct Selection {
    include_default: bool,
    extras: BTreeSet<String>,
}

impl Selection {
    /// The `describe` option of a search: `false` (none), `true` (defaults) or an object.
    pub(super) fn parse(value: &Value) -> Result<Option<Self>, ApiError> {
        match value {
            Value::Bool(false) | Value::Null => Ok(None),
            Value::Bool(true) => Ok(Some(Self {
                include_default: true,
                extras: BTreeSet::new(),
            })),
            Value::Object(spec) => Self::parse_input(spec, &[]).map(Some),
            _ => Err(ApiError::invalid_input(
                "describe must be a boolean or an object",
            )),
        }
    }

    /// `{"fields": {...}, "defaultFields": bool}`, or legacy top-level boolean flags
    /// (`{"parts": true, "properties": true}`) added to the defaults. `ignored` names input keys
    /// that are not fields (such as `project`).
    pub(super) fn parse_input(
        spec: &Map<String, Value>,
        ignored: &[&str],
    ) -> Result<Self, ApiError> {
        let default_fields = optional_bool(spec, "defaultFields")?;
        if let Some(fields) = optional_object(spec, "fields")? {
            let mut extras = BTreeSet::new();
            for (name, wanted) in fields {
                match wanted {
                    Value::Bool(true) => {
                        extras.insert(name.clone());
                    }
                    Value::Bool(false) => {}
                    _ => {
                        return Err(ApiError::invalid_input(format!(
                            "fields.{name} must be a boolean"
                        )));
                    }
                }
            }
            return Ok(Self {
                include_default: default_fields.unwrap_or(false),
                extras,
            });
        }
        let mut extras = BTreeSet::new();
        for (name, value) in spec {
            if name == "defaultFields" || ignored.contains(&name.as_str()) {
                continue;
            }
            match value {
                Value::Bool(true) => {
                    extras.insert(name.clone());
                }
                Value::Bool(false) => {}
                _ => return Err(ApiError::invalid_input(format!("{name} must be a boolean"))),
            }
        }
        Ok(Self {
            include_default: default_fields.unwrap_or(true),
            extras,
        })
    }

    pub(super) fn apply(&self, (fields, defaults): (Map<String, Value>, &[&str])) -> Value {
        let selected = fields.into_iter().filter(|(name, _)| {
            (self.include_default && defaults.contains(&name.as_str()))
                || self.extras.contains(name)
        });
        Value::Object(selected.collect())
    }
}
