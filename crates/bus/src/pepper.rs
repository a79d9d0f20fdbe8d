//! The pepper of internal-key hashes, for read replicas.
//!
//! The vault keeps a random pepper sealed under its master key (a data key wrapped by the
//! master key, plus the pepper's nonce and ciphertext). The relay copies that sealed form, as
//! it is, to the subject `<replication_prefix>_keys.pepper`, kept (last value only) by the stream
//! `<replication_stream>_KEYS`; a replica opens it with the master key. Like the replication
//! stream, it holds nothing usable without the master key. (A plain stream rather than a
//! JetStream key-value bucket: async-nats 0.51 cannot create buckets on nats-server 2.9.)

use async_nats::jetstream::Context;
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use keyledger_crypto::{Keyring, MasterKey};
use keyledger_domain::SealedSecret;
use keyledger_log::LogView;
use serde::{Deserialize, Serialize};

use keyledger_vault::{PEPPER_ID, sealed_key};

use crate::{BusConfig, BusError};

// The vault keeps the sealed pepper's wrapped data key under `PEPPER_ID` in `data_keys`, and its
// nonce and ciphertext under `sealed_key(PEPPER_ID)` in `meta` (crates/vault/src/rotation.rs).
const NONCE_LEN: usize = 12;
const ENTRY: &str = "pepper";

/// The sealed pepper as published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct SealedPepper {
    version: u8,
    id: String,
    wrapped: String,
    nonce: String,
    ciphertext: String,
}

pub(crate) fn stream_name(config: &BusConfig) -> String {
    format!("{}_KEYS", config.replication_stream)
}

pub(crate) fn subject(config: &BusConfig) -> String {
    format!("{}_keys.{ENTRY}", config.replication_prefix)
}

/// The vault's sealed pepper, as published; `None` for a data directory without one.
fn sealed_from_log(log: &LogView) -> Result<Option<Bytes>, BusError> {
    let (Some(wrapped), Some(stored)) = (
        log.data_key(PEPPER_ID)?,
        log.meta().get(sealed_key(PEPPER_ID))?,
    ) else {
        return Ok(None);
    };
    if stored.len() <= NONCE_LEN {
        return Err(BusError::Log(format!(
            "the sealed {PEPPER_ID} is truncated"
        )));
    }
    let (nonce, ciphertext) = stored.split_at(NONCE_LEN);
    let sealed = SealedPepper {
        version: 1,
        id: PEPPER_ID.to_owned(),
        wrapped: BASE64.encode(wrapped),
        nonce: BASE64.encode(nonce),
        ciphertext: BASE64.encode(ciphertext),
    };
    Ok(Some(Bytes::from(
        serde_json::to_vec(&sealed).unwrap_or_default(),
    )))
}

/// Publishes the sealed pepper when the stream lacks it or holds another value.
pub(crate) async fn publish(
    js: &Context,
    config: &BusConfig,
    log: &LogView,
) -> Result<(), BusError> {
    let Some(sealed) = sealed_from_log(log)? else {
        tracing::warn!("this data directory has no sealed pepper; replicas cannot verify keys");
        return Ok(());
    };
    let name = stream_name(config);
    let subject = subject(config);
    let error = |reason: String| BusError::Stream {
        stream: name.clone(),
        reason,
    };
    let stream = js
        .get_or_create_stream(stream::Config {
            name: name.clone(),
            description: Some("keyledger: the vault's sealed pepper, for read replicas".to_owned()),
            subjects: vec![subject.clone()],
            storage: stream::StorageType::File,
            max_messages_per_subject: 1,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(|e| error(e.to_string()))?;
    match stream.get_last_raw_message_by_subject(&subject).await {
        Ok(message) if message.payload == sealed => return Ok(()),
        Ok(_) => {}
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => {}
        Err(e) => return Err(error(e.to_string())),
    }
    js.publish(subject, sealed)
        .await
        .map_err(|e| error(e.to_string()))?
        .await
        .map_err(|e| error(e.to_string()))?;
    Ok(())
}

/// Reads the sealed pepper and builds the keyring that hashes keys as the vault does.
pub(crate) async fn fetch(
    js: &Context,
    config: &BusConfig,
    master: &MasterKey,
) -> Result<Keyring, BusError> {
    let name = stream_name(config);
    let missing = |detail: String| {
        BusError::Config(format!(
            "cannot read the vault's sealed pepper from stream {name}: {detail}"
        ))
    };
    let stream = js.get_stream(&name).await.map_err(|e| {
        missing(format!(
            "{e} (is the relay publishing with replication on?)"
        ))
    })?;
    let message = stream
        .get_last_raw_message_by_subject(&subject(config))
        .await
        .map_err(|e| missing(e.to_string()))?;
    open(&message.payload, master)
}

fn open(value: &[u8], master: &MasterKey) -> Result<Keyring, BusError> {
    let malformed = || BusError::Config("the published sealed pepper is malformed".to_owned());
    let sealed: SealedPepper = serde_json::from_slice(value).map_err(|_| malformed())?;
    let decode = |text: &str| BASE64.decode(text).map_err(|_| malformed());
    let wrapped = decode(&sealed.wrapped)?;
    let nonce: [u8; NONCE_LEN] = decode(&sealed.nonce)?.try_into().map_err(|_| malformed())?;
    let ciphertext = decode(&sealed.ciphertext)?;
    let wrapping = Keyring::new(master).map_err(|e| BusError::Config(e.to_string()))?;
    let pepper = wrapping
        .open(&sealed.id, &wrapped, &SealedSecret { nonce, ciphertext }, sealed.id.as_bytes())
        .map_err(|_| {
            BusError::Config(format!(
                "the master key (fingerprint {}) does not open the vault's pepper: give the replica the vault's current master key",
                wrapping.fingerprint()
            ))
        })?;
    Keyring::with_pepper(master, &pepper).map_err(|e| BusError::Config(e.to_string()))
}
