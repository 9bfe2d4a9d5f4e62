//! Storing a verified delivery with its `process_webhook` job in one transaction (one
//! statement on Postgres), and answering duplicates.

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use issuesync_jobs::process_webhook::ProcessWebhook;
use serde_json::{Value, json};

use crate::db::Db;
use crate::receiver::error::{ApiError, ApiResult};
use crate::receiver::state::HttpState;
use crate::store::deliveries::{self, NewDelivery};
use crate::store::enqueue::enqueue_fresh;
use crate::store::integrations::Integration;

/// Headers kept with a delivery: never an authentication header.
const KEPT_HEADERS: &[&str] = &[
    "content-type",
    "user-agent",
    "x-atlassian-webhook-identifier",
    "x-atlassian-webhook-retry",
    "x-atlassian-webhook-flow",
    "x-request-id",
];

pub(super) fn kept_headers(headers: &HeaderMap) -> Value {
    let mut m = serde_json::Map::new();
    for name in KEPT_HEADERS {
        if let Some(v) = headers.get(*name).and_then(|v| v.to_str().ok()) {
            m.insert(
                name.to_string(),
                Value::String(v.chars().take(500).collect()),
            );
        }
    }
    Value::Object(m)
}

/// A delivery key must be storable the same way on both backends (Postgres text holds no NUL).
pub(super) fn check_key(key: &str) -> ApiResult<()> {
    if key.contains('\0') || key.len() > 500 {
        return Err(ApiError::bad_request(
            "the delivery id holds a NUL character or is over 500 bytes",
        ));
    }
    Ok(())
}

/// Stores the delivery and enqueues `process_webhook` in one transaction.
pub(super) async fn store_and_enqueue(
    state: &HttpState,
    provider: &str,
    key: &str,
    integration: &Integration,
    headers: &HeaderMap,
    raw: &[u8],
) -> ApiResult<(StatusCode, Json<Value>)> {
    check_key(key)?;
    let kept = kept_headers(headers);
    // The job's id is chosen first so the delivery row records it in its own insert.
    let job_id = ulid::Ulid::generate().to_string();
    let delivery = NewDelivery {
        provider,
        delivery_key: key,
        integration_id: Some(integration.id),
        headers: &kept,
        body: raw,
        job_id: Some(&job_id),
    };
    let inserted = match &state.db {
        Db::Pg(pool) => insert_with_job_pg(pool, &delivery, &job_id).await?,
        Db::Sqlite(_) => {
            let mut tx = state.db.begin().await?;
            let inserted = deliveries::insert_delivery(&mut tx, &delivery, crate::now_ms()).await?;
            if let Some(delivery_id) = inserted {
                enqueue_fresh(&mut tx, &ProcessWebhook { delivery_id }, job_id.clone()).await?;
                tx.commit().await?;
            }
            inserted
        }
    };
    let Some(delivery_id) = inserted else {
        tracing::info!(provider, key, "duplicate delivery");
        metrics::counter!("issuesync_webhooks_total", "provider" => provider.to_string(), "result" => "duplicate").increment(1);
        return Ok((StatusCode::OK, Json(json!({"status": "duplicate"}))));
    };
    metrics::counter!("issuesync_webhooks_total", "provider" => provider.to_string(), "result" => "queued").increment(1);
    // The one line that ties the request id to the delivery and its job.
    tracing::info!(provider, delivery_id, job_id, "webhook queued");
    Ok((
        StatusCode::OK,
        Json(json!({"status": "queued", "delivery_id": delivery_id, "job_id": job_id})),
    ))
}

/// The Postgres fast path: delivery and `process_webhook` job in one statement.
async fn insert_with_job_pg(
    pool: &sqlx::PgPool,
    delivery: &NewDelivery<'_>,
    job_id: &str,
) -> ApiResult<Option<i64>> {
    use issuesync_jobs::{Envelope, Job};
    // The delivery id exists only inside the statement: serialize with a marker id and
    // let the statement put the real one in its place.
    const MARKER: i64 = i64::MIN;
    let encoded = Envelope::of(&ProcessWebhook {
        delivery_id: MARKER,
    })
    .map(crate::store::enqueue::traced)
    .and_then(|e| serde_json::to_string(&e))
    .map_err(|e| {
        tracing::error!(error = %e, "cannot encode the process_webhook job");
        ApiError::internal()
    })?;
    let Some((head, tail)) = encoded.split_once(&MARKER.to_string()) else {
        tracing::error!("the process_webhook envelope has no delivery id");
        return Err(ApiError::internal());
    };
    let job = deliveries::DeliveryJob {
        id: job_id,
        queue: ProcessWebhook::QUEUE,
        max_attempts: i32::try_from(ProcessWebhook::MAX_ATTEMPTS).unwrap_or(i32::MAX),
        envelope_head: head,
        envelope_tail: tail,
        dedup_prefix: ProcessWebhook::DEDUP_PREFIX,
    };
    let inserted =
        deliveries::insert_delivery_with_job_pg(pool, delivery, &job, crate::now_ms()).await?;
    if inserted.is_some() {
        metrics::counter!("issuesync_jobs_enqueued_total", "job" => ProcessWebhook::JOB_NAME, "result" => "new")
            .increment(1);
    }
    Ok(inserted)
}
