//! A stored value as the log's readers walk it: one group commit's block of envelopes, or a
//! single envelope as older logs store it. Every envelope found must decode the same way twice,
//! and the envelopes of a damaged block re-encoded must read back as they were.
#![no_main]

use keyledger_log::fuzzing::{encode_block, stored_envelopes};
use keyledger_log::{Envelope, EnvelopeView};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let walked = stored_envelopes(data);
    let mut intact: Vec<&[u8]> = Vec::new();
    for stored in &walked {
        let Ok(stored) = stored else {
            continue;
        };
        assert!(!stored.is_empty());
        let owned = Envelope::from_bytes(stored);
        assert_eq!(
            owned,
            EnvelopeView::from_bytes(stored).map(|view| view.to_owned())
        );
        intact.push(stored);
    }
    if intact.is_empty() {
        return;
    }
    let block = encode_block(intact.iter().copied());
    let again: Vec<&[u8]> = stored_envelopes(&block)
        .into_iter()
        .map(|stored| stored.expect("a block we encoded is intact"))
        .collect();
    assert_eq!(again, intact);
});
