//! Typed enqueue: producers put a job from the `jobs` contract into the queue, inside their
//! own transaction.

use chrono::{DateTime, Utc};
use issuesync_jobs::{Envelope, Job};

use crate::db::Tx;
use crate::store::StoreError;
use crate::store::jobs::{self, Enqueued, NewJob};

/// `envelope` with the `traceparent` of the current span, unless it names one already: the
/// worker continues that trace. Every path that stores a job goes through here.
pub fn traced(mut envelope: Envelope) -> Envelope {
    if envelope.traceparent.is_none() {
        envelope.traceparent = crate::trace::current_traceparent();
    }
    envelope
}

/// Enqueues `job` to run now, in the caller's transaction.
pub async fn enqueue<J: Job>(tx: &mut Tx, job: &J) -> Result<Enqueued, StoreError> {
    enqueue_at(tx, job, None).await
}

/// Enqueues `job` to run at `run_at` (now when `None`).
pub async fn enqueue_at<J: Job>(
    tx: &mut Tx,
    job: &J,
    run_at: Option<DateTime<Utc>>,
) -> Result<Enqueued, StoreError> {
    let envelope = Envelope::of(job)
        .map_err(|e| StoreError::Conflict(format!("cannot encode {}: {e}", J::JOB_NAME)))?;
    enqueue_envelope(
        tx,
        J::QUEUE,
        J::MAX_ATTEMPTS,
        envelope,
        job.dedup_key(),
        run_at,
        J::COALESCE,
    )
    .await
}

/// Enqueues an already-built envelope (the admin API and replays use this).
pub async fn enqueue_envelope(
    tx: &mut Tx,
    queue: &str,
    max_attempts: u32,
    envelope: Envelope,
    dedup_key: Option<String>,
    run_at: Option<DateTime<Utc>>,
    coalesce: bool,
) -> Result<Enqueued, StoreError> {
    let envelope = traced(envelope);
    let payload = serde_json::to_vec(&envelope)
        .map_err(|e| StoreError::Conflict(format!("cannot encode job: {e}")))?;
    let r = jobs::enqueue(
        tx,
        &NewJob {
            queue,
            payload,
            max_attempts: i32::try_from(max_attempts).unwrap_or(i32::MAX),
            run_at,
            dedup_key,
            priority: 0,
            coalesce,
            id: None,
            fresh: false,
        },
    )
    .await?;
    let result = if matches!(r, Enqueued::New(_)) {
        "new"
    } else {
        "duplicate"
    };
    metrics::counter!("issuesync_jobs_enqueued_total", "job" => envelope.job.clone(), "result" => result).increment(1);
    Ok(r)
}

/// Enqueues `job` under the id `id` chosen by the caller, whose dedup key is new: it names
/// a row inserted in the same transaction (the receiver's delivery on SQLite, which records `id`
/// first; on Postgres the receiver inserts both in one statement, `insert_delivery_with_job_pg`).
/// Saves the statements that dedup against earlier jobs.
pub async fn enqueue_fresh<J: Job>(
    tx: &mut Tx,
    job: &J,
    id: String,
) -> Result<Enqueued, StoreError> {
    let envelope = Envelope::of(job)
        .map(traced)
        .map_err(|e| StoreError::Conflict(format!("cannot encode {}: {e}", J::JOB_NAME)))?;
    let payload = serde_json::to_vec(&envelope)
        .map_err(|e| StoreError::Conflict(format!("cannot encode job: {e}")))?;
    let r = jobs::enqueue(
        tx,
        &NewJob {
            queue: J::QUEUE,
            payload,
            max_attempts: i32::try_from(J::MAX_ATTEMPTS).unwrap_or(i32::MAX),
            run_at: None,
            dedup_key: job.dedup_key(),
            priority: 0,
            coalesce: J::COALESCE,
            id: Some(id),
            fresh: true,
        },
    )
    .await?;
    metrics::counter!("issuesync_jobs_enqueued_total", "job" => J::JOB_NAME, "result" => "new")
        .increment(1);
    Ok(r)
}
