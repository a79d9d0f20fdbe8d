//! The master key and everything derived from it.
//!
//! - The pepper for internal-key hashes: a random 256-bit value the vault keeps sealed under the
//!   master key ([`Keyring::with_pepper`]), so a master-key rotation leaves every stored hash
//!   valid (see docs/decisions/0005).
//! - The wrapping key for data keys: HKDF(master, "keyledger/wrap/v1").
//! - Each external secret gets a fresh 256-bit data key; the secret is sealed with it
//!   (AES-256-GCM, AAD = key id, owner, provider) and the data key is wrapped by the wrapping key
//!   (AES-256-GCM, AAD = key id). Destroying the wrapped data key destroys the secret for good.

use std::fmt;

use base64::Engine;
use keyledger_domain::{ExternalKeyId, Provider, SealedSecret, SecretHash, UserId};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{CryptoError, SecretBytes};

const TAG_LEN: usize = 16;
/// Length of a wrapped data key: nonce, 32 key bytes, tag.
pub const DATA_KEY_WRAP_LEN: usize = NONCE_LEN + 32 + TAG_LEN;

/// The root of all key material. Prints as `[redacted]` and zeroizes on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    pub fn generate(rng: &SystemRandom) -> Result<MasterKey, CryptoError> {
        let mut bytes = [0u8; 32];
        rng.fill(&mut bytes).map_err(|_| CryptoError::Random)?;
        Ok(MasterKey(bytes))
    }

    /// Reads 64 hex characters or standard base64 of 32 bytes (whitespace ignored).
    pub fn parse(text: &str) -> Result<MasterKey, CryptoError> {
        let text = text.trim();
        let mut bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| CryptoError::MasterKeyFormat)?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| CryptoError::MasterKeyFormat)?
        };
        let result = <[u8; 32]>::try_from(bytes.as_slice())
            .map(MasterKey)
            .map_err(|_| CryptoError::MasterKeyFormat);
        bytes.zeroize();
        result
    }

    /// The text form written to `master.key`: base64.
    pub fn to_text(&self) -> SecretBytes {
        SecretBytes::new(
            base64::engine::general_purpose::STANDARD
                .encode(self.0)
                .into_bytes(),
        )
    }

    /// A short, non-secret fingerprint to tell master keys apart in logs and errors.
    pub fn fingerprint(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.0);
        digest.as_ref()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

/// Keys derived from one master key, ready to use.
pub struct Keyring {
    pepper: hmac::Key,
    sessions: hmac::Key,
    tickets: hmac::Key,
    wrapping: LessSafeKey,
    fingerprint: String,
    rng: SystemRandom,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring(master {})", self.fingerprint)
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn derive(master: &MasterKey, label: &[u8]) -> Result<[u8; 32], CryptoError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"keyledger").extract(&master.0);
    let info = [label];
    let okm = prk
        .expand(&info, Len(32))
        .map_err(|_| CryptoError::Random)?;
    let mut out = [0u8; 32];
    okm.fill(&mut out).map_err(|_| CryptoError::Random)?;
    Ok(out)
}

fn aes_key(bytes: &[u8]) -> Result<LessSafeKey, CryptoError> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| CryptoError::Random)
}

/// The associated data that binds a sealed secret to its key id, owner and provider: a
/// ciphertext moved to another record does not open.
pub fn credential_aad(key: &ExternalKeyId, owner: &UserId, provider: Provider) -> Vec<u8> {
    format!("keyledger/credential/v1|{key}|{owner}|{provider}").into_bytes()
}

fn wrap_aad(key_id: &str) -> Vec<u8> {
    format!("keyledger/data-key/v1|{key_id}").into_bytes()
}

/// Length of a pepper for internal-key hashes.
const PEPPER_LEN: usize = 32;

impl Keyring {
    /// A keyring for wrapping, unwrapping and sessions under `master`. Its pepper is derived from
    /// the master key, so its key hashes match nothing the vault stores: the vault hashes keys
    /// with the sealed pepper ([`Keyring::with_pepper`]).
    pub fn new(master: &MasterKey) -> Result<Keyring, CryptoError> {
        let mut derived = derive(master, b"keyledger/pepper/v1")?;
        let pepper = SecretBytes::new(derived.to_vec());
        derived.zeroize();
        Keyring::with_pepper(master, &pepper)
    }

