//! Our storage as an apalis 1.0 [`Backend`]: one per worker (a queue in a process). It
//! fetches, in one statement, as many due jobs as the worker has free slots (up to
//! `fetch_batch_size` when that is larger: the prefetch bound), sleeps until a wake-up
//! (LISTEN/NOTIFY, the SQLite update hook) or the safety-net poll, and at shutdown hands
//! unstarted jobs back without charging an attempt. Outcomes are written by the batch
//! completer through apalis' `Acknowledge` layer (`ack.rs`).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::backend::finalize::Ephemeral;
use apalis_core::backend::{Backend, BackendConfig};
use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::task_id::{RandomId, TaskId};
use apalis_core::worker::context::WorkerContext;
use apalis_core::worker::ext::ack::AcknowledgeLayer;
use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

use crate::ack::Acker;
use crate::db::Db;
use crate::error::QueueError;
use crate::runtime::Shared;
use crate::storage::{Cursor, Fetched, LeaseRef, Storage, postgres::PgStore, sqlite::SqliteStore};

/// A fetched job, as the worker's service receives it.
#[derive(Debug)]
pub struct FetchedJob(pub(crate) Fetched);

impl FetchedJob {
    pub fn id(&self) -> &str {
        &self.0.lease.id
    }

    pub fn kind(&self) -> &str {
        &self.0.kind
    }
}

/// What the acknowledgement needs to write an outcome under the right lease; carried in the
/// task's extensions.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    pub job: LeaseRef,
    pub worker: Arc<str>,
    pub kind: Arc<str>,
    /// 1-based.
    pub attempt: i32,
    started_ms: Arc<AtomicI64>,
}

impl Lease {
    pub fn mark_started(&self) {
        self.started_ms
            .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    pub fn started_at(&self, or: DateTime<Utc>) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.started_ms.load(Ordering::Relaxed))
            .filter(|t| t.timestamp_millis() > 0)
            .unwrap_or(or)
    }
}

type FetchFuture = BoxFuture<'static, Result<Vec<Fetched>, sqlx::Error>>;

enum Phase {
    New,
    Registering(BoxFuture<'static, Result<(), sqlx::Error>>),
    Ready,
}

pub struct QueueBackend {
    shared: Arc<Shared>,
    queue: Arc<str>,
    concurrency: usize,
    /// Most jobs held at once, running and fetched.
    hold: usize,
    worker: Option<Arc<str>>,
    phase: Phase,
    buffer: VecDeque<Fetched>,
    /// The fetch in flight, and how many jobs it asked for.
    fetch: Option<(usize, FetchFuture)>,
    /// The last fetch was full: fetch again as soon as a slot is free.
    more: bool,
    /// Where the last full fetch ended (see [`Cursor`]).
    cursor: Option<Cursor>,
    wake: mpsc::Receiver<()>,
    tick: Pin<Box<tokio::time::Sleep>>,
    poll_every: Duration,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    failures: u32,
    /// Outcomes being handed to the completer (they hold a slot until queued).
    acks: Arc<AtomicUsize>,
    close: Option<BoxFuture<'static, ()>>,
    closed: bool,
}

impl QueueBackend {
    pub(crate) fn new(shared: Arc<Shared>, queue: &str, concurrency: usize) -> QueueBackend {
        let concurrency = concurrency.max(1);
        let postgres = matches!(shared.db, Db::Pg(_));
        let poll_every = shared.config.poll_interval(postgres);
        let wake = shared.subscribe(queue);
        QueueBackend {
            hold: concurrency.max(shared.config.fetch_batch_size),
            queue: Arc::from(queue),
            concurrency,
            worker: None,
            phase: Phase::New,
            buffer: VecDeque::new(),
            fetch: None,
            more: true,
            cursor: None,
            wake,
            tick: Box::pin(tokio::time::sleep(poll_every)),
            poll_every,
            pause: None,
            failures: 0,
            acks: Arc::new(AtomicUsize::new(0)),
            close: None,
            closed: false,
            shared,
        }
    }

