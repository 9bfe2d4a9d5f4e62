//! The metrics reads on SQLite (see [`Metrics`]); text is read as BLOBs, as in `sqlite.rs`.

use chrono::{DateTime, Utc};
use sqlx::{Row, SqliteConnection};

use super::{SqliteStore, job_row, ms, now_ms, opt_text, time};
use crate::model::{BucketCount, JobRow, ReasonCount};
use crate::storage::Metrics;

impl Metrics for SqliteStore {
    async fn attempts_by_bucket(
        c: &mut SqliteConnection,
        since: DateTime<Utc>,
        bucket_ms: i64,
    ) -> sqlx::Result<Vec<BucketCount>> {
        // Integer division: both sides are milliseconds, and finished_at >= since.
        let rows = sqlx::query(
            "SELECT (finished_at - $1) / $2 AS bucket, outcome, COUNT(*) AS n FROM ( \
                SELECT finished_at, 'done' AS outcome FROM queue_jobs WHERE state = 'done' AND finished_at >= $1 \
                UNION ALL SELECT finished_at, outcome FROM queue_attempts WHERE finished_at >= $1) \
             GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .bind(ms(since))
        .bind(bucket_ms)
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(BucketCount {
                    bucket: r.try_get("bucket")?,
                    outcome: r.try_get("outcome")?,
                    count: r.try_get("n")?,
                })
            })
            .collect()
    }

    async fn snoozes_since(
        c: &mut SqliteConnection,
        since: DateTime<Utc>,
    ) -> sqlx::Result<Vec<ReasonCount>> {
        let rows = sqlx::query(
            "SELECT CAST(error AS BLOB) AS error, COUNT(*) AS n FROM queue_attempts \
             WHERE outcome = 'snoozed' AND finished_at >= $1 GROUP BY 1 ORDER BY 2 DESC, 1",
        )
        .bind(ms(since))
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReasonCount {
                    reason: opt_text(r, "error")?,
                    count: r.try_get("n")?,
                })
            })
            .collect()
    }

    async fn first_finish_since(
        c: &mut SqliteConnection,
        since: DateTime<Utc>,
    ) -> sqlx::Result<Option<DateTime<Utc>>> {
        let t: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(t) FROM ( \
                SELECT MIN(finished_at) AS t FROM queue_jobs WHERE state = 'done' AND finished_at >= $1 \
                UNION ALL SELECT MIN(finished_at) FROM queue_attempts WHERE finished_at >= $1)",
        )
        .bind(ms(since))
        .fetch_one(&mut *c)
        .await?;
        Ok(t.map(time))
    }

    async fn count_unfinished(c: &mut SqliteConnection, queue: &str) -> sqlx::Result<i64> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM queue_jobs WHERE queue = $1 AND state IN ('pending', 'failed', 'running')",
        )
        .bind(queue)
        .fetch_one(&mut *c)
        .await
    }

    async fn any_unfinished(c: &mut SqliteConnection, queue: &str) -> sqlx::Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM queue_jobs WHERE queue = $1 AND state IN ('pending', 'failed')) \
             OR EXISTS (SELECT 1 FROM queue_jobs WHERE state = 'running' AND queue = $1)",
        )
        .bind(queue)
        .fetch_one(&mut *c)
        .await
    }

    async fn recent_failures(
        c: &mut SqliteConnection,
        queue: &str,
        dedup_keys: Option<&[String]>,
        limit: i64,
    ) -> sqlx::Result<Vec<JobRow>> {
        let keys = dedup_keys.map(|k| serde_json::to_string(k).unwrap_or_else(|_| "[]".into()));
        let rows = sqlx::query(concat!(
            "SELECT ",
            job_columns!("$4"),
            " FROM queue_jobs WHERE queue = $1 AND state IN ('failed', 'dead') \
             AND ($2 IS NULL OR dedup_key IN (SELECT value FROM json_each($2))) \
             ORDER BY COALESCE(finished_at, started_at, run_at) DESC, id DESC LIMIT $3"
        ))
        .bind(queue)
        .bind(keys)
        .bind(limit)
        .bind(now_ms())
        .fetch_all(&mut *c)
        .await?;
        rows.iter().map(job_row).collect()
    }
}
