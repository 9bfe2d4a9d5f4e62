//! What a job handler gets (its context) and how an attempt can fail, which tells the
//! queue what to do next. The worker runs the handlers; they live in `sync`.

use chrono::{DateTime, Utc};

use crate::providers::http::ApiError;
use crate::store::StoreError;
use crate::sync::Services;

/// What a handler gets besides its payload.
#[derive(Clone)]
pub struct JobCtx {
    pub state: Services,
    pub job_id: String,
    /// 1 on the first attempt.
    pub attempt: i32,
}

impl JobCtx {
    pub fn new(state: Services, job_id: String, attempt: i32) -> JobCtx {
        JobCtx {
            state,
            job_id,
            attempt,
        }
    }
}

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

/// How a provider failure ends the attempt (the provider layer knows nothing of jobs).
impl From<ApiError> for JobError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Transient(m) => JobError::Transient(m),
            ApiError::Permanent { status, message } => {
                JobError::Permanent(format!("provider answered {status}: {message}"))
            }
            ApiError::RateLimited { until, by } => JobError::RateLimited {
                reason: match by {
                    Some(by) => format!("{by} asked us to slow down"),
                    None => "provider rate limit".into(),
                },
                until,
            },
        }
    }
}

/// The queue's view of an attempt's end is the same three outcomes.
impl From<JobError> for issuesync_queue::JobError {
    fn from(e: JobError) -> Self {
        use issuesync_queue::JobError as Q;
        match e {
            JobError::Transient(m) => Q::Transient(m),
            JobError::Permanent(m) => Q::Permanent(m),
            JobError::RateLimited { reason, until } => Q::RateLimited { reason, until },
        }
    }
}

impl From<issuesync_queue::JobError> for JobError {
    fn from(e: issuesync_queue::JobError) -> Self {
        use issuesync_queue::JobError as Q;
        match e {
            Q::Transient(m) => JobError::Transient(m),
            Q::Permanent(m) => JobError::Permanent(m),
            Q::RateLimited { reason, until } => JobError::RateLimited { reason, until },
        }
    }
}

/// Makes `handler` (an `async fn(Job, &JobCtx) -> Result<(), JobError>`) the one handler of
/// job kind `$job` for the registry: written next to the handler, so that a grep for the
/// kind lands on it.
#[macro_export]
macro_rules! handles {
    ($job:ty => $handler:path) => {
        impl issuesync_queue::RunJob<$crate::sync::JobCtx> for $job {
            async fn run(
                self,
                ctx: &$crate::sync::JobCtx,
                _: &issuesync_queue::JobMeta,
            ) -> Result<(), issuesync_queue::JobError> {
                $handler(self, ctx).await.map_err(Into::into)
            }
        }
    };
}
