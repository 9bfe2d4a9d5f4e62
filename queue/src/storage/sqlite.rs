//! The queue's SQL on SQLite. Times are milliseconds since the epoch from this process's
//! clock (one process per database file). Text columns are read as BLOBs and decoded
//! lossily: raw SQL can store bytes that are not UTF-8 in a TEXT column, and such a row must
//! become a dead job, not an error that stops every query. Rows are addressed by rowid for
//! the same reason.
//!
//! Over 600 lines on purpose: every statement of a job's life and of the operator commands
//! for this database is in this one file, in the same order as in `postgres.rs`, so the two
//! can be read side by side; the read-only metrics queries are in `sqlite/metrics.rs`.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Pool, Row, Sqlite, SqliteConnection, Transaction};

use super::{Cursor, Fetched, Filter, Finish, LeaseRef, NewRow, Rescued, Session, Storage};
use crate::model::{AttemptRow, JobRow, OutcomeCount, QueueCount, State, WorkerRow};

pub(crate) struct SqliteStore;

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH)
}

/// A text column read as a BLOB, and whether its bytes were UTF-8.
fn text(r: &SqliteRow, col: &str) -> sqlx::Result<(String, bool)> {
    let bytes: Vec<u8> = r.try_get(col)?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => (s, true),
        Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), false),
    })
}

fn opt_text(r: &SqliteRow, col: &str) -> sqlx::Result<Option<String>> {
    let bytes: Option<Vec<u8>> = r.try_get(col)?;
    Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
}

fn opt_time(r: &SqliteRow, col: &str) -> sqlx::Result<Option<DateTime<Utc>>> {
    Ok(r.try_get::<Option<i64>, _>(col)?.map(time))
}

fn state_of(s: &str) -> sqlx::Result<State> {
    State::parse(s).ok_or_else(|| sqlx::Error::Decode(format!("unknown job state {s:?}").into()))
}

/// The columns of a [`JobRow`], with the shown state; `$now` is the bind that holds now.
macro_rules! job_columns {
    ($now:literal) => {
        concat!(
            "CAST(id AS BLOB) AS id, CAST(queue AS BLOB) AS queue, CAST(kind AS BLOB) AS kind, \
         CASE WHEN state = 'pending' AND run_at > ", $now, " THEN 'scheduled' ELSE state END AS shown, \
         attempts, max_attempts, snoozes, run_at, created_at, CAST(holder AS BLOB) AS holder, started_at, \
         finished_at, CAST(dedup_key AS BLOB) AS dedup_key, CAST(partition_key AS BLOB) AS partition_key, \
         CAST(last_error AS BLOB) AS last_error, CAST(traceparent AS BLOB) AS traceparent, payload"
        )
    };
}

/// The filter over jobs: binds $1..$8, and $9 is now (see [`bind_filter`]).
macro_rules! filter {
    () => {
        "($1 IS NULL OR state = $1) \
         AND ($2 IS NULL OR (run_at <= $9) = $2) \
         AND ($3 IS NULL OR queue = $3) \
         AND ($4 IS NULL OR kind = $4) \
         AND ($5 IS NULL OR partition_key = $5) \
         AND ($6 IS NULL OR EXISTS (SELECT 1 FROM json_each($6) AS n WHERE instr(payload, CAST(n.value AS BLOB)) > 0)) \
         AND ($7 IS NULL OR id IN (SELECT value FROM json_each($7))) \
         AND ($8 IS NULL OR id < $8)"
    };
}

fn bind_filter<'q>(
    q: Query<'q, Sqlite, SqliteArguments>,
    f: &'q Filter<'q>,
) -> Query<'q, Sqlite, SqliteArguments> {
    let json = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
    q.bind(f.state.map(State::as_str))
        .bind(f.due)
        .bind(f.queue)
        .bind(f.kind)
        .bind(f.partition)
        .bind(f.needles.filter(|n| !n.is_empty()).map(json))
        .bind(f.ids.map(json))
        .bind(f.before)
        .bind(now_ms())
}

