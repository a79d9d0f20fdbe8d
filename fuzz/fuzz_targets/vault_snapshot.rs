//! A projection snapshot file as start-up reads it. The payload digest in the header is set to
//! the payload's real SHA-256 first, so the fuzzer reaches the payload decoder; the signature
//! check (which needs the vault's key) is not part of this target.
#![no_main]

use keyledger_vault::fuzzing::decode_snapshot;
use libfuzzer_sys::fuzz_target;

/// Magic, seq, hash, digest, public key, signature (see crates/vault/src/snapshot.rs).
const HEADER_LEN: usize = 8 + 8 + 32 + 32 + 32 + 64;
const DIGEST_AT: usize = 8 + 8 + 32;

fuzz_target!(|data: &[u8]| {
    let mut file = data.to_vec();
    if file.len() >= HEADER_LEN {
        let digest = ring::digest::digest(&ring::digest::SHA256, &file[HEADER_LEN..]);
        file[DIGEST_AT..DIGEST_AT + 32].copy_from_slice(digest.as_ref());
    }
    let _ = decode_snapshot(&file);
});
