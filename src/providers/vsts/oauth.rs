//! Azure DevOps OAuth: the tokens an integration holds, the refresh request its metadata asks
//! for (`oauth_flow`), and a refresh that concurrent jobs never repeat with the same refresh
//! token (they are single-use: the second use would be refused, or revoke the first's).

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::tokens::seconds;
pub use super::tokens::{REFRESH_MARGIN_SECS, Tokens, UnsavedTokens};
use crate::db::Db;
use crate::providers::http::{ApiError, Http};
use crate::store::integrations::{self, Integration};

/// Azure DevOps' own OAuth endpoint, the one Sentry's integration refreshes at.
pub const VSSPS_TOKEN_URL: &str = "https://app.vssps.visualstudio.com/oauth2/token";
/// Microsoft Entra ID (the identity platform newer Azure DevOps apps use).
pub const ENTRA_TOKEN_URL: &str = "https://login.microsoftonline.com/common/oauth2/v2.0/token";
/// The refresh request's own timeout, below the lock's lifetime.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the per-integration refresh lock lives, and how long another job waits for it.
const LOCK_TTL: Duration = Duration::from_secs(30);
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// How long saving refreshed tokens is retried while the refresh lock is held (the refresh
/// request and this stay within [`LOCK_TTL`]).
const SAVE_BUDGET: Duration = Duration::from_secs(8);
/// After that, a background task of this process keeps trying at most this far apart.
const RESAVE_MAX_DELAY: Duration = Duration::from_secs(30);
/// How long other processes are told that this one holds unsaved tokens (renewed on each try).
const UNSAVED_MARK_TTL: Duration = Duration::from_secs(120);

/// A refresh request: the token endpoint and the form fields.
pub type RefreshRequest = (String, Vec<(&'static str, String)>);

/// The kv key that tells other processes a refresh of `id` is not saved yet; its value is a
/// fingerprint of the used-up refresh token (never the token).
fn unsaved_key(id: i64) -> String {
    format!("issuesync:vsts-token-unsaved:{id}")
}

fn fingerprint(token: &str) -> String {
    hex::encode(&Sha256::digest(token.as_bytes())[..8])
}

fn permanent(message: impl Into<String>) -> ApiError {
    ApiError::Permanent {
        status: 401,
        message: message.into(),
    }
}

/// The refresh request of the integration's `oauth_flow`: its URL and form fields.
/// * `entra` (default): `grant_type=refresh_token`, `refresh_token`, and `client_id` /
///   `client_secret` when set, to `token_url` (default: Entra's common endpoint);
/// * `vssps`: Azure DevOps' own form, as Sentry's integration sends it:
///   `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`,
///   `client_assertion=<client_secret>`, `grant_type=refresh_token`, `assertion=<refresh token>`,
///   `redirect_uri`, to `token_url` (default: app.vssps.visualstudio.com).
pub fn refresh_request(m: &Value, refresh_token: &str) -> Result<RefreshRequest, ApiError> {
    let get = |k: &str| m.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
    let url = |default: &str| get("token_url").unwrap_or(default).to_string();
    match get("oauth_flow").unwrap_or("entra") {
        "entra" => {
            let mut form = vec![
                ("grant_type", "refresh_token".to_string()),
                ("refresh_token", refresh_token.to_string()),
            ];
            for k in ["client_id", "client_secret"] {
                if let Some(v) = get(k) {
                    form.push((k, v.to_string()));
                }
            }
            Ok((url(ENTRA_TOKEN_URL), form))
        }
        "vssps" => {
            let secret = get("client_secret").ok_or_else(|| {
                permanent("the vssps OAuth flow needs metadata.client_secret (the app secret)")
            })?;
            let redirect = get("redirect_uri").ok_or_else(|| {
                permanent(
                    "the vssps OAuth flow needs metadata.redirect_uri (the app's callback URL)",
                )
            })?;
            Ok((
                url(VSSPS_TOKEN_URL),
                vec![
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                    ),
                    ("client_assertion", secret.to_string()),
                    ("grant_type", "refresh_token".into()),
                    ("assertion", refresh_token.to_string()),
                    ("redirect_uri", redirect.to_string()),
                ],
            ))
        }
        other => Err(permanent(format!(
            "metadata.oauth_flow must be \"entra\" or \"vssps\", not {other:?}"
        ))),
    }
}

/// The tokens of a token endpoint's answer; a missing `refresh_token` keeps `used`.
pub fn parse_answer(v: &Value, used: &str, now: i64) -> Result<Tokens, ApiError> {
    let access = v
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| permanent("the token refresh answer has no access_token"))?;
    Ok(Tokens {
        access: access.into(),
        refresh: Some(
            v.get("refresh_token")
                .and_then(Value::as_str)
                .unwrap_or(used)
                .into(),
        ),
        expires: v
            .get("expires_in")
            .and_then(seconds)
            .map(|s| now.saturating_add(s)),
    })
}

