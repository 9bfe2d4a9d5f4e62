//! One code base on SQLite and PostgreSQL: an enum of native pools (not `AnyPool`), so that
//! jobs can be enqueued inside the caller's own transaction on either backend.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use futures::channel::mpsc;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

/// The queue's migrations keep their history in their own table, apart from the app's.
pub const MIGRATIONS_TABLE: &str = "queue_migrations";

#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Pg(PgPool),
}

pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Pg(Transaction<'static, Postgres>),
}

/// Runs the same runtime-checked sqlx code on whichever backend the transaction holds.
/// The body is compiled once per backend, so a query that is invalid for one fails there.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, |$c:ident| $body:expr) => {
        match $tx {
            $crate::db::Tx::Sqlite(t) => {
                let $c = &mut **t;
                $body
            }
            $crate::db::Tx::Pg(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
}

/// Same as [`on_tx!`] for a pool.
#[macro_export]
macro_rules! on_pool {
    ($db:expr, |$c:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($c) => $body,
            $crate::db::Db::Pg($c) => $body,
        }
    };
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported DATABASE_URL scheme (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Settings for the pool.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Wakes this process's SQLite workers when a job row is inserted into a database file (the
/// update hook fires inside the inserting transaction; the worker's fetch then waits for the
/// commit). Keyed by file, because the hook is set per connection and a process may open
/// several databases; a spurious wake-up only costs one empty fetch.
pub(crate) static SQLITE_INSERTS: InsertHub = InsertHub::new();

pub(crate) struct InsertHub(Mutex<Option<HashMap<String, Vec<mpsc::Sender<()>>>>>);

impl InsertHub {
    const fn new() -> Self {
        InsertHub(Mutex::new(None))
    }

    /// A wake-up stream for inserts into `file`; holds at most one pending wake-up.
    pub(crate) fn subscribe(&self, file: &str) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel(0);
        if let Ok(mut subs) = self.0.lock() {
            subs.get_or_insert_with(HashMap::new)
                .entry(file.to_string())
                .or_default()
                .push(tx);
        }
        rx
    }

    fn notify(&self, file: &str) {
        if let Ok(mut subs) = self.0.lock()
            && let Some(list) = subs.as_mut().and_then(|m| m.get_mut(file))
        {
            // A full channel already holds a wake-up; a closed one is dropped.
            list.retain_mut(|s| match s.try_send(()) {
                Ok(()) => true,
                Err(e) => e.is_full(),
            });
        }
    }
}

impl Db {
    pub async fn connect(url: &str, settings: &PoolSettings) -> Result<Db, DbError> {
        if url.starts_with("sqlite:") {
            // WAL + NORMAL + a 5 s busy timeout keep concurrent writers alive.
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(DbError::Connect)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            if let Some(dir) = opts.get_filename().parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let file = opts.get_filename().to_string_lossy().to_string();
            let pool = SqlitePoolOptions::new()
                .max_connections(settings.max_connections.clamp(1, 8))
                .acquire_timeout(settings.acquire_timeout)
                .after_connect(move |conn, _| {
                    let file = file.clone();
                    Box::pin(async move {
                        conn.lock_handle().await?.set_update_hook(move |ev| {
                            if ev.operation == sqlx::sqlite::SqliteOperation::Insert
                                && ev.table == "queue_jobs"
                            {
                                SQLITE_INSERTS.notify(&file);
                            }
                        });
                        Ok(())
                    })
                })
                .connect_with(opts)
                .await
                .map_err(DbError::Connect)?;
            Ok(Db::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let opts = PgConnectOptions::from_str(url).map_err(DbError::Connect)?;
            let pool = PgPoolOptions::new()
                .max_connections(settings.max_connections)
                .acquire_timeout(settings.acquire_timeout)
                .connect_with(opts)
                .await
                .map_err(DbError::Connect)?;
            Ok(Db::Pg(pool))
        } else {
            Err(DbError::UnsupportedUrl)
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Pg(_) => "postgres",
        }
    }

    /// Applies the queue's migrations (its own history table, so they mix with the app's).
    pub async fn migrate_queue(&self) -> Result<(), DbError> {
        match self {
            Db::Sqlite(pool) => {
                let mut m = sqlx::migrate!("./migrations/sqlite");
                m.dangerous_set_table_name(MIGRATIONS_TABLE);
                m.run(pool).await?;
            }
            Db::Pg(pool) => {
                let mut m = sqlx::migrate!("./migrations/postgres");
                m.dangerous_set_table_name(MIGRATIONS_TABLE);
                m.run(pool).await?;
            }
        }
        Ok(())
    }

    pub async fn begin(&self) -> sqlx::Result<Tx> {
        Ok(match self {
            Db::Sqlite(p) => Tx::Sqlite(p.begin().await?),
            Db::Pg(p) => Tx::Pg(p.begin().await?),
        })
    }

    /// A transaction that reads before it writes: SQLite needs BEGIN IMMEDIATE or it fails
    /// with SQLITE_BUSY at once under a concurrent writer.
    pub async fn begin_write(&self) -> sqlx::Result<Tx> {
        Ok(match self {
            Db::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Db::Pg(p) => Tx::Pg(p.begin().await?),
        })
    }

    pub async fn ping(&self) -> sqlx::Result<()> {
        on_pool!(self, |p| sqlx::query("SELECT 1")
            .execute(p)
            .await
            .map(|_| ()))
    }

    /// The SQLite database file, which keys the in-process insert wake-ups.
    pub(crate) fn sqlite_file(&self) -> Option<String> {
        match self {
            Db::Sqlite(p) => Some(
                p.connect_options()
                    .get_filename()
                    .to_string_lossy()
                    .to_string(),
            ),
            Db::Pg(_) => None,
        }
    }
}

impl Tx {
    pub async fn commit(self) -> sqlx::Result<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await,
            Tx::Pg(t) => t.commit().await,
        }
    }

    pub async fn rollback(self) -> sqlx::Result<()> {
        match self {
            Tx::Sqlite(t) => t.rollback().await,
            Tx::Pg(t) => t.rollback().await,
        }
    }
}

/// Is this error a broken database rather than bad input? Such errors answer 503.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_)
    ) || matches!(e, sqlx::Error::Database(d) if d.code().is_some_and(|c| {
        // Postgres: connection exceptions (08), operator intervention (57P: shutdown,
        // cannot connect now), insufficient resources (53), "database is not accepting
        // connections" (55000). SQLite: busy (5), locked (6).
        c.starts_with("08") || c.starts_with("57P") || c.starts_with("53") || matches!(c.as_ref(), "55000" | "5" | "6")
    }))
}

/// Is this a value the database cannot store (Postgres data exceptions, class 22: a NUL
/// character in text, a number out of range)? Such input answers 400, not 500.
pub fn is_bad_value(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().is_some_and(|c| c.starts_with("22")))
}

pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}
