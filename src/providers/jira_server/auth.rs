//! The Jira Server webhook token: an HS256 JWT `{"id": external_id}` embedded in the webhook
//! URL (`/extensions/jira-server/issue-updated/<token>/`), signed with the install's webhook
//! secret = SHA-1 of the consumer's private key PEM. Jira Server deliveries carry no signature
//! of their own, so this token is the only authentication.
//!
//! As Sentry's `jira_server` webhook endpoint, except that we answer bad tokens with 401
//! (Sentry: 400).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use sha1::{Digest, Sha1};

use crate::providers::WebhookError;

/// The integration's external id (`claims["id"]`), read WITHOUT verifying the token so the
/// caller can look up the webhook secret. Verify with [`verify_token`] before trusting it.
pub fn peek_token_id(token: &str) -> Result<String, WebhookError> {
    if token.is_empty() {
        return Err(unauthorized("Token was empty"));
    }
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(token)
        .map_err(|e| unauthorized(&format!("Could not decode JWT token: {e}")))?;
    claims
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| unauthorized("Token did not contain `id`"))
}

/// Verifies the token with the install's webhook secret: HS256 only, no audience; `exp` and
/// `nbf` are checked only when present (our tokens have neither, so they never expire).
pub fn verify_token(token: &str, secret: &str) -> Result<(), WebhookError> {
    if token.is_empty() {
        return Err(unauthorized("Token was empty"));
    }
    if secret.is_empty() {
        return Err(unauthorized(
            "no webhook secret is stored for this integration",
        ));
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    // PyJWT's default, which Sentry uses.
    validation.leeway = 0;
    jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map(|_| ())
    .map_err(|e| unauthorized(&format!("Could not validate JWT: {e}")))
}

/// The token for the webhook URL: HS256 `{"id": external_id}` without `exp`.
pub fn make_token(external_id: &str, secret: &str) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({ "id": external_id }),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

/// The install's webhook secret: lower-case hex SHA-1 of the private key PEM text.
pub fn webhook_secret(private_key_pem: &str) -> String {
    hex::encode(Sha1::digest(private_key_pem.as_bytes()))
}

fn unauthorized(reason: &str) -> WebhookError {
    WebhookError::Unauthorized(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a long secret value";
    const EXTERNAL_ID: &str = "jira.example.org:sentry-test";

    fn is_unauthorized<T: std::fmt::Debug>(r: Result<T, WebhookError>) -> bool {
        matches!(r, Err(WebhookError::Unauthorized(_)))
    }

    #[test]
    fn make_peek_verify_roundtrip() {
        let token = make_token(EXTERNAL_ID, SECRET).unwrap();
        assert_eq!(peek_token_id(&token).unwrap(), EXTERNAL_ID);
        assert_eq!(verify_token(&token, SECRET), Ok(()));
        // No exp: the token never expires; the header says HS256.
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::HS256);
        let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(&token).unwrap();
        assert_eq!(claims, json!({"id": EXTERNAL_ID}));
    }

    #[test]
    fn wrong_secret_is_refused() {
        let token = make_token(EXTERNAL_ID, SECRET).unwrap();
        assert!(is_unauthorized(verify_token(&token, "another secret")));
        assert!(is_unauthorized(verify_token(&token, "")));
    }

    #[test]
    fn alg_none_is_refused() {
        let token = make_token(EXTERNAL_ID, SECRET).unwrap();
        let payload = token.split('.').nth(1).unwrap();
        // base64url('{"alg":"none"}'), empty signature.
        let none = format!("eyJhbGciOiJub25lIn0.{payload}.");
        // Peeking still reads the id (lookup only); verification refuses it.
        assert_eq!(peek_token_id(&none).unwrap(), EXTERNAL_ID);
        assert!(is_unauthorized(verify_token(&none, SECRET)));
    }

    #[test]
    fn other_hmac_algorithms_are_refused() {
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let token =
                jsonwebtoken::encode(&Header::new(alg), &json!({"id": EXTERNAL_ID}), &key).unwrap();
            assert!(is_unauthorized(verify_token(&token, SECRET)), "{alg:?}");
        }
    }

    #[test]
    fn exp_and_nbf_are_checked_when_present() {
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let now = jsonwebtoken::get_current_timestamp();
        let sign = |claims: Value| {
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
        };
        let expired = sign(json!({"id": EXTERNAL_ID, "exp": now - 3600}));
        assert!(is_unauthorized(verify_token(&expired, SECRET)));
        let fresh = sign(json!({"id": EXTERNAL_ID, "exp": now + 3600}));
        assert_eq!(verify_token(&fresh, SECRET), Ok(()));
        let early = sign(json!({"id": EXTERNAL_ID, "nbf": now + 3600}));
        assert!(is_unauthorized(verify_token(&early, SECRET)));
        // aud is not checked.
        let aud = sign(json!({"id": EXTERNAL_ID, "aud": "someone-else"}));
        assert_eq!(verify_token(&aud, SECRET), Ok(()));
    }

    #[test]
    fn garbage_tokens_are_unauthorized_not_panics() {
        assert_eq!(
            peek_token_id(""),
            Err(WebhookError::Unauthorized("Token was empty".into()))
        );
        for bad in [
            "x",
            "a.b.c",
            "..",
            "a.b",
            "é.é.é",
            "eyJhbGciOiJIUzI1NiJ9.e30.x",
        ] {
            assert!(is_unauthorized(peek_token_id(bad)), "{bad}");
            assert!(is_unauthorized(verify_token(bad, SECRET)), "{bad}");
        }
        assert!(is_unauthorized(verify_token("", SECRET)));
        // A well-formed token without `id`.
        let no_id = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "x"}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            peek_token_id(&no_id),
            Err(WebhookError::Unauthorized(
                "Token did not contain `id`".into()
            ))
        );
    }

    #[test]
    fn webhook_secret_is_sha1_hex_of_pem() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\n\
                   MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n\
                   -----END RSA PRIVATE KEY-----\n";
        // Computed independently with Python's hashlib.sha1(pem.encode()).hexdigest().
        assert_eq!(
            webhook_secret(pem),
            "4f0260c9ddc2763a9689472bd0a1399c971fb778"
        );
        assert_eq!(
            webhook_secret(""),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
    }
}
