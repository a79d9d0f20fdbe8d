//! Offline verification of an export file or a data directory: no server, no master key.
//!
//! Checks, in log order: contiguous seqs from the first event, each event's hash recomputed from
//! its fields, each `prev_hash` linked to the previous hash (the first event of seq 1 to the
//! genesis hash), each export line's public fields equal to what its body says, and each
//! checkpoint: a valid Ed25519 signature, by the expected key, over the chain hash at its seq.
//! The first failure is reported with its seq and reason; nothing after it is trusted.

use std::fmt;
use std::io::BufRead;
use std::path::Path;

use base64::Engine;
use keyledger_log::{
    BadReason, Checkpoint, Envelope, EventLog, GENESIS_HASH, Hash, Seq, compute_hash,
};

use crate::AuditError;
use crate::export::{ParsedLine, hash_hex, is_canonical, parse_hex_array, parse_line};
use crate::source::open_log_offline;

/// What is wrong at a seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The event's content does not match its hash: something in it was changed.
    Tampered,
    /// The event does not link to the previous event's hash.
    BrokenLink,
    /// Event `expected` is absent: the next one present is `found`.
    Missing { expected: Seq, found: Seq },
    /// Event `expected` is present, but after `found`: events were reordered.
    Reordered { expected: Seq, found: Seq },
    /// The log records a head past its last event: the tail was cut off.
    Truncated { recorded_head: Seq },
    /// A line or record that cannot be read as an event or a checkpoint.
    Unreadable { detail: String },
    /// The body and chain check out, but the export's public fields (type, data, time, …) do
    /// not say what the body says: they were edited.
    PublicFieldsAltered,
    /// A checkpoint's signature does not verify.
    BadSignature,
    /// A checkpoint is validly signed, but by another key than the vault's.
    UnexpectedSigner { found: String, expected: String },
    /// A checkpoint signs a hash the chain does not have at that seq (or sits at the wrong place).
    CheckpointMismatch,
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::Tampered => {
                f.write_str("the event's content does not match its hash (it was altered)")
            }
            ProblemKind::BrokenLink => f.write_str(
                "the event does not link to the previous event's hash (an event was replaced or inserted)",
            ),
            ProblemKind::Missing { expected, found } => {
                write!(f, "event {expected} is missing (the next event present is {found})")
            }
            ProblemKind::Reordered { expected, found } => write!(
                f,
                "events are out of order: found {found} where {expected} belongs, and {expected} comes later"
            ),
            ProblemKind::Truncated { recorded_head } => write!(
                f,
                "events are missing up to the recorded head {recorded_head} (the tail was cut off)"
            ),
            ProblemKind::Unreadable { detail } => write!(f, "unreadable: {detail}"),
            ProblemKind::PublicFieldsAltered => f.write_str(
                "the public fields (type, data, time, subject, actor, id) do not match the event's body (they were edited)",
            ),
            ProblemKind::BadSignature => f.write_str("the checkpoint's signature is invalid"),
            ProblemKind::UnexpectedSigner { found, expected } => write!(
                f,
                "the checkpoint is signed by key {found}, not by the vault's key {expected}"
            ),
            ProblemKind::CheckpointMismatch => {
                f.write_str("the checkpoint signs a hash the chain does not have at this seq")
            }
        }
    }
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub seq: Seq,
    pub kind: ProblemKind,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seq {}: {}", self.seq, self.kind)
    }
}

/// What to verify against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// The vault's checkpoint key as published (`keyledger audit public-key`). Without it,
    /// checkpoints must all carry the same key, which the report shows for comparison.
    pub public_key: Option<[u8; 32]>,
}

/// Where the expected signer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignerSource {
    /// Given by the auditor.
    Pinned,
    /// Published by the data directory itself (in clear: a rewritten directory could change it).
    DataDirectory,
    /// Taken from the first checkpoint (nothing independent vouches for it).
    FirstCheckpoint,
    /// No key known: there was no checkpoint.
    Unknown,
}

