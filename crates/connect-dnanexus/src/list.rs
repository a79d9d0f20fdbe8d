//! Listing: resolve the project, page through `findDataObjects`, keep the matching paths.

use regex::Regex;
use serde_json::{Value, json};

use crate::client::ApiClient;
use crate::{DnanexusError, RemoteFile, RemotePart, remote_file};

/// Pages through the selection until its end or until `max_scanned` files were looked at
/// (each page asks for no more than what is left); the second value says whether the end was
/// reached.
pub(crate) async fn list(
    api: &ApiClient,
    page_size: u32,
    project: &str,
    folder: &str,
    pattern: &Regex,
    max_scanned: u64,
) -> Result<(Vec<RemoteFile>, u64, bool), DnanexusError> {
    let folder = normalize_folder(folder)?;
    let project_id = resolve_project(api, project).await?;
    let mut files = Vec::new();
    let mut starting = Value::Null;
    let mut scanned: u64 = 0;
    let mut complete = true;
    loop {
        let left = max_scanned - scanned;
        if left == 0 {
            complete = false;
            break;
        }
        let page_size = u64::from(page_size).min(left);
        let mut input = json!({
            "class": "file",
            "state": "closed",
            "visibility": "visible",
            "scope": {"project": project_id, "folder": folder, "recurse": true},
            "describe": {"fields": {"id": true, "project": true, "name": true, "folder": true, "size": true, "state": true, "parts": true}},
            "limit": page_size,
        });
        if !starting.is_null() {
            input["starting"] = starting.clone();
        }
        let page =
            api.call("/system/findDataObjects", &input)
                .await
                .map_err(|error| match error {
                    DnanexusError::Api { kind, .. } if kind == "ResourceNotFound" => {
                        DnanexusError::ProjectNotFound {
                            project: project.to_owned(),
                        }
                    }
                    other => other,
                })?;
        let (matching, next) = parse_page(&page, &folder, pattern)?;
        scanned += page
            .get("results")
            .and_then(Value::as_array)
            .map_or(0, |results| results.len() as u64);
        files.extend(matching);
        if next.is_null() {
            break;
        }
        // A server that hands back the same cursor would otherwise keep us here forever.
        if next == starting {
            return Err(DnanexusError::invalid_response(
                "findDataObjects returned the same `next` twice",
            ));
        }
        starting = next;
    }
    files.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    Ok((files, scanned, complete))
}

/// Folder, then name, then id.
fn sort_key(file: &RemoteFile) -> (&str, &str, &str) {
    let location = &file.location;
    (&location.folder, &location.name, &file.version)
}

/// One `findDataObjects` page: the files below `folder` whose path below it matches
/// `pattern`, and the cursor of the next page (`Null` after the last).
pub(crate) fn parse_page(
    page: &Value,
    folder: &str,
    pattern: &Regex,
) -> Result<(Vec<RemoteFile>, Value), DnanexusError> {
    let results = page
        .get("results")
        .and_then(Value::as_array)
        .ok_or_else(|| DnanexusError::invalid_response("findDataObjects returned no results"))?;
    let mut files = Vec::new();
    for result in results {
        let file = parse_file(result)?;
        let Some(relative) = relative_path(folder, &file) else {
            tracing::warn!(file = %file.version, folder = %file.location.folder, "findDataObjects returned a file outside the requested folder; skipped");
            continue;
        };
        if pattern.is_match(&relative) {
            files.push(file);
        }
    }
    Ok((files, page.get("next").cloned().unwrap_or(Value::Null)))
}

/// A project id is used as is; anything else is looked up as an exact project name.
pub(crate) async fn resolve_project(
    api: &ApiClient,
    project: &str,
) -> Result<String, DnanexusError> {
    if is_container_id(project) {
        return Ok(project.to_owned());
    }
    if project.is_empty() {
        return Err(DnanexusError::InvalidInput("the project is empty".into()));
    }
    let output = api
        .call(
            "/system/findProjects",
            &json!({"name": project, "level": "VIEW", "limit": 2}),
        )
        .await?;
    let results = output
        .get("results")
        .and_then(Value::as_array)
        .ok_or_else(|| DnanexusError::invalid_response("findProjects returned no results"))?;
    let ids: Vec<&str> = results
        .iter()
        .filter_map(|result| result.get("id").and_then(Value::as_str))
        .collect();
    match ids.as_slice() {
        [] => Err(DnanexusError::ProjectNotFound {
            project: project.to_owned(),
        }),
        [id] => Ok((*id).to_owned()),
        _ => Err(DnanexusError::InvalidInput(format!(
            "several projects are named {project:?}; give the project id instead"
        ))),
    }
}

/// `project-` or `container-` followed by 24 alphanumerics (dxpy's rule).
fn is_container_id(text: &str) -> bool {
    let Some((class, body)) = text.split_once('-') else {
        return false;
    };
    matches!(class, "project" | "container")
        && body.len() == 24
        && body.bytes().all(|byte| byte.is_ascii_alphanumeric())
}

/// `""` and `"/"` → `/`; `/a/b/` → `/a/b`. Relative folders and empty components are refused.
pub(crate) fn normalize_folder(folder: &str) -> Result<String, DnanexusError> {
    if folder.is_empty() {
        return Ok("/".to_owned());
    }
    if !folder.starts_with('/') {
        return Err(DnanexusError::InvalidInput(format!(
            "folder {folder:?} must start with /"
        )));
    }
    let trimmed = folder.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok("/".to_owned());
    }
    if trimmed.split('/').skip(1).any(str::is_empty) {
        return Err(DnanexusError::InvalidInput(format!(
            "folder {folder:?} has an empty component"
        )));
    }
    Ok(trimmed.to_owned())
}

