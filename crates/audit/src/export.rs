//! The audit export: one JSON object per line.
//!
//! An event line is the public envelope exactly as published on NATS (`id, seq, time, subject,
//! actor, type, data`: no secret, no key hash, no ciphertext in those fields) **plus** what an
//! offline verifier needs to recompute the chain: `stream, version, time_ms, request_id,
//! prev_hash, hash` and `body`, the encoded event in base64. The chain hash covers the body, so
//! there is no way to verify without it — and the body does carry the internal keys' peppered
//! HMACs and the external keys' AES-GCM ciphertext. Neither is usable without the master key
//! (and, for a deleted credential, not even with it). An export is therefore *not* the public
//! NATS form: hand it to auditors, not to subscribers. See docs/audit.md.
//!
//! A checkpoint line `{"checkpoint": {seq, hash, signature, public_key}}` follows the event it
//! signs. The last line is the end record `{"end": {events, checkpoints, first_seq, last_seq,
//! head_hash}}`: a file cut off at any line (or inside one) lacks it or contradicts it, so
//! verification tells a complete export from a truncated one. Exports written before the end
//! record existed verify as "unterminated, possibly truncated".

use std::borrow::Cow;
use std::io::Write;

use base64::Engine;
use keyledger_domain::Timestamp;
use keyledger_domain::public::{PublicEnvelope, PublicEvent, hex};
use keyledger_log::{Checkpoint, Envelope, Hash, LogView, Seq};
use keyledger_vault::{Vault, decode_event};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::AuditError;

/// Most lines one [`export_page`] returns.
pub const MAX_PAGE: usize = 10_000;

/// One event of the export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedEvent {
    /// The event id, 32 hex digits (NATS `Nats-Msg-Id`).
    pub id: String,
    pub seq: u64,
    pub time: Timestamp,
    pub subject: String,
    pub actor: String,
    /// `type` and `data` of the public form; absent only if the body cannot be decoded.
    #[serde(flatten)]
    pub event: Option<PublicEvent>,
    pub stream: String,
    pub version: u64,
    pub time_ms: i64,
    /// 32 hex digits, or null.
    pub request_id: Option<String>,
    /// 64 hex digits.
    pub prev_hash: String,
    /// 64 hex digits: SHA-256(prev_hash ‖ bincode of every envelope field but the hash).
    pub hash: String,
    /// The encoded event (bincode), standard base64.
    pub body: String,
}

/// A signed checkpoint, as exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub seq: u64,
    pub hash: String,
    pub signature: String,
    pub public_key: String,
}

/// The last line of an export: what the writer wrote, so that a reader can tell the whole file
/// from a prefix of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndRecord {
    /// Event lines written.
    pub events: u64,
    /// Checkpoint lines written.
    pub checkpoints: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The chain hash of the last event (64 hex digits); null when there was none.
    pub head_hash: Option<String>,
}

/// A line of the export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExportLine {
    Checkpoint { checkpoint: CheckpointRecord },
    End { end: EndRecord },
    Event(Box<ExportedEvent>),
}

/// Counts what an export writer wrote and makes its [`EndRecord`].
#[derive(Debug, Clone, Default)]
pub struct EndTally {
    record: EndRecord,
}

impl EndTally {
    /// Notes a line about to be written.
    pub fn count(&mut self, line: &ExportLine) {
        match line {
            ExportLine::Checkpoint { .. } => self.record.checkpoints += 1,
            ExportLine::End { .. } => {}
            ExportLine::Event(event) => {
                self.record.events += 1;
                self.record.first_seq.get_or_insert(event.seq);
                self.record.last_seq = Some(event.seq);
                self.record.head_hash = Some(event.hash.clone());
            }
        }
    }

    pub fn events(&self) -> u64 {
        self.record.events
    }

    pub fn checkpoints(&self) -> u64 {
        self.record.checkpoints
    }

    pub fn end_line(&self) -> ExportLine {
        ExportLine::End {
            end: self.record.clone(),
        }
    }
}