/// The result of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOutcome {
    pub first_seq: Option<Seq>,
    /// The last seq whose chain checked out (before the problem, if any).
    pub verified_through: Seq,
    /// The chain hash at `verified_through`.
    pub head_hash: Hash,
    pub events: u64,
    pub checkpoints_verified: u64,
    /// The last checkpoint that verified.
    pub last_checkpoint: Option<Checkpoint>,
    pub signer: Option<[u8; 32]>,
    pub signer_source: SignerSource,
    pub problem: Option<Problem>,
}

impl VerifyOutcome {
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }

    /// The human report `keyledger audit verify` prints.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let range = match self.first_seq {
            Some(first) if self.verified_through >= first => {
                format!(
                    "events {first}..={} ({} events)",
                    self.verified_through, self.events
                )
            }
            _ => "no events".to_owned(),
        };
        match &self.problem {
            None => out.push_str(&format!(
                "OK: {range} verified; chain hash at {} is {}\n",
                self.verified_through,
                hash_hex(&self.head_hash)
            )),
            Some(problem) => {
                out.push_str(&format!("FAILED at {problem}\n"));
                out.push_str(&format!("verified before it: {range}\n"));
            }
        }
        match &self.last_checkpoint {
            Some(checkpoint) => {
                out.push_str(&format!(
                    "checkpoints: {} verified, the last at seq {}\n",
                    self.checkpoints_verified, checkpoint.seq
                ));
                if self.is_ok() && checkpoint.seq < self.verified_through {
                    out.push_str(&format!(
                        "events {}..={} follow the last checkpoint: chained, not yet signed\n",
                        checkpoint.seq + 1,
                        self.verified_through
                    ));
                }
            }
            None => out.push_str(
                "checkpoints: none verified (nothing here proves the events came from the vault)\n",
            ),
        }
        if let Some(signer) = &self.signer {
            let how = match self.signer_source {
                SignerSource::Pinned => "pinned with --public-key",
                SignerSource::DataDirectory => {
                    "as the data directory publishes it; pin the key the server publishes with --public-key"
                }
                SignerSource::FirstCheckpoint | SignerSource::Unknown => {
                    "NOT pinned: compare it with the vault's published key, or pass --public-key"
                }
            };
            out.push_str(&format!("signing key: {} ({how})\n", hash_hex(signer)));
        }
        out
    }
}

/// Parses a public key given as 64 hex digits or base64 of 32 bytes.
pub fn parse_public_key(text: &str) -> Result<[u8; 32], AuditError> {
    let text = text.trim();
    if let Ok(key) = parse_hex_array::<32>(text, "public key") {
        return Ok(key);
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
        .ok_or_else(|| {
            AuditError::Usage(
                "a public key is 64 hex digits (or base64 of 32 bytes), as `keyledger audit public-key` prints it"
                    .to_owned(),
            )
        })
}

/// Verifies an export file.
pub fn verify_export_file(
    path: &Path,
    options: VerifyOptions,
) -> Result<VerifyOutcome, AuditError> {
    let file = std::fs::File::open(path).map_err(|err| AuditError::io(path, err))?;
    verify_export(std::io::BufReader::with_capacity(1 << 20, file), options)
}

/// Verifies an export read from `reader`.
pub fn verify_export(
    reader: impl BufRead,
    options: VerifyOptions,
) -> Result<VerifyOutcome, AuditError> {
    let mut walk = Walk::new(options.public_key, SignerSource::Pinned);
    let mut reader = reader;
    let mut line = String::new();
    let mut line_number = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .map_err(|err| AuditError::io("export", err))?;
        if read == 0 {
            break;
        }
        line_number += 1;
        let text = line.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        if let Err(mut problem) = walk.export_line(text, line_number) {
            // A gap is a reordering if the missing event turns up later in the file.
            if let ProblemKind::Missing { expected, found } = problem.kind
                && reader
                    .lines()
                    .any(|rest| rest.is_ok_and(|rest| seq_of_line(&rest) == Some(expected)))
            {
                problem.kind = ProblemKind::Reordered { expected, found };
            }
            return Ok(walk.finish(Some(problem)));
        }
    }
    Ok(walk.finish(None))
}

/// Verifies a data directory offline (the server must not hold it open).
pub fn verify_data_dir(dir: &Path, options: VerifyOptions) -> Result<VerifyOutcome, AuditError> {
    let log = open_log_offline(dir)?;
    let outcome = verify_log(&log, options);
    log.close();
    outcome
}

