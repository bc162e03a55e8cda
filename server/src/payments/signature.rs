//! Stripe's webhook signatures, checked as Stripe documents them
//! (<https://docs.stripe.com/webhooks#verify-manually>): the `Stripe-Signature` header is
//! `t=<unix seconds>,v1=<hex>[,v1=<hex>…][,v0=<hex>]`, and each `v1` is the lower-case hex of
//! HMAC-SHA256 keyed with the endpoint's whole `whsec_…` secret (its text as bytes) over
//! `{t}.{raw body}`. During a secret rotation Stripe sends one `v1` per secret in force.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::auth::secret::equal;

/// How far the signed timestamp may be from now, either way, in seconds: Stripe's default
/// tolerance (5 minutes), which bounds how long a captured delivery can be replayed.
pub const TOLERANCE_SECONDS: i64 = 300;

/// The only scheme Stripe signs live events with; `v0` (test-mode signatures of the old scheme)
/// and any scheme Stripe may add are ignored, as Stripe's libraries ignore them.
const SCHEME: &str = "v1";

/// Why a delivery's signature is refused. The messages name the problem, never a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is malformed (expected t=<timestamp>,v1=<signature>)")]
    Malformed,
    #[error("the Stripe-Signature header has no v1 signature")]
    NoSignature,
    #[error("no v1 signature in the Stripe-Signature header matches the payload")]
    Mismatch,
    #[error("the Stripe-Signature timestamp is more than {TOLERANCE_SECONDS} s old")]
    TooOld,
    #[error("the Stripe-Signature timestamp is more than {TOLERANCE_SECONDS} s in the future")]
    InFuture,
}

/// Checks `header` (a `Stripe-Signature` value) over the raw request body `payload`, at `now`
/// (Unix seconds): accepted when any `v1` signature matches the one any of `secrets` gives (old
/// and new during a rotation) and the timestamp is within [`TOLERANCE_SECONDS`] of `now`.
/// Returns the signed timestamp. With no secrets nothing matches.
pub fn verify(header: &str, payload: &[u8], secrets: &[String], now: i64) -> Result<i64, SignatureError> {
    let (timestamp, signatures) = parse(header)?;
    if signatures.is_empty() {
        return Err(SignatureError::NoSignature);
    }
    let matched = secrets.iter().any(|secret| {
        let expected = signature(payload, secret, timestamp);
        !expected.is_empty() && signatures.iter().any(|candidate| equal(candidate.as_bytes(), expected.as_bytes()))
    });
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    if now - timestamp > TOLERANCE_SECONDS {
        return Err(SignatureError::TooOld);
    }
    if timestamp - now > TOLERANCE_SECONDS {
        return Err(SignatureError::InFuture);
    }
    Ok(timestamp)
}

/// The `Stripe-Signature` header Stripe sends for `payload` signed with `secret` at `timestamp`:
/// `t=<timestamp>,v1=<hex>`.
pub fn sign(payload: &[u8], secret: &str, timestamp: i64) -> String {
    format!("t={timestamp},{SCHEME}={}", signature(payload, secret, timestamp))
}

/// Lower-case hex of HMAC-SHA256(secret text, `{timestamp}.{payload}`).
fn signature(payload: &[u8], secret: &str, timestamp: i64) -> String {
    // HMAC takes keys of any length, so this cannot fail; `verify` never accepts an empty MAC.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    hex::encode(mac.finalize().into_bytes())
}