/// A page of the export over HTTP (`GET /v1/events?from=&limit=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportPage {
    /// The log's head when the page was read.
    pub head: u64,
    pub lines: Vec<ExportLine>,
    /// Where the next page starts; null at the head.
    pub next_from: Option<u64>,
}

/// What [`export_jsonl`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportSummary {
    pub first: Option<u64>,
    pub last: Option<u64>,
    pub events: u64,
    pub checkpoints: u64,
}

/// The vault's checkpoint key, as `GET /v1/audit/public-key` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyInfo {
    pub algorithm: String,
    /// 64 hex digits.
    pub public_key: String,
    pub last_checkpoint: Option<CheckpointRecord>,
}

impl ExportedEvent {
    pub fn from_envelope(envelope: &Envelope) -> ExportedEvent {
        let event = decode_event(&envelope.body)
            .ok()
            .map(|event| PublicEvent::from(&event));
        ExportedEvent {
            id: hex(&envelope.event_id),
            seq: envelope.seq,
            time: Timestamp::from_millis(envelope.time_ms),
            subject: envelope.stream.clone(),
            actor: envelope.actor.clone(),
            event,
            stream: envelope.stream.clone(),
            version: envelope.version,
            time_ms: envelope.time_ms,
            request_id: envelope.request_id.as_ref().map(|id| hex(id)),
            prev_hash: hex(&envelope.prev_hash),
            hash: hex(&envelope.hash),
            body: base64::engine::general_purpose::STANDARD.encode(&envelope.body),
        }
    }

    /// The public envelope (what NATS carries), if the body decodes.
    pub fn public(&self) -> Option<PublicEnvelope> {
        Some(PublicEnvelope {
            id: self.id.clone(),
            seq: self.seq,
            time: self.time,
            subject: self.subject.clone(),
            actor: self.actor.clone(),
            event: self.event.clone()?,
        })
    }

    /// The log envelope these fields describe (its hash as claimed, not recomputed).
    pub fn to_envelope(&self) -> Result<Envelope, String> {
        envelope_from_fields(&EnvelopeFields {
            seq: self.seq,
            id: &self.id,
            stream: &self.stream,
            version: self.version,
            time_ms: self.time_ms,
            actor: &self.actor,
            request_id: self.request_id.as_deref(),
            prev_hash: &self.prev_hash,
            hash: &self.hash,
            body: &self.body,
        })
    }
}

impl CheckpointRecord {
    pub fn from_checkpoint(checkpoint: &Checkpoint) -> CheckpointRecord {
        CheckpointRecord {
            seq: checkpoint.seq,
            hash: hex(&checkpoint.hash),
            signature: hex(&checkpoint.signature),
            public_key: hex(&checkpoint.public_key),
        }
    }

    pub fn to_checkpoint(&self) -> Result<Checkpoint, String> {
        Ok(Checkpoint {
            seq: self.seq,
            hash: parse_hex_array(&self.hash, "hash")?,
            public_key: parse_hex_array(&self.public_key, "public_key")?,
            signature: parse_hex_array(&self.signature, "signature")?,
        })
    }
}

/// Writes events `from..=to` (capped at the head) and their checkpoints as JSON lines.
pub fn export_jsonl(
    log: &LogView,
    from: Seq,
    to: Seq,
    out: &mut dyn Write,
) -> Result<ExportSummary, AuditError> {
    let from = from.max(1);
    let to = to.min(log.head().0);
    let mut summary = ExportSummary::default();
    let io = |err: std::io::Error| AuditError::io("export output", err);
    let mut tally = EndTally::default();
    let mut write = |line: &ExportLine| {
        tally.count(line);
        write_line(out, line).map_err(io)
    };
    if from <= to {
        let mut checkpoints = log.checkpoints(from, to)?.into_iter().peekable();
        for envelope in log.read_range(from, to) {
            let envelope = envelope?;
            write(&ExportLine::Event(Box::new(ExportedEvent::from_envelope(
                &envelope,
            ))))?;
            summary.first.get_or_insert(envelope.seq);
            summary.last = Some(envelope.seq);
            summary.events += 1;
            while let Some(checkpoint) = checkpoints.next_if(|c| c.seq <= envelope.seq) {
                if checkpoint.seq == envelope.seq {
                    let record = CheckpointRecord::from_checkpoint(&checkpoint);
                    write(&ExportLine::Checkpoint { checkpoint: record })?;
                    summary.checkpoints += 1;
                }
            }
        }
    }
    let end = tally.end_line();
    write_line(out, &end).map_err(io)?;
    out.flush().map_err(io)?;
    Ok(summary)
}

