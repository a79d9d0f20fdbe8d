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
    let aws = aws_path()?;
    let config = tempfile::NamedTempFile::new().context("creating an awscli config file")?;
    std::fs::write(
        config.path(),
        "[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n",
    )?;
    let mut command = Command::new(&aws);
    command
        .args(args)
        .args(["--endpoint-url", endpoint, "--no-progress"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("AWS_CONFIG_FILE", config.path())
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", secret_access_key);
    for (name, value) in extra_env {
        command.env(name, value);
    }
    let output = command
        .output()
        .with_context(|| format!("running {}", aws.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "aws {} failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
