//! Request auth: the `Auth` enum and the `Authorization` header it yields (Bearer, Connect JWT, OAuth 1.0a).

use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};

use super::error::ApiError;
use super::request::Request;

/// How a request is authenticated.
#[derive(Clone)]
pub enum Auth {
    /// Azure DevOps: `Authorization: Bearer <token>`.
    Bearer(SecretString),
    /// Jira Cloud: an Atlassian Connect JWT with the qsh of this request, `iss` = our app key.
    ConnectJwt {
        app_key: String,
        shared_secret: SecretString,
        base_path: String,
    },
    /// No header: the URL carries the credential (Discord's interaction webhooks).
    None,
    /// Jira Server: OAuth 1.0a RSA-SHA1.
    OAuth1 {
        consumer_key: String,
        private_key_pem: SecretString,
        access_token: SecretString,
    },
}

impl std::fmt::Debug for Auth {
    // Never print a credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Bearer(_) => f.write_str("Bearer([redacted])"),
            Auth::None => f.write_str("None"),
            Auth::ConnectJwt { app_key, .. } => write!(f, "ConnectJwt({app_key})"),
            Auth::OAuth1 { consumer_key, .. } => write!(f, "OAuth1({consumer_key})"),
        }
    }
}

pub(super) fn authorization(auth: &Auth, req: &Request<'_>) -> Result<Option<String>, ApiError> {
    match auth {
        Auth::None => Ok(None),
        Auth::Bearer(t) => Ok(Some(format!("Bearer {}", t.expose_secret()))),
        Auth::ConnectJwt {
            app_key,
            shared_secret,
            base_path,
        } => {
            let path = request_path(&req.url, base_path);
            let now = Utc::now().timestamp();
            let claims = serde_json::json!({
                "iss": app_key, "iat": now, "exp": now + 300,
                "qsh": crate::providers::jira::auth::qsh(req.method.as_str(), &path, &req.query),
            });
            let token = crate::providers::jira::auth::sign(&claims, shared_secret.expose_secret())
                .map_err(|e| ApiError::Permanent {
                    status: 0,
                    message: format!("cannot sign the Connect JWT: {e}"),
                })?;
            Ok(Some(format!("JWT {token}")))
        }
        Auth::OAuth1 {
            consumer_key,
            private_key_pem,
            access_token,
        } => {
            let key = parse_rsa_key(private_key_pem.expose_secret()).map_err(|m| {
                ApiError::Permanent {
                    status: 0,
                    message: m,
                }
            })?;
            Ok(Some(oauth1_authorization(
                req.method.as_str(),
                &req.url,
                &req.query,
                consumer_key,
                access_token.expose_secret(),
                key,
                None,
            )))
        }
    }
}

/// The OAuth 1.0a RSA-SHA1 `Authorization` header of a request (RFC 5849; the token
/// secret is not used with RSA-SHA1). `url` has no query: the query parameters are signed
/// from `query`. `fixed` pins the nonce and timestamp (for test vectors).
pub fn oauth1_authorization(
    method: &str,
    url: &str,
    query: &[(String, String)],
    consumer_key: &str,
    access_token: &str,
    key: rsa::RsaPrivateKey,
    fixed: Option<(&str, u64)>,
) -> String {
    let token = oauth1_request::Token::from_parts(consumer_key, "", access_token, "");
    let mut builder = oauth1_request::Builder::with_token(
        token,
        oauth1_request::signature_method::Rsa09Sha1::new(key),
    );
    // Jira's examples send oauth_version="1.0"; it is optional in RFC 5849 but signed when sent.
    builder.version(true);
    if let Some((nonce, ts)) = fixed {
        builder
            .nonce(nonce)
            .timestamp(std::num::NonZeroU64::new(ts));
    }
    // RFC 5849 section 3.4.1.2: lower-case scheme and host, no default port (Url normalizes these).
    let base = reqwest::Url::parse(url)
        .map(|u| u.to_string())
        .unwrap_or_else(|_| url.to_string());
    builder.authorize(
        method,
        base,
        &oauth1_request::ParameterList::new(query.to_vec()),
    )
}

