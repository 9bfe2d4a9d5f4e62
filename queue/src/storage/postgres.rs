//! The queue's SQL on PostgreSQL. Times are the database's `now()`; fetches and heartbeats
//! commit asynchronously (`synchronous_commit = off` for that statement only), which is safe
//! because a lost fetch only makes a job pending again, and a later synchronous commit (its
//! completion) flushes the earlier WAL with it.
//!
//! Outcomes are fenced by the lease number alone (`id = $id AND lease = $lease`): whoever
//! takes a running job from its holder (a kill, a rescue) bumps the lease, so a matching lease
//! means the job is still the holder's. A `state = 'running'` test there would let the planner
//! pick the partial index of running jobs, which under a burn-down holds the dead entry of
//! every job run since the last vacuum, and scan all of it for every batch.
//!
//! Over 600 lines on purpose: every statement of a job's life and of the operator commands
//! for this database is in this one file, in the same order as in `sqlite.rs`, so the two
//! can be read side by side; the read-only metrics queries are in `postgres/metrics.rs`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{PgConnection, Pool, Postgres, Row, Transaction};

use super::{Cursor, Fetched, Filter, Finish, LeaseRef, NewRow, Rescued, Session, Storage};
use crate::model::{AttemptRow, JobRow, OutcomeCount, QueueCount, State, WorkerRow};

pub(crate) struct PgStore;

/// The columns of a [`JobRow`], with the shown state.
macro_rules! job_columns {
    () => {
        "id, queue, kind, CASE WHEN state = 'pending' AND run_at > now() THEN 'scheduled' ELSE state END AS shown, \
         attempts, max_attempts, snoozes, run_at, created_at, holder, started_at, finished_at, dedup_key, \
         partition_key, last_error, traceparent, payload"
    };
}

/// What a fetch returns.
macro_rules! fetched {
    () => {
        "RETURNING j.id, j.kind, j.payload, j.attempts, j.max_attempts, j.snoozes, j.partition_key, j.traceparent, \
         j.lease, j.run_at"
    };
}

/// The filter over jobs, binds $1..$8 (see [`bind_filter`]).
macro_rules! filter {
    () => {
        "($1::text IS NULL OR state = $1) \
         AND ($2::boolean IS NULL OR (run_at <= now()) = $2) \
         AND ($3::text IS NULL OR queue = $3) \
         AND ($4::text IS NULL OR kind = $4) \
         AND ($5::text IS NULL OR partition_key = $5) \
         AND ($6::bytea[] IS NULL OR EXISTS (SELECT 1 FROM unnest($6::bytea[]) AS n(b) WHERE position(n.b IN payload) > 0)) \
         AND ($7::text[] IS NULL OR id = ANY($7)) \
         AND ($8::text IS NULL OR id < $8)"
    };
}

fn bind_filter<'q>(
    q: Query<'q, Postgres, PgArguments>,
    f: &'q Filter<'q>,
) -> Query<'q, Postgres, PgArguments> {
    let needles: Option<Vec<Vec<u8>>> = f
        .needles
        .filter(|n| !n.is_empty())
        .map(|n| n.iter().map(|s| s.as_bytes().to_vec()).collect());
    q.bind(f.state.map(State::as_str))
        .bind(f.due)
        .bind(f.queue)
        .bind(f.kind)
        .bind(f.partition)
        .bind(needles)
        .bind(f.ids.map(|ids| ids.to_vec()))
        .bind(f.before)
}

fn state_of(s: &str) -> sqlx::Result<State> {
    State::parse(s).ok_or_else(|| sqlx::Error::Decode(format!("unknown job state {s:?}").into()))
}

fn job_row(r: &PgRow) -> sqlx::Result<JobRow> {
    Ok(JobRow {
        id: r.try_get("id")?,
        queue: r.try_get("queue")?,
        kind: r.try_get("kind")?,
        state: r.try_get("shown")?,
        attempts: r.try_get("attempts")?,
        max_attempts: r.try_get("max_attempts")?,
        snoozes: r.try_get("snoozes")?,
        run_at: r.try_get("run_at")?,
        created_at: r.try_get("created_at")?,
        worker: r.try_get("holder")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        dedup_key: r.try_get("dedup_key")?,
        partition_key: r.try_get("partition_key")?,
        last_error: r.try_get("last_error")?,
        traceparent: r.try_get("traceparent")?,
        payload: r.try_get("payload")?,
    })
}

