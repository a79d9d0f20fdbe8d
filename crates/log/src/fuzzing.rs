//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, never on in the service):
//! the crate's private decoders of stored bytes, reachable without opening a log. Each calls
//! the real decoder; nothing here decodes on its own.

use std::collections::BTreeMap;

use crate::LogError;

/// The envelopes of a stored value (a block), as the log's readers walk it.
pub fn stored_envelopes(value: &[u8]) -> Vec<Result<&[u8], ()>> {
    crate::block::stored_envelopes(value).collect()
}

/// The stored value of one group commit holding `envelopes`.
pub fn encode_block<'a>(envelopes: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    crate::block::encode_block(envelopes)
}

/// Decodes the bytes of `data_keys.bin` (in a data directory or a backup).
pub fn decode_data_keys(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, LogError> {
    crate::stores::decode_data_keys(bytes)
}
