//! Stored webhook deliveries: the raw body of every verified delivery, unique per provider
//! and delivery key, and the job it produced.

use serde::Serialize;
use sqlx::types::Json;

use super::Result;
use crate::db::Tx;
use crate::on_tx;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Delivery {
    pub id: i64,
    pub provider: String,
    pub delivery_key: String,
    pub integration_id: Option<i64>,
    pub received_at: i64,
    pub headers: Json<serde_json::Value>,
    #[serde(skip)]
    pub body: Vec<u8>,
    pub job_id: Option<String>,
}

pub struct NewDelivery<'a> {
    pub provider: &'a str,
    pub delivery_key: &'a str,
    pub integration_id: Option<i64>,
    pub headers: &'a serde_json::Value,
    pub body: &'a [u8],
    /// The job that will process it, when its id is chosen before the insert.
    pub job_id: Option<&'a str>,
}

/// Stores a delivery; `None` when one with the same key exists (a provider retry).
pub async fn insert_delivery(tx: &mut Tx, d: &NewDelivery<'_>, now: i64) -> Result<Option<i64>> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_scalar(
        "INSERT INTO webhook_deliveries (provider, delivery_key, integration_id, received_at, headers, body, job_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (provider, delivery_key) DO NOTHING RETURNING id"
    )
    .bind(d.provider)
    .bind(d.delivery_key)
    .bind(d.integration_id)
    .bind(now)
    .bind(Json(d.headers))
    .bind(d.body)
    .bind(d.job_id)
    .fetch_optional(c)
    .await
    })?)
}

pub async fn set_delivery_job(tx: &mut Tx, id: i64, job_id: &str) -> Result<()> {
    on_tx!(tx, |c| sqlx::query(
        "UPDATE webhook_deliveries SET job_id = $2 WHERE id = $1"
    )
    .bind(id)
    .bind(job_id)
    .execute(c)
    .await
    .map(|_| ()))?;
    Ok(())
}

pub async fn find_delivery(tx: &mut Tx, id: i64) -> Result<Option<Delivery>> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_as(
        "SELECT id, provider, delivery_key, integration_id, received_at, headers, body, job_id FROM webhook_deliveries WHERE id = $1"
    )
    .bind(id)
    .fetch_optional(c)
    .await
    })?)
}

/// Newest first, keyset-paged by id.
pub async fn list_deliveries(
    tx: &mut Tx,
    provider: Option<&str>,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Vec<Delivery>> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_as(
        "SELECT id, provider, delivery_key, integration_id, received_at, headers, body, job_id FROM webhook_deliveries \
         WHERE ($1 IS NULL OR provider = $1) AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
    )
    .bind(provider)
    .bind(before_id)
    .bind(limit)
    .fetch_all(c)
    .await
    })?)
}

pub async fn count_deliveries(tx: &mut Tx) -> Result<i64> {
    Ok(on_tx!(tx, |c| sqlx::query_scalar(
        "SELECT COUNT(*) FROM webhook_deliveries"
    )
    .fetch_one(c)
    .await)?)
}

/// The `process_webhook` job stored with a delivery by [`insert_delivery_with_job_pg`].
pub struct DeliveryJob<'a> {
    pub id: &'a str,
    pub queue: &'a str,
    pub max_attempts: i32,
    /// The serialized envelope before and after its delivery id: the statement puts the
    /// new delivery's id between them, so the stored bytes are those `serde_json::to_vec`
    /// makes of the envelope (one form for every job, which the job-kind filter relies on).
    pub envelope_head: &'a str,
    pub envelope_tail: &'a str,
    /// The job's dedup key is this followed by the delivery id.
    pub dedup_prefix: &'a str,
}

/// Postgres: the delivery and its job in one autocommitted statement, the receiver's hot
/// path (one round trip where BEGIN, two INSERTs and COMMIT are four; both rows or neither).
/// `None` when a delivery with the same key exists, and then no job is inserted.
pub async fn insert_delivery_with_job_pg(
    pool: &sqlx::PgPool,
    d: &NewDelivery<'_>,
    job: &DeliveryJob<'_>,
    now: i64,
) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar(
        "WITH d AS (\
           INSERT INTO webhook_deliveries (provider, delivery_key, integration_id, received_at, headers, body, job_id) \
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (provider, delivery_key) DO NOTHING RETURNING id), \
         j AS (\
           INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, idempotency_key) \
           SELECT $7, $8, convert_to($9 || d.id::text || $12, 'UTF8'), \
                  'Pending', 0, $10, now(), 0, $11 || d.id FROM d) \
         SELECT id FROM d",
    )
    .bind(d.provider)
    .bind(d.delivery_key)
    .bind(d.integration_id)
    .bind(now)
    .bind(Json(d.headers))
    .bind(d.body)
    .bind(job.id)
    .bind(job.queue)
    .bind(job.envelope_head)
    .bind(job.max_attempts)
    .bind(job.dedup_prefix)
    .bind(job.envelope_tail)
    .fetch_optional(pool)
    .await?)
}
