//! Reading the JSON input of API calls: typed optional fields, limits and name matchers; every
//! malformed value becomes a 422 `InvalidInput` that names the field.

use regex::Regex;
use serde_json::{Map, Value};

use super::error::ApiError;

const DEFAULT_LIMIT: u64 = 100;
const MAX_LIMIT: u64 = 1000;

/// A `name` condition: an exact string, `{"glob": …}` or `{"regexp": …, "flags": …}`.
pub(super) enum NameMatcher {
    Exact(String),
    Pattern(Regex),
}

impl NameMatcher {
    pub(super) fn parse(value: &Value) -> Result<Self, ApiError> {
        match value {
            Value::String(exact) => Ok(Self::Exact(exact.clone())),
            Value::Object(spec) => {
                if let Some(glob) = optional_str(spec, "glob")? {
                    return compile(&glob_to_regex(glob), "").map(Self::Pattern);
                }
                if let Some(pattern) = optional_str(spec, "regexp")? {
                    let flags = optional_str(spec, "flags")?.unwrap_or("");
                    return compile(pattern, flags).map(Self::Pattern);
                }
                Err(ApiError::invalid_input(
                    "name must be a string, {\"glob\": …} or {\"regexp\": …}",
                ))
            }
            _ => Err(ApiError::invalid_input(
                "name must be a string, {\"glob\": …} or {\"regexp\": …}",
            )),
        }
    }

    pub(super) fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(exact) => exact == name,
            Self::Pattern(regex) => regex.is_match(name),
        }
    }
}

fn compile(pattern: &str, flags: &str) -> Result<Regex, ApiError> {
    if let Some(flag) = flags.chars().find(|flag| !"imsx".contains(*flag)) {
        return Err(ApiError::invalid_input(format!(
            "Unsupported regexp flag {flag:?}"
        )));
    }
    let prefix = if flags.is_empty() {
        String::new()
    } else {
        format!("(?{flags})")
    };
    Regex::new(&format!("{prefix}{pattern}"))
        .map_err(|error| ApiError::invalid_input(format!("Invalid regexp: {error}")))
}

/// `*` and `?` are wildcards; a backslash makes the next character literal.
pub(super) fn glob_to_regex(glob: &str) -> String {
    let mut regex = String::from("^");
    let mut chars = glob.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => regex.push_str(".*"),
            '?' => regex.push('.'),
            '\\' => {
                if let Some(literal) = chars.next() {
                    regex.push_str(&regex::escape(&literal.to_string()));
                }
            }
            other => regex.push_str(&regex::escape(&other.to_string())),
        }
    }
    regex.push('$');
    regex
}

pub(super) fn limit(input: &Map<String, Value>) -> Result<u64, ApiError> {
    match input.get("limit") {
        None | Some(Value::Null) => Ok(DEFAULT_LIMIT),
        Some(value) => match value.as_u64() {
            Some(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
            _ => Err(ApiError::invalid_input(format!(
                "limit must be an integer from 1 to {MAX_LIMIT}"
            ))),
        },
    }
}

pub(super) fn optional_str<'a>(
    input: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, ApiError> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(ApiError::invalid_input(format!("{key} must be a string"))),
    }
}

pub(super) fn optional_bool(
    input: &Map<String, Value>,
    key: &str,
) -> Result<Option<bool>, ApiError> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(_) => Err(ApiError::invalid_input(format!("{key} must be a boolean"))),
    }
}

pub(super) fn optional_u64(input: &Map<String, Value>, key: &str) -> Result<Option<u64>, ApiError> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or_else(|| {
            ApiError::invalid_input(format!("{key} must be a non-negative integer"))
        }),
    }
}

pub(super) fn optional_object<'a>(
    input: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, ApiError> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(object)) => Ok(Some(object)),
        Some(_) => Err(ApiError::invalid_input(format!("{key} must be an object"))),
    }
}

pub(super) fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_translate() {
        let check = |glob: &str, name: &str, expected: bool| {
            let regex = Regex::new(&glob_to_regex(glob)).unwrap();
            assert_eq!(regex.is_match(name), expected, "{glob} vs {name}");
        };
        check("*.fastq.gz", "a.fastq.gz", true);
        check("*.fastq.gz", "a.fastq.gzip", false);
        check("a?c", "abc", true);
        check("a?c", "ac", false);
        check("a\\*c", "a*c", true);
        check("a\\*c", "abc", false);
        check("(x)", "(x)", true);
    }
}