/// A page of the export for the HTTP API: events `from..` (at most `limit`, capped at
/// [`MAX_PAGE`]) with their checkpoints. The route must require `view_audit_log`.
pub fn export_page(vault: &Vault, from: u64, limit: usize) -> Result<ExportPage, AuditError> {
    let log = vault.log();
    let head = log.head().0;
    let from = from.max(1);
    let limit = limit.clamp(1, MAX_PAGE) as u64;
    let to = from.saturating_add(limit - 1).min(head);
    let mut lines = Vec::new();
    if from <= to {
        let mut checkpoints = log.checkpoints(from, to)?.into_iter().peekable();
        for envelope in log.read_range(from, to) {
            let envelope = envelope?;
            let seq = envelope.seq;
            lines.push(ExportLine::Event(Box::new(ExportedEvent::from_envelope(
                &envelope,
            ))));
            while let Some(checkpoint) = checkpoints.next_if(|c| c.seq <= seq) {
                if checkpoint.seq == seq {
                    lines.push(ExportLine::Checkpoint {
                        checkpoint: CheckpointRecord::from_checkpoint(&checkpoint),
                    });
                }
            }
        }
    }
    Ok(ExportPage {
        head,
        lines,
        next_from: (to < head).then_some(to + 1),
    })
}

/// The checkpoint public key in hex, for `GET /v1/audit/public-key` (any caller may read it).
pub fn public_key(vault: &Vault) -> Result<String, AuditError> {
    Ok(hex(&vault.checkpoint_public_key()?))
}

/// The public key with its algorithm and the last checkpoint.
pub fn public_key_info(vault: &Vault) -> Result<PublicKeyInfo, AuditError> {
    Ok(PublicKeyInfo {
        algorithm: "ed25519".to_owned(),
        public_key: public_key(vault)?,
        last_checkpoint: vault
            .log()
            .last_checkpoint()?
            .map(|c| CheckpointRecord::from_checkpoint(&c)),
    })
}

/// Signs a checkpoint at the current head now (`POST /v1/audit/checkpoints`, admin only).
pub fn checkpoint_now(vault: &Vault) -> Result<CheckpointRecord, AuditError> {
    Ok(CheckpointRecord::from_checkpoint(&vault.checkpoint_now()?))
}

fn write_line(out: &mut dyn Write, line: &ExportLine) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")
}

/// Borrowed envelope fields as they appear in an export line.
pub(crate) struct EnvelopeFields<'a> {
    pub seq: u64,
    pub id: &'a str,
    pub stream: &'a str,
    pub version: u64,
    pub time_ms: i64,
    pub actor: &'a str,
    pub request_id: Option<&'a str>,
    pub prev_hash: &'a str,
    pub hash: &'a str,
    pub body: &'a str,
}

/// One parsed export line.
pub(crate) enum ParsedLine {
    Checkpoint(CheckpointRecord),
    End(EndRecord),
    Event(Envelope),
}

/// The fields of a line that verification reads, borrowed where the text allows. Unknown
/// fields (the public ones) are skipped without being built; a repeated field is an error.
#[derive(Deserialize)]
struct RawLine<'a> {
    checkpoint: Option<CheckpointRecord>,
    end: Option<EndRecord>,
    seq: Option<u64>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    stream: Option<Cow<'a, str>>,
    version: Option<u64>,
    time_ms: Option<i64>,
    #[serde(borrow)]
    actor: Option<Cow<'a, str>>,
    #[serde(borrow)]
    request_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    prev_hash: Option<Cow<'a, str>>,
    #[serde(borrow)]
    hash: Option<Cow<'a, str>>,
    #[serde(borrow)]
    body: Option<Cow<'a, str>>,
}

