//! The job queue's rows, as SQL. apalis owns the tables (`apalis.jobs` on Postgres, `Jobs` on
//! SQLite) and the fetch; it has no API to enqueue with a dedup report, finish a job our way,
//! retry, kill, purge or count, so those are written here.
//!
//! Our workers "self-ack": apalis is configured with `persist_results(false)` and
//! `lock_tasks(false)`, so a fetched row stays `Queued` with `lock_by = <worker>` and the
//! dispatcher writes the outcome below. Every finish is fenced by `lock_by = <worker>`, so a
//! job that was rescued (or killed) meanwhile is not overwritten by a late worker.
//!
//! States shown to operators, derived from apalis' columns:
//! pending (due) · scheduled (not yet due) · running · failed (will retry) · dead · done.
//!
//! Over 600 lines on purpose, for now: it is the whole of the apalis-backed queue's SQL, and
//! goes away as one piece when the app moves onto the `issuesync-queue` crate (queue/).

use serde::Serialize;
use sqlx::types::chrono::{DateTime, Utc};

use super::Result;
use crate::db::Tx;

pub const STATES: &[&str] = &["pending", "scheduled", "running", "failed", "dead", "done"];

/// SQL condition for a state. `{now}` is replaced by the backend's epoch-seconds "now".
fn state_condition(state: &str) -> Option<&'static str> {
    Some(match state {
        "pending" => "(status = 'Pending' AND {run_at} <= {now})",
        "scheduled" => "(status = 'Pending' AND {run_at} > {now})",
        "running" => "status IN ('Queued', 'Running')",
        "failed" => "(status = 'Failed' AND attempts < max_attempts)",
        "dead" => "(status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))",
        "done" => "status = 'Done'",
        _ => return None,
    })
}

/// The state column, as a SQL CASE over apalis' columns.
const STATE_CASE: &str = "CASE WHEN status IN ('Queued','Running') THEN 'running' \
    WHEN status = 'Done' THEN 'done' \
    WHEN status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts) THEN 'dead' \
    WHEN status = 'Failed' THEN 'failed' \
    WHEN {run_at} > {now} THEN 'scheduled' ELSE 'pending' END";

struct Dialect {
    table: &'static str,
    now: &'static str,
    /// Epoch seconds of run_at.
    run_at: &'static str,
    /// Epoch milliseconds of a timestamp column (`{}` = column).
    ms: fn(&str) -> String,
    last_result: &'static str,
}

const PG: Dialect = Dialect {
    table: "apalis.jobs",
    now: "EXTRACT(EPOCH FROM now())",
    run_at: "EXTRACT(EPOCH FROM run_at)",
    ms: |c| format!("CAST(EXTRACT(EPOCH FROM {c}) * 1000 AS BIGINT)"),
    last_result: "CAST(last_result AS TEXT)",
};

const SQLITE: Dialect = Dialect {
    table: "Jobs",
    now: "CAST(strftime('%s','now') AS INTEGER)",
    run_at: "run_at",
    ms: |c| format!("({c} * 1000)"),
    last_result: "last_result",
};

fn dialect(tx: &Tx) -> &'static Dialect {
    match tx {
        Tx::Sqlite(_) => &SQLITE,
        Tx::Pg(_) => &PG,
    }
}

fn fill(d: &Dialect, sql: &str) -> String {
    sql.replace("{table}", d.table)
        .replace("{run_at}", d.run_at)
        .replace("{now}", d.now)
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct JobRow {
    pub id: String,
    pub queue: String,
    pub state: String,
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at_ms: i64,
    pub last_result: Option<String>,
    pub lock_by: Option<String>,
    pub done_at_ms: Option<i64>,
    pub priority: i32,
    pub idempotency_key: Option<String>,
    #[serde(skip)]
    pub job: Vec<u8>,
}

impl JobRow {
    /// The last error message, if the last result was one.
    pub fn last_error(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(self.last_result.as_deref()?).ok()?;
        v.get("Err").and_then(|e| e.as_str()).map(str::to_string)
    }
}

fn select_list(d: &Dialect) -> String {
    format!(
        "id, job_type AS queue, {state} AS state, status, CAST(attempts AS INTEGER) AS attempts, \
         CAST(max_attempts AS INTEGER) AS max_attempts, {run_at} AS run_at_ms, {lr} AS last_result, lock_by, \
         {done} AS done_at_ms, CAST(COALESCE(priority, 0) AS INTEGER) AS priority, idempotency_key, job",
        state = fill(d, STATE_CASE),
        run_at = (d.ms)("run_at"),
        lr = d.last_result,
        done = (d.ms)("done_at"),
    )
}

pub struct NewJob<'a> {
    pub queue: &'a str,
    /// The JSON envelope.
    pub payload: Vec<u8>,
    pub max_attempts: i32,
    /// `None` = now (the database's clock).
    pub run_at: Option<DateTime<Utc>>,
    pub dedup_key: Option<String>,
    pub priority: i32,
    /// Replace a pending holder's payload; queue behind a running one.
    pub coalesce: bool,
    /// The job's id when the caller chose it (to reference it first); else a new ULID.
    pub id: Option<String>,
    /// No earlier job can hold this dedup key (it names a row inserted in the same
    /// transaction), so the give-up of finished holders is skipped.
    pub fresh: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "result", content = "id", rename_all = "snake_case")]
