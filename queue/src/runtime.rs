//! The queue of one worker process: its database, the batch completer, the LISTEN
//! listener (Postgres), and the lease keeper that heartbeats this process's workers and
//! rescues the jobs of dead ones. Backends (one per worker) are made from it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::channel::mpsc;
use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ack::Completer;
use crate::backend::QueueBackend;
use crate::config::QueueConfig;
use crate::db::{Db, SQLITE_INSERTS};
use crate::listener::Listener;
use crate::storage::{Rescued, Session, Storage, postgres::PgStore, sqlite::SqliteStore};

pub(crate) struct Shared {
    pub db: Db,
    pub config: QueueConfig,
    pub completer: Completer,
    listener: Option<Listener>,
    session: watch::Receiver<Option<Session>>,
    /// This process's registered workers: id → queue.
    workers: Mutex<BTreeMap<String, String>>,
    cleanups: Mutex<Vec<JoinHandle<()>>>,
    stop: watch::Sender<bool>,
}

impl Shared {
    pub fn subscribe(&self, queue: &str) -> mpsc::Receiver<()> {
        match (&self.listener, self.db.sqlite_file()) {
            (Some(l), _) => l.subscribe(queue),
            (None, Some(file)) => SQLITE_INSERTS.subscribe(&file),
            (None, None) => mpsc::channel(0).1,
        }
    }

    pub fn session(&self) -> Option<Session> {
        *self.session.borrow()
    }

    /// Writes the worker's row (before it fetches anything) and adds it to the heartbeat.
    pub async fn register(
        self: Arc<Self>,
        id: Arc<str>,
        queue: Arc<str>,
    ) -> Result<(), sqlx::Error> {
        let session = self.session();
        match &self.db {
            Db::Pg(p) => {
                PgStore::register_worker(&mut *p.acquire().await?, &id, &queue, session).await?
            }
            Db::Sqlite(p) => {
                SqliteStore::register_worker(&mut *p.acquire().await?, &id, &queue, session).await?
            }
        }
        if let Ok(mut w) = self.workers.lock() {
            w.insert(id.to_string(), queue.to_string());
        }
        Ok(())
    }

    /// Removes a stopped worker: out of the heartbeat, and its row deleted, so whatever it
    /// still held is rescued at once.
    pub async fn deregister(&self, id: &str) {
        if let Ok(mut w) = self.workers.lock() {
            w.remove(id);
        }
        let r = match &self.db {
            Db::Pg(p) => match p.acquire().await {
                Ok(mut c) => PgStore::deregister_worker(&mut c, id).await,
                Err(e) => Err(e),
            },
            Db::Sqlite(p) => match p.acquire().await {
                Ok(mut c) => SqliteStore::deregister_worker(&mut c, id).await,
                Err(e) => Err(e),
            },
        };
        if let Err(e) = r {
            tracing::warn!(worker = id, error = %e, "cannot remove the worker's row; it expires with its heartbeat");
        }
    }

    pub fn spawn_cleanup(&self, f: BoxFuture<'static, ()>) {
        if let Ok(handle) = tokio::runtime::Handle::try_current()
            && let Ok(mut c) = self.cleanups.lock()
        {
            c.push(handle.spawn(f));
        }
    }

    fn registered(&self) -> Vec<(String, String)> {
        self.workers
            .lock()
            .map(|w| w.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
}

/// The queue of this process. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    shared: Arc<Shared>,
}

impl Queue {
    /// Starts the completer, the listener (Postgres) and the lease keeper.
    pub fn start(db: Db, config: QueueConfig) -> Queue {
        let (stop, stopped) = watch::channel(false);
        let (listener, session) = match &db {
            Db::Pg(p) => {
                let (l, s) = Listener::start(p, stopped.clone());
                (Some(l), s)
            }
            Db::Sqlite(_) => (None, watch::channel(None).1),
        };
        let completer = Completer::start(
            db.clone(),
            config.completion_batch,
            std::time::Duration::from_millis(config.completion_linger_ms),
        );
        let shared = Arc::new(Shared {
            db,
            config,
            completer,
            listener,
            session,
            workers: Mutex::new(BTreeMap::new()),
            cleanups: Mutex::new(Vec::new()),
            stop,
        });
        tokio::spawn(keep_leases(shared.clone(), stopped));
        Queue { shared }
    }

    /// A backend for one worker of `queue`, running `concurrency` jobs at once.
    pub fn backend(&self, queue: &str, concurrency: usize) -> QueueBackend {
        QueueBackend::new(self.shared.clone(), queue, concurrency)
    }

    pub fn db(&self) -> &Db {
        &self.shared.db
    }

    pub fn config(&self) -> &QueueConfig {
        &self.shared.config
    }

    /// Waits for the hand-backs of workers that stopped without closing, writes every queued
    /// outcome, then stops the lease keeper and the listener.
    pub async fn shutdown(&self) {
        let cleanups: Vec<JoinHandle<()>> = self
            .shared
            .cleanups
            .lock()
            .map(|mut c| c.drain(..).collect())
            .unwrap_or_default();
        for c in cleanups {
            let _ = c.await;
        }
        self.shared.completer.flush().await;
        let _ = self.shared.stop.send(true);
    }
}

/// Every heartbeat: one write for all of this process's workers, then one rescue of dead
/// workers' jobs. A new listener session (a reconnect) heartbeats at once, so the new session
/// is on record before another process's rescuer could take it for gone.
async fn keep_leases(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut session = shared.session.clone();
    // SQLite has no listener: nothing ever changes the session.
    let mut listening = shared.listener.is_some();
    let every = shared.config.heartbeat();
    loop {
        let workers = shared.registered();
        let current = shared.session();
        if !workers.is_empty()
            && let Err(e) = heartbeat(&shared.db, &workers, current).await
        {
            tracing::warn!(error = %e, "cannot write the workers' heartbeat");
        }
        match rescue(&shared.db, &shared.config, current).await {
            Ok(rescued) => log_rescued(&rescued),
            Err(e) => tracing::warn!(error = %e, "cannot look for jobs of dead workers"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            r = session.changed(), if listening => listening = r.is_ok(),
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn heartbeat(db: &Db, workers: &[(String, String)], s: Option<Session>) -> sqlx::Result<()> {
    match db {
        Db::Pg(p) => PgStore::heartbeat_workers(&mut *p.acquire().await?, workers, s).await,
        Db::Sqlite(p) => SqliteStore::heartbeat_workers(&mut *p.acquire().await?, workers, s).await,
    }
}

async fn rescue(db: &Db, config: &QueueConfig, s: Option<Session>) -> sqlx::Result<Vec<Rescued>> {
    let stale = config.stale_after();
    let since = s.map(|s| s.started);
    match db {
        Db::Pg(p) => PgStore::rescue_lost_jobs(&mut *p.acquire().await?, stale, since).await,
        Db::Sqlite(p) => {
            let mut tx = SqliteStore::begin_write(p).await?;
            let r = SqliteStore::rescue_lost_jobs(&mut tx, stale, since).await?;
            tx.commit().await?;
            Ok(r)
        }
    }
}

fn log_rescued(rescued: &[Rescued]) {
    for r in rescued {
        metrics::counter!("issuesync_jobs_rescued_total", "queue" => r.queue.clone(), "state" => r.state.as_str())
            .increment(1);
        tracing::warn!(
            job_id = r.id,
            queue = r.queue,
            worker = r.worker.as_deref().unwrap_or("?"),
            state = r.state.as_str(),
            "took back a job whose worker stopped while running it"
        );
    }
}
