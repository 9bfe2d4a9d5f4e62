//! `/healthz` (the process is up) and `/readyz` (database and queue reachable).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

use crate::receiver::error::{ApiError, ApiResult};
use crate::startup::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    state
        .db
        .ping()
        .await
        .map_err(|e| ApiError::unavailable(format!("database unreachable: {e}")))?;
    state
        .kv
        .ping()
        .await
        .map_err(|e| ApiError::unavailable(format!("redis unreachable: {e}")))?;
    Ok(Json(
        json!({"status": "ready", "database": state.db.backend(), "redis": state.kv.is_redis()}),
    ))
}
