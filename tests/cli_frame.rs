//! The CLI's frame through the real binary: errors in one line, profiles, shell completions,
//! man pages, and `events tail` against a private nats-server.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use keyledger_testkit::nats::NatsServer;
use serde_json::{Value, json};

use crate::support::{BIN, CliRun, Server, run_cli};

/// Runs the binary with only the variables given (no endpoint unless passed), in `dir`.
fn keyledger(dir: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> CliRun {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("KEYLEDGER_CONFIG_DIR", dir.join("config"))
        .env("HOME", dir);
    run_cli(command, stdin, env)
}

fn assert_one_error_line(run: &CliRun, code: i32, contains: &str) {
    assert_eq!(run.code, code, "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr must be exactly one line: {run:?}");
    assert!(lines[0].starts_with("error: "), "{run:?}");
    assert!(!lines[0].starts_with("error: error:"), "{run:?}");
    assert!(
        lines[0].contains(contains),
        "expected `{contains}`: {run:?}"
    );
}

/// Arguments, environment, the exit code expected, and a part of the error line.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], i32, &'a str);

#[test]
fn every_error_is_one_line_on_standard_error() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let base = server.base.as_str();
    let admin = server.admin_key.as_str();
    let with_key = [("KEYLEDGER_ENDPOINT", base), ("KEYLEDGER_API_KEY", admin)];
    let cases: &[Case] = &[
        // clap's usage errors: message, tip and usage in one line.
        (
            &["keys", "crate", "x"],
            &[],
            1,
            "a similar subcommand exists: 'create'",
        ),
        (
            &["keys", "create", "x", "--nmae", "y"],
            &[],
            1,
            "usage: keyledger keys create",
        ),
        (&["keys"], &[("NOTHING", "")], 1, ""),
        // Refusals of the CLI itself, of the server, and of an unreachable server.
        (
            &["--endpoint", "ftp://x", "keys", "list"],
            &[],
            1,
            "must start with http://",
        ),
        (
            &["keys", "list"],
            &[("KEYLEDGER_ENDPOINT", base)],
            2,
            "not logged in",
        ),
        (
            &["ingest", "status", "ing_0000000000000000"],
            &with_key,
            3,
            "",
        ),
        (
            &["keys", "create", "x", "--duration", "3w"],
            &with_key,
            1,
            "duration",
        ),
        (
            &["keys", "list"],
            &[
                ("KEYLEDGER_ENDPOINT", "http://127.0.0.1:9"),
                ("KEYLEDGER_API_KEY", admin),
            ],
            5,
            "cannot reach the keyledger server",
        ),
        (
            &[
                "events",
                "tail",
                "--nats-url",
                "nats://127.0.0.1:9",
                "--subject",
                "api_key.creatd",
            ],
            &[],
            1,
            "api_key.created",
        ),
    ];
    for (args, env, code, contains) in cases {
        let run = keyledger(dir.path(), args, "", env);
        if args == &["keys"] {
            // A command group alone prints its help (like git), not an error.
            assert_eq!(run.code, 1, "{run:?}");
            assert!(run.stderr.contains("Commands:"), "{run:?}");
            continue;
        }
        assert_one_error_line(&run, *code, contains);
    }
}

