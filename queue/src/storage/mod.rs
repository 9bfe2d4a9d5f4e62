//! The queue's SQL, behind one private trait with one implementation per database
//! (`postgres.rs`, `sqlite.rs`). Each function is one statement or one short transaction and
//! is named after what it does; shared logic (dedup, coalescing, batching) lives above it,
//! generic over the trait, and the `Db`/`Tx` enums pick the implementation at the boundary.

pub(crate) mod postgres;
pub(crate) mod sqlite;

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{Database, Pool, Transaction};

use crate::model::{
    AttemptRow, BucketCount, JobRow, OutcomeCount, QueueCount, ReasonCount, State, WorkerRow,
};

pub(crate) type Conn<S> = <<S as Storage>::Db as Database>::Connection;

/// A job to insert.
pub(crate) struct NewRow<'a> {
    pub id: &'a str,
    pub queue: &'a str,
    pub kind: &'a str,
    pub payload: &'a [u8],
    pub max_attempts: i32,
    /// `None`: now (the database's clock on Postgres).
    pub run_at: Option<DateTime<Utc>>,
    pub dedup_key: Option<&'a str>,
    pub partition_key: Option<&'a str>,
    pub traceparent: Option<&'a str>,
}

/// A job a worker took. Text the row holds that is not UTF-8 (possible on SQLite) is read
/// lossily and named in `problem`, so the worker can mark the job dead instead of failing.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    pub lease: LeaseRef,
    pub kind: String,
    pub payload: Vec<u8>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub snoozes: i32,
    pub partition_key: Option<String>,
    pub traceparent: Option<String>,
    pub problem: Option<String>,
    /// Its place in the fetch order, for the next fetch's [`Cursor`].
    pub run_at: DateTime<Utc>,
}

/// Where a worker's last full fetch ended, in fetch order (`run_at`, `id`). On Postgres the
/// next fetch starts after it: the index entries of jobs already taken stay at the head of
/// the fetch index until vacuum, and a fetch that starts at the head walks all of them (at a
/// burn-down's pace, milliseconds per fetch). A job behind the cursor (handed back, or skipped
/// while another worker's fetch held it) is found when the cursor is dropped: after a fetch
/// that was not full, and at every safety-net poll.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cursor {
    pub run_at: DateTime<Utc>,
    pub id: String,
}

impl Cursor {
    /// The last of a fetch's jobs in fetch order.
    pub fn after(jobs: &[Fetched]) -> Option<Cursor> {
        jobs.iter()
            .max_by(|a, b| (a.run_at, &a.lease.id).cmp(&(b.run_at, &b.lease.id)))
            .map(|j| Cursor {
                run_at: j.run_at,
                id: j.lease.id.clone(),
            })
    }
}

/// What addresses one fetch of a job: its row (the id on Postgres, the rowid on SQLite,
/// where an id may not even be text) and the lease number it was fetched under.
#[derive(Debug, Clone)]
pub(crate) struct LeaseRef {
    pub rowid: i64,
    pub id: String,
    pub lease: i64,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Done,
    /// Retry at `at`, or dead when this was the last attempt.
    Retry {
        error: String,
        at: DateTime<Utc>,
    },
    Dead {
        reason: String,
    },
    /// Run again at `until` without using up the attempt.
    Snooze {
        reason: String,
        until: DateTime<Utc>,
    },
}

impl Outcome {
    /// The code the SQL switches on.
    pub fn code(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Retry { .. } => "retry",
            Outcome::Dead { .. } => "dead",
            Outcome::Snooze { .. } => "snooze",
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            Outcome::Done => None,
            Outcome::Retry { error, .. } => Some(error),
            Outcome::Dead { reason } | Outcome::Snooze { reason, .. } => Some(reason),
        }
    }

    pub fn run_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Outcome::Retry { at, .. } => Some(*at),
            Outcome::Snooze { until, .. } => Some(*until),
            _ => None,
        }
    }
}

