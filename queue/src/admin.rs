//! Operator queries, one small function each: list, show, retry, kill, purge, stats,
//! dashboard counts, metrics (attempts per bucket or since a time, snoozes, oldest due job,
//! first finish, unfinished jobs, recent failures), progress and live workers. They read the payload as bytes, so a row
//! whose payload is not UTF-8 or not JSON never makes a search fail.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::db::{Db, Tx};
use crate::error::QueueError;
use crate::model::{
    AttemptRow, BucketCount, JobRow, OutcomeCount, QueueCount, ReasonCount, Shown, State, WorkerRow,
};
use crate::storage::{Filter, Metrics, Storage, postgres::PgStore, sqlite::SqliteStore};

/// Runs `$body` with `$s` = the storage type and `$c` = a connection of the pool.
macro_rules! with_conn {
    ($db:expr, |$s:ident, $c:ident| $body:expr) => {
        match $db {
            Db::Pg(p) => {
                type $s = PgStore;
                let mut conn = p.acquire().await?;
                let $c = &mut *conn;
                $body
            }
            Db::Sqlite(p) => {
                type $s = SqliteStore;
                let mut conn = p.acquire().await?;
                let $c = &mut *conn;
                $body
            }
        }
    };
}

/// Runs `$body` in a write transaction (BEGIN IMMEDIATE on SQLite) and commits it.
macro_rules! with_write {
    ($db:expr, |$s:ident, $c:ident| $body:expr) => {
        match $db {
            Db::Pg(p) => {
                type $s = PgStore;
                let mut tx = <$s as Storage>::begin_write(p).await?;
                let r = {
                    let $c = &mut *tx;
                    $body
                };
                tx.commit().await?;
                r
            }
            Db::Sqlite(p) => {
                type $s = SqliteStore;
                let mut tx = <$s as Storage>::begin_write(p).await?;
                let r = {
                    let $c = &mut *tx;
                    $body
                };
                tx.commit().await?;
                r
            }
        }
    };
}

/// Which jobs an operator means. Every condition is optional; they combine with AND.
#[derive(Debug, Default, Clone)]
pub struct JobFilter {
    pub state: Option<Shown>,
    pub queue: Option<String>,
    pub kind: Option<String>,
    pub partition: Option<String>,
    /// Texts any of which occurs in the payload (e.g. an external issue key).
    pub search: Vec<String>,
    pub ids: Option<Vec<String>>,
    /// Only ids below this one (paging: newest first).
    pub before: Option<String>,
}

impl JobFilter {
    fn storage(&self) -> Filter<'_> {
        let (state, due) = match self.state.map(Shown::stored) {
            Some((s, due)) => (Some(s), due),
            None => (None, None),
        };
        Filter {
            state,
            due,
            queue: self.queue.as_deref(),
            kind: self.kind.as_deref(),
            partition: self.partition.as_deref(),
            needles: Some(self.search.as_slice()),
            ids: self.ids.as_deref(),
            before: self.before.as_deref(),
        }
    }

    fn by_id(id: &str) -> JobFilter {
        JobFilter {
            ids: Some(vec![id.to_string()]),
            ..Default::default()
        }
    }
}

/// Jobs matching a filter, newest first.
pub async fn list(db: &Db, f: &JobFilter, limit: i64) -> Result<Vec<JobRow>, QueueError> {
    let limit = limit.clamp(1, 10_000);
    let f = f.storage();
    Ok(with_conn!(db, |S, c| S::list_jobs(c, &f, limit).await?))
}

/// A job and its attempts, oldest first (a success is the job row's own last attempt).
#[derive(Debug, Clone, Serialize)]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: JobRow,
    pub history: Vec<AttemptRow>,
}

pub async fn show(db: &Db, id: &str) -> Result<Option<JobDetail>, QueueError> {
    let (job, mut history) = with_conn!(db, |S, c| {
        let Some(job) = S::find_job(c, id).await? else {
            return Ok(None);
        };
        (job, S::list_attempts(c, id).await?)
    });
    if job.state == State::Done.as_str()
        && let Some(finished_at) = job.finished_at
    {
        history.push(AttemptRow {
            attempt: job.attempts,
            outcome: "done".into(),
            error: None,
            worker: job.worker.clone(),
            started_at: job.started_at,
            finished_at,
        });
    }
    Ok(Some(JobDetail { job, history }))
}

