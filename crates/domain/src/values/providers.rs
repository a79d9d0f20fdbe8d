//! Values and checks shaped by the storage providers: AWS access key ids, regions, secrets and
//! bucket names, DNAnexus tokens and projects, and the provider itself.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{
    AccessKeyId, AwsExternalId, AwsRegion, AwsRoleArn, KeyHint, ValidationError, check_visible_text,
};

impl AccessKeyId {
    pub fn parse(raw: &str) -> Result<AccessKeyId, ValidationError> {
        let ok = raw.len() == 20
            && (raw.starts_with("AKIA") || raw.starts_with("ASIA"))
            && raw
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !ok {
            return Err(ValidationError::new(
                "access_key_id",
                "an AWS access key id is AKIA or ASIA followed by 16 uppercase letters or digits",
            ));
        }
        Ok(AccessKeyId(raw.into()))
    }

    /// `AKIA…WXYZ`: enough to recognise the key, too little to use it.
    pub fn masked(&self) -> KeyHint {
        KeyHint::mask(&self.0, 4, 4)
    }
}

impl AwsRegion {
    pub fn parse(raw: &str) -> Result<AwsRegion, ValidationError> {
        if !is_aws_region(raw) {
            return Err(ValidationError::new(
                "region",
                "not an AWS region: use one such as us-east-1 or eu-west-2",
            ));
        }
        Ok(AwsRegion(raw.into()))
    }
}

impl AwsRoleArn {
    /// `arn:aws:iam::111122223333:role/lab-reader` (also the `aws-cn` and `aws-us-gov`
    /// partitions, and role paths such as `role/service/lab-reader`).
    pub fn parse(raw: &str) -> Result<AwsRoleArn, ValidationError> {
        let refuse = || {
            ValidationError::new(
                "role_arn",
                "not an IAM role ARN: use one such as arn:aws:iam::111122223333:role/lab-reader",
            )
        };
        let rest = raw.strip_prefix("arn:").ok_or_else(refuse)?;
        let (partition, rest) = rest.split_once(':').ok_or_else(refuse)?;
        let rest = rest.strip_prefix("iam::").ok_or_else(refuse)?;
        let (account, resource) = rest.split_once(':').ok_or_else(refuse)?;
        let name = resource.strip_prefix("role/").ok_or_else(refuse)?;
        let ok = matches!(partition, "aws" | "aws-cn" | "aws-us-gov")
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && !name.is_empty()
            && raw.len() <= 2048
            && !name.ends_with('/')
            && name.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(b, b'+' | b'=' | b',' | b'.' | b'@' | b'_' | b'-' | b'/')
            });
        if !ok {
            return Err(refuse());
        }
        Ok(AwsRoleArn(raw.into()))
    }

    /// The account that owns the role.
    pub fn account(&self) -> &str {
        self.0.split(':').nth(4).unwrap_or_default()
    }

    /// What listings show: the ARN itself (it is not a secret, and it is what users recognise).
    pub fn hint(&self) -> KeyHint {
        KeyHint::from_trusted_str(&self.0)
    }
}

impl AwsExternalId {
    pub fn parse(raw: &str) -> Result<AwsExternalId, ValidationError> {
        let ok = (2..=1224).contains(&raw.len())
            && raw.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'_' | b'+' | b'=' | b',' | b'.' | b'@' | b':' | b'/' | b'-'
                    )
            });
        if !ok {
            return Err(ValidationError::new(
                "external_id",
                "an external ID is 2 to 1224 letters, digits or +=,.@:/-_",
            ));
        }
        Ok(AwsExternalId(raw.into()))
    }
}

// Regions look like `us-east-1`, `us-gov-west-1`, `us-isob-east-1`, `ap-southeast-3`.
fn is_aws_region(raw: &str) -> bool {
    let parts: Vec<&str> = raw.split('-').collect();
    let letters = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase());
    let (area, middle, number) = match parts.as_slice() {
        [area, direction, number] => (area, vec![*direction], number),
        [area, partition, direction, number] => (area, vec![*partition, *direction], number),
        _ => return false,
    };
    let directions = [
        "north",
        "south",
        "east",
        "west",
        "central",
        "northeast",
        "northwest",
        "southeast",
        "southwest",
    ];
    area.len() == 2
        && letters(area)
        && middle.iter().all(|s| letters(s) && s.len() <= 12)
        && middle.last().is_some_and(|d| directions.contains(d))
        && (1..=2).contains(&number.len())
        && number.bytes().all(|b| b.is_ascii_digit())
}

/// Checks an AWS secret access key's shape: 40 characters of base64 alphabet.
pub fn check_aws_secret(raw: &str) -> Result<(), ValidationError> {
    if raw.len() != 40
        || !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'+' | b'='))
    {
        return Err(ValidationError::new(
            "secret_access_key",
            "an AWS secret access key is 40 characters of letters, digits, '/', '+' or '='",
        ));
    }
    Ok(())
}

