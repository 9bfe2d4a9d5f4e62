//! Existing deployments: moves the unfinished jobs of apalis' tables (`apalis.jobs` on
//! Postgres, `Jobs` on SQLite, as apalis 1.0 and our earlier index tuning left them) into the
//! queue's tables, then drops apalis' tables, in one transaction. Finished jobs stay behind
//! (and go with the tables): their history is in the app's own attempt table. Nothing
//! happens when apalis' tables do not exist, so it runs on every `migrate`.

mod postgres;
mod sqlite;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::db::Db;
use crate::error::QueueError;
use crate::registry::Registry;

/// What a move did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Moved {
    /// Unfinished jobs now in the queue's tables.
    pub jobs: u64,
    /// Of those, rows that were not a job envelope: stored dead with the reason.
    pub unreadable: u64,
    /// apalis' tables were there and are dropped.
    pub dropped: bool,
}

/// One unfinished apalis row.
struct OldJob {
    id: String,
    queue: String,
    envelope: Vec<u8>,
    status: String,
    attempts: i32,
    max_attempts: i32,
    run_at: DateTime<Utc>,
    last_result: Option<String>,
    holder: Option<String>,
    dedup_key: Option<String>,
}

/// The queue row it becomes.
struct NewRow {
    id: String,
    queue: String,
    kind: String,
    payload: Vec<u8>,
    state: &'static str,
    run_at: DateTime<Utc>,
    attempts: i32,
    max_attempts: i32,
    dedup_key: Option<String>,
    partition_key: Option<String>,
    last_error: Option<String>,
    traceparent: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    job: String,
    args: serde_json::Value,
    /// The enqueuing span's, when traces were exported; one the queue would refuse is dropped
    /// (the job runs in a new trace) rather than failing the move.
    #[serde(default)]
    traceparent: Option<String>,
}

fn convert<Ctx: Clone + Send + Sync + 'static>(old: OldJob, registry: &Registry<Ctx>) -> NewRow {
    let last_error = old.last_result.as_deref().and_then(|r| {
        let v: serde_json::Value = serde_json::from_str(r).ok()?;
        v.get("Err").and_then(|e| e.as_str()).map(str::to_string)
    });
    let held = matches!(old.status.as_str(), "Queued" | "Running");
    let (kind, payload, state, last_error, traceparent) =
        match serde_json::from_slice::<Envelope>(&old.envelope) {
            Ok(env) => {
                let payload = serde_json::to_vec(&env.args).unwrap_or_default();
                let state = if old.status == "Failed" || (held && old.attempts > 0) {
                    "failed"
                } else {
                    "pending"
                };
                let last_error = if held {
                    Some(format!(
                        "moved from apalis while worker {} held it; it runs again",
                        old.holder.as_deref().unwrap_or("?")
                    ))
                } else {
                    last_error
                };
                let traceparent = env
                    .traceparent
                    .filter(|t| crate::enqueue::check_traceparent(t).is_ok());
                (env.job, payload, state, last_error, traceparent)
            }
            Err(e) => (
                "unknown".to_string(),
                old.envelope,
                "dead",
                Some(format!(
                    "moved from apalis: its payload is not a job envelope ({e})"
                )),
                None,
            ),
        };
    NewRow {
        partition_key: registry.partition_of(&kind, &payload),
        id: old.id,
        queue: old.queue,
        kind,
        payload,
        state,
        run_at: old.run_at,
        attempts: old.attempts.max(0),
        max_attempts: old.max_attempts.max(1),
        dedup_key: old.dedup_key.filter(|_| state != "dead"),
        last_error,
        traceparent,
    }
}

/// Moves apalis' unfinished jobs (if its tables exist) and drops its tables. `registry`
/// gives each moved job its partition.
pub async fn move_jobs<Ctx: Clone + Send + Sync + 'static>(
    db: &Db,
    registry: &Registry<Ctx>,
) -> Result<Moved, QueueError> {
    let moved = match db {
        Db::Pg(p) => postgres::move_jobs(p, |o| convert(o, registry)).await?,
        Db::Sqlite(p) => sqlite::move_jobs(p, |o| convert(o, registry)).await?,
    };
    if moved.dropped {
        tracing::info!(
            jobs = moved.jobs,
            unreadable = moved.unreadable,
            "moved the unfinished jobs from apalis' tables and dropped them"
        );
    }
    Ok(moved)
}
