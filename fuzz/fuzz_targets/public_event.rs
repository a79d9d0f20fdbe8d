//! A message of the public NATS stream as subscribers, `keyledger events tail` and other
//! services read it (`keyledger_bus::wire::decode_public` is exactly this `serde_json` call on
//! the domain's `PublicEnvelope`; the decoding is the domain types' own). A decoded envelope
//! must serialise and read back the same.
#![no_main]

use keyledger_domain::public::PublicEnvelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = serde_json::from_slice::<PublicEnvelope>(data) else {
        return;
    };
    let text = serde_json::to_vec(&envelope).expect("a public envelope serialises");
    let again: PublicEnvelope = serde_json::from_slice(&text).expect("it reads back");
    assert_eq!(again, envelope);
});