    pub fn queue(&self) -> &str {
        &self.queue
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// After a database error: wait a growing pause (50 ms … 2 s) before trying again.
    fn pause_after_error(&mut self, what: &str, e: &sqlx::Error) {
        self.failures += 1;
        let delay = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(2))
            .with_jitter()
            .without_max_times()
            .build()
            .nth(self.failures.min(16) as usize)
            .unwrap_or(Duration::from_secs(2));
        tracing::warn!(queue = %self.queue, error = %e, pause_ms = delay.as_millis() as u64, "cannot {what}; trying again");
        self.pause = Some(Box::pin(tokio::time::sleep(delay)));
    }

    fn start_fetch(&mut self, n: usize) {
        let db = self.shared.db.clone();
        let queue = self.queue.clone();
        let worker = self.worker.clone().unwrap_or_else(|| Arc::from("?"));
        let limit = n as i64;
        let cursor = self.cursor.clone();
        let fut = async move {
            let after = cursor.as_ref();
            match &db {
                Db::Pg(p) => {
                    let mut c = p.acquire().await?;
                    PgStore::fetch_due_jobs(&mut c, &queue, &worker, limit, after).await
                }
                Db::Sqlite(p) => {
                    let mut c = p.acquire().await?;
                    SqliteStore::fetch_due_jobs(&mut c, &queue, &worker, limit, after).await
                }
            }
        };
        self.fetch = Some((n, fut.boxed()));
    }

    fn task(&self, job: Fetched) -> Task<FetchedJob> {
        let lease = Lease {
            job: job.lease.clone(),
            worker: self.worker.clone().unwrap_or_else(|| Arc::from("?")),
            kind: Arc::from(job.kind.as_str()),
            attempt: job.attempts.saturating_add(1),
            started_ms: Arc::new(AtomicI64::new(0)),
        };
        TaskBuilder::new(())
            .task_id(TaskId::String(job.lease.id.clone()))
            .attempt(usize::try_from(job.attempts).unwrap_or(0))
            .max_attempts(usize::try_from(job.max_attempts).unwrap_or(1))
            .data(lease)
            .build()
            .map_args(|()| FetchedJob(job))
    }

    /// Polls the fetch in flight; its rows go to the buffer.
    fn drive_fetch(&mut self, cx: &mut Context<'_>) {
        let Some((asked, f)) = self.fetch.as_mut() else {
            return;
        };
        let asked = *asked;
        match f.poll_unpin(cx) {
            Poll::Pending => {}
            Poll::Ready(Ok(rows)) => {
                self.fetch = None;
                self.failures = 0;
                self.more = rows.len() >= asked;
                // Only a full fetch moves the cursor; a short one means the rest is behind it.
                self.cursor = if self.more {
                    Cursor::after(&rows)
                } else {
                    None
                };
                self.buffer.extend(rows);
            }
            Poll::Ready(Err(e)) => {
                self.fetch = None;
                self.more = true;
                self.cursor = None;
                self.pause_after_error("fetch jobs", &e);
            }
        }
    }

    /// Did a wake-up or the poll fire since the last look? Registers both wakers.
    fn woken(&mut self, cx: &mut Context<'_>) -> bool {
        let mut woke = false;
        while let Poll::Ready(Some(())) = self.wake.poll_next_unpin(cx) {
            woke = true;
        }
        if self.tick.as_mut().poll(cx).is_ready() {
            self.tick
                .as_mut()
                .reset(tokio::time::Instant::now() + self.poll_every);
            let _ = self.tick.as_mut().poll(cx);
            // Every poll starts from the head, so nothing waits behind the cursor for long.
            self.cursor = None;
            woke = true;
        }
        woke
    }

    /// Unstarted jobs go back; the completer is flushed; the worker row goes.
    fn closing(&mut self) -> BoxFuture<'static, ()> {
        let shared = self.shared.clone();
        let worker = self.worker.clone();
        let mut jobs: Vec<LeaseRef> = self.buffer.drain(..).map(|j| j.lease).collect();
        let fetch = self.fetch.take();
        let registered = matches!(self.phase, Phase::Ready);
        async move {
            if let Some((_, f)) = fetch
                && let Ok(rows) = f.await
            {
                jobs.extend(rows.into_iter().map(|j| j.lease));
            }
            let Some(worker) = worker.filter(|_| registered) else {
                return;
            };
            if !jobs.is_empty() {
                match hand_back(&shared.db, &worker, &jobs).await {
                    Ok(n) => {
                        tracing::info!(worker = %worker, jobs = n, "handed back unstarted jobs without using an attempt")
                    }
                    Err(e) => {
                        tracing::warn!(worker = %worker, error = %e, "cannot hand back unstarted jobs; they will be rescued")
                    }
                }
            }
            shared.completer.flush().await;
            shared.deregister(&worker).await;
        }
        .boxed()
    }
}

