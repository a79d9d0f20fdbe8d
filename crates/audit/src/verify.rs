//! Offline verification of an export file or a data directory: no server, no master key.
//!
//! Checks, in log order: contiguous seqs from the first event, each event's hash recomputed from
//! its fields, each `prev_hash` linked to the previous hash (the first event of seq 1 to the
//! genesis hash), each export line's public fields equal to what its body says, and each
//! checkpoint: a valid Ed25519 signature, by the expected key, over the chain hash at its seq.
//! The first failure is reported with its seq and reason; nothing after it is trusted.
//!
//! An export must end with its end record (count and head hash, see [`crate::export`]): one
//! without it is reported as unterminated, possibly truncated, and one cut inside a line as cut
//! off — never as OK. The outcome says how many events a signed checkpoint covers and how many
//! are only chained; `require_checkpoint` and `expect_head` turn "not signed" and "does not
//! reach the head I know" into failures.

use std::fmt;
use std::io::BufRead;
use std::path::Path;

use base64::Engine;
use keyledger_log::{
    BadReason, Checkpoint, Envelope, GENESIS_HASH, Hash, LogView, Seq, compute_hash,
};

use crate::AuditError;
use crate::export::{EndRecord, ParsedLine, hash_hex, is_canonical, parse_hex_array, parse_line};
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
    /// The export has no end record: it was cut off after a whole line, or written by a version
    /// without end records. Either way nothing says the events after it are not missing.
    Unterminated,
    /// The export's last line stops in the middle: the file was cut off.
    CutMidLine { line: u64 },
    /// The end record does not describe the lines before it.
    EndMismatch { detail: String },
    /// Something follows the end record.
    AfterEnd { line: u64 },
    /// `require_checkpoint`: the last event is not covered by a signed checkpoint.
    NotSigned { signed_through: Option<Seq> },
    /// `expect_head`: the log stops before the expected head.
    HeadNotReached { expected: Seq, reached: Seq },
    /// `expect_head`: the log has another chain hash at the expected head's seq.
    HeadMismatch { expected: String, found: String },
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
            ProblemKind::Unterminated => f.write_str(
                "the export ends without its end record: unterminated, possibly truncated \
                 (events after this one may have been cut off); export it again",
            ),
            ProblemKind::CutMidLine { line } => write!(
                f,
                "the export is truncated: line {line} stops in the middle (the file was cut off)"
            ),
            ProblemKind::EndMismatch { detail } => write!(
                f,
                "the export's end record does not match its lines ({detail}): lines were removed or added"
            ),
            ProblemKind::AfterEnd { line } => {
                write!(f, "line {line} follows the export's end record")
            }
            ProblemKind::NotSigned { signed_through } => match signed_through {
                Some(seq) => write!(
                    f,
                    "not covered by a signed checkpoint (--require-checkpoint): the last one is at \
                     seq {seq}; ask the server to sign one (`keyledger audit checkpoint --remote`)"
                ),
                None => f.write_str(
                    "no signed checkpoint covers the events (--require-checkpoint); ask the \
                     server to sign one (`keyledger audit checkpoint --remote`)",
                ),
            },
            ProblemKind::HeadNotReached { expected, reached } => write!(
                f,
                "the log stops at seq {reached}, before the expected head {expected} (--expect-head): \
                 events are missing at the end"
            ),
            ProblemKind::HeadMismatch { expected, found } => write!(
                f,
                "the chain hash here is {found}, not the expected {expected} (--expect-head): the \
                 log differs from the one the head was taken from"
            ),
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
    /// Fail unless a signed checkpoint covers the last event.
    pub require_checkpoint: bool,
    /// Fail unless the log holds this event with this chain hash.
    pub expect_head: Option<Head>,
}

/// An event of the chain by its seq and chain hash, written `SEQ:HASH` (as `audit verify`,
/// `audit checkpoint` and backups print it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: Seq,
    pub hash: Hash,
}

impl Head {
    pub fn parse(text: &str) -> Result<Head, AuditError> {
        let usage = || {
            AuditError::Usage(
                "a head is SEQ:HASH, a sequence number and its 64-hex-digit chain hash, as \
                 `keyledger audit verify` or `keyledger audit checkpoint` print it"
                    .to_owned(),
            )
        };
        let (seq, hash) = text.trim().split_once(':').ok_or_else(usage)?;
        let seq = seq
            .parse::<Seq>()
            .ok()
            .filter(|seq| *seq > 0)
            .ok_or_else(usage)?;
        let hash = parse_hex_array::<32>(hash, "hash").map_err(|_| usage())?;
        Ok(Head { seq, hash })
    }
}

impl fmt::Display for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, hash_hex(&self.hash))
    }
}

/// Where the expected signer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignerSource {
    /// Given by the auditor.
    Pinned,
    /// Published by the data directory itself (in clear: a rewritten directory could change it).
    DataDirectory,
    /// Published by the running server whose log was verified (`--remote`).
    Server,
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
    /// For an export: whether it ended with a matching end record. `None` for a data directory.
    pub terminated: Option<bool>,
    pub problem: Option<Problem>,
}

