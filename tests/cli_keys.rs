//! `keyledger keys` and `keyledger external` as people use them: names that identify a key,
//! deletions that ask first, AWS profiles as `aws configure` writes them, lists that filter,
//! sort and cut, times with their zone, and `external verify` that fails when the key does not
//! work. Each test runs the real binary against a real server (and the testkit's S3 server).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use keyledger_testkit::s3::S3Server;
use keyledger_testkit::sts::StsServer;
use serde_json::Value;

use crate::support::{BIN, CliRun, Server};

const ACCESS_KEY_ID: &str = "AKIAKEYSTEST00000001";
const SECRET: &str = "keysTestSecret0123456789abcdefghijklmnOP";
const WRONG_SECRET: &str = "wrongTestSecret0123456789abcdefghijklmnO";

fn ids_of(list: &Value) -> Vec<String> {
    list["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["id"].as_str().expect("id").to_owned())
        .collect()
}

fn names_of(list: &Value, field: &str) -> Vec<String> {
    list["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k[field].as_str().expect("name").to_owned())
        .collect()
}

fn assert_one_error_line(run: &CliRun, code: i32, mentions: &[&str]) {
    assert_eq!(run.code, code, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(run.stderr.starts_with("error: "), "{run:?}");
    for text in mentions {
        assert!(run.stderr.contains(text), "{text:?} missing: {run:?}");
    }
}

/// Runs the CLI with standard input on a pseudo-terminal (util-linux `script`), typing `typed`:
/// what a person at a terminal sees and answers. Standard output and error arrive merged.
fn on_terminal(server: &Server, config: &Path, args: &[&str], typed: &str, key: &str) -> CliRun {
    let quoted: Vec<String> = std::iter::once(BIN)
        .chain(args.iter().copied())
        .map(|arg| format!("'{}'", arg.replace('\'', r"'\''")))
        .collect();
    let mut child = Command::new("script")
        .args([
            "--quiet",
            "--return",
            "--command",
            &quoted.join(" "),
            "/dev/null",
        ])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("KEYLEDGER_CONFIG_DIR", config)
        .env("KEYLEDGER_ENDPOINT", &server.base)
        .env("KEYLEDGER_API_KEY", key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs the CLI on a pseudo-terminal");
    {
        use std::io::Write;
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(typed.as_bytes()).expect("type the answer");
    }
    let output = child.wait_with_output().expect("script output");
    CliRun {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn a_name_identifies_one_active_key_and_deleting_asks_first() {
    let mut server = Server::start();
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config");
    let admin = server.admin_key.clone();
    let env = [("KEYLEDGER_API_KEY", admin.as_str())];
    let cli = |server: &Server, args: &[&str]| server.cli(&config, args, "", &env);

    // A second active key with the same name is refused, naming the first one.
    let run = cli(&server, &["keys", "create", "laptop", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let laptop = run.json();
    let run = cli(&server, &["keys", "create", "--name", "laptop"]);
    assert_one_error_line(
        &run,
        4,
        &[
            "active key with this name",
            laptop["id"].as_str().unwrap(),
            laptop["hint"].as_str().unwrap(),
        ],
    );
    let (status, body) = server.call(
        "POST",
        "/v1/api-keys",
        Some(&admin),
        Some(&serde_json::json!({ "name": "laptop", "duration": "7d" })),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("key_name_taken")),
        "{body}"
    );
    // The list shows ids, and times with their zone.
    let run = cli(&server, &["keys", "list"]);
    assert!(run.stdout.starts_with("ID "), "{run:?}");
    let row = run
        .stdout
        .lines()
        .find(|line| line.contains("laptop"))
        .unwrap();
    assert!(row.contains(laptop["id"].as_str().unwrap()), "{row}");
    assert!(row.contains(" UTC"), "{row}");

    // Without a terminal, a deletion needs --yes; nothing is deleted.
    let run = cli(&server, &["keys", "delete", "laptop"]);
    assert_one_error_line(&run, 1, &["--yes", "not a terminal"]);
    assert!(
        ids_of(&cli(&server, &["keys", "list", "--json"]).json())
            .contains(&laptop["id"].as_str().unwrap().to_owned())
    );
    // On a terminal it asks; anything but yes keeps the key.
    let run = on_terminal(
        &server,
        &config,
        &["keys", "delete", "laptop"],
        "n\n",
        &admin,
    );
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("Delete key ")
            && run.stdout.contains("\"laptop\"")
            && run.stdout.contains("This cannot be undone [y/N]"),
        "{run:?}"
    );
    assert!(
        ids_of(&cli(&server, &["keys", "list", "--json"]).json())
            .contains(&laptop["id"].as_str().unwrap().to_owned())
    );
    let run = on_terminal(
        &server,
        &config,
        &["keys", "delete", "laptop"],
        "y\n",
        &admin,
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("Deleted 1 key"), "{run:?}");
    assert!(
        !ids_of(&cli(&server, &["keys", "list", "--json"]).json())
            .contains(&laptop["id"].as_str().unwrap().to_owned())
    );
    // Its name is free again, and names a key to roll.
    assert_eq!(cli(&server, &["keys", "create", "laptop"]).code, 0);
    let run = cli(&server, &["keys", "roll", "laptop", "--grace", "1h"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("\"laptop\"") && run.stdout.contains(" UTC."),
        "{run:?}"
    );

    // Names and ids mix; unknown ones are "not found" before anything is asked or deleted.
    let ci = cli(&server, &["keys", "create", "ci", "--json"]).json();
    let run = cli(
        &server,
        &["keys", "delete", "ci", "nothing-by-this-name", "--yes"],
    );
    assert_one_error_line(&run, 3, &["`nothing-by-this-name` was not found"]);
    let run = cli(
        &server,
        &["keys", "delete", ci["id"].as_str().unwrap(), "laptop", "-y"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("Deleted 2 keys"), "{run:?}");

    // An expired key keeps its name in the list, so a name can be shared: deleting by that name
    // is refused, naming both ids.
    let expired = server.issue_keys_offline(&[("admin", 2)]);
    assert_eq!(expired.len(), 1);
    let run = cli(&server, &["keys", "create", "admin first key", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let active = run.json();
    let run = cli(&server, &["keys", "delete", "admin first key", "--yes"]);
    assert_one_error_line(
        &run,
        1,
        &["names 2 of your keys", active["id"].as_str().unwrap()],
    );
    let expired_only = cli(&server, &["keys", "list", "--status", "expired", "--json"]).json();
    let expired_ids = ids_of(&expired_only);
    assert_eq!(expired_ids.len(), 1, "{expired_only}");
    let run = cli(&server, &["keys", "delete", &expired_ids[0], "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");

    // Deleting the key this CLI uses warns that a new login will be needed.
    let me = cli(&server, &["whoami", "--json"]).json();
    let current = me["key_id"].as_str().unwrap();
    let run = cli(&server, &["keys", "delete", current, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.starts_with("warning: ")
            && run.stderr.contains(current)
            && run.stderr.contains("keyledger login"),
        "{run:?}"
    );
    assert_eq!(cli(&server, &["keys", "list"]).code, 2);
}

#[test]
fn lists_filter_sort_and_cut_alike_in_tables_and_json() {
    let server = Server::start();
    let home = tempfile::tempdir().unwrap();
    let env = [("KEYLEDGER_API_KEY", server.admin_key.as_str())];
    let cli = |args: &[&str]| server.cli(home.path(), args, "", &env);
    for (name, duration) in [("gamma", "30d"), ("Alpha", "1d"), ("beta", "7d")] {
        assert_eq!(
            cli(&["keys", "create", name, "--duration", duration]).code,
            0
        );
    }
    let json = |args: &[&str]| {
        let mut all = vec!["keys", "list", "--json"];
        all.extend_from_slice(args);
        let run = cli(&all);
        assert_eq!(run.code, 0, "{run:?}");
        names_of(&run.json(), "name")
    };
    // The server lists newest first; the bootstrap key is the oldest.
    assert_eq!(json(&[]), ["beta", "Alpha", "gamma", "bootstrap"]);
    assert_eq!(
        json(&["--sort", "name"]),
        ["Alpha", "beta", "bootstrap", "gamma"]
    );
    assert_eq!(
        json(&["--sort", "created"])[..3],
        ["beta", "Alpha", "gamma"]
    );
    assert_eq!(
        json(&["--sort", "expires"])[..3],
        ["Alpha", "beta", "gamma"]
    );
    assert_eq!(json(&["--name", "MM"]), ["gamma"]);
    assert_eq!(
        json(&["--name", "A"]),
        ["beta", "Alpha", "gamma", "bootstrap"]
    );
    assert_eq!(
        json(&["--name", "a", "--sort", "name", "--limit", "2"]),
        ["Alpha", "beta"]
    );
    assert_eq!(json(&["--status", "active", "--limit", "1"]), ["beta"]);
    assert!(json(&["--status", "expired"]).is_empty());
    // The table shows the same selection.
    let run = cli(&[
        "keys", "list", "--name", "a", "--sort", "name", "--limit", "2",
    ]);
    let rows: Vec<&str> = run.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{run:?}");
    assert!(
        rows[0].contains("Alpha") && rows[1].contains("beta"),
        "{run:?}"
    );
    let run = cli(&["keys", "list", "--status", "expired"]);
    assert_eq!(run.stdout.trim(), "No keys match.", "{run:?}");
    // Bad values are refused with the choices.
    for bad in [
        &["keys", "list", "--limit", "0"][..],
        &["keys", "list", "--sort", "size"],
        &["external", "list", "--status", "gone"],
    ] {
        let run = cli(bad);
        assert_eq!(run.code, 1, "{bad:?}: {run:?}");
    }
    let run = cli(&["external", "list", "--sort", "size"]);
    assert!(run.stderr.contains("last-used"), "{run:?}");
}

/// `<repo>/.venv/bin/aws`, installing it with `scripts/python-deps.sh` when missing. Never
/// skips: a machine without it fails here with the reason.
fn aws_cli() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let aws = repo.join(".venv/bin/aws");
    if aws.is_file() {
        return aws;
    }
    let script = repo.join("scripts/python-deps.sh");
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|error| panic!("could not run {}: {error}", script.display()));
    assert!(
        output.status.success() && aws.is_file(),
        "the AWS CLI is missing and {} failed: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    aws
}

/// `aws configure set NAME VALUE --profile PROFILE`, writing the files the AWS CLI itself
/// writes, wherever `env` points it.
fn aws_configure(env: &[(&str, &Path)], profile: &str, settings: &[(&str, &str)]) {
    for (name, value) in settings {
        let output = Command::new(aws_cli())
            .args(["configure", "set", name, value, "--profile", profile])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .output()
            .expect("run aws configure");
        assert!(
            output.status.success(),
            "aws configure set {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn aws_keys_come_from_profiles_are_checked_first_and_verify_fails_when_refused() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s3 = runtime
        .block_on(S3Server::start(ACCESS_KEY_ID, SECRET))
        .unwrap();
    let sts = runtime
        .block_on(StsServer::start(s3.iam().clone()))
        .unwrap();
    let (endpoint, sts_endpoint) = (s3.endpoint(), sts.endpoint());
    let server = Server::start_with(&[
        ("KEYLEDGER_INGEST_S3_ENDPOINT", endpoint.as_str()),
        ("KEYLEDGER_INGEST_STS_ENDPOINT", sts_endpoint.as_str()),
    ]);
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config");
    let elsewhere = home.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();

    // Profiles as `aws configure` writes them: in ~/.aws, and in files named by the variables.
    let in_home = [("HOME", home.path())];
    aws_configure(
        &in_home,
        "lab",
        &[
            ("aws_access_key_id", ACCESS_KEY_ID),
            ("aws_secret_access_key", SECRET),
            ("region", "us-east-1"),
        ],
    );
    aws_configure(
        &in_home,
        "temporary",
        &[
            ("aws_access_key_id", "ASIAKEYSTEST00000001"),
            ("aws_secret_access_key", SECRET),
            ("aws_session_token", "FwoGZXIvYXdzEXAMPLETOKEN"),
            ("region", "us-east-1"),
        ],
    );
    aws_configure(
        &in_home,
        "noregion",
        &[
            ("aws_access_key_id", ACCESS_KEY_ID),
            ("aws_secret_access_key", SECRET),
        ],
    );
    let credentials_file = elsewhere.join("creds");
    let config_file = elsewhere.join("conf");
    let named = [
        ("HOME", home.path()),
        ("AWS_SHARED_CREDENTIALS_FILE", credentials_file.as_path()),
        ("AWS_CONFIG_FILE", config_file.as_path()),
    ];
    aws_configure(
        &named,
        "wrong",
        &[
            ("aws_access_key_id", ACCESS_KEY_ID),
            ("aws_secret_access_key", WRONG_SECRET),
            ("region", "us-east-1"),
        ],
    );
    let config_text = std::fs::read_to_string(home.path().join(".aws/config")).unwrap();
    assert!(config_text.contains("[profile lab]"), "{config_text}");

    let admin = server.admin_key.clone();
    let home_text = home.path().display().to_string();
    let base_env = [
        ("KEYLEDGER_API_KEY", admin.as_str()),
        ("HOME", home_text.as_str()),
    ];
    let cli = |args: &[&str], stdin: &str| server.cli(&config, args, stdin, &base_env);
    let add = |profile: &str, label: &str| {
        cli(
            &[
                "external",
                "add",
                "aws",
                "--label",
                label,
                "--aws-profile",
                profile,
            ],
            "",
        )
    };
    let never_shows_a_secret = |run: &CliRun| {
        for secret in [SECRET, WRONG_SECRET] {
            assert!(
                !run.stdout.contains(secret) && !run.stderr.contains(secret),
                "{run:?}"
            );
        }
    };

    // The access key id and the region are checked before the secret is asked for.
    let by_hand = |id: &str, region: &str| {
        cli(
            &[
                "external",
                "add",
                "aws",
                "--label",
                "typo",
                "--access-key-id",
                id,
                "--region",
                region,
            ],
            "",
        )
    };
    let run = by_hand("AKIA", "us-east-1");
    assert_one_error_line(&run, 1, &["AKIA or ASIA", "secret was not asked for"]);
    let run = by_hand("akiakeystest00000001", "us-east-1");
    assert_one_error_line(&run, 1, &["AKIA or ASIA"]);
    let run = by_hand(ACCESS_KEY_ID, "mars-north-1");
    assert_one_error_line(&run, 1, &["mars-north-1", "not an AWS region"]);
    // Profiles that cannot be stored say why.
    let run = add("temporary", "temp");
    assert_one_error_line(
        &run,
        1,
        &["`temporary`", "temporary credentials", "aws_session_token"],
    );
    let run = add("nobody", "x");
    assert_one_error_line(&run, 1, &["no AWS profile `nobody`", ".aws/credentials"]);
    let run = add("noregion", "x");
    assert_one_error_line(&run, 1, &["no region", "--region"]);
    never_shows_a_secret(&run);

    // A profile's key is stored and works: S3 accepts the signature made with its secret.
    let run = add("lab", "lab bucket");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("AKIA…0001"), "{run:?}");
    never_shows_a_secret(&run);
    let run = cli(&["external", "verify", "aws"], "");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("works"), "{run:?}");
    let run = cli(&["external", "list"], "");
    let header = run.stdout.lines().next().unwrap_or_default().to_owned();
    assert!(
        header.contains("LAST USED") && header.contains("LAST VERIFIED"),
        "{run:?}"
    );
    assert!(run.stdout.contains(" UTC ok"), "{run:?}");

    // Deleting destroys the secret for good: it asks, or needs --yes.
    let run = cli(&["external", "delete", "lab bucket"], "");
    assert_one_error_line(&run, 1, &["--yes"]);
    let run = on_terminal(
        &server,
        &config,
        &["external", "delete", "aws"],
        "no\n",
        &admin,
    );
    assert!(
        run.stdout.contains("destroyed for good") && run.stdout.contains("[y/N]"),
        "{run:?}"
    );
    assert_ne!(run.code, 0, "{run:?}");
    let run = cli(&["external", "delete", "aws", "--yes"], "");
    assert_eq!(run.code, 0, "{run:?}");

    // A key the provider refuses: verify exits 9 with the reason, in one line.
    let mut named_env: Vec<(&str, String)> = named
        .iter()
        .map(|(k, v)| (*k, v.display().to_string()))
        .collect();
    named_env.push(("KEYLEDGER_API_KEY", admin.clone()));
    let named_env: Vec<(&str, &str)> = named_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = server.cli(
        &config,
        &[
            "external",
            "add",
            "aws",
            "--label",
            "wrong",
            "--aws-profile",
            "wrong",
        ],
        "",
        &named_env,
    );
    assert_eq!(run.code, 0, "{run:?}");
    let run = cli(&["external", "verify", "wrong"], "");
    assert_one_error_line(&run, 9, &["\"wrong\"", "did not pass the check with AWS"]);
    never_shows_a_secret(&run);
    let run = cli(&["external", "verify", "wrong", "--json"], "");
    assert_eq!(run.code, 9, "{run:?}");
    assert_eq!(run.json()["last_verified_ok"], false, "{run:?}");
    // The keyledger server unreachable is 5, as for every command.
    let run = cli(
        &[
            "external",
            "verify",
            "wrong",
            "--endpoint",
            "http://127.0.0.1:9",
        ],
        "",
    );
    assert_one_error_line(&run, 5, &["cannot reach"]);
}
