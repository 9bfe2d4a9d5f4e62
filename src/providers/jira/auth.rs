//! Atlassian Connect JWT for Jira Cloud: the query string hash (qsh), verifying inbound
//! webhook tokens (HS256 with the tenant's shared secret) and signing our own requests.
//!
//! The qsh is Atlassian's canonical-request hash (method, path, sorted query without `jwt`);
//! the checks are those of Sentry's `utils/atlassian_connect.py`. Unlike Sentry, a malformed
//! token is a 401 with a reason, never a 500.

use std::collections::BTreeMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::providers::WebhookError;

/// Clock skew allowed when checking `exp`, in seconds.
pub const EXP_LEEWAY_SECS: i64 = 30;

/// RFC 3986 percent-encoding: everything except the unreserved `A-Za-z0-9-._~` is `%XX`
/// (upper-case hex), so space is `%20`, `*` is `%2A` and `,` is `%2C`.
const QSH_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The claims of a Connect JWT that we use. `iss` is the tenant's clientKey, `sub` the acting
/// user's accountId (optional).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectClaims {
    pub iss: String,
    pub exp: i64,
    pub qsh: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
}

/// The canonical request the qsh is computed over: `METHOD&path&query`.
///
/// * method upper-cased;
/// * path relative to the base URL: empty → `/`, `&` → `%26`, a leading `/` ensured, one
///   trailing `/` removed (unless the path is `/`);
/// * query without `jwt`, names and values percent-encoded (RFC 3986), sorted by raw name;
///   a repeated name's raw values are sorted, encoded and joined with an unencoded `,`.
pub fn canonical_request(method: &str, path: &str, query: &[(String, String)]) -> String {
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        canonical_path(path),
        canonical_query(query)
    )
}

/// The query string hash: lower-case hex SHA-256 of [`canonical_request`].
pub fn qsh(method: &str, path: &str, query: &[(String, String)]) -> String {
    hex::encode(Sha256::digest(
        canonical_request(method, path, query).as_bytes(),
    ))
}

fn canonical_path(path: &str) -> String {
    let mut p = if path.is_empty() {
        "/".to_owned()
    } else {
        path.replace('&', "%26")
    };
    if !p.starts_with('/') {
        p.insert(0, '/');
    }
    if p.len() > 1 && p.ends_with('/') {
        p.pop();
    }
    p
}

fn canonical_query(query: &[(String, String)]) -> String {
    // BTreeMap<String, _> iterates in byte order of the raw names, as Atlassian's code sorts.
    let mut grouped: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, value) in query.iter().filter(|(name, _)| name != "jwt") {
        grouped.entry(name).or_default().push(value);
    }
    grouped
        .into_iter()
        .map(|(name, mut values)| {
            values.sort_unstable();
            let values: Vec<String> = values.into_iter().map(encode).collect();
            format!("{}={}", encode(name), values.join(","))
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, QSH_ENCODE).to_string()
}

/// The token of a request: `Authorization: JWT <token>` first, else the `jwt` query parameter.
pub fn extract_token(authorization: Option<&str>, query: &[(String, String)]) -> Option<String> {
    let from_header = authorization.and_then(|h| {
        let (scheme, token) = h.trim().split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("JWT") && !token.is_empty()).then(|| token.to_owned())
    });
    from_header.or_else(|| {
        query
            .iter()
            .find(|(name, value)| name == "jwt" && !value.is_empty())
            .map(|(_, value)| value.clone())
    })
}

/// The `iss` claim (the tenant's clientKey), read WITHOUT verifying the token, so the caller
/// can look up the shared secret. Verify with [`verify`] before trusting anything.
pub fn peek_issuer(token: &str) -> Result<String, WebhookError> {
    if token.is_empty() {
        return Err(unauthorized("missing JWT"));
    }
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(token)
        .map_err(|e| unauthorized(&format!("malformed JWT: {e}")))?;
    claims
        .get("iss")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| unauthorized("JWT has no iss claim"))
}

