//! Starts the real `keyledger` binary on a temporary data directory and a free port, and talks
//! to it over HTTP and through the CLI.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_keyledger");
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running server. Stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub base: String,
    /// The bootstrap admin's key, read from the first start's standard output.
    pub admin_key: String,
    env: Vec<(String, String)>,
    child: Option<Child>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// Output of earlier runs of this server (before restarts).
    earlier_output: String,
    http: reqwest::blocking::Client,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts a server with extra `KEYLEDGER_*` variables (they win over the defaults here).
    pub fn start_with(env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut all = vec![
            ("KEYLEDGER_HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            (
                "KEYLEDGER_DATA_DIR".to_owned(),
                dir.path().join("data").display().to_string(),
            ),
            // The permission matrix makes many refused calls from 127.0.0.1 on purpose.
            (
                "KEYLEDGER_HTTP_AUTH_FAILURES_PER_MINUTE".to_owned(),
                "100000".to_owned(),
            ),
            ("RUST_LOG".to_owned(), "info".to_owned()),
            // No test may reach a real provider: a closed local port, one attempt.
            (
                "KEYLEDGER_INGEST_DNANEXUS_API_URL".to_owned(),
                "http://127.0.0.1:9".to_owned(),
            ),
            (
                "KEYLEDGER_INGEST_S3_ENDPOINT".to_owned(),
                "http://127.0.0.1:9".to_owned(),
            ),
            (
                "KEYLEDGER_INGEST_STS_ENDPOINT".to_owned(),
                "http://127.0.0.1:9".to_owned(),
            ),
            ("KEYLEDGER_INGEST_MAX_ATTEMPTS".to_owned(), "1".to_owned()),
        ];
        for (name, value) in env {
            all.retain(|(existing, _)| existing != name);
            all.push(((*name).to_owned(), (*value).to_owned()));
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        let mut server = Server {
            dir,
            base: String::new(),
            admin_key: String::new(),
            env: all,
            child: None,
            stdout: Arc::default(),
            stderr: Arc::default(),
            earlier_output: String::new(),
            http,
        };
        server.launch();
        server.admin_key =
            find_key(&server.stdout()).expect("the first start prints the admin key");
        server
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Everything the server printed so far, on both streams and across restarts.
    pub fn output(&self) -> String {
        format!(
            "{}{}{}",
            self.earlier_output,
            self.stdout(),
            self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
        )
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops the server gracefully (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
            // Let the reader threads drain what is left.
            std::thread::sleep(Duration::from_millis(50));
            self.earlier_output.push_str(&self.stdout());
            self.earlier_output
                .push_str(&self.stderr.lock().map(|s| s.clone()).unwrap_or_default());
            *self.stdout.lock().expect("stdout") = String::new();
            *self.stderr.lock().expect("stderr") = String::new();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Restarts on the same data directory with extra `KEYLEDGER_*` variables (they win).
    pub fn restart_with(&mut self, env: &[(&str, &str)]) {
        for (name, value) in env {
            self.env.retain(|(existing, _)| existing != name);
            self.env.push(((*name).to_owned(), (*value).to_owned()));
        }
        self.restart();
    }

    fn launch(&mut self) {
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in &self.env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start keyledger serve");
        let (listening, address) = mpsc::channel();
        let stdout = Arc::clone(&self.stdout);
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = line.strip_prefix("keyledger listening on ") {
                    let _ = listening.send(address.to_owned());
                }
                if let Ok(mut all) = stdout.lock() {
                    all.push_str(&line);
                    all.push('\n');
                }
            }
        });
        let stderr = Arc::clone(&self.stderr);
        let mut err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            let mut buffer = [0u8; 8192];
            while let Ok(read) = err.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                if let Ok(mut all) = stderr.lock() {
                    all.push_str(&String::from_utf8_lossy(&buffer[..read]));
                }
            }
        });
        self.child = Some(child);
        let address = address
            .recv_timeout(START_TIMEOUT)
            .unwrap_or_else(|_| panic!("the server did not start:\n{}", self.output()));
        self.base = address;
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if self
                .http
                .get(format!("{}/healthz", self.base))
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("/healthz never answered:\n{}", self.output());
    }

    /// A JSON request: returns the status and the body (Null when it is not JSON).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let response = self.send(method, path, key, body);
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> reqwest::blocking::Response {
        let mut request = self.http.request(
            method.parse().expect("method"),
            format!("{}{path}", self.base),
        );
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().expect("request")
    }

    /// A JSON request with extra headers.
    pub fn send_with_headers(
        &self,
        method: &str,
        path: &str,
        key: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(
                method.parse().expect("method"),
                format!("{}{path}", self.base),
            )
            .bearer_auth(key)
            .json(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().expect("request");
        let status = response.status().as_u16();
        (
            status,
            serde_json::from_str(&response.text().unwrap_or_default()).unwrap_or(Value::Null),
        )
    }

    /// A request with raw headers and body bytes, for malformed input.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut request = self
            .http
            .request(
                method.parse().expect("method"),
                format!("{}{path}", self.base),
            )
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            headers,
        )
    }

    pub fn get(&self, path: &str, key: &str) -> Value {
        let (status, body) = self.call("GET", path, Some(key), None);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Creates a user with roles, as the admin.
    pub fn create_user(&self, user: &str, roles: &[&str]) {
        let (status, body) = self.call(
            "POST",
            "/v1/users",
            Some(&self.admin_key),
            Some(&serde_json::json!({ "user": user, "roles": roles })),
        );
        assert_eq!(status, 201, "create user {user}: {body}");
    }

    /// Creates an internal key as `key`'s owner and returns (id, secret).
    pub fn create_key(&self, key: &str, name: &str, duration: &str) -> (String, String) {
        let (status, body) = self.call(
            "POST",
            "/v1/api-keys",
            Some(key),
            Some(&serde_json::json!({ "name": name, "duration": duration })),
        );
        assert_eq!(status, 201, "create key {name}: {body}");
        (
            body["id"].as_str().expect("id").to_owned(),
            body["key"].as_str().expect("key").to_owned(),
        )
    }

    /// Gives users their first keys. A new user has no key to call the API with, and the vault
    /// has no way yet for an admin to issue one (see the report), so this stops the server,
    /// opens the data directory directly and creates each key as its owner — after granting
    /// `developer` for the moment it takes when the user cannot manage keys — then restarts.
    /// `age_days` backdates the key's creation (with a 1-day duration, 2 makes it expired).
    pub fn issue_keys_offline(&mut self, keys: &[(&str, u32)]) -> Vec<String> {
        let mut temporary = Vec::new();
        for (user, _) in keys {
            let roles = self.get("/v1/users", &self.admin_key)["users"]
                .as_array()
                .expect("users")
                .iter()
                .find(|u| u["user"] == *user)
                .map(|u| u["permissions"].clone())
                .expect("user exists");
            let can_manage = roles
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p == "manage_user_api_keys"));
            if !can_manage && !temporary.contains(user) {
                let (status, body) = self.call(
                    "PUT",
                    &format!("/v1/users/{user}/roles/developer"),
                    Some(&self.admin_key),
                    None,
                );
                assert_eq!(status, 200, "{body}");
                temporary.push(*user);
            }
        }
        self.stop();
        let secrets = {
            use keyledger_domain::{Actor, KeyDuration, KeyName, UserId};
            use keyledger_vault::{ManualClock, SystemClock, Vault, VaultConfig};
            let master = keyledger_vault::read_master_key(&self.data_dir().join("master.key"))
                .expect("master key");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let mut secrets = Vec::new();
            for (user, age_days) in keys {
                let now = keyledger_vault::Clock::now(&SystemClock);
                let clock = Arc::new(ManualClock::new(
                    now.plus_millis(-i64::from(*age_days) * 86_400_000),
                ));
                let config = VaultConfig {
                    data_dir: self.data_dir(),
                    ..VaultConfig::default()
                };
                let vault = Vault::open(config, &master, clock).expect("open the data directory");
                let duration = if *age_days > 0 {
                    KeyDuration::Days(1)
                } else {
                    KeyDuration::Days(30)
                };
                let actor = Actor::User {
                    user: UserId::parse(user).expect("user"),
                    key: None,
                };
                let name = KeyName::parse(&format!("{user} first key")).expect("name");
                let created = runtime
                    .block_on(vault.create_api_key(actor, name, duration, None))
                    .expect("create key offline");
                secrets.push(created.secret.expose().to_owned());
                drop(vault);
            }
            secrets
        };
        self.launch();
        for user in temporary {
            let (status, body) = self.call(
                "DELETE",
                &format!("/v1/users/{user}/roles/developer"),
                Some(&self.admin_key),
                None,
            );
            assert_eq!(status, 200, "{body}");
        }
        secrets
    }

    /// Runs the CLI against this server with its own config directory; `stdin` is piped.
    pub fn cli(
        &self,
        config_dir: &Path,
        args: &[&str],
        stdin: &str,
        env: &[(&str, &str)],
    ) -> CliRun {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env_clear()
            .env("KEYLEDGER_CONFIG_DIR", config_dir)
            .env("KEYLEDGER_ENDPOINT", &self.base);
        run_cli(command, stdin, env)
    }
}