/// Refreshes the tokens that `used` belongs to, at most once per refresh token across jobs and
/// processes: under a per-integration lock, the stored metadata is read again, and when another
/// job refreshed meanwhile its tokens are returned instead of refreshing again. The new tokens
/// and `expires` are saved in one write, only if the stored refresh token is still `used`.
pub async fn refresh(
    http: &Http,
    db: &Db,
    integration: &Integration,
    used: &str,
) -> Result<Tokens, ApiError> {
    let key = format!("issuesync:vsts-token-refresh:{}", integration.id);
    let guard = http
        .kv
        .lock(&key, LOCK_TTL, LOCK_WAIT)
        .await
        .map_err(|e| ApiError::Transient(format!("cannot take the token refresh lock: {e}")))?
        .ok_or_else(|| {
            ApiError::Transient(format!(
                "another job is still refreshing the token of integration {}",
                integration.id
            ))
        })?;
    let result = refresh_locked(http, db, integration, used).await;
    if let Err(e) = http.kv.release(guard).await {
        tracing::warn!(error = %e, integration_id = integration.id, "cannot release the token refresh lock");
    }
    result
}

async fn refresh_locked(
    http: &Http,
    db: &Db,
    integration: &Integration,
    used: &str,
) -> Result<Tokens, ApiError> {
    let unavailable = |e: crate::store::StoreError| ApiError::Transient(e.to_string());
    let stored = {
        let mut tx = db.begin().await.map_err(|e| unavailable(e.into()))?;
        integrations::find_integration(&mut tx, integration.id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| permanent(format!("integration {} is gone", integration.id)))?
    };
    let current = Tokens::from_metadata(&stored.metadata.0);
    let stored_refresh = current.as_ref().and_then(|t| t.refresh.clone());
    // This process refreshed with the stored (now used-up) token but could not save: save
    // what it kept instead of sending that token again.
    if let Some((kept_for, kept)) = http.unsaved_tokens.get(integration.id) {
        if stored_refresh.as_ref().map(ExposeSecret::expose_secret) == Some(kept_for.as_str()) {
            return save_or_keep(http, db, integration.id, &kept_for, kept).await;
        }
        http.unsaved_tokens.forget(integration.id);
    }
    // Another process holds tokens refreshed with it that it could not save yet.
    if let Some(r) = &stored_refresh
        && let Ok(Some(mark)) = http.kv.get(&unsaved_key(integration.id)).await
        && mark == fingerprint(r.expose_secret())
    {
        return Err(ApiError::Transient(format!(
            "another worker process refreshed the token of integration {} and has not saved it yet",
            integration.id
        )));
    }
    if let Some(t) =
        current.filter(|t| t.refresh.as_ref().map(ExposeSecret::expose_secret) != Some(used))
    {
        tracing::info!(
            integration_id = integration.id,
            "Azure DevOps token was refreshed by another job"
        );
        return Ok(t);
    }
    let (url, form) = refresh_request(&stored.metadata.0, used)?;
    let resp = http
        .client
        .post(&url)
        .timeout(REFRESH_TIMEOUT)
        .form(&form)
        .send()
        .await
        .map_err(|e| ApiError::Transient(format!("token refresh failed: {}", e.without_url())))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(ApiError::Transient(format!(
            "token refresh answered {}",
            status.as_u16()
        )));
    }
    if !status.is_success() {
        // Only the OAuth error code: the description may echo what we sent.
        let code = body.get("error").and_then(Value::as_str).unwrap_or("");
        return Err(permanent(format!(
            "token refresh was refused with {} {code}",
            status.as_u16()
        )));
    }
    let tokens = parse_answer(&body, used, crate::now_ms() / 1000)?;
    save_or_keep(http, db, integration.id, used, tokens).await
}

/// Saves freshly refreshed tokens, retried for [`SAVE_BUDGET`]. When that fails they are kept
/// in this process and saved by a background task, and the job fails (retried later): it does
/// not go on as if they were stored.
async fn save_or_keep(
    http: &Http,
    db: &Db,
    id: i64,
    used: &str,
    tokens: Tokens,
) -> Result<Tokens, ApiError> {
    let saved = tokio::time::timeout(SAVE_BUDGET, save_retried(db, id, used, &tokens))
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
    match saved {
        Ok(true) => {
            tracing::info!(integration_id = id, "Azure DevOps token refreshed");
            Ok(tokens)
        }
        Ok(false) => {
            tracing::warn!(
                integration_id = id,
                "Azure DevOps token refreshed, but the stored refresh token changed meanwhile; keeping the stored one"
            );
            Ok(tokens)
        }
        Err(e) => {
            mark_unsaved(http, id, used).await;
            if http.unsaved_tokens.keep(id, used, &tokens) {
                tokio::spawn(resave(http.clone(), db.clone(), id, used.to_string()));
            }
            tracing::error!(
                error = %e,
                integration_id = id,
                "refreshed Azure DevOps tokens could not be saved; this process keeps them and retries the save (if it stops first, the integration must be authorized again)"
            );
            Err(ApiError::Transient(format!(
                "the refreshed Azure DevOps token could not be saved ({e}); it is kept in this process and saved when the database takes it"
            )))
        }
    }
}