    /// A keyring with the given pepper (32 bytes) for internal-key hashes. Wrapping and session
    /// keys still come from the master key; the pepper does not, so it survives a rotation.
    pub fn with_pepper(master: &MasterKey, pepper: &SecretBytes) -> Result<Keyring, CryptoError> {
        // A pepper comes from `generate_pepper` through authenticated sealing;
        // any other length means it was not one.
        if pepper.expose().len() != PEPPER_LEN {
            return Err(CryptoError::Decrypt);
        }
        let mut wrapping = derive(master, b"keyledger/wrap/v1")?;
        let mut sessions = derive(master, b"keyledger/session/v1")?;
        let mut tickets = derive(master, b"keyledger/job-ticket/v1")?;
        let keyring = aes_key(&wrapping).map(|wrapping| Keyring {
            pepper: hmac::Key::new(hmac::HMAC_SHA256, pepper.expose()),
            sessions: hmac::Key::new(hmac::HMAC_SHA256, &sessions),
            tickets: hmac::Key::new(hmac::HMAC_SHA256, &tickets),
            wrapping,
            fingerprint: master.fingerprint(),
            rng: SystemRandom::new(),
        });
        wrapping.zeroize();
        sessions.zeroize();
        tickets.zeroize();
        keyring
    }

    /// A fresh random pepper.
    pub fn generate_pepper(rng: &SystemRandom) -> Result<SecretBytes, CryptoError> {
        let mut pepper = vec![0u8; PEPPER_LEN];
        rng.fill(&mut pepper).map_err(|_| CryptoError::Random)?;
        Ok(SecretBytes::new(pepper))
    }

