//! The real awscli (from PyPI, installed in `<repo>/.venv` by `scripts/python-deps.sh`) pointed
//! at an [`S3Server`](crate::s3::S3Server): objects uploaded the way the world uploads them today
//! (a checksum per part for multipart uploads, CRC32 by default, or the algorithm asked for).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

/// `<repo>/.venv/bin/aws`; an error says how to install it (tests never skip).
pub fn aws_path() -> anyhow::Result<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let aws = repo.join(".venv/bin/aws");
    anyhow::ensure!(
        aws.exists(),
        "{} is missing: run scripts/python-deps.sh (make test does)",
        aws.display()
    );
    Ok(aws)
}

/// Runs `aws <args>` against `endpoint` with these credentials and nothing from the
/// environment (no profile, no instance metadata); path-style addressing. `extra_env` adds
/// variables such as `AWS_REQUEST_CHECKSUM_CALCULATION`. Returns stdout; fails with stderr.
pub fn aws(
    endpoint: &str,
    access_key_id: &str,
    secret_access_key: &str,
    args: &[&str],
    extra_env: &[(&str, &str)],
) -> anyhow::Result<String> {
    let mut all_args = args.to_vec();
    all_args.push("--no-progress");
    let credentials = CliCredentials {
        access_key_id,
        secret_access_key,
        session_token: None,
    };
    let output = run(endpoint, &credentials, &all_args, extra_env)?;
    anyhow::ensure!(
        output.success,
        "aws {} failed: {}",
        args.join(" "),
        output.stderr
    );
    Ok(output.stdout)
}

/// The credentials awscli signs with, passed in `AWS_*` variables.
#[derive(Clone, Copy)]
pub struct CliCredentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    /// `AWS_SESSION_TOKEN`, for temporary (`ASIA…`) credentials.
    pub session_token: Option<&'a str>,
}

/// What one awscli run printed.
#[derive(Debug)]
pub struct CliOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `aws <args> --endpoint-url <endpoint>` as [`aws`] does but for any command (`sts`,
/// `s3 ls`, …), and returns what it printed whether it succeeded or not, so a test can check a
/// refusal's words.
pub fn run(
    endpoint: &str,
    credentials: &CliCredentials<'_>,
    args: &[&str],
    extra_env: &[(&str, &str)],
) -> anyhow::Result<CliOutput> {
    let aws = aws_path()?;
    let config = tempfile::NamedTempFile::new().context("creating an awscli config file")?;
    std::fs::write(
        config.path(),
        "[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n",
    )?;
    let mut command = Command::new(&aws);
    command
        .args(args)
        .args(["--endpoint-url", endpoint])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("AWS_CONFIG_FILE", config.path())
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", credentials.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key);
    if let Some(token) = credentials.session_token {
        command.env("AWS_SESSION_TOKEN", token);
    }
    for (name, value) in extra_env {
        command.env(name, value);
    }
    let output = command
        .output()
        .with_context(|| format!("running {}", aws.display()))?;
    Ok(CliOutput {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

impl std::fmt::Debug for CliCredentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CliCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field("session_token", &self.session_token.map(|_| "[redacted]"))
            .finish()
    }
}