pub enum Enqueued {
    New(String),
    /// An unfinished job with the same dedup key exists; nothing was enqueued.
    Duplicate(String),
}

impl Enqueued {
    pub fn id(&self) -> &str {
        match self {
            Enqueued::New(id) | Enqueued::Duplicate(id) => id,
        }
    }
}

/// Inserts a job inside the caller's transaction. With a dedup key, a finished holder of the
/// key gives it up first, and an unfinished one makes this a no-op (`Duplicate`). Written by
/// hand: apalis' `push_tasks` aborts the Postgres transaction on a duplicate and reports
/// nothing on SQLite.
pub async fn enqueue(tx: &mut Tx, job: &NewJob<'_>) -> Result<Enqueued> {
    let d = dialect(tx);
    if let Some(key) = job.dedup_key.as_ref().filter(|_| !job.fresh) {
        let sql = fill(
            d,
            "UPDATE {table} SET idempotency_key = NULL WHERE job_type = $1 AND idempotency_key = $2 \
             AND (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts))",
        );
        exec2(tx, &sql, job.queue, key).await?;
        if job.coalesce {
            if let Some(id) = replace_pending_payload(tx, job.queue, key, &job.payload).await? {
                return Ok(Enqueued::Duplicate(id));
            }
            let sql = fill(
                d,
                "UPDATE {table} SET idempotency_key = NULL WHERE job_type = $1 AND idempotency_key = $2 AND status IN ('Queued', 'Running')",
            );
            exec2(tx, &sql, job.queue, key).await?;
        }
    }
    let id = job
        .id
        .clone()
        .unwrap_or_else(|| ulid::Ulid::generate().to_string());
    let inserted = match tx {
        Tx::Pg(t) => sqlx::query(
            "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, idempotency_key) \
             VALUES ($1, $2, $3, 'Pending', 0, $4, COALESCE($5, now()), $6, $7) \
             ON CONFLICT (job_type, idempotency_key) DO NOTHING",
        )
        .bind(&id)
        .bind(job.queue)
        .bind(&job.payload)
        .bind(job.max_attempts)
        .bind(job.run_at)
        .bind(job.priority)
        .bind(&job.dedup_key)
        .execute(&mut **t)
        .await?
        .rows_affected(),
        Tx::Sqlite(t) => {
            // run_at has 1 s resolution here: the nearest second keeps a scheduled job within
            // half a second of its time.
            let run_at = job.run_at.map(|t| (t.timestamp_millis() + 500).div_euclid(1000));
            sqlx::query(
                "INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, run_at, priority, metadata, idempotency_key) \
                 VALUES ($1, $2, $3, 'Pending', 0, $4, COALESCE($5, CAST(strftime('%s','now') AS INTEGER)), $6, '{}', $7) \
                 ON CONFLICT (job_type, idempotency_key) DO NOTHING",
            )
            .bind(&job.payload)
            .bind(&id)
            .bind(job.queue)
            .bind(job.max_attempts)
            .bind(run_at)
            .bind(job.priority)
            .bind(&job.dedup_key)
            .execute(&mut **t)
            .await?
            .rows_affected()
        }
    };
    if inserted == 1 {
        return Ok(Enqueued::New(id));
    }
    let sql = fill(
        d,
        "SELECT id FROM {table} WHERE job_type = $1 AND idempotency_key = $2",
    );
    let key = job.dedup_key.as_deref().unwrap_or_default();
    let existing: Option<String> = crate::on_tx!(tx, |c| {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(job.queue)
            .bind(key)
            .fetch_optional(c)
            .await?
    });
    Ok(Enqueued::Duplicate(existing.unwrap_or_default()))
}

/// Coalescing: the pending (not running) job with this key takes the new payload.
async fn replace_pending_payload(
    tx: &mut Tx,
    queue: &str,
    key: &str,
    payload: &[u8],
) -> Result<Option<String>> {
    let d = dialect(tx);
    let sql = fill(
        d,
        "UPDATE {table} SET job = $3 WHERE job_type = $1 AND idempotency_key = $2 \
         AND (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts)) RETURNING id",
    );
    Ok(crate::on_tx!(tx, |c| {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(queue)
            .bind(key)
            .bind(payload)
            .fetch_optional(c)
            .await?
    }))
}

async fn exec2(tx: &mut Tx, sql: &str, a: &str, b: &str) -> Result<u64> {
    let sql = sql.to_string();
    Ok(crate::on_tx!(tx, |c| {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(a)
            .bind(b)
            .execute(c)
            .await?
            .rows_affected()
    }))
}

/// The outcome the dispatcher writes for an attempt.
#[derive(Debug, Clone)]
pub enum Finish {
    Done,
    /// Retry at the given time, or dead when this was the last attempt.
    Retry {
        error: String,
        at: DateTime<Utc>,
    },
    Dead {
        reason: String,
    },
    /// Run again at the given time without using up the attempt.
    Snooze {
        reason: String,
        until: DateTime<Utc>,
    },
}

