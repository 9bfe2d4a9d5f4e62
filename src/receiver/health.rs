//! `/healthz` (the process is up) and `/readyz` (database and queue reachable).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};
use std::time::Duration;

use crate::receiver::error::{ApiError, ApiResult};
use crate::receiver::state::HttpState;
use crate::sync::Services;

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

pub fn metrics_routes() -> Router<HttpState> {
    Router::new().route("/metrics", get(metrics))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers. Redis down is reported as degraded, not unready: the
/// receiver stores webhooks with the database alone, and taking every receiver out of a
/// load balancer on a Redis outage would turn a degradation into an outage.
async fn readyz(State(state): State<Services>) -> ApiResult<Json<Value>> {
    state
        .db
        .ping()
        .await
        .map_err(|e| ApiError::unavailable(format!("database unreachable: {e}")))?;
    let mut degraded = Vec::new();
    if let Err(e) = tokio::time::timeout(REDIS_PING_TIMEOUT, state.kv.ping())
        .await
        .unwrap_or_else(|_| Err(crate::kv::KvError::Timeout(REDIS_PING_TIMEOUT)))
    {
        degraded.push(format!("redis unreachable: {e}"));
    }
    if state.http.limiter.is_fallback() {
        degraded.push(
            "rate limiter: Redis unavailable, each worker process limits its share in-process"
                .to_string(),
        );
    }
    Ok(Json(json!({
        "status": "ready",
        "database": state.db.backend(),
        "redis": state.kv.is_redis(),
        "rate_limiter": state.http.limiter.mode(),
        "degraded": degraded,
    })))
}

const REDIS_PING_TIMEOUT: Duration = Duration::from_millis(500);

/// How often the queue gauges are read from the database.
pub const QUEUE_GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// A rendering is reused this long: any number of scrapers cost one rendering a second.
const RENDER_TTL: Duration = Duration::from_secs(1);

static RENDERED: std::sync::Mutex<Option<(std::time::Instant, axum::body::Bytes)>> =
    std::sync::Mutex::new(None);

/// Prometheus text, rendered from memory: the queue gauges are set by
/// [`refresh_queue_gauges`], so a scrape never touches the database.
async fn metrics() -> ApiResult<(
    [(axum::http::HeaderName, &'static str); 1],
    axum::body::Bytes,
)> {
    let handle = crate::telemetry::metrics()
        .ok_or_else(|| ApiError::unavailable("metrics recorder unavailable"))?;
    let fresh = RENDERED.lock().ok().and_then(|r| {
        r.as_ref()
            .filter(|(at, _)| at.elapsed() < RENDER_TTL)
            .map(|(_, b)| b.clone())
    });
    let body = match fresh {
        Some(b) => b,
        None => {
            let b = axum::body::Bytes::from(handle.render());
            if let Ok(mut r) = RENDERED.lock() {
                *r = Some((std::time::Instant::now(), b.clone()));
            }
            b
        }
    };
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    ))
}

/// Reads queue depth and oldest pending age every few seconds into the gauges, so every
/// receiver and worker process reports the same queue. One query per interval per process,
/// however many scrapers there are.
pub async fn refresh_queue_gauges(state: Services, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(QUEUE_GAUGE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let started = std::time::Instant::now();
        match crate::ops::stats(&state.db).await {
            Ok(stats) => set_queue_gauges(&stats),
            Err(e) => {
                tracing::debug!(error = %e, "cannot read queue stats for the gauges");
                metrics::counter!("issuesync_queue_gauge_errors_total").increment(1);
            }
        }
        metrics::gauge!("issuesync_queue_gauges_refresh_seconds")
            .set(started.elapsed().as_secs_f64());
    }
}

fn set_queue_gauges(stats: &crate::ops::Stats) {
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
}
