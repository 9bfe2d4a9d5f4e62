//! Verification of Atlassian Connect lifecycle callbacks (`installed`, `uninstalled`).
//! Atlassian signs them with RS256 and a `kid` whose public key is served at
//! `{jira_install_keys_url}/{kid}`, with `aud` = our base URL; a tenant we already know may
//! also sign with its shared secret (HS256).

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::Method;
use serde_json::Value;

use crate::providers::WebhookError;
use crate::receiver::error::ApiError;
use crate::store::integrations;
use crate::sync::Services;

fn unauthorized(d: impl Into<String>) -> ApiError {
    ApiError::from(WebhookError::Unauthorized(d.into()))
}

pub async fn verify_lifecycle(
    state: &Services,
    headers: &HeaderMap,
    query: &[(String, String)],
    path: &str,
    client_key: &str,
) -> Result<(), ApiError> {
    let auth = headers.get("authorization").and_then(|h| h.to_str().ok());
    let token = crate::providers::jira::auth::extract_token(auth, query)
        .ok_or_else(|| unauthorized("Missing/Invalid authorization header"))?;
    let header = jsonwebtoken::decode_header(&token)
        .map_err(|e| unauthorized(format!("malformed JWT: {e}")))?;
    let iss = crate::providers::jira::auth::peek_issuer(&token)?;
    if iss != client_key {
        return Err(unauthorized(
            "the JWT issuer is not the clientKey of the body",
        ));
    }
    match (header.alg, header.kid) {
        (Algorithm::RS256, Some(kid)) => {
            if !kid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                || kid.len() > 128
            {
                return Err(unauthorized("bad kid"));
            }
            let url = format!(
                "{}/{kid}",
                state.settings.jira_install_keys_url.trim_end_matches('/')
            );
            let resp = state
                .http
                .client
                .request(Method::GET, &url)
                .send()
                .await
                .map_err(|e| ApiError::unavailable(format!("cannot fetch the install key: {e}")))?;
            if !resp.status().is_success() {
                return Err(unauthorized(format!("unknown install key {kid}")));
            }
            let pem = resp
                .text()
                .await
                .map_err(|e| ApiError::unavailable(format!("cannot read the install key: {e}")))?;
            let key = DecodingKey::from_rsa_pem(pem.as_bytes())
                .map_err(|_| unauthorized("the install key is not an RSA public key"))?;
            let mut v = Validation::new(Algorithm::RS256);
            v.set_audience(&[state.settings.public_url.trim_end_matches('/')]);
            v.leeway = 30;
            let claims = jsonwebtoken::decode::<Value>(&token, &key, &v)
                .map_err(|e| unauthorized(format!("install JWT rejected: {e}")))?
                .claims;
            let want = crate::providers::jira::auth::qsh("POST", path, query);
            if claims.get("qsh").and_then(Value::as_str) != Some(want.as_str()) {
                return Err(unauthorized("Query hash mismatch"));
            }
            Ok(())
        }
        (Algorithm::HS256, None) => {
            let mut tx = state.db.begin().await?;
            let i = integrations::find_integration_by_external_id(&mut tx, "jira", client_key)
                .await?
                .ok_or_else(|| {
                    unauthorized("an HS256 lifecycle JWT is only accepted from a known tenant")
                })?;
            let secret = i
                .metadata
                .0
                .get("shared_secret")
                .and_then(Value::as_str)
                .unwrap_or_default();
            crate::providers::jira::auth::verify(
                &token,
                secret,
                "POST",
                path,
                query,
                chrono::Utc::now().timestamp(),
            )?;
            Ok(())
        }
        (alg, _) => Err(unauthorized(format!(
            "JWT algorithm {alg:?} is not accepted on lifecycle callbacks"
        ))),
    }
}
