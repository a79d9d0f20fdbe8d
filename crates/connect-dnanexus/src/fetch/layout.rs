//! How a file is cut: where each part lives, and the lanes (ranged GETs) that fetch it.
//!
//! Guarantee: lanes are at most `chunk_size` bytes, never cross a part boundary, and are queued
//! in file order, so the ranges in flight stay next to each other and the whole-file SHA-256
//! keeps pace with the transfer.

use std::sync::atomic::AtomicU64;

use crate::{DnanexusError, RemoteFile};

/// Where each part lives in the file.
#[derive(Clone, Debug)]
pub(super) struct Layout {
    pub parts: Vec<PartSpan>,
}

#[derive(Clone, Debug)]
pub(super) struct PartSpan {
    pub index: u32,
    pub offset: u64,
    pub size: u64,
    pub md5: Option<String>,
}

impl Layout {
    pub fn of(file: &RemoteFile) -> Result<Self, DnanexusError> {
        let id = &file.version;
        let listed = &file.location.parts;
        if listed.is_empty() && file.size > 0 {
            return Err(DnanexusError::InvalidInput(format!(
                "{id} has no parts; list it again"
            )));
        }
        let mut offset = 0;
        let mut parts = Vec::with_capacity(listed.len());
        for part in listed {
            if let Some(md5) = &part.md5
                && (md5.len() != 32 || !md5.bytes().all(|byte| byte.is_ascii_hexdigit()))
            {
                return Err(DnanexusError::InvalidInput(format!(
                    "{id} part {} has a malformed MD5",
                    part.index
                )));
            }
            parts.push(PartSpan {
                index: part.index,
                offset,
                size: part.size,
                md5: part.md5.as_ref().map(|md5| md5.to_ascii_lowercase()),
            });
            offset += part.size;
        }
        if offset != file.size {
            return Err(DnanexusError::InvalidInput(format!(
                "{id}: parts add up to {offset} bytes but the file has {}",
                file.size
            )));
        }
        Ok(Self { parts })
    }
}

/// A part as one attempt handles it.
pub(super) struct PartTrack {
    pub span: PartSpan,
    /// Its MD5 is to be checked in this attempt (it has one and was not verified before).
    pub check: bool,
    /// Bytes of this part written in this attempt.
    pub written: AtomicU64,
}

/// A contiguous span of one part fetched by one ranged GET (resumed by more after a break).
#[derive(Clone, Copy, Debug)]
pub(super) struct Lane {
    pub part: usize,
    pub start: u64,
    pub end: u64,
}

/// Lanes for the parts still to fetch, in file order: each part cut into spans of at most
/// `chunk_size` (an empty part gets one empty lane).
pub(super) fn plan_lanes(parts: &[PartTrack], pending: &[usize], chunk_size: u64) -> Vec<Lane> {
    let mut lanes = Vec::new();
    for &at in pending {
        let span = &parts[at].span;
        let end = span.offset + span.size;
        let mut start = span.offset;
        loop {
            let lane_end = start.saturating_add(chunk_size).min(end);
            lanes.push(Lane {
                part: at,
                start,
                end: lane_end,
            });
            if lane_end >= end {
                break;
            }
            start = lane_end;
        }
    }
    lanes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_are_chunks_in_file_order() {
        let track = |offset: u64, size: u64| PartTrack {
            span: PartSpan {
                index: 1,
                offset,
                size,
                md5: None,
            },
            check: false,
            written: AtomicU64::new(0),
        };
        let mib = 1u64 << 20;
        let one_part = [track(0, 100 * mib)];
        let lanes = plan_lanes(&one_part, &[0], 16 * mib);
        assert_eq!(lanes.len(), 7, "100 MiB is 7 chunks of 16 MiB");
        assert_eq!(lanes.first().map(|lane| lane.start), Some(0));
        assert_eq!(lanes.last().map(|lane| lane.end), Some(100 * mib));
        assert!(lanes.windows(2).all(|pair| pair[0].end == pair[1].start));
        let many: Vec<PartTrack> = (0..16).map(|i| track(i * 64 * mib, 64 * mib)).collect();
        let pending: Vec<usize> = (0..16).collect();
        let lanes = plan_lanes(&many, &pending, 8 * mib);
        assert_eq!(lanes.len(), 128, "8 chunks per 64 MiB part");
        assert!(lanes.windows(2).all(|pair| pair[0].end == pair[1].start));
        assert!(
            lanes.iter().all(|lane| {
                let span = &many[lane.part].span;
                lane.start >= span.offset && lane.end <= span.offset + span.size
            }),
            "no lane crosses a part boundary"
        );
        let empty = [track(0, 0)];
        assert_eq!(
            plan_lanes(&empty, &[0], mib).len(),
            1,
            "an empty part still gets its lane"
        );
    }
}