/// The header's timestamp (exactly one `t`, an integer) and its `v1` values, in order.
fn parse(header: &str) -> Result<(i64, Vec<&str>), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let (key, value) = item.trim().split_once('=').ok_or(SignatureError::Malformed)?;
        match key {
            "t" if timestamp.is_none() => {
                timestamp = Some(value.parse::<i64>().map_err(|_| SignatureError::Malformed)?);
            }
            "t" => return Err(SignatureError::Malformed),
            SCHEME => signatures.push(value),
            _ => {}
        }
    }
    Ok((timestamp.ok_or(SignatureError::Malformed)?, signatures))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_kiln_test_secret";
    const OTHER: &str = "whsec_kiln_other_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","object":"event","type":"checkout.session.completed"}"#;
    const NOW: i64 = 1_700_000_000;

    fn secrets(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_signed_payload_round_trips() {
        let header = sign(BODY, SECRET, NOW);
        assert!(header.starts_with(&format!("t={NOW},v1=")), "{header}");
        assert_eq!(verify(&header, BODY, &secrets(&[SECRET]), NOW), Ok(NOW));
    }

    #[test]
    fn matches_the_vector_computed_independently() {
        // Computed once with Python's standard library, not with this code:
        // hmac.new(b"whsec_kiln_vector_secret", b'1492774577.{"id":"evt_1","object":"event"}',
        //          hashlib.sha256).hexdigest()
        let body = br#"{"id":"evt_1","object":"event"}"#;
        let expected = "t=1492774577,v1=d7702d4017712edd9af76c7d5a95d06981bdecd6db67b2ed960e4418b09b98f8";
        assert_eq!(sign(body, "whsec_kiln_vector_secret", 1_492_774_577), expected);
        assert_eq!(verify(expected, body, &secrets(&["whsec_kiln_vector_secret"]), 1_492_774_600), Ok(1_492_774_577));
    }

    #[test]
    fn any_v1_may_match_and_v0_is_ignored() {
        let good = sign(BODY, SECRET, NOW);
        let good_v1 = good.split_once(",v1=").map(|(_, v)| v).unwrap_or_default();
        let bad_v1 = signature(BODY, OTHER, NOW);
        let header = format!("t={NOW},v1={bad_v1},v1={good_v1},v0={bad_v1},scheme9=x");
        assert_eq!(verify(&header, BODY, &secrets(&[SECRET]), NOW), Ok(NOW));
        // The matching value under v0 alone does not count.
        let only_v0 = format!("t={NOW},v1={bad_v1},v0={good_v1}");
        assert_eq!(verify(&only_v0, BODY, &secrets(&[SECRET]), NOW), Err(SignatureError::Mismatch));
    }

    #[test]
    fn either_configured_secret_verifies_during_a_rotation() {
        let rotation = secrets(&[OTHER, SECRET]);
        assert_eq!(verify(&sign(BODY, SECRET, NOW), BODY, &rotation, NOW), Ok(NOW));
        assert_eq!(verify(&sign(BODY, OTHER, NOW), BODY, &rotation, NOW), Ok(NOW));
        assert_eq!(verify(&sign(BODY, "whsec_retired", NOW), BODY, &rotation, NOW), Err(SignatureError::Mismatch));
        assert_eq!(verify(&sign(BODY, SECRET, NOW), BODY, &[], NOW), Err(SignatureError::Mismatch));
    }

    #[test]
    fn a_body_changed_after_signing_is_refused() {
        let header = sign(BODY, SECRET, NOW);
        let tampered = br#"{"id":"evt_1","object":"event","type":"checkout.session.completeD"}"#;
        assert_eq!(verify(&header, tampered, &secrets(&[SECRET]), NOW), Err(SignatureError::Mismatch));
        // The timestamp is signed too: moving it breaks the signature.
        let moved = header.replace(&format!("t={NOW}"), &format!("t={}", NOW + 1));
        assert_eq!(verify(&moved, BODY, &secrets(&[SECRET]), NOW), Err(SignatureError::Mismatch));
    }

    #[test]
    fn timestamps_outside_the_tolerance_are_refused() {
        let keys = secrets(&[SECRET]);
        let old = NOW - TOLERANCE_SECONDS - 1;
        assert_eq!(verify(&sign(BODY, SECRET, old), BODY, &keys, NOW), Err(SignatureError::TooOld));
        let edge = NOW - TOLERANCE_SECONDS;
        assert_eq!(verify(&sign(BODY, SECRET, edge), BODY, &keys, NOW), Ok(edge));
        let future = NOW + TOLERANCE_SECONDS + 1;
        assert_eq!(verify(&sign(BODY, SECRET, future), BODY, &keys, NOW), Err(SignatureError::InFuture));
        let near = NOW + TOLERANCE_SECONDS;
        assert_eq!(verify(&sign(BODY, SECRET, near), BODY, &keys, NOW), Ok(near));
    }

    #[test]
    fn garbage_headers_are_refused() {
        let keys = secrets(&[SECRET]);
        let v1 = signature(BODY, SECRET, NOW);
        for header in ["", "garbage", "t=", "t=abc,v1=00", &format!("v1={v1}"), &format!("t={NOW},t={NOW},v1={v1}")] {
            assert_eq!(verify(header, BODY, &keys, NOW), Err(SignatureError::Malformed), "{header:?}");
        }
        assert_eq!(verify(&format!("t={NOW}"), BODY, &keys, NOW), Err(SignatureError::NoSignature));
        assert_eq!(verify(&format!("t={NOW},v0={v1}"), BODY, &keys, NOW), Err(SignatureError::NoSignature));
        assert_eq!(verify(&format!("t={NOW},v1=zz"), BODY, &keys, NOW), Err(SignatureError::Mismatch));
    }

    #[test]
    fn messages_never_carry_the_secret() {
        let header = sign(BODY, SECRET, NOW);
        let error = verify(&header, b"{}", &secrets(&[SECRET]), NOW).err();
        let message = error.map(|e| e.to_string()).unwrap_or_default();
        assert!(!message.is_empty() && !message.contains(SECRET), "{message}");
    }
}
