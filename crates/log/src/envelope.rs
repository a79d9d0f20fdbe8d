//! The envelope, its byte encoding and its hash.
//!
//! Encoding: bincode 2, `config::standard()` (little-endian, variable-length integers), fields in
//! declaration order. The stored value of an event is exactly `bincode(Envelope)`; because `hash`
//! is the last field and a fixed 32 bytes, the stored value is `bincode(fields except hash) ||
//! hash`, and `hash = SHA-256(prev_hash || bincode(fields except hash))`.

use bincode::de::Decoder;
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};
use ring::digest;

use crate::{Hash, Seq};

/// One committed event: the caller's opaque body plus the log's bookkeeping and chain hash.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Envelope {
    pub seq: Seq,
    pub event_id: [u8; 16],
    pub stream: String,
    pub version: u64,
    pub time_ms: i64,
    pub actor: String,
    pub request_id: Option<[u8; 16]>,
    pub body: Vec<u8>,
    pub prev_hash: Hash,
    pub hash: Hash,
}

/// Bytes that cannot be decoded as an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bytes are not a valid envelope: {reason}")]
pub struct EnvelopeDecodeError {
    pub reason: String,
}

impl Envelope {
    /// The canonical encoding: what the log stores under the envelope's seq.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.encoded_len_hint());
        self.hashed_fields().encode_into(&mut bytes);
        bytes.extend_from_slice(&self.hash);
        bytes
    }

    /// Decodes [`Envelope::to_bytes`] output; trailing bytes are an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope, EnvelopeDecodeError> {
        whole(bincode::decode_from_slice(bytes, decode_config()), bytes)
    }

    fn hashed_fields(&self) -> HashedFields<'_> {
        HashedFields {
            seq: self.seq,
            event_id: &self.event_id,
            stream: &self.stream,
            version: self.version,
            time_ms: self.time_ms,
            actor: &self.actor,
            request_id: &self.request_id,
            body: &self.body,
            prev_hash: &self.prev_hash,
        }
    }

    fn encoded_len_hint(&self) -> usize {
        // Varints take at most 9 bytes; 4 integers + 3 lengths + option tag + fixed arrays.
        8 * 9 + 1 + 16 + 16 + 32 + 32 + self.stream.len() + self.actor.len() + self.body.len()
    }
}

/// `SHA-256(prev_hash || bincode(every field except hash))`: what `env.hash` must equal.
pub fn compute_hash(env: &Envelope) -> Hash {
    let mut encoded = Vec::with_capacity(env.encoded_len_hint());
    env.hashed_fields().encode_into(&mut encoded);
    chain_hash(&env.prev_hash, &encoded)
}

/// Encodes `env` (whose `hash` is ignored), sets its hash and returns the stored value.
pub(crate) fn seal(env: &mut Envelope) -> Vec<u8> {
    let mut value = Vec::with_capacity(env.encoded_len_hint());
    env.hashed_fields().encode_into(&mut value);
    env.hash = chain_hash(&env.prev_hash, &value);
    value.extend_from_slice(&env.hash);
    value
}

/// The hash of a stored value computed from its raw bytes (no re-encoding): any changed byte
/// outside the trailing hash changes it.
pub(crate) fn hash_of_stored(prev_hash: &Hash, value: &[u8]) -> Option<Hash> {
    let hashed_len = value.len().checked_sub(32)?;
    Some(chain_hash(prev_hash, &value[..hashed_len]))
}

pub(crate) fn chain_hash(prev_hash: &Hash, encoded_fields: &[u8]) -> Hash {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(prev_hash);
    context.update(encoded_fields);
    let mut hash = [0; 32];
    hash.copy_from_slice(context.finish().as_ref());
    hash
}

/// Decoding refuses containers claiming more than this, so a corrupt length cannot make the
/// reader allocate gigabytes. Envelopes are at most 64 KiB (see `MAX_ENVELOPE_BYTES`).
const DECODE_LIMIT: usize = 1 << 20;

type DecodeConfig = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<DECODE_LIMIT>,
>;

fn decode_config() -> DecodeConfig {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

struct HashedFields<'a> {
    seq: Seq,
    event_id: &'a [u8; 16],
    stream: &'a str,
    version: u64,
    time_ms: i64,
    actor: &'a str,
    request_id: &'a Option<[u8; 16]>,
    body: &'a [u8],
    prev_hash: &'a Hash,
}

impl HashedFields<'_> {
    fn encode_into(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail and no field has a size limit on encode.
        if let Err(error) = bincode::encode_into_std_write(self, out, bincode::config::standard()) {
            unreachable_encode_error(error);
        }
    }
}

#[cold]
fn unreachable_encode_error(error: EncodeError) {
    tracing::error!(%error, "encoding an envelope into memory failed");
}

impl Encode for HashedFields<'_> {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        self.seq.encode(encoder)?;
        self.event_id.encode(encoder)?;
        self.stream.encode(encoder)?;
        self.version.encode(encoder)?;
        self.time_ms.encode(encoder)?;
        self.actor.encode(encoder)?;
        self.request_id.encode(encoder)?;
        self.body.encode(encoder)?;
        self.prev_hash.encode(encoder)
    }
}

impl Encode for Envelope {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        self.hashed_fields().encode(encoder)?;
        self.hash.encode(encoder)
    }
}