/// Writes the outcome of an attempt of job `id` held by `worker`. Returns the state the job
/// is now in, or `None` when the worker no longer holds it (rescued or killed meanwhile).
pub async fn finish_job(
    tx: &mut Tx,
    id: &str,
    worker: &str,
    finish: &Finish,
) -> Result<Option<String>> {
    let d = dialect(tx);
    let (set, err, at): (&str, Option<String>, Option<DateTime<Utc>>) = match finish {
        Finish::Done => (
            "status = 'Done', attempts = attempts + 1, last_result = {ok}, done_at = {now_ts}",
            None,
            None,
        ),
        Finish::Retry { error, at } => (
            "attempts = attempts + 1, \
             status = CASE WHEN attempts + 1 >= max_attempts THEN 'Killed' ELSE 'Failed' END, \
             done_at = CASE WHEN attempts + 1 >= max_attempts THEN {now_ts} ELSE NULL END, \
             run_at = {at}, last_result = {err}",
            Some(error.clone()),
            Some(*at),
        ),
        Finish::Dead { reason } => (
            "status = 'Killed', attempts = attempts + 1, done_at = {now_ts}, last_result = {err}",
            Some(reason.clone()),
            None,
        ),
        Finish::Snooze { reason, until } => (
            "status = 'Pending', run_at = {at}, last_result = {err}",
            Some(format!("snoozed: {reason}")),
            Some(*until),
        ),
    };
    let sql = match tx {
        Tx::Pg(_) => set
            .replace("{ok}", "'{\"Ok\":null}'::jsonb")
            .replace("{now_ts}", "now()")
            .replace("{at}", "$3")
            .replace("{err}", "jsonb_build_object('Err', CAST($4 AS TEXT))"),
        Tx::Sqlite(_) => set
            .replace("{ok}", "'{\"Ok\":null}'")
            .replace("{now_ts}", "CAST(strftime('%s','now') AS INTEGER)")
            .replace("{at}", "$3")
            .replace("{err}", "json_object('Err', $4)"),
    };
    let sql = format!(
        "UPDATE {} SET {sql}, lock_by = NULL, lock_at = NULL WHERE id = $1 AND lock_by = $2 \
         RETURNING {} AS state",
        d.table,
        fill(d, STATE_CASE)
    );
    let state: Option<String> = match tx {
        Tx::Pg(t) => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .bind(worker)
                .bind(at)
                .bind(err)
                .fetch_optional(&mut **t)
                .await?
        }
        Tx::Sqlite(t) => {
            // A snooze (the provider's Retry-After) or a backoff never runs early: round up.
            let at = at.map(|t| (t.timestamp_millis() + 999).div_euclid(1000));
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .bind(worker)
                .bind(at)
                .bind(err)
                .fetch_optional(&mut **t)
                .await?
        }
    };
    Ok(state)
}

pub struct AttemptRecord<'a> {
    pub job_id: &'a str,
    pub queue: &'a str,
    pub job_name: &'a str,
    pub attempt: i32,
    pub outcome: &'a str,
    pub error: Option<&'a str>,
    pub worker: &'a str,
    pub started_at: i64,
    pub finished_at: i64,
}

/// Appends one attempt to the job's history.
pub async fn record_attempt(tx: &mut Tx, a: &AttemptRecord<'_>) -> Result<()> {
    crate::on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO job_attempts (job_id, queue, job_name, attempt, outcome, error, worker, started_at, finished_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    )
    .bind(a.job_id)
    .bind(a.queue)
    .bind(a.job_name)
    .bind(a.attempt)
    .bind(a.outcome)
    .bind(a.error)
    .bind(a.worker)
    .bind(a.started_at)
    .bind(a.finished_at)
    .execute(c)
    .await
    .map(|_| ())
    })?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AttemptRow {
    pub attempt: i32,
    pub outcome: String,
    pub error: Option<String>,
    pub worker: String,
    pub started_at: i64,
    pub finished_at: i64,
}

pub async fn list_attempts(tx: &mut Tx, job_id: &str) -> Result<Vec<AttemptRow>> {
    Ok(crate::on_tx!(tx, |c| {
        sqlx::query_as(
        "SELECT CAST(attempt AS INTEGER) AS attempt, outcome, error, worker, started_at, finished_at \
         FROM job_attempts WHERE job_id = $1 ORDER BY id"
    )
    .bind(job_id)
    .fetch_all(c)
    .await
    })?)
}

pub async fn find_job(tx: &mut Tx, id: &str) -> Result<Option<JobRow>> {
    let d = dialect(tx);
    let sql = format!("SELECT {} FROM {} WHERE id = $1", select_list(d), d.table);
    Ok(crate::on_tx!(tx, |c| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(c)
            .await?
    }))
}

/// A filter over jobs: by state, queue, job name and a text in the payload.
#[derive(Debug, Default, Clone)]
pub struct JobFilter {
    pub state: Option<String>,
    pub queue: Option<String>,
    /// Matches the envelope's `"job":"<name>"`.
    pub job_name: Option<String>,
    /// A substring of the payload (e.g. an external issue key).
    pub search: Option<String>,
    /// More substrings, any of which (or `search`) may match (the ops page adds the
    /// `"external_issue_id":N` of an issue key's external issues).
    pub search_any: Vec<String>,
    pub ids: Option<Vec<String>>,
}

