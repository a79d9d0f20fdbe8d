//! The file's download URL: asked for once, shared by all lanes, asked for again only when it
//! expires or is refused.
//!
//! Guarantee: a download URL is a credential: it has no `Debug`, is never logged, and the API
//! token never goes to the data server (the URL itself carries the authorisation).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::DnanexusError;
use crate::client::ApiClient;

/// Lifetime asked for a download URL (seconds); an expired URL is simply asked for again.
const URL_DURATION_S: u64 = 24 * 3600;
/// A URL this close to expiry is replaced before use.
const URL_EXPIRY_MARGIN_MS: u64 = 60_000;

/// The file's current download URL, shared by all lanes; asked for once and again only when it
/// expires or is refused.
#[derive(Default)]
pub(super) struct DownloadUrls {
    current: tokio::sync::Mutex<Option<Arc<DownloadUrl>>>,
    generations: AtomicU64,
}

/// A download URL is a credential: no `Debug`, never logged.
pub(super) struct DownloadUrl {
    pub url: String,
    pub headers: HeaderMap,
    expires_ms: Option<u64>,
    pub generation: u64,
}

impl DownloadUrls {
    pub async fn get(
        &self,
        api: &ApiClient,
        file_id: &str,
        project: &str,
    ) -> Result<Arc<DownloadUrl>, DnanexusError> {
        let mut current = self.current.lock().await;
        if let Some(url) = current.as_ref()
            && url
                .expires_ms
                .is_none_or(|expires| expires > now_ms() + URL_EXPIRY_MARGIN_MS)
        {
            return Ok(url.clone());
        }
        // The URL itself carries the authorisation: the token never goes to the data server.
        let input =
            json!({"project": project, "preauthenticated": true, "duration": URL_DURATION_S});
        let output = api
            .call(&format!("/{file_id}/download"), &input)
            .await
            .map_err(|error| match error {
                DnanexusError::Api { kind, .. } if kind == "ResourceNotFound" => {
                    DnanexusError::FileNotFound {
                        id: file_id.to_owned(),
                    }
                }
                other => other,
            })?;
        let url = output
            .get("url")
            .and_then(Value::as_str)
            .filter(|url| url.starts_with("https://") || url.starts_with("http://"))
            .ok_or_else(|| DnanexusError::invalid_response("download returned no http(s) url"))?
            .to_owned();
        let mut headers = HeaderMap::new();
        match output.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(given)) => {
                for (name, value) in given {
                    let header = value.as_str().and_then(|value| {
                        Some((
                            HeaderName::from_bytes(name.as_bytes()).ok()?,
                            HeaderValue::from_str(value).ok()?,
                        ))
                    });
                    let Some((name, mut value)) = header else {
                        return Err(DnanexusError::invalid_response(
                            "download returned a header that is not a string",
                        ));
                    };
                    value.set_sensitive(true);
                    headers.insert(name, value);
                }
            }
            Some(_) => {
                return Err(DnanexusError::invalid_response(
                    "download returned headers that are not an object",
                ));
            }
        }
        let expires_ms = output.get("expires").and_then(Value::as_u64);
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let url = Arc::new(DownloadUrl {
            url,
            headers,
            expires_ms,
            generation,
        });
        *current = Some(url.clone());
        Ok(url)
    }

    /// Forgets the URL of `generation` (a newer one, fetched by another lane, is kept).
    pub async fn invalidate(&self, generation: u64) {
        let mut current = self.current.lock().await;
        if current
            .as_ref()
            .is_some_and(|url| url.generation == generation)
        {
            *current = None;
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}
