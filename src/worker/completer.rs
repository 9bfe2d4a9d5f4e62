//! Batched completion of successful attempts (River's "batch completer"): finishes are queued
//! and written many to a transaction, one UPDATE and one INSERT on Postgres. A handler's slot
//! is freed once its finish is queued, not once it is written, so a fast queue is not held
//! to one commit round trip per job. Crash safety is unchanged: a finish not yet written
//! leaves its job `Running` under this worker, and a dead worker's jobs are rescued and run
//! again (at-least-once, as for any job in flight). At shutdown the queue is flushed.
//! Failures keep the one-by-one path.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::sync::{mpsc, oneshot};

use crate::db::Db;
use crate::store::StoreError;
use crate::store::jobs::{self, DoneJob};

/// Most finishes written in one transaction.
const MAX_BATCH: usize = 512;
/// Finishes queued before handlers wait for the writer (backpressure).
const MAX_QUEUED: usize = 4 * MAX_BATCH;

enum Msg {
    Done(DoneJob),
    /// Answered once everything queued before it is written or given up.
    Flush(oneshot::Sender<()>),
}

/// One per process and database, started on first use.
#[derive(Clone, Default)]
pub struct Completer(Arc<OnceLock<mpsc::Sender<Msg>>>);

impl Completer {
    fn sender(&self, db: &Db) -> &mpsc::Sender<Msg> {
        self.0.get_or_init(|| {
            let (tx, rx) = mpsc::channel(MAX_QUEUED);
            tokio::spawn(run(db.clone(), rx));
            tx
        })
    }

    /// Queues `done` for the next batch; waits only while the queue is full.
    pub async fn complete(&self, db: &Db, done: DoneJob) -> Result<(), StoreError> {
        self.sender(db)
            .send(Msg::Done(done))
            .await
            .map_err(|_| StoreError::Conflict("the completer has stopped".into()))
    }

    /// Waits until every finish queued so far is written (or given up after retries).
    pub async fn flush(&self) {
        let Some(sender) = self.0.get() else { return };
        let (reply, done) = oneshot::channel();
        if sender.send(Msg::Flush(reply)).await.is_ok() {
            let _ = done.await;
        }
    }
}

async fn run(db: Db, mut rx: mpsc::Receiver<Msg>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Take whatever is waiting: under load batches grow by themselves, idle it is one.
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut done = Vec::with_capacity(batch.len());
        let mut flushes = Vec::new();
        for m in batch.drain(..) {
            match m {
                Msg::Done(d) => done.push(d),
                Msg::Flush(f) => flushes.push(f),
            }
        }
        if !done.is_empty() {
            write_logged(&db, &done).await;
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}

/// Writes a batch, retrying a few times over ~3 s (a failover, a dropped connection).
/// Given up, its jobs stay `Running` and are rescued once this worker stops.
async fn write_logged(db: &Db, done: &[DoneJob]) {
    let retry = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(1))
        .with_max_times(4)
        .with_jitter();
    match (|| write(db, done)).retry(retry).await {
        Ok(held) => {
            for d in done {
                if held.contains(&d.id) {
                    tracing::debug!(
                        job_id = d.id,
                        job = d.job_name,
                        attempt = d.attempt,
                        "job done"
                    );
                } else {
                    tracing::warn!(
                        job_id = d.id,
                        job = d.job_name,
                        "job was rescued or killed while it ran; its outcome is dropped"
                    );
                }
            }
        }
        Err(e) => tracing::error!(
            jobs = done.len(),
            error = %e,
            "cannot record job outcomes; they will be rescued when this worker stops"
        ),
    }
}

async fn write(db: &Db, done: &[DoneJob]) -> Result<HashSet<String>, StoreError> {
    let mut tx = db.begin().await?;
    let held = jobs::finish_done_jobs(&mut tx, done).await?;
    tx.commit().await?;
    Ok(held)
}