/// A tokio runtime for the test servers a test runs beside the binary (S3, STS, DNAnexus).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Creates `user` with the `developer` role (stores external keys, imports) through the API and
/// returns their first API key.
pub fn developer_key(server: &Server, user: &str) -> String {
    server.create_user(user, &["developer"]);
    let (status, body) = server.call(
        "POST",
        &format!("/v1/users/{user}/api-keys"),
        Some(&server.admin_key),
        Some(&serde_json::json!({ "name": "first", "duration": "7d" })),
    );
    assert_eq!(status, 201, "{body}");
    body["key"].as_str().unwrap().to_owned()
}

/// Runs a prepared `keyledger` command with `stdin` piped in and `env` added, and collects its
/// exit code and output.
pub fn run_cli(mut command: Command, stdin: &str, env: &[(&str, &str)]) -> CliRun {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("run keyledger");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    let output = child.wait_with_output().expect("keyledger output");
    CliRun {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Debug)]
pub struct CliRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {self:?}"))
    }
}

/// The first `kl_…` key in a text.
pub fn find_key(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .find(|word| word.starts_with("kl_") && word.len() == 41)
        .map(str::to_owned)
}

/// The files below `dir` that hold any of `needles`, each as "PATH holds NEEDLE": the canary
/// scan of a data directory.
pub fn files_containing(dir: &Path, needles: &[&[u8]]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for needle in needles {
            if bytes.windows(needle.len()).any(|w| w == *needle) {
                let needle = String::from_utf8_lossy(needle);
                found.push(format!("{} holds {needle}", path.display()));
            }
        }
    }
    found
}