/// Makes matching jobs (not running ones) run now, attempts reset. A finished job whose
/// dedup key another unfinished job holds runs without its key.
pub async fn retry(db: &Db, f: &JobFilter) -> Result<u64, QueueError> {
    let f = f.storage();
    Ok(with_write!(db, |S, c| S::retry_jobs(c, &f).await?))
}

pub async fn retry_one(db: &Db, id: &str) -> Result<bool, QueueError> {
    Ok(retry(db, &JobFilter::by_id(id)).await? == 1)
}

/// Moves matching unfinished jobs to dead with a reason. A running job is killed too: its
/// worker's late result is then dropped (the write is fenced by its lease).
pub async fn kill(db: &Db, f: &JobFilter, reason: &str) -> Result<u64, QueueError> {
    if reason.trim().is_empty() || reason.len() > 1000 || reason.contains('\0') {
        return Err(QueueError::Invalid(
            "a kill reason must be 1 to 1000 bytes without NUL characters".into(),
        ));
    }
    let f = f.storage();
    Ok(with_write!(db, |S, c| S::kill_jobs(c, &f, reason).await?))
}

pub async fn kill_one(db: &Db, id: &str, reason: &str) -> Result<bool, QueueError> {
    Ok(kill(db, &JobFilter::by_id(id), reason).await? == 1)
}

/// Deletes done or dead jobs that finished more than `older_than` ago, with their attempts
/// and progress.
pub async fn purge(db: &Db, state: State, older_than: Duration) -> Result<u64, QueueError> {
    if !matches!(state, State::Done | State::Dead) {
        return Err(QueueError::Invalid(format!(
            "only done or dead jobs can be purged, not {}",
            state.as_str()
        )));
    }
    let before = Utc::now()
        - chrono::Duration::from_std(older_than)
            .map_err(|_| QueueError::Invalid("the purge age is too large".into()))?;
    Ok(with_write!(db, |S, c| S::purge_jobs(c, state, before).await?))
}

/// What the queue holds and does.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub counts: Vec<QueueCount>,
    /// Seconds the oldest due job of each queue has waited.
    pub oldest_due_secs: BTreeMap<String, f64>,
    /// Attempts finished in the last hour, per queue and outcome.
    pub last_hour: Vec<OutcomeCount>,
}

pub async fn stats(db: &Db) -> Result<Stats, QueueError> {
    let since = Utc::now() - chrono::Duration::hours(1);
    Ok(with_conn!(db, |S, c| Stats {
        counts: S::count_by_queue_and_state(c).await?,
        oldest_due_secs: S::oldest_due_age(c).await?.into_iter().collect(),
        last_hour: S::outcomes_since(c, since).await?,
    }))
}

/// Jobs per shown state over all queues (every state present, 0 when none).
pub async fn dashboard_counts(db: &Db) -> Result<BTreeMap<&'static str, i64>, QueueError> {
    let counts = with_conn!(db, |S, c| S::count_by_queue_and_state(c).await?);
    let mut out: BTreeMap<&'static str, i64> = Shown::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    for c in counts {
        if let Some(s) = Shown::parse(&c.state) {
            *out.entry(s.as_str()).or_default() += c.count;
        }
    }
    Ok(out)
}

// ---- metrics: what an attempt that "finished" means is in `storage::Metrics` ----

/// Attempts finished since `since` per outcome, in buckets of `bucket` (0 starts at `since`):
/// a chart of the queue's work.
pub async fn attempts_by_bucket(
    db: &Db,
    since: DateTime<Utc>,
    bucket: Duration,
) -> Result<Vec<BucketCount>, QueueError> {
    let bucket_ms = i64::try_from(bucket.as_millis())
        .ok()
        .filter(|&b| b >= 1)
        .ok_or_else(|| QueueError::Invalid("a bucket must be at least 1 ms".into()))?;
    Ok(with_conn!(db, |S, c| S::attempts_by_bucket(
        c, since, bucket_ms
    )
    .await?))
}

