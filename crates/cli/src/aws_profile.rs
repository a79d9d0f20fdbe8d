//! AWS credentials as the command line gets them: flags, a prompt or standard input, or a
//! profile of the AWS CLI's own files (`~/.aws/credentials` and `~/.aws/config`, or the files
//! `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE` name). Everything that can be checked is
//! checked before a secret is asked for; no secret is ever printed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use keyledger_crypto::SecretString;
use keyledger_domain::{AccessKeyId, AwsRegion};

use crate::client::read_secret;
use crate::exit::{Exit, Failure};

/// An AWS credential as the command line gives it: what `aws_credential` returns.
pub(crate) struct AwsCredential {
    pub access_key_id: AccessKeyId,
    pub secret: SecretString,
    pub region: AwsRegion,
    /// Temporary credentials: the session token and when it expires (RFC 3339, checked by the
    /// server).
    pub session: Option<(SecretString, String)>,
}

/// How the command line names temporary credentials: `--session-token` (the token is read
/// after the secret) and `--session-expires-at`.
pub(crate) struct SessionFlags<'a> {
    pub token: bool,
    pub expires_at: Option<&'a str>,
}

/// An AWS credential from the command line: the access key id and region from the flags or a
/// profile, the secret (and, for temporary credentials, the session token) from a prompt,
/// standard input or the profile. Everything that can be checked is checked before the secret is
/// asked for. The region is the flag's, else the profile's, else `stored_region` (a rotation
/// keeps the key's region).
pub(crate) fn aws_credential(
    access_key_id: Option<&str>,
    region: Option<&str>,
    stored_region: Option<&str>,
    secret_stdin: bool,
    aws_profile: Option<&str>,
    session: SessionFlags<'_>,
) -> anyhow::Result<AwsCredential> {
    match aws_profile {
        Some(profile) => {
            let found = AwsProfile::load(profile)?;
            let region = region
                .map(str::to_owned)
                .or(found.region)
                .or(stored_region.map(str::to_owned));
            let region = region.ok_or_else(|| {
                Failure::new(
                    Exit::Usage,
                    format!(
                        "the AWS profile `{profile}` has no region in {}: pass --region",
                        found.config_file.display()
                    ),
                )
            })?;
            let access_key_id = checked_access_key_id(&found.access_key_id, || {
                format!("the AWS profile `{profile}`'s aws_access_key_id")
            })?;
            let session = match found.session_token {
                None => None,
                Some(token) => {
                    let expires_at = session
                        .expires_at
                        .map(str::to_owned)
                        .or(found.session_expires_at)
                        .ok_or_else(|| {
                            Failure::new(
                                Exit::Usage,
                                format!(
                                    "the AWS profile `{profile}` holds temporary credentials (an \
                                     aws_session_token) but not when they expire: pass \
                                     --session-expires-at (RFC 3339, as `aws configure \
                                     export-credentials` prints it)"
                                ),
                            )
                        })?;
                    Some((token, expires_at))
                }
            };
            Ok(AwsCredential {
                access_key_id,
                secret: found.secret_access_key,
                region: checked_region(&region)?,
                session,
            })
        }
        None => {
            let (Some(access_key_id), Some(region)) = (access_key_id, region.or(stored_region))
            else {
                return Err(Failure::new(
                    Exit::Usage,
                    "pass --access-key-id and --region, or --aws-profile",
                )
                .into());
            };
            let access_key_id =
                checked_access_key_id(access_key_id, || "--access-key-id".to_owned())?;
            let region = checked_region(region)?;
            let secret = read_secret("AWS secret access key: ", secret_stdin)?;
            let session = if session.token {
                let token = read_secret("AWS session token: ", secret_stdin)?;
                // clap requires --session-expires-at with --session-token.
                Some((token, session.expires_at.unwrap_or_default().to_owned()))
            } else {
                None
            };
            Ok(AwsCredential {
                access_key_id,
                secret,
                region,
                session,
            })
        }
    }
}

pub(crate) fn checked_access_key_id(
    raw: &str,
    source: impl Fn() -> String,
) -> anyhow::Result<AccessKeyId> {
    AccessKeyId::parse(raw.trim()).map_err(|err| {
        Failure::new(
            Exit::Usage,
            format!(
                "{}: {} (the secret was not asked for)",
                source(),
                err.message
            ),
        )
        .into()
    })
}

pub(crate) fn checked_region(raw: &str) -> anyhow::Result<AwsRegion> {
    AwsRegion::parse(raw.trim()).map_err(|err| {
        Failure::new(
            Exit::Usage,
            format!("--region `{}`: {}", raw.trim(), err.message),
        )
        .into()
    })
}

/// What a profile of the AWS CLI's files holds for us. Debug never shows the secret.
#[derive(Debug)]
pub(crate) struct AwsProfile {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: SecretString,
    pub(crate) region: Option<String>,
    /// Temporary credentials only.
    pub(crate) session_token: Option<SecretString>,
    /// When the session token expires, if the file says (`aws_session_expiration`, as
    /// credential helpers write it, or `x_security_token_expires`).
    pub(crate) session_expires_at: Option<String>,
    pub(crate) config_file: PathBuf,
}

