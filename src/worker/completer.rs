//! Batched completion of successful attempts (River's "batch completer"): handlers that
//! finish together are written in one transaction instead of one each. A handler waits
//! for its batch to commit before its slot is freed, so nothing is reported done that is
//! not durable; a crash loses only unwritten finishes, whose jobs are rescued and re-run
//! (at-least-once, as for any in-flight job). Failures keep the one-by-one path.

use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot};

use crate::db::Db;
use crate::store::StoreError;
use crate::store::jobs::{self, DoneJob};

/// Most finishes written in one transaction.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<bool, String>>;

/// One per process and database, started on first use.
#[derive(Clone, Default)]
pub struct Completer(Arc<OnceLock<mpsc::UnboundedSender<(DoneJob, Reply)>>>);

impl Completer {
    /// Writes `done`; true when the worker still held the job (else it was rescued or
    /// killed meanwhile, and the finish is dropped).
    pub async fn complete(&self, db: &Db, done: DoneJob) -> Result<bool, StoreError> {
        let sender = self.0.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run(db.clone(), rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        if sender.send((done, reply)).is_err() {
            return Err(StoreError::Conflict("the completer has stopped".into()));
        }
        match answer.await {
            Ok(Ok(held)) => Ok(held),
            Ok(Err(e)) => Err(StoreError::Conflict(e)),
            Err(_) => Err(StoreError::Conflict("the completer has stopped".into())),
        }
    }
}

async fn run(db: Db, mut rx: mpsc::UnboundedReceiver<(DoneJob, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Take whatever is waiting: under load batches grow by themselves, idle it is one.
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (done, replies): (Vec<DoneJob>, Vec<Reply>) = batch.drain(..).unzip();
        let result = write(&db, &done).await;
        for (d, reply) in done.iter().zip(replies) {
            let _ = reply.send(match &result {
                Ok(held) => Ok(held.contains(&d.id)),
                Err(e) => Err(e.to_string()),
            });
        }
    }
}

async fn write(db: &Db, done: &[DoneJob]) -> Result<Vec<String>, StoreError> {
    let mut tx = db.begin().await?;
    let held = jobs::finish_done_jobs(&mut tx, done).await?;
    tx.commit().await?;
    Ok(held)
}
