//! HTTP surface: webhooks, the admin API, health and metrics.

pub mod admin;
pub mod error;
pub mod health;
pub mod webhooks;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::receiver::error::ApiError;
use crate::startup::AppState;

pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.http.body_limit_bytes;
    let timeout = Duration::from_millis(state.settings.http.request_timeout_ms);
    Router::new()
        .merge(health::routes())
        .merge(webhooks::routes())
        .nest("/api/v1", admin::routes(state.clone()))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
