//! Checking a selection before a job exists, so a mistake is a 400, not a failed job.

use keyledger_domain::{
    Selection, ValidationError, check_bucket_name, check_dnanexus_project, check_visible_text,
};
use regex::{Regex, RegexBuilder};

/// Longest regex accepted, in bytes.
const MAX_PATTERN_BYTES: usize = 1024;
/// Compiled-size limit of a regex: large enough for any sensible file pattern.
const MAX_COMPILED_BYTES: usize = 1 << 20;

/// Compiles a selection's regex, or says why it is not one.
pub(crate) fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!(
            "pattern: at most {MAX_PATTERN_BYTES} bytes, this one has {}",
            pattern.len()
        ));
    }
    RegexBuilder::new(pattern)
        .size_limit(MAX_COMPILED_BYTES)
        .build()
        .map_err(|error| {
            let detail = match error {
                // The syntax error quotes the pattern; keep only its last line, which says what
                // is wrong (`error: unclosed group`), so the pattern is never echoed.
                regex::Error::Syntax(text) => text
                    .lines()
                    .rev()
                    .find_map(|line| line.strip_prefix("error: "))
                    .unwrap_or("the syntax is wrong")
                    .to_owned(),
                regex::Error::CompiledTooBig(_) => "the pattern is too large".to_owned(),
                _ => "the pattern cannot be compiled".to_owned(),
            };
            format!("pattern: not a valid regular expression: {detail}")
        })
}

/// Checks every field of a selection; the error names the field (`bucket`, `prefix`,
/// `pattern`, `project`, `folder`), which the API returns as `field`.
pub(crate) fn validate(selection: &Selection) -> Result<(), ValidationError> {
    match selection {
        Selection::Aws {
            bucket,
            prefix,
            pattern,
        } => {
            check_bucket_name(bucket)?;
            check_visible_text("prefix", prefix)?;
            if prefix.len() > 1024 {
                return Err(ValidationError::new("prefix", "use at most 1024 bytes"));
            }
            if has_dot_segment(prefix) {
                return Err(ValidationError::new(
                    "prefix",
                    "must not have `.` or `..` segments; give the path from the bucket's root",
                ));
            }
            check_pattern(pattern)
        }
        Selection::Dnanexus {
            project,
            folder,
            pattern,
        } => {
            check_dnanexus_project(project)?;
            check_visible_text("folder", folder)?;
            let folder_ok = folder.is_empty()
                || (folder.starts_with('/')
                    && folder.len() <= 1024
                    && folder
                        .trim_end_matches('/')
                        .split('/')
                        .skip(1)
                        .all(|part| !part.is_empty()));
            if !folder_ok {
                return Err(ValidationError::new(
                    "folder",
                    "not a folder path (it starts with / and has no empty parts)",
                ));
            }
            if has_dot_segment(folder) {
                return Err(ValidationError::new(
                    "folder",
                    "must not have `.` or `..` parts",
                ));
            }
            check_pattern(pattern)
        }
    }
}

/// The pattern compiles: [`compile_pattern`]'s refusal, as the `pattern` field's.
fn check_pattern(pattern: &str) -> Result<(), ValidationError> {
    compile_pattern(pattern).map(|_| ()).map_err(|message| {
        let message = message.strip_prefix("pattern: ").unwrap_or(&message);
        ValidationError::new("pattern", message)
    })
}

/// Whether a `/`-separated path has a `.` or `..` segment (which would make a remote path
/// mean something other than it says).
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|part| part == "." || part == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws(bucket: &str, prefix: &str, pattern: &str) -> Selection {
        Selection::Aws {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            pattern: pattern.to_owned(),
        }
    }

    fn dx(project: &str, folder: &str, pattern: &str) -> Selection {
        Selection::Dnanexus {
            project: project.to_owned(),
            folder: folder.to_owned(),
            pattern: pattern.to_owned(),
        }
    }

    fn check(selection: Selection, expect: Result<(), &str>) {
        let got = validate(&selection).map_err(|error| error.to_string());
        assert!(
            !got.as_ref().is_err_and(|m| m.contains("CANARY")),
            "the message echoes the input: {got:?}"
        );
        match expect {
            Ok(()) => assert_eq!(got, Ok(()), "{selection:?}"),
            Err(fragment) => assert!(
                got.as_ref().is_err_and(|m| m.contains(fragment)),
                "{selection:?}: {got:?}"
            ),
        }
    }

    #[test]
    fn selections() {
        check(aws("samples", "", ""), Ok(()));
        check(aws("samples", "runs/2024-", r"\.csv$"), Ok(()));
        check(
            aws("samples", "", "("),
            Err("not a valid regular expression"),
        );
        check(aws("samples", "", &"a".repeat(2000)), Err("at most 1024"));
        check(aws("samples", "", "a{1000}{1000}"), Err("too large"));
        check(aws("s3://samples", "", ""), Err("bucket"));
        check(
            aws("a..b", "", ""),
            Err("bucket: not a bucket name: no two dots"),
        );
        check(
            aws("-lab", "", ""),
            Err("bucket: not a bucket name: start and end"),
        );
        check(
            aws("192.168.0.1", "", ""),
            Err("bucket: not a bucket name: not an IP"),
        );
        check(aws("Samples", "", ""), Err("bucket"));
        check(
            aws("samples", "runs/../x", ""),
            Err("prefix: must not have"),
        );
        check(aws("samples", "../", ""), Err("prefix: must not have"));
        check(aws("samples", "runs..2024/", ""), Ok(()));
        check(
            aws("samples", "a\u{202E}b", ""),
            Err("prefix: contains a bidirectional"),
        );
        check(aws("samples/x", "", ""), Err("bucket"));
        check(aws("", "", ""), Err("bucket"));
        check(aws("samples", "a\u{0}", ""), Err("prefix"));
        check(
            dx("project-0123456789ABCDEF01234567", "/reads", ".*"),
            Ok(()),
        );
        check(dx("My project", "", ""), Ok(()));
        check(dx("", "/", ""), Err("project"));
        check(dx("p", "reads", ""), Err("folder"));
        check(dx("p", "/a//b", ""), Err("folder"));
        check(dx("p", "/a/b/", "[z-a]"), Err("pattern"));
        check(
            dx("project-../../", "/", ""),
            Err("project: not a project id"),
        );
        check(
            dx("project-0123456789ABCDEF0123456", "/", ""),
            Err("project"),
        );
        check(dx("p", "/a/../b", ""), Err("folder: must not have"));
        check(dx("p", "/a/./b", ""), Err("folder: must not have"));
        check(
            dx("p", "/a\u{200B}", ""),
            Err("folder: contains a zero-width"),
        );
        check(
            dx("p", "/a/b/", "secretCANARY("),
            Err("pattern: not a valid regular expression: unclosed group"),
        );
    }
}
