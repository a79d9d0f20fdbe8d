//! An event body as the vault decodes it from the log (replay, replicas, exports): decoding
//! must not panic, a decoded event must survive re-encoding, and its public form (what NATS
//! and exports carry) must serialise.
#![no_main]

use keyledger_domain::public::PublicEvent;
use keyledger_vault::{decode_event, encode_event};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = decode_event(data) else {
        return;
    };
    let encoded = encode_event(&event).expect("a decoded event encodes again");
    assert_eq!(decode_event(&encoded), Ok(event.clone()));
    let public = PublicEvent::from(&event);
    serde_json::to_string(&public).expect("a public event serialises");
});
