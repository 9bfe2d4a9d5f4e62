//! The queue's public row types and states.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A job's stored state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting to run (at `run_at`; before it, operators see it as `scheduled`).
    Pending,
    /// Held by a worker.
    Running,
    /// Its last attempt failed; it will be retried at `run_at`.
    Failed,
    /// Given up: out of attempts, a permanent error, killed, or a row it cannot run.
    Dead,
    Done,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Pending,
        State::Running,
        State::Failed,
        State::Dead,
        State::Done,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Running => "running",
            State::Failed => "failed",
            State::Dead => "dead",
            State::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Will it still run (pending, running or failed)?
    pub fn is_unfinished(self) -> bool {
        matches!(self, State::Pending | State::Running | State::Failed)
    }
}

/// The states operators filter on: the stored ones, with `pending` split into `pending`
/// (due) and `scheduled` (not yet due).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shown {
    Pending,
    Scheduled,
    Running,
    Failed,
    Dead,
    Done,
}

impl Shown {
    pub const ALL: [Shown; 6] = [
        Shown::Pending,
        Shown::Scheduled,
        Shown::Running,
        Shown::Failed,
        Shown::Dead,
        Shown::Done,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Shown::Pending => "pending",
            Shown::Scheduled => "scheduled",
            Shown::Running => "running",
            Shown::Failed => "failed",
            Shown::Dead => "dead",
            Shown::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<Shown> {
        Shown::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The stored state, and whether it must be due (`Some(true)`) or not yet (`Some(false)`).
    pub(crate) fn stored(self) -> (State, Option<bool>) {
        match self {
            Shown::Pending => (State::Pending, Some(true)),
            Shown::Scheduled => (State::Pending, Some(false)),
            Shown::Running => (State::Running, None),
            Shown::Failed => (State::Failed, None),
            Shown::Dead => (State::Dead, None),
            Shown::Done => (State::Done, None),
        }
    }
}

/// What an enqueue did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", content = "id", rename_all = "snake_case")]
pub enum Enqueued {
    New(String),
    /// An unfinished job with the same dedup key exists; nothing was enqueued.
    Duplicate(String),
    /// A coalescing kind: the waiting job with the same key took the new payload.
    Coalesced(String),
}

impl Enqueued {
    pub fn id(&self) -> &str {
        match self {
            Enqueued::New(id) | Enqueued::Duplicate(id) | Enqueued::Coalesced(id) => id,
        }
    }
}

/// One job, as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct JobRow {
    pub id: String,
    pub queue: String,
    pub kind: String,
    /// `pending`, `scheduled`, `running`, `failed`, `dead` or `done`.
    pub state: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub snoozes: i32,
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// The worker of the running or last attempt.
    pub worker: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub dedup_key: Option<String>,
    pub partition_key: Option<String>,
    pub last_error: Option<String>,
    /// The W3C `traceparent` of the span that enqueued it.
    pub traceparent: Option<String>,
    #[serde(skip)]
    pub payload: Vec<u8>,
}

impl JobRow {
    /// The payload as JSON when it is JSON, else as (lossy) text.
    pub fn payload_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&self.payload).into_owned())
        })
    }
}

/// One attempt of a job, for `jobs show`.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRow {
    pub attempt: i32,
    /// `done`, `retry`, `dead`, `snoozed` or `lost` (its worker died while running it).
    pub outcome: String,
    pub error: Option<String>,
    pub worker: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
}

/// A live worker (a queue in a worker process), from its heartbeat.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerRow {
    pub id: String,
    pub queue: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
}

/// Jobs per queue and shown state.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct QueueCount {
    pub queue: String,
    pub state: String,
    pub count: i64,
}

/// Attempts finished in one bucket of a chart, per outcome.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BucketCount {
    /// 0 = the bucket that starts at the chart's `since`.
    pub bucket: i64,
    /// `done`, `retry`, `dead`, `snoozed` or `lost`.
    pub outcome: String,
    pub count: i64,
}

/// How often something happened for one reason (e.g. snoozes per rate-limit reason).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReasonCount {
    pub reason: Option<String>,
    pub count: i64,
}

/// Attempts finished in a window, per queue and outcome.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OutcomeCount {
    pub queue: String,
    pub outcome: String,
    pub count: i64,
}