/// The file's path below `folder`, without a leading slash; `None` when it is not below it.
fn relative_path(folder: &str, file: &RemoteFile) -> Option<String> {
    let file = &file.location;
    let below = if folder == "/" {
        file.folder.strip_prefix('/')?
    } else {
        match file.folder.strip_prefix(folder)? {
            "" => "",
            rest => rest.strip_prefix('/')?,
        }
    };
    Some(if below.is_empty() {
        file.name.clone()
    } else {
        format!("{below}/{}", file.name)
    })
}

fn parse_file(result: &Value) -> Result<RemoteFile, DnanexusError> {
    let describe = result
        .get("describe")
        .ok_or_else(|| DnanexusError::invalid_response("a result has no describe"))?;
    let text = |value: &Value, key: &str| -> Result<String, DnanexusError> {
        value
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| DnanexusError::invalid_response(format!("a result has no {key}")))
    };
    let id = text(result, "id")?;
    let project = text(result, "project")?;
    let size = describe
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| DnanexusError::invalid_response(format!("{id} has no size")))?;
    let parts = parse_parts(&id, size, describe.get("parts"))?;
    Ok(remote_file(
        project,
        id,
        text(describe, "folder")?,
        text(describe, "name")?,
        size,
        parts,
    ))
}

/// `{"1": {"size", "md5"}, "2": …}` → parts in index order, checked against `size`.
pub(crate) fn parse_parts(
    id: &str,
    size: u64,
    parts: Option<&Value>,
) -> Result<Vec<RemotePart>, DnanexusError> {
    let parts = parts
        .and_then(Value::as_object)
        .ok_or_else(|| DnanexusError::invalid_response(format!("{id} has no parts")))?;
    let mut parsed = Vec::with_capacity(parts.len());
    for (index, part) in parts {
        let index: u32 = index.parse().map_err(|_| {
            DnanexusError::invalid_response(format!("{id} has a part named {index:?}"))
        })?;
        let part_size = part.get("size").and_then(Value::as_u64).ok_or_else(|| {
            DnanexusError::invalid_response(format!("{id} part {index} has no size"))
        })?;
        let md5 = part
            .get("md5")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        parsed.push(RemotePart {
            index,
            size: part_size,
            md5,
        });
    }
    parsed.sort_by_key(|part| part.index);
    // Sizes come from the server: a sum past u64::MAX is a wrong answer, not a panic.
    let total = parsed
        .iter()
        .try_fold(0u64, |total, part| total.checked_add(part.size));
    match total {
        Some(total) if total == size => {}
        Some(total) => {
            return Err(DnanexusError::invalid_response(format!(
                "{id}: parts add up to {total} bytes but the file has {size}"
            )));
        }
        None => {
            return Err(DnanexusError::invalid_response(format!(
                "{id}: parts add up to more bytes than a file can have"
            )));
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(folder: &str, name: &str) -> RemoteFile {
        remote_file(
            String::new(),
            String::new(),
            folder.into(),
            name.into(),
            0,
            Vec::new(),
        )
    }

    #[test]
    fn relative_paths() {
        let check = |scope: &str, folder: &str, name: &str, expected: Option<&str>| {
            assert_eq!(
                relative_path(scope, &file(folder, name)).as_deref(),
                expected,
                "{scope} {folder} {name}"
            );
        };
        check("/", "/", "a.csv", Some("a.csv"));
        check("/", "/sub", "a.csv", Some("sub/a.csv"));
        check("/reads", "/reads", "a.csv", Some("a.csv"));
        check("/reads", "/reads/sub/deep", "a.csv", Some("sub/deep/a.csv"));
        check("/reads", "/readsX", "a.csv", None);
        check("/reads", "/other", "a.csv", None);
    }

    #[test]
    fn folders_and_ids() {
        for (input, expected) in [
            ("", Some("/")),
            ("/", Some("/")),
            ("/a/", Some("/a")),
            ("a", None),
            ("/a//b", None),
        ] {
            assert_eq!(normalize_folder(input).ok().as_deref(), expected, "{input}");
        }
        assert!(is_container_id("project-0123456789ABCDEF01234567"));
        assert!(is_container_id("container-0123456789abcdef01234567"));
        assert!(!is_container_id("project-short"));
        assert!(!is_container_id("My project"));
        assert!(!is_container_id("file-0123456789ABCDEF01234567"));
    }

    #[test]
    fn parts_are_ordered_and_checked() {
        let parts = json!({"2": {"size": 3, "md5": "AB"}, "10": {"size": 1}, "1": {"size": 5, "md5": "cd"}});
        let parsed = parse_parts("file-x", 9, Some(&parts)).unwrap();
        assert_eq!(
            parsed.iter().map(|part| part.index).collect::<Vec<_>>(),
            [1, 2, 10]
        );
        assert_eq!(parsed[1].md5.as_deref(), Some("ab"));
        assert_eq!(parsed[2].md5, None);
        assert!(parse_parts("file-x", 10, Some(&parts)).is_err());
        assert!(parse_parts("file-x", 0, None).is_err());
    }

    /// Part sizes whose sum overflows u64 panicked (debug) or wrapped around to the file's
    /// size (release) instead of being refused.
    #[test]
    fn part_sizes_that_overflow_are_refused() {
        let parts = json!({"1": {"size": u64::MAX}, "2": {"size": 2}});
        assert!(parse_parts("file-x", 1, Some(&parts)).is_err());
    }
}