impl<Context> Decode<Context> for Envelope {
    fn decode<D: Decoder<Context = Context>>(decoder: &mut D) -> Result<Self, DecodeError> {
        Ok(Envelope {
            seq: Decode::decode(decoder)?,
            event_id: Decode::decode(decoder)?,
            stream: Decode::decode(decoder)?,
            version: Decode::decode(decoder)?,
            time_ms: Decode::decode(decoder)?,
            actor: Decode::decode(decoder)?,
            request_id: Decode::decode(decoder)?,
            body: Decode::decode(decoder)?,
            prev_hash: Decode::decode(decoder)?,
            hash: Decode::decode(decoder)?,
        })
    }
}

/// A decoding of all of `bytes`: an error, or bytes left over, is an [`EnvelopeDecodeError`].
fn whole<T>(
    decoded: Result<(T, usize), DecodeError>,
    bytes: &[u8],
) -> Result<T, EnvelopeDecodeError> {
    let (value, read) = decoded.map_err(|error| EnvelopeDecodeError {
        reason: error.to_string(),
    })?;
    if read != bytes.len() {
        return Err(EnvelopeDecodeError {
            reason: format!("{} trailing bytes", bytes.len() - read),
        });
    }
    Ok(value)
}

/// An envelope read in place: strings and body borrowed from the stored bytes, nothing
/// allocated. What a reader that goes through the whole log (replay) decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvelopeView<'a> {
    pub seq: Seq,
    pub event_id: [u8; 16],
    pub stream: &'a str,
    pub version: u64,
    pub time_ms: i64,
    pub actor: &'a str,
    pub request_id: Option<[u8; 16]>,
    pub body: &'a [u8],
    pub prev_hash: Hash,
    pub hash: Hash,
}

impl<'a> EnvelopeView<'a> {
    /// Decodes stored bytes in place; trailing bytes are an error.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<EnvelopeView<'a>, EnvelopeDecodeError> {
        whole(
            bincode::borrow_decode_from_slice(bytes, decode_config()),
            bytes,
        )
    }

    pub fn to_owned(&self) -> Envelope {
        Envelope {
            seq: self.seq,
            event_id: self.event_id,
            stream: self.stream.to_owned(),
            version: self.version,
            time_ms: self.time_ms,
            actor: self.actor.to_owned(),
            request_id: self.request_id,
            body: self.body.to_vec(),
            prev_hash: self.prev_hash,
            hash: self.hash,
        }
    }
}

impl<'de, Context> bincode::BorrowDecode<'de, Context> for EnvelopeView<'de> {
    fn borrow_decode<D: bincode::de::BorrowDecoder<'de, Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, DecodeError> {
        use bincode::BorrowDecode;
        Ok(EnvelopeView {
            seq: Decode::decode(decoder)?,
            event_id: Decode::decode(decoder)?,
            stream: BorrowDecode::borrow_decode(decoder)?,
            version: Decode::decode(decoder)?,
            time_ms: Decode::decode(decoder)?,
            actor: BorrowDecode::borrow_decode(decoder)?,
            request_id: Decode::decode(decoder)?,
            body: BorrowDecode::borrow_decode(decoder)?,
            prev_hash: Decode::decode(decoder)?,
            hash: Decode::decode(decoder)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            seq: 300,
            event_id: [7; 16],
            stream: "api_key/k1".to_owned(),
            version: 2,
            time_ms: -5,
            actor: "user:alice".to_owned(),
            request_id: Some([9; 16]),
            body: vec![1, 2, 3, 250, 251, 252],
            prev_hash: [4; 32],
            hash: [0; 32],
        }
    }

    #[test]
    fn stored_bytes_equal_bincode_serde_encoding() {
        let mut env = sample();
        let value = seal(&mut env);
        let via_serde = bincode::serde::encode_to_vec(&env, bincode::config::standard())
            .expect("serde encoding into memory");
        assert_eq!(value, via_serde);
        assert_eq!(value, env.to_bytes());
    }

    #[test]
    fn seal_sets_the_hash_compute_hash_expects() {
        let mut env = sample();
        let value = seal(&mut env);
        assert_eq!(env.hash, compute_hash(&env));
        assert_eq!(hash_of_stored(&env.prev_hash, &value), Some(env.hash));
        assert_eq!(Envelope::from_bytes(&value), Ok(env.clone()));
        assert_eq!(
            EnvelopeView::from_bytes(&value).map(|v| v.to_owned()),
            Ok(env)
        );
    }

    #[test]
    fn every_field_changes_the_hash() {
        let mut base = sample();
        seal(&mut base);
        let changes: [fn(&mut Envelope); 9] = [
            |e| e.seq += 1,
            |e| e.event_id[0] ^= 1,
            |e| e.stream.push('x'),
            |e| e.version += 1,
            |e| e.time_ms += 1,
            |e| e.actor.push('x'),
            |e| e.request_id = None,
            |e| e.body.push(0),
            |e| e.prev_hash[31] ^= 1,
        ];
        for change in changes {
            let mut changed = base.clone();
            change(&mut changed);
            assert_ne!(compute_hash(&changed), base.hash, "{changed:?}");
        }
    }

    #[test]
    fn trailing_and_truncated_bytes_are_refused() {
        let mut env = sample();
        let mut value = seal(&mut env);
        assert!(Envelope::from_bytes(&value[..value.len() - 1]).is_err());
        value.push(0);
        assert!(Envelope::from_bytes(&value).is_err());
    }
}
