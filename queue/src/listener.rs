//! Postgres LISTEN/NOTIFY on one dedicated connection per process, reconnected with a
//! growing pause (backon). The insert trigger notifies channel `queue_jobs` with the queue's
//! name; the listener wakes that queue's workers. After a reconnect it wakes them all (a
//! notification may have been missed) and publishes its new session, which the lease keeper
//! records as the process's liveness.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::channel::mpsc;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{PgPool, Row};
use tokio::sync::watch;

use crate::storage::Session;

const CHANNEL: &str = "queue_jobs";

type Subscribers = Arc<Mutex<HashMap<String, Vec<mpsc::Sender<()>>>>>;

pub(crate) struct Listener {
    subs: Subscribers,
}

impl Listener {
    /// Starts the listener task on its own one-connection pool (so it never takes a
    /// connection from the app's pool).
    pub fn start(
        pool: &PgPool,
        stop: watch::Receiver<bool>,
    ) -> (Listener, watch::Receiver<Option<Session>>) {
        let own = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(pool.connect_options().as_ref().clone());
        let subs: Subscribers = Arc::default();
        let (session_tx, session_rx) = watch::channel(None);
        tokio::spawn(run(own, subs.clone(), session_tx, stop));
        (Listener { subs }, session_rx)
    }

    /// A wake-up stream for `queue`; holds at most one pending wake-up.
    pub fn subscribe(&self, queue: &str) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel(0);
        if let Ok(mut s) = self.subs.lock() {
            s.entry(queue.to_string()).or_default().push(tx);
        }
        rx
    }
}

fn wake(subs: &Subscribers, queue: Option<&str>) {
    let Ok(mut s) = subs.lock() else { return };
    let send = |list: &mut Vec<mpsc::Sender<()>>| {
        list.retain_mut(|tx| match tx.try_send(()) {
            Ok(()) => true,
            Err(e) => e.is_full(),
        })
    };
    match queue {
        Some(q) => {
            if let Some(list) = s.get_mut(q) {
                send(list);
            }
        }
        None => s.values_mut().for_each(send),
    }
}

async fn connect(pool: &PgPool) -> Result<(PgListener, Session), sqlx::Error> {
    let mut l = PgListener::connect_with(pool).await?;
    l.eager_reconnect(false);
    l.listen(CHANNEL).await?;
    let row =
        sqlx::query("SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()")
            .fetch_one(&mut l)
            .await?;
    let session = Session {
        pid: row.try_get("pid")?,
        started: row.try_get("backend_start")?,
    };
    Ok((l, session))
}

async fn run(
    pool: PgPool,
    subs: Subscribers,
    session: watch::Sender<Option<Session>>,
    mut stop: watch::Receiver<bool>,
) {
    let backoff = || {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(5))
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut delays = backoff();
    loop {
        match connect(&pool).await {
            Ok((mut l, s)) => {
                delays = backoff();
                session.send_replace(Some(s));
                wake(&subs, None);
                loop {
                    tokio::select! {
                        r = l.try_recv() => match r {
                            Ok(Some(n)) => wake(&subs, Some(n.payload())),
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!(error = %e, "the queue listener lost its connection");
                                break;
                            }
                        },
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
                session.send_replace(None);
            }
            Err(e) => tracing::warn!(error = %e, "the queue listener cannot connect"),
        }
        let pause = delays.next().unwrap_or(Duration::from_secs(5));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