/// Verifies an open log: the stored bytes of every event (a non-canonical re-encoding is caught
/// too), then every checkpoint in `meta`.
pub fn verify_log(log: &EventLog, options: VerifyOptions) -> Result<VerifyOutcome, AuditError> {
    let report = log.verify()?;
    let mut problem = report.first_bad.as_ref().map(|bad| Problem {
        seq: bad.seq,
        kind: match &bad.reason {
            BadReason::HashMismatch => ProblemKind::Tampered,
            BadReason::BrokenLink => ProblemKind::BrokenLink,
            BadReason::Gap { expected, found } => ProblemKind::Missing {
                expected: *expected,
                found: *found,
            },
            BadReason::SeqMismatch => ProblemKind::Reordered {
                expected: bad.seq,
                found: log.get(bad.seq).ok().flatten().map_or(0, |e| e.seq),
            },
            BadReason::Truncated { recorded_head } => ProblemKind::Truncated {
                recorded_head: *recorded_head,
            },
            BadReason::Undecodable => ProblemKind::Unreadable {
                detail: "the stored bytes are not an envelope".to_owned(),
            },
        },
    });
    let (expected, source) = match options.public_key {
        Some(key) => (Some(key), SignerSource::Pinned),
        None => match keyledger_vault::published_public_key(log)? {
            Some(key) => (Some(key), SignerSource::DataDirectory),
            None => (None, SignerSource::FirstCheckpoint),
        },
    };
    let mut walk = Walk::new(expected, source);
    walk.first = (report.verified_through > 0 || problem.is_some()).then_some(1);
    walk.verified_through = report.verified_through;
    walk.events = report.verified_through;
    walk.prev_hash = report.head_hash;
    let checkpoints = match log.checkpoints(1, Seq::MAX) {
        Ok(checkpoints) => checkpoints,
        Err(err) => {
            let at = problem
                .as_ref()
                .map_or(report.verified_through + 1, |p| p.seq);
            problem.get_or_insert(Problem {
                seq: at,
                kind: ProblemKind::Unreadable {
                    detail: format!("checkpoint records: {err}"),
                },
            });
            Vec::new()
        }
    };
    for checkpoint in checkpoints {
        if checkpoint.seq > report.verified_through {
            break;
        }
        let chain_hash = log.get(checkpoint.seq)?.map(|e| e.hash);
        if let Err(kind) = walk.check_checkpoint(&checkpoint, chain_hash) {
            let at_problem = Problem {
                seq: checkpoint.seq,
                kind,
            };
            // Events before a bad checkpoint stay verified; report it as the first problem.
            walk.verified_through = checkpoint.seq - 1;
            walk.events = walk.verified_through;
            walk.prev_hash = log
                .get(walk.verified_through)?
                .map_or(GENESIS_HASH, |e| e.hash);
            problem = Some(at_problem);
            break;
        }
    }
    Ok(walk.finish(problem))
}

/// The seq of an export event line, without checking anything else.
fn seq_of_line(line: &str) -> Option<Seq> {
    #[derive(serde::Deserialize)]
    struct SeqOnly {
        checkpoint: Option<serde::de::IgnoredAny>,
        seq: Option<Seq>,
    }
    let parsed: SeqOnly = serde_json::from_str(line).ok()?;
    match parsed.checkpoint {
        Some(_) => None,
        None => parsed.seq,
    }
}

/// The state of a walk along the chain.
#[derive(Clone)]
pub(crate) struct Walk {
    pub(crate) first: Option<Seq>,
    expected_seq: Option<Seq>,
    pub(crate) prev_hash: Hash,
    pub(crate) verified_through: Seq,
    pub(crate) events: u64,
    checkpoints_verified: u64,
    last_checkpoint: Option<Checkpoint>,
    signer: Option<[u8; 32]>,
    signer_source: SignerSource,
}

impl Walk {
    pub(crate) fn new(expected_signer: Option<[u8; 32]>, source: SignerSource) -> Walk {
        Walk {
            first: None,
            expected_seq: None,
            prev_hash: GENESIS_HASH,
            verified_through: 0,
            events: 0,
            checkpoints_verified: 0,
            last_checkpoint: None,
            signer: expected_signer,
            signer_source: if expected_signer.is_some() {
                source
            } else {
                SignerSource::Unknown
            },
        }
    }

