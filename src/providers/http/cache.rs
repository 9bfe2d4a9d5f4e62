//! The 240 s GET cache of provider answers (Redis or in-process), keyed by integration and URL.

use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::auth::Auth;
use super::client::{Http, with_query};
use super::error::ApiError;
use super::request::Request;

/// Sentry's `cache_time` for the Jira clients; we use it for every cached GET.
pub const CACHE_TTL: Duration = Duration::from_secs(240);

impl Http {
    /// GET through the 240 s cache (Redis or in-process), keyed by integration and URL.
    pub async fn get_cached(
        &self,
        integration_id: i64,
        auth: &Auth,
        req: &Request<'_>,
    ) -> Result<Value, ApiError> {
        if let Some(hit) = self.cached(integration_id, req).await {
            return Ok(hit);
        }
        let resp = self.send(auth, req).await?;
        self.cache(integration_id, req, &resp.json).await;
        Ok(resp.json)
    }

    /// The cached answer of a GET, if any.
    pub async fn cached(&self, integration_id: i64, req: &Request<'_>) -> Option<Value> {
        let hit = self.kv.get(&cache_key(integration_id, req)).await.ok()??;
        serde_json::from_str(&hit).ok()
    }

    /// Caches the answer of a GET for [`CACHE_TTL`]; a cache failure is only logged.
    pub async fn cache(&self, integration_id: i64, req: &Request<'_>, answer: &Value) {
        if let Err(e) = self
            .kv
            .set_ex(
                &cache_key(integration_id, req),
                &answer.to_string(),
                CACHE_TTL,
            )
            .await
        {
            tracing::warn!(error = %e, "provider cache unavailable");
        }
    }
}

fn cache_key(integration_id: i64, req: &Request<'_>) -> String {
    let url = with_query(&req.url, &req.query);
    format!(
        "issuesync:provider:{integration_id}:{}",
        hex::encode(Sha256::digest(url.as_bytes()))
    )
}
