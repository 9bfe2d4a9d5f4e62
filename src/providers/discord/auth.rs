//! `X-Signature-Ed25519` over `X-Signature-Timestamp` + the raw body, with the
//! application's public key, as Discord requires of an Interactions Endpoint URL.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::providers::WebhookError;

/// Parses a 32-byte public key from hex (as the Discord developer portal shows it).
pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = hex::decode(hex_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("public_key must be 64 hex characters (32 bytes)")?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "public_key is not a valid Ed25519 key".into())
}

/// Verifies a delivery. `now` and `max_skew_secs` bound the timestamp, so that a captured
/// request cannot be replayed later (Discord defines no window; we allow 5 minutes).
pub fn verify(
    key: &VerifyingKey,
    signature_hex: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now: i64,
    max_skew_secs: i64,
) -> Result<(), WebhookError> {
    let unauthorized = |d: &str| WebhookError::Unauthorized(d.to_string());
    let (Some(sig_hex), Some(ts)) = (signature_hex, timestamp) else {
        return Err(unauthorized(
            "missing X-Signature-Ed25519 or X-Signature-Timestamp",
        ));
    };
    let ts_secs: i64 = ts
        .trim()
        .parse()
        .map_err(|_| unauthorized("X-Signature-Timestamp is not a Unix time"))?;
    if (now - ts_secs).abs() > max_skew_secs {
        return Err(unauthorized(
            "X-Signature-Timestamp is too far from our clock (stale or replayed request)",
        ));
    }
    let sig: [u8; 64] = hex::decode(sig_hex.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| unauthorized("X-Signature-Ed25519 is not a 64-byte hex signature"))?;
    let mut message = Vec::with_capacity(ts.len() + body.len());
    message.extend_from_slice(ts.as_bytes());
    message.extend_from_slice(body);
    key.verify_strict(&message, &Signature::from_bytes(&sig))
        .map_err(|_| unauthorized("invalid request signature"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR: &str = include_str!("../../../tests/fixtures/discord_signature_test_vector.json");

    fn vector() -> serde_json::Value {
        serde_json::from_str(VECTOR).expect("vector")
    }

    #[test]
    fn the_published_vector_verifies_and_the_tampered_body_does_not() {
        let v = vector();
        let key = parse_public_key(v["public_key_hex"].as_str().unwrap()).unwrap();
        let sig = v["headers"]["X-Signature-Ed25519"].as_str();
        let ts = v["headers"]["X-Signature-Timestamp"].as_str();
        let now: i64 = ts.unwrap().parse().unwrap();
        let body = v["raw_body"].as_str().unwrap().as_bytes();
        assert_eq!(verify(&key, sig, ts, body, now, 300), Ok(()));
        let tampered = v["tampered_body_must_fail"].as_str().unwrap().as_bytes();
        assert!(verify(&key, sig, ts, tampered, now, 300).is_err());
    }

    #[test]
    fn stale_or_future_timestamps_and_bad_headers_are_refused() {
        let v = vector();
        let key = parse_public_key(v["public_key_hex"].as_str().unwrap()).unwrap();
        let sig = v["headers"]["X-Signature-Ed25519"].as_str();
        let ts = v["headers"]["X-Signature-Timestamp"].as_str();
        let now: i64 = ts.unwrap().parse().unwrap();
        let body = v["raw_body"].as_str().unwrap().as_bytes();
        assert!(verify(&key, sig, ts, body, now + 301, 300).is_err());
        assert!(verify(&key, sig, ts, body, now - 301, 300).is_err());
        assert!(verify(&key, sig, ts, body, now + 299, 300).is_ok());
        assert!(verify(&key, None, ts, body, now, 300).is_err());
        assert!(verify(&key, sig, None, body, now, 300).is_err());
        assert!(verify(&key, Some("zz"), ts, body, now, 300).is_err());
        assert!(verify(&key, sig, Some("soon"), body, now, 300).is_err());
        // The signature covers the timestamp: another timestamp with the same body fails.
        let other = (now + 1).to_string();
        assert!(verify(&key, sig, Some(&other), body, now, 300).is_err());
    }

    #[test]
    fn public_keys_are_checked() {
        assert!(parse_public_key("abc").is_err());
        assert!(parse_public_key(&"zz".repeat(32)).is_err());
        assert!(parse_public_key(vector()["public_key_hex"].as_str().unwrap()).is_ok());
    }
}
