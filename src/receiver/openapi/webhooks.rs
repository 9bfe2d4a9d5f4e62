//! The webhook routes of `receiver::webhooks::routes()`, described here (their handlers take
//! the raw body and headers, which utoipa cannot describe from their signatures). Each one
//! is verified on the raw body before anything is stored.

#![allow(dead_code)]

use utoipa::{IntoResponses, OpenApi, ToSchema};

use super::schemas::ApiErrorBody;

pub const JIRA_JWT: &str = "jira_jwt";
pub const JIRA_JWT_QUERY: &str = "jira_jwt_query";

#[derive(OpenApi)]
#[openapi(paths(
    vsts_issue_updated,
    jira_server_issue_updated,
    jira_issue_updated,
    jira_descriptor,
    jira_installed,
    jira_uninstalled,
    discord_interactions,
    healthz,
    readyz,
    metrics
))]
pub struct Doc;

/// What a webhook answers once the delivery is verified.
#[derive(ToSchema)]
pub struct WebhookAnswer {
    /// `queued` (stored with its job), `duplicate` (stored before: nothing enqueued),
    /// `ignored` (verified, nothing to do), `installed` or `uninstalled`.
    #[schema(example = "queued")]
    pub status: String,
    pub delivery_id: Option<i64>,
    pub job_id: Option<String>,
    /// Why an `ignored` delivery needed nothing.
    pub reason: Option<String>,
    /// Lifecycle callbacks: the integration installed or uninstalled.
    pub integration_id: Option<i64>,
}

/// The refusals of a webhook.
#[derive(IntoResponses)]
pub enum WebhookErrors {
    /// The body is not the provider's JSON, or lacks what the event needs.
    #[response(status = 400, example = json!({"error": "bad_request", "detail": "the body is not JSON"}))]
    BadRequest(ApiErrorBody),
    /// The verification failed: the request is not from the provider.
    #[response(status = 401, example = json!({"error": "unauthorized", "detail": "shared-secret header does not match"}))]
    Unauthorized(ApiErrorBody),
    /// No active integration matches the delivery.
    #[response(status = 404, example = json!({"error": "unknown_integration", "detail": "no active vsts integration \"c0ffee\""}))]
    UnknownIntegration(ApiErrorBody),
    /// The body did not arrive within `http.body_timeout_ms`.
    #[response(status = 408, example = json!({"error": "request_timeout", "detail": "the body did not arrive within 10000 ms"}))]
    RequestTimeout(ApiErrorBody),
    /// The body is larger than `http.body_limit_bytes`.
    #[response(status = 413, example = json!({"error": "payload_too_large", "detail": "the body is larger than 1048576 bytes"}))]
    PayloadTooLarge(ApiErrorBody),
    /// Too many bodies are being received at once, or the database is unreachable.
    #[response(status = 503, example = json!({"error": "unavailable", "detail": "too many request bodies are being received at once; retry later"}))]
    Unavailable(ApiErrorBody),
}

/// Azure DevOps service hook (`workitem.updated`). Verified by the `shared-secret` header: the
/// secret of the integration's webhook subscription (a cheap check against all active
/// integrations before the body is read, then against the integration the body names).
#[utoipa::path(post, path = "/extensions/vsts/issue-updated/", tag = "webhooks", security(()),
    params(("shared-secret" = String, Header, description = "The subscription's shared secret")),
    request_body(content = Object, description = "The service hook event", content_type = "application/json"),
    responses((status = 200, description = "Verified", body = WebhookAnswer), WebhookErrors))]
fn vsts_issue_updated() {}

/// Jira Server webhook. Verified by the path's token: a JWT (HS256) that names the integration
/// and is signed with its `webhook_secret`; the token is never logged.
#[utoipa::path(post, path = "/extensions/jira-server/issue-updated/{token}/", tag = "webhooks", security(()),
    params(("token" = String, Path, description = "The webhook token issued at install")),
    request_body(content = Object, description = "The Jira issue event (with a changelog)", content_type = "application/json"),
    responses((status = 200, description = "Verified", body = WebhookAnswer), WebhookErrors))]
fn jira_server_issue_updated() {}

