//! A second run of an already-synced selection: keyledger's incremental sync (list, compare
//! with what the store holds, one `IngestionFilesSkipped`) against `aws s3 sync` over the same
//! unchanged bucket, both after a first, untimed sync.

use std::process::Command;
use std::time::Instant;

use super::{ACCESS_KEY_ID, RUNS, RunDirs, SECRET, median};
use crate::report::{Report, ratio};

/// Adds the section: `count` objects under `prefix` of bucket `bench` at `endpoint`.
pub(super) fn run(
    report: &mut Report,
    runtime: &tokio::runtime::Runtime,
    aws: &std::path::Path,
    endpoint: &str,
    prefix: &str,
    count: u64,
) -> anyhow::Result<()> {
    report.section(
        "S3 re-sync of an unchanged selection (second run after a full first one; median of 3 runs)",
        &["case", "keyledger", "awscli `s3 sync`", "vs awscli", "goal"],
    );
    let mut dirs = RunDirs::new(true)?;
    let ours = median(RUNS, || {
        let (skipped, fetched, elapsed) = dirs.run(|dir| {
            Ok(runtime.block_on(crate::ingestion::resync_s3(
                dir,
                endpoint,
                ACCESS_KEY_ID,
                SECRET,
                "bench",
                prefix,
            ))?)
        })?;
        anyhow::ensure!(
            skipped == count && fetched == 0,
            "the second run skipped {skipped} and fetched {fetched} of {count} files"
        );
        Ok(elapsed.as_secs_f64())
    })?;
    let sync = |out: &std::path::Path| -> anyhow::Result<f64> {
        let started = Instant::now();
        let status = Command::new(aws)
            .args([
                "s3",
                "sync",
                "--only-show-errors",
                "--endpoint-url",
                endpoint,
            ])
            .arg(format!("s3://bench/{prefix}"))
            .arg(out)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .status()?;
        anyhow::ensure!(status.success(), "aws s3 sync failed");
        Ok(started.elapsed().as_secs_f64())
    };
    let awscli = median(RUNS, || {
        dirs.run(|out| {
            sync(out)?;
            sync(out)
        })
    })?;
    report.row(&[
        format!("{count} × 64 KiB objects, none changed"),
        format!("{ours:.2} s"),
        format!("{awscli:.2} s"),
        ratio(awscli, ours),
        "≥ 5 vs awscli".into(),
    ]);
    report.note(
        "keyledger: a whole job (lease, list, compare each object with the version the store \
         holds, record the skip, final event) after a first job stored them all; awscli: \
         `aws s3 sync` into a folder a first `aws s3 sync` filled (it compares size and \
         modification time). Both first runs are untimed.",
    );
    Ok(())
}
