//! Key material and what is done with it: the internal key format, peppered hashing, envelope
//! encryption of external secrets, and secret types that never print and zeroize on drop.
//!
//! Architecture invariant: no I/O. The only outside input is the operating system's randomness.

mod envelope;
mod secret;
mod token;

pub use envelope::{DATA_KEY_WRAP_LEN, Keyring, MasterKey, credential_aad};
pub use secret::{SecretBytes, SecretString, constant_time_eq};
pub use token::{
    API_KEY_LEN, API_KEY_PREFIX, ApiKeyFormatError, check_api_key_format, generate_api_key,
    random_base62,
};

/// Why a cryptographic operation failed. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("the operating system's random number generator failed")]
    Random,
    #[error("decryption failed: wrong master key, destroyed data key, or tampered ciphertext")]
    Decrypt,
    #[error("the master key must be exactly 32 bytes (64 hex characters or 44 base64 characters)")]
    MasterKeyFormat,
    #[error("a wrapped data key is malformed")]
    WrappedKeyFormat,
}
