//! Audit tools over keyledger's hash-chained event log.
//!
//! - [`export`]: the JSON-lines export (public event fields plus what verification needs:
//!   stream, version, hashes and the encoded body), with signed checkpoints interleaved.
//! - [`verify`]: offline verification of an export or a data directory: the chain, the public
//!   fields against the bodies, and every checkpoint signature; reports the first bad seq and why.
//! - [`replay`]: the state as of any seq or time, and what changed between two moments.
//! - [`shredded`]: which external keys were crypto-shredded, and an attempt to open them anyway.
//! - [`backup`]: restoring a backup made by `Vault::backup_to` and checking it.
//!
//! Architecture invariants: nothing here writes to a log except `admin` operations (rotation,
//! restore), and everything that reads one verifies the chain as it goes. This is a library:
//! it returns typed results and [`AuditError`]s and prints nothing; the `keyledger audit …`
//! commands (arguments, tables on standard output, `--remote` over HTTP) live in the binary
//! (`crates/cli/src/audit`).

pub mod backup;
mod error;
pub mod export;
pub mod replay;
pub mod shredded;
mod source;
mod table;
pub mod verify;

pub use error::AuditError;
pub use export::{
    CheckpointRecord, EndRecord, EndTally, ExportLine, ExportPage, ExportSummary, ExportedEvent,
    PublicKeyInfo, checkpoint_now, export_jsonl, export_page, public_key, public_key_info,
};
pub use source::{open_log_offline, read_export_envelopes};
