//! The JSON routes: dispatch, authentication and access checks. What `describe` answers is in
//! `describe.rs`, how input fields are read in `input.rs`.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::describe::{Selection, file_fields, project_fields};
use super::error::ApiError;
use super::input::{
    NameMatcher, limit, optional_bool, optional_object, optional_str, optional_u64, percent_encode,
};
use super::seed::normalize_folder;
use super::state::{AuthFailure, FileEntry, Level, ProjectEntry, State};

/// Lifetime of a download URL when the request gives no `duration` (seconds).
const DEFAULT_URL_DURATION_S: u64 = 24 * 3600;

/// One API call as the HTTP layer hands it over.
pub(crate) struct ApiCall<'a> {
    pub subject: &'a str,
    pub method: &'a str,
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
    pub client_ip: String,
    /// `http://host:port` for building download URLs.
    pub base_url: String,
    pub now_ms: u64,
    /// Fresh randomness for a download URL key.
    pub url_key: String,
}

pub(crate) fn dispatch(state: &mut State, call: &ApiCall<'_>) -> Result<Value, ApiError> {
    let class = call
        .subject
        .split_once('-')
        .map_or(call.subject, |(class, _)| class);
    let route = match (class, call.method) {
        ("system", "greet") => return greet(&parse_object(call.body)?),
        ("system", "comeBackLater") => {
            return come_back_later(&parse_object(call.body)?, call.now_ms);
        }
        ("system", "whoami") => Route::Whoami,
        ("system", "findProjects") => Route::FindProjects,
        ("system", "findDataObjects") => Route::FindDataObjects,
        // `dx describe <path>` also looks for apps and global workflows of that name.
        ("system", "findApps" | "findGlobalWorkflows") => Route::EmptySearch,
        ("user", "describe") => Route::UserDescribe,
        ("project" | "container", "describe") => Route::ProjectDescribe,
        ("project" | "container", "listFolder") => Route::ListFolder,
        ("file", "describe") => Route::FileDescribe,
        ("file", "download") => Route::FileDownload,
        _ => {
            return Err(ApiError::not_found(format!(
                "The route /{}/{} does not exist",
                call.subject, call.method
            )));
        }
    };
    let user = authenticate(state, call.authorization, call.now_ms)?;
    let input = parse_object(call.body)?;
    match route {
        Route::Whoami => whoami(&user, &input, &call.client_ip),
        Route::FindProjects => find_projects(state, &user, &input),
        Route::FindDataObjects => find_data_objects(state, &user, &input),
        Route::EmptySearch => Ok(json!({"results": [], "next": null})),
        Route::UserDescribe => user_describe(state, call.subject),
        Route::ProjectDescribe => project_describe(state, &user, call.subject, &input),
        Route::ListFolder => list_folder(state, &user, call.subject, &input),
        Route::FileDescribe => file_describe(state, &user, call.subject, &input),
        Route::FileDownload => file_download(state, &user, call),
    }
}

enum Route {
    Whoami,
    FindProjects,
    FindDataObjects,
    EmptySearch,
    UserDescribe,
    ProjectDescribe,
    ListFolder,
    FileDescribe,
    FileDownload,
}

fn authenticate(
    state: &State,
    authorization: Option<&str>,
    now_ms: u64,
) -> Result<String, ApiError> {
    let Some(header) = authorization else {
        return Err(ApiError::new(
            401,
            "PermissionDenied",
            "Authentication required",
        ));
    };
    let token = match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => {
            return Err(ApiError::new(
                401,
                "InvalidAuthentication",
                "The Authorization header must be \"Bearer <token>\"",
            ));
        }
    };
    state
        .authenticate(token, now_ms)
        .map_err(|failure| match failure {
            AuthFailure::Unknown => {
                ApiError::new(401, "InvalidAuthentication", "The token could not be found")
            }
            AuthFailure::Expired => {
                ApiError::new(401, "InvalidAuthentication", "The token has expired")
            }
        })
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid_input("The input must be a JSON object")),
        Err(_) => Err(ApiError::malformed_json()),
    }
}

