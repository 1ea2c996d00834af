//! Join tokens in the K3s form `K10<sha256 hex of the cluster CA PEM>::<id>.<secret>`: the
//! `<id>.<secret>` half is an upstream bootstrap token (6 and 16 characters of `[a-z0-9]`), the
//! `K10` half pins the CA, so a joining agent can verify the server before trusting it.
//! `ledge token create` makes them ([`JoinToken::generate`]); `ledge agent --token` reads them.

use std::fmt;

use rand::Rng;
use sha2::{Digest, Sha256};

/// What a token starts with (K3s' "secure token" format, version 10).
const PREFIX: &str = "K10";
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A token that could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid join token: {0} (expected K10<sha256 of the CA>::<id>.<secret>, as printed by `ledge token create`)"
)]
pub struct TokenError(String);

/// The CA hash a token pins differs from the CA the server presented.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the server's CA does not match the join token: expected sha256 {expected}, the server sent {actual}; refusing to trust it (wrong server, or a token from another cluster)"
)]
pub struct CaMismatch {
    /// The hash in the token.
    pub expected: String,
    /// The hash of what the server sent.
    pub actual: String,
}

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the cluster CA certificate PEM, lower-case hex.
    pub ca_hash: String,
    /// The bootstrap token id (`bootstrap-token-<id>`).
    pub id: String,
    /// The bootstrap token secret.
    pub secret: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret, even in debug logs.
        f.debug_struct("JoinToken")
            .field("ca_hash", &self.ca_hash)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}::{}.{}", self.ca_hash, self.id, self.secret)
    }
}

/// SHA-256 of a CA certificate as served (the PEM bytes), lower-case hex.
pub fn ca_hash(ca_pem: &[u8]) -> String {
    Sha256::digest(ca_pem)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn is_token_part(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| ALPHABET.contains(&b))
}

fn random_part(rng: &mut impl Rng, len: usize) -> String {
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

impl JoinToken {
    /// Read a token; surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let text = text.trim();
        let rest = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| TokenError(format!("it does not start with {PREFIX}")))?;
        let (hash, bootstrap) = rest
            .split_once("::")
            .ok_or_else(|| TokenError("no \"::\" after the CA hash".into()))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError(
                "the CA hash is not 64 hexadecimal digits".into(),
            ));
        }
        let (id, secret) = bootstrap
            .split_once('.')
            .ok_or_else(|| TokenError("no \".\" between the token id and secret".into()))?;
        if !is_token_part(id, 6) {
            return Err(TokenError(
                "the token id is not 6 characters of [a-z0-9]".into(),
            ));
        }
        if !is_token_part(secret, 16) {
            return Err(TokenError(
                "the token secret is not 16 characters of [a-z0-9]".into(),
            ));
        }
        Ok(Self {
            ca_hash: hash.to_ascii_lowercase(),
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// A fresh random token pinning `ca_pem`.
    pub fn generate(ca_pem: &[u8], rng: &mut impl Rng) -> Self {
        Self {
            ca_hash: ca_hash(ca_pem),
            id: random_part(rng, 6),
            secret: random_part(rng, 16),
        }
    }

    /// The bearer token sent to the API: `<id>.<secret>`.
    pub fn bearer(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    /// Check a CA (PEM bytes, exactly as served) against the pinned hash.
    pub fn verify_ca(&self, ca_pem: &[u8]) -> Result<(), CaMismatch> {
        let actual = ca_hash(ca_pem);
        if actual == self.ca_hash {
            Ok(())
        } else {
            Err(CaMismatch {
                expected: self.ca_hash.clone(),
                actual,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &[u8] = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn a_generated_token_round_trips() {
        let mut rng = rand::rng();
        let t = JoinToken::generate(CA, &mut rng);
        let text = t.to_string();
        assert!(text.starts_with("K10"));
        assert_eq!(text.len(), 3 + 64 + 2 + 6 + 1 + 16);
        assert_eq!(JoinToken::parse(&format!(" {text}\n")), Ok(t.clone()));
        assert_eq!(t.bearer().len(), 23);
        assert!(!format!("{t:?}").contains(&t.secret));
    }

    #[test]
    fn malformed_tokens_are_refused_with_the_reason() {
        let hash = ca_hash(CA);
        let cases = [
            ("abcdef.0123456789abcdef", "does not start with K10"),
            (&format!("K10{hash}abcdef.0123456789abcdef"), "no \"::\""),
            ("K10abc::abcdef.0123456789abcdef", "64 hexadecimal"),
            (&format!("K10{hash}::abcdef0123456789abcdef"), "no \".\""),
            (&format!("K10{hash}::ABCDEF.0123456789abcdef"), "token id"),
            (
                &format!("K10{hash}::abcdef.0123456789abcde"),
                "token secret",
            ),
        ];
        for (text, why) in cases {
            let err = JoinToken::parse(text).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains(why)),
                "{text}: {err:?}"
            );
        }
    }

    #[test]
    fn the_ca_hash_pins_the_exact_pem() {
        let t = JoinToken::parse(&format!("K10{}::abcdef.0123456789abcdef", ca_hash(CA)));
        let Ok(t) = t else { panic!("{t:?}") };
        assert_eq!(t.verify_ca(CA), Ok(()));
        let other = b"-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n";
        let err = t.verify_ca(other).err();
        assert_eq!(
            err.as_ref().map(|e| (&e.expected, &e.actual)),
            Some((&ca_hash(CA), &ca_hash(other)))
        );
        assert!(err.is_some_and(|e| e.to_string().contains(&ca_hash(other))));
        // sha256("") is well known: the hash is plain sha256 hex of the bytes.
        assert_eq!(
            ca_hash(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
