//! Secrets at rest in the node store: AES-256-GCM under a node key kept beside the
//! credentials (`<data dir>/pki/node-store.key`, 0600), a fresh random nonce per seal. A copied
//! store file without the key reveals no Secret; the key never leaves the node.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};

use crate::files::{self, FileError};

const KEY_FILE: &str = "node-store.key";
const KEY_LEN: usize = 32;

/// Why a sealed value cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key file is unusable.
    #[error(
        "the node store key {path} is not {KEY_LEN} bytes; delete it and the node store to start afresh"
    )]
    BadKey {
        /// Its path.
        path: String,
    },
    /// Reading or writing the key failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// The system's random source failed.
    #[error("no randomness for the node store key")]
    Random,
    /// A sealed value was altered, or sealed under another key.
    #[error("a sealed value does not open with this node's key")]
    Corrupt,
}

/// The node key.
pub struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl Sealer {
    /// Load the node key from `pki_dir`, creating it on first use.
    ///
    /// # Errors
    /// An unreadable or malformed key file, an unwritable directory.
    pub fn open(pki_dir: &Path) -> Result<Self, SealError> {
        let path = pki_dir.join(KEY_FILE);
        let rng = SystemRandom::new();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                files::create_private_dir(pki_dir)?;
                let mut fresh = [0u8; KEY_LEN];
                rng.fill(&mut fresh).map_err(|_| SealError::Random)?;
                files::write_private(&path, &fresh)?;
                fresh.to_vec()
            }
            Err(source) => {
                return Err(SealError::File(FileError {
                    action: "read",
                    path,
                    source,
                }));
            }
        };
        let bad = || SealError::BadKey {
            path: path.display().to_string(),
        };
        if bytes.len() != KEY_LEN {
            return Err(bad());
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| bad())?;
        Ok(Self {
            key: LessSafeKey::new(key),
            rng,
        })
    }

    /// Seal `plain`: base64 of nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, plain: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
            .map_err(|_| SealError::Corrupt)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(STANDARD.encode(out))
    }

    /// Open what [`seal`](Self::seal) produced.
    pub fn open_sealed(&self, sealed: &str) -> Result<Vec<u8>, SealError> {
        let raw = STANDARD.decode(sealed).map_err(|_| SealError::Corrupt)?;
        if raw.len() < NONCE_LEN {
            return Err(SealError::Corrupt);
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Corrupt)?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut body)
            .map_err(|_| SealError::Corrupt)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = Sealer::open(dir.path()).unwrap();
        let sealed = a.seal(b"password").unwrap();
        assert!(!sealed.contains("password"));
        assert_ne!(sealed, a.seal(b"password").unwrap(), "nonces differ");
        // The key persists: a second open reads the same key.
        let again = Sealer::open(dir.path()).unwrap();
        assert_eq!(again.open_sealed(&sealed).unwrap(), b"password");
        let other_dir = tempfile::tempdir().unwrap();
        let b = Sealer::open(other_dir.path()).unwrap();
        assert!(matches!(b.open_sealed(&sealed), Err(SealError::Corrupt)));
        let mut tampered = STANDARD.decode(&sealed).unwrap();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(a.open_sealed(&STANDARD.encode(tampered)).is_err());
    }

    #[test]
    fn a_malformed_key_is_refused_with_a_way_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        let e = Sealer::open(dir.path()).err().unwrap();
        assert!(e.to_string().contains("delete it"), "{e}");
    }
}
