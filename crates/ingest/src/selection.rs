//! Checking a selection before a job exists, so a mistake is a 400, not a failed job.

use keyledger_domain::{Selection, printable};
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
                regex::Error::Syntax(text) => text,
                regex::Error::CompiledTooBig(_) => "the pattern is too large".to_owned(),
                other => other.to_string(),
            };
            format!(
                "pattern: `{}` is not a valid regular expression: {detail}",
                printable(pattern)
            )
        })
}

/// Checks every field of a selection; the message names the field.
pub(crate) fn validate(selection: &Selection) -> Result<(), String> {
    match selection {
        Selection::Aws {
            bucket,
            prefix,
            pattern,
        } => {
            // S3's bucket naming rules, loosely: S3-compatible stores allow a little more.
            let bucket_ok = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase()
                        || b.is_ascii_uppercase()
                        || b.is_ascii_digit()
                        || matches!(b, b'.' | b'-' | b'_')
                });
            if !bucket_ok {
                return Err(format!(
                    "bucket: `{}` is not a bucket name (3 to 63 letters, digits, '.', '-' or '_'; \
                     give the bare name, without s3:// or a path)",
                    printable(bucket)
                ));
            }
            if prefix.len() > 1024 || prefix.chars().any(char::is_control) {
                return Err("prefix: at most 1024 bytes, without control characters".to_owned());
            }
            compile_pattern(pattern).map(|_| ())
        }
        Selection::Dnanexus {
            project,
            folder,
            pattern,
        } => {
            if project.trim().is_empty()
                || project.len() > 256
                || project.chars().any(char::is_control)
            {
                return Err("project: give a project id (project-…) or its exact name".to_owned());
            }
            let folder_ok = folder.is_empty()
                || (folder.starts_with('/')
                    && folder.len() <= 1024
                    && !folder.chars().any(char::is_control)
                    && folder
                        .trim_end_matches('/')
                        .split('/')
                        .skip(1)
                        .all(|part| !part.is_empty()));
            if !folder_ok {
                return Err(format!(
                    "folder: `{}` is not a folder path (it starts with / and has no empty parts)",
                    printable(folder)
                ));
            }
            compile_pattern(pattern).map(|_| ())
        }
    }
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
        let got = validate(&selection);
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
    }
}
