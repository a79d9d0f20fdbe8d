//! The documentation's commands, run as written: the `sh` blocks of README.md's quick start and
//! of docs/cli.md's example session, against a fresh `keyledger serve`.
//!
//! Each command line goes to `bash` unchanged except for what cannot be the same on a test
//! machine, and each must exit 0:
//! - `make run` (with any `VAR=value` before it) starts the server, or restarts it on the same
//!   data directory, on a free port; the commands find it through `KEYLEDGER_ENDPOINT`, and
//!   `http://127.0.0.1:8080` in a command becomes its address;
//! - `cargo run --bin keyledger --` and `keyledger` are the binary under test (a `cargo` shim and a
//!   `keyledger` link first on `PATH`);
//! - AWS S3, DNAnexus and NATS are the test kit's servers: the server gets their endpoints the
//!   way the other tests pass them, `nats://127.0.0.1:4222` becomes the private nats-server,
//!   `project-xxxx` the emulator's project; the bucket and project hold matching files;
//! - prompted secrets come on standard input (the admin key for `login`, the AWS secret for
//!   `external add aws`, the DNAnexus token for `external add dnanexus`), and `$KEY` is the
//!   admin key;
//! - a command with `--follow` runs in the background until the end; it must have started
//!   following, and must have printed the events that later commands caused.
//!
//! The commands run in the server's folder, so `./data` is its data directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use keyledger_testkit::dnanexus::{Content, DnanexusEmulator, Seed};
use keyledger_testkit::nats::NatsServer;
use keyledger_testkit::s3::S3Server;

use crate::support::{BIN, Server, runtime};

/// AWS's documented example credentials, as the README shows them.
const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const DX_TOKEN: &str = "dxReadmeToken0123456789abcdef";

#[test]
fn the_readme_quick_start_runs_as_written() {
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    let commands = sh_commands(&readme, "## Quick start");
    assert!(
        commands.len() >= 15,
        "the quick start lost commands: {commands:#?}"
    );
    let mut session = Session::new();
    for command in &commands {
        session.run(command);
    }
    session.finish("\"name\":\"ci\"");
    // What the quick start promises: the files, verified, under data/samples/<user>/<batch>/.
    let samples = session.server().data_dir().join("samples").join("admin");
    let found = files_under(&samples);
    // Paths are kept relative to the prefix or folder searched.
    for expected in ["/run-1/cells.h5ad", "/run-2/cells.h5ad", "/a.sf", "/b.sf"] {
        assert!(
            found.iter().any(|f| f.ends_with(expected)),
            "{expected} not ingested: {found:?}"
        );
    }
    assert_eq!(
        found
            .iter()
            .filter(|f| f.ends_with(".h5ad") || f.ends_with(".sf"))
            .count(),
        4,
        "{found:?}"
    );
    assert!(
        !found
            .iter()
            .any(|f| f.ends_with("notes.txt") || f.ends_with(".log")),
        "{found:?}"
    );
}

#[test]
fn the_example_session_of_docs_cli_runs_as_written() {
    let doc = std::fs::read_to_string(repo_file("docs/cli.md")).unwrap();
    let commands = sh_commands(&doc, "## Example session");
    assert!(
        commands.len() >= 10,
        "the example session lost commands: {commands:#?}"
    );
    let mut session = Session::new();
    for command in &commands {
        session.run(command);
    }
    session.finish("\"name\":\"deploy\"");
}