/// WHERE clause and its text binds ($1.. in order).
fn filter_sql(d: &Dialect, f: &JobFilter, first_bind: usize) -> Result<(String, Vec<String>)> {
    let mut conds = vec!["1 = 1".to_string()];
    let mut binds = Vec::new();
    if let Some(s) = &f.state {
        let c =
            state_condition(s).ok_or_else(|| super::StoreError::NotFound(format!("state {s}")))?;
        conds.push(fill(d, c));
    }
    let payload = if d.table == "Jobs" {
        "CAST(job AS TEXT)"
    } else {
        "convert_from(job, 'UTF8')"
    };
    if let Some(q) = &f.queue {
        binds.push(q.clone());
        conds.push(format!("job_type = ${}", first_bind + binds.len() - 1));
    }
    if let Some(n) = &f.job_name {
        // `{"job":"kind"` is how every envelope is stored now; `{"job": "kind"` (jsonb text)
        // is how earlier versions of the Postgres receiver stored webhook jobs.
        binds.push(format!("{{\"job\":\"{n}\"%"));
        binds.push(format!("{{\"job\": \"{n}\"%"));
        let last = first_bind + binds.len() - 1;
        conds.push(format!(
            "({payload} LIKE ${} OR {payload} LIKE ${last})",
            last - 1
        ));
    }
    let patterns: Vec<&String> = f.search.iter().chain(f.search_any.iter()).collect();
    if !patterns.is_empty() {
        let mut ors = Vec::new();
        for p in patterns {
            let escaped = p
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            binds.push(format!("%{escaped}%"));
            ors.push(format!(
                "{payload} LIKE ${} ESCAPE '\\'",
                first_bind + binds.len() - 1
            ));
        }
        conds.push(format!("({})", ors.join(" OR ")));
    }
    if let Some(ids) = &f.ids {
        let mut parts = Vec::new();
        for id in ids {
            binds.push(id.clone());
            parts.push(format!("${}", first_bind + binds.len() - 1));
        }
        if parts.is_empty() {
            conds.push("1 = 0".into());
        } else {
            conds.push(format!("id IN ({})", parts.join(", ")));
        }
    }
    Ok((conds.join(" AND "), binds))
}

/// Jobs matching a filter, newest run time first.
pub async fn list_jobs(tx: &mut Tx, f: &JobFilter, limit: i64) -> Result<Vec<JobRow>> {
    let d = dialect(tx);
    let (cond, binds) = filter_sql(d, f, 1)?;
    let sql = format!(
        "SELECT {} FROM {} WHERE {cond} ORDER BY run_at DESC, id DESC LIMIT {}",
        select_list(d),
        d.table,
        limit.clamp(1, 10_000)
    );
    Ok(crate::on_tx!(tx, |c| {
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        for b in &binds {
            q = q.bind(b);
        }
        q.fetch_all(c).await?
    }))
}

async fn update_filtered(
    tx: &mut Tx,
    set: &str,
    f: &JobFilter,
    extra: &str,
    reason: Option<&str>,
) -> Result<u64> {
    let d = dialect(tx);
    let first = if reason.is_some() { 2 } else { 1 };
    let (cond, binds) = filter_sql(d, f, first)?;
    let sql = format!(
        "UPDATE {} SET {} WHERE {cond} AND {extra}",
        d.table,
        fill(d, set)
    );
    Ok(crate::on_tx!(tx, |c| {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(r) = reason {
            q = q.bind(r);
        }
        for b in &binds {
            q = q.bind(b);
        }
        q.execute(c).await?.rows_affected()
    }))
}

/// Makes matching jobs runnable now with attempts reset. Running jobs are left alone.
pub async fn retry_jobs(tx: &mut Tx, f: &JobFilter) -> Result<u64> {
    let now_ts = match tx {
        Tx::Pg(_) => "now()",
        Tx::Sqlite(_) => "CAST(strftime('%s','now') AS INTEGER)",
    };
    let set = format!(
        "status = 'Pending', attempts = 0, run_at = {now_ts}, lock_by = NULL, lock_at = NULL, done_at = NULL"
    );
    update_filtered(tx, &set, f, "status NOT IN ('Queued', 'Running')", None).await
}

/// Moves matching unfinished jobs to dead with a reason. A running job is killed too: its
/// worker's fenced finish will then not overwrite the kill.
pub async fn kill_jobs(tx: &mut Tx, f: &JobFilter, reason: &str) -> Result<u64> {
    let set = match tx {
        Tx::Pg(_) => {
            "status = 'Killed', done_at = now(), lock_by = NULL, lock_at = NULL, last_result = jsonb_build_object('Err', CAST($1 AS TEXT))"
        }
        Tx::Sqlite(_) => {
            "status = 'Killed', done_at = CAST(strftime('%s','now') AS INTEGER), lock_by = NULL, lock_at = NULL, last_result = json_object('Err', $1)"
        }
    };
    update_filtered(
        tx,
        set,
        f,
        "status <> 'Done' AND status <> 'Killed'",
        Some(reason),
    )
    .await
}

