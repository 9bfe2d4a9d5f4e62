//! Install flows: register our webhook with the provider, then save the integration.
//! Azure DevOps: a service-hook subscription with a fresh 64-hex shared secret.
//! Jira Server: a webhook whose URL carries an HS256 token, registered OAuth1-signed before
//! anything is saved, so a failure saves nothing (as Sentry's `create_webhook`).

use rand::RngCore;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::providers::http::{ApiError, Auth, Request, parse_rsa_key};
use crate::providers::jira_server::auth::{make_token, webhook_secret};
use crate::store::StoreError;
use crate::store::integrations::{self, Integration, NewIntegration};
use crate::store::organizations;
use crate::sync::Services;

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{0}")]
    Invalid(String),
    /// The provider refused (its message is passed on).
    #[error("{0}")]
    Refused(String),
    /// The provider could not be reached or failed.
    #[error("{0}")]
    Unreachable(String),
    /// The body names an organization that does not exist.
    #[error("organization {0} does not exist")]
    UnknownOrganization(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for InstallError {
    fn from(e: sqlx::Error) -> Self {
        InstallError::Store(e.into())
    }
}

fn provider_error(context: &str, e: ApiError) -> InstallError {
    match e {
        ApiError::Permanent { status, message } => InstallError::Refused(format!(
            "{context}: the provider answered {status}: {}",
            provider_message(&message)
        )),
        other => InstallError::Unreachable(format!("{context}: {other}")),
    }
}

/// The first `messages[0]` / `errorMessages[0]` / `message` of a provider's JSON error.
fn provider_message(raw: &str) -> String {
    let body = raw.split_once(": ").map(|(_, b)| b).unwrap_or(raw);
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    v.pointer("/messages/0")
        .and_then(|m| m.as_object().and_then(|o| o.values().next()).or(Some(m)))
        .or_else(|| v.pointer("/errorMessages/0"))
        .or_else(|| v.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string())
}

/// 32 random bytes as 64 lower-case hex characters (Sentry's `generate_token`).
pub fn generate_secret() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

pub struct VstsInstall {
    pub organization_id: i64,
    pub account_id: String,
    pub account_name: String,
    /// `https://acct.visualstudio.com/`
    pub base_url: String,
    pub access_token: SecretString,
    /// The grant's refresh token and when `access_token` expires (Unix seconds), if known.
    pub refresh_token: Option<SecretString>,
    pub expires: Option<i64>,
    pub config: Value,
}

/// Installs Azure DevOps for an organization. An active integration that already has a
/// subscription keeps it; otherwise one is created first.
pub async fn install_vsts(
    state: &Services,
    req: &VstsInstall,
) -> Result<Integration, InstallError> {
    let instance = format!("{}/", req.base_url.trim_end_matches('/'));
    let existing = {
        let mut tx = state.db.begin().await?;
        if organizations::find_organization(&mut tx, req.organization_id)
            .await?
            .is_none()
        {
            return Err(InstallError::UnknownOrganization(req.organization_id));
        }
        integrations::find_integration_by_external_id(&mut tx, "vsts", &req.account_id).await?
    };
    let kept = existing
        .as_ref()
        .filter(|i| i.status == integrations::STATUS_ACTIVE)
        .and_then(|i| {
            i.metadata
                .0
                .get("subscription")
                .filter(|s| s.get("id").is_some() && s.get("secret").is_some())
                .cloned()
        });
    let subscription = match kept {
        Some(s) => s,
        None => {
            let secret = generate_secret();
            let body = json!({
                "publisherId": "tfs", "eventType": "workitem.updated", "resourceVersion": "1.0",
                "consumerId": "webHooks", "consumerActionId": "httpRequest",
                "consumerInputs": {
                    "url": format!("{}/extensions/vsts/issue-updated/", state.settings.public_url.trim_end_matches('/')),
                    "resourceDetailsToSend": "all",
                    "httpHeaders": format!("shared-secret:{secret}"),
                },
            });
            let request = Request::new(
                Method::POST,
                "_apis/hooks/subscriptions",
                format!("{instance}_apis/hooks/subscriptions"),
            )
            .query("api-version", "4.1")
            .json(&body);
            let resp = state
                .http
                .send(&Auth::Bearer(req.access_token.clone()), &request)
                .await
                .map_err(|e| provider_error("cannot create the service-hook subscription", e))?;
            let id = resp.json.get("id").and_then(Value::as_str).ok_or_else(|| {
                InstallError::Unreachable("the subscription answer has no id".into())
            })?;
            json!({"id": id, "secret": secret})
        }
    };
    // The token set is replaced as a whole: the old grant's refresh token and expiry must not
    // outlive it. Only these keys are written, so the app's credentials and other keys stay.
    let mut keys = serde_json::Map::new();
    keys.insert("domain_name".into(), json!(instance));
    keys.insert(
        "access_token".into(),
        json!(req.access_token.expose_secret()),
    );
    keys.insert(
        "refresh_token".into(),
        json!(req.refresh_token.as_ref().map(ExposeSecret::expose_secret)),
    );
    keys.insert("expires".into(), json!(req.expires));
    keys.insert("subscription".into(), subscription);
    save(
        state,
        existing,
        "vsts",
        &req.account_id,
        &req.account_name,
        Metadata::Keys(&keys),
        req.organization_id,
        &req.config,
    )
    .await
}

pub struct JiraServerInstall {
    pub organization_id: i64,
    pub url: String,
    pub consumer_key: String,
    pub private_key: SecretString,
    pub access_token: SecretString,
    pub access_token_secret: SecretString,
    pub verify_ssl: bool,
    pub config: Value,
}

/// `host[:port]` of a URL.
fn netloc(url: &str) -> Option<String> {
    reqwest::Url::parse(url).ok().and_then(|u| {
        u.host_str().map(|h| match u.port() {
            Some(p) => format!("{h}:{p}"),
            None => h.to_string(),
        })
    })
}

/// Installs Jira Server: the webhook is registered before anything is saved.
pub async fn install_jira_server(
    state: &Services,
    req: &JiraServerInstall,
) -> Result<Integration, InstallError> {
    let host = netloc(&req.url).ok_or_else(|| {
        InstallError::Invalid(format!("url {:?} is not an absolute URL", req.url))
    })?;
    if req.consumer_key.trim().is_empty() || req.access_token.expose_secret().trim().is_empty() {
        return Err(InstallError::Invalid(
            "consumer_key and access_token are required".into(),
        ));
    }
    parse_rsa_key(req.private_key.expose_secret()).map_err(InstallError::Invalid)?;
    {
        let mut tx = state.db.begin().await?;
        if organizations::find_organization(&mut tx, req.organization_id)
            .await?
            .is_none()
        {
            return Err(InstallError::UnknownOrganization(req.organization_id));
        }
    }
    let secret = webhook_secret(req.private_key.expose_secret());
    let external_id: String = format!("{host}:{}", req.consumer_key)
        .chars()
        .take(64)
        .collect();
    let token = make_token(&external_id, &secret)
        .map_err(|e| InstallError::Invalid(format!("cannot sign the webhook token: {e}")))?;
    let base = req.url.trim_end_matches('/');
    let body = json!({
        "name": state.settings.jira_server.webhook_name,
        "url": format!("{}/extensions/jira-server/issue-updated/{token}/", state.settings.public_url.trim_end_matches('/')),
        "events": ["jira:issue_created", "jira:issue_updated"],
    });
    let auth = Auth::OAuth1 {
        consumer_key: req.consumer_key.clone(),
        private_key_pem: req.private_key.clone(),
        access_token: req.access_token.clone(),
    };
    let mut request = Request::new(
        Method::POST,
        "/rest/webhooks/1.0/webhook",
        format!("{base}/rest/webhooks/1.0/webhook"),
    )
    .json(&body);
    request.verify_tls = req.verify_ssl;
    let resp = state.http.send(&auth, &request).await.map_err(|e| {
        match provider_error("Could not create issue webhook in Jira", e) {
            InstallError::Refused(m) => {
                tracing::info!(external_id, "jira-server.webhook.failed");
                InstallError::Refused(m)
            }
            other => other,
        }
    })?;
    let webhook_id = resp
        .json
        .get("self")
        .and_then(Value::as_str)
        .and_then(|s| s.rsplit('/').next())
        .map(str::to_string);
    let metadata = json!({
        "base_url": base, "domain_name": host, "verify_ssl": req.verify_ssl, "webhook_secret": secret,
        "webhook_id": webhook_id, "consumer_key": req.consumer_key, "private_key": req.private_key.expose_secret(),
        "access_token": req.access_token.expose_secret(), "access_token_secret": req.access_token_secret.expose_secret(),
    });
    let existing = {
        let mut tx = state.db.begin().await?;
        integrations::find_integration_by_external_id(&mut tx, "jira_server", &external_id).await?
    };
    save(
        state,
        existing,
        "jira_server",
        &external_id,
        &req.consumer_key,
        Metadata::Whole(&metadata),
        req.organization_id,
        &req.config,
    )
    .await
}

/// What an install writes into the metadata.
enum Metadata<'a> {
    /// Replaces it.
    Whole(&'a Value),
    /// These top-level keys (null: removed); the others are kept.
    Keys(&'a serde_json::Map<String, Value>),
}

/// Inserts or updates the integration and installs it on the organization, in one transaction.
#[allow(clippy::too_many_arguments)]
async fn save(
    state: &Services,
    existing: Option<Integration>,
    provider: &str,
    external_id: &str,
    name: &str,
    metadata: Metadata<'_>,
    org: i64,
    config: &Value,
) -> Result<Integration, InstallError> {
    let mut tx = state.db.begin_write().await?;
    let i = match (existing, metadata) {
        (Some(i), Metadata::Whole(m)) => {
            integrations::update_integration(&mut tx, i.id, name, m, integrations::STATUS_ACTIVE)
                .await?
        }
        (Some(i), Metadata::Keys(k)) => {
            integrations::patch_integration(
                &mut tx,
                i.id,
                Some(name),
                k,
                Some(integrations::STATUS_ACTIVE),
            )
            .await?
        }
        (None, m) => {
            let whole = match m {
                Metadata::Whole(m) => m.clone(),
                Metadata::Keys(k) => Value::Object(
                    k.iter()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
            };
            Some(
                integrations::insert_integration(
                    &mut tx,
                    &NewIntegration {
                        provider,
                        external_id,
                        name,
                        metadata: &whole,
                    },
                    crate::now_ms(),
                )
                .await?,
            )
        }
    }
    .ok_or(StoreError::NotFound("integration".into()))?;
    integrations::upsert_organization_integration(&mut tx, org, i.id, config, crate::now_ms())
        .await?;
    tx.commit().await?;
    state.forget_integrations();
    Ok(i)
}
