//! What a backup (or a data directory) holds besides sled's own files, as restore and the
//! offline tools read it: `backup.json`, `data_keys.bin` (its trailing SHA-256 is set to the
//! real digest, so the fuzzer reaches the entries) and checkpoint records in `meta`.
#![no_main]

use keyledger_log::fuzzing::decode_data_keys;
use keyledger_log::{CHECKPOINT_PREFIX, Checkpoint};
use keyledger_vault::fuzzing::parse_backup_manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = parse_backup_manifest(data) {
        let text = serde_json::to_vec(&manifest).expect("a manifest serialises");
        assert_eq!(parse_backup_manifest(&text), Ok(manifest));
    }

    let mut data_keys = data.to_vec();
    data_keys.extend_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    let _ = decode_data_keys(&data_keys);

    // A meta entry: the first 8 bytes are the seq of the key, the rest the value.
    let split = data.len().min(8);
    let mut key = CHECKPOINT_PREFIX.to_vec();
    key.extend_from_slice(&data[..split]);
    if let Some(checkpoint) = Checkpoint::from_meta(&key, &data[split..]) {
        assert_eq!(checkpoint.to_meta_value(), &data[split..]);
        let _ = checkpoint.signature_is_valid();
    }
});