/// Deletes done or dead jobs finished more than `older_than_secs` ago (and their history).
pub async fn purge_jobs(tx: &mut Tx, state: &str, older_than_secs: i64) -> Result<u64> {
    let d = dialect(tx);
    let cond = state_condition(state)
        .filter(|_| matches!(state, "done" | "dead"))
        .ok_or_else(|| {
            super::StoreError::NotFound(format!("purgeable state {state} (done or dead)"))
        })?;
    let done_at = match tx {
        Tx::Pg(_) => "EXTRACT(EPOCH FROM COALESCE(done_at, run_at))",
        Tx::Sqlite(_) => "COALESCE(done_at, run_at)",
    };
    let sql = format!(
        "DELETE FROM {} WHERE {} AND {done_at} < {} - $1 RETURNING id",
        d.table,
        fill(d, cond),
        d.now
    );
    let ids: Vec<String> = crate::on_tx!(tx, |c| {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(older_than_secs)
            .fetch_all(c)
            .await?
    });
    for chunk in ids.chunks(500) {
        let f = JobFilter {
            ids: Some(chunk.to_vec()),
            ..Default::default()
        };
        let (cond, binds) = filter_sql(d, &f, 1)?;
        for table in ["job_attempts", "job_progress"] {
            let sql = format!(
                "DELETE FROM {table} WHERE {}",
                cond.replace("id IN", "job_id IN")
            );
            crate::on_tx!(tx, |c| {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for b in &binds {
                    q = q.bind(b);
                }
                q.execute(c).await?;
            })
        }
    }
    Ok(ids.len() as u64)
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct QueueStateCount {
    pub queue: String,
    pub state: String,
    pub count: i64,
}

/// Counts per queue and state.
pub async fn count_by_queue_and_state(tx: &mut Tx) -> Result<Vec<QueueStateCount>> {
    let d = dialect(tx);
    let sql = format!(
        "SELECT job_type AS queue, {state} AS state, COUNT(*) AS count FROM {} GROUP BY job_type, {state} ORDER BY job_type, {state}",
        d.table,
        state = fill(d, STATE_CASE)
    );
    Ok(crate::on_tx!(tx, |c| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(c)
            .await?
    }))
}

/// Age in seconds of the oldest due job per queue (pending, or failed and due).
pub async fn oldest_pending_age(tx: &mut Tx) -> Result<Vec<(String, i64)>> {
    let d = dialect(tx);
    let sql = fill(
        d,
        "SELECT job_type, CAST(MAX({now} - {run_at}) AS BIGINT) FROM {table} \
         WHERE (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts)) AND {run_at} <= {now} \
         GROUP BY job_type",
    );
    Ok(crate::on_tx!(tx, |c| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(c)
            .await?
    }))
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Throughput {
    pub queue: String,
    pub outcome: String,
    pub count: i64,
}

/// Attempts finished since `since_ms`, per queue and outcome.
pub async fn attempts_since(tx: &mut Tx, since_ms: i64) -> Result<Vec<Throughput>> {
    Ok(crate::on_tx!(tx, |c| sqlx::query_as(
        "SELECT queue, outcome, COUNT(*) AS count FROM job_attempts WHERE finished_at >= $1 \
         GROUP BY queue, outcome ORDER BY queue, outcome"
    )
    .bind(since_ms)
    .fetch_all(c)
    .await)?)
}

/// Records a diagnostic side effect of a noop job (committed on its own).
pub async fn insert_ledger(tx: &mut Tx, job_id: &str, marker: &str, attempt: i32) -> Result<()> {
    crate::on_tx!(tx, |c| sqlx::query(
        "INSERT INTO job_ledger (job_id, marker, attempt, created_at) VALUES ($1, $2, $3, $4)"
    )
    .bind(job_id)
    .bind(marker)
    .bind(attempt)
    .bind(crate::now_ms())
    .execute(c)
    .await
    .map(|_| ()))?;
    Ok(())
}

/// (executions, distinct jobs) recorded under a ledger marker.
pub async fn count_ledger(tx: &mut Tx, marker: &str) -> Result<(i64, i64)> {
    Ok(crate::on_tx!(tx, |c| sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT job_id) FROM job_ledger WHERE marker = $1"
    )
    .bind(marker)
    .fetch_one(c)
    .await)?)
}

#[derive(Debug, Clone, Default, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Progress {
    pub cursor: i64,
    pub pages: i32,
    pub keys_deleted: i64,
}

pub async fn find_progress(tx: &mut Tx, job_id: &str) -> Result<Option<Progress>> {
    Ok(crate::on_tx!(tx, |c| {
        sqlx::query_as(
        "SELECT cursor, CAST(pages AS INTEGER) AS pages, keys_deleted FROM job_progress WHERE job_id = $1"
    )
    .bind(job_id)
    .fetch_optional(c)
    .await
    })?)
}

pub async fn save_progress(tx: &mut Tx, job_id: &str, p: &Progress) -> Result<()> {
    crate::on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO job_progress (job_id, cursor, pages, keys_deleted, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (job_id) DO UPDATE SET cursor = excluded.cursor, pages = excluded.pages, \
         keys_deleted = excluded.keys_deleted, updated_at = excluded.updated_at"
    )
    .bind(job_id)
    .bind(p.cursor)
    .bind(p.pages)
    .bind(p.keys_deleted)
    .bind(crate::now_ms())
    .execute(c)
    .await
    .map(|_| ())
    })?;
    Ok(())
}

/// A worker process's queue worker, from apalis' heartbeat table.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct WorkerRow {
    pub id: String,
    pub queue: String,
    /// Seconds since the last heartbeat.
    pub last_seen_age_s: i64,
    pub started_at_ms: Option<i64>,
}

