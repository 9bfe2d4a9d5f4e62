//! The metrics reads on PostgreSQL (see [`Metrics`]).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use super::{PgStore, job_row};
use crate::model::{BucketCount, JobRow, ReasonCount};
use crate::storage::Metrics;

impl Metrics for PgStore {
    async fn attempts_by_bucket(
        c: &mut PgConnection,
        since: DateTime<Utc>,
        bucket_ms: i64,
    ) -> sqlx::Result<Vec<BucketCount>> {
        let rows = sqlx::query(
            "SELECT CAST(floor(EXTRACT(EPOCH FROM o.finished_at - $1::timestamptz) * 1000 / $2::bigint) AS BIGINT) \
                 AS bucket, o.outcome, COUNT(*) AS n FROM ( \
                SELECT finished_at, 'done' AS outcome FROM queue_jobs WHERE state = 'done' AND finished_at >= $1 \
                UNION ALL SELECT finished_at, outcome FROM queue_attempts WHERE finished_at >= $1) AS o \
             GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .bind(since)
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
        c: &mut PgConnection,
        since: DateTime<Utc>,
    ) -> sqlx::Result<Vec<ReasonCount>> {
        let rows = sqlx::query(
            "SELECT error, COUNT(*) AS n FROM queue_attempts WHERE outcome = 'snoozed' AND finished_at >= $1 \
             GROUP BY error ORDER BY 2 DESC, 1",
        )
        .bind(since)
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReasonCount {
                    reason: r.try_get("error")?,
                    count: r.try_get("n")?,
                })
            })
            .collect()
    }

    async fn first_finish_since(
        c: &mut PgConnection,
        since: DateTime<Utc>,
    ) -> sqlx::Result<Option<DateTime<Utc>>> {
        sqlx::query_scalar(
            "SELECT MIN(t) FROM ( \
                SELECT MIN(finished_at) AS t FROM queue_jobs WHERE state = 'done' AND finished_at >= $1 \
                UNION ALL SELECT MIN(finished_at) FROM queue_attempts WHERE finished_at >= $1) AS f",
        )
        .bind(since)
        .fetch_one(&mut *c)
        .await
    }

    async fn count_unfinished(c: &mut PgConnection, queue: &str) -> sqlx::Result<i64> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM queue_jobs WHERE queue = $1 AND state IN ('pending', 'failed', 'running')",
        )
        .bind(queue)
        .fetch_one(&mut *c)
        .await
    }

    async fn any_unfinished(c: &mut PgConnection, queue: &str) -> sqlx::Result<bool> {
        // Each side is a probe of a partial index (fetch, running).
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM queue_jobs WHERE queue = $1 AND state IN ('pending', 'failed')) \
             OR EXISTS (SELECT 1 FROM queue_jobs WHERE state = 'running' AND queue = $1)",
        )
        .bind(queue)
        .fetch_one(&mut *c)
        .await
    }

    async fn recent_failures(
        c: &mut PgConnection,
        queue: &str,
        dedup_keys: Option<&[String]>,
        limit: i64,
    ) -> sqlx::Result<Vec<JobRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM queue_jobs WHERE queue = $1 AND state IN ('failed', 'dead') \
             AND ($2::text[] IS NULL OR dedup_key = ANY($2)) \
             ORDER BY COALESCE(finished_at, started_at, run_at) DESC, id DESC LIMIT $3"
        ))
        .bind(queue)
        .bind(dedup_keys.map(|k| k.to_vec()))
        .bind(limit)
        .fetch_all(&mut *c)
        .await?;
        rows.iter().map(job_row).collect()
    }
}