/// Attempts finished since `since`, per queue and outcome (`stats` gives the last hour's).
pub async fn attempts_since(
    db: &Db,
    since: DateTime<Utc>,
) -> Result<Vec<OutcomeCount>, QueueError> {
    Ok(with_conn!(db, |S, c| S::outcomes_since(c, since).await?))
}

/// Rate-limit snoozes since `since` per reason (the reason names the provider), most first.
pub async fn snoozes_since(db: &Db, since: DateTime<Utc>) -> Result<Vec<ReasonCount>, QueueError> {
    Ok(with_conn!(db, |S, c| S::snoozes_since(c, since).await?))
}

/// Seconds the oldest due (pending or failed) job of each queue has waited; queues with no
/// due job are absent.
pub async fn oldest_due_age(db: &Db) -> Result<BTreeMap<String, f64>, QueueError> {
    Ok(with_conn!(db, |S, c| S::oldest_due_age(c).await?)
        .into_iter()
        .collect())
}

/// When the first attempt at or after `since` finished (how long a recovery took).
pub async fn first_finish_since(
    db: &Db,
    since: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, QueueError> {
    Ok(with_conn!(db, |S, c| S::first_finish_since(c, since).await?))
}

/// Jobs of `queue` that will still run or are running (pending, scheduled, failed, running).
pub async fn count_unfinished(db: &Db, queue: &str) -> Result<i64, QueueError> {
    Ok(with_conn!(db, |S, c| S::count_unfinished(c, queue).await?))
}

/// Whether `queue` has a job that will still run or is running; cheap enough to poll under
/// load, where [`count_unfinished`] counts.
pub async fn any_unfinished(db: &Db, queue: &str) -> Result<bool, QueueError> {
    Ok(with_conn!(db, |S, c| S::any_unfinished(c, queue).await?))
}

/// The latest failed (will retry) or dead jobs of `queue`, with their last error, the latest
/// attempt first; with `dedup_keys`, only jobs holding one of them (e.g. the outbound syncs of
/// one integration's issues: `status:<id>`, `assignee:<id>`).
pub async fn recent_failures(
    db: &Db,
    queue: &str,
    dedup_keys: Option<&[String]>,
    limit: i64,
) -> Result<Vec<JobRow>, QueueError> {
    let limit = limit.clamp(1, 10_000);
    Ok(with_conn!(db, |S, c| S::recent_failures(
        c, queue, dedup_keys, limit
    )
    .await?))
}

/// Workers that heartbeat within `within`, newest first.
pub async fn live_workers(db: &Db, within: Duration) -> Result<Vec<WorkerRow>, QueueError> {
    let since = Utc::now() - chrono::Duration::from_std(within).unwrap_or(chrono::Duration::zero());
    Ok(with_conn!(db, |S, c| S::live_workers(c, since).await?))
}

/// A job's saved progress (see [`save_progress`]).
pub async fn find_progress<T: DeserializeOwned>(
    tx: &mut Tx,
    job_id: &str,
) -> Result<Option<T>, QueueError> {
    let json = match tx {
        Tx::Pg(t) => PgStore::find_progress(&mut **t, job_id).await?,
        Tx::Sqlite(t) => SqliteStore::find_progress(&mut **t, job_id).await?,
    };
    json.map(|j| {
        serde_json::from_str(&j)
            .map_err(|e| QueueError::Invalid(format!("the saved progress does not fit: {e}")))
    })
    .transpose()
}

/// Saves a job's progress (e.g. a cursor), so that its next attempt resumes from there.
pub async fn save_progress<T: Serialize>(
    tx: &mut Tx,
    job_id: &str,
    progress: &T,
) -> Result<(), QueueError> {
    let json = serde_json::to_string(progress)
        .map_err(|e| QueueError::Invalid(format!("cannot encode the progress: {e}")))?;
    match tx {
        Tx::Pg(t) => PgStore::save_progress(&mut **t, job_id, &json).await?,
        Tx::Sqlite(t) => SqliteStore::save_progress(&mut **t, job_id, &json).await?,
    }
    Ok(())
}
