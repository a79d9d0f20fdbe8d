//! The internal key format: `kl_` + 32 base62 characters of randomness (190 bits) + 6 base62
//! characters of CRC32 over everything before them (GitHub's scheme). A scanner recognises a key
//! offline, and a typo is rejected without a lookup.

use ring::rand::{SecureRandom, SystemRandom};

use crate::{CryptoError, SecretString};

pub const API_KEY_PREFIX: &str = "kl_";
const RANDOM_CHARS: usize = 32;
const CHECKSUM_CHARS: usize = 6;
pub const API_KEY_LEN: usize = API_KEY_PREFIX.len() + RANDOM_CHARS + CHECKSUM_CHARS;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyFormatError {
    #[error("not a keyledger key: it must start with `kl_`")]
    Prefix,
    #[error("not a keyledger key: it must be {API_KEY_LEN} characters long")]
    Length,
    #[error("not a keyledger key: only letters and digits may follow `kl_`")]
    Alphabet,
    #[error("the key's checksum does not match: it was mistyped or truncated")]
    Checksum,
}

/// A fresh internal key and its display hint (`kl_AbCd…wXyZ`).
pub fn generate_api_key(rng: &SystemRandom) -> Result<(SecretString, String), CryptoError> {
    let mut key = String::with_capacity(API_KEY_LEN);
    key.push_str(API_KEY_PREFIX);
    key.push_str(&random_base62(rng, RANDOM_CHARS)?);
    let checksum = base62_fixed(crc32fast::hash(key.as_bytes()), CHECKSUM_CHARS);
    key.push_str(&checksum);
    let hint = api_key_hint(&key);
    Ok((SecretString::new(key), hint))
}

/// The masked form shown in listings: the prefix and 4 characters, an ellipsis, the last 4.
pub fn api_key_hint(key: &str) -> String {
    let head = &key[..API_KEY_PREFIX.len() + 4];
    let tail = &key[key.len() - 4..];
    format!("{head}…{tail}")
}

/// Checks a presented key's shape and checksum, offline.
pub fn check_api_key_format(candidate: &str) -> Result<(), ApiKeyFormatError> {
    let Some(rest) = candidate.strip_prefix(API_KEY_PREFIX) else {
        return Err(ApiKeyFormatError::Prefix);
    };
    if candidate.len() != API_KEY_LEN {
        return Err(ApiKeyFormatError::Length);
    }
    if !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiKeyFormatError::Alphabet);
    }
    let (body, checksum) = candidate.split_at(API_KEY_LEN - CHECKSUM_CHARS);
    // Compared digit by digit, without allocating: this runs on every request.
    let mut value = crc32fast::hash(body.as_bytes());
    for &digit in checksum.as_bytes().iter().rev() {
        if BASE62[(value % 62) as usize] != digit {
            return Err(ApiKeyFormatError::Checksum);
        }
        value /= 62;
    }
    Ok(())
}

/// `len` uniformly random base62 characters (rejection sampling, no modulo bias).
pub fn random_base62(rng: &SystemRandom, len: usize) -> Result<String, CryptoError> {
    let mut out = String::with_capacity(len);
    let mut buffer = [0u8; 64];
    while out.len() < len {
        rng.fill(&mut buffer).map_err(|_| CryptoError::Random)?;
        for byte in buffer {
            // 248 = 4 * 62: bytes at or above it would favour the first characters.
            if byte < 248 && out.len() < len {
                out.push(BASE62[usize::from(byte % 62)] as char);
            }
        }
    }
    Ok(out)
}

fn base62_fixed(mut value: u32, width: usize) -> String {
    let mut digits = vec![b'0'; width];
    for slot in digits.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8(digits).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_format_and_pass_the_check() {
        let rng = SystemRandom::new();
        for _ in 0..200 {
            let (key, hint) = generate_api_key(&rng).unwrap();
            assert_eq!(key.expose().len(), API_KEY_LEN);
            assert_eq!(check_api_key_format(key.expose()), Ok(()));
            assert!(hint.starts_with("kl_") && hint.contains('…'));
            assert_eq!(format!("{key:?}"), "[redacted]");
        }
    }

    #[test]
    fn format_errors_are_specific() {
        let rng = SystemRandom::new();
        let (key, _) = generate_api_key(&rng).unwrap();
        let key = key.expose().to_owned();
        let check = |candidate: &str, expect: Result<(), ApiKeyFormatError>| {
            assert_eq!(check_api_key_format(candidate), expect, "{candidate}");
        };
        check(&key, Ok(()));
        check("", Err(ApiKeyFormatError::Prefix));
        check(&key[1..], Err(ApiKeyFormatError::Prefix));
        check(&key[..key.len() - 1], Err(ApiKeyFormatError::Length));
        check(&format!("{key}x"), Err(ApiKeyFormatError::Length));
        check(
            &format!("{}-{}", &key[..10], &key[11..]),
            Err(ApiKeyFormatError::Alphabet),
        );
        // Every single-character typo in the random part is caught by the checksum.
        let mut typo = key.clone().into_bytes();
        for i in 3..API_KEY_LEN - CHECKSUM_CHARS {
            let original = typo[i];
            typo[i] = if original == b'a' { b'b' } else { b'a' };
            assert_eq!(
                check_api_key_format(std::str::from_utf8(&typo).unwrap()),
                Err(ApiKeyFormatError::Checksum)
            );
            typo[i] = original;
        }
    }

    #[test]
    fn base62_is_fixed_width() {
        assert_eq!(base62_fixed(0, 6), "000000");
        assert_eq!(base62_fixed(61, 6), "00000z");
        assert_eq!(base62_fixed(u32::MAX, 6), "4gfFC3");
    }
}