/// Verifies an inbound Connect JWT for the request `method path?query` at time `now_unix`:
/// HS256 only with the tenant's shared secret (no `kid`: asymmetric install tokens are not
/// accepted here), a valid signature, `exp` not passed (30 s leeway) and `qsh` equal to the
/// request's hash. The context-token literal `context-qsh` is refused.
pub fn verify(
    token: &str,
    shared_secret: &str,
    method: &str,
    path: &str,
    query: &[(String, String)],
    now_unix: i64,
) -> Result<ConnectClaims, WebhookError> {
    if token.is_empty() {
        return Err(unauthorized("missing JWT"));
    }
    if shared_secret.is_empty() {
        return Err(unauthorized("no shared secret is stored for this tenant"));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|e| {
        unauthorized(&format!(
            "malformed JWT header or unsupported algorithm (only HS256 is accepted): {e}"
        ))
    })?;
    if header.alg != Algorithm::HS256 {
        return Err(unauthorized(&format!(
            "JWT algorithm {:?} is not accepted; only HS256",
            header.alg
        )));
    }
    if header.kid.is_some() {
        return Err(unauthorized(
            "asymmetrically signed JWT (kid header) is only accepted on install callbacks",
        ));
    }

    let mut validation = Validation::new(Algorithm::HS256);
    // exp is checked below against `now_unix`, not the system clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<ConnectClaims>(
        token,
        &DecodingKey::from_secret(shared_secret.as_bytes()),
        &validation,
    )
    .map_err(|e| match e.kind() {
        ErrorKind::InvalidSignature => unauthorized("Signature is invalid"),
        ErrorKind::Json(_) => {
            unauthorized("JWT claims are malformed: iss, exp and qsh are required")
        }
        _ => unauthorized(&format!("could not validate JWT: {e}")),
    })?
    .claims;

    if now_unix > claims.exp.saturating_add(EXP_LEEWAY_SECS) {
        return Err(unauthorized("Signature is expired"));
    }
    if claims.qsh == "context-qsh" {
        return Err(unauthorized(
            "context JWT (qsh \"context-qsh\") is not accepted for this request",
        ));
    }
    if claims.qsh != qsh(method, path, query) {
        return Err(unauthorized("Query hash mismatch"));
    }
    Ok(claims)
}

/// Signs `claims` with HS256 and the shared secret (outbound requests to Jira, and tests).
pub fn sign(claims: &Value, secret: &str) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