/// Workers that heartbeat in the last `within_secs`, newest first.
pub async fn list_live_workers(tx: &mut Tx, within_secs: i64) -> Result<Vec<WorkerRow>> {
    let sql = match tx {
        Tx::Pg(_) => {
            "SELECT id, worker_type AS queue, \
             CAST(EXTRACT(EPOCH FROM now() - last_seen) AS BIGINT) AS last_seen_age_s, \
             CAST(EXTRACT(EPOCH FROM started_at) * 1000 AS BIGINT) AS started_at_ms \
             FROM apalis.workers WHERE last_seen >= now() - make_interval(secs => $1) \
             ORDER BY last_seen DESC"
        }
        Tx::Sqlite(_) => {
            "SELECT id, worker_type AS queue, \
             CAST(strftime('%s','now') AS INTEGER) - last_seen AS last_seen_age_s, \
             started_at * 1000 AS started_at_ms \
             FROM Workers WHERE last_seen >= CAST(strftime('%s','now') AS INTEGER) - $1 \
             ORDER BY last_seen DESC"
        }
    };
    Ok(crate::on_tx!(tx, |c| sqlx::query_as(sqlx::AssertSqlSafe(
        sql
    ))
    .bind(within_secs as f64)
    .fetch_all(c)
    .await)?)
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct BucketCount {
    /// 0 = the oldest bucket.
    pub bucket: i64,
    pub outcome: String,
    pub count: i64,
}

/// Attempts finished since `since_ms` in buckets of `bucket_ms`, per outcome.
pub async fn attempts_by_bucket(
    tx: &mut Tx,
    since_ms: i64,
    bucket_ms: i64,
) -> Result<Vec<BucketCount>> {
    Ok(crate::on_tx!(tx, |c| sqlx::query_as(
        "SELECT CAST((finished_at - $1) / $2 AS BIGINT) AS bucket, outcome, COUNT(*) AS count \
         FROM job_attempts WHERE finished_at >= $1 GROUP BY 1, outcome ORDER BY 1"
    )
    .bind(since_ms)
    .bind(bucket_ms)
    .fetch_all(c)
    .await)?)
}

/// Rate-limit snoozes since `since_ms` by reason (the reason names the integration).
pub async fn snoozes_since(tx: &mut Tx, since_ms: i64) -> Result<Vec<(Option<String>, i64)>> {
    Ok(crate::on_tx!(tx, |c| sqlx::query_as(
        "SELECT error, COUNT(*) FROM job_attempts WHERE outcome = 'snoozed' AND finished_at >= $1 \
         GROUP BY error ORDER BY 2 DESC"
    )
    .bind(since_ms)
    .fetch_all(c)
    .await)?)
}

/// The latest failed or dead outbound jobs of an integration's external issues (found by
/// their dedup keys `status:<id>` / `assignee:<id>`), newest first.
pub async fn recent_outbound_failures(
    tx: &mut Tx,
    integration_id: i64,
    limit: i64,
) -> Result<Vec<JobRow>> {
    let d = dialect(tx);
    let sql = format!(
        "SELECT {cols} FROM {table} WHERE job_type = 'outbound' AND ({failed} OR {dead}) \
         AND idempotency_key IN ( \
           SELECT 'status:' || CAST(id AS TEXT) FROM external_issues WHERE integration_id = $1 \
           UNION ALL SELECT 'assignee:' || CAST(id AS TEXT) FROM external_issues WHERE integration_id = $1) \
         ORDER BY run_at DESC LIMIT $2",
        cols = select_list(d),
        table = d.table,
        failed = fill(d, state_condition("failed").unwrap_or("1 = 0")),
        dead = fill(d, state_condition("dead").unwrap_or("1 = 0")),
    );
    Ok(crate::on_tx!(tx, |c| sqlx::query_as(sqlx::AssertSqlSafe(
        sql
    ))
    .bind(integration_id)
    .bind(limit)
    .fetch_all(c)
    .await)?)
}

/// Inserts `n` copies of one payload as pending jobs without dedup keys (the benchmark's
/// burn-down backlog), in one statement per chunk.
pub async fn insert_many_jobs(
    tx: &mut Tx,
    queue: &str,
    max_attempts: i32,
    payload: &[u8],
    n: usize,
) -> Result<u64> {
    let ids: Vec<String> = (0..n).map(|_| ulid::Ulid::generate().to_string()).collect();
    match tx {
        Tx::Pg(t) => Ok(sqlx::query(
            "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority) \
             SELECT id, $2, $3, 'Pending', 0, $4, now(), 0 FROM unnest($1::text[]) AS id",
        )
        .bind(&ids)
        .bind(queue)
        .bind(payload)
        .bind(max_attempts)
        .execute(&mut **t)
        .await?
        .rows_affected()),
        Tx::Sqlite(t) => {
            let mut n = 0;
            for id in &ids {
                n += sqlx::query(
                    "INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, run_at, priority, metadata) \
                     VALUES ($1, $2, $3, 'Pending', 0, $4, CAST(strftime('%s','now') AS INTEGER), 0, '{}')",
                )
                .bind(payload)
                .bind(id)
                .bind(queue)
                .bind(max_attempts)
                .execute(&mut **t)
                .await?
                .rows_affected();
            }
            Ok(n)
        }
    }
}

/// Unfinished jobs (pending, scheduled, running, failed) of a queue.
pub async fn count_unfinished(tx: &mut Tx, queue: &str) -> Result<i64> {
    let d = dialect(tx);
    let sql = fill(
        d,
        "SELECT COUNT(*) FROM {table} WHERE job_type = $1 AND (status IN ('Pending', 'Queued', 'Running') \
         OR (status = 'Failed' AND attempts < max_attempts))",
    );
    Ok(crate::on_tx!(tx, |c| sqlx::query_scalar(
        sqlx::AssertSqlSafe(sql)
    )
    .bind(queue)
    .fetch_one(c)
    .await)?)
}

/// Whether `queue` has any job left to run or running; cheap enough to poll under load
/// (each side is an index probe, where [`count_unfinished`] counts the whole table).
pub async fn any_unfinished(tx: &mut Tx, queue: &str) -> Result<bool> {
    let d = dialect(tx);
    let sql = fill(
        d,
        "SELECT EXISTS (SELECT 1 FROM {table} WHERE job_type = $1 AND (status = 'Pending' \
         OR (status = 'Failed' AND attempts < max_attempts))) \
         OR EXISTS (SELECT 1 FROM {table} WHERE lock_by IS NOT NULL AND job_type = $1 \
         AND status IN ('Queued', 'Running'))",
    );
    Ok(crate::on_tx!(tx, |c| sqlx::query_scalar(
        sqlx::AssertSqlSafe(sql)
    )
    .bind(queue)
    .fetch_one(c)
    .await)?)
}

/// First start, last finish and count of the attempts of `job_name` that started at or
/// after `since_ms`.
pub async fn attempt_span(
    tx: &mut Tx,
    job_name: &str,
    since_ms: i64,
) -> Result<(Option<i64>, Option<i64>, i64)> {
    Ok(crate::on_tx!(tx, |c| sqlx::query_as(
        "SELECT MIN(started_at), MAX(finished_at), COUNT(*) FROM job_attempts \
         WHERE job_name = $1 AND started_at >= $2"
    )
    .bind(job_name)
    .bind(since_ms)
    .fetch_one(c)
    .await)?)
}

/// A successful attempt waiting to be written with others (the batch completer).
#[derive(Debug, Clone)]
pub struct DoneJob {
    pub id: String,
    pub worker: String,
    pub queue: String,
    pub job_name: String,
    pub attempt: i32,
    pub started_at: i64,
    pub finished_at: i64,
}

/// Marks many jobs done and records their attempts, in the caller's transaction: one
/// UPDATE and one INSERT on Postgres. Nothing else rides on it (a row one job writes must
/// not be able to fail the batch: handlers write their own, before they return). Each
/// finish is fenced by its worker's `lock_by`, as in [`finish_job`]; returns the ids that
/// were still held (and so were written).
pub async fn finish_done_jobs(
    tx: &mut Tx,
    done: &[DoneJob],
) -> Result<std::collections::HashSet<String>> {
    let col = |f: fn(&DoneJob) -> String| done.iter().map(f).collect::<Vec<String>>();
    let ids = col(|d| d.id.clone());
    let workers = col(|d| d.worker.clone());
    let held: Vec<String> = match tx {
        Tx::Pg(t) => {
            sqlx::query_scalar(
                "UPDATE apalis.jobs AS j SET status = 'Done', attempts = j.attempts + 1, \
                 last_result = '{\"Ok\":null}'::jsonb, done_at = now(), lock_by = NULL, lock_at = NULL \
                 FROM unnest($1::text[], $2::text[]) AS f(id, worker) \
                 WHERE j.id = f.id AND j.lock_by = f.worker RETURNING j.id",
            )
            .bind(&ids)
            .bind(&workers)
            .fetch_all(&mut **t)
            .await?
        }
        Tx::Sqlite(t) => {
            let mut held = Vec::new();
            for d in done {
                let n = sqlx::query(
                    "UPDATE Jobs SET status = 'Done', attempts = attempts + 1, last_result = '{\"Ok\":null}', \
                     done_at = CAST(strftime('%s','now') AS INTEGER), lock_by = NULL, lock_at = NULL \
                     WHERE id = $1 AND lock_by = $2",
                )
                .bind(&d.id)
                .bind(&d.worker)
                .execute(&mut **t)
                .await?
                .rows_affected();
                if n == 1 {
                    held.push(d.id.clone());
                }
            }
            held
        }
    };
    let held: std::collections::HashSet<String> = held.into_iter().collect();
    let written: Vec<&DoneJob> = done.iter().filter(|d| held.contains(&d.id)).collect();
    match tx {
        Tx::Pg(t) => {
            let c =
                |f: fn(&DoneJob) -> String| written.iter().map(|d| f(d)).collect::<Vec<String>>();
            let n = |f: fn(&DoneJob) -> i64| written.iter().map(|d| f(d)).collect::<Vec<i64>>();
            sqlx::query(
                "INSERT INTO job_attempts (job_id, queue, job_name, attempt, outcome, error, worker, started_at, finished_at) \
                 SELECT id, queue, job_name, CAST(attempt AS INTEGER), 'done', NULL, worker, started_at, finished_at \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[], $7::bigint[]) \
                 AS a(id, queue, job_name, attempt, worker, started_at, finished_at)",
            )
            .bind(c(|d| d.id.clone()))
            .bind(c(|d| d.queue.clone()))
            .bind(c(|d| d.job_name.clone()))
            .bind(n(|d| i64::from(d.attempt)))
            .bind(c(|d| d.worker.clone()))
            .bind(n(|d| d.started_at))
            .bind(n(|d| d.finished_at))
            .execute(&mut **t)
            .await?;
        }
        Tx::Sqlite(_) => {
            for d in written {
                record_attempt(
                    tx,
                    &AttemptRecord {
                        job_id: &d.id,
                        queue: &d.queue,
                        job_name: &d.job_name,
                        attempt: d.attempt,
                        outcome: "done",
                        error: None,
                        worker: &d.worker,
                        started_at: d.started_at,
                        finished_at: d.finished_at,
                    },
                )
                .await?;
            }
        }
    }
    Ok(held)
}

/// What apalis writes into jobs it hands back at a worker's graceful shutdown.
const SHUTDOWN_HANDBACK: &str = "Re-enqueued due to worker shutdown";

/// Gives back the attempt apalis charged to jobs that a stopping worker had fetched but
/// never started (with `fetch_batch_size` > 1): they did not run, so the attempt is not
/// spent. The new `last_result` keeps this from applying twice. Returns how many.
pub async fn uncharge_shutdown_handbacks(tx: &mut Tx) -> Result<u64> {
    let d = dialect(tx);
    let (is_handback, note) = match tx {
        Tx::Pg(_) => (
            "last_result ->> 'Err' = $1",
            "jsonb_build_object('Err', 'handed back unstarted at a worker shutdown')",
        ),
        Tx::Sqlite(_) => (
            "json_extract(last_result, '$.Err') = $1",
            "json_object('Err', 'handed back unstarted at a worker shutdown')",
        ),
    };
    let sql = format!(
        "UPDATE {} SET attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, last_result = {note} \
         WHERE status = 'Pending' AND {is_handback}",
        d.table
    );
    Ok(crate::on_tx!(tx, |c| sqlx::query(sqlx::AssertSqlSafe(
        sql
    ))
    .bind(SHUTDOWN_HANDBACK)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?)
}

/// Jobs fetched or running by worker processes whose worker names start with `prefix`
/// (`<queue>-<pid>-`): what a killed process held.
pub async fn count_held_by_prefix(tx: &mut Tx, prefix: &str) -> Result<i64> {
    let d = dialect(tx);
    let sql = fill(
        d,
        "SELECT COUNT(*) FROM {table} WHERE status IN ('Queued', 'Running') AND lock_by LIKE $1",
    );
    Ok(crate::on_tx!(tx, |c| sqlx::query_scalar(
        sqlx::AssertSqlSafe(sql)
    )
    .bind(format!("{prefix}%"))
    .fetch_one(c)
    .await)?)
}

/// Ledger rows and distinct markers whose marker starts with `prefix`.
pub async fn count_ledger_prefix(tx: &mut Tx, prefix: &str) -> Result<(i64, i64)> {
    Ok(crate::on_tx!(tx, |c| sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT marker) FROM job_ledger WHERE marker LIKE $1"
    )
    .bind(format!("{prefix}%"))
    .fetch_one(c)
    .await)?)
}

