//! The Python example subscriber (docs/examples/subscriber.py, nats-py) runs against a real
//! server and prints every event, and resumes where its durable consumer stopped; the expiry
//! notifier (docs/examples/expiry-notifier.py) turns a warning into a notice for its owner.

use std::path::PathBuf;
use std::time::Duration;

use keyledger_bus::Relay;

use crate::support::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> PathBuf {
    let python = repo().join(".venv/bin/python");
    let has_nats = std::process::Command::new(&python)
        .args(["-c", "import nats"])
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        has_nats,
        "nats-py is missing from .venv: run scripts/python-deps.sh (make test does)"
    );
    python
}

async fn run_example(url: &str, count: u64) -> Vec<String> {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(python())
            .arg(repo().join("docs/examples/subscriber.py"))
            .args([
                "--url",
                url,
                "--durable",
                "python-example",
                "--count",
                &count.to_string(),
                "--idle",
                "20",
            ])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the example finished in time")
    .expect("run the example");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "example failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_subscriber_prints_every_event_and_resumes() {
    let nats = nats();
    let config = bus_config(&nats);
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_vault(dir.path());
    bootstrap(&vault).await;
    create_keys(&vault, 5, 1).await;
    Relay::new(vault.clone(), config.clone())
        .run_until_caught_up()
        .await
        .expect("relay");
    let head = vault.log().head().0;

    let lines = run_example(&nats.url(), head).await;
    let seqs: Vec<u64> = lines
        .iter()
        .map(|line| {
            line.split(' ')
                .next()
                .and_then(|s| s.parse().ok())
                .expect("seq")
        })
        .collect();
    assert_eq!(seqs, (1..=head).collect::<Vec<_>>(), "{lines:#?}");
    let last = lines.last().expect("a line");
    assert!(
        last.contains(" ApiKeyCreated api_key/key_")
            && last.ends_with(" keyledger.events.api_key.created"),
        "{last}"
    );

    // The durable consumer remembers: a second run gets only the new events.
    create_keys(&vault, 3, 1).await;
    Relay::new(vault.clone(), config.clone())
        .run_until_caught_up()
        .await
        .expect("relay");
    let lines = run_example(&nats.url(), 3).await;
    let seqs: Vec<u64> = lines
        .iter()
        .map(|line| {
            line.split(' ')
                .next()
                .and_then(|s| s.parse().ok())
                .expect("seq")
        })
        .collect();
    assert_eq!(
        seqs,
        (head + 1..=head + 3).collect::<Vec<_>>(),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expiry_notifier_turns_a_warning_into_a_notice_for_the_owner() {
    let nats = nats();
    let config = bus_config(&nats);
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = std::sync::Arc::new(keyledger_vault::ManualClock::new(
        keyledger_domain::Timestamp::from_millis(1_790_000_000_000),
    ));
    let vault = open_vault_with_clock(dir.path(), clock);
    bootstrap(&vault).await;
    vault
        .create_api_key(
            admin(),
            keyledger_domain::KeyName::parse("weekly").expect("a name"),
            keyledger_domain::KeyDuration::Days(5),
            None,
        )
        .await
        .expect("a 5-day key");
    assert_eq!(vault.sweep_expiring().await.expect("sweep"), 1);
    Relay::new(vault.clone(), config.clone())
        .run_until_caught_up()
        .await
        .expect("relay");

    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(python())
            .arg(repo().join("docs/examples/expiry-notifier.py"))
            .args(["--url", &nats.url(), "--dry-run", "--count", "1"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the notifier finished in time")
    .expect("run the notifier");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "notifier failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with("to admin: [keyledger] a key of yours expires within 7 days"),
        "{stdout}"
    );
    assert!(stdout.contains("keyledger keys roll"), "{stdout}");
}
