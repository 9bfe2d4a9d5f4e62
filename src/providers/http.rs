//! The outbound HTTP layer shared by the provider clients: auth per provider, error
//! classification (Sentry's `BaseApiClient` mapping, plus Retry-After-aware 429/503 and
//! permanent 401/403/404), Retry-After, and a 240 s GET cache.
//! Over 600 lines because its unit tests (OAuth 1 vectors, Retry-After parsing) sit below it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::kv::Kv;
use crate::providers::ratelimit::Limiter;

/// Sentry's `cache_time` for the Jira clients; we use it for every cached GET.
pub const CACHE_TTL: Duration = Duration::from_secs(240);
/// Default of `http.provider_timeout_ms`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest provider answer we read.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// How a request is authenticated.
#[derive(Clone)]
pub enum Auth {
    /// Azure DevOps: `Authorization: Bearer <token>`.
    Bearer(String),
    /// Jira Cloud: an Atlassian Connect JWT with the qsh of this request, `iss` = our app key.
    ConnectJwt {
        app_key: String,
        shared_secret: String,
        base_path: String,
    },
    /// No header: the URL carries the credential (Discord's interaction webhooks).
    None,
    /// Jira Server: OAuth 1.0a RSA-SHA1.
    OAuth1 {
        consumer_key: String,
        private_key_pem: String,
        access_token: String,
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

/// A provider API failure, classified.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 5xx, timeouts, connection errors: retry with backoff.
    #[error("{0}")]
    Transient(String),
    /// 401/403/404 and other 4xx: retrying will not help.
    #[error("HTTP {status}: {message}")]
    Permanent { status: u16, message: String },
    /// 429 (or 503 with Retry-After): wait until `until`. `by` names the integration
    /// (`provider integration id`) when the request had one.
    #[error("rate limited until {until}")]
    RateLimited {
        until: DateTime<Utc>,
        by: Option<String>,
    },
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Permanent { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A request path and the template it was formatted from. Spans name the template, so that
/// ids and tokens in paths stay out of traces. Build one with [`crate::path!`] or from a
/// literal.
#[derive(Debug, Clone)]
pub struct Path {
    pub template: &'static str,
    pub path: String,
}

impl From<&'static str> for Path {
    fn from(p: &'static str) -> Path {
        Path {
            template: p,
            path: p.to_string(),
        }
    }
}

/// `path!("/issue/{key}/assignee", key = k)`: the formatted path with its template.
#[macro_export]
macro_rules! path {
    ($t:literal $(, $n:ident = $a:expr)* $(,)?) => {
        $crate::providers::http::Path { template: $t, path: format!($t $(, $n = $a)*) }
    };
}

pub struct Request<'a> {
    pub method: Method,
    /// The path template traces show (never the URL, which may hold a token).
    pub route: &'static str,
    /// Absolute URL without query.
    pub url: String,
    pub query: Vec<(String, String)>,
    pub body: Option<&'a Value>,
    /// JSON-patch (ADO PATCH) instead of JSON.
    pub json_patch: bool,
    pub extra_headers: Vec<(&'static str, String)>,
    /// (provider, integration id) whose rate limit this request counts against.
    pub limit: Option<(String, i64)>,
    /// What errors and logs show instead of `url` when the URL holds a credential.
    pub shown_url: Option<String>,
    /// Check the server's TLS certificate (false only for a Jira Server integration with
    /// `verify_ssl: false`, e.g. a self-signed Data Center instance).
    pub verify_tls: bool,
}

impl<'a> Request<'a> {
    pub fn new(method: Method, route: &'static str, url: impl Into<String>) -> Self {
        Request {
            method,
            route,
            url: url.into(),
            query: Vec::new(),
            body: None,
            json_patch: false,
            extra_headers: Vec::new(),
            limit: None,
            shown_url: None,
            verify_tls: true,
        }
    }
    /// The URL as errors may show it.
    pub fn shown_url(&self) -> &str {
        self.shown_url.as_deref().unwrap_or(&self.url)
    }
    pub fn query(mut self, k: &str, v: impl Into<String>) -> Self {
        self.query.push((k.to_string(), v.into()));
        self
    }
    pub fn json(mut self, body: &'a Value) -> Self {
        self.body = Some(body);
        self
    }
}

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
    pub unsaved_tokens: std::sync::Arc<crate::providers::vsts::oauth::UnsavedTokens>,
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
        if status == StatusCode::TOO_MANY_REQUESTS
            || (status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_some())
        {
            return Err(ApiError::RateLimited {
                until: rate_limit_until(retry_after.as_deref(), reset.as_deref(), Utc::now()),
                by: req
                    .limit
                    .as_ref()
                    .map(|(provider, id)| format!("{provider} integration {id}")),
            });
        }
        if status.is_server_error() {
            return Err(ApiError::Transient(format!(
                "{} {} answered {}: {}",
                req.method,
                req.shown_url(),
                status.as_u16(),
                snippet(&bytes)
            )));
        }
        if !status.is_success() {
            return Err(ApiError::Permanent {
                status: status.as_u16(),
                message: format!("{} {}: {}", req.method, req.shown_url(), snippet(&bytes)),
            });
        }
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

fn snippet(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).replace('\n', " ")
}

/// When a rate limit ends: `Retry-After` seconds (or an HTTP date), else `X-RateLimit-Reset`
/// (Unix seconds, or an ISO-8601 time), else 60 s.
pub fn rate_limit_until(
    retry_after: Option<&str>,
    reset: Option<&str>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let ra = retry_after.and_then(|v| {
        let v = v.trim();
        v.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| now + chrono::Duration::milliseconds((s.min(86_400.0) * 1000.0) as i64))
            .or_else(|| {
                DateTime::parse_from_rfc2822(v)
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            })
    });
    let rs = || {
        reset.and_then(|v| {
            let v = v.trim();
            v.parse::<i64>()
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, 0))
                .or_else(|| {
                    DateTime::parse_from_rfc3339(v)
                        .ok()
                        .map(|t| t.with_timezone(&Utc))
                })
                .or_else(|| {
                    chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%MZ")
                        .ok()
                        .map(|t| t.and_utc())
                })
        })
    };
    ra.or_else(rs)
        .filter(|t| *t > now)
        .unwrap_or(now + chrono::Duration::seconds(60))
        .min(now + chrono::Duration::hours(24))
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