    /// Checks the next envelope of the chain and advances.
    pub(crate) fn check_envelope(&mut self, envelope: &Envelope) -> Result<(), Problem> {
        let expected = match self.expected_seq {
            Some(expected) => expected,
            None => {
                // The first event anchors the walk: seq 1 must start from the genesis hash; a
                // partial export starts from whatever its first event links to, and the first
                // checkpoint after it vouches for that link.
                self.first = Some(envelope.seq);
                self.verified_through = envelope.seq.saturating_sub(1);
                if envelope.seq != 1 {
                    self.prev_hash = envelope.prev_hash;
                }
                envelope.seq
            }
        };
        let fail = |kind| Problem {
            seq: expected,
            kind,
        };
        if envelope.seq != expected {
            return Err(fail(ProblemKind::Missing {
                expected,
                found: envelope.seq,
            }));
        }
        if compute_hash(envelope) != envelope.hash {
            return Err(fail(ProblemKind::Tampered));
        }
        if envelope.prev_hash != self.prev_hash {
            return Err(fail(ProblemKind::BrokenLink));
        }
        self.prev_hash = envelope.hash;
        self.verified_through = envelope.seq;
        self.expected_seq = Some(envelope.seq + 1);
        self.events += 1;
        Ok(())
    }

    /// Checks a checkpoint against the chain hash at its seq (`None`: the chain has no such seq).
    pub(crate) fn check_checkpoint(
        &mut self,
        checkpoint: &Checkpoint,
        chain_hash: Option<Hash>,
    ) -> Result<(), ProblemKind> {
        if !checkpoint.signature_is_valid() {
            return Err(ProblemKind::BadSignature);
        }
        match self.signer {
            Some(expected) if expected != checkpoint.public_key => {
                return Err(ProblemKind::UnexpectedSigner {
                    found: hash_hex(&checkpoint.public_key),
                    expected: hash_hex(&expected),
                });
            }
            Some(_) => {}
            None => {
                self.signer = Some(checkpoint.public_key);
                self.signer_source = SignerSource::FirstCheckpoint;
            }
        }
        if chain_hash != Some(checkpoint.hash) {
            return Err(ProblemKind::CheckpointMismatch);
        }
        self.checkpoints_verified += 1;
        self.last_checkpoint = Some(*checkpoint);
        Ok(())
    }

    /// Checks one line of an export.
    fn export_line(&mut self, line: &str, line_number: u64) -> Result<(), Problem> {
        let unreadable = |walk: &Walk, detail: String| Problem {
            seq: walk.expected_seq.unwrap_or(walk.verified_through + 1),
            kind: ProblemKind::Unreadable {
                detail: format!("line {line_number}: {detail}"),
            },
        };
        let envelope = match parse_line(line).map_err(|err| unreadable(self, err))? {
            ParsedLine::Event(envelope) => envelope,
            ParsedLine::Checkpoint(record) => {
                let checkpoint = record
                    .to_checkpoint()
                    .map_err(|err| unreadable(self, err))?;
                // A checkpoint line follows the event it signs.
                let chain_hash = (checkpoint.seq == self.verified_through
                    && self.expected_seq.is_some())
                .then_some(self.prev_hash);
                return self
                    .check_checkpoint(&checkpoint, chain_hash)
                    .map_err(|kind| Problem {
                        seq: checkpoint.seq,
                        kind,
                    });
            }
        };
        let before = self.clone();
        self.check_envelope(&envelope)?;
        if !is_canonical(line, &envelope) {
            *self = before;
            return Err(Problem {
                seq: envelope.seq,
                kind: ProblemKind::PublicFieldsAltered,
            });
        }
        Ok(())
    }

    pub(crate) fn finish(self, problem: Option<Problem>) -> VerifyOutcome {
        VerifyOutcome {
            first_seq: self.first,
            verified_through: self.verified_through,
            head_hash: self.prev_hash,
            events: self.events,
            checkpoints_verified: self.checkpoints_verified,
            last_checkpoint: self.last_checkpoint,
            signer: self.signer,
            signer_source: self.signer_source,
            problem,
        }
    }
}