/// One save of refreshed tokens, retried with backoff. `Ok(false)`: the stored refresh token
/// is no longer `used` (another refresh or a reinstall won), so these are not saved.
async fn save_retried(db: &Db, id: i64, used: &str, tokens: &Tokens) -> Result<bool, String> {
    let patch = json!({
        "access_token": tokens.access.expose_secret(),
        "refresh_token": tokens.refresh.as_ref().map(ExposeSecret::expose_secret),
        "expires": tokens.expires,
    });
    let once = || async {
        let mut tx = db.begin_write().await?;
        let saved = integrations::save_refreshed_tokens(&mut tx, id, used, &patch).await?;
        tx.commit().await?;
        Ok::<_, crate::store::StoreError>(saved)
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(5)
        .with_jitter();
    once.retry(backoff).await.map_err(|e| e.to_string())
}

async fn mark_unsaved(http: &Http, id: i64, used: &str) {
    if let Err(e) = http
        .kv
        .set_ex(&unsaved_key(id), &fingerprint(used), UNSAVED_MARK_TTL)
        .await
    {
        tracing::warn!(error = %e, integration_id = id, "cannot tell other processes that refreshed tokens are not saved yet");
    }
}

/// The background save of kept tokens: until it succeeds, or the stored refresh token is no
/// longer the used-up one (then the kept tokens are not the integration's any more).
async fn resave(http: Http, db: Db, id: i64, used: String) {
    let mut delay = Duration::from_secs(1);
    loop {
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RESAVE_MAX_DELAY);
        let Some((kept_for, tokens)) = http.unsaved_tokens.get(id) else {
            return;
        };
        if kept_for != used {
            return;
        }
        mark_unsaved(&http, id, &used).await;
        match save_retried(&db, id, &used, &tokens).await {
            Ok(saved) => {
                http.unsaved_tokens.forget(id);
                if let Err(e) = http.kv.delete_many(&[unsaved_key(id)]).await {
                    tracing::warn!(error = %e, integration_id = id, "cannot clear the unsaved-token mark");
                }
                if saved {
                    tracing::info!(integration_id = id, "kept Azure DevOps tokens saved");
                } else {
                    tracing::warn!(
                        integration_id = id,
                        "kept Azure DevOps tokens dropped: the stored refresh token changed meanwhile"
                    );
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, integration_id = id, "kept Azure DevOps tokens still cannot be saved")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vssps_form_is_azure_devops_own() {
        let m = json!({"oauth_flow": "vssps", "client_secret": "app-secret",
                       "redirect_uri": "https://tracker.example.com/extensions/vsts/setup/"});
        let (url, form) = refresh_request(&m, "r1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(url, VSSPS_TOKEN_URL);
        assert_eq!(
            form,
            [
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string()
                ),
                ("client_assertion", "app-secret".into()),
                ("grant_type", "refresh_token".into()),
                ("assertion", "r1".into()),
                (
                    "redirect_uri",
                    "https://tracker.example.com/extensions/vsts/setup/".into()
                ),
            ]
        );
        assert!(refresh_request(&json!({"oauth_flow": "vssps"}), "r1").is_err());
        assert!(refresh_request(&json!({"oauth_flow": "other"}), "r1").is_err());
    }

    #[test]
    fn entra_is_the_default() {
        let (url, form) =
            refresh_request(&json!({"client_id": "c"}), "r1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(url, ENTRA_TOKEN_URL);
        assert_eq!(
            form,
            [
                ("grant_type", "refresh_token".to_string()),
                ("refresh_token", "r1".into()),
                ("client_id", "c".into()),
            ]
        );
    }

    #[test]
    fn debug_does_not_show_tokens() {
        let t = Tokens::from_metadata(
            &json!({"access_token": "acc-secret", "refresh_token": "ref-secret", "expires": 5}),
        );
        let shown = format!("{t:?}");
        assert!(t.is_some() && shown.contains("expires: Some(5)"), "{shown}");
        assert!(
            !shown.contains("acc-secret") && !shown.contains("ref-secret"),
            "{shown}"
        );
    }

    #[test]
    fn answers_and_expiry() {
        let t = parse_answer(
            &json!({"access_token": "a", "expires_in": "3599"}),
            "r1",
            1000,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.access.expose_secret(), "a");
        assert_eq!(
            t.refresh.as_ref().map(ExposeSecret::expose_secret),
            Some("r1")
        );
        assert_eq!(t.expires, Some(4599));
        assert!(!t.expiring(4599 - REFRESH_MARGIN_SECS - 1));
        assert!(t.expiring(4599 - REFRESH_MARGIN_SECS));
        assert!(parse_answer(&json!({"error": "invalid_grant"}), "r1", 0).is_err());
        let unknown = Tokens::from_metadata(&json!({"access_token": "a"}));
        assert!(unknown.is_some_and(|t| !t.expiring(i64::MAX)));
    }
}
