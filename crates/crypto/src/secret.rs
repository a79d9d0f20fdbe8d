use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A secret string (an internal key, an AWS secret, a DNAnexus token). Prints as `[redacted]`,
/// compares in constant time, and is wiped from memory when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: String) -> SecretString {
        SecretString(value)
    }

    /// The secret itself. Call sites are the places a secret is deliberately used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        SecretString(value)
    }
}

impl PartialEq for SecretString {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for SecretString {}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Secret bytes (a decrypted credential, a data key). Same guarantees as [`SecretString`].
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(value: Vec<u8>) -> SecretBytes {
        SecretBytes(value)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Interprets the bytes as UTF-8 text, keeping them secret.
    pub fn into_secret_string(mut self) -> Option<SecretString> {
        let bytes = std::mem::take(&mut self.0);
        match String::from_utf8(bytes) {
            Ok(text) => Some(SecretString(text)),
            Err(err) => {
                let mut bytes = err.into_bytes();
                bytes.zeroize();
                None
            }
        }
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Compares two byte strings without leaking, through timing, where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