fn authorization(auth: &Auth, req: &Request<'_>) -> Result<Option<String>, ApiError> {
    match auth {
        Auth::None => Ok(None),
        Auth::Bearer(t) => Ok(Some(format!("Bearer {t}"))),
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
            let token =
                crate::providers::jira::auth::sign(&claims, shared_secret).map_err(|e| {
                    ApiError::Permanent {
                        status: 0,
                        message: format!("cannot sign the Connect JWT: {e}"),
                    }
                })?;
            Ok(Some(format!("JWT {token}")))
        }
        Auth::OAuth1 {
            consumer_key,
            private_key_pem,
            access_token,
        } => {
            let key = parse_rsa_key(private_key_pem).map_err(|m| ApiError::Permanent {
                status: 0,
                message: m,
            })?;
            Ok(Some(oauth1_authorization(
                req.method.as_str(),
                &req.url,
                &req.query,
                consumer_key,
                access_token,
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
    use super::*;

    #[test]
    fn retry_after_and_reset() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        assert_eq!(
            rate_limit_until(Some("2"), None, now),
            now + chrono::Duration::seconds(2)
        );
        assert_eq!(
            rate_limit_until(None, Some("1700000030"), now),
            now + chrono::Duration::seconds(30)
        );
        assert_eq!(
            rate_limit_until(None, Some("2023-11-14T22:14Z"), now).timestamp(),
            1_700_000_040
        );
        assert_eq!(
            rate_limit_until(Some("junk"), None, now),
            now + chrono::Duration::seconds(60)
        );
    }

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
            "../../tests/fixtures/jira_server_oauth1_base_string_vectors.json"
        ))
        .unwrap_or_default();
        let v = &vectors["jira_server_example"];
        let key = parse_rsa_key(include_str!("../../tests/fixtures/test_rsa_private.pem"))
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
                "../../tests/fixtures/test_rsa_private_pkcs1.pem"
            ))
            .is_ok()
        );
        assert!(parse_rsa_key("not a key").is_err());
    }

    #[test]
    fn query_encoding_and_paths() {
        assert_eq!(
            with_query("https://x/a", &[("q".into(), "a b,c".into())]),
            "https://x/a?q=a%20b%2Cc"
        );
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
