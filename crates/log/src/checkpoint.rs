//! Signed checkpoints of the chain, and consistent copies of the whole log for backups.
//!
//! A checkpoint is an Ed25519 signature over `(seq, hash)`: whoever holds the public key can
//! check, offline, that the log had exactly this hash at this seq — and, because each hash
//! covers its predecessor, every event up to it. Checkpoints live in the `meta` tree under
//! `checkpoint/` + seq (u64 big-endian); this crate stores and lists them, the vault signs them.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::block::stored_envelopes;
use crate::envelope::EnvelopeView;
use crate::keys::{
    HEAD_KEY, IDEMPOTENCY_PREFIX, STREAMS_THROUGH_KEY, decode_committed, encode_head, event_key,
    stream_key,
};
use crate::{DataKeys, EventLog, Hash, LogError, Seq};

/// Prefix of checkpoint keys in the `meta` tree.
pub const CHECKPOINT_PREFIX: &[u8] = b"checkpoint/";
/// What the signature covers, before seq and hash: a signature made for another purpose with
/// the same key can never pass as a checkpoint.
const SIGNING_CONTEXT: &[u8] = b"keyledger/checkpoint/v1\0";
const RECORD_FORMAT: u8 = 1;
const RECORD_LEN: usize = 1 + 32 + 32 + 64;

/// A signed statement "the chain hash at `seq` is `hash`".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: Seq,
    pub hash: Hash,
    /// The Ed25519 public key that made `signature`.
    pub public_key: [u8; 32],
    pub signature: [u8; 64],
}

impl Checkpoint {
    /// Signs `(seq, hash)` with `key`.
    pub fn sign(seq: Seq, hash: Hash, key: &Ed25519KeyPair) -> Checkpoint {
        let signature = key.sign(&Checkpoint::signed_message(seq, &hash));
        let mut signature_bytes = [0u8; 64];
        signature_bytes.copy_from_slice(signature.as_ref());
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(key.public_key().as_ref());
        Checkpoint {
            seq,
            hash,
            public_key,
            signature: signature_bytes,
        }
    }

    /// The exact bytes signed: a context string, seq (u64 big-endian), hash.
    pub fn signed_message(seq: Seq, hash: &Hash) -> Vec<u8> {
        let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + 8 + 32);
        message.extend_from_slice(SIGNING_CONTEXT);
        message.extend_from_slice(&seq.to_be_bytes());
        message.extend_from_slice(hash);
        message
    }

    /// Whether `signature` is a valid signature of `(seq, hash)` by `public_key`. Says nothing
    /// about whether that key is the vault's: compare it with the published one.
    pub fn signature_is_valid(&self) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.public_key)
            .verify(
                &Checkpoint::signed_message(self.seq, &self.hash),
                &self.signature,
            )
            .is_ok()
    }

    /// The checkpoint's key in the `meta` tree.
    pub fn meta_key(seq: Seq) -> Vec<u8> {
        let mut key = Vec::with_capacity(CHECKPOINT_PREFIX.len() + 8);
        key.extend_from_slice(CHECKPOINT_PREFIX);
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    /// The stored value: format byte, hash, public key, signature.
    pub fn to_meta_value(&self) -> Vec<u8> {
        let mut value = Vec::with_capacity(RECORD_LEN);
        value.push(RECORD_FORMAT);
        value.extend_from_slice(&self.hash);
        value.extend_from_slice(&self.public_key);
        value.extend_from_slice(&self.signature);
        value
    }

    /// Parses a stored record; `None` if it is not one.
    pub fn from_meta(key: &[u8], value: &[u8]) -> Option<Checkpoint> {
        let seq = Seq::from_be_bytes(key.strip_prefix(CHECKPOINT_PREFIX)?.try_into().ok()?);
        if value.len() != RECORD_LEN || value[0] != RECORD_FORMAT {
            return None;
        }
        Some(Checkpoint {
            seq,
            hash: value[1..33].try_into().ok()?,
            public_key: value[33..65].try_into().ok()?,
            signature: value[65..].try_into().ok()?,
        })
    }
}

/// What [`EventLog::backup_to`] copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    /// The copy holds every event up to and including this seq, and nothing after it.
    pub head: Seq,
    pub head_hash: Hash,
    pub data_keys: u64,
    pub meta_entries: u64,
}

impl EventLog {
    /// Stores checkpoints in one durable write. The caller signs hashes read from this log.
    pub fn put_checkpoints(&self, checkpoints: &[Checkpoint]) -> Result<(), LogError> {
        if checkpoints.is_empty() {
            return Ok(());
        }
        let database = self.inner.shared.database.get()?;
        let mut batch = sled::Batch::default();
        for checkpoint in checkpoints {
            batch.insert(
                Checkpoint::meta_key(checkpoint.seq),
                checkpoint.to_meta_value(),
            );
        }
        database.meta.apply_batch(batch)?;
        database.make_durable()
    }

    /// Stored checkpoints with `from <= seq <= to`, in seq order. A record that cannot be
    /// parsed is reported as [`LogError::Corrupt`] naming its seq.
    pub fn checkpoints(&self, from: Seq, to: Seq) -> Result<Vec<Checkpoint>, LogError> {
        if from > to {
            return Ok(Vec::new());
        }
        let meta = self.meta_tree()?;
        let mut found = Vec::new();
        for item in meta.range(Checkpoint::meta_key(from)..=Checkpoint::meta_key(to)) {
            let (key, value) = item?;
            let checkpoint =
                Checkpoint::from_meta(&key, &value).ok_or_else(|| LogError::Corrupt {
                    what: format!("checkpoint ({} bytes under {key:?})", value.len()),
                })?;
            found.push(checkpoint);
        }
        Ok(found)
    }