fn job_row(r: &SqliteRow) -> sqlx::Result<JobRow> {
    Ok(JobRow {
        id: text(r, "id")?.0,
        queue: text(r, "queue")?.0,
        kind: text(r, "kind")?.0,
        state: r.try_get("shown")?,
        attempts: r.try_get("attempts")?,
        max_attempts: r.try_get("max_attempts")?,
        snoozes: r.try_get("snoozes")?,
        run_at: time(r.try_get("run_at")?),
        created_at: time(r.try_get("created_at")?),
        worker: opt_text(r, "holder")?,
        started_at: opt_time(r, "started_at")?,
        finished_at: opt_time(r, "finished_at")?,
        dedup_key: opt_text(r, "dedup_key")?,
        partition_key: opt_text(r, "partition_key")?,
        last_error: opt_text(r, "last_error")?,
        traceparent: opt_text(r, "traceparent")?,
        payload: r.try_get("payload")?,
    })
}

/// Rows as a JSON array of arrays, for `json_each` (SQLite has no array binds).
fn json_rows(rows: Vec<serde_json::Value>) -> String {
    serde_json::Value::Array(rows).to_string()
}

mod metrics;

impl Storage for SqliteStore {
    type Db = Sqlite;

    async fn begin_write(pool: &Pool<Sqlite>) -> sqlx::Result<Transaction<'static, Sqlite>> {
        pool.begin_with("BEGIN IMMEDIATE").await
    }

    async fn insert_job(c: &mut SqliteConnection, job: &NewRow<'_>) -> sqlx::Result<bool> {
        let now = now_ms();
        let r = sqlx::query(
            "INSERT INTO queue_jobs (id, queue, kind, payload, run_at, max_attempts, dedup_key, partition_key, \
             created_at, traceparent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (queue, dedup_key) WHERE dedup_key IS NOT NULL AND state IN ('pending', 'failed', 'running') \
             DO NOTHING",
        )
        .bind(job.id)
        .bind(job.queue)
        .bind(job.kind)
        .bind(job.payload)
        .bind(job.run_at.map(ms).unwrap_or(now))
        .bind(job.max_attempts)
        .bind(job.dedup_key)
        .bind(job.partition_key)
        .bind(now)
        .bind(job.traceparent)
        .execute(&mut *c)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn find_key_holder(
        c: &mut SqliteConnection,
        queue: &str,
        key: &str,
    ) -> sqlx::Result<Option<String>> {
        let id: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT CAST(id AS BLOB) FROM queue_jobs WHERE queue = $1 AND dedup_key = $2 \
             AND state IN ('pending', 'failed', 'running')",
        )
        .bind(queue)
        .bind(key)
        .fetch_optional(&mut *c)
        .await?;
        Ok(id.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    async fn replace_waiting_payload(
        c: &mut SqliteConnection,
        job: &NewRow<'_>,
    ) -> sqlx::Result<Option<String>> {
        let id: Option<Vec<u8>> = sqlx::query_scalar(
            "UPDATE queue_jobs SET payload = $3, partition_key = $4, traceparent = COALESCE($5, traceparent) \
             WHERE queue = $1 AND dedup_key = $2 AND state IN ('pending', 'failed') RETURNING CAST(id AS BLOB)",
        )
        .bind(job.queue)
        .bind(job.dedup_key)
        .bind(job.payload)
        .bind(job.partition_key)
        .bind(job.traceparent)
        .fetch_optional(&mut *c)
        .await?;
        Ok(id.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    async fn release_running_key(
        c: &mut SqliteConnection,
        queue: &str,
        key: &str,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE queue_jobs SET dedup_key = NULL WHERE queue = $1 AND dedup_key = $2 AND state = 'running'",
        )
        .bind(queue)
        .bind(key)
        .execute(&mut *c)
        .await
        .map(|_| ())
    }

    async fn register_worker(
        c: &mut SqliteConnection,
        id: &str,
        queue: &str,
        _session: Option<Session>,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO queue_workers (id, queue, started_at, heartbeat_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(id)
        .bind(queue)
        .bind(now_ms())
        .execute(&mut *c)
        .await
        .map(|_| ())
    }

    async fn heartbeat_workers(
        c: &mut SqliteConnection,
        workers: &[(String, String)],
        _session: Option<Session>,
    ) -> sqlx::Result<()> {
        let rows = workers
            .iter()
            .map(|(id, q)| serde_json::json!([id, q]))
            .collect();
        sqlx::query(
            "INSERT INTO queue_workers (id, queue, started_at, heartbeat_at) \
             SELECT value ->> 0, value ->> 1, $2, $2 FROM json_each($1) WHERE true \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(json_rows(rows))
        .bind(now_ms())
        .execute(&mut *c)
        .await
        .map(|_| ())
    }

    async fn deregister_worker(c: &mut SqliteConnection, id: &str) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM queue_workers WHERE id = $1")
            .bind(id)
            .execute(&mut *c)
            .await
            .map(|_| ())
    }

    async fn fetch_due_jobs(
        c: &mut SqliteConnection,
        queue: &str,
        worker: &str,
        n: i64,
        _after: Option<&Cursor>,
    ) -> sqlx::Result<Vec<Fetched>> {
        // SQLite removes index entries at once, so a fetch never walks taken jobs: no cursor.
        // A "partition not paused" condition goes into the inner SELECT.
        let rows = sqlx::query(
            "UPDATE queue_jobs SET state = 'running', holder = $2, lease = lease + 1, started_at = $4 \
             WHERE rowid IN (SELECT rowid FROM queue_jobs WHERE queue = $1 AND state IN ('pending', 'failed') \
                             AND run_at <= $4 ORDER BY run_at, id LIMIT $3) \
             RETURNING rowid, CAST(id AS BLOB) AS id, CAST(kind AS BLOB) AS kind, payload, attempts, \
                       max_attempts, snoozes, CAST(partition_key AS BLOB) AS partition_key, \
                       CAST(traceparent AS BLOB) AS traceparent, lease, run_at",
        )
        .bind(queue)
        .bind(worker)
        .bind(n)
        .bind(now_ms())
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                let (id, id_ok) = text(r, "id")?;
                let (kind, kind_ok) = text(r, "kind")?;
                let problem = match (id_ok, kind_ok) {
                    (false, _) => Some(format!("its id is not UTF-8 text (read as {id:?})")),
                    (_, false) => Some(format!("its kind is not UTF-8 text (read as {kind:?})")),
                    _ => None,
                };
                Ok(Fetched {
                    lease: LeaseRef {
                        rowid: r.try_get("rowid")?,
                        id,
                        lease: r.try_get("lease")?,
                    },
                    kind,
                    payload: r.try_get("payload")?,
                    attempts: r.try_get("attempts")?,
                    max_attempts: r.try_get("max_attempts")?,
                    snoozes: r.try_get("snoozes")?,
                    partition_key: opt_text(r, "partition_key")?,
                    traceparent: opt_text(r, "traceparent")?,
                    problem,
                    run_at: time(r.try_get("run_at")?),
                })
            })
            .collect()
    }

    async fn hand_back(
        c: &mut SqliteConnection,
        worker: &str,
        jobs: &[LeaseRef],
    ) -> sqlx::Result<u64> {
        let rows = jobs
            .iter()
            .map(|j| serde_json::json!([j.rowid, j.lease]))
            .collect();
        let r = sqlx::query(
            "UPDATE queue_jobs SET state = CASE WHEN attempts = 0 THEN 'pending' ELSE 'failed' END, \
             holder = NULL, started_at = NULL \
             FROM (SELECT value ->> 0 AS rid, value ->> 1 AS old_lease FROM json_each($2)) AS h \
             WHERE queue_jobs.rowid = h.rid AND queue_jobs.lease = h.old_lease \
             AND queue_jobs.state = 'running' AND queue_jobs.holder = $1",
        )
        .bind(worker)
        .bind(json_rows(rows))
        .execute(&mut *c)
        .await?;
        Ok(r.rows_affected())
    }

    async fn finish_done(c: &mut SqliteConnection, done: &[&Finish]) -> sqlx::Result<Vec<usize>> {
        let index: HashMap<i64, usize> = done
            .iter()
            .enumerate()
            .map(|(i, f)| (f.lease.rowid, i))
            .collect();
        let rows = done
            .iter()
            .map(|f| {
                serde_json::json!([
                    f.lease.rowid,
                    f.lease.lease,
                    ms(f.started_at),
                    ms(f.finished_at)
                ])
            })
            .collect();
        let held: Vec<i64> = sqlx::query_scalar(
            "UPDATE queue_jobs SET state = 'done', attempts = attempts + 1, started_at = f.new_started_at, \
             finished_at = f.new_finished_at \
             FROM (SELECT value ->> 0 AS rid, value ->> 1 AS new_lease, value ->> 2 AS new_started_at, \
                   value ->> 3 AS new_finished_at FROM json_each($1)) AS f \
             WHERE queue_jobs.rowid = f.rid AND queue_jobs.lease = f.new_lease AND queue_jobs.state = 'running' \
             RETURNING rowid",
        )
        .bind(json_rows(rows))
        .fetch_all(&mut *c)
        .await?;
        Ok(held.iter().filter_map(|r| index.get(r).copied()).collect())
    }

    async fn finish_other(
        c: &mut SqliteConnection,
        other: &[&Finish],
    ) -> sqlx::Result<Vec<(usize, State)>> {
        let index: HashMap<i64, usize> = other
            .iter()
            .enumerate()
            .map(|(i, f)| (f.lease.rowid, i))
            .collect();
        let rows = other
            .iter()
            .map(|f| {
                serde_json::json!([
                    f.lease.rowid,
                    f.lease.lease,
                    f.outcome.code(),
                    f.outcome.error(),
                    f.outcome.run_at().map(ms),
                    ms(f.started_at),
                    ms(f.finished_at)
                ])
            })
            .collect();
        let updated = sqlx::query(
            "UPDATE queue_jobs SET \
                 state = CASE WHEN f.code = 'snooze' THEN 'pending' \
                              WHEN f.code = 'dead' OR attempts + 1 >= max_attempts THEN 'dead' \
                              ELSE 'failed' END, \
                 attempts = attempts + CASE WHEN f.code = 'snooze' THEN 0 ELSE 1 END, \
                 snoozes = snoozes + CASE WHEN f.code = 'snooze' THEN 1 ELSE 0 END, \
                 run_at = COALESCE(f.new_run_at, queue_jobs.run_at), \
                 started_at = f.new_started_at, \
                 finished_at = CASE WHEN f.code = 'dead' OR (f.code = 'retry' AND attempts + 1 >= max_attempts) \
                                    THEN f.new_finished_at END, \
                 last_error = f.new_error \
             FROM (SELECT value ->> 0 AS rid, value ->> 1 AS new_lease, value ->> 2 AS code, \
                   value ->> 3 AS new_error, value ->> 4 AS new_run_at, value ->> 5 AS new_started_at, \
                   value ->> 6 AS new_finished_at FROM json_each($1)) AS f \
             WHERE queue_jobs.rowid = f.rid AND queue_jobs.lease = f.new_lease AND queue_jobs.state = 'running' \
             RETURNING rowid, state, attempts",
        )
        .bind(json_rows(rows))
        .fetch_all(&mut *c)
        .await?;
        let mut out = Vec::with_capacity(updated.len());
        for r in &updated {
            let rowid: i64 = r.try_get("rowid")?;
            let state = state_of(r.try_get("state")?)?;
            let attempts: i32 = r.try_get("attempts")?;
            let Some(&i) = index.get(&rowid) else {
                continue;
            };
            let f = other[i];
            let (attempt, outcome) = match (&f.outcome, state) {
                (super::Outcome::Snooze { .. }, _) => (attempts + 1, "snoozed"),
                (_, State::Dead) => (attempts, "dead"),
                _ => (attempts, "retry"),
            };
            sqlx::query(
                "INSERT INTO queue_attempts (job_id, attempt, outcome, error, worker, started_at, finished_at) \
                 SELECT id, $2, $3, $4, holder, $5, $6 FROM queue_jobs WHERE rowid = $1",
            )
            .bind(rowid)
            .bind(attempt)
            .bind(outcome)
            .bind(f.outcome.error())
            .bind(ms(f.started_at))
            .bind(ms(f.finished_at))
            .execute(&mut *c)
            .await?;
            out.push((i, state));
        }
        Ok(out)
    }

    async fn rescue_lost_jobs(
        c: &mut SqliteConnection,
        stale_after: Duration,
        _session_since: Option<DateTime<Utc>>,
    ) -> sqlx::Result<Vec<Rescued>> {
        // No sessions on SQLite: a worker is dead when its heartbeat is stale.
        let now = now_ms();
        let stale = now - stale_after.as_millis() as i64;
        sqlx::query("DELETE FROM queue_workers WHERE heartbeat_at < $1")
            .bind(stale)
            .execute(&mut *c)
            .await?;
        let rows = sqlx::query(
            "UPDATE queue_jobs SET attempts = attempts + 1, lease = lease + 1, \
                 state = CASE WHEN attempts + 1 >= max_attempts THEN 'dead' ELSE 'failed' END, \
                 run_at = $1, \
                 finished_at = CASE WHEN attempts + 1 >= max_attempts THEN $1 END, \
                 last_error = CASE WHEN attempts + 1 >= max_attempts \
                     THEN 'gave up after attempt ' || (attempts + 1) || ' of ' || max_attempts || ', which ' || $2 \
                     ELSE 'attempt ' || (attempts + 1) || ' ' || $2 END \
                     || ' (worker ' || COALESCE(holder, 'unknown') || ')' \
             WHERE state = 'running' AND (holder IS NULL OR holder NOT IN (SELECT id FROM queue_workers)) \
             RETURNING rowid, CAST(id AS BLOB) AS id, CAST(queue AS BLOB) AS queue, state, attempts, \
                       CAST(holder AS BLOB) AS holder, started_at, last_error",
        )
        .bind(now)
        .bind(super::LOST)
        .fetch_all(&mut *c)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let rowid: i64 = r.try_get("rowid")?;
            sqlx::query(
                "INSERT INTO queue_attempts (job_id, attempt, outcome, error, worker, started_at, finished_at) \
                 SELECT id, attempts, 'lost', last_error, holder, started_at, $2 FROM queue_jobs WHERE rowid = $1",
            )
            .bind(rowid)
            .bind(now)
            .execute(&mut *c)
            .await?;
            out.push(Rescued {
                id: text(r, "id")?.0,
                queue: text(r, "queue")?.0,
                state: state_of(r.try_get("state")?)?,
                worker: opt_text(r, "holder")?,
            });
        }
        Ok(out)
    }

    async fn list_jobs(
        c: &mut SqliteConnection,
        f: &Filter<'_>,
        limit: i64,
    ) -> sqlx::Result<Vec<JobRow>> {
        let q = sqlx::query(concat!(
            "SELECT ",
            job_columns!("$9"),
            " FROM queue_jobs WHERE ",
            filter!(),
            " ORDER BY id DESC LIMIT $10"
        ));
        let rows = bind_filter(q, f).bind(limit).fetch_all(&mut *c).await?;
        rows.iter().map(job_row).collect()
    }

    async fn find_job(c: &mut SqliteConnection, id: &str) -> sqlx::Result<Option<JobRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            job_columns!("$2"),
            " FROM queue_jobs WHERE id = $1"
        ))
        .bind(id)
        .bind(now_ms())
        .fetch_optional(&mut *c)
        .await?;
        row.as_ref().map(job_row).transpose()
    }

    async fn list_attempts(c: &mut SqliteConnection, id: &str) -> sqlx::Result<Vec<AttemptRow>> {
        let rows = sqlx::query(
            "SELECT attempt, CAST(outcome AS BLOB) AS outcome, CAST(error AS BLOB) AS error, \
             CAST(worker AS BLOB) AS worker, started_at, finished_at FROM queue_attempts \
             WHERE job_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AttemptRow {
                    attempt: r.try_get("attempt")?,
                    outcome: text(r, "outcome")?.0,
                    error: opt_text(r, "error")?,
                    worker: opt_text(r, "worker")?,
                    started_at: opt_time(r, "started_at")?,
                    finished_at: time(r.try_get("finished_at")?),
                })
            })
            .collect()
    }

    async fn retry_jobs(c: &mut SqliteConnection, f: &Filter<'_>) -> sqlx::Result<u64> {
        // As on Postgres: a finished job takes its key back only when no unfinished job holds
        // it and it is the newest retried holder.
        let waiting = sqlx::query(concat!(
            "UPDATE queue_jobs SET run_at = $9, attempts = 0, state = 'pending' WHERE ",
            filter!(),
            " AND state IN ('pending', 'failed')"
        ));
        let n = bind_filter(waiting, f)
            .execute(&mut *c)
            .await?
            .rows_affected();
        let finished = sqlx::query(concat!(
            "WITH m AS (SELECT rowid AS rid, queue AS q, dedup_key AS k, \
                 row_number() OVER (PARTITION BY queue, dedup_key ORDER BY id DESC) AS nth \
                 FROM queue_jobs WHERE ",
            filter!(),
            " AND state IN ('dead', 'done')) \
             UPDATE queue_jobs SET state = 'pending', attempts = 0, run_at = $9, finished_at = NULL, \
                 dedup_key = CASE WHEN m.k IS NULL OR m.nth > 1 OR EXISTS (SELECT 1 FROM queue_jobs o \
                     WHERE o.queue = m.q AND o.dedup_key = m.k AND o.state IN ('pending', 'failed', 'running')) \
                     THEN NULL ELSE m.k END \
             FROM m WHERE queue_jobs.rowid = m.rid"
        ));
        Ok(n + bind_filter(finished, f)
            .execute(&mut *c)
            .await?
            .rows_affected())
    }

    async fn kill_jobs(
        c: &mut SqliteConnection,
        f: &Filter<'_>,
        reason: &str,
    ) -> sqlx::Result<u64> {
        let q = sqlx::query(concat!(
            "UPDATE queue_jobs SET state = 'dead', finished_at = $9, last_error = $10, lease = lease + 1 WHERE ",
            filter!(),
            " AND state IN ('pending', 'failed', 'running')"
        ));
        Ok(bind_filter(q, f)
            .bind(reason)
            .execute(&mut *c)
            .await?
            .rows_affected())
    }

    async fn purge_jobs(
        c: &mut SqliteConnection,
        state: State,
        before: DateTime<Utc>,
    ) -> sqlx::Result<u64> {
        let r = sqlx::query("DELETE FROM queue_jobs WHERE state = $1 AND finished_at < $2")
            .bind(state.as_str())
            .bind(ms(before))
            .execute(&mut *c)
            .await?;
        Ok(r.rows_affected())
    }

    async fn count_by_queue_and_state(c: &mut SqliteConnection) -> sqlx::Result<Vec<QueueCount>> {
        let rows = sqlx::query(
            "SELECT CAST(queue AS BLOB) AS queue, \
             CASE WHEN state = 'pending' AND run_at > $1 THEN 'scheduled' ELSE state END AS shown, \
             COUNT(*) AS n FROM queue_jobs GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .bind(now_ms())
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QueueCount {
                    queue: text(r, "queue")?.0,
                    state: r.try_get("shown")?,
                    count: r.try_get("n")?,
                })
            })
            .collect()
    }

    async fn oldest_due_age(c: &mut SqliteConnection) -> sqlx::Result<Vec<(String, f64)>> {
        let rows = sqlx::query(
            "SELECT CAST(queue AS BLOB) AS queue, ($1 - MIN(run_at)) / 1000.0 AS age FROM queue_jobs \
             WHERE state IN ('pending', 'failed') AND run_at <= $1 GROUP BY queue ORDER BY queue",
        )
        .bind(now_ms())
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| Ok((text(r, "queue")?.0, r.try_get("age")?)))
            .collect()
    }

    async fn outcomes_since(
        c: &mut SqliteConnection,
        since: DateTime<Utc>,
    ) -> sqlx::Result<Vec<OutcomeCount>> {
        let rows = sqlx::query(
            "SELECT CAST(queue AS BLOB) AS queue, outcome, COUNT(*) AS n FROM ( \
                SELECT queue, 'done' AS outcome FROM queue_jobs WHERE state = 'done' AND finished_at >= $1 \
                UNION ALL SELECT j.queue, a.outcome FROM queue_attempts a JOIN queue_jobs j ON j.id = a.job_id \
                WHERE a.finished_at >= $1) GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .bind(ms(since))
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OutcomeCount {
                    queue: text(r, "queue")?.0,
                    outcome: r.try_get("outcome")?,
                    count: r.try_get("n")?,
                })
            })
            .collect()
    }

    async fn live_workers(
        c: &mut SqliteConnection,
        since: DateTime<Utc>,
    ) -> sqlx::Result<Vec<WorkerRow>> {
        let rows = sqlx::query(
            "SELECT CAST(id AS BLOB) AS id, CAST(queue AS BLOB) AS queue, started_at, heartbeat_at \
             FROM queue_workers WHERE heartbeat_at >= $1 ORDER BY heartbeat_at DESC, id",
        )
        .bind(ms(since))
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(WorkerRow {
                    id: text(r, "id")?.0,
                    queue: text(r, "queue")?.0,
                    started_at: time(r.try_get("started_at")?),
                    heartbeat_at: time(r.try_get("heartbeat_at")?),
                })
            })
            .collect()
    }

    async fn save_progress(c: &mut SqliteConnection, job_id: &str, json: &str) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO queue_progress (job_id, progress, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (job_id) DO UPDATE SET progress = excluded.progress, updated_at = excluded.updated_at",
        )
        .bind(job_id)
        .bind(json)
        .bind(now_ms())
        .execute(&mut *c)
        .await
        .map(|_| ())
    }

    async fn find_progress(c: &mut SqliteConnection, job_id: &str) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar("SELECT progress FROM queue_progress WHERE job_id = $1")
            .bind(job_id)
            .fetch_optional(&mut *c)
            .await
    }
}
