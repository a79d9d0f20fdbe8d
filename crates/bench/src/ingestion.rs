//! Helpers for the benchmark harness: one real ingestion (vault, log, events, store) against a
//! given server, timed from the request to the final event.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyledger_crypto::{MasterKey, SecretString};
use keyledger_domain::{Actor, KeyDuration, Label, Selection, UserId};
use keyledger_vault::{NewCredential, SystemClock, Vault, VaultConfig};

use keyledger_ingest::{
    IngestConfig, IngestError, IngestRequest, IngestionView, Ingestor, JobState,
};

/// Why a bench run did not produce a figure.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("setting up the bench vault failed: {0}")]
    Setup(String),
    #[error(transparent)]
    Refused(#[from] IngestError),
    #[error("the ingestion ended {state:?}: {reason}")]
    Job { state: JobState, reason: String },
}

/// Bytes and files stored, and the time from the request to the job's final event.
pub type BenchFigures = (u64, u64, Duration);

/// Ingests `bucket`/`prefix` (objects matching `pattern`) from an S3-compatible `endpoint`
/// (path-style) into a store in `workspace` with the default [`IngestConfig`].
pub async fn ingest_s3_once(
    workspace: &Path,
    endpoint: &str,
    access_key_id: &str,
    secret_access_key: &str,
    bucket: &str,
    prefix: &str,
    pattern: &str,
) -> Result<BenchFigures, BenchError> {
    let mut config = IngestConfig::default();
    config.s3.endpoint = Some(endpoint.to_owned());
    config.s3.force_path_style = true;
    let credential = NewCredential::aws(
        access_key_id,
        SecretString::new(secret_access_key.to_owned()),
        "us-east-1",
    )
    .map_err(|error| BenchError::Setup(error.to_string()))?;
    let selection = Selection::Aws {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        pattern: pattern.to_owned(),
    };
    ingest_once(workspace, config, credential, selection).await
}

/// Ingests `project`:`folder` (files matching `pattern`) from a DNAnexus API at `api_url`
/// into a store in `workspace` with the default [`IngestConfig`].
pub async fn ingest_dnanexus_once(
    workspace: &Path,
    api_url: &str,
    token: &str,
    project: &str,
    folder: &str,
    pattern: &str,
) -> Result<BenchFigures, BenchError> {
    let mut config = IngestConfig::default();
    config.dnanexus.api_url = api_url.to_owned();
    let credential = NewCredential::dnanexus(SecretString::new(token.to_owned()))
        .map_err(|error| BenchError::Setup(error.to_string()))?;
    let selection = Selection::Dnanexus {
        project: project.to_owned(),
        folder: folder.to_owned(),
        pattern: pattern.to_owned(),
    };
    ingest_once(workspace, config, credential, selection).await
}

/// One ingestion with a fresh vault in `workspace`, an empty directory the caller owns and
/// removes. A relative `config.store_root` (the default) is placed in it too.
pub async fn ingest_once(
    workspace: &Path,
    config: IngestConfig,
    credential: NewCredential,
    selection: Selection,
) -> Result<BenchFigures, BenchError> {
    let (ingestor, actor) = open_bench(workspace, config, credential).await?;
    run_job(&ingestor, actor, selection).await
}

/// Ingests an S3 selection once, untimed, then again (incremental sync: nothing changed):
/// the second job's files skipped and fetched, and its time from request to final event.
pub async fn resync_s3(
    workspace: &Path,
    endpoint: &str,
    access_key_id: &str,
    secret_access_key: &str,
    bucket: &str,
    prefix: &str,
) -> Result<(u64, u64, Duration), BenchError> {
    let mut config = IngestConfig::default();
    config.s3.endpoint = Some(endpoint.to_owned());
    config.s3.force_path_style = true;
    let credential = NewCredential::aws(
        access_key_id,
        SecretString::new(secret_access_key.to_owned()),
        "us-east-1",
    )
    .map_err(|error| BenchError::Setup(error.to_string()))?;
    let selection = Selection::Aws {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        pattern: ".*".to_owned(),
    };
    let (ingestor, actor) = open_bench(workspace, config, credential).await?;
    run_job(&ingestor, actor.clone(), selection.clone()).await?;
    let (view, elapsed) = timed_job(&ingestor, actor, selection).await?;
    if view.state != JobState::Completed {
        return Err(BenchError::Job {
            state: view.state,
            reason: view.error.unwrap_or_default(),
        });
    }
    Ok((view.files_skipped, view.files_fetched, elapsed))
}

/// A fresh vault in `workspace` with one admin holding `credential`, and its ingestor.
async fn open_bench(
    workspace: &Path,
    mut config: IngestConfig,
    credential: NewCredential,
) -> Result<(Ingestor, Actor), BenchError> {
    let setup = |error: &dyn std::fmt::Display| BenchError::Setup(error.to_string());
    if config.store_root.is_relative() {
        config.store_root = workspace.join("samples");
    }
    let master = MasterKey::generate(&ring::rand::SystemRandom::new()).map_err(|e| setup(&e))?;
    let vault = Vault::open(
        VaultConfig {
            data_dir: workspace.join("vault"),
            ..VaultConfig::default()
        },
        &master,
        Arc::new(SystemClock),
    )
    .map_err(|e| setup(&e))?;
    let admin = UserId::parse("bench").map_err(|e| setup(&e))?;
    vault
        .bootstrap(admin.clone())
        .await
        .map_err(|e| setup(&e))?;
    let actor = Actor::User {
        user: admin,
        key: None,
    };
    vault
        .create_external_key(
            actor.clone(),
            Label::parse("bench").map_err(|e| setup(&e))?,
            credential,
            KeyDuration::Days(1),
            None,
        )
        .await
        .map_err(|e| setup(&e))?;
    let ingestor = Ingestor::new(vault, config);
    ingestor.recover().await?;
    Ok((ingestor, actor))
}

/// Starts one job and waits for its end: its view and the time from request to final event.
async fn timed_job(
    ingestor: &Ingestor,
    actor: Actor,
    selection: Selection,
) -> Result<(IngestionView, Duration), BenchError> {
    let started = Instant::now();
    let id = ingestor
        .start(
            actor,
            IngestRequest {
                selection,
                destination: None,
            },
        )
        .await?;
    let view = ingestor
        .wait(&id)
        .await
        .ok_or_else(|| BenchError::Setup("the job disappeared".to_owned()))?;
    let elapsed = started.elapsed();
    Ok((view, elapsed))
}

/// Runs one job to its end: bytes and files stored, and the time it took.
async fn run_job(
    ingestor: &Ingestor,
    actor: Actor,
    selection: Selection,
) -> Result<BenchFigures, BenchError> {
    let (view, elapsed) = timed_job(ingestor, actor, selection).await?;
    if view.state != JobState::Completed || view.files_failed > 0 {
        let reason = view.error.clone().unwrap_or_else(|| {
            let failed = view.files.iter().find_map(|file| file.error.clone());
            format!(
                "{} files failed; first: {}",
                view.files_failed,
                failed.unwrap_or_default()
            )
        });
        return Err(BenchError::Job {
            state: view.state,
            reason,
        });
    }
    Ok((view.bytes_fetched, view.files_fetched, elapsed))
}
