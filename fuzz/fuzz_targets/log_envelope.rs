//! A stored event as the log reads it: `Envelope::from_bytes` and the in-place
//! `EnvelopeView::from_bytes` must agree, and a decoded envelope must survive re-encoding.
#![no_main]

use keyledger_log::{Envelope, EnvelopeView, compute_hash};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let owned = Envelope::from_bytes(data);
    let view = EnvelopeView::from_bytes(data);
    assert_eq!(owned, view.map(|view| view.to_owned()));
    if let Ok(envelope) = owned {
        let _ = compute_hash(&envelope);
        assert_eq!(Envelope::from_bytes(&envelope.to_bytes()), Ok(envelope));
    }
});
