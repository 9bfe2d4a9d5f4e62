//! Enqueue inside the caller's transaction. What is written is checked first: the id is a
//! ULID, names and keys are short text without NUL characters, the payload is the job's JSON.

use chrono::{DateTime, Utc};
use issuesync_jobs::Job;

use crate::db::Tx;
use crate::error::QueueError;
use crate::model::Enqueued;
use crate::storage::{Conn, NewRow, Storage, postgres::PgStore, sqlite::SqliteStore};

/// A job ready to be written: everything the queue stores about it.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub queue: String,
    pub kind: String,
    /// The JSON arguments.
    pub payload: Vec<u8>,
    pub max_attempts: i32,
    /// `None`: now.
    pub run_at: Option<DateTime<Utc>>,
    pub dedup_key: Option<String>,
    pub partition_key: Option<String>,
    /// Replace a waiting holder's payload; queue behind a running one.
    pub coalesce: bool,
    /// The W3C `traceparent` of the enqueuing span; the handler gets it in
    /// [`JobMeta::traceparent`](crate::JobMeta) to continue that trace.
    pub traceparent: Option<String>,
}

impl NewJob {
    /// The row for a typed job, with a new id.
    pub fn of<J: Job>(job: &J) -> Result<NewJob, QueueError> {
        let payload = serde_json::to_vec(job)
            .map_err(|e| QueueError::Invalid(format!("cannot encode {}: {e}", J::JOB_NAME)))?;
        Ok(NewJob {
            id: ulid::Ulid::generate().to_string(),
            queue: J::QUEUE.to_string(),
            kind: J::JOB_NAME.to_string(),
            payload,
            max_attempts: i32::try_from(J::MAX_ATTEMPTS).unwrap_or(i32::MAX),
            run_at: None,
            dedup_key: job.dedup_key(),
            partition_key: job.partition_key(),
            coalesce: J::COALESCE,
            traceparent: None,
        })
    }

    pub fn run_at(mut self, at: Option<DateTime<Utc>>) -> Self {
        self.run_at = at;
        self
    }

    /// The enqueuing span's W3C `traceparent` (checked by [`NewJob::validate`]).
    pub fn traceparent(mut self, traceparent: Option<String>) -> Self {
        self.traceparent = traceparent;
        self
    }

    /// Refuses what the queue must never store.
    pub fn validate(&self) -> Result<(), QueueError> {
        if ulid::Ulid::from_string(&self.id).is_err() {
            return Err(QueueError::Invalid(format!(
                "job id {:?} is not a ULID",
                self.id
            )));
        }
        name("queue", &self.queue)?;
        name("job kind", &self.kind)?;
        if let Some(k) = &self.dedup_key {
            key("dedup key", k)?;
        }
        if let Some(k) = &self.partition_key {
            key("partition key", k)?;
        }
        if let Some(t) = &self.traceparent {
            check_traceparent(t)?;
        }
        if !(1..=1000).contains(&self.max_attempts) {
            return Err(QueueError::Invalid(format!(
                "max attempts {} is not between 1 and 1000",
                self.max_attempts
            )));
        }
        serde_json::from_slice::<serde::de::IgnoredAny>(&self.payload)
            .map_err(|e| QueueError::Invalid(format!("the payload is not JSON: {e}")))?;
        Ok(())
    }
}

fn name(what: &str, v: &str) -> Result<(), QueueError> {
    let ok = !v.is_empty()
        && v.len() <= 100
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(QueueError::Invalid(format!(
            "{what} {v:?} must be 1 to 100 letters, digits, '_', '-' or '.'"
        )))
    }
}

/// The longest `traceparent` stored: version 00 is exactly 55 characters.
const TRACEPARENT_MAX: usize = 55;

/// A `traceparent` the queue stores: 1 to 55 printable ASCII characters. Its syntax is the
/// tracer's business (a malformed one starts a new trace), but its size and bytes are ours.
pub(crate) fn check_traceparent(t: &str) -> Result<(), QueueError> {
    if t.is_empty() || t.len() > TRACEPARENT_MAX || !t.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(QueueError::Invalid(format!(
            "traceparent {t:?} must be 1 to {TRACEPARENT_MAX} printable ASCII characters"
        )));
    }
    Ok(())
}

fn key(what: &str, v: &str) -> Result<(), QueueError> {
    if v.is_empty() || v.len() > 500 || v.contains('\0') {
        return Err(QueueError::Invalid(format!(
            "{what} must be 1 to 500 bytes without NUL characters"
        )));
    }
    Ok(())
}

/// Enqueues `job` to run now, in the caller's transaction.
pub async fn enqueue<J: Job>(tx: &mut Tx, job: &J) -> Result<Enqueued, QueueError> {
    enqueue_job(tx, NewJob::of(job)?).await
}

/// Enqueues `job` to run at `run_at` (now when `None`).
pub async fn enqueue_at<J: Job>(
    tx: &mut Tx,
    job: &J,
    run_at: Option<DateTime<Utc>>,
) -> Result<Enqueued, QueueError> {
    enqueue_job(tx, NewJob::of(job)?.run_at(run_at)).await
}

/// Enqueues `job` under an id the caller chose (to reference it in a row written in the same
/// transaction).
pub async fn enqueue_with_id<J: Job>(
    tx: &mut Tx,
    job: &J,
    id: &str,
) -> Result<Enqueued, QueueError> {
    let mut new = NewJob::of(job)?;
    new.id = id.to_string();
    enqueue_job(tx, new).await
}