/// The longest session token accepted. AWS fixes no size (tokens grow with session policies
/// and tags, a few hundred to a few thousand characters); this only bounds memory.
pub const MAX_SESSION_TOKEN_LEN: usize = 16 * 1024;

/// Checks an AWS session token's shape: base64 (letters, digits, '/', '+', '='), not empty,
/// at most [`MAX_SESSION_TOKEN_LEN`] characters.
pub fn check_aws_session_token(raw: &str) -> Result<(), ValidationError> {
    if raw.is_empty()
        || raw.len() > MAX_SESSION_TOKEN_LEN
        || !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'+' | b'='))
    {
        return Err(ValidationError::new(
            "session_token",
            "an AWS session token is base64: letters, digits, '/', '+' or '=' (at most 16384 characters)",
        ));
    }
    Ok(())
}

/// Checks a DNAnexus API token's shape: 16 to 256 letters, digits, '-', '_' or '.'.
pub fn check_dnanexus_token(raw: &str) -> Result<(), ValidationError> {
    let ok = (16..=256).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        return Err(ValidationError::new(
            "token",
            "a DNAnexus token is 16 to 256 letters, digits, '-', '_' or '.'",
        ));
    }
    Ok(())
}

/// Checks an S3 bucket name against AWS's naming rules for general purpose buckets: 3 to 63
/// lowercase letters, digits, '.' and '-'; a letter or digit at each end; no `..`; not an IPv4
/// address; none of the prefixes and suffixes AWS reserves. The message says which rule failed.
pub fn check_bucket_name(raw: &str) -> Result<(), ValidationError> {
    let refuse = |rule: &str| {
        Err(ValidationError::new(
            "bucket",
            format!("not a bucket name: {rule}; give the bare name, without s3:// or a path"),
        ))
    };
    if !(3..=63).contains(&raw.len()) {
        return refuse("use 3 to 63 characters");
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
    {
        return refuse("use only lowercase letters, digits, '.' and '-'");
    }
    let alphanumeric =
        |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !alphanumeric(raw.as_bytes().first()) || !alphanumeric(raw.as_bytes().last()) {
        return refuse("start and end with a letter or digit");
    }
    if raw.contains("..") {
        return refuse("no two dots in a row");
    }
    if raw.split('.').count() == 4 && raw.split('.').all(|part| part.parse::<u8>().is_ok()) {
        return refuse("not an IP address");
    }
    const RESERVED_PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
    const RESERVED_SUFFIXES: [&str; 4] = ["-s3alias", "--ol-s3", ".mrap", "--x-s3"];
    if RESERVED_PREFIXES
        .iter()
        .any(|prefix| raw.starts_with(prefix))
        || RESERVED_SUFFIXES.iter().any(|suffix| raw.ends_with(suffix))
    {
        return refuse(
            "AWS reserves the prefixes xn--, sthree-, amzn-s3-demo- and the suffixes -s3alias, --ol-s3, .mrap, --x-s3",
        );
    }
    Ok(())
}

/// The length of the random part of a DNAnexus id (`project-` + 24 characters).
const DNANEXUS_ID_CHARS: usize = 24;

/// Checks a DNAnexus project as users give it: an id, `project-` followed by 24 letters or
/// digits (DNAnexus's own ids use a 32-character subset; dxpy accepts any alphanumerics, and so
/// does this), or a project's name (1 to 256 visible characters, no `/` or `:`, which DNAnexus
/// paths use as separators). Anything starting with `project-` must be an id: it becomes part
/// of an API URL.
pub fn check_dnanexus_project(raw: &str) -> Result<(), ValidationError> {
    if let Some(id) = raw.strip_prefix("project-") {
        if id.len() != DNANEXUS_ID_CHARS || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ValidationError::new(
                "project",
                "not a project id: use project- followed by 24 letters or digits, or the project's exact name",
            ));
        }
        return Ok(());
    }
    check_visible_text("project", raw)?;
    if raw.trim().is_empty() || raw.chars().count() > 256 || raw.contains(['/', ':']) {
        return Err(ValidationError::new(
            "project",
            "give a project id (project-…) or the project's exact name: 1 to 256 characters, without '/' or ':'",
        ));
    }
    Ok(())
}

/// The storage providers an external key can belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Aws,
    Dnanexus,
}

impl Provider {
    pub fn parse(raw: &str) -> Result<Provider, ValidationError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "aws" | "amazon web services" | "s3" => Ok(Provider::Aws),
            "dnanexus" => Ok(Provider::Dnanexus),
            _ => Err(ValidationError::new(
                "provider",
                "not a provider: use aws or dnanexus",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Dnanexus => "dnanexus",
        }
    }

    /// The name users see, as in the platform's dialogs.
    pub fn display_name(self) -> &'static str {
        match self {
            Provider::Aws => "Amazon Web Services",
            Provider::Dnanexus => "DNAnexus",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
