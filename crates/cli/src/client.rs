//! The HTTP client of the CLI commands: where the server is, which key to send, and how the
//! API's answers become output or a [`Failure`] with the right exit code.

use std::io::{IsTerminal, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use keyledger_crypto::SecretString;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::exit::{Exit, Failure};

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080";

/// Options every client command accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The server's URL [default: the one saved by `login`, else http://127.0.0.1:8080].
    #[arg(long, global = true, env = "KEYLEDGER_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Print the API's JSON instead of tables (stable, for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

/// What `keyledger login` saves: `credentials.toml`, mode 0600.
#[derive(Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub endpoint: String,
    pub key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("endpoint", &self.endpoint)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// `$KEYLEDGER_CONFIG_DIR`, else `$XDG_CONFIG_HOME/keyledger`, else `~/.config/keyledger`.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    let non_empty = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = non_empty("KEYLEDGER_CONFIG_DIR") {
        return Ok(dir);
    }
    if let Some(dir) = non_empty("XDG_CONFIG_HOME") {
        return Ok(dir.join("keyledger"));
    }
    match non_empty("HOME") {
        Some(home) => Ok(home.join(".config").join("keyledger")),
        None => Err(Failure::new(
            Exit::Usage,
            "cannot find a configuration directory: set KEYLEDGER_CONFIG_DIR or HOME",
        )
        .into()),
    }
}

pub fn credentials_path() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("credentials.toml"))
}

pub fn load_credentials() -> anyhow::Result<Option<Credentials>> {
    let path = credentials_path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let credentials = toml::from_str(&text).map_err(|_| {
                Failure::new(
                    Exit::Usage,
                    format!(
                        "{} is not a keyledger credentials file; run `keyledger login` again",
                        path.display()
                    ),
                )
            })?;
            Ok(Some(credentials))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes the credentials file with mode 0600 (its directory 0700), replacing it atomically.
pub fn save_credentials(credentials: &Credentials) -> anyhow::Result<PathBuf> {
    let dir = config_dir()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    let path = dir.join("credentials.toml");
    let temporary = dir.join(".credentials.toml.tmp");
    let text = toml::to_string(credentials).context("cannot encode the credentials")?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, &path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Reads a secret from a no-echo prompt when standard input is a terminal, else one line of
/// standard input. Never from the command line, where other users could see it.
pub fn read_secret(prompt: &str, from_stdin: bool) -> anyhow::Result<SecretString> {
    let stdin = std::io::stdin();
    let text = if from_stdin || !stdin.is_terminal() {
        let mut text = String::new();
        stdin
            .lock()
            .take(64 * 1024)
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        text
    } else {
        rpassword::prompt_password(prompt).context("cannot read from the terminal")?
    };
    let secret = SecretString::new(text.lines().next().unwrap_or("").trim().to_owned());
    if secret.expose().is_empty() {
        return Err(Failure::new(Exit::Usage, "nothing was entered").into());
    }
    Ok(secret)
}

/// A client for one server with one key.
/// The endpoint and key a command uses: `--endpoint`/`KEYLEDGER_ENDPOINT`, else the saved one,
/// else the default; `KEYLEDGER_API_KEY`, else the saved key.
pub fn resolve(args: &ClientArgs) -> anyhow::Result<(String, Option<SecretString>)> {
    let saved = load_credentials()?;
    let endpoint = args
        .endpoint
        .clone()
        .or_else(|| saved.as_ref().map(|c| c.endpoint.clone()))
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
    let key = std::env::var("KEYLEDGER_API_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
        .map(|k| SecretString::new(k.trim().to_owned()))
        .or_else(|| saved.map(|c| SecretString::new(c.key)));
    Ok((endpoint, key))
}

#[derive(Debug)]
pub struct Client {
    http: reqwest::blocking::Client,
    endpoint: String,
    key: Option<SecretString>,
}

impl Client {
    /// The endpoint from `--endpoint`/`KEYLEDGER_ENDPOINT`, else the saved one, else the
    /// default; the key from `KEYLEDGER_API_KEY`, else the saved one.
    pub fn from_args(args: &ClientArgs) -> anyhow::Result<Client> {
        let (endpoint, key) = resolve(args)?;
        Client::new(endpoint, key)
    }

    pub fn new(endpoint: String, key: Option<SecretString>) -> anyhow::Result<Client> {
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(Failure::new(
                Exit::Usage,
                format!("the endpoint `{endpoint}` must start with http:// or https://"),
            )
            .into());
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("keyledger-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Client {
            http,
            endpoint,
            key,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(Method::GET, path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(Method::POST, path, Some(body))
    }

    pub fn put(&self, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        self.send(Method::PUT, path, body)
    }

    pub fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(Method::DELETE, path, None)
    }

    /// Sends a request and returns the JSON answer, or a [`Failure`] built from the API's error.
    pub fn send(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let Some(key) = &self.key else {
            return Err(Failure::new(
                Exit::Auth,
                "not logged in: run `keyledger login`, or set KEYLEDGER_API_KEY",
            )
            .into());
        };
        let url = format!("{}{path}", self.endpoint);
        let mut request = self.http.request(method, &url).bearer_auth(key.expose());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().map_err(|err| {
            Failure::new(
                Exit::Server,
                format!(
                    "cannot reach the keyledger server at {}: {}",
                    self.endpoint,
                    root_cause(&err)
                ),
            )
        })?;
        let status = response.status().as_u16();
        let text = response.text().map_err(|err| {
            Failure::new(
                Exit::Server,
                format!(
                    "the server's answer could not be read: {}",
                    root_cause(&err)
                ),
            )
        })?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let message = value
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("the server answered HTTP {status}"));
        Err(Failure::new(Exit::for_status(status), message).into())
    }

    /// Starts a GET whose answer is a file rather than JSON, to be read as it arrives; `timeout`
    /// bounds the whole transfer. An error answer becomes a [`Failure`] as in [`Client::send`].
    pub fn get_file(
        &self,
        path: &str,
        timeout: Duration,
    ) -> anyhow::Result<reqwest::blocking::Response> {
        let Some(key) = &self.key else {
            return Err(Failure::new(
                Exit::Auth,
                "not logged in: run `keyledger login`, or set KEYLEDGER_API_KEY",
            )
            .into());
        };
        let response = self
            .http
            .get(format!("{}{path}", self.endpoint))
            .bearer_auth(key.expose())
            .timeout(timeout)
            .send()
            .map_err(|err| {
                Failure::new(
                    Exit::Server,
                    format!(
                        "cannot reach the keyledger server at {}: {}",
                        self.endpoint,
                        root_cause(&err)
                    ),
                )
            })?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        let value: Value = response.json().unwrap_or(Value::Null);
        let message = value
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("the server answered HTTP {status}"));
        Err(Failure::new(Exit::for_status(status), message).into())
    }
}

fn root_cause(err: &dyn std::error::Error) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Escapes one path segment (ids and names are plain, but a typo should not change the route).
pub fn segment(raw: &str) -> String {
    raw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
