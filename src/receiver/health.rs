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
        .route("/metrics", get(metrics))
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

/// Prometheus text. Queue depth and oldest pending age are read from the database at scrape
/// time, so every receiver and worker process reports the same queue.
async fn metrics(
    State(state): State<AppState>,
) -> ApiResult<([(axum::http::HeaderName, &'static str); 1], String)> {
    let handle = crate::telemetry::metrics()
        .ok_or_else(|| ApiError::unavailable("metrics recorder unavailable"))?;
    let stats = crate::ops::stats(&state.db)
        .await
        .map_err(|e| ApiError::unavailable(format!("cannot read queue stats: {e}")))?;
    for q in issuesync_jobs::queues::ALL {
        for st in crate::store::jobs::STATES {
            let n = stats
                .counts
                .iter()
                .find(|c| c.queue == *q && c.state == *st)
                .map(|c| c.count)
                .unwrap_or(0);
            metrics::gauge!("issuesync_queue_jobs", "queue" => *q, "state" => *st).set(n as f64);
        }
        let age = stats
            .oldest_pending_age_s
            .iter()
            .find(|(n, _)| n == q)
            .map(|(_, a)| *a)
            .unwrap_or(0);
        metrics::gauge!("issuesync_queue_oldest_pending_age_seconds", "queue" => *q)
            .set(age as f64);
    }
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        handle.render(),
    ))
}
