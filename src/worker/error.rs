//! How a job attempt can fail, and what the queue does about it.

use chrono::{DateTime, Utc};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt later (5xx, timeouts, a database hiccup).
    #[error("{0}")]
    Transient(String),
    /// Will never succeed (401/403/404, a missing mapping, a bad payload): dead at once.
    #[error("{0}")]
    Permanent(String),
    /// The provider asked us to wait: run again at `until` without using up an attempt.
    #[error("rate limited: {reason}")]
    RateLimited {
        reason: String,
        until: DateTime<Utc>,
    },
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => JobError::Permanent(format!("{what} no longer exists")),
            StoreError::BadValue(e) => {
                JobError::Permanent(format!("a value cannot be stored: {e}"))
            }
            other => JobError::Transient(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::from(e).into()
    }
}