fn unauthorized(reason: &str) -> WebhookError {
    WebhookError::Unauthorized(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const VECTORS: &str =
        include_str!("../../../tests/fixtures/jira_cloud_jwt_qsh_test_vectors.json");

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).unwrap()
    }

    fn example() -> (String, String, i64, i64) {
        let v = vectors();
        let ex = &v["example_webhook_jwt"];
        (
            ex["token"].as_str().unwrap().to_owned(),
            ex["shared_secret"].as_str().unwrap().to_owned(),
            ex["claims"]["iat"].as_i64().unwrap(),
            ex["claims"]["exp"].as_i64().unwrap(),
        )
    }

    const PATH: &str = "/extensions/jira/issue-updated/";

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn qsh_vectors() {
        let v = vectors();
        let list = v["qsh_vectors"].as_array().unwrap();
        assert_eq!(list.len(), 7);
        for vector in list {
            let query: Vec<(String, String)> = vector["query"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap().to_owned(),
                        p[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            let method = vector["method"].as_str().unwrap();
            let path = vector["path"].as_str().unwrap();
            assert_eq!(
                canonical_request(method, path, &query),
                vector["canonical_request"].as_str().unwrap(),
                "{vector}"
            );
            assert_eq!(
                qsh(method, path, &query),
                vector["qsh"].as_str().unwrap(),
                "{vector}"
            );
        }
    }

    #[test]
    fn canonical_path_rules() {
        assert_eq!(canonical_request("post", "", &[]), "POST&/&");
        assert_eq!(canonical_request("GET", "/", &[]), "GET&/&");
        assert_eq!(canonical_request("GET", "a/b/", &[]), "GET&/a/b&");
        assert_eq!(canonical_request("GET", "/a//", &[]), "GET&/a/&");
        assert_eq!(canonical_request("GET", "/a&b&c", &[]), "GET&/a%26b%26c&");
    }

    #[test]
    fn canonical_query_rules() {
        // Sorted by raw name, repeated values sorted raw then encoded, jwt dropped,
        // reserved characters and non-ASCII encoded.
        let query = q(&[
            ("b", "2"),
            ("a b", "x/y"),
            ("A", "é"),
            ("b", "10"),
            ("jwt", "abc"),
        ]);
        assert_eq!(
            canonical_request("GET", "/p", &query),
            "GET&/p&A=%C3%A9&a%20b=x%2Fy&b=10,2"
        );
    }

    #[test]
    fn extract_token_sources() {
        assert_eq!(
            extract_token(Some("JWT abc.def.ghi"), &[]).as_deref(),
            Some("abc.def.ghi")
        );
        assert_eq!(
            extract_token(Some("JWT abc"), &q(&[("jwt", "query")])).as_deref(),
            Some("abc")
        );
        assert_eq!(
            extract_token(None, &q(&[("x", "1"), ("jwt", "query")])).as_deref(),
            Some("query")
        );
        assert_eq!(
            extract_token(Some("Bearer abc"), &q(&[("jwt", "query")])).as_deref(),
            Some("query")
        );
        assert_eq!(extract_token(Some("JWT"), &[]), None);
        assert_eq!(extract_token(Some("JWT "), &[]), None);
        assert_eq!(extract_token(None, &[]), None);
    }

    #[test]
    fn peek_issuer_of_example_and_garbage() {
        let (token, ..) = example();
        assert_eq!(
            peek_issuer(&token).unwrap(),
            "jira:1e5b9b2a-8a8f-4c2b-9d7e-2b8c1f0e7a11"
        );
        for bad in [
            "",
            "garbage",
            "a.b.c",
            "a.b",
            "....",
            "eyJhbGciOiJIUzI1NiJ9.e30.x",
        ] {
            assert!(
                matches!(peek_issuer(bad), Err(WebhookError::Unauthorized(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn example_token_verifies_until_exp_plus_leeway() {
        let (token, secret, iat, exp) = example();
        let claims = verify(&token, &secret, "POST", PATH, &[], iat).unwrap();
        assert_eq!(claims.iss, "jira:1e5b9b2a-8a8f-4c2b-9d7e-2b8c1f0e7a11");
        assert_eq!(claims.exp, exp);
        assert_eq!(claims.iat, Some(iat));
        assert_eq!(
            claims.sub.as_deref(),
            Some("557058:a1b2c3d4-e5f6-47a8-9b0c-1d2e3f4a5b6c")
        );
        // Lower-case method and a path without the trailing slash hash the same.
        assert!(
            verify(
                &token,
                &secret,
                "post",
                "/extensions/jira/issue-updated",
                &[],
                iat
            )
            .is_ok()
        );
        assert!(verify(&token, &secret, "POST", PATH, &[], exp + EXP_LEEWAY_SECS).is_ok());
        assert_eq!(
            verify(
                &token,
                &secret,
                "POST",
                PATH,
                &[],
                exp + EXP_LEEWAY_SECS + 1
            ),
            Err(WebhookError::Unauthorized("Signature is expired".into()))
        );
    }

    #[test]
    fn wrong_secret_fails() {
        let (token, _, iat, _) = example();
        assert_eq!(
            verify(&token, "another-secret", "POST", PATH, &[], iat),
            Err(WebhookError::Unauthorized("Signature is invalid".into()))
        );
        assert!(matches!(
            verify(&token, "", "POST", PATH, &[], iat),
            Err(WebhookError::Unauthorized(_))
        ));
    }

    #[test]
    fn tampered_request_fails_qsh() {
        let (token, secret, iat, _) = example();
        let mismatch = Err(WebhookError::Unauthorized("Query hash mismatch".into()));
        assert_eq!(
            verify(&token, &secret, "POST", "/extensions/jira/other/", &[], iat),
            mismatch
        );
        assert_eq!(verify(&token, &secret, "GET", PATH, &[], iat), mismatch);
        assert_eq!(
            verify(&token, &secret, "POST", PATH, &q(&[("a", "1")]), iat),
            mismatch
        );
        // The jwt query parameter is not part of the hash.
        assert!(verify(&token, &secret, "POST", PATH, &q(&[("jwt", &token)]), iat).is_ok());
    }

    #[test]
    fn tampered_payload_fails_signature() {
        let (token, secret, iat, _) = example();
        let parts: Vec<&str> = token.split('.').collect();
        let other = sign(
            &json!({"iss": "x", "exp": iat + 100, "qsh": qsh("POST", "/elsewhere", &[])}),
            &secret,
        )
        .unwrap();
        let other_payload = other.split('.').nth(1).unwrap();
        let forged = format!("{}.{}.{}", parts[0], other_payload, parts[2]);
        assert_eq!(
            verify(&forged, &secret, "POST", "/elsewhere", &[], iat),
            Err(WebhookError::Unauthorized("Signature is invalid".into()))
        );
    }

    #[test]
    fn alg_none_is_refused() {
        let (token, secret, iat, _) = example();
        let payload = token.split('.').nth(1).unwrap();
        // base64url('{"alg":"none"}') and '{"alg":"none","typ":"JWT"}', empty signature.
        for header in ["eyJhbGciOiJub25lIn0", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"] {
            let none = format!("{header}.{payload}.");
            assert!(matches!(
                verify(&none, &secret, "POST", PATH, &[], iat),
                Err(WebhookError::Unauthorized(_))
            ));
        }
    }

    #[test]
    fn other_algorithms_and_kid_are_refused() {
        let (_, secret, iat, _) = example();
        let claims =
            json!({"iss": "jira:x", "iat": iat, "exp": iat + 180, "qsh": qsh("POST", PATH, &[])});
        let key = EncodingKey::from_secret(secret.as_bytes());
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let t = jsonwebtoken::encode(&Header::new(alg), &claims, &key).unwrap();
            let err = verify(&t, &secret, "POST", PATH, &[], iat).unwrap_err();
            assert!(
                matches!(&err, WebhookError::Unauthorized(m) if m.contains("only HS256")),
                "{err:?}"
            );
        }
        // An RS256 header (signature irrelevant): refused before any key is used.
        let hs = sign(&claims, &secret).unwrap();
        let payload = hs.split('.').nth(1).unwrap();
        // base64url('{"alg":"RS256","typ":"JWT"}')
        let rs = format!("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.{payload}.c2ln");
        assert!(matches!(
            verify(&rs, &secret, "POST", PATH, &[], iat),
            Err(WebhookError::Unauthorized(m)) if m.contains("only HS256")
        ));
        // HS256 with a kid header: an install-style token, not accepted on webhooks.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("0f1e2d3c".into());
        let t = jsonwebtoken::encode(&header, &claims, &key).unwrap();
        assert!(matches!(
            verify(&t, &secret, "POST", PATH, &[], iat),
            Err(WebhookError::Unauthorized(m)) if m.contains("kid")
        ));
    }

    #[test]
    fn sign_roundtrip_and_required_claims() {
        let secret = "s0m3-sh@r3d-s3cr37";
        let query = q(&[("expand", "changelog")]);
        let claims = json!({"iss": "app-key", "iat": 1000, "exp": 1300, "qsh": qsh("GET", "/rest/api/2/issue/X-1", &query)});
        let t = sign(&claims, secret).unwrap();
        let got = verify(&t, secret, "GET", "/rest/api/2/issue/X-1", &query, 1100).unwrap();
        assert_eq!(got.iss, "app-key");
        assert_eq!(got.sub, None);

        // context-qsh is refused.
        let ctx = sign(
            &json!({"iss": "a", "exp": 1300, "qsh": "context-qsh"}),
            secret,
        )
        .unwrap();
        assert!(matches!(
            verify(&ctx, secret, "POST", PATH, &[], 1100),
            Err(WebhookError::Unauthorized(m)) if m.contains("context-qsh")
        ));
        // Missing exp or qsh: malformed claims.
        for c in [
            json!({"iss": "a", "qsh": "x"}),
            json!({"iss": "a", "exp": 1300}),
        ] {
            let t = sign(&c, secret).unwrap();
            assert!(matches!(
                verify(&t, secret, "POST", PATH, &[], 1100),
                Err(WebhookError::Unauthorized(m)) if m.contains("malformed")
            ));
        }
    }

    #[test]
    fn garbage_tokens_never_panic() {
        for bad in ["", "x", "a.b.c", "...", "eyJhbGciOiJIUzI1NiJ9..", "é.é.é"] {
            assert!(matches!(
                verify(bad, "secret", "POST", PATH, &[], 0),
                Err(WebhookError::Unauthorized(_))
            ));
        }
    }
}