#[test]
fn a_failed_ingestion_reports_its_error_once() {
    let server = Server::start();
    let (status, body) = server.call(
        "POST",
        "/v1/external-keys",
        Some(&server.admin_key),
        Some(
            &json!({ "label": "lab", "provider": "aws", "duration": "30d",
            "aws": { "access_key_id": "AKIAIOSFODNN7EXAMPLE",
                     "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                     "region": "eu-west-2" } }),
        ),
    );
    assert_eq!(status, 201, "{body}");
    let dir = tempfile::tempdir().unwrap();
    // The test server's S3 endpoint is a closed port: the job fails.
    let run = server.cli(
        dir.path(),
        &["ingest", "s3", "--bucket", "lab-runs", "--pattern", "x"],
        "",
        &[("KEYLEDGER_API_KEY", &server.admin_key)],
    );
    assert_ne!(run.code, 0, "{run:?}");
    let all = format!("{}{}", run.stdout, run.stderr);
    let error_lines = all.lines().filter(|l| l.trim_start().starts_with("error:"));
    assert_eq!(error_lines.count(), 1, "the error printed once: {run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
}

#[test]
fn profiles_keep_several_endpoints_and_say_when_a_saved_key_is_gone() {
    let server = Server::start();
    let base = server.base.as_str();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    // The single-profile file of earlier versions still works, as the profile `default`.
    let old = format!("endpoint = \"{base}\"\nkey = \"{}\"\n", server.admin_key);
    std::fs::write(config.join("credentials.toml"), old).unwrap();
    std::fs::set_permissions(
        config.join("credentials.toml"),
        PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let whoami = keyledger(dir.path(), &["whoami", "--json"], "", &[]);
    assert_eq!(whoami.code, 0, "{whoami:?}");
    assert_eq!(whoami.json()["user"], "admin");

    // A second profile, saved by login with its own endpoint.
    let (second_id, second_key) = server.create_key(&server.admin_key, "second", "30d");
    let login = keyledger(
        dir.path(),
        &["login", "--profile", "ci", "--endpoint", base],
        &format!("{second_key}\n"),
        &[],
    );
    assert_eq!(login.code, 0, "{login:?}");
    assert!(login.stdout.contains("profile ci"), "{login:?}");
    assert!(login.stdout.contains("profiles use ci"), "{login:?}");
    let path = config.join("credentials.toml");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("[profiles.default]") && text.contains("[profiles.ci]"),
        "{text}"
    );

    let list = keyledger(dir.path(), &["profiles"], "", &[]);
    assert_eq!(list.code, 0, "{list:?}");
    let current: Vec<&str> = list.stdout.lines().filter(|l| l.starts_with('*')).collect();
    assert_eq!(current.len(), 1, "{list:?}");
    assert!(current[0].contains("default"), "{list:?}");
    assert!(
        !list.stdout.contains(&second_key),
        "no key in the listing: {list:?}"
    );

    let listed = keyledger(dir.path(), &["profiles", "--json"], "", &[]);
    insta::with_settings!({ prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_json_snapshot!("cli_profiles", listed.json(), {
            ".profiles[].endpoint" => "[endpoint]",
        });
    });

    let key_of = |run: &CliRun| run.json()["key_id"].as_str().unwrap().to_owned();
    let by_flag = keyledger(
        dir.path(),
        &["--profile", "ci", "whoami", "--json"],
        "",
        &[],
    );
    assert_eq!(key_of(&by_flag), second_id, "{by_flag:?}");
    let by_env = keyledger(
        dir.path(),
        &["whoami", "--json"],
        "",
        &[("KEYLEDGER_PROFILE", "ci")],
    );
    assert_eq!(key_of(&by_env), second_id, "{by_env:?}");
    let default = keyledger(dir.path(), &["whoami", "--json"], "", &[]);
    assert_ne!(key_of(&default), second_id, "{default:?}");

    let switch = keyledger(dir.path(), &["profiles", "use", "ci"], "", &[]);
    assert_eq!(switch.code, 0, "{switch:?}");
    let now = keyledger(dir.path(), &["whoami", "--json"], "", &[]);
    assert_eq!(key_of(&now), second_id, "{now:?}");

    let unknown = keyledger(dir.path(), &["--profile", "nope", "whoami"], "", &[]);
    assert_one_error_line(&unknown, 2, "no saved profile `nope` (saved: ci, default)");
    let unknown_use = keyledger(dir.path(), &["profiles", "use", "nope"], "", &[]);
    assert_one_error_line(&unknown_use, 3, "no saved profile `nope`");

    // The saved key is deleted elsewhere (the console, another machine): say so, not "unknown key".
    let (status, body) = server.call(
        "DELETE",
        &format!("/v1/api-keys/{second_id}"),
        Some(&server.admin_key),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let gone = keyledger(dir.path(), &["keys", "list"], "", &[]);
    assert_one_error_line(
        &gone,
        2,
        &format!("your saved key for profile ci (endpoint {base}) was deleted"),
    );
    assert!(
        gone.stderr.contains("keyledger login --profile ci"),
        "{gone:?}"
    );

    let logout = keyledger(dir.path(), &["logout"], "", &[]);
    assert_eq!(logout.code, 0, "{logout:?}");
    let after = keyledger(dir.path(), &["whoami", "--json"], "", &[]);
    assert_eq!(
        after.code, 0,
        "the remaining profile becomes current: {after:?}"
    );
    assert_eq!(after.json()["user"], "admin");
}

#[test]
fn bash_completes_subcommands_from_the_generated_script() {
    let dir = tempfile::tempdir().unwrap();
    let bash = keyledger(dir.path(), &["completions", "bash"], "", &[]);
    assert_eq!(bash.code, 0, "{bash:?}");
    let script = dir.path().join("keyledger.bash");
    std::fs::write(&script, &bash.stdout).unwrap();
    let complete = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let program = format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; _keyledger keyledger {} {}; echo \"${{COMPREPLY[@]}}\"",
            script.display(),
            line,
            words.len() - 1,
            words[words.len() - 1],
            words[words.len() - 2],
        );
        let output = Command::new("bash")
            .arg("-c")
            .arg(program)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    assert_eq!(complete("keyledger ke"), "keys");
    assert!(
        complete("keyledger keys c")
            .split(' ')
            .any(|w| w == "create")
    );
    assert!(complete("keyledger pro").contains("profiles"));
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let run = keyledger(dir.path(), &["completions", shell], "", &[]);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(
            run.stdout.contains("keyledger") && run.stdout.contains("profiles"),
            "{shell}"
        );
    }
    let bad = keyledger(dir.path(), &["completions", "tcsh"], "", &[]);
    assert_one_error_line(&bad, 1, "tcsh");
}

#[test]
fn man_pages_render_for_the_program_and_each_command() {
    let dir = tempfile::tempdir().unwrap();
    let main = keyledger(dir.path(), &["man"], "", &[]);
    assert_eq!(main.code, 0, "{main:?}");
    assert!(main.stdout.contains(".TH keyledger 1"), "{main:?}");
    let out = dir.path().join("man");
    let run = keyledger(
        dir.path(),
        &["man", "--out", out.to_str().unwrap()],
        "",
        &[],
    );
    assert_eq!(run.code, 0, "{run:?}");
    for page in [
        "keyledger.1",
        "keyledger-keys-create.1",
        "keyledger-events-tail.1",
        "keyledger-profiles-use.1",
    ] {
        let path = out.join(page);
        let roff = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{page} written"));
        assert!(
            roff.contains(".SH NAME") && roff.contains(".SH SYNOPSIS"),
            "{page}"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o644,
            "{page} readable by all, as installed man pages are"
        );
    }
    // Rendered by man(1) itself when it is installed.
    let man = Command::new("man")
        .args(["-P", "cat", "-l"])
        .arg(out.join("keyledger-keys-create.1"))
        .env("MANWIDTH", "100")
        .output();
    if let Ok(man) = man {
        let text = String::from_utf8_lossy(&man.stdout);
        assert!(man.status.success(), "{man:?}");
        assert!(
            text.contains("keyledger-keys-create") && text.contains("SYNOPSIS"),
            "{text}"
        );
        assert!(text.contains("--duration"), "{text}");
    }
}

/// A server publishing to a private nats-server, with `keys` internal keys created after start.
fn published(keys: usize) -> (NatsServer, Server, Vec<Value>) {
    let nats = NatsServer::start().expect("nats-server");
    let url = nats.url();
    // No `ApiKeyUsed` flush during the test: the log's events are exactly the ones counted here.
    let server = Server::start_with(&[
        ("KEYLEDGER_NATS_URL", &url),
        ("KEYLEDGER_VAULT_USAGE_FLUSH_INTERVAL_SECS", "86400"),
    ]);
    for i in 0..keys {
        server.create_key(&server.admin_key, &format!("k{i}"), "30d");
    }
    let events = log_events(&server);
    // Bounded wait until the relay has published every event of the log.
    let dir = tempfile::tempdir().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = keyledger(
            dir.path(),
            &[
                "events",
                "tail",
                "--from",
                "0",
                "--json",
                "--nats-url",
                &url,
            ],
            "",
            &[],
        );
        if run.code == 0 && run.stdout.lines().count() == events.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relay never caught up: {run:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (nats, server, events)
}

/// Every event of the log, from the audit route.
fn log_events(server: &Server) -> Vec<Value> {
    let page = server.get("/v1/events?from=1&limit=10000", &server.admin_key);
    page["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line.get("event").unwrap_or(line).clone())
        .collect()
}

fn seqs(run: &CliRun) -> Vec<u64> {
    run.stdout
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn events_tail_prints_the_last_ten_or_n_or_the_history_and_refuses_unknown_subjects() {
    let (nats, _server, events) = published(14);
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let head = events.len() as u64;
    assert!(head > 14);
    let tail = |extra: &[&str]| {
        let mut args = vec!["events", "tail", "--json", "--nats-url", &url];
        args.extend_from_slice(extra);
        keyledger(dir.path(), &args, "", &[])
    };
    let last_ten = tail(&[]);
    assert_eq!(last_ten.code, 0, "{last_ten:?}");
    assert_eq!(seqs(&last_ten), ((head - 9)..=head).collect::<Vec<_>>());
    let three = tail(&["-n", "3"]);
    assert_eq!(seqs(&three), ((head - 2)..=head).collect::<Vec<_>>());
    let everything = tail(&["--from", "0"]);
    assert_eq!(seqs(&everything), (1..=head).collect::<Vec<_>>());
    let from_seq = tail(&["--from", "5"]);
    assert_eq!(seqs(&from_seq), (5..=head).collect::<Vec<_>>());

    // Filters: a type, an aggregate, a pattern; the last n of the matching events.
    let created = tail(&["--subject", "ApiKeyCreated", "-n", "100"]);
    assert_eq!(created.code, 0, "{created:?}");
    let types: Vec<String> = created
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let expected = events
        .iter()
        .filter(|e| e["type"] == "ApiKeyCreated")
        .count();
    assert_eq!(types.len(), expected, "{created:?}");
    assert!(types.iter().all(|t| t == "ApiKeyCreated"));
    let two = tail(&["--subject", "api_key", "-n", "2"]);
    assert_eq!(seqs(&two), vec![head - 1, head], "{two:?}");
    let pattern = tail(&["--subject", "keyledger.events.api_key.*", "-n", "1"]);
    assert_eq!(seqs(&pattern), vec![head], "{pattern:?}");

    for typo in ["api_key.creatd", "ApiKeyCreate", "apikey.*"] {
        let refused = tail(&["--subject", typo]);
        assert_one_error_line(&refused, 1, "the subjects are: ");
        assert!(
            refused.stderr.contains("external_key.deleted"),
            "{refused:?}"
        );
    }
    let both = tail(&["--from", "0", "-n", "3"]);
    assert_one_error_line(&both, 1, "cannot be used with");
}

#[test]
fn events_tail_follow_prints_only_new_events_and_ends_quietly_when_the_pipe_closes() {
    let (nats, server, events) = published(3);
    let url = nats.url();
    let head = events.len() as u64;
    let mut child = Command::new(BIN)
        .args(["events", "tail", "--follow", "--json", "--nats-url", &url])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status_tx, status_rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = status_tx.send(line);
        }
    });
    let (line_tx, line_rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    // Reads one event, then closes its end of the pipe, as `| head -n 1` does.
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = line_tx.send(line);
    });
    let ready = status_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("a status line");
    assert!(
        ready.starts_with("following new events on KEYLEDGER"),
        "{ready}"
    );

    let (new_id, _) = server.create_key(&server.admin_key, "after-follow", "30d");
    let line = line_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the new event");
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["type"], "ApiKeyCreated", "{event}");
    assert!(
        event["seq"].as_u64().unwrap() > head,
        "only new events: {event}"
    );
    assert_eq!(event["data"]["key"], new_id, "{event}");

    // The next event finds the pipe closed: the command ends, successfully and silently.
    server.create_key(&server.admin_key, "after-close", "30d");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("events tail --follow did not end after its reader closed the pipe");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    let rest: Vec<String> = status_rx.try_iter().collect();
    assert!(rest.is_empty(), "nothing more on stderr: {rest:?}");
}

#[test]
fn a_saved_key_that_expired_says_so_and_names_its_profile() {
    let mut server = Server::start();
    server.create_user("eve", &["member"]);
    // Created two days ago with a one-day duration: expired.
    let expired = server.issue_keys_offline(&[("eve", 2)]).remove(0);
    let base = server.base.clone();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    let file = format!(
        "current = \"lab\"\n\n[profiles.lab]\nendpoint = \"{base}\"\nkey = \"{expired}\"\n"
    );
    std::fs::write(config.join("credentials.toml"), file).unwrap();
    let run = keyledger(dir.path(), &["whoami"], "", &[]);
    assert_one_error_line(
        &run,
        2,
        &format!(
            "your saved key for profile lab (endpoint {base}) expired; run `keyledger login --profile lab`"
        ),
    );
    assert!(!run.stderr.contains(&expired), "{run:?}");
    // A key from the environment is not a saved one: the server's own words.
    let from_env = keyledger(
        dir.path(),
        &["whoami"],
        "",
        &[
            ("KEYLEDGER_API_KEY", &expired),
            ("KEYLEDGER_ENDPOINT", &base),
        ],
    );
    assert_one_error_line(&from_env, 2, "key expired");
}

#[test]
fn a_closed_pipe_ends_any_command_quietly() {
    let server = Server::start();
    for i in 0..3 {
        server.create_key(&server.admin_key, &format!("k{i}"), "30d");
    }
    for args in [
        &["keys", "list"][..],
        &["keys", "list", "--json"],
        &["completions", "bash"],
    ] {
        let mut child = Command::new(BIN)
            .args(args)
            .env_clear()
            .env("KEYLEDGER_ENDPOINT", &server.base)
            .env("KEYLEDGER_API_KEY", &server.admin_key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // No reader left before the command prints: its first write finds the pipe closed.
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{args:?}: {output:?}");
        assert!(output.stderr.is_empty(), "{args:?}: {output:?}");
    }
}