fn greet(_input: &Map<String, Value>) -> Result<Value, ApiError> {
    Ok(json!({"messages": []}))
}

fn come_back_later(input: &Map<String, Value>, now_ms: u64) -> Result<Value, ApiError> {
    let wait_until = optional_u64(input, "waitUntil")?.unwrap_or(0);
    let set_retry_after = optional_bool(input, "setRetryAfter")?.unwrap_or(false);
    if now_ms < wait_until {
        let mut error = ApiError::for_status(503);
        if set_retry_after {
            error.retry_after = Some((wait_until - now_ms).div_ceil(1000));
        }
        return Err(error);
    }
    Ok(json!({"currentTime": now_ms}))
}

fn whoami(user: &str, input: &Map<String, Value>, client_ip: &str) -> Result<Value, ApiError> {
    let mut output = json!({"id": user});
    if let Some(fields) = optional_object(input, "fields")?
        && fields.get("clientIp") == Some(&Value::Bool(true))
    {
        output["clientIp"] = json!(client_ip);
    }
    Ok(output)
}

fn user_describe(state: &State, user_id: &str) -> Result<Value, ApiError> {
    let user = state
        .users
        .get(user_id)
        .ok_or_else(|| ApiError::not_found(format!("{user_id} could not be found")))?;
    Ok(
        json!({"id": user.id, "class": "user", "handle": user.handle, "first": user.handle, "last": "", "email": format!("{}@example.invalid", user.handle)}),
    )
}

fn find_projects(state: &State, user: &str, input: &Map<String, Value>) -> Result<Value, ApiError> {
    let name = input.get("name").map(NameMatcher::parse).transpose()?;
    let minimum = match input.get("level") {
        None | Some(Value::Null) => Level::View,
        Some(Value::String(level)) => Level::parse(level)
            .ok_or_else(|| ApiError::invalid_input(format!("Invalid level {level:?}")))?,
        Some(_) => return Err(ApiError::invalid_input("level must be a string")),
    };
    let describe = input
        .get("describe")
        .map(Selection::parse)
        .transpose()?
        .flatten();
    let limit = limit(input)?;
    let starting = match input.get("starting") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.as_str()),
        Some(_) => return Err(ApiError::invalid_input("starting must be a project id")),
    };
    let mut matches = state.projects.iter().filter(|project| {
        project
            .members
            .get(user)
            .is_some_and(|level| *level >= minimum)
            && name.as_ref().is_none_or(|name| name.matches(&project.name))
    });
    let mut started = starting.is_none();
    let mut results = Vec::new();
    let mut next = Value::Null;
    for project in matches.by_ref() {
        started = started || starting == Some(project.id.as_str());
        if !started {
            continue;
        }
        if results.len() as u64 == limit {
            next = json!(project.id);
            break;
        }
        let level = project
            .members
            .get(user)
            .map_or("NONE", |level| level.as_str());
        let mut result =
            json!({"id": project.id, "level": level, "permissionSources": [user], "public": false});
        if let Some(selection) = &describe {
            result["describe"] = selection.apply(project_fields(project, user));
        }
        results.push(result);
    }
    if !started {
        return Err(ApiError::invalid_input(
            "starting does not name a project of this search",
        ));
    }
    Ok(json!({"results": results, "next": next}))
}

