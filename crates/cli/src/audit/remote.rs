//! `--remote`: the audit commands asking a running server over its API (`GET /v1/events`,
//! `GET /v1/audit/public-key`, …) with the saved key, as a blocking client.

use anyhow::Context;
use keyledger_audit::{EndTally, ExportLine, PublicKeyInfo};
use keyledger_crypto::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// What the binary passes down from its global options.
#[derive(Debug, Clone, Default)]
pub struct RunContext {
    /// Print JSON instead of tables.
    pub json: bool,
    /// The server and key for `--remote`.
    pub remote: Option<Remote>,
}

/// A running server and the key to call it with.
#[derive(Debug, Clone)]
pub struct Remote {
    /// e.g. `http://127.0.0.1:8080`.
    pub endpoint: String,
    pub key: SecretString,
}

/// A `--remote` request that the server refused, or that did not reach it. The binary maps
/// `status` to its exit code (`None`: the server could not be reached).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RemoteFailure {
    pub status: Option<u16>,
    pub message: String,
}

/// A running server's log as an export, read page by page over `GET /v1/events` and ending with
/// the end record: what `export --remote` writes and `verify --remote` and `replay --remote`
/// read. Lines are re-serialised through their types, so the stream is byte for byte what an
/// offline export of the same range is.
pub(super) struct RemoteExport<'a> {
    remote: &'a Remote,
    client: reqwest::blocking::Client,
    /// The next page's first seq; `None` once the server said there is no more.
    next: Option<u64>,
    to: u64,
    pub(super) tally: EndTally,
    buffer: Vec<u8>,
    position: usize,
    ended: bool,
}

impl<'a> RemoteExport<'a> {
    /// Fetches the first page at once, so that a refusal (no permission, unreachable) is an
    /// error of the command rather than of a read halfway through.
    pub(super) fn open(remote: &'a Remote, from: u64, to: u64) -> anyhow::Result<RemoteExport<'a>> {
        let mut export = RemoteExport {
            remote,
            client: http_client()?,
            next: Some(from.max(1)),
            to,
            tally: EndTally::default(),
            buffer: Vec::new(),
            position: 0,
            ended: false,
        };
        export.fill()?;
        Ok(export)
    }

    /// Replaces the buffer with the next page's lines, or with the end record after the last.
    fn fill(&mut self) -> anyhow::Result<()> {
        #[derive(Deserialize)]
        struct Page {
            lines: Vec<serde_json::Value>,
            next_from: Option<u64>,
        }
        self.buffer.clear();
        self.position = 0;
        let Some(from) = self.next.filter(|from| *from <= self.to) else {
            write_jsonl(&mut self.buffer, &self.tally.end_line())?;
            self.ended = true;
            return Ok(());
        };
        let limit = (self.to - from).saturating_add(1).min(1000);
        let page: Page = send(
            self.client.get(format!(
                "{}/v1/events?from={from}&limit={limit}",
                self.remote.endpoint.trim_end_matches('/')
            )),
            self.remote,
        )?;
        for line in &page.lines {
            let seq = line.get("seq").and_then(serde_json::Value::as_u64);
            if seq.is_some_and(|seq| seq > self.to) {
                continue;
            }
            // Back through the typed line, so the stream has the canonical field order (and
            // verifies on the fast path); anything else is passed on as received.
            match serde_json::from_value::<ExportLine>(line.clone()) {
                Ok(typed) => {
                    self.tally.count(&typed);
                    write_jsonl(&mut self.buffer, &typed)?;
                }
                Err(_) => write_jsonl(&mut self.buffer, line)?,
            }
        }
        self.next = page.next_from;
        Ok(())
    }
}

impl std::io::Read for RemoteExport<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.position == self.buffer.len() {
            if self.ended {
                return Ok(0);
            }
            self.fill()
                .map_err(|err| std::io::Error::other(format!("{err:#}")))?;
        }
        let n = out.len().min(self.buffer.len() - self.position);
        out[..n].copy_from_slice(&self.buffer[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

fn write_jsonl(out: &mut Vec<u8>, line: &impl serde::Serialize) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.push(b'\n');
    Ok(())
}

/// The checkpoint key the server publishes (hex).
pub(super) fn server_public_key(remote: &Remote) -> anyhow::Result<String> {
    let info: PublicKeyInfo = send(
        http_client()?.get(format!(
            "{}/v1/audit/public-key",
            remote.endpoint.trim_end_matches('/')
        )),
        remote,
    )?;
    Ok(info.public_key)
}

pub(super) fn require_remote(context: &RunContext) -> anyhow::Result<&Remote> {
    context.remote.as_ref().ok_or_else(|| {
        RemoteFailure {
            status: Some(401),
            message: "--remote needs a server and a key: log in first with `keyledger login`, \
                      or set KEYLEDGER_API_KEY"
                .to_owned(),
        }
        .into()
    })
}

pub(super) fn http_client() -> anyhow::Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .context("cannot create an HTTP client")
}

pub(super) fn send<T: DeserializeOwned>(
    request: reqwest::blocking::RequestBuilder,
    remote: &Remote,
) -> anyhow::Result<T> {
    let response = request
        .bearer_auth(remote.key.expose())
        .send()
        .map_err(|err| {
            let mut cause: &dyn std::error::Error = &err;
            while let Some(next) = cause.source() {
                cause = next;
            }
            RemoteFailure {
                status: None,
                message: format!(
                    "cannot reach the keyledger server at {}: {cause}",
                    remote.endpoint
                ),
            }
        })?;
    let status = response.status();
    if !status.is_success() {
        // The API's sentence (it names a missing permission and who can grant it), not its JSON.
        let body: serde_json::Value = response.json().unwrap_or_default();
        let message = body
            .pointer("/error/message")
            .and_then(serde_json::Value::as_str)
            .map_or_else(|| format!("the server answered {status}"), str::to_owned);
        return Err(RemoteFailure {
            status: Some(status.as_u16()),
            message,
        }
        .into());
    }
    response
        .json()
        .context("the server's answer is not what this command expects")
}