impl AwsProfile {
    /// Reads profile `name` the way the AWS CLI does: keys from the credentials file's `[name]`
    /// (else from the config file), the region from the config file's `[profile name]`
    /// (`[default]` for the default profile; else from the credentials file).
    pub(crate) fn load(name: &str) -> anyhow::Result<AwsProfile> {
        let credentials_file = aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials")?;
        let config_file = aws_file("AWS_CONFIG_FILE", "config")?;
        AwsProfile::from_files(name, credentials_file, config_file)
    }

    pub(crate) fn from_files(
        name: &str,
        credentials_file: PathBuf,
        config_file: PathBuf,
    ) -> anyhow::Result<AwsProfile> {
        let credentials = read_ini(&credentials_file)?;
        let config = read_ini(&config_file)?;
        let in_credentials = credentials.as_ref().and_then(|file| file.get(name));
        // The config file names profiles `[profile NAME]`, the default one `[default]` (the
        // AWS CLI accepts `[profile default]` too).
        let in_config = config.as_ref().and_then(|file| {
            file.get(&format!("profile {name}"))
                .or_else(|| file.get(name).filter(|_| name == "default"))
        });
        if in_credentials.is_none() && in_config.is_none() {
            return Err(Failure::new(
                Exit::Usage,
                format!(
                    "no AWS profile `{name}` in {} or {} (`aws configure --profile {name}` \
                     creates one)",
                    credentials_file.display(),
                    config_file.display()
                ),
            )
            .into());
        }
        let setting = |section: Option<&'_ HashMap<String, Option<String>>>, key: &str| {
            section
                .and_then(|settings| settings.get(key))
                .and_then(|value| value.as_deref())
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        let value = |key: &str| setting(in_credentials, key).or_else(|| setting(in_config, key));
        let session_token = value("aws_session_token").map(SecretString::new);
        let session_expires_at =
            value("aws_session_expiration").or_else(|| value("x_security_token_expires"));
        let missing = |key: &str| {
            Failure::new(
                Exit::Usage,
                format!(
                    "the AWS profile `{name}` has no {key} (in {} or {}); keyledger stores \
                     access keys, not role or single sign-on profiles",
                    credentials_file.display(),
                    config_file.display()
                ),
            )
        };
        let access_key_id =
            value("aws_access_key_id").ok_or_else(|| missing("aws_access_key_id"))?;
        let secret_access_key = SecretString::new(
            value("aws_secret_access_key").ok_or_else(|| missing("aws_secret_access_key"))?,
        );
        // The region is a setting of the config file; the credentials file's is a fallback.
        let region = setting(in_config, "region").or_else(|| setting(in_credentials, "region"));
        Ok(AwsProfile {
            access_key_id,
            secret_access_key,
            region,
            session_token,
            session_expires_at,
            config_file,
        })
    }
}

/// `$VARIABLE` (a leading `~/` is the home directory, as the AWS CLI reads it), else
/// `~/.aws/NAME`.
pub(crate) fn aws_file(variable: &str, name: &str) -> anyhow::Result<PathBuf> {
    let home = || {
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
    };
    if let Some(path) = std::env::var_os(variable).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if let (Ok(rest), Some(home)) = (path.strip_prefix("~"), home()) {
            return Ok(home.join(rest));
        }
        return Ok(path);
    }
    match home() {
        Some(home) => Ok(home.join(".aws").join(name)),
        None => Err(Failure::new(
            Exit::Usage,
            format!("cannot find ~/.aws/{name}: set HOME or {variable}"),
        )
        .into()),
    }
}

/// The sections of an AWS CLI file, each a map of settings.
pub(crate) type Sections = HashMap<String, HashMap<String, Option<String>>>;

/// The file parsed as the AWS CLI's INI dialect, or `None` if it does not exist. Values are
/// taken as written: `=` only, no inline comments (a secret may hold `/` and `+`), names case
/// sensitive, indented lines continuing the setting above (so a service's nested `region`
/// cannot pass for the profile's). Errors name the file and line, never a value.
pub(crate) fn read_ini(path: &Path) -> anyhow::Result<Option<Sections>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(Failure::new(
                Exit::Usage,
                format!("cannot read {}: {err}", path.display()),
            )
            .into());
        }
    };
    let mut defaults = configparser::ini::IniDefault::default();
    // Settings above the first section belong to no profile.
    defaults.default_section = String::new();
    defaults.delimiters = vec!['='];
    defaults.case_sensitive = true;
    defaults.multiline = true;
    defaults.enable_inline_comments = false;
    let mut parser = configparser::ini::Ini::new_from_defaults(defaults);
    parser.read(text).map(Some).map_err(|err| {
        // The parser's messages hold a line number and a reason, never the line itself.
        Failure::new(
            Exit::Usage,
            format!("{} is not an AWS profile file: {err}", path.display()),
        )
        .into()
    })
}
