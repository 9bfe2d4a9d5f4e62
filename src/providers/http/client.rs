//! The `Http` client: sending a `Request` and reading the answer.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tracing::Instrument;

use super::auth::{Auth, authorization};
use super::error::{ApiError, classify};
use super::request::Request;
use crate::kv::Kv;
use crate::providers::ratelimit::Limiter;

/// Default of `http.provider_timeout_ms`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest provider answer we read.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// An answer: status, the headers we care about, the JSON body (`{}` for an empty one).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub json: Value,
    pub continuation_token: Option<String>,
    pub ratelimit_remaining: Option<f64>,
}

#[derive(Clone)]
pub struct Http {
    pub client: reqwest::Client,
    /// The same without certificate checks, for requests with `verify_tls: false`.
    insecure_client: reqwest::Client,
    pub kv: Kv,
    pub limiter: Limiter,
    /// Refreshed Azure DevOps tokens not saved yet (see `vsts::oauth`).
    pub unsaved_tokens: std::sync::Arc<crate::providers::vsts::tokens::UnsavedTokens>,
}

impl Http {
    pub fn new(
        kv: Kv,
        per_second: &std::collections::HashMap<String, u32>,
        timeout: Duration,
    ) -> Http {
        let builder = || {
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("issuesync/", env!("CARGO_PKG_VERSION")))
        };
        let client = builder().build().unwrap_or_default();
        let insecure_client = builder()
            .tls_danger_accept_invalid_certs(true)
            .tls_danger_accept_invalid_hostnames(true)
            .build()
            // Without it, such requests stay verified (and fail) rather than go unchecked.
            .unwrap_or_else(|_| client.clone());
        Http {
            client,
            insecure_client,
            limiter: Limiter::new(&kv, per_second),
            kv,
            unsaved_tokens: Default::default(),
        }
    }

    /// Sends a request with auth; classifies failures. The span carries the method, the
    /// route template and the answer's status.
    pub async fn send(&self, auth: &Auth, req: &Request<'_>) -> Result<Response, ApiError> {
        let (provider, integration_id) = match &req.limit {
            Some((p, id)) => (Some(p.as_str()), Some(*id)),
            None => (None, None),
        };
        let span = tracing::info_span!(
            "provider call",
            otel.name = %format_args!("{} {}", req.method, req.route),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = %req.method,
            url.template = req.route,
            http.response.status_code = tracing::field::Empty,
            provider,
            integration_id,
        );
        let result = self
            .send_unspanned(auth, req)
            .instrument(span.clone())
            .await;
        if result.is_err() {
            span.record("otel.status_code", "error");
        }
        result
    }

    async fn send_unspanned(&self, auth: &Auth, req: &Request<'_>) -> Result<Response, ApiError> {
        if let Some((provider, id)) = &req.limit {
            self.limiter.acquire(provider, *id).await;
        }
        let url = with_query(&req.url, &req.query);
        let client = if req.verify_tls {
            &self.client
        } else {
            &self.insecure_client
        };
        let mut builder = client.request(req.method.clone(), &url);
        if let Some(value) = authorization(auth, req)? {
            builder = builder.header("Authorization", value);
        }
        if let Some(body) = req.body {
            let ct = if req.json_patch {
                "application/json-patch+json"
            } else {
                "application/json"
            };
            builder = builder.header("Content-Type", ct).body(body.to_string());
        }
        builder = builder.header("Accept", "application/json");
        for (k, v) in &req.extra_headers {
            builder = builder.header(*k, v);
        }
        let resp = builder.send().await.map_err(|e| {
            let kind = if e.is_timeout() {
                "timed out"
            } else {
                "failed"
            };
            ApiError::Transient(format!(
                "{} {} {kind}: {}",
                req.method,
                req.shown_url(),
                without_url(&e)
            ))
        })?;
        let status = resp.status();
        tracing::Span::current().record("http.response.status_code", status.as_u16());
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after = header("retry-after");
        let reset = header("x-ratelimit-reset");
        let continuation_token = header("x-ms-continuationtoken");
        let ratelimit_remaining = header("x-ratelimit-remaining").and_then(|v| v.parse().ok());
        let bytes = read_limited(resp).await?;
        classify(
            status,
            retry_after.as_deref(),
            reset.as_deref(),
            req,
            &bytes,
        )?;
        let json = if bytes.is_empty() || status == StatusCode::NO_CONTENT {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::Transient(format!(
                    "{} {} answered non-JSON: {e}",
                    req.method,
                    req.shown_url()
                ))
            })?
        };
        Ok(Response {
            status: status.as_u16(),
            json,
            continuation_token,
            ratelimit_remaining,
        })
    }
}

fn without_url(e: &reqwest::Error) -> String {
    // reqwest includes the URL; ours may carry a token (Jira Server webhook URLs).
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<url>");
    }
    s
}

async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        ApiError::Transient(format!("reading the answer failed: {}", without_url(&e)))
    })? {
        if out.len() + chunk.len() > MAX_BODY {
            return Err(ApiError::Transient(
                "provider answer larger than 8 MiB".into(),
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// `url?k=v&…` with RFC 3986 encoding of keys and values.
pub fn with_query(url: &str, query: &[(String, String)]) -> String {
    if query.is_empty() {
        return url.to_string();
    }
    let q: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect();
    format!("{url}?{}", q.join("&"))
}

fn pct(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_encoding() {
        assert_eq!(
            with_query("https://x/a", &[("q".into(), "a b,c".into())]),
            "https://x/a?q=a%20b%2Cc"
        );
    }
}
