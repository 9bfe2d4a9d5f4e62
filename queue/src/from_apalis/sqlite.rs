//! The move on SQLite: tables `Jobs` and `Workers`, and apalis' migration history
//! `_sqlx_migrations` (the app and the queue keep theirs in their own tables).

use chrono::DateTime;
use sqlx::{Row, SqlitePool};

use super::{Moved, NewRow, OldJob};

fn lossy(b: Option<Vec<u8>>) -> Option<String> {
    b.map(|b| String::from_utf8_lossy(&b).into_owned())
}

pub(super) async fn move_jobs(
    pool: &SqlitePool,
    convert: impl Fn(OldJob) -> NewRow,
) -> Result<Moved, sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'Jobs')",
    )
    .fetch_one(&mut *tx)
    .await?;
    if !exists {
        return Ok(Moved::default());
    }
    let rows = sqlx::query(
        "SELECT CAST(id AS BLOB) AS id, CAST(job_type AS BLOB) AS job_type, CAST(job AS BLOB) AS job, \
         CAST(status AS BLOB) AS status, attempts, max_attempts, run_at, \
         CAST(last_result AS BLOB) AS last_result, CAST(lock_by AS BLOB) AS lock_by, \
         CAST(idempotency_key AS BLOB) AS idempotency_key FROM Jobs \
         WHERE status IN ('Pending', 'Queued', 'Running') OR (status = 'Failed' AND attempts < max_attempts)",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut moved = Moved {
        dropped: true,
        ..Moved::default()
    };
    let now = chrono::Utc::now().timestamp_millis();
    for r in &rows {
        let run_at: i64 = r.try_get("run_at")?;
        let new = convert(OldJob {
            id: lossy(r.try_get("id")?).unwrap_or_default(),
            queue: lossy(r.try_get("job_type")?).unwrap_or_default(),
            envelope: r.try_get::<Option<Vec<u8>>, _>("job")?.unwrap_or_default(),
            status: lossy(r.try_get("status")?).unwrap_or_default(),
            attempts: r.try_get("attempts")?,
            max_attempts: r.try_get("max_attempts")?,
            run_at: DateTime::from_timestamp(run_at, 0).unwrap_or(DateTime::UNIX_EPOCH),
            last_result: lossy(r.try_get("last_result")?),
            holder: lossy(r.try_get("lock_by")?),
            dedup_key: lossy(r.try_get("idempotency_key")?),
        });
        let n = sqlx::query(
            "INSERT INTO queue_jobs (id, queue, kind, payload, state, run_at, attempts, max_attempts, \
             dedup_key, partition_key, last_error, created_at, traceparent, finished_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, CASE WHEN $5 = 'dead' THEN $12 END) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&new.id)
        .bind(&new.queue)
        .bind(&new.kind)
        .bind(&new.payload)
        .bind(new.state)
        .bind(new.run_at.timestamp_millis())
        .bind(new.attempts)
        .bind(new.max_attempts)
        .bind(&new.dedup_key)
        .bind(&new.partition_key)
        .bind(&new.last_error)
        .bind(now)
        .bind(&new.traceparent)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        moved.jobs += n;
        if new.state == "dead" {
            moved.unreadable += n;
        }
    }
    for stmt in [
        "DROP TABLE Jobs",
        "DROP TABLE IF EXISTS Workers",
        "DROP TABLE IF EXISTS _sqlx_migrations",
    ] {
        sqlx::query(stmt).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(moved)
}
