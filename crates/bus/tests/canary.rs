//! Canary: no secret ever reaches NATS, and the public subjects carry no key hash and no
//! ciphertext either. Every byte of every message on `>` is scanned, including JetStream API
//! traffic (whose message payloads are base64 inside JSON).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use keyledger_bus::replica::{Replica, ReplicaConfig};
use keyledger_bus::{Relay, TailOptions};
use keyledger_crypto::{Keyring, SecretString};
use keyledger_domain::{FromTrusted, GracePeriod, KeyDuration, KeyName, Label};
use keyledger_vault::NewCredential;

use crate::support::*;

struct Seen {
    subject: String,
    bytes: Vec<u8>,
}

fn forms(bytes: &[u8]) -> Vec<Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let array = format!(
        "[{}]",
        bytes
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    vec![
        bytes.to_vec(),
        hex.into_bytes(),
        hex_upper(bytes).into_bytes(),
        b64.encode(bytes).into_bytes(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(bytes)
            .into_bytes(),
        array.into_bytes(),
    ]
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

/// The message's bytes plus every base64 `data`/`hdrs` field decoded (JetStream API answers).
fn expand(bytes: &[u8]) -> Vec<u8> {
    let mut all = bytes.to_vec();
    fn walk(value: &serde_json::Value, out: &mut Vec<u8>) {
        match value {
            serde_json::Value::Object(map) => {
                for (name, value) in map {
                    if let (true, Some(text)) = (name == "data" || name == "hdrs", value.as_str())
                        && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(text)
                    {
                        out.extend_from_slice(&decoded);
                    }
                    walk(value, out);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
            _ => {}
        }
    }
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(bytes) {
        walk(&json, &mut all);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_on_any_subject_and_no_hash_or_ciphertext_on_public_ones() {
    let nats = nats();
    let config = bus_config(&nats);
    let spy = async_nats::connect(nats.url()).await.expect("connect");
    let mut everything = spy.subscribe(">").await.expect("subscribe to >");
    spy.flush().await.expect("flush");
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let collector = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(message) = everything.next().await {
                let mut bytes = message.subject.as_bytes().to_vec();
                if let Some(headers) = &message.headers {
                    for (name, values) in headers.iter() {
                        bytes.extend_from_slice(name.as_ref());
                        for value in values {
                            bytes.extend_from_slice(value.as_str().as_bytes());
                        }
                    }
                }
                bytes.extend_from_slice(&message.payload);
                seen.lock().expect("lock").push(Seen {
                    subject: message.subject.to_string(),
                    bytes,
                });
            }
        })
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_vault(dir.path());
    let admin_key = bootstrap(&vault).await;
    let aws_secret = "CANARYawsSecretKey0123456789abcdefghijkl".to_owned();
    let dnanexus_token = "CANARY-dnanexus-token_0123456789abcdef".to_owned();
    assert_eq!(aws_secret.len(), 40);
    let aws = vault
        .create_external_key(
            admin(),
            Label::from_trusted("canary aws".to_owned()),
            NewCredential::aws(
                "AKIAIOSFODNN7CANARY1",
                SecretString::new(aws_secret.clone()),
                "eu-west-2",
            )
            .expect("aws"),
            KeyDuration::Never,
            None,
        )
        .await
        .expect("store the AWS credential");
    let dnanexus = vault
        .create_external_key(
            admin(),
            Label::from_trusted("canary dnanexus".to_owned()),
            NewCredential::dnanexus(SecretString::new(dnanexus_token.clone())).expect("token"),
            KeyDuration::Never,
            None,
        )
        .await
        .expect("store the DNAnexus credential");
    let internal = create_keys(&vault, 3, 1).await;
    let rolled = vault
        .roll_api_key(
            admin(),
            internal[0].id.clone(),
            GracePeriod::from_millis(60_000),
        )
        .await
        .expect("roll");
    vault
        .create_api_key(
            admin(),
            KeyName::from_trusted("another".to_owned()),
            KeyDuration::Never,
            None,
        )
        .await
        .expect("key");

    // Publish, replay, tail and replicate: every kind of traffic the bus makes.
    let relay = Relay::spawn(vault.clone(), config.clone());
    let head = vault.log().head().0;
    tokio::time::timeout(Duration::from_secs(30), relay.published_through(head))
        .await
        .expect("published");
    keyledger_bus::tail(&config, &TailOptions::default(), &mut Vec::new())
        .await
        .expect("tail");
    let replica = Replica::start(ReplicaConfig {
        bus: config.clone(),
        master_key: master_key(),
        limits: keyledger_bus::replica::LagLimits::default(),
    })
    .await
    .expect("replica");
    assert!(
        eventually(Duration::from_secs(30), async || replica
            .status()
            .applied_seq
            == head)
        .await
    );
    assert!(
        replica
            .verify(rolled.secret.expose())
            .is_some_and(|v| v.is_valid())
    );
    replica.shutdown().await;
    relay.shutdown().await;
    spy.flush().await.expect("flush");
    // Wait for the spy to have received every published event on both kinds of subject,
    // rather than for a fixed time.
    let public_prefix = format!("{}.", config.subject_prefix);
    let replication_prefix = format!("{}.", config.replication_prefix);
    let count = |prefix: &str| {
        seen.lock()
            .expect("lock")
            .iter()
            .filter(|m| m.subject.starts_with(prefix))
            .count() as u64
    };
    assert!(
        eventually(Duration::from_secs(60), async || count(&public_prefix)
            >= head
            && count(&replication_prefix) >= head)
        .await,
        "the spy saw {} public and {} replication messages of {head}",
        count(&public_prefix),
        count(&replication_prefix)
    );
    collector.abort();

    let secrets: Vec<String> = [
        aws_secret,
        dnanexus_token,
        admin_key.secret.expose().to_owned(),
        rolled.secret.expose().to_owned(),
    ]
    .into_iter()
    .chain(internal.iter().map(|key| key.secret.expose().to_owned()))
    .collect();
    let keyring = Keyring::new(&master_key()).expect("keyring");
    let mut hidden_on_public: Vec<Vec<u8>> = secrets
        .iter()
        .map(|s| keyring.hash_api_key(s).0.to_vec())
        .collect();
    for external in [&aws.id, &dnanexus.id] {
        let sealed = vault
            .read(|state| state.external_key(external).map(|k| k.sealed.clone()))
            .expect("sealed");
        hidden_on_public.push(sealed.ciphertext.clone());
        hidden_on_public.push(sealed.nonce.to_vec());
    }

    let seen = seen.lock().expect("lock");
    let public = seen
        .iter()
        .filter(|m| m.subject.starts_with(&public_prefix))
        .count();
    assert!(public as u64 >= head, "only {public} public messages seen");
    let mut hash_on_replication = false;
    for message in seen.iter() {
        let bytes = expand(&message.bytes);
        for secret in &secrets {
            for form in forms(secret.as_bytes()) {
                assert!(
                    !contains(&bytes, &form),
                    "a secret appeared on {}",
                    message.subject
                );
            }
        }
        if message.subject.starts_with(&public_prefix) {
            for hidden in &hidden_on_public {
                for form in forms(hidden) {
                    assert!(
                        !contains(&bytes, &form),
                        "a key hash or ciphertext appeared on {}",
                        message.subject
                    );
                }
            }
        }
        if message.subject.starts_with(&replication_prefix) {
            hash_on_replication |= hidden_on_public
                .iter()
                .any(|hidden| contains(&bytes, hidden));
        }
    }
    // The scanner works: the replication stream does carry hashes (which is why it is locked
    // down), so the same search finds them there.
    assert!(
        hash_on_replication,
        "the scan found no hash on the replication subjects"
    );
}