async fn hand_back(db: &Db, worker: &str, jobs: &[LeaseRef]) -> Result<u64, sqlx::Error> {
    match db {
        Db::Pg(p) => PgStore::hand_back(&mut *p.acquire().await?, worker, jobs).await,
        Db::Sqlite(p) => SqliteStore::hand_back(&mut *p.acquire().await?, worker, jobs).await,
    }
}

impl Backend for QueueBackend {
    type Task = Task<FetchedJob>;
    type Error = QueueError;

    fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        loop {
            match &mut self.phase {
                Phase::Ready => {
                    self.drive_fetch(cx);
                    return Poll::Ready(Ok(()));
                }
                Phase::New => {
                    // After a failed registration: wait out the pause first.
                    if let Some(p) = self.pause.as_mut() {
                        if p.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        self.pause = None;
                    }
                    let id: Arc<str> = Arc::from(worker.name());
                    self.worker = Some(id.clone());
                    self.phase = Phase::Registering(
                        self.shared.clone().register(id, self.queue.clone()).boxed(),
                    );
                }
                Phase::Registering(f) => match f.poll_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(())) => {
                        self.failures = 0;
                        self.phase = Phase::Ready;
                    }
                    Poll::Ready(Err(e)) => {
                        self.phase = Phase::New;
                        self.pause_after_error("register the worker", &e);
                    }
                },
            }
        }
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        loop {
            self.drive_fetch(cx);
            let paused = match self.pause.as_mut() {
                Some(p) => {
                    let waiting = p.as_mut().poll(cx).is_pending();
                    if !waiting {
                        self.pause = None;
                    }
                    waiting
                }
                None => false,
            };
            // Refill while a round of jobs is still waiting, so that a prefetching worker
            // does not sit idle for the length of a fetch.
            if self.fetch.is_none() && !paused && self.buffer.len() <= self.concurrency {
                let held =
                    worker.task_count() + self.acks.load(Ordering::Relaxed) + self.buffer.len();
                let free = self.hold.saturating_sub(held);
                if free > 0 && (self.woken(cx) || self.more) {
                    self.start_fetch(free);
                    continue;
                }
            }
            if let Some(job) = self.buffer.pop_front() {
                return Poll::Ready(Some(Ok(self.task(job))));
            }
            // Woken by the fetch, a wake-up, the poll, the pause, or a finishing task.
            return Poll::Pending;
        }
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        if self.closed {
            return Poll::Ready(Ok(()));
        }
        if self.close.is_none() {
            self.close = Some(self.closing());
        }
        match self.close.as_mut().map(|f| f.poll_unpin(cx)) {
            Some(Poll::Pending) => Poll::Pending,
            _ => {
                self.closed = true;
                self.close = None;
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl BackendConfig for QueueBackend {
    type Args = FetchedJob;
    type Id = RandomId;
    type Kind = Ephemeral;
    type Config = ();
    type Layer = AcknowledgeLayer<Acker>;

    fn config(&self) -> &Self::Config {
        &()
    }

    fn middleware(&mut self, _: &mut WorkerContext) -> Self::Layer {
        AcknowledgeLayer::new(Acker::new(
            self.shared.clone(),
            self.queue.clone(),
            self.acks.clone(),
        ))
    }
}

impl Drop for QueueBackend {
    /// A worker stopped without `poll_close` (the shutdown timeout expired): its unstarted
    /// jobs are still handed back, on a task the queue's shutdown waits for.
    fn drop(&mut self) {
        if self.closed || !matches!(self.phase, Phase::Ready) {
            return;
        }
        let close = self.closing();
        self.shared.spawn_cleanup(close);
    }
}