/// The path of `url` relative to the base URL's path (Connect qsh is computed on it).
fn request_path(url: &str, base_path: &str) -> String {
    let path = url
        .splitn(4, '/')
        .nth(3)
        .map(|p| format!("/{p}"))
        .unwrap_or_else(|| "/".into());
    let base = base_path.trim_end_matches('/');
    match path.strip_prefix(base) {
        Some(rest) if !base.is_empty() => {
            if rest.is_empty() {
                "/".into()
            } else {
                rest.to_string()
            }
        }
        _ => path,
    }
}

/// Reads a PKCS#8 or PKCS#1 PEM RSA private key.
pub fn parse_rsa_key(pem: &str) -> Result<rsa::RsaPrivateKey, String> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    rsa::RsaPrivateKey::from_pkcs8_pem(pem)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(pem))
        .map_err(|_| "the private key is not a PKCS#8 or PKCS#1 PEM RSA key".to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// Verifies an RSA-SHA1 OAuth header's signature over `base_string` (RFC 5849 section 3.4.3).
    pub fn verify_oauth1(header: &str, base_string: &str, key: &rsa::RsaPublicKey) -> bool {
        use base64::Engine;
        let Some(sig) = header
            .split(", ")
            .chain(header.split(','))
            .find_map(|p| p.trim().strip_prefix("oauth_signature=\""))
        else {
            return false;
        };
        let sig = sig.trim_end_matches('"');
        let sig = percent_encoding::percent_decode_str(sig)
            .decode_utf8_lossy()
            .to_string();
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(sig) else {
            return false;
        };
        let digest = <sha1::Sha1 as sha1::Digest>::digest(base_string.as_bytes());
        key.verify(rsa::Pkcs1v15Sign::new::<sha1::Sha1>(), &digest, &raw)
            .is_ok()
    }

    #[test]
    fn oauth1_signature_matches_the_jira_server_vector() {
        let vectors: Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/jira_server_oauth1_base_string_vectors.json"
        ))
        .unwrap_or_default();
        let v = &vectors["jira_server_example"];
        let key = parse_rsa_key(include_str!("../../../tests/fixtures/test_rsa_private.pem"))
            .unwrap_or_else(|e| panic!("{e}"));
        let public = key.to_public_key();
        let header = oauth1_authorization(
            "GET",
            "https://jira.example.com:443/rest/api/2/issue/PROJ-123/transitions",
            &[("expand".into(), "transitions.fields".into())],
            "errortracker-consumer",
            "Xh3kX8bOm5aE5HhF8oQ0nN1kQ9wT2yZ4",
            key,
            Some(("4572616e48616d6d65724c61686176", 1_714_644_161)),
        );
        assert!(header.starts_with("OAuth "), "{header}");
        assert!(
            header.contains("oauth_signature_method=\"RSA-SHA1\""),
            "{header}"
        );
        let base = v["signature_base_string"].as_str().unwrap_or_default();
        assert!(
            verify_oauth1(&header, base, &public),
            "signature does not match the vector's base string: {header}"
        );
        assert!(!verify_oauth1(
            &header,
            &base.replace("PROJ-123", "PROJ-124"),
            &public
        ));
    }

    #[test]
    fn pkcs1_keys_are_accepted() {
        assert!(
            parse_rsa_key(include_str!(
                "../../../tests/fixtures/test_rsa_private_pkcs1.pem"
            ))
            .is_ok()
        );
        assert!(parse_rsa_key("not a key").is_err());
    }

    #[test]
    fn debug_does_not_show_credentials() {
        let shown = [
            Auth::Bearer("bearer-secret".into()),
            Auth::ConnectJwt {
                app_key: "app".into(),
                shared_secret: "jwt-secret".into(),
                base_path: String::new(),
            },
            Auth::OAuth1 {
                consumer_key: "consumer".into(),
                private_key_pem: "pem-secret".into(),
                access_token: "token-secret".into(),
            },
        ]
        .map(|a| format!("{a:?}"))
        .join(" ");
        for secret in ["bearer-secret", "jwt-secret", "pem-secret", "token-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            shown.contains("app") && shown.contains("consumer"),
            "{shown}"
        );
    }

    #[test]
    fn request_paths() {
        assert_eq!(
            request_path("https://site.atlassian.net/rest/api/2/status", ""),
            "/rest/api/2/status"
        );
        assert_eq!(
            request_path("https://x.example/jira/rest/api/2/status", "/jira"),
            "/rest/api/2/status"
        );
    }
}
