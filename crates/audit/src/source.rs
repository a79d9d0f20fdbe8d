//! Where audit tools read events from: a data directory opened offline, or an export file.

use std::io::BufRead;
use std::path::Path;

use keyledger_log::{Envelope, EventLog, LogConfig, LogError};

use crate::AuditError;
use crate::export::{ParsedLine, parse_line};

/// Opens the log of a data directory for reading, without the master key. Nothing is appended;
/// the writer thread starts and stops idle. Refuses a directory without a log (instead of
/// creating an empty one) and says so when a running server holds it.
pub fn open_log_offline(data_dir: &Path) -> Result<EventLog, AuditError> {
    let log_dir = data_dir.join("log");
    if !log_dir.join("db").is_file() {
        return Err(AuditError::NotADataDir(data_dir.to_path_buf()));
    }
    EventLog::open(LogConfig::new(&log_dir), Box::new(|_: &[Envelope]| {})).map_err(|err| match err
    {
        LogError::Locked { .. } => AuditError::InUse(data_dir.to_path_buf()),
        other => AuditError::Log(other),
    })
}

/// The envelopes of an export, in file order; checkpoint lines and the end record are skipped
/// (`audit verify` is what checks the file is whole).
pub fn read_export_envelopes(
    reader: impl BufRead,
) -> impl Iterator<Item = Result<Envelope, AuditError>> {
    reader.lines().enumerate().filter_map(|(index, line)| {
        let line = match line {
            Ok(line) => line,
            Err(err) => return Some(Err(AuditError::io("export", err))),
        };
        if line.trim().is_empty() {
            return None;
        }
        match parse_line(&line) {
            Ok(ParsedLine::Event(envelope)) => Some(Ok(envelope)),
            Ok(ParsedLine::Checkpoint(_) | ParsedLine::End(_)) => None,
            Err(reason) => Some(Err(AuditError::Export {
                line: index as u64 + 1,
                reason,
            })),
        }
    })
}
