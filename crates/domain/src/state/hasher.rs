//! The hasher of the verification index.

/// Hashes a [`crate::SecretHash`] by its first 8 bytes: it is already an HMAC output, uniformly random,
/// so hashing it again (SipHash) would only cost time on every verification.
#[derive(Clone, Copy, Debug, Default)]
pub struct SecretHashBuilder;

#[derive(Default)]
pub struct PrefixHasher(u64);

impl std::hash::Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for (i, byte) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*byte) << (8 * i);
        }
    }
}

impl std::hash::BuildHasher for SecretHashBuilder {
    type Hasher = PrefixHasher;

    fn build_hasher(&self) -> PrefixHasher {
        PrefixHasher::default()
    }
}
