//! The web console: its HTTP headers, and the seed page's whole workflow in a real browser —
//! headless Debian Chromium driven by playwright-core (`tests/console/e2e.mjs`) against the real
//! `keyledger serve`, at 1280×800 and at 390×844, with the testkit's S3 server and DNAnexus
//! emulator behind the external keys' Test button. The browser and the npm packages are installed by
//! `scripts/console-deps.sh` when missing; if that fails the test fails and says why (it is never
//! skipped).
//!
//! `KEYLEDGER_UPDATE_SCREENSHOTS=1` makes the browser test write its screenshots to
//! `docs/console/` (the pictures in docs/console.md) instead of the target directory.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keyledger_testkit::dnanexus::{DnanexusEmulator, Level, Seed};
use keyledger_testkit::s3::S3Server;
use keyledger_testkit::sts::StsServer;
use serde_json::json;

use crate::support::Server;

/// Credentials the test's S3 server and DNAnexus emulator accept (AWS's documented example id).
const AWS_ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const DNANEXUS_TOKEN: &str = "dxTOKENforTHEconsoleTEST0123456789";

const CONSOLE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
/// Installing Chromium from Debian's packages took ~40 s here; leave room for a slow mirror.
const INSTALL_LIMIT: Duration = Duration::from_secs(900);
/// The browser run took ~8 s here; the script gives up by itself after 240 s.
const BROWSER_LIMIT: Duration = Duration::from_secs(300);

#[test]
fn the_console_is_served_with_its_security_headers() {
    let server = Server::start();
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/grid.js", "text/javascript; charset=utf-8"),
        ("/console/app.css", "text/css; charset=utf-8"),
        ("/console/favicon.svg", "image/svg+xml"),
    ] {
        let response = server.send("GET", path, None, None);
        assert_eq!(response.status().as_u16(), 200, "GET {path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(header("content-type"), content_type, "{path}");
        assert_eq!(header("content-security-policy"), CONSOLE_CSP, "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("cache-control"), "no-cache", "{path}");
        assert!(!header("etag").is_empty(), "{path}");
    }
    let page = server
        .send("GET", "/", None, None)
        .text()
        .expect("the page");
    assert!(page.contains("<script type=\"module\" src=\"/console/app.js\"></script>"));

    // Unknown console files are a JSON 404; the API keeps its own, stricter policy.
    let (status, body) = server.call("GET", "/console/missing.js", None, None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let api = server.send("GET", "/healthz", None, None);
    let api_policy = api
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(api_policy.starts_with("default-src 'none'"), "{api_policy}");
}

#[test]
fn the_seed_workflow_in_a_real_browser() {
    let repository = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    install_browser(&repository);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let s3 = runtime
        .block_on(S3Server::start(AWS_ACCESS_KEY_ID, AWS_SECRET))
        .expect("S3 server");
    // What the Test dialogs test: a bucket with a prefix to import, a project the token views.
    runtime.block_on(s3.create_bucket("lab")).expect("bucket");
    runtime
        .block_on(s3.put_object("lab", "runs/a.csv", b"gene,1\n".to_vec()))
        .expect("object");
    let mut seed = Seed::new();
    let dx_user = seed.add_user("dana");
    seed.add_token(&dx_user, DNANEXUS_TOKEN);
    let dx_owner = seed.add_user("olga");
    let project = seed.add_project("rnaseq", &dx_owner);
    seed.add_member(&project, &dx_user, Level::View);
    let dnanexus = runtime
        .block_on(DnanexusEmulator::start(seed))
        .expect("DNAnexus emulator");
    let sts = runtime
        .block_on(StsServer::start(s3.iam().clone()))
        .expect("STS server");
    let server = Server::start_with(&[
        ("KEYLEDGER_INGEST_S3_ENDPOINT", s3.endpoint().as_str()),
        ("KEYLEDGER_INGEST_STS_ENDPOINT", sts.endpoint().as_str()),
        (
            "KEYLEDGER_INGEST_DNANEXUS_API_URL",
            dnanexus.endpoint().as_str(),
        ),
        // The users' 1-day keys would be announced as expiring; the banner has its own test,
        // and the workflow's screenshots stay as they were.
        ("KEYLEDGER_VAULT_EXPIRY_WARNING_DAYS", ""),
    ]);
    server.create_user("dana", &["developer"]);
    // The user turned away holds a role without `manage_user_api_keys` (an auditor: importing
    // without it is refused since decision 0012, so no importer-only role can exist).
    server.create_user("mia", &["auditor"]);
    let keys = json!({
        "developer": { "user": "dana", "key": issue_key(&server, "dana") },
        "member": { "user": "mia", "key": issue_key(&server, "mia") },
        "providers": {
            "aws": { "access_key_id": AWS_ACCESS_KEY_ID, "secret_access_key": AWS_SECRET, "region": "eu-west-2" },
            "dnanexus_token": DNANEXUS_TOKEN,
        },
    });
    let command = browser_script(&server, "e2e.mjs", &keys.to_string(), "console-screenshots");
    let run = run_bounded(command, BROWSER_LIMIT);
    assert_browser_passed(run, "e2e.mjs", "console e2e: passed", &server);
}

/// The expiry banner: the sweeper announces a 7-day key of one user (`ApiKeyExpiring`, horizon
/// 7); in the browser that user sees the banner naming it, another user none. Its screenshot is
/// `docs/console/expiry-banner.png` (with `KEYLEDGER_UPDATE_SCREENSHOTS=1`).
#[test]
fn the_expiry_banner_in_a_real_browser() {
    let repository = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    install_browser(&repository);
    let server = Server::start_with(&[("KEYLEDGER_VAULT_SWEEP_INTERVAL_SECS", "1")]);
    server.create_user("dana", &["developer"]);
    server.create_user("eli", &["developer"]);
    let dana = issue_key_for(&server, "dana", "never");
    let eli = issue_key_for(&server, "eli", "never");
    let (id, _) = server.create_key(&dana, "nightly sync", "7d");
    // The sweeper runs every second: wait (bounded) for its announcement, a condition.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = server.get("/v1/api-keys", &dana);
        let warned = listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == id.as_str() && k["expiry_warning_days"] == 7);
        if warned {
            break;
        }
        assert!(Instant::now() < deadline, "never announced: {listed}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let keys = json!({
        "warned": { "key": dana, "name": "nightly sync" },
        "calm": { "key": eli },
    });
    let command = browser_script(
        &server,
        "expiry-banner.mjs",
        &keys.to_string(),
        "console-screenshots",
    );
    let run = run_bounded(command, BROWSER_LIMIT);
    assert_browser_passed(
        run,
        "expiry-banner.mjs",
        "expiry banner e2e: passed",
        &server,
    );
}

