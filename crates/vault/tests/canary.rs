//! Known canary secrets are stored; neither the bytes on disk nor the tracing output contain them.

use std::io::Write;
use std::sync::{Arc, Mutex};

use keyledger_crypto::SecretString;
use keyledger_domain::{KeyDuration, KeyName, Label};
use keyledger_vault::NewCredential;

use crate::support::*;

const AWS_SECRET: &str = "CanaryAwsSecretKey0123456789abcdefghijKL";
const DNANEXUS_TOKEN: &str = "CanaryDnanexusToken0123456789";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn no_secret_reaches_the_disk_or_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let test = vault().await;
    let mut internal = vec![test.admin_key.clone()];
    for n in 0..5 {
        let key = test
            .vault
            .create_api_key(
                dev(),
                KeyName::parse(&format!("k{n}")).unwrap(),
                KeyDuration::Days(1),
                None,
            )
            .await
            .unwrap();
        tracing::info!(key = ?key.secret, "created (Debug of the secret must be redacted)");
        internal.push(key.secret.expose().to_owned());
    }
    let aws = NewCredential::aws(
        "AKIAIOSFODNN7EXAMPLE",
        SecretString::new(AWS_SECRET.into()),
        "eu-west-1",
    )
    .unwrap();
    tracing::info!(credential = ?aws, "submitted");
    test.vault
        .create_external_key(
            dev(),
            Label::parse("aws").unwrap(),
            aws,
            KeyDuration::Days(30),
            None,
        )
        .await
        .unwrap();
    let dx = NewCredential::dnanexus(SecretString::new(DNANEXUS_TOKEN.into())).unwrap();
    test.vault
        .create_external_key(
            dev(),
            Label::parse("dx").unwrap(),
            dx,
            KeyDuration::Days(30),
            None,
        )
        .await
        .unwrap();
    let lease = test
        .vault
        .lease_for(&user("dev"), keyledger_domain::Provider::Aws)
        .unwrap();
    tracing::info!(lease = ?lease, "leased");
    test.vault.flush_usage().await.unwrap();
    let dir = test.dir.path().to_path_buf();
    let test = test.reopen();
    drop(test.vault);

    let mut canaries: Vec<&[u8]> = vec![AWS_SECRET.as_bytes(), DNANEXUS_TOKEN.as_bytes()];
    canaries.extend(internal.iter().map(|k| k.as_bytes()));
    let files = files_under(&dir);
    assert!(files.len() > 2, "the data directory holds files: {files:?}");
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        for canary in &canaries {
            assert!(
                !contains(&bytes, canary),
                "a secret is in {}",
                file.display()
            );
        }
    }
    let logs = captured.0.lock().unwrap().clone();
    assert!(
        contains(&logs, b"[redacted]"),
        "the test logged redacted secrets"
    );
    for canary in &canaries {
        assert!(
            !contains(&logs, canary),
            "a secret is in the tracing output"
        );
    }
}