    /// The checkpoint with the highest seq, if any.
    pub fn last_checkpoint(&self) -> Result<Option<Checkpoint>, LogError> {
        let meta = self.meta_tree()?;
        let last = meta
            .range(Checkpoint::meta_key(0)..=Checkpoint::meta_key(Seq::MAX))
            .next_back()
            .transpose()?;
        Ok(last.and_then(|(key, value)| Checkpoint::from_meta(&key, &value)))
    }

    /// Writes a consistent copy of the log into `dir` (which must be missing or empty) while
    /// appends go on: every event up to the durable head as of the call (committed events never
    /// change), stream versions and idempotency records as of that head, the data keys and the
    /// meta records (checkpoints past the head left out). The copy is a log [`EventLog::open`]
    /// opens; it is durable (fsynced) when this returns.
    pub fn backup_to(&self, dir: &Path) -> Result<BackupSummary, LogError> {
        if fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
            return Err(LogError::Io(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("backup directory {} is not empty", dir.display()),
            )));
        }
        let (head, head_hash) = self.head();
        let source = self.inner.shared.database.get()?;
        crate::private_files::create_dir_all(dir)?;
        crate::private_files::restrict_dir(dir)?;
        let db = sled::Config::new().path(dir).open()?;
        let copied_events = db.open_tree("events")?;
        let mut streams: HashMap<String, u64> = HashMap::new();
        let mut batch = sled::Batch::default();
        let mut pending = 0usize;
        if head > 0 {
            for item in source.events.range(event_key(1)..=event_key(head)) {
                let (key, value) = item?;
                // A damaged event is copied as it is, so verifying the copy finds it too.
                for stored in stored_envelopes(&value).flatten() {
                    if let Ok(envelope) = EnvelopeView::from_bytes(stored) {
                        streams.insert(envelope.stream.to_owned(), envelope.version);
                    }
                }
                batch.insert(key, value);
                pending += 1;
                if pending == 10_000 {
                    copied_events.apply_batch(std::mem::take(&mut batch))?;
                    pending = 0;
                }
            }
        }
        for item in source.events.scan_prefix([IDEMPOTENCY_PREFIX]) {
            let (key, value) = item?;
            if decode_committed(&value).is_some_and(|committed| committed.last_seq <= head) {
                batch.insert(key, value);
            }
        }
        for (stream, version) in &streams {
            batch.insert(stream_key(stream), &version.to_be_bytes()[..]);
        }
        if head > 0 {
            batch.insert(HEAD_KEY, &encode_head(head, &head_hash)[..]);
            batch.insert(STREAMS_THROUGH_KEY, &head.to_be_bytes()[..]);
        }
        copied_events.apply_batch(batch)?;

        // Written straight into the copy's `data_keys.bin`: never into sled, whose segments
        // would keep a key after it is shredded in the restored directory.
        let entries = self.data_keys().iter()?;
        let data_keys = entries.len() as u64;
        DataKeys::open(dir)?.replace_all(entries)?;
        let copied_meta = db.open_tree("meta")?;
        let mut meta_entries = 0u64;
        for item in source.meta.iter() {
            let (key, value) = item?;
            if Checkpoint::from_meta(&key, &value).is_some_and(|c| c.seq > head) {
                continue;
            }
            copied_meta.insert(key, value)?;
            meta_entries += 1;
        }
        db.flush()?;
        drop((copied_events, copied_meta, db));
        crate::private_files::restrict_tree(dir)?;
        sync_tree(dir)?;
        Ok(BackupSummary {
            head,
            head_hash,
            data_keys,
            meta_entries,
        })
    }

    /// The `meta` tree itself, for range scans.
    fn meta_tree(&self) -> Result<sled::Tree, LogError> {
        Ok(self.inner.shared.database.get()?.meta.clone())
    }
}

/// fsyncs every file under `dir` and the directories themselves.
fn sync_tree(dir: &Path) -> Result<(), LogError> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            fs::File::open(&path)?.sync_all()?;
        }
    }
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;

    use super::*;

    fn key() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("generate");
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse")
    }

    #[test]
    fn signatures_bind_seq_hash_and_key() {
        let (signer, other) = (key(), key());
        let checkpoint = Checkpoint::sign(1000, [7; 32], &signer);
        assert!(checkpoint.signature_is_valid());
        let mut changed = checkpoint;
        changed.seq += 1;
        assert!(!changed.signature_is_valid());
        let mut changed = checkpoint;
        changed.hash[0] ^= 1;
        assert!(!changed.signature_is_valid());
        let mut changed = checkpoint;
        changed
            .public_key
            .copy_from_slice(other.public_key().as_ref());
        assert!(!changed.signature_is_valid());
    }

    #[test]
    fn records_round_trip_and_sort_by_seq() {
        let checkpoint = Checkpoint::sign(258, [1; 32], &key());
        let key = Checkpoint::meta_key(258);
        assert_eq!(
            Checkpoint::from_meta(&key, &checkpoint.to_meta_value()),
            Some(checkpoint)
        );
        assert!(Checkpoint::meta_key(255) < Checkpoint::meta_key(256));
        assert_eq!(Checkpoint::from_meta(&key, &[1; 10]), None);
        assert_eq!(
            Checkpoint::from_meta(b"other/12345678", &checkpoint.to_meta_value()),
            None
        );
    }
}