/// An internal key for `user`, issued by the admin.
fn issue_key(server: &Server, user: &str) -> String {
    issue_key_for(server, user, "1d")
}

/// An internal key for `user` lasting `duration`, issued by the admin.
fn issue_key_for(server: &Server, user: &str, duration: &str) -> String {
    let (status, body) = server.call(
        "POST",
        &format!("/v1/users/{user}/api-keys"),
        Some(&server.admin_key),
        Some(&json!({ "name": "console test", "duration": duration })),
    );
    assert_eq!(status, 201, "issue a key for {user}: {body}");
    body["key"].as_str().expect("key").to_owned()
}

/// Runs scripts/console-deps.sh (Chromium from Debian, playwright-core from npm, when missing).
pub(crate) fn install_browser(repository: &Path) {
    let mut command = Command::new("bash");
    command
        .arg(repository.join("scripts/console-deps.sh"))
        .current_dir(repository);
    let installed = run_bounded(command, INSTALL_LIMIT);
    match installed {
        Ok(run) if run.success => {}
        Ok(run) => panic!(
            "the console's browser test needs Chromium (/usr/bin/chromium) and the npm packages of \
             tests/console, and scripts/console-deps.sh could not install them:\n{}{}\n\
             Install them by hand (`sudo apt-get install -y chromium` and \
             `npm ci --prefix tests/console`), then run the test again.",
            run.stdout, run.stderr
        ),
        Err(err) => panic!("cannot run scripts/console-deps.sh: {err}"),
    }
}

/// `node tests/console/<script> <server> <setup> <screenshot dir>`: the screenshots go to
/// `docs/console/` with `KEYLEDGER_UPDATE_SCREENSHOTS=1`, else to the scratch folder `scratch`.
pub(crate) fn browser_script(server: &Server, script: &str, setup: &str, scratch: &str) -> Command {
    let repository = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let screenshots = if std::env::var_os("KEYLEDGER_UPDATE_SCREENSHOTS").is_some() {
        repository.join("docs/console")
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(scratch)
    };
    let mut command = Command::new("node");
    command
        .arg(repository.join("tests/console").join(script))
        .arg(&server.base)
        .arg(setup)
        .arg(&screenshots)
        .current_dir(&repository);
    command
}

/// A browser script passed: it ran, exited 0 and printed `passed` (its own "… e2e: passed"
/// line); otherwise fails with its output and the server's.
pub(crate) fn assert_browser_passed(
    run: std::io::Result<Run>,
    script: &str,
    passed: &str,
    server: &Server,
) {
    let run = run.unwrap_or_else(|err| panic!("cannot run `node tests/console/{script}`: {err}"));
    eprintln!("{}{}", run.stdout, run.stderr);
    assert!(
        run.success && run.stdout.contains(passed),
        "the browser test {script} failed:\n{}{}\nserver output:\n{}",
        run.stdout,
        run.stderr,
        server.output()
    );
}

pub(crate) struct Run {
    pub(crate) success: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs a command to its end, killing it and everything it started (its process group: node's
/// Chromium, apt-get's helpers) if it takes longer than `limit`.
pub(crate) fn run_bounded(mut command: Command, limit: Duration) -> std::io::Result<Run> {
    let mut child = command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(format!("-{}", child.id()))
                .status();
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().unwrap_or_default();
    let mut stderr = stderr.join().unwrap_or_default();
    if status.is_none() {
        stderr.push_str(&format!("\n(killed after {} s)\n", limit.as_secs()));
    }
    Ok(Run {
        success: status.is_some_and(|s| s.success()),
        stdout,
        stderr,
    })
}

/// Reads a child's output stream to its end on a thread of its own.
fn drain<R: Read + Send + 'static>(stream: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stream) = stream {
            let _ = stream.read_to_string(&mut text);
        }
        text
    })
}
