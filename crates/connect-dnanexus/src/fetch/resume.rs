//! Opening the partial file for a fetch, and what an earlier attempt left that can be kept.
//!
//! Guarantee: a part is trusted from an earlier attempt only when the resume record names it
//! for this very file (same id, size, part count and MD5) *and* its MD5 still matches on disk;
//! the record is rewritten with exactly those parts before any byte is fetched. Single-part
//! files keep no record.
//!
//! Record format: `keyledger-dnanexus-parts v1`, then `<file id> <size> <part count>`, then
//! `<part index> <md5>` per part written in full.

use std::collections::BTreeSet;
use std::fs::File;
use std::sync::Arc;

use keyledger_connect::{PartialFile, RecordIdentity};

use super::layout::{Layout, PartSpan};
use crate::verify::PartVerifier;
use crate::{DnanexusError, RemoteFile};

const RECORD_FORMAT: &str = "keyledger-dnanexus-parts v1";

/// The partial file, opened and sized, with the parts a previous attempt verified.
pub(super) struct Prepared {
    pub data: Arc<File>,
    pub verified: Vec<bool>,
    /// The resume record, open for appending (multi-part files only).
    pub record: Option<File>,
}

/// Opens the partial file; re-checks the parts the record claims (in one batch); rewrites the
/// record with the parts that still verify. Blocking.
pub(super) fn prepare(
    file: &RemoteFile,
    layout: &Layout,
    partial: &PartialFile,
    verifier: &PartVerifier,
) -> Result<Prepared, DnanexusError> {
    let use_record = layout.parts.len() > 1;
    let identity = format!("{} {} {}", file.version, file.size, layout.parts.len());
    let record_identity = RecordIdentity {
        format: RECORD_FORMAT,
        identity: &identity,
    };
    let opened = partial.open(file.size, use_record.then_some(record_identity))?;
    let claimed = claimed_parts(&opened.claims, layout);
    let verified = recheck_claimed_parts(&opened.file, layout, &claimed, verifier);
    let record = if use_record {
        let claims: Vec<String> = layout
            .parts
            .iter()
            .zip(&verified)
            .filter(|(_, ok)| **ok)
            .map(|(part, _)| claim(part))
            .collect();
        Some(partial.start_record(record_identity, &claims)?)
    } else {
        // Only an earlier attempt can have left one. A fresh file skips the unlink, which
        // takes the folder's lock that the parallel fetches' creates need.
        if !opened.fresh {
            partial.remove_record()?;
        }
        None
    };
    Ok(Prepared {
        data: Arc::new(opened.file),
        verified,
        record,
    })
}

/// The record's line for a part written in full.
pub(super) fn claim(part: &PartSpan) -> String {
    format!("{} {}", part.index, part.md5.as_deref().unwrap_or_default())
}

/// Part indices the record claims complete with the MD5 the listing gives them.
fn claimed_parts(claims: &[String], layout: &Layout) -> BTreeSet<u32> {
    claims
        .iter()
        .filter_map(|line| {
            let (index, md5) = line.split_once(' ')?;
            let index: u32 = index.parse().ok()?;
            let part = layout.parts.iter().find(|part| part.index == index)?;
            (part.md5.as_deref() == Some(md5)).then_some(index)
        })
        .collect()
}

/// Which parts still have their MD5 on disk, of those the record claims (a fresh fetch claims
/// nothing and reads nothing).
fn recheck_claimed_parts(
    data: &File,
    layout: &Layout,
    claimed: &BTreeSet<u32>,
    verifier: &PartVerifier,
) -> Vec<bool> {
    let mut verified = vec![false; layout.parts.len()];
    let checks: Vec<(usize, &PartSpan, &str)> = layout
        .parts
        .iter()
        .enumerate()
        .filter(|(_, part)| claimed.contains(&part.index))
        .filter_map(|(at, part)| Some((at, part, part.md5.as_deref()?)))
        .collect();
    let ranges: Vec<(&File, u64, u64)> = checks
        .iter()
        .map(|(_, part, _)| (data, part.offset, part.size))
        .collect();
    for ((at, _, expected), digest) in checks.iter().zip(verifier.md5_now(&ranges)) {
        verified[*at] = digest.is_ok_and(|digest| hex(&digest) == *expected);
    }
    verified
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
