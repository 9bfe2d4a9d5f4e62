//! The queue's errors, and how a job attempt can fail.

use chrono::{DateTime, Utc};

/// An error of the queue itself (storage, bad input to enqueue or to an operator query).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// The caller asked for something the queue refuses (a bad id, an unknown kind, args
    /// that do not fit their kind, a key with a NUL character, …).
    #[error("{0}")]
    Invalid(String),
    #[error("the queue has stopped")]
    Stopped,
}

impl QueueError {
    /// A broken or unreachable database, as opposed to bad input.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, QueueError::Db(e) if crate::db::is_unavailable(e))
    }
}

/// How a job attempt ends when it does not succeed, and so what the queue does next.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt later (5xx, timeouts, a database hiccup): retried with backoff,
    /// dead once the job's attempts are used up.
    #[error("{0}")]
    Transient(String),
    /// Will never succeed (401/403/404, a missing mapping, a bad payload): dead at once.
    #[error("{0}")]
    Permanent(String),
    /// The provider asked us to wait: runs again at `until` without using up an attempt.
    #[error("rate limited: {reason}")]
    RateLimited {
        reason: String,
        until: DateTime<Utc>,
    },
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        JobError::Transient(format!("database error: {e}"))
    }
}

impl From<QueueError> for JobError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Invalid(m) => JobError::Permanent(m),
            other => JobError::Transient(other.to_string()),
        }
    }
}