/// The outcome of one attempt, to be written under its lease.
#[derive(Debug, Clone)]
pub(crate) struct Finish {
    pub lease: LeaseRef,
    pub outcome: Outcome,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// A process's listener connection on Postgres: while it exists, the process is alive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Session {
    pub pid: i32,
    pub started: DateTime<Utc>,
}

/// A job taken back from a dead worker.
#[derive(Debug, Clone)]
pub(crate) struct Rescued {
    pub id: String,
    pub queue: String,
    pub state: State,
    pub worker: Option<String>,
}

/// A filter over jobs (all conditions optional, combined with AND).
#[derive(Debug, Default)]
pub(crate) struct Filter<'a> {
    pub state: Option<State>,
    /// With `state = pending`: due (`true`) or not yet due (`false`).
    pub due: Option<bool>,
    pub queue: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub partition: Option<&'a str>,
    /// Any of these byte strings occurs in the payload.
    pub needles: Option<&'a [String]>,
    pub ids: Option<&'a [String]>,
    /// Ids below this one (keyset paging, newest first).
    pub before: Option<&'a str>,
}

#[allow(async_fn_in_trait)]
pub(crate) trait Storage {
    type Db: Database;

    /// A transaction that reads before it writes (SQLite: BEGIN IMMEDIATE).
    async fn begin_write(pool: &Pool<Self::Db>) -> sqlx::Result<Transaction<'static, Self::Db>>;

    // ---- enqueue (in the caller's transaction) ----