#[test]
fn a_failing_command_in_a_block_fails_the_run() {
    // The runner itself: a mistyped command must not pass unnoticed.
    let text = "## Quick start\n\n```sh\nmake run\ncargo run --bin keyledger -- keys create --nmae laptop\n```\n";
    let commands = sh_commands(text, "## Quick start");
    assert_eq!(commands.len(), 2);
    let mut session = Session::new();
    session.run(&commands[0]);
    let outcome = session.try_run(&commands[1]);
    assert!(outcome.is_err(), "{outcome:?}");
}

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// The command lines of the `sh` blocks of one `##` section, continuation lines joined.
fn sh_commands(markdown: &str, section: &str) -> Vec<String> {
    let start = markdown
        .find(section)
        .unwrap_or_else(|| panic!("no `{section}` section"));
    let rest = &markdown[start + section.len()..];
    let body = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in body.lines() {
        let trimmed = line.trim_end();
        if trimmed.starts_with("```") {
            in_block = !in_block && trimmed == "```sh";
            continue;
        }
        if !in_block || (pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#'))) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                commands.push(std::mem::take(&mut pending));
            }
        }
    }
    commands
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// The servers the documentation's commands talk to, and what they started in the background.
struct Session {
    _runtime: tokio::runtime::Runtime,
    _s3: S3Server,
    _dnanexus: DnanexusEmulator,
    nats: NatsServer,
    project: String,
    server: Option<Server>,
    /// Test-only server settings: where the providers are.
    provider_env: Vec<(String, String)>,
    shims: tempfile::TempDir,
    followers: Vec<Follower>,
    ran: usize,
}

/// A `--follow` command running in the background, and what it printed so far.
struct Follower {
    command: String,
    child: Child,
    stdout: Arc<Mutex<String>>,
}

