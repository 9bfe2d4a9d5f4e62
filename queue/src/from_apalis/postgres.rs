//! The move on Postgres: `apalis.jobs` (schema `apalis`, dropped with its functions).

use sqlx::{PgPool, Row};

use super::{Moved, NewRow, OldJob};

pub(super) async fn move_jobs(
    pool: &PgPool,
    convert: impl Fn(OldJob) -> NewRow,
) -> Result<Moved, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('apalis.jobs') IS NOT NULL")
        .fetch_one(&mut *tx)
        .await?;
    if !exists {
        return Ok(Moved::default());
    }
    let rows = sqlx::query(
        "SELECT id, job_type, job, status, attempts, max_attempts, run_at, \
         CAST(last_result AS TEXT) AS last_result, lock_by, idempotency_key FROM apalis.jobs \
         WHERE status IN ('Pending', 'Queued', 'Running') OR (status = 'Failed' AND attempts < max_attempts)",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut moved = Moved {
        dropped: true,
        ..Moved::default()
    };
    for r in &rows {
        let new = convert(OldJob {
            id: r.try_get("id")?,
            queue: r.try_get("job_type")?,
            envelope: r.try_get("job")?,
            status: r.try_get("status")?,
            attempts: r.try_get("attempts")?,
            max_attempts: r.try_get("max_attempts")?,
            run_at: r.try_get("run_at")?,
            last_result: r.try_get("last_result")?,
            holder: r.try_get("lock_by")?,
            dedup_key: r.try_get("idempotency_key")?,
        });
        let n = sqlx::query(
            "INSERT INTO queue_jobs (id, queue, kind, payload, state, run_at, attempts, max_attempts, \
             dedup_key, partition_key, last_error, traceparent, finished_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, CASE WHEN $5 = 'dead' THEN now() END) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&new.id)
        .bind(&new.queue)
        .bind(&new.kind)
        .bind(&new.payload)
        .bind(new.state)
        .bind(new.run_at)
        .bind(new.attempts)
        .bind(new.max_attempts)
        .bind(&new.dedup_key)
        .bind(&new.partition_key)
        .bind(&new.last_error)
        .bind(&new.traceparent)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        moved.jobs += n;
        if new.state == "dead" {
            moved.unreadable += n;
        }
    }
    sqlx::query("DROP SCHEMA apalis CASCADE")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(moved)
}