/// Jira Cloud issue event (Connect app). Verified by the tenant's JWT (HS256, shared secret,
/// `qsh`), in the `Authorization` header or the `jwt` query parameter.
#[utoipa::path(post, path = "/extensions/jira/issue-updated/", tag = "webhooks",
    security(("jira_jwt" = []), ("jira_jwt_query" = [])),
    params(("x-atlassian-webhook-identifier" = Option<String>, Header, description = "Jira's delivery id; the delivery key when present")),
    request_body(content = Object, description = "The Jira issue event (with a changelog)", content_type = "application/json"),
    responses((status = 200, description = "Verified", body = WebhookAnswer), WebhookErrors))]
fn jira_issue_updated() {}

/// The Atlassian Connect descriptor (`atlassian-connect.json`) that a Jira Cloud site admin
/// installs by its URL: our app key and name, `baseUrl` = the public URL, the lifecycle
/// callbacks, the issue webhook and the scopes. Served without authentication.
#[utoipa::path(get, path = "/extensions/jira/descriptor/", tag = "webhooks", security(()),
    responses((status = 200, description = "The descriptor", body = Object, content_type = "application/json",
        example = json!({"key": "issuesync.example.com.jira", "baseUrl": "https://issuesync.example.com", "authentication": {"type": "jwt"}}))))]
fn jira_descriptor() {}

/// Jira Cloud `installed` lifecycle callback. Verified by Atlassian's asymmetric JWT (RS256,
/// `aud` = our base URL); on a re-install the tenant's current shared secret signs it too.
#[utoipa::path(post, path = "/extensions/jira/installed/", tag = "webhooks",
    security(("jira_jwt" = []), ("jira_jwt_query" = [])),
    request_body(content = JiraInstalled, content_type = "application/json"),
    responses((status = 200, description = "Installed", body = WebhookAnswer), WebhookErrors))]
fn jira_installed() {}

/// Jira Cloud `uninstalled` lifecycle callback: disables the tenant's integration. Verified
/// as `installed`.
#[utoipa::path(post, path = "/extensions/jira/uninstalled/", tag = "webhooks",
    security(("jira_jwt" = []), ("jira_jwt_query" = [])),
    request_body(content = JiraUninstalled, content_type = "application/json"),
    responses((status = 200, description = "Uninstalled", body = WebhookAnswer), WebhookErrors))]
fn jira_uninstalled() {}

/// The Connect `installed` payload (the fields we read).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JiraInstalled {
    #[schema(min_length = 1)]
    pub client_key: String,
    #[schema(min_length = 1)]
    pub shared_secret: String,
    #[schema(min_length = 1, example = "https://acme.atlassian.net")]
    pub base_url: String,
    pub oauth_client_id: Option<String>,
    pub public_key: Option<String>,
}

/// The Connect `uninstalled` payload (the field we read).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JiraUninstalled {
    #[schema(min_length = 1)]
    pub client_key: String,
}

/// Discord interactions endpoint. Verified by the Ed25519 signature of timestamp + raw body
/// with the application's `public_key`; the body's application must be the signer's. A PING
/// answers a PONG; a button click is applied inline or deferred to a job.
#[utoipa::path(post, path = "/extensions/discord/interactions/", tag = "webhooks", security(()),
    params(
        ("x-signature-ed25519" = String, Header, description = "Hex Ed25519 signature of timestamp + body"),
        ("x-signature-timestamp" = String, Header, description = "The signed timestamp")),
    request_body(content = Object, description = "A Discord interaction", content_type = "application/json"),
    responses((status = 200, description = "The interaction response (`{\"type\": 1}` for a PING)", body = Object), WebhookErrors))]
fn discord_interactions() {}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses((status = 200, description = "Up", body = Object, example = json!({"status": "ok"}))))]
fn healthz() {}

/// The database answers; a Redis outage is reported as degraded, not unready.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses(
        (status = 200, description = "Ready", body = Object,
            example = json!({"status": "ready", "database": "sqlite", "redis": false, "rate_limiter": "local", "degraded": []})),
        (status = 503, description = "The database is unreachable", body = ApiErrorBody)))]
fn readyz() {}

/// Prometheus metrics (here unless `metrics_bind` serves them on their own address).
#[utoipa::path(get, path = "/metrics", tag = "health", security(()),
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 503, description = "No metrics recorder", body = ApiErrorBody)))]
fn metrics() {}
