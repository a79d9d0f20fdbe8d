//! The vault's worker routes over HTTP(S), authenticated with the worker's own key.

use std::time::Duration;

use keyledger_bus::jobs::JobMessage;
use keyledger_crypto::SecretString;
use std::sync::Arc;

use keyledger_ingest::ListedVersion;
use keyledger_ingest::wire::{
    GrantBody, ReportItem, SessionRequest, UnchangedAnswer, UnchangedRequest, WireCredential,
};
use keyledger_ingest::{AwsCredentials, SessionIssuer};
use keyledger_ingest::{JobHost, Refused};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::WorkerError;

/// Attempts of a report the vault could not take (network, 5xx) before the job is handed back.
const REPORT_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone)]
pub(crate) struct VaultClient {
    http: reqwest::Client,
    base: String,
    key: SecretString,
}

/// Why a lease was not granted.
#[derive(Debug)]
pub(crate) enum LeaseRefused {
    /// The job is over for the queue: finished, its key gone, or not a job of this queue.
    Over(String),
    /// Try again later (the vault unreachable or overloaded).
    Later(String),
    /// The vault refuses this worker's key (unknown, expired, deleted, or without
    /// `run_ingestion_jobs`): no job can run here until it is fixed.
    Refused(String),
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

impl VaultClient {
    pub fn new(base: &str, key: SecretString) -> Result<VaultClient, WorkerError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|error| {
                WorkerError::Config(format!("cannot build the HTTP client: {error}"))
            })?;
        Ok(VaultClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key,
        })
    }

    pub async fn lease(&self, job: &JobMessage) -> Result<GrantBody, LeaseRefused> {
        let url = format!("{}/v1/worker/ingestions/{}/lease", self.base, job.ingestion);
        let body = serde_json::json!({ "ticket": job.ticket });
        let response = self
            .http
            .post(&url)
            .bearer_auth(self.key.expose())
            .json(&body)
            .send()
            .await
            .map_err(|error| LeaseRefused::Later(format!("the vault is unreachable: {error}")))?;
        let status = response.status();
        if status.is_success() {
            return response
                .json::<GrantBody>()
                .await
                .map_err(|error| LeaseRefused::Later(format!("unreadable grant: {error}")));
        }
        let (code, message) = error_of(response).await;
        match (status, code.as_str()) {
            (StatusCode::CONFLICT, _) | (StatusCode::NOT_FOUND, _) => {
                Err(LeaseRefused::Over(message))
            }
            (StatusCode::FORBIDDEN, "not_handed_out") => Err(LeaseRefused::Over(message)),
            (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _) => {
                Err(LeaseRefused::Refused(format!("{status}: {message}")))
            }
            _ => Err(LeaseRefused::Later(format!("{status}: {message}"))),
        }
    }

    /// Asks the vault for a new session of the job's `role` key under `lease` (decision 0030).
    pub fn session_issuer(&self, ingestion: &str, lease: &str) -> SessionIssuer {
        let (client, ingestion, lease) = (self.clone(), ingestion.to_owned(), lease.to_owned());
        Arc::new(move || {
            let (client, ingestion, lease) = (client.clone(), ingestion.clone(), lease.clone());
            Box::pin(async move { client.renew_session(&ingestion, &lease).await })
        })
    }

    async fn renew_session(&self, ingestion: &str, lease: &str) -> Result<AwsCredentials, String> {
        let url = format!("{}/v1/worker/ingestions/{ingestion}/session", self.base);
        let response = self
            .http
            .post(&url)
            .bearer_auth(self.key.expose())
            .json(&SessionRequest {
                lease: lease.to_owned(),
            })
            .send()
            .await
            .map_err(|error| format!("the vault is unreachable: {error}"))?;
        let status = response.status();
        if !status.is_success() {
            let (_, message) = error_of(response).await;
            return Err(format!(
                "the vault gave no new session ({status}): {message}"
            ));
        }
        let wire = response
            .json::<WireCredential>()
            .await
            .map_err(|error| format!("unreadable session: {error}"))?;
        let credential = wire.to_credential()?;
        tracing::info!("new role session from the vault");
        keyledger_ingest::s3::aws_credentials(&credential)
            .ok_or_else(|| "the vault sent no AWS session".to_owned())
    }

    /// A [`JobHost`] reporting under `lease`.
    pub fn host<'a>(&'a self, ingestion: &'a str, lease: &'a str) -> LeasedHost<'a> {
        LeasedHost {
            client: self,
            ingestion,
            lease,
        }
    }

    async fn report_once(
        &self,
        ingestion: &str,
        lease: &str,
        items: &[ReportItem],
    ) -> Result<(), Refused> {
        let url = format!("{}/v1/worker/ingestions/{ingestion}/report", self.base);
        let body = serde_json::json!({ "lease": lease, "items": items });
        self.post(&url, &body).await.map(drop)
    }

    /// Which of `files` the vault says the store already holds (decision 0033).
    async fn unchanged_once(
        &self,
        ingestion: &str,
        lease: &str,
        files: &[ListedVersion],
    ) -> Result<Vec<usize>, Refused> {
        let url = format!("{}/v1/worker/ingestions/{ingestion}/unchanged", self.base);
        let body = UnchangedRequest {
            lease: lease.to_owned(),
            files: files.to_vec(),
        };
        let response = self.post(&url, &body).await?;
        let answer = response
            .json::<UnchangedAnswer>()
            .await
            .map_err(|error| Refused::Unavailable(format!("unreadable answer: {error}")))?;
        Ok(answer.unchanged)
    }

    /// A worker route under a lease: 409 means the lease ended.
    async fn post(
        &self,
        url: &str,
        body: &impl serde::Serialize,
    ) -> Result<reqwest::Response, Refused> {
        let response = self
            .http
            .post(url)
            .bearer_auth(self.key.expose())
            .json(body)
            .send()
            .await
            .map_err(|error| Refused::Unavailable(format!("the vault is unreachable: {error}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let (_, message) = error_of(response).await;
        if status == StatusCode::CONFLICT {
            return Err(Refused::Ended(message));
        }
        Err(Refused::Unavailable(format!("{status}: {message}")))
    }
}

/// `once` until it is taken or refused for good; a few attempts while the vault is unreachable.
async fn retried<T, F>(mut once: impl FnMut() -> F) -> Result<T, Refused>
where
    F: std::future::Future<Output = Result<T, Refused>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match once().await {
            Err(Refused::Unavailable(reason)) if attempt < REPORT_ATTEMPTS => {
                tracing::warn!(reason = %reason, attempt, "the vault did not answer; trying again");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            other => return other,
        }
    }
}

/// Reports of one job under one lease.
#[derive(Debug)]
pub(crate) struct LeasedHost<'a> {
    client: &'a VaultClient,
    ingestion: &'a str,
    lease: &'a str,
}

impl JobHost for LeasedHost<'_> {
    async fn report(&self, items: Vec<ReportItem>) -> Result<(), Refused> {
        retried(|| self.client.report_once(self.ingestion, self.lease, &items)).await
    }

    async fn unchanged(&self, files: Vec<ListedVersion>) -> Result<Vec<usize>, Refused> {
        retried(|| {
            self.client
                .unchanged_once(self.ingestion, self.lease, &files)
        })
        .await
    }
}

async fn error_of(response: reqwest::Response) -> (String, String) {
    let status = response.status();
    match response.json::<ErrorBody>().await {
        Ok(body) => (body.error.code, body.error.message),
        Err(_) => (String::new(), format!("the vault answered {status}")),
    }
}
