//! HTTP surface: webhooks, the admin API, health and metrics.

pub mod admin;
pub mod error;
pub mod health;
pub mod jira_lifecycle;
pub mod json_int;
pub mod openapi;
pub mod ops;
pub mod refusals;
pub mod serve;
pub mod state;
pub mod webhooks;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::receiver::error::ApiError;
use crate::receiver::state::HttpState;

pub fn router(state: HttpState) -> Router {
    let body_limit = state.settings.http.body_limit_bytes;
    let timeout = Duration::from_millis(state.settings.http.request_timeout_ms);
    let health = if state.settings.metrics_bind.is_some() {
        health::routes()
    } else {
        health::routes().merge(health::metrics_routes())
    };
    Router::new()
        .merge(health)
        .merge(webhooks::routes())
        .merge(ops::routes())
        .nest("/api/v1", admin::routes(state.clone()))
        // Outside the admin routes' token layer: the document is public.
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(openapi::openapi_json),
        )
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let id = req
                    .headers()
                    .get(X_REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let path = loggable_path(req.uri().path());
                // Info, so the id and the path are on every log line of the request.
                let span = tracing::info_span!(
                    "request",
                    otel.name = %format_args!("{} {path}", req.method()),
                    otel.kind = "server",
                    method = %req.method(),
                    path = %path,
                    request_id = %id,
                );
                crate::trace::continue_from_headers(&span, req.headers());
                span
            }),
        )
        .layer(SetRequestIdLayer::x_request_id(RequestUlid))
        .layer(axum::middleware::map_request(drop_unusable_request_id))
        .with_state(state)
}

/// `X-Request-Id` header name.
const X_REQUEST_ID: &str = "x-request-id";

/// Generates request ids that sort by time, like our job ids.
#[derive(Clone, Copy)]
struct RequestUlid;

impl MakeRequestId for RequestUlid {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        axum::http::HeaderValue::from_str(&ulid::Ulid::generate().to_string())
            .ok()
            .map(RequestId::new)
    }
}

/// A caller's `X-Request-Id` is kept when it is a plain token of at most 128 characters
/// (letters, digits, `-_.:/`); anything else would flood or garble the logs, so it is
/// replaced by a generated id.
async fn drop_unusable_request_id<B>(mut req: axum::http::Request<B>) -> axum::http::Request<B> {
    let usable = req.headers().get(X_REQUEST_ID).is_none_or(|v| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= 128
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.:/".contains(c))
    });
    if !usable {
        req.headers_mut().remove(X_REQUEST_ID);
    }
    req
}

/// `/metrics` alone, for `metrics_bind`.
pub fn metrics_router(state: HttpState) -> Router {
    health::metrics_routes()
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(state)
}

/// The request path as logs may show it: the Jira Server webhook token is a credential, and
/// the query (which may carry `?jwt=`) is never logged.
pub fn loggable_path(path: &str) -> String {
    match path.strip_prefix("/extensions/jira-server/issue-updated/") {
        Some(_) => "/extensions/jira-server/issue-updated/[redacted]/".to_string(),
        None => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn webhook_tokens_are_not_logged() {
        assert_eq!(
            super::loggable_path("/extensions/jira-server/issue-updated/eyJabc.def.ghi/"),
            "/extensions/jira-server/issue-updated/[redacted]/"
        );
        assert_eq!(super::loggable_path("/api/v1/jobs"), "/api/v1/jobs");
    }
}
