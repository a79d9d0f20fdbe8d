//! An export file (JSON lines) as `keyledger audit verify --export` and replay read it: the
//! offline verifier and the envelope reader must not panic, and every envelope read must
//! export again to a line that reads back as the same envelope.
#![no_main]

use keyledger_audit::ExportedEvent;
use keyledger_audit::read_export_envelopes;
use keyledger_audit::verify::{VerifyOptions, verify_export};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(outcome) = verify_export(data, VerifyOptions::default()) {
        let _ = outcome.render();
    }
    for envelope in read_export_envelopes(data).flatten() {
        let exported = ExportedEvent::from_envelope(&envelope);
        let line = serde_json::to_string(&exported).expect("an exported event serialises");
        let read: Vec<_> = read_export_envelopes(line.as_bytes()).collect();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].as_ref().ok(), Some(&envelope));
    }
});