    /// Inserts a job; `false` when an unfinished job holds its dedup key.
    async fn insert_job(c: &mut Conn<Self>, job: &NewRow<'_>) -> sqlx::Result<bool>;
    /// The unfinished job holding a dedup key.
    async fn find_key_holder(
        c: &mut Conn<Self>,
        queue: &str,
        key: &str,
    ) -> sqlx::Result<Option<String>>;
    /// Coalescing: the waiting (not running) holder of `job`'s key takes its payload and
    /// partition, and its traceparent unless it has none.
    async fn replace_waiting_payload(
        c: &mut Conn<Self>,
        job: &NewRow<'_>,
    ) -> sqlx::Result<Option<String>>;
    /// Coalescing behind a running holder: the running job gives up the key.
    async fn release_running_key(c: &mut Conn<Self>, queue: &str, key: &str) -> sqlx::Result<()>;

    // ---- workers ----

    async fn register_worker(
        c: &mut Conn<Self>,
        id: &str,
        queue: &str,
        session: Option<Session>,
    ) -> sqlx::Result<()>;
    /// One heartbeat for all of a process's workers (re-registering any a rescuer removed).
    async fn heartbeat_workers(
        c: &mut Conn<Self>,
        workers: &[(String, String)],
        session: Option<Session>,
    ) -> sqlx::Result<()>;
    async fn deregister_worker(c: &mut Conn<Self>, id: &str) -> sqlx::Result<()>;
    /// Takes up to `n` due jobs of a queue for `worker`, in one statement, oldest first
    /// (after `after` where the backend needs it).
    async fn fetch_due_jobs(
        c: &mut Conn<Self>,
        queue: &str,
        worker: &str,
        n: i64,
        after: Option<&Cursor>,
    ) -> sqlx::Result<Vec<Fetched>>;
    /// Gives fetched, unstarted jobs back without charging an attempt.
    async fn hand_back(c: &mut Conn<Self>, worker: &str, jobs: &[LeaseRef]) -> sqlx::Result<u64>;
    /// Marks jobs done; returns the indexes (into `done`) of those still held.
    async fn finish_done(c: &mut Conn<Self>, done: &[&Finish]) -> sqlx::Result<Vec<usize>>;
    /// Writes retries, deaths and snoozes with their attempt rows; returns the indexes still
    /// held and each one's new state.
    async fn finish_other(
        c: &mut Conn<Self>,
        other: &[&Finish],
    ) -> sqlx::Result<Vec<(usize, State)>>;
    /// Takes back the jobs of dead workers: failed (attempt charged) or dead past their
    /// attempts. `session_since`: the rescuer's own listener session start, below which the
    /// session test is not trusted (the database restarted since).
    async fn rescue_lost_jobs(
        c: &mut Conn<Self>,
        stale_after: Duration,
        session_since: Option<DateTime<Utc>>,
    ) -> sqlx::Result<Vec<Rescued>>;

    // ---- operators ----

    async fn list_jobs(c: &mut Conn<Self>, f: &Filter<'_>, limit: i64)
    -> sqlx::Result<Vec<JobRow>>;
    async fn find_job(c: &mut Conn<Self>, id: &str) -> sqlx::Result<Option<JobRow>>;
    async fn list_attempts(c: &mut Conn<Self>, id: &str) -> sqlx::Result<Vec<AttemptRow>>;
    /// Runs matching jobs that are not running now, with their attempts reset.
    async fn retry_jobs(c: &mut Conn<Self>, f: &Filter<'_>) -> sqlx::Result<u64>;
    async fn kill_jobs(c: &mut Conn<Self>, f: &Filter<'_>, reason: &str) -> sqlx::Result<u64>;
    async fn purge_jobs(
        c: &mut Conn<Self>,
        state: State,
        before: DateTime<Utc>,
    ) -> sqlx::Result<u64>;
    async fn count_by_queue_and_state(c: &mut Conn<Self>) -> sqlx::Result<Vec<QueueCount>>;
    /// Seconds the oldest due job of each queue has waited.
    async fn oldest_due_age(c: &mut Conn<Self>) -> sqlx::Result<Vec<(String, f64)>>;
    async fn outcomes_since(
        c: &mut Conn<Self>,
        since: DateTime<Utc>,
    ) -> sqlx::Result<Vec<OutcomeCount>>;
    async fn live_workers(c: &mut Conn<Self>, since: DateTime<Utc>)
    -> sqlx::Result<Vec<WorkerRow>>;
    async fn save_progress(c: &mut Conn<Self>, job_id: &str, json: &str) -> sqlx::Result<()>;
    async fn find_progress(c: &mut Conn<Self>, job_id: &str) -> sqlx::Result<Option<String>>;
}

/// The metrics and operator-page reads (charts, drain checks, an integration's failures), in
/// `{postgres,sqlite}/metrics.rs`: read-only, so they are kept apart from the run path's
/// statements, and the two main files stay the side-by-side list of what a job's life writes.
/// "An attempt finished" means a done job's own row (a success writes no attempt row) or a
/// `queue_attempts` row (retry, dead, snoozed, lost).
#[allow(async_fn_in_trait)]
pub(crate) trait Metrics: Storage {
    /// Attempts finished since `since`, per bucket of `bucket_ms` (0 = the oldest) and outcome.
    async fn attempts_by_bucket(
        c: &mut Conn<Self>,
        since: DateTime<Utc>,
        bucket_ms: i64,
    ) -> sqlx::Result<Vec<BucketCount>>;
    /// Snoozes since `since` per reason, most first.
    async fn snoozes_since(
        c: &mut Conn<Self>,
        since: DateTime<Utc>,
    ) -> sqlx::Result<Vec<ReasonCount>>;
    /// The first attempt finished at or after `since`.
    async fn first_finish_since(
        c: &mut Conn<Self>,
        since: DateTime<Utc>,
    ) -> sqlx::Result<Option<DateTime<Utc>>>;
    /// Pending, failed and running jobs of a queue.
    async fn count_unfinished(c: &mut Conn<Self>, queue: &str) -> sqlx::Result<i64>;
    /// Whether a queue has a pending, failed or running job (index probes, no count).
    async fn any_unfinished(c: &mut Conn<Self>, queue: &str) -> sqlx::Result<bool>;
    /// Failed and dead jobs of a queue (with one of `dedup_keys`, when given), the latest
    /// attempt first.
    async fn recent_failures(
        c: &mut Conn<Self>,
        queue: &str,
        dedup_keys: Option<&[String]>,
        limit: i64,
    ) -> sqlx::Result<Vec<JobRow>>;
}

/// The text every lost attempt's error starts with; the rest names the worker.
pub(crate) const LOST: &str = "ended without a result: its worker stopped (it crashed, was killed or lost its heartbeat) while running it";
