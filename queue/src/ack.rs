//! Outcomes, written in batches. apalis' `Acknowledge` layer hands each attempt's result to
//! the [`Acker`], which turns it into an outcome (done, retry with backoff, dead, snooze) and
//! queues it for the batch completer (River's "batch completer"): many outcomes a
//! transaction, one UPDATE for the successes. A slot is free once its outcome is queued, not
//! once it is written; the queue is bounded, so a slow database slows the workers instead of
//! filling memory. A crash loses nothing that matters: an outcome not yet written leaves its
//! job running under a dead worker, and the rescue runs it again (at-least-once, as for any
//! job in flight). Every write is fenced by the job's lease, so a late result of a job that
//! was killed or rescued meanwhile is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use apalis_core::error::BoxDynError;
use apalis_core::task::ExecutionContext;
use apalis_core::worker::ext::ack::Acknowledge;
use backon::{ExponentialBuilder, Retryable};
use chrono::Utc;
use futures::future::BoxFuture;
use sqlx::Pool;
use tokio::sync::{mpsc, oneshot};

use crate::backend::Lease;
use crate::db::Db;
use crate::error::{JobError, QueueError};
use crate::model::State;
use crate::runtime::Shared;
use crate::storage::{Finish, Outcome, Storage, postgres::PgStore, sqlite::SqliteStore};

struct Pending {
    finish: Finish,
    kind: Arc<str>,
    queue: Arc<str>,
    attempt: i32,
}

enum Msg {
    Finish(Box<Pending>),
    /// Answered once everything queued before it is written or given up.
    Flush(oneshot::Sender<()>),
}

/// The process's batch writer of outcomes.
#[derive(Clone)]
pub(crate) struct Completer {
    tx: mpsc::Sender<Msg>,
}

impl Completer {
    pub fn start(db: Db, batch: usize, linger: Duration) -> Completer {
        let batch = batch.clamp(1, 10_000);
        let (tx, rx) = mpsc::channel(4 * batch);
        tokio::spawn(run(db, rx, batch, linger));
        Completer { tx }
    }

    async fn send(&self, p: Pending) -> Result<(), QueueError> {
        self.tx
            .send(Msg::Finish(Box::new(p)))
            .await
            .map_err(|_| QueueError::Stopped)
    }

    /// Waits until every outcome queued so far is written (or given up after retries).
    pub async fn flush(&self) {
        let (reply, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(reply)).await.is_ok() {
            let _ = done.await;
        }
    }
}