/// Enqueues a prepared job (the registry's untyped enqueue uses this).
pub async fn enqueue_job(tx: &mut Tx, job: NewJob) -> Result<Enqueued, QueueError> {
    job.validate()?;
    let r = match tx {
        Tx::Pg(t) => insert_deduped::<PgStore>(&mut **t, &job).await?,
        Tx::Sqlite(t) => insert_deduped::<SqliteStore>(&mut **t, &job).await?,
    };
    let result = match r {
        Enqueued::New(_) => "new",
        Enqueued::Duplicate(_) => "duplicate",
        Enqueued::Coalesced(_) => "coalesced",
    };
    metrics::counter!("issuesync_jobs_enqueued_total", "job" => job.kind.clone(), "result" => result)
        .increment(1);
    Ok(r)
}

/// Dedup and coalescing, over any storage. An unfinished job with the same key makes this a
/// no-op, except for coalescing kinds: a waiting holder takes the new payload, and a running
/// one gives up the key, so the new job queues behind it. A holder that finishes between two
/// statements just means another round.
async fn insert_deduped<S: Storage>(c: &mut Conn<S>, job: &NewJob) -> Result<Enqueued, QueueError> {
    let row = NewRow {
        id: &job.id,
        queue: &job.queue,
        kind: &job.kind,
        payload: &job.payload,
        max_attempts: job.max_attempts,
        run_at: job.run_at,
        dedup_key: job.dedup_key.as_deref(),
        partition_key: job.partition_key.as_deref(),
        traceparent: job.traceparent.as_deref(),
    };
    let Some(key) = row.dedup_key else {
        S::insert_job(c, &row).await?;
        return Ok(Enqueued::New(job.id.clone()));
    };
    for _ in 0..3 {
        if job.coalesce {
            if let Some(id) = S::replace_waiting_payload(c, &row).await? {
                return Ok(Enqueued::Coalesced(id));
            }
            S::release_running_key(c, row.queue, key).await?;
        }
        if S::insert_job(c, &row).await? {
            return Ok(Enqueued::New(job.id.clone()));
        }
        if !job.coalesce
            && let Some(id) = S::find_key_holder(c, row.queue, key).await?
        {
            return Ok(Enqueued::Duplicate(id));
        }
    }
    Err(QueueError::Invalid(format!(
        "the dedup key {key:?} of queue {} kept changing hands; try again",
        row.queue
    )))
}

/// Postgres: a job inserted in the same statement as a preceding row, for a hot path that
/// cannot afford BEGIN, two INSERTs and COMMIT (four round trips where this is one). The
/// statement is written by [`pg_enqueue_after!`](crate::pg_enqueue_after), binds this job as
/// `$1`–`$9` with [`AfterInsert::bind`], and the caller's own binds follow from `$10`.
#[derive(Debug, Clone)]
pub struct AfterInsert {
    id: String,
    queue: &'static str,
    kind: &'static str,
    args: serde_json::Value,
    field: &'static str,
    max_attempts: i32,
    dedup_prefix: Option<String>,
    partition_key: Option<String>,
    traceparent: Option<String>,
}

impl AfterInsert {
    /// `job`'s arguments, with `field` set to the new row's `id`; its dedup key (if
    /// `dedup_prefix`) is the prefix followed by that id, so it is new by construction.
    pub fn of<J: Job>(
        job: &J,
        id: &str,
        field: &'static str,
        dedup_prefix: Option<String>,
    ) -> Result<AfterInsert, QueueError> {
        let args = serde_json::to_value(job)
            .map_err(|e| QueueError::Invalid(format!("cannot encode {}: {e}", J::JOB_NAME)))?;
        let check = NewJob {
            id: id.to_string(),
            dedup_key: dedup_prefix.clone().map(|p| format!("{p}0")),
            ..NewJob::of(job)?
        };
        check.validate()?;
        Ok(AfterInsert {
            id: id.to_string(),
            queue: J::QUEUE,
            kind: J::JOB_NAME,
            args,
            field,
            max_attempts: check.max_attempts,
            dedup_prefix,
            partition_key: check.partition_key,
            traceparent: None,
        })
    }

    /// The enqueuing span's W3C `traceparent`; refused as [`NewJob::validate`] refuses it.
    pub fn traceparent(mut self, traceparent: Option<String>) -> Result<AfterInsert, QueueError> {
        if let Some(t) = &traceparent {
            check_traceparent(t)?;
        }
        self.traceparent = traceparent;
        Ok(self)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Binds `$1`–`$9` of a [`pg_enqueue_after!`](crate::pg_enqueue_after) statement.
    pub fn bind<'q, O>(
        &'q self,
        q: sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
        q.bind(&self.id)
            .bind(self.queue)
            .bind(self.kind)
            .bind(sqlx::types::Json(&self.args))
            .bind(self.field)
            .bind(self.max_attempts)
            .bind(self.dedup_prefix.as_deref())
            .bind(self.partition_key.as_deref())
            .bind(self.traceparent.as_deref())
    }
}

/// Postgres: one statement that runs the caller's `INSERT … RETURNING id` (named `src`) and,
/// when it inserted a row, inserts the job of an [`AfterInsert`] (binds `$1`–`$9`) whose
/// arguments get that row's id; `$tail` is the statement's final `SELECT`. The caller's binds
/// start at `$10`. The job-insert SQL lives only here.
#[macro_export]
macro_rules! pg_enqueue_after {
    ($source:literal, $tail:literal) => {
        concat!(
            "WITH src AS (",
            $source,
            "), queue_job AS (INSERT INTO queue_jobs \
             (id, queue, kind, payload, max_attempts, dedup_key, partition_key, traceparent) \
             SELECT $1, $2, $3, convert_to(jsonb_set($4::jsonb, ARRAY[$5::text], to_jsonb(src.id))::text, 'UTF8'), \
             $6, $7 || src.id, $8, $9 FROM src) ",
            $tail
        )
    };
}