fn find_data_objects(
    state: &State,
    user: &str,
    input: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let class = optional_str(input, "class")?;
    let state_filter = optional_str(input, "state")?.unwrap_or("any");
    if !["open", "closing", "closed", "any"].contains(&state_filter) {
        return Err(ApiError::invalid_input(format!(
            "Invalid state {state_filter:?}"
        )));
    }
    let visibility = optional_str(input, "visibility")?.unwrap_or("visible");
    if !["hidden", "visible", "either"].contains(&visibility) {
        return Err(ApiError::invalid_input(format!(
            "Invalid visibility {visibility:?}"
        )));
    }
    let name = input.get("name").map(NameMatcher::parse).transpose()?;
    let ids: Option<BTreeSet<&str>> = match input.get("id") {
        None => None,
        Some(Value::Array(ids)) => Some(
            ids.iter()
                .map(|id| {
                    id.as_str()
                        .ok_or_else(|| ApiError::invalid_input("id must be a list of strings"))
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => return Err(ApiError::invalid_input("id must be a list of strings")),
    };
    let describe = input
        .get("describe")
        .map(Selection::parse)
        .transpose()?
        .flatten();
    let limit = limit(input)?;
    let starting = match input.get("starting") {
        None | Some(Value::Null) => None,
        Some(Value::Object(starting)) => match (
            starting.get("project").and_then(Value::as_str),
            starting.get("id").and_then(Value::as_str),
        ) {
            (Some(project), Some(id)) => Some((project, id)),
            _ => {
                return Err(ApiError::invalid_input(
                    "starting must be {\"project\": …, \"id\": …}",
                ));
            }
        },
        Some(_) => {
            return Err(ApiError::invalid_input(
                "starting must be {\"project\": …, \"id\": …}",
            ));
        }
    };

    let scope = optional_object(input, "scope")?;
    let (projects, folder, recurse): (Vec<&ProjectEntry>, String, bool) = match scope {
        Some(scope) => {
            let Some(project_id) = scope.get("project").and_then(Value::as_str) else {
                return Err(ApiError::invalid_input(
                    "scope.project must be a project id",
                ));
            };
            let project = state
                .project(project_id)
                .filter(|project| project.members.contains_key(user))
                .ok_or_else(|| ApiError::not_found(format!("{project_id} could not be found")))?;
            let folder = match optional_str(scope, "folder")? {
                Some(folder) => normalize_folder(folder)
                    .map_err(|error| ApiError::invalid_input(error.to_string()))?,
                None => "/".to_owned(),
            };
            let recurse = optional_bool(scope, "recurse")?.unwrap_or(true);
            (vec![project], folder, recurse)
        }
        None => (
            state
                .projects
                .iter()
                .filter(|project| project.members.contains_key(user))
                .collect(),
            "/".to_owned(),
            true,
        ),
    };

    // Every file is closed and visible, so some filters select all or nothing.
    let class_matches = class.is_none_or(|class| class == "file");
    let state_matches = state_filter == "closed" || state_filter == "any";
    let visibility_matches = visibility != "hidden";
    let mut candidates = Vec::new();
    if class_matches && state_matches && visibility_matches {
        for project in projects {
            for file in state.project_files(&project.id) {
                let in_scope = file.folder == folder
                    || (recurse
                        && (folder == "/"
                            || file
                                .folder
                                .strip_prefix(folder.as_str())
                                .is_some_and(|rest| rest.starts_with('/'))));
                if in_scope
                    && name.as_ref().is_none_or(|name| name.matches(&file.name))
                    && ids
                        .as_ref()
                        .is_none_or(|ids| ids.contains(file.id.as_str()))
                {
                    candidates.push(file);
                }
            }
        }
    }
    let start = match starting {
        None => 0,
        Some((project, id)) => candidates
            .iter()
            .position(|file| file.project == project && file.id == id)
            .ok_or_else(|| {
                ApiError::invalid_input("starting does not name an object of this search")
            })?,
    };
    let page = candidates.iter().skip(start).take(limit as usize);
    let results: Vec<Value> = page
        .map(|file| {
            let mut result = json!({"project": file.project, "id": file.id});
            if let Some(selection) = &describe {
                result["describe"] = selection.apply(file_fields(state, file));
            }
            result
        })
        .collect();
    let next = candidates.get(start + limit as usize).map_or(
        Value::Null,
        |file| json!({"project": file.project, "id": file.id}),
    );
    Ok(json!({"results": results, "next": next}))
}

fn project_describe(
    state: &State,
    user: &str,
    project_id: &str,
    input: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let project = accessible_project(state, user, project_id)?;
    let selection = Selection::parse_input(input, &[])?;
    Ok(selection.apply(project_fields(project, user)))
}

fn list_folder(
    state: &State,
    user: &str,
    project_id: &str,
    input: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let project = accessible_project(state, user, project_id)?;
    let folder = match optional_str(input, "folder")? {
        Some(folder) => {
            normalize_folder(folder).map_err(|error| ApiError::invalid_input(error.to_string()))?
        }
        None => "/".to_owned(),
    };
    let only = optional_str(input, "only")?.unwrap_or("all");
    if !["all", "objects", "folders"].contains(&only) {
        return Err(ApiError::invalid_input(format!(
            "Invalid value for only: {only:?}"
        )));
    }
    optional_bool(input, "includeHidden")?;
    let describe = input
        .get("describe")
        .map(Selection::parse)
        .transpose()?
        .flatten();
    if !project.folders.contains(&folder) {
        return Err(ApiError::not_found(format!(
            "The folder {folder} could not be found in {}",
            project.id
        )));
    }
    let mut output = Map::new();
    if only != "folders" {
        let mut files: Vec<&FileEntry> = state
            .files
            .values()
            .filter(|file| file.project == project.id && file.folder == folder)
            .collect();
        files.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        let objects: Vec<Value> = files
            .into_iter()
            .map(|file| {
                let mut object = json!({"id": file.id});
                if let Some(selection) = &describe {
                    object["describe"] = selection.apply(file_fields(state, file));
                }
                object
            })
            .collect();
        output.insert("objects".into(), Value::Array(objects));
    }
    if only != "objects" {
        let prefix = if folder == "/" {
            "/".to_owned()
        } else {
            format!("{folder}/")
        };
        let children: Vec<Value> = project
            .folders
            .iter()
            .filter(|candidate| {
                candidate
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
            })
            .map(|child| json!(child))
            .collect();
        output.insert("folders".into(), Value::Array(children));
    }
    Ok(Value::Object(output))
}

fn file_describe(
    state: &State,
    user: &str,
    file_id: &str,
    input: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let file = accessible_file(state, user, file_id, optional_str(input, "project")?)?;
    let selection = Selection::parse_input(input, &["project"])?;
    Ok(selection.apply(file_fields(state, file)))
}

fn file_download(state: &mut State, user: &str, call: &ApiCall<'_>) -> Result<Value, ApiError> {
    let input = parse_object(call.body)?;
    optional_bool(&input, "preauthenticated")?;
    optional_bool(&input, "stickyIP")?;
    let duration = optional_u64(&input, "duration")?.unwrap_or(DEFAULT_URL_DURATION_S);
    if duration == 0 {
        return Err(ApiError::invalid_input(
            "duration must be a positive number of seconds",
        ));
    }
    let file = accessible_file(state, user, call.subject, optional_str(&input, "project")?)?;
    let filename = optional_str(&input, "filename")?.unwrap_or(&file.name);
    let url = format!(
        "{}{}D/{}/{}/{}",
        call.base_url,
        super::DATA_PATH_PREFIX,
        file.id,
        call.url_key,
        percent_encode(filename)
    );
    let expires_ms = call.now_ms.saturating_add(duration.saturating_mul(1000));
    let file_id = file.id.clone();
    state.downloads.insert(
        call.url_key.clone(),
        super::state::DownloadEntry {
            file: file_id,
            expires_ms,
        },
    );
    Ok(json!({"url": url, "headers": {}, "expires": expires_ms}))
}

fn accessible_project<'a>(
    state: &'a State,
    user: &str,
    project_id: &str,
) -> Result<&'a ProjectEntry, ApiError> {
    state
        .project(project_id)
        .filter(|project| project.members.contains_key(user))
        .ok_or_else(|| ApiError::not_found(format!("{project_id} could not be found")))
}

fn accessible_file<'a>(
    state: &'a State,
    user: &str,
    file_id: &str,
    project: Option<&str>,
) -> Result<&'a FileEntry, ApiError> {
    let file = state
        .files
        .get(file_id)
        .ok_or_else(|| ApiError::not_found(format!("{file_id} could not be found")))?;
    if let Some(project) = project
        && project != file.project
    {
        return Err(ApiError::not_found(format!(
            "{file_id} could not be found in {project}"
        )));
    }
    if state.level(&file.project, user).is_none() {
        return Err(ApiError::not_found(format!("{file_id} could not be found")));
    }
    Ok(file)
}