impl Session {
    fn new() -> Session {
        let runtime = runtime();
        let s3 = runtime
            .block_on(S3Server::start(ACCESS_KEY_ID, SECRET))
            .unwrap();
        runtime.block_on(s3.create_bucket("lab-runs")).unwrap();
        let objects = [
            ("2026/run-1/cells.h5ad", "h5ad one"),
            ("2026/run-2/cells.h5ad", "h5ad two"),
            ("2026/run-2/notes.txt", "not a sample"),
            ("2025/old/cells.h5ad", "outside the prefix"),
        ]
        .map(|(key, body)| (key.to_owned(), Bytes::from(body)));
        assert_eq!(
            runtime
                .block_on(s3.put_objects("lab-runs", objects))
                .unwrap(),
            4
        );
        let mut seed = Seed::new();
        let user = seed.add_user("lab");
        seed.add_token(&user, DX_TOKEN);
        let project = seed.add_project("rnaseq", &user);
        for (path, bytes) in [
            ("/quant/a.sf", 20_000),
            ("/quant/b.sf", 30_000),
            ("/quant/a.log", 100),
        ] {
            let content: Vec<u8> = (0..bytes).map(|b| (b * 7) as u8).collect();
            seed.add_file(&project, path, Content::Bytes(content), 8 * 1024);
        }
        let dnanexus = runtime.block_on(DnanexusEmulator::start(seed)).unwrap();
        let provider_env = vec![
            ("KEYLEDGER_INGEST_S3_ENDPOINT".to_owned(), s3.endpoint()),
            (
                "KEYLEDGER_INGEST_DNANEXUS_API_URL".to_owned(),
                dnanexus.endpoint(),
            ),
            ("KEYLEDGER_INGEST_MAX_ATTEMPTS".to_owned(), "3".to_owned()),
        ];
        let shims = tempfile::tempdir().unwrap();
        let cargo = shims.path().join("cargo");
        std::fs::write(
            &cargo,
            format!(
                "#!/bin/sh\n# `cargo run --bin keyledger --` is the binary under test.\n\
                 if [ \"$1 $2 $3 $4\" = \"run --bin keyledger --\" ]; then shift 4; exec '{BIN}' \"$@\"; fi\n\
                 echo \"cargo shim: only 'cargo run --bin keyledger --' is mapped: $*\" >&2\nexit 127\n"
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(BIN, shims.path().join("keyledger")).unwrap();
        Session {
            _runtime: runtime,
            _s3: s3,
            _dnanexus: dnanexus,
            nats: NatsServer::start().expect("nats-server"),
            project,
            server: None,
            provider_env,
            shims,
            followers: Vec::new(),
            ran: 0,
        }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("`make run` came first")
    }

    /// Runs one documented command; panics with its output when it fails.
    fn run(&mut self, command: &str) {
        if let Err(failure) = self.try_run(command) {
            panic!("{failure}");
        }
    }

    fn try_run(&mut self, command: &str) -> Result<(), String> {
        self.ran += 1;
        if let Some(assignments) = make_run(command) {
            self.start_server(&assignments);
            return Ok(());
        }
        let mapped = self.map(command);
        if mapped.contains("--follow") {
            self.follow(command, &mapped);
            return Ok(());
        }
        let output = self
            .bash(&mapped)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                if let Some(mut input) = child.stdin.take() {
                    use std::io::Write;
                    let _ = input.write_all(self.prompted(command).as_bytes());
                }
                child.wait_with_output()
            })
            .expect("run bash");
        if output.status.success() {
            return Ok(());
        }
        Err(format!(
            "documented command failed ({}):\n  {command}\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }

    /// Checks that every background follower printed the event `expected` names (one caused
    /// after it started), then stops them.
    fn finish(&mut self, expected: &str) {
        for mut follower in std::mem::take(&mut self.followers) {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let printed = follower.stdout.lock().unwrap().clone();
                if printed
                    .lines()
                    .any(|l| l.contains("ApiKeyCreated") && l.contains(expected))
                {
                    break;
                }
                if Instant::now() > deadline || follower.child.try_wait().unwrap().is_some() {
                    let _ = follower.child.kill();
                    panic!(
                        "`{}` did not print the new event {expected}; it printed:\n{printed}",
                        follower.command
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = follower.child.kill();
            let _ = follower.child.wait();
        }
    }

    fn start_server(&mut self, assignments: &[(String, String)]) {
        let mut env: Vec<(String, String)> = self.provider_env.clone();
        for (name, value) in assignments {
            env.push((name.clone(), self.map(value)));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        match &mut self.server {
            Some(server) => server.restart_with(&env),
            None => self.server = Some(Server::start_with(&env)),
        }
    }

    fn map(&self, text: &str) -> String {
        let base = self
            .server
            .as_ref()
            .map(|s| s.base.clone())
            .unwrap_or_default();
        text.replace("http://127.0.0.1:8080", &base)
            .replace("nats://127.0.0.1:4222", &self.nats.url())
            .replace("project-xxxx", &self.project)
    }

    /// What a person would type at the command's prompt.
    fn prompted(&self, command: &str) -> String {
        if command.contains(" login") {
            format!("{}\n", self.server().admin_key)
        } else if command.contains("external add aws") {
            format!("{SECRET}\n")
        } else if command.contains("external add dnanexus") {
            format!("{DX_TOKEN}\n")
        } else {
            String::new()
        }
    }

    fn bash(&self, command: &str) -> Command {
        let server = self.server();
        let mut bash = Command::new("bash");
        bash.args(["-o", "pipefail", "-c", command])
            .current_dir(server.dir.path())
            .env_clear()
            .env(
                "PATH",
                format!(
                    "{}:/usr/local/bin:/usr/bin:/bin",
                    self.shims.path().display()
                ),
            )
            .env("HOME", server.dir.path())
            .env("KEYLEDGER_CONFIG_DIR", server.dir.path().join("config"))
            .env("KEYLEDGER_ENDPOINT", &server.base)
            .env("KEY", &server.admin_key);
        bash
    }

    /// Starts a `--follow` command and waits (bounded) until it says it follows.
    fn follow(&mut self, command: &str, mapped: &str) {
        let mut child = self
            .bash(mapped)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run bash");
        let stdout = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stdout);
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut all = sink.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        let (status_tx, status_rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = status_tx.send(line);
            }
        });
        // Bounded: notes ("waiting: …" while the relay creates the stream), then "following".
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match status_rx.recv_timeout(left) {
                Ok(line) if line.starts_with("following new events") => break,
                Ok(line) if line.starts_with("waiting: ") => {}
                other => {
                    let _ = child.kill();
                    panic!("`{command}` did not start following: {other:?}");
                }
            }
        }
        self.followers.push(Follower {
            command: command.to_owned(),
            child,
            stdout,
        });
    }
}

/// `[VAR=value …] make run [# comment]`: the variables, when the command starts the server.
fn make_run(command: &str) -> Option<Vec<(String, String)>> {
    let command = command.split(" #").next().unwrap_or("").trim();
    let words: Vec<&str> = command.split_whitespace().collect();
    let position = words.windows(2).position(|w| w == ["make", "run"])?;
    if position + 2 != words.len() {
        return None;
    }
    words[..position]
        .iter()
        .map(|word| {
            word.split_once('=')
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
        })
        .collect()
}