/// Parses a line into a checkpoint or the envelope it describes; `Err` says what is wrong.
pub(crate) fn parse_line(line: &str) -> Result<ParsedLine, String> {
    let raw: RawLine<'_> =
        serde_json::from_str(line).map_err(|err| format!("not an export line ({err})"))?;
    if let Some(checkpoint) = raw.checkpoint {
        return Ok(ParsedLine::Checkpoint(checkpoint));
    }
    if let Some(end) = raw.end {
        return Ok(ParsedLine::End(end));
    }
    fn required<T>(value: Option<T>, name: &str) -> Result<T, String> {
        value.ok_or_else(|| format!("`{name}` is missing"))
    }
    let (id, stream, actor) = (
        required(raw.id, "id")?,
        required(raw.stream, "stream")?,
        required(raw.actor, "actor")?,
    );
    let (prev_hash, hash, body) = (
        required(raw.prev_hash, "prev_hash")?,
        required(raw.hash, "hash")?,
        required(raw.body, "body")?,
    );
    envelope_from_fields(&EnvelopeFields {
        seq: required(raw.seq, "seq")?,
        id: &id,
        stream: &stream,
        version: required(raw.version, "version")?,
        time_ms: required(raw.time_ms, "time_ms")?,
        actor: &actor,
        request_id: raw.request_id.as_deref(),
        prev_hash: &prev_hash,
        hash: &hash,
        body: &body,
    })
    .map(ParsedLine::Event)
}

/// Whether `line` says exactly what the canonical export of `envelope` says. Our own exports
/// match byte for byte; a re-serialised one (other key order) is compared as JSON values.
pub(crate) fn is_canonical(line: &str, envelope: &Envelope) -> bool {
    let canonical = ExportedEvent::from_envelope(envelope);
    if serde_json::to_string(&canonical).is_ok_and(|text| text == line.trim()) {
        return true;
    }
    match (
        serde_json::from_str::<Value>(line),
        serde_json::to_value(&canonical),
    ) {
        (Ok(given), Ok(expected)) => given == expected,
        _ => false,
    }
}

pub(crate) fn envelope_from_fields(fields: &EnvelopeFields<'_>) -> Result<Envelope, String> {
    let body = base64::engine::general_purpose::STANDARD
        .decode(fields.body)
        .map_err(|err| format!("`body` is not base64: {err}"))?;
    Ok(Envelope {
        seq: fields.seq,
        event_id: parse_hex_array(fields.id, "id")?,
        stream: fields.stream.to_owned(),
        version: fields.version,
        time_ms: fields.time_ms,
        actor: fields.actor.to_owned(),
        request_id: fields
            .request_id
            .map(|id| parse_hex_array(id, "request_id"))
            .transpose()?,
        body,
        prev_hash: parse_hex_array::<32>(fields.prev_hash, "prev_hash")?,
        hash: parse_hex_array::<32>(fields.hash, "hash")?,
    })
}

/// Parses exactly `N` bytes of hex (either case).
pub(crate) fn parse_hex_array<const N: usize>(text: &str, field: &str) -> Result<[u8; N], String> {
    let bytes = text.as_bytes();
    if bytes.len() != 2 * N {
        return Err(format!("`{field}` must be {} hex digits", 2 * N));
    }
    let mut out = [0u8; N];
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let high = hex_digit(pair[0]);
        let low = hex_digit(pair[1]);
        match (high, low) {
            (Some(high), Some(low)) => *slot = high << 4 | low,
            _ => return Err(format!("`{field}` is not hex")),
        }
    }
    Ok(out)
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Hex of a chain hash (for reports).
pub(crate) fn hash_hex(hash: &Hash) -> String {
    hex(hash)
}
