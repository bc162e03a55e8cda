//! Random secrets, their hashes and constant-time comparison. Secrets (refresh tokens, API keys,
//! OAuth codes) are stored only as SHA-256: they carry 256 bits of entropy, so a slow password
//! hash would add nothing but latency to every request.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// `N` bytes from the operating system's CSPRNG. The OS generator failing is not recoverable
/// for a server that issues credentials, so it aborts rather than hand out weak secrets.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if let Err(error) = getrandom::fill(&mut bytes) {
        tracing::error!(%error, "the operating system's random generator failed");
        std::process::abort();
    }
    bytes
}

/// A URL-safe secret of 256 random bits, after `prefix` (e.g. `kiln_live_`).
pub fn token(prefix: &str) -> String {
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// What is stored for a secret.
pub fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Whether a presented shared secret (the worker token, the metrics token) is `expected`,
/// compared as digests so the time taken tells nothing, not even the secret's length.
pub fn matches(presented: &str, expected: &str) -> bool {
    equal(&hash(presented), &hash(expected))
}

/// Compares in time that does not depend on where the inputs differ.
pub fn equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_and_prefixed() {
        let a = token("kiln_test_");
        let b = token("kiln_test_");
        assert!(a.starts_with("kiln_test_"));
        assert_ne!(a, b);
        assert_eq!(a.len(), "kiln_test_".len() + 43);
    }

    #[test]
    fn hashes_compare_equal_only_for_the_same_secret() {
        assert!(equal(&hash("x"), &hash("x")));
        assert!(!equal(&hash("x"), &hash("y")));
        assert!(!equal(b"ab", b"abc"));
    }
}
