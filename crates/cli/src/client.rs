//! The HTTP client of the CLI commands: where the server is, which key to send, and how the
//! API's answers become output or a [`Failure`] with the right exit code.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Read, Write};
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
    /// The server's URL [default: the profile's, else http://127.0.0.1:8080].
    #[arg(long, global = true, env = "KEYLEDGER_ENDPOINT")]
    pub endpoint: Option<String>,
    /// The saved profile (endpoint and key) to use [default: the current one, see `keyledger profiles`].
    #[arg(long, global = true, env = "KEYLEDGER_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
    /// Print the API's JSON instead of tables (stable, for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

/// One saved profile: an endpoint and the key `keyledger login` checked against it.
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

/// The profile used when none is named and none was made current.
pub const DEFAULT_PROFILE: &str = "default";

/// `credentials.toml`: named profiles and which one is current. Written with mode 0600; the
/// single-profile file of earlier versions (`endpoint` and `key` at the top) reads as the
/// profile `default`, and is rewritten in this form at the next `login`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CredentialsFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Credentials>,
}

impl CredentialsFile {
    /// The profile commands use without `--profile`: the current one, else `default`.
    pub fn current_name(&self) -> &str {
        self.current.as_deref().unwrap_or(DEFAULT_PROFILE)
    }

    fn parse(text: &str) -> Option<CredentialsFile> {
        if let Ok(single) = toml::from_str::<Credentials>(text) {
            return Some(CredentialsFile {
                current: Some(DEFAULT_PROFILE.to_owned()),
                profiles: BTreeMap::from([(DEFAULT_PROFILE.to_owned(), single)]),
            });
        }
        toml::from_str(text).ok()
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

/// Every saved profile; an empty set when nothing was saved yet.
pub fn load_credentials_file() -> anyhow::Result<CredentialsFile> {
    let path = credentials_path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => CredentialsFile::parse(&text).ok_or_else(|| {
            Failure::new(
                Exit::Usage,
                format!(
                    "{} is not a keyledger credentials file; run `keyledger login` again",
                    path.display()
                ),
            )
            .into()
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(CredentialsFile::default()),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The name of the profile a command uses: `--profile`/`KEYLEDGER_PROFILE`, else the current one.
pub fn profile_name(args: &ClientArgs, file: &CredentialsFile) -> anyhow::Result<String> {
    match &args.profile {
        Some(name) => Ok(check_profile_name(name)?.to_owned()),
        None => Ok(file.current_name().to_owned()),
    }
}

/// The saved credentials of the profile a command uses, if that profile was saved.
pub fn load_credentials_for(args: &ClientArgs) -> anyhow::Result<Option<(String, Credentials)>> {
    // Without a configuration directory (a CI job with only KEYLEDGER_API_KEY and no HOME)
    // nothing was saved; that is an error only when a profile was asked for by name.
    if args.profile.is_none() && config_dir().is_err() {
        return Ok(None);
    }
    let file = load_credentials_file()?;
    let name = profile_name(args, &file)?;
    let saved = file.profiles.get(&name).cloned();
    if saved.is_none() && args.profile.is_some() && !file.profiles.is_empty() {
        let known: Vec<&str> = file.profiles.keys().map(String::as_str).collect();
        return Err(Failure::new(
            Exit::Auth,
            format!(
                "no saved profile `{name}` (saved: {}); run `keyledger login --profile {name}`",
                known.join(", ")
            ),
        )
        .into());
    }
    Ok(saved.map(|credentials| (name, credentials)))
}

/// Profile names are plain words, so they read the same in a file, a flag and a prompt.
pub fn check_profile_name(name: &str) -> anyhow::Result<&str> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if name.is_empty() || name.len() > 64 || !name.bytes().all(plain) {
        return Err(Failure::new(
            Exit::Usage,
            format!("profile `{name}`: use 1 to 64 letters, digits, `-`, `_` or `.`"),
        )
        .into());
    }
    Ok(name)
}

/// Writes the credentials file with mode 0600 (its directory 0700), replacing it atomically.
pub fn save_credentials_file(file: &CredentialsFile) -> anyhow::Result<PathBuf> {
    let dir = config_dir()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    let path = dir.join("credentials.toml");
    let temporary = dir.join(".credentials.toml.tmp");
    let text = toml::to_string(file).context("cannot encode the credentials")?;
    let mut output = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))?;
    output.write_all(text.as_bytes())?;
    output.sync_all()?;
    std::fs::rename(&temporary, &path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Reads a secret from a no-echo prompt when standard input is a terminal, else one line of
/// standard input. Never from the command line, where other users could see it.
pub fn read_secret(prompt: &str, from_stdin: bool) -> anyhow::Result<SecretString> {
    let stdin = std::io::stdin();
    let text = if from_stdin || !stdin.is_terminal() {
        let mut line = String::new();
        // One line only: the next prompt of a script (`printf 'key\nsecret\n' | …`) keeps its own.
        stdin
            .lock()
            .take(64 * 1024)
            .read_line(&mut line)
            .context("cannot read standard input")?;
        line
    } else {
        rpassword::prompt_password(prompt).context("cannot read from the terminal")?
    };
    let secret = SecretString::new(text.lines().next().unwrap_or("").trim().to_owned());
    if secret.expose().is_empty() {
        return Err(Failure::new(Exit::Usage, "nothing was entered").into());
    }
    Ok(secret)
}

/// Where a command's key came from, so a refusal of a saved key can say which profile to fix.
#[derive(Debug, Clone)]
pub struct SavedKey {
    pub profile: String,
}

/// The endpoint and key a command uses: `--endpoint`/`KEYLEDGER_ENDPOINT`, else the profile's,
/// else the default; `KEYLEDGER_API_KEY`, else the profile's key.
pub fn resolve(args: &ClientArgs) -> anyhow::Result<(String, Option<SecretString>)> {
    let (endpoint, key, _) = resolve_with_origin(args)?;
    Ok((endpoint, key))
}

fn resolve_with_origin(
    args: &ClientArgs,
) -> anyhow::Result<(String, Option<SecretString>, Option<SavedKey>)> {
    let saved = load_credentials_for(args)?;
    let endpoint = args
        .endpoint
        .clone()
        .or_else(|| saved.as_ref().map(|(_, c)| c.endpoint.clone()))
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
    let from_env = std::env::var("KEYLEDGER_API_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
        .map(|k| SecretString::new(k.trim().to_owned()));
    if let Some(key) = from_env {
        return Ok((endpoint, Some(key), None));
    }
    match saved {
        Some((profile, credentials)) => Ok((
            endpoint,
            Some(SecretString::new(credentials.key)),
            Some(SavedKey { profile }),
        )),
        None => Ok((endpoint, None, None)),
    }
}

#[derive(Debug)]
pub struct Client {
    http: reqwest::blocking::Client,
    endpoint: String,
    key: Option<SecretString>,
    saved: Option<SavedKey>,
}

impl Client {
    /// The endpoint from `--endpoint`/`KEYLEDGER_ENDPOINT`, else the saved one, else the
    /// default; the key from `KEYLEDGER_API_KEY`, else the saved one.
    pub fn from_args(args: &ClientArgs) -> anyhow::Result<Client> {
        let (endpoint, key, saved) = resolve_with_origin(args)?;
        let mut client = Client::new(endpoint, key)?;
        client.saved = saved;
        Ok(client)
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
            saved: None,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The profile whose saved key this client sends; `None` for a key from the environment.
    pub fn profile(&self) -> Option<&str> {
        self.saved.as_ref().map(|saved| saved.profile.as_str())
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
        let response = self.answered(method, path, body, None)?;
        let text = response.text().map_err(|err| {
            Failure::new(
                Exit::Server,
                format!(
                    "the server's answer could not be read: {}",
                    root_cause(&err)
                ),
            )
        })?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Starts a GET whose answer is a file rather than JSON, to be read as it arrives; `timeout`
    /// bounds the whole transfer. An error answer becomes a [`Failure`] as in [`Client::send`].
    pub fn get_file(
        &self,
        path: &str,
        timeout: Duration,
    ) -> anyhow::Result<reqwest::blocking::Response> {
        self.answered(Method::GET, path, None, Some(timeout))
    }

    /// The server's successful (2xx) answer to one request, its body unread; anything else is a
    /// [`Failure`] with the exit code of its status and the API's message.
    fn answered(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> anyhow::Result<reqwest::blocking::Response> {
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
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
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
        if (200..300).contains(&status) {
            return Ok(response);
        }
        let value: Value = response.json().unwrap_or(Value::Null);
        let message = value
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("the server answered HTTP {status}"));
        let message = match (&self.saved, status) {
            (Some(saved), 401) => {
                saved_key_refused(saved, &self.endpoint, &message).unwrap_or(message)
            }
            _ => message,
        };
        Err(Failure::new(Exit::for_status(status), message).into())
    }
}

/// A saved key the server no longer accepts is not the user's typo: say which profile holds it
/// and what fixes it, instead of the server's bare "unknown key".
fn saved_key_refused(saved: &SavedKey, endpoint: &str, message: &str) -> Option<String> {
    let what = match message {
        "unknown key" | "key deleted" => "was deleted (the server does not know it)",
        "key expired" => "expired",
        m if m.contains("rolled") => "was rolled and its old secret stopped working",
        _ => return None,
    };
    let profile = &saved.profile;
    let login = if profile == DEFAULT_PROFILE {
        "keyledger login".to_owned()
    } else {
        format!("keyledger login --profile {profile}")
    };
    Some(format!(
        "your saved key for profile {profile} (endpoint {endpoint}) {what}; run `{login}` with a valid key"
    ))
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
