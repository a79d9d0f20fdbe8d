//! What a client presents as a credential: internal keys (`kl_…`: format and checksum, then
//! the lookup) and session tokens (`kls_…`). A session's tag is checked after its claims are
//! taken apart (it covers the key's secret hash), so arbitrary claims reach the parser; they
//! are also wrapped in a well-formed token to check that the parser reads back what was put in.
#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use keyledger_crypto::{Keyring, MasterKey, check_api_key_format};
use keyledger_domain::{State, Timestamp};
use keyledger_vault::fuzzing::session_claims;
use keyledger_vault::{SESSION_PREFIX, check_api_key};
use libfuzzer_sys::fuzz_target;

fn keyring() -> &'static Keyring {
    static KEYRING: OnceLock<Keyring> = OnceLock::new();
    KEYRING.get_or_init(|| {
        let master = MasterKey::parse(&"ab".repeat(32)).expect("64 hex digits are a master key");
        Keyring::new(&master).expect("a keyring from a fixed master key")
    })
}

fuzz_target!(|data: &[u8]| {
    let keyring = keyring();
    if let Ok(presented) = std::str::from_utf8(data) {
        let _ = check_api_key_format(presented);
        let _ = check_api_key(
            &State::default(),
            keyring,
            presented,
            Timestamp::from_millis(0),
        );
        let _ = session_claims(presented);
    }

    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let tag = keyring.sign_session(data);
    let token = format!("{SESSION_PREFIX}{}.{}", b64.encode(data), b64.encode(tag));
    let parsed = session_claims(&token);
    let expected = std::str::from_utf8(data).ok().and_then(|claims| {
        let (key, expires) = claims.split_once('|')?;
        Some((key.to_owned(), expires.parse::<i64>().ok()?))
    });
    assert_eq!(parsed.ok(), expected);
});