fn session_parts(s: Option<Session>) -> (Option<i32>, Option<DateTime<Utc>>) {
    (s.map(|s| s.pid), s.map(|s| s.started))
}

mod metrics;

impl Storage for PgStore {
    type Db = Postgres;

    async fn begin_write(pool: &Pool<Postgres>) -> sqlx::Result<Transaction<'static, Postgres>> {
        pool.begin().await
    }

    async fn insert_job(c: &mut PgConnection, job: &NewRow<'_>) -> sqlx::Result<bool> {
        let r = sqlx::query(
            "INSERT INTO queue_jobs (id, queue, kind, payload, run_at, max_attempts, dedup_key, partition_key, traceparent) \
             VALUES ($1, $2, $3, $4, COALESCE($5, now()), $6, $7, $8, $9) \
             ON CONFLICT (queue, dedup_key) WHERE dedup_key IS NOT NULL AND state IN ('pending', 'failed', 'running') \
             DO NOTHING",
        )
        .bind(job.id)
        .bind(job.queue)
        .bind(job.kind)
        .bind(job.payload)
        .bind(job.run_at)
        .bind(job.max_attempts)
        .bind(job.dedup_key)
        .bind(job.partition_key)
        .bind(job.traceparent)
        .execute(&mut *c)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn find_key_holder(
        c: &mut PgConnection,
        queue: &str,
        key: &str,
    ) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT id FROM queue_jobs WHERE queue = $1 AND dedup_key = $2 \
             AND state IN ('pending', 'failed', 'running')",
        )
        .bind(queue)
        .bind(key)
        .fetch_optional(&mut *c)
        .await
    }

    async fn replace_waiting_payload(
        c: &mut PgConnection,
        job: &NewRow<'_>,
    ) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar(
            "UPDATE queue_jobs SET payload = $3, partition_key = $4, traceparent = COALESCE($5, traceparent) \
             WHERE queue = $1 AND dedup_key = $2 AND state IN ('pending', 'failed') RETURNING id",
        )
        .bind(job.queue)
        .bind(job.dedup_key)
        .bind(job.payload)
        .bind(job.partition_key)
        .bind(job.traceparent)
        .fetch_optional(&mut *c)
        .await
    }

    async fn release_running_key(c: &mut PgConnection, queue: &str, key: &str) -> sqlx::Result<()> {
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
        c: &mut PgConnection,
        id: &str,
        queue: &str,
        session: Option<Session>,
    ) -> sqlx::Result<()> {
        let (pid, start) = session_parts(session);
        sqlx::query(
            "INSERT INTO queue_workers (id, queue, session_pid, session_start) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), session_pid = excluded.session_pid, \
             session_start = excluded.session_start",
        )
        .bind(id)
        .bind(queue)
        .bind(pid)
        .bind(start)
        .execute(&mut *c)
        .await
        .map(|_| ())
    }

    async fn heartbeat_workers(
        c: &mut PgConnection,
        workers: &[(String, String)],
        session: Option<Session>,
    ) -> sqlx::Result<()> {
        let (pid, start) = session_parts(session);
        let ids: Vec<&str> = workers.iter().map(|w| w.0.as_str()).collect();
        let queues: Vec<&str> = workers.iter().map(|w| w.1.as_str()).collect();
        sqlx::query(
            "INSERT INTO queue_workers (id, queue, session_pid, session_start) \
             SELECT w.id, w.queue, $3, $4 FROM unnest($1::text[], $2::text[]) AS w(id, queue) \
             CROSS JOIN (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), session_pid = excluded.session_pid, \
             session_start = excluded.session_start",
        )
        .bind(ids)
        .bind(queues)
        .bind(pid)
        .bind(start)
        .execute(&mut *c)
        .await
        .map(|_| ())
    }

    async fn deregister_worker(c: &mut PgConnection, id: &str) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM queue_workers WHERE id = $1")
            .bind(id)
            .execute(&mut *c)
            .await
            .map(|_| ())
    }

    async fn fetch_due_jobs(
        c: &mut PgConnection,
        queue: &str,
        worker: &str,
        n: i64,
        after: Option<&Cursor>,
    ) -> sqlx::Result<Vec<Fetched>> {
        // A "partition not paused" condition goes into the inner SELECTs.
        let q = match after {
            None => sqlx::query(concat!(
                "UPDATE queue_jobs AS j SET state = 'running', holder = $2, lease = j.lease + 1, started_at = now() \
                 FROM (SELECT id FROM queue_jobs WHERE queue = $1 AND state IN ('pending', 'failed') \
                       AND run_at <= now() ORDER BY run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) AS due, \
                      (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit \
                 WHERE j.id = due.id ",
                fetched!()
            ))
            .bind(queue)
            .bind(worker)
            .bind(n),
            Some(cur) => sqlx::query(concat!(
                "UPDATE queue_jobs AS j SET state = 'running', holder = $2, lease = j.lease + 1, started_at = now() \
                 FROM (SELECT id FROM queue_jobs WHERE queue = $1 AND state IN ('pending', 'failed') \
                       AND run_at <= now() AND (run_at, id) > ($4, $5) \
                       ORDER BY run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) AS due, \
                      (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit \
                 WHERE j.id = due.id ",
                fetched!()
            ))
            .bind(queue)
            .bind(worker)
            .bind(n)
            .bind(cur.run_at)
            .bind(cur.id.as_str()),
        };
        let rows = q.fetch_all(&mut *c).await?;
        rows.iter()
            .map(|r| {
                Ok(Fetched {
                    lease: LeaseRef {
                        rowid: 0,
                        id: r.try_get("id")?,
                        lease: r.try_get("lease")?,
                    },
                    kind: r.try_get("kind")?,
                    payload: r.try_get("payload")?,
                    attempts: r.try_get("attempts")?,
                    max_attempts: r.try_get("max_attempts")?,
                    snoozes: r.try_get("snoozes")?,
                    partition_key: r.try_get("partition_key")?,
                    traceparent: r.try_get("traceparent")?,
                    problem: None,
                    run_at: r.try_get("run_at")?,
                })
            })
            .collect()
    }

    async fn hand_back(c: &mut PgConnection, worker: &str, jobs: &[LeaseRef]) -> sqlx::Result<u64> {
        let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        let leases: Vec<i64> = jobs.iter().map(|j| j.lease).collect();
        let r = sqlx::query(
            "UPDATE queue_jobs AS j SET state = CASE WHEN j.attempts = 0 THEN 'pending' ELSE 'failed' END, \
             holder = NULL, started_at = NULL \
             FROM unnest($2::text[], $3::bigint[]) AS h(id, lease) \
             WHERE j.id = h.id AND j.lease = h.lease AND j.holder = $1",
        )
        .bind(worker)
        .bind(ids)
        .bind(leases)
        .execute(&mut *c)
        .await?;
        Ok(r.rows_affected())
    }

    async fn finish_done(c: &mut PgConnection, done: &[&Finish]) -> sqlx::Result<Vec<usize>> {
        let ids: Vec<&str> = done.iter().map(|f| f.lease.id.as_str()).collect();
        let leases: Vec<i64> = done.iter().map(|f| f.lease.lease).collect();
        let started: Vec<DateTime<Utc>> = done.iter().map(|f| f.started_at).collect();
        let finished: Vec<DateTime<Utc>> = done.iter().map(|f| f.finished_at).collect();
        let idx: Vec<i32> = (0..done.len() as i32).collect();
        let held: Vec<i32> = sqlx::query_scalar(
            "UPDATE queue_jobs AS j SET state = 'done', attempts = j.attempts + 1, \
             started_at = f.started_at, finished_at = f.finished_at \
             FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::timestamptz[], $5::int[]) \
                  AS f(id, lease, started_at, finished_at, idx) \
             WHERE j.id = f.id AND j.lease = f.lease \
             RETURNING f.idx",
        )
        .bind(ids)
        .bind(leases)
        .bind(started)
        .bind(finished)
        .bind(idx)
        .fetch_all(&mut *c)
        .await?;
        Ok(held.into_iter().map(|i| i as usize).collect())
    }

    async fn finish_other(
        c: &mut PgConnection,
        other: &[&Finish],
    ) -> sqlx::Result<Vec<(usize, State)>> {
        let ids: Vec<&str> = other.iter().map(|f| f.lease.id.as_str()).collect();
        let leases: Vec<i64> = other.iter().map(|f| f.lease.lease).collect();
        let codes: Vec<&str> = other.iter().map(|f| f.outcome.code()).collect();
        let errors: Vec<Option<&str>> = other.iter().map(|f| f.outcome.error()).collect();
        let run_at: Vec<Option<DateTime<Utc>>> = other.iter().map(|f| f.outcome.run_at()).collect();
        let started: Vec<DateTime<Utc>> = other.iter().map(|f| f.started_at).collect();
        let finished: Vec<DateTime<Utc>> = other.iter().map(|f| f.finished_at).collect();
        let idx: Vec<i32> = (0..other.len() as i32).collect();
        let rows = sqlx::query(
            "WITH f AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], \
                    $5::timestamptz[], $6::timestamptz[], $7::timestamptz[], $8::int[]) \
                    AS f(id, lease, code, error, run_at, started_at, finished_at, idx)), \
             u AS (UPDATE queue_jobs AS j SET \
                 state = CASE WHEN f.code = 'snooze' THEN 'pending' \
                              WHEN f.code = 'dead' OR j.attempts + 1 >= j.max_attempts THEN 'dead' \
                              ELSE 'failed' END, \
                 attempts = j.attempts + CASE WHEN f.code = 'snooze' THEN 0 ELSE 1 END, \
                 snoozes = j.snoozes + CASE WHEN f.code = 'snooze' THEN 1 ELSE 0 END, \
                 run_at = COALESCE(f.run_at, j.run_at), \
                 started_at = f.started_at, \
                 finished_at = CASE WHEN f.code = 'dead' OR (f.code = 'retry' AND j.attempts + 1 >= j.max_attempts) \
                                    THEN f.finished_at END, \
                 last_error = f.error \
               FROM f WHERE j.id = f.id AND j.lease = f.lease \
               RETURNING j.id, j.state, j.attempts, j.holder, f.idx, f.code, f.error, f.started_at, f.finished_at), \
             h AS (INSERT INTO queue_attempts (job_id, attempt, outcome, error, worker, started_at, finished_at) \
               SELECT id, CASE WHEN code = 'snooze' THEN attempts + 1 ELSE attempts END, \
                      CASE WHEN code = 'snooze' THEN 'snoozed' WHEN state = 'dead' THEN 'dead' ELSE 'retry' END, \
                      error, holder, started_at, finished_at FROM u) \
             SELECT idx, state FROM u",
        )
        .bind(ids)
        .bind(leases)
        .bind(codes)
        .bind(errors)
        .bind(run_at)
        .bind(started)
        .bind(finished)
        .bind(idx)
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<i32, _>("idx")? as usize,
                    state_of(r.try_get("state")?)?,
                ))
            })
            .collect()
    }

    async fn rescue_lost_jobs(
        c: &mut PgConnection,
        stale_after: Duration,
        session_since: Option<DateTime<Utc>>,
    ) -> sqlx::Result<Vec<Rescued>> {
        // Dead: silent for too long, or its session is gone (a crashed process's connection
        // closes at once). The session test trusts only heartbeats written since the rescuer's
        // own session began: after a database restart every session is new.
        let rows = sqlx::query(
            "WITH dead AS (SELECT w.id FROM queue_workers w \
                 WHERE w.heartbeat_at < now() - make_interval(secs => $1) \
                    OR ($2::timestamptz IS NOT NULL AND w.session_pid IS NOT NULL AND w.heartbeat_at >= $2 \
                        AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a \
                                        WHERE a.pid = w.session_pid AND a.backend_start = w.session_start))), \
             gone AS (DELETE FROM queue_workers w USING dead WHERE w.id = dead.id), \
             lost AS (SELECT j.id FROM queue_jobs j WHERE j.state = 'running' \
                 AND (j.holder IN (SELECT id FROM dead) \
                      OR NOT EXISTS (SELECT 1 FROM queue_workers w WHERE w.id = j.holder)) \
                 FOR UPDATE OF j SKIP LOCKED), \
             u AS (UPDATE queue_jobs AS j SET attempts = j.attempts + 1, lease = j.lease + 1, \
                 state = CASE WHEN j.attempts + 1 >= j.max_attempts THEN 'dead' ELSE 'failed' END, \
                 run_at = now(), \
                 finished_at = CASE WHEN j.attempts + 1 >= j.max_attempts THEN now() END, \
                 last_error = CASE WHEN j.attempts + 1 >= j.max_attempts \
                     THEN 'gave up after attempt ' || (j.attempts + 1) || ' of ' || j.max_attempts || ', which ' || $3 \
                     ELSE 'attempt ' || (j.attempts + 1) || ' ' || $3 END \
                     || ' (worker ' || COALESCE(j.holder, 'unknown') || ')' \
               FROM lost WHERE j.id = lost.id \
               RETURNING j.id, j.queue, j.state, j.attempts, j.holder, j.started_at, j.last_error), \
             h AS (INSERT INTO queue_attempts (job_id, attempt, outcome, error, worker, started_at, finished_at) \
               SELECT id, attempts, 'lost', last_error, holder, started_at, now() FROM u) \
             SELECT id, queue, state, holder FROM u",
        )
        .bind(stale_after.as_secs_f64())
        .bind(session_since)
        .bind(super::LOST)
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Rescued {
                    id: r.try_get("id")?,
                    queue: r.try_get("queue")?,
                    state: state_of(r.try_get("state")?)?,
                    worker: r.try_get("holder")?,
                })
            })
            .collect()
    }

    async fn list_jobs(
        c: &mut PgConnection,
        f: &Filter<'_>,
        limit: i64,
    ) -> sqlx::Result<Vec<JobRow>> {
        let q = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM queue_jobs WHERE ",
            filter!(),
            " ORDER BY id DESC LIMIT $9"
        ));
        let rows = bind_filter(q, f).bind(limit).fetch_all(&mut *c).await?;
        rows.iter().map(job_row).collect()
    }

    async fn find_job(c: &mut PgConnection, id: &str) -> sqlx::Result<Option<JobRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM queue_jobs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *c)
        .await?;
        row.as_ref().map(job_row).transpose()
    }

    async fn list_attempts(c: &mut PgConnection, id: &str) -> sqlx::Result<Vec<AttemptRow>> {
        let rows = sqlx::query(
            "SELECT attempt, outcome, error, worker, started_at, finished_at FROM queue_attempts \
             WHERE job_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AttemptRow {
                    attempt: r.try_get("attempt")?,
                    outcome: r.try_get("outcome")?,
                    error: r.try_get("error")?,
                    worker: r.try_get("worker")?,
                    started_at: r.try_get("started_at")?,
                    finished_at: r.try_get("finished_at")?,
                })
            })
            .collect()
    }

    async fn retry_jobs(c: &mut PgConnection, f: &Filter<'_>) -> sqlx::Result<u64> {
        // Waiting jobs keep their keys; a finished one takes its key back only when no
        // unfinished job holds it and it is the newest retried holder.
        let waiting = sqlx::query(concat!(
            "UPDATE queue_jobs SET run_at = now(), attempts = 0, state = 'pending' WHERE ",
            filter!(),
            " AND state IN ('pending', 'failed')"
        ));
        let n = bind_filter(waiting, f)
            .execute(&mut *c)
            .await?
            .rows_affected();
        let finished = sqlx::query(concat!(
            "WITH m AS (SELECT id, queue, dedup_key, \
                 row_number() OVER (PARTITION BY queue, dedup_key ORDER BY id DESC) AS nth \
                 FROM queue_jobs WHERE ",
            filter!(),
            " AND state IN ('dead', 'done')) \
             UPDATE queue_jobs AS j SET state = 'pending', attempts = 0, run_at = now(), \
                 finished_at = NULL, last_error = NULL, \
                 dedup_key = CASE WHEN m.dedup_key IS NULL OR m.nth > 1 OR EXISTS (SELECT 1 FROM queue_jobs o \
                     WHERE o.queue = m.queue AND o.dedup_key = m.dedup_key \
                     AND o.state IN ('pending', 'failed', 'running')) THEN NULL ELSE m.dedup_key END \
             FROM m WHERE j.id = m.id"
        ));
        Ok(n + bind_filter(finished, f)
            .execute(&mut *c)
            .await?
            .rows_affected())
    }

    async fn kill_jobs(c: &mut PgConnection, f: &Filter<'_>, reason: &str) -> sqlx::Result<u64> {
        let q = sqlx::query(concat!(
            "UPDATE queue_jobs SET state = 'dead', finished_at = now(), last_error = $9, lease = lease + 1 WHERE ",
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
        c: &mut PgConnection,
        state: State,
        before: DateTime<Utc>,
    ) -> sqlx::Result<u64> {
        let r = sqlx::query("DELETE FROM queue_jobs WHERE state = $1 AND finished_at < $2")
            .bind(state.as_str())
            .bind(before)
            .execute(&mut *c)
            .await?;
        Ok(r.rows_affected())
    }

    async fn count_by_queue_and_state(c: &mut PgConnection) -> sqlx::Result<Vec<QueueCount>> {
        let rows = sqlx::query(
            "SELECT queue, CASE WHEN state = 'pending' AND run_at > now() THEN 'scheduled' ELSE state END AS shown, \
             COUNT(*) AS n FROM queue_jobs GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QueueCount {
                    queue: r.try_get("queue")?,
                    state: r.try_get("shown")?,
                    count: r.try_get("n")?,
                })
            })
            .collect()
    }

    async fn oldest_due_age(c: &mut PgConnection) -> sqlx::Result<Vec<(String, f64)>> {
        sqlx::query_as(
            "SELECT queue, CAST(EXTRACT(EPOCH FROM now() - MIN(run_at)) AS FLOAT8) FROM queue_jobs \
             WHERE state IN ('pending', 'failed') AND run_at <= now() GROUP BY queue ORDER BY queue",
        )
        .fetch_all(&mut *c)
        .await
    }

    async fn outcomes_since(
        c: &mut PgConnection,
        since: DateTime<Utc>,
    ) -> sqlx::Result<Vec<OutcomeCount>> {
        let rows = sqlx::query(
            "SELECT queue, outcome, COUNT(*) AS n FROM ( \
                SELECT queue, 'done' AS outcome FROM queue_jobs WHERE state = 'done' AND finished_at >= $1 \
                UNION ALL SELECT j.queue, a.outcome FROM queue_attempts a JOIN queue_jobs j ON j.id = a.job_id \
                WHERE a.finished_at >= $1) AS o GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .bind(since)
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OutcomeCount {
                    queue: r.try_get("queue")?,
                    outcome: r.try_get("outcome")?,
                    count: r.try_get("n")?,
                })
            })
            .collect()
    }

    async fn live_workers(
        c: &mut PgConnection,
        since: DateTime<Utc>,
    ) -> sqlx::Result<Vec<WorkerRow>> {
        let rows = sqlx::query(
            "SELECT id, queue, started_at, heartbeat_at FROM queue_workers WHERE heartbeat_at >= $1 \
             ORDER BY heartbeat_at DESC, id",
        )
        .bind(since)
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(WorkerRow {
                    id: r.try_get("id")?,
                    queue: r.try_get("queue")?,
                    started_at: r.try_get("started_at")?,
                    heartbeat_at: r.try_get("heartbeat_at")?,
                })
            })
            .collect()
    }

    async fn save_progress(c: &mut PgConnection, job_id: &str, json: &str) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO queue_progress (job_id, progress, updated_at) VALUES ($1, $2, now()) \
             ON CONFLICT (job_id) DO UPDATE SET progress = excluded.progress, updated_at = excluded.updated_at",
        )
        .bind(job_id)
        .bind(json)
        .execute(&mut *c)
        .await
        .map(|_| ())
    }

    async fn find_progress(c: &mut PgConnection, job_id: &str) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar("SELECT progress FROM queue_progress WHERE job_id = $1")
            .bind(job_id)
            .fetch_optional(&mut *c)
            .await
    }
}