/// How the outbound jobs ended, after a provider storm.
#[derive(Debug, Default)]
pub struct OutboundOutcome {
    pub done: i64,
    pub dead: i64,
    pub dead_reasons: std::collections::BTreeMap<String, i64>,
    /// Jobs whose used attempts are more than their attempts that failed or finished: an
    /// attempt was charged for something else (a rate-limit snooze must never be).
    pub overcharged: i64,
    pub snoozes: i64,
}

pub async fn outbound_outcome(tx: &mut Tx) -> Result<OutboundOutcome> {
    let rows = list_jobs(
        tx,
        &JobFilter {
            queue: Some("outbound".into()),
            ..Default::default()
        },
        1_000_000,
    )
    .await?;
    let charged: Vec<(String, i64)> = crate::on_tx!(tx, |c| {
        sqlx::query_as(
        "SELECT job_id, COUNT(*) FROM job_attempts WHERE queue = 'outbound' AND outcome <> 'snoozed' GROUP BY job_id"
    )
    .fetch_all(c)
    .await
    })?;
    let charged: std::collections::HashMap<String, i64> = charged.into_iter().collect();
    let snoozes: i64 = crate::on_tx!(tx, |c| sqlx::query_scalar(
        "SELECT COUNT(*) FROM job_attempts WHERE queue = 'outbound' AND outcome = 'snoozed'"
    )
    .fetch_one(c)
    .await)?;
    let mut out = OutboundOutcome {
        snoozes,
        ..Default::default()
    };
    for r in &rows {
        match r.state.as_str() {
            "done" => out.done += 1,
            "dead" => {
                out.dead += 1;
                let reason: String = r
                    .last_error()
                    .unwrap_or_default()
                    .chars()
                    .take(80)
                    .collect();
                *out.dead_reasons.entry(reason).or_default() += 1;
            }
            _ => {}
        }
        if i64::from(r.attempts) > charged.get(&r.id).copied().unwrap_or(0) {
            out.overcharged += 1;
        }
    }
    Ok(out)
}

/// The first attempt finished at or after `since_ms` (recovery after an outage).
pub async fn first_finish_since(tx: &mut Tx, since_ms: i64) -> Result<Option<i64>> {
    Ok(crate::on_tx!(tx, |c| sqlx::query_scalar(
        "SELECT MIN(finished_at) FROM job_attempts WHERE finished_at >= $1"
    )
    .bind(since_ms)
    .fetch_one(c)
    .await)?)
}