impl VerifyOutcome {
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }

    /// The last verified event, as `SEQ:HASH`.
    pub fn head(&self) -> Option<Head> {
        self.first_seq
            .filter(|first| self.verified_through >= *first)
            .map(|_| Head {
                seq: self.verified_through,
                hash: self.head_hash,
            })
    }

    /// The last seq a verified checkpoint covers (within what verified).
    pub fn signed_through(&self) -> Option<Seq> {
        let first = self.first_seq?;
        self.last_checkpoint
            .map(|checkpoint| checkpoint.seq.min(self.verified_through))
            .filter(|seq| *seq >= first)
    }

    /// Verified events that a signed checkpoint covers: from the first one to the last checkpoint.
    pub fn signed_events(&self) -> u64 {
        match (self.first_seq, self.signed_through()) {
            (Some(first), Some(through)) => through - first + 1,
            _ => 0,
        }
    }

    /// Verified events after the last checkpoint: tamper-evident among themselves, not signed.
    pub fn chained_only_events(&self) -> u64 {
        self.events.saturating_sub(self.signed_events())
    }

    /// The human report `keyledger audit verify` prints.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let range = |from: Seq, to: Seq| {
            let count = to - from + 1;
            let noun = if count == 1 { "event" } else { "events" };
            format!("{count} {noun} ({from}..={to})")
        };
        let verified = match self.first_seq {
            Some(first) if self.verified_through >= first => range(first, self.verified_through),
            _ => "no events".to_owned(),
        };
        let head = self
            .head()
            .map_or_else(|| "none".to_owned(), |head| head.to_string());
        match &self.problem {
            None if self.signed_events() == 0 && self.events > 0 => out.push_str(&format!(
                "CHAINED, NOT SIGNED: {verified} verified as a hash chain, but no signed \
                 checkpoint covers them; head {head}\n"
            )),
            None => out.push_str(&format!("OK: {verified} verified; head {head}\n")),
            Some(problem) => {
                out.push_str(&format!("FAILED at {problem}\n"));
                out.push_str(&format!("verified before it: {verified}\n"));
            }
        }
        match (self.first_seq, self.signed_through(), &self.last_checkpoint) {
            (Some(first), Some(through), Some(checkpoint)) => {
                out.push_str(&format!(
                    "signed: {} covered by a signed checkpoint ({} verified, the last at seq {})\n",
                    range(first, through),
                    self.checkpoints_verified,
                    checkpoint.seq
                ));
                if through < self.verified_through {
                    out.push_str(&format!(
                        "chained only: {} follow the last checkpoint: chained, not yet signed\n",
                        range(through + 1, self.verified_through)
                    ));
                }
            }
            _ => {
                out.push_str(
                    "signed: none (no checkpoint verified: nothing here proves the events came \
                     from the vault)\n",
                );
                if let Some(first) = self.first_seq.filter(|f| self.verified_through >= *f) {
                    out.push_str(&format!(
                        "chained only: {}\n",
                        range(first, self.verified_through)
                    ));
                }
            }
        }
        match self.terminated {
            Some(true) => out.push_str("export: complete (its end record matches its lines)\n"),
            Some(false) => out.push_str("export: NOT complete (no matching end record)\n"),
            None => {}
        }
        if let Some(signer) = &self.signer {
            let how = match self.signer_source {
                SignerSource::Pinned => "pinned with --public-key",
                SignerSource::DataDirectory => {
                    "as the data directory publishes it; pin the key the server publishes with --public-key"
                }
                SignerSource::Server => {
                    "as the server publishes it; pin a key obtained earlier with --public-key"
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
    walk.watch = options.expect_head.map(|head| head.seq);
    let mut reader = reader;
    let mut line = String::new();
    let mut line_number = 0u64;
    let mut ended = false;
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .map_err(|err| AuditError::io("export", err))?;
        if read == 0 {
            break;
        }
        line_number += 1;
        let whole = line.ends_with('\n');
        let text = line.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        let problem_at = |walk: &Walk, kind| Problem {
            seq: walk.verified_through + 1,
            kind,
        };
        if ended {
            let problem = problem_at(&walk, ProblemKind::AfterEnd { line: line_number });
            return Ok(walk.finish(Some(problem)));
        }
        match walk.export_line(text, line_number) {
            Ok(None) => {}
            Ok(Some(end)) => {
                if let Err(detail) = walk.matches_end(&end) {
                    let problem = problem_at(&walk, ProblemKind::EndMismatch { detail });
                    return Ok(walk.finish(Some(problem)));
                }
                ended = true;
            }
            // A last line without its newline that does not parse was cut inside.
            Err(problem) if !whole && matches!(problem.kind, ProblemKind::Unreadable { .. }) => {
                let problem = problem_at(&walk, ProblemKind::CutMidLine { line: line_number });
                return Ok(walk.finish(Some(problem)));
            }
            Err(mut problem) => {
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
    }
    walk.terminated = Some(ended);
    let problem = if ended {
        None
    } else {
        Some(Problem {
            seq: walk.verified_through + 1,
            kind: ProblemKind::Unterminated,
        })
    };
    let problem = problem.or_else(|| walk.unmet_expectation(&options, walk.watched_hash));
    Ok(walk.finish(problem))
}

/// Verifies a data directory offline (the server must not hold it open).
pub fn verify_data_dir(dir: &Path, options: VerifyOptions) -> Result<VerifyOutcome, AuditError> {
    let log = open_log_offline(dir)?;
    let outcome = verify_log(&log.view(), options);
    log.close();
    outcome
}

/// Verifies an open log: the stored bytes of every event (a non-canonical re-encoding is caught
/// too), then every checkpoint in `meta`.
pub fn verify_log(log: &LogView, options: VerifyOptions) -> Result<VerifyOutcome, AuditError> {
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
    if problem.is_none() {
        let watched = match options.expect_head {
            Some(head) if head.seq <= walk.verified_through => log.get(head.seq)?.map(|e| e.hash),
            _ => None,
        };
        problem = walk.unmet_expectation(&options, watched);
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
    /// The seq whose chain hash to keep (`expect_head`), and that hash once passed.
    watch: Option<Seq>,
    watched_hash: Option<Hash>,
    checkpoint_lines: u64,
    terminated: Option<bool>,
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
            watch: None,
            watched_hash: None,
            checkpoint_lines: 0,
            terminated: None,
        }
    }

    /// Whether an export's end record describes what this walk read.
    fn matches_end(&self, end: &EndRecord) -> Result<(), String> {
        let last_seq = self.first.map(|_| self.verified_through);
        let head_hash = last_seq.map(|_| hash_hex(&self.prev_hash));
        if end.events == self.events
            && end.checkpoints == self.checkpoint_lines
            && end.first_seq == self.first
            && end.last_seq == last_seq
            && end.head_hash == head_hash
        {
            return Ok(());
        }
        let describe = |events: u64, checkpoints: u64, last: Option<Seq>| {
            let through = last.map_or_else(String::new, |seq| format!(" through seq {seq}"));
            format!("{events} events{through} and {checkpoints} checkpoints")
        };
        Err(format!(
            "it says {}, the file holds {}",
            describe(end.events, end.checkpoints, end.last_seq),
            describe(self.events, self.checkpoint_lines, last_seq)
        ))
    }

    /// The first of `require_checkpoint` and `expect_head` that the verified log does not meet;
    /// `watched` is the chain hash at the expected head's seq, when the log has it.
    fn unmet_expectation(&self, options: &VerifyOptions, watched: Option<Hash>) -> Option<Problem> {
        if let Some(head) = options.expect_head {
            if self.first.is_none() || self.verified_through < head.seq {
                return Some(Problem {
                    seq: head.seq,
                    kind: ProblemKind::HeadNotReached {
                        expected: head.seq,
                        reached: self.verified_through,
                    },
                });
            }
            if watched != Some(head.hash) {
                return Some(Problem {
                    seq: head.seq,
                    kind: ProblemKind::HeadMismatch {
                        expected: hash_hex(&head.hash),
                        found: watched.map_or_else(|| "unknown".to_owned(), |h| hash_hex(&h)),
                    },
                });
            }
        }
        let signed_through = self.last_checkpoint.map(|c| c.seq);
        let covered = signed_through.is_some_and(|seq| seq >= self.verified_through);
        if options.require_checkpoint && !covered {
            return Some(Problem {
                seq: signed_through.map_or(self.first.unwrap_or(1), |seq| seq + 1),
                kind: ProblemKind::NotSigned { signed_through },
            });
        }
        None
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
        if self.watch == Some(envelope.seq) {
            self.watched_hash = Some(envelope.hash);
        }
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

    /// Checks one line of an export; the end record is returned for the caller to compare.
    fn export_line(&mut self, line: &str, line_number: u64) -> Result<Option<EndRecord>, Problem> {
        let unreadable = |walk: &Walk, detail: String| Problem {
            seq: walk.expected_seq.unwrap_or(walk.verified_through + 1),
            kind: ProblemKind::Unreadable {
                detail: format!("line {line_number}: {detail}"),
            },
        };
        let envelope = match parse_line(line).map_err(|err| unreadable(self, err))? {
            ParsedLine::Event(envelope) => envelope,
            ParsedLine::End(end) => return Ok(Some(end)),
            ParsedLine::Checkpoint(record) => {
                self.checkpoint_lines += 1;
                let checkpoint = record
                    .to_checkpoint()
                    .map_err(|err| unreadable(self, err))?;
                // A checkpoint line follows the event it signs.
                let chain_hash = (checkpoint.seq == self.verified_through
                    && self.expected_seq.is_some())
                .then_some(self.prev_hash);
                return self
                    .check_checkpoint(&checkpoint, chain_hash)
                    .map(|()| None)
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
        Ok(None)
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
            terminated: self.terminated,
            problem,
        }
    }
}