    pub fn rng(&self) -> &SystemRandom {
        &self.rng
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// HMAC-SHA256(pepper, key): what is stored and looked up instead of the key.
    pub fn hash_api_key(&self, key: &str) -> SecretHash {
        let tag = hmac::sign(&self.pepper, key.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        SecretHash(out)
    }

    /// The AWS external ID of `user`: `kl-` and 32 hex digits of HMAC-SHA256(pepper, a label
    /// and the user's handle). Stable for as long as the pepper (which a master-key rotation
    /// keeps), different for every user and deployment, and unguessable without the pepper,
    /// so one customer cannot name another's (decision 0023). Not a secret once shown.
    pub fn aws_external_id(&self, user: &str) -> String {
        let mut input = b"keyledger/aws-external-id/v1\0".to_vec();
        input.extend_from_slice(user.as_bytes());
        let tag = hmac::sign(&self.pepper, &input);
        let mut id = String::with_capacity(35);
        id.push_str("kl-");
        for byte in &tag.as_ref()[..16] {
            id.push_str(&format!("{byte:02x}"));
        }
        id
    }

    /// Authenticates a session token's claims (HMAC-SHA256 under a key derived for sessions).
    pub fn sign_session(&self, claims: &[u8]) -> [u8; 32] {
        let tag = hmac::sign(&self.sessions, claims);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// The ticket of an ingestion job on the work queue (HMAC-SHA256 under a key derived for
    /// tickets): only a worker the queue handed the job can present it (decision 0025).
    pub fn sign_job_ticket(&self, ingestion: &str) -> [u8; 32] {
        let tag = hmac::sign(&self.tickets, ingestion.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Checks a job ticket in constant time.
    pub fn verify_job_ticket(&self, ingestion: &str, ticket: &[u8]) -> bool {
        hmac::verify(&self.tickets, ingestion.as_bytes(), ticket).is_ok()
    }

    /// Checks a session token's tag in constant time.
    pub fn verify_session(&self, claims: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.sessions, claims, tag).is_ok()
    }

    /// Seals a secret under a fresh data key. Returns the wrapped data key (to store outside the
    /// log) and the sealed secret (to record in the log).
    pub fn seal(
        &self,
        key_id: &str,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<(Vec<u8>, SealedSecret), CryptoError> {
        let mut data_key = [0u8; 32];
        self.rng
            .fill(&mut data_key)
            .map_err(|_| CryptoError::Random)?;
        let sealed = seal_with(&aes_key(&data_key)?, &self.rng, plaintext, aad);
        let wrapped = sealed.and_then(|sealed| {
            let wrapped = seal_with(&self.wrapping, &self.rng, &data_key, &wrap_aad(key_id))?;
            let mut bytes = Vec::with_capacity(DATA_KEY_WRAP_LEN);
            bytes.extend_from_slice(&wrapped.nonce);
            bytes.extend_from_slice(&wrapped.ciphertext);
            Ok((bytes, sealed))
        });
        data_key.zeroize();
        wrapped
    }

    /// Opens a sealed secret with its wrapped data key.
    pub fn open(
        &self,
        key_id: &str,
        wrapped: &[u8],
        sealed: &SealedSecret,
        aad: &[u8],
    ) -> Result<SecretBytes, CryptoError> {
        let data_key = self.unwrap_data_key(key_id, wrapped)?;
        open_with(&aes_key(data_key.expose())?, sealed, aad)
    }

    /// Re-wraps a data key under another keyring (master-key rotation). The secret it protects
    /// is never decrypted.
    pub fn rewrap(
        &self,
        key_id: &str,
        wrapped: &[u8],
        to: &Keyring,
    ) -> Result<Vec<u8>, CryptoError> {
        let data_key = self.unwrap_data_key(key_id, wrapped)?;
        let rewrapped = seal_with(&to.wrapping, &to.rng, data_key.expose(), &wrap_aad(key_id))?;
        let mut bytes = Vec::with_capacity(DATA_KEY_WRAP_LEN);
        bytes.extend_from_slice(&rewrapped.nonce);
        bytes.extend_from_slice(&rewrapped.ciphertext);
        Ok(bytes)
    }

    fn unwrap_data_key(&self, key_id: &str, wrapped: &[u8]) -> Result<SecretBytes, CryptoError> {
        if wrapped.len() != DATA_KEY_WRAP_LEN {
            return Err(CryptoError::WrappedKeyFormat);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&wrapped[..NONCE_LEN]);
        let sealed = SealedSecret {
            nonce,
            ciphertext: wrapped[NONCE_LEN..].to_vec(),
        };
        open_with(&self.wrapping, &sealed, &wrap_aad(key_id))
    }
}

fn seal_with(
    key: &LessSafeKey,
    rng: &SystemRandom,
    plaintext: &[u8],
    aad: &[u8],
) -> Result<SealedSecret, CryptoError> {
    // Random 96-bit nonces: each data key seals exactly one message, so reuse is impossible; the
    // wrapping key stays far below the 2^32 messages a random nonce allows.
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce).map_err(|_| CryptoError::Random)?;
    let mut buffer = plaintext.to_vec();
    let sealed = key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut buffer,
    );
    if sealed.is_err() {
        buffer.zeroize();
        return Err(CryptoError::Random);
    }
    Ok(SealedSecret {
        nonce,
        ciphertext: buffer,
    })
}

fn open_with(
    key: &LessSafeKey,
    sealed: &SealedSecret,
    aad: &[u8],
) -> Result<SecretBytes, CryptoError> {
    let mut buffer = sealed.ciphertext.clone();
    let opened = key.open_in_place(
        Nonce::assume_unique_for_key(sealed.nonce),
        Aad::from(aad),
        &mut buffer,
    );
    let len = match opened {
        Ok(plaintext) => plaintext.len(),
        Err(_) => {
            buffer.zeroize();
            return Err(CryptoError::Decrypt);
        }
    };
    buffer.truncate(len);
    Ok(SecretBytes::new(buffer))
}

#[cfg(test)]
mod tests {
    use keyledger_domain::FromTrusted;

    use super::*;

    fn keyring() -> Keyring {
        Keyring::new(&MasterKey::generate(&SystemRandom::new()).unwrap()).unwrap()
    }

    #[test]
    fn seal_open_round_trip_and_binding() {
        let ring = keyring();
        let owner = UserId::from_trusted("alice".into());
        let key = ExternalKeyId::from_trusted("ext_0123456789abcdef".into());
        let aad = credential_aad(&key, &owner, Provider::Aws);
        let (wrapped, sealed) = ring.seal(key.as_str(), b"canary-secret", &aad).unwrap();
        assert_eq!(wrapped.len(), DATA_KEY_WRAP_LEN);
        assert!(!sealed.ciphertext.windows(6).any(|w| w == b"canary"));
        assert_eq!(
            ring.open(key.as_str(), &wrapped, &sealed, &aad)
                .unwrap()
                .expose(),
            b"canary-secret"
        );

        // Another owner, provider, key id or master key: nothing opens.
        let other = credential_aad(&key, &UserId::from_trusted("bob".into()), Provider::Aws);
        assert_eq!(
            ring.open(key.as_str(), &wrapped, &sealed, &other)
                .unwrap_err(),
            CryptoError::Decrypt
        );
        let other = credential_aad(&key, &owner, Provider::Dnanexus);
        assert_eq!(
            ring.open(key.as_str(), &wrapped, &sealed, &other)
                .unwrap_err(),
            CryptoError::Decrypt
        );
        assert_eq!(
            ring.open("ext_other", &wrapped, &sealed, &aad).unwrap_err(),
            CryptoError::Decrypt
        );
        assert_eq!(
            keyring()
                .open(key.as_str(), &wrapped, &sealed, &aad)
                .unwrap_err(),
            CryptoError::Decrypt
        );
    }

    #[test]
    fn rewrap_moves_data_keys_to_the_new_master() {
        let (old, new) = (keyring(), keyring());
        let (wrapped, sealed) = old.seal("ext_1", b"token", b"aad").unwrap();
        let rewrapped = old.rewrap("ext_1", &wrapped, &new).unwrap();
        assert_eq!(
            new.open("ext_1", &rewrapped, &sealed, b"aad")
                .unwrap()
                .expose(),
            b"token"
        );
        assert!(old.open("ext_1", &rewrapped, &sealed, b"aad").is_err());
    }

    #[test]
    fn pepper_depends_on_the_master_key() {
        let (a, b) = (keyring(), keyring());
        assert_eq!(a.hash_api_key("kl_x"), a.hash_api_key("kl_x"));
        assert_ne!(a.hash_api_key("kl_x"), b.hash_api_key("kl_x"));
    }

    #[test]
    fn a_kept_pepper_keeps_hashes_across_master_keys() {
        let rng = SystemRandom::new();
        let (old, new) = (
            MasterKey::generate(&rng).unwrap(),
            MasterKey::generate(&rng).unwrap(),
        );
        let pepper = Keyring::generate_pepper(&rng).unwrap();
        let before = Keyring::with_pepper(&old, &pepper).unwrap();
        let after = Keyring::with_pepper(&new, &pepper).unwrap();
        assert_eq!(before.hash_api_key("kl_x"), after.hash_api_key("kl_x"));
        // Wrapping still follows the master key: the old one opens nothing sealed by the new one.
        let (wrapped, sealed) = after.seal("ext_1", b"token", b"aad").unwrap();
        assert!(before.open("ext_1", &wrapped, &sealed, b"aad").is_err());
        assert_eq!(
            Keyring::with_pepper(&old, &SecretBytes::new(vec![1; 31])).unwrap_err(),
            CryptoError::Decrypt
        );
    }

    #[test]
    fn master_key_text_round_trips_and_never_prints() {
        let master = MasterKey::generate(&SystemRandom::new()).unwrap();
        let text = String::from_utf8(master.to_text().expose().to_vec()).unwrap();
        assert_eq!(
            MasterKey::parse(&text).unwrap().fingerprint(),
            master.fingerprint()
        );
        assert_eq!(MasterKey::parse(&"ab".repeat(32)).unwrap().0, [0xab; 32]);
        assert!(MasterKey::parse("short").is_err());
        assert_eq!(format!("{master:?}"), "MasterKey([redacted])");
    }
}