async fn run(db: Db, mut rx: mpsc::Receiver<Msg>, max: usize, linger: Duration) {
    let mut msgs = Vec::with_capacity(max);
    // Take what is waiting, and what comes within `linger` (unless a flush waits): each
    // transaction costs a WAL flush, so a few milliseconds turn many small batches into few
    // large ones. Slots are free already; only the write waits.
    while rx.recv_many(&mut msgs, max).await > 0 {
        let until = tokio::time::Instant::now() + linger;
        while msgs.len() < max && !msgs.iter().any(|m| matches!(m, Msg::Flush(_))) {
            let room = max - msgs.len();
            match tokio::time::timeout_at(until, rx.recv_many(&mut msgs, room)).await {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        let mut batch = Vec::with_capacity(msgs.len());
        let mut flushes = Vec::new();
        for m in msgs.drain(..) {
            match m {
                Msg::Finish(p) => batch.push(*p),
                Msg::Flush(f) => flushes.push(f),
            }
        }
        if !batch.is_empty() {
            write_logged(&db, &batch).await;
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}

/// Writes a batch, retrying a few times over ~3 s (a failover, a dropped connection). Given
/// up, its jobs stay running under their workers and are rescued once those stop.
async fn write_logged(db: &Db, batch: &[Pending]) {
    let done: Vec<&Finish> = batch
        .iter()
        .filter(|p| matches!(p.finish.outcome, Outcome::Done))
        .map(|p| &p.finish)
        .collect();
    let other: Vec<&Pending> = batch
        .iter()
        .filter(|p| !matches!(p.finish.outcome, Outcome::Done))
        .collect();
    let other_f: Vec<&Finish> = other.iter().map(|p| &p.finish).collect();
    let retry = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(1))
        .with_max_times(4)
        .with_jitter();
    let write = || async {
        match db {
            Db::Pg(p) => write_batch::<PgStore>(p, &done, &other_f).await,
            Db::Sqlite(p) => write_batch::<SqliteStore>(p, &done, &other_f).await,
        }
    };
    let (held_done, held_other) = match write.retry(retry).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(jobs = batch.len(), error = %e, "cannot record job outcomes; they will be rescued when their workers stop");
            return;
        }
    };
    let mut written = vec![None; batch.len()];
    let done_pos: Vec<usize> = (0..batch.len())
        .filter(|&i| matches!(batch[i].finish.outcome, Outcome::Done))
        .collect();
    let other_pos: Vec<usize> = (0..batch.len())
        .filter(|&i| !matches!(batch[i].finish.outcome, Outcome::Done))
        .collect();
    for i in held_done {
        if let Some(&p) = done_pos.get(i) {
            written[p] = Some(State::Done);
        }
    }
    for (i, state) in held_other {
        if let Some(&p) = other_pos.get(i) {
            written[p] = Some(state);
        }
    }
    for (p, state) in batch.iter().zip(written) {
        report(p, state);
    }
}

async fn write_batch<S: Storage>(
    pool: &Pool<S::Db>,
    done: &[&Finish],
    other: &[&Finish],
) -> sqlx::Result<(Vec<usize>, Vec<(usize, State)>)> {
    if other.is_empty() {
        // The common case is one autocommitted statement.
        let mut c = pool.acquire().await?;
        return Ok((S::finish_done(&mut c, done).await?, Vec::new()));
    }
    let mut tx = S::begin_write(pool).await?;
    let d = if done.is_empty() {
        Vec::new()
    } else {
        S::finish_done(&mut tx, done).await?
    };
    let o = S::finish_other(&mut tx, other).await?;
    tx.commit().await?;
    Ok((d, o))
}

fn report(p: &Pending, state: Option<State>) {
    let f = &p.finish;
    let Some(state) = state else {
        tracing::warn!(job_id = f.lease.id, job = %p.kind, "job was rescued or killed while it ran; its outcome is dropped");
        return;
    };
    let label = match (&f.outcome, state) {
        (Outcome::Done, _) => "done",
        (Outcome::Snooze { .. }, _) => "snoozed",
        (_, State::Dead) => "dead",
        _ => "retry",
    };
    let secs = (f.finished_at - f.started_at)
        .num_microseconds()
        .unwrap_or(0) as f64
        / 1e6;
    metrics::histogram!("issuesync_job_duration_seconds", "job" => p.kind.to_string()).record(secs);
    metrics::counter!("issuesync_job_attempts_total", "job" => p.kind.to_string(), "queue" => p.queue.to_string(), "outcome" => label)
        .increment(1);
    match f.outcome.error() {
        Some(e) => {
            tracing::warn!(job_id = f.lease.id, job = %p.kind, attempt = p.attempt, outcome = label, error = e, "job attempt failed")
        }
        None => {
            tracing::debug!(job_id = f.lease.id, job = %p.kind, attempt = p.attempt, "job done")
        }
    }
}

/// Turns an attempt's result into an outcome and queues it; the acknowledgement of every
/// task of a [`QueueBackend`](crate::QueueBackend) worker.
#[derive(Clone)]
pub struct Acker {
    shared: Arc<Shared>,
    queue: Arc<str>,
    acks: Arc<AtomicUsize>,
}

impl Acker {
    pub(crate) fn new(shared: Arc<Shared>, queue: Arc<str>, acks: Arc<AtomicUsize>) -> Acker {
        Acker {
            shared,
            queue,
            acks,
        }
    }
}

/// What the result of an attempt means for its job.
fn outcome(res: &Result<(), BoxDynError>, attempt: i32, shared: &Shared) -> Outcome {
    let now = Utc::now();
    let retry = |error: String| Outcome::Retry {
        error,
        at: now + shared.config.backoff(attempt),
    };
    match res {
        Ok(()) => Outcome::Done,
        Err(e) => match e.downcast_ref::<JobError>() {
            Some(JobError::Transient(m)) => retry(m.clone()),
            Some(JobError::Permanent(m)) => Outcome::Dead { reason: m.clone() },
            Some(JobError::RateLimited { reason, until }) => Outcome::Snooze {
                reason: format!("rate limited: {reason}"),
                until: (*until).max(now),
            },
            // Anything else (apalis' own errors) is worth another attempt.
            None => retry(e.to_string()),
        },
    }
}

impl Acknowledge<()> for Acker {
    type Error = QueueError;
    type Future = BoxFuture<'static, Result<(), QueueError>>;

    fn ack(&mut self, res: &Result<(), BoxDynError>, ctx: &ExecutionContext) -> Self::Future {
        let Some(lease) = ctx.data().get::<Lease>().cloned() else {
            return Box::pin(async { Err(QueueError::Invalid("a task without a lease".into())) });
        };
        let finished_at = Utc::now();
        let pending = Pending {
            finish: Finish {
                outcome: outcome(res, lease.attempt, &self.shared),
                started_at: lease.started_at(finished_at),
                finished_at,
                lease: lease.job,
            },
            kind: lease.kind,
            queue: self.queue.clone(),
            attempt: lease.attempt,
        };
        let completer = self.shared.completer.clone();
        let acks = self.acks.clone();
        acks.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            let r = completer.send(pending).await;
            acks.fetch_sub(1, Ordering::Relaxed);
            r
        })
    }
}
