//! One code base on SQLite and PostgreSQL: an enum of native pools (not `AnyPool`), so that
//! apalis can enqueue inside our own transactions (`AnyPool` has no apalis backend).

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

/// Our migrations keep their history in their own table: apalis-sqlite owns `_sqlx_migrations`.
pub const MIGRATIONS_TABLE: &str = "issuesync_migrations";

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
    #[error("queue migration failed: {0}")]
    QueueMigrate(String),
}

/// Wakes this process's SQLite workers when a job row is inserted (the update hook fires
/// inside the inserting transaction; the worker's claim then waits for the commit). Global
/// because the hook is set per connection; a spurious wake-up only costs one empty fetch.
pub static SQLITE_JOB_INSERTS: InsertHub = InsertHub::new();

pub struct InsertHub(std::sync::Mutex<Vec<futures::channel::mpsc::UnboundedSender<()>>>);

impl InsertHub {
    pub const fn new() -> Self {
        InsertHub(std::sync::Mutex::new(Vec::new()))
    }

    pub fn subscribe(&self) -> futures::channel::mpsc::UnboundedReceiver<()> {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        if let Ok(mut subs) = self.0.lock() {
            subs.push(tx);
        }
        rx
    }

    fn notify(&self) {
        if let Ok(mut subs) = self.0.lock() {
            subs.retain(|s| s.unbounded_send(()).is_ok());
        }
    }
}

impl Default for InsertHub {
    fn default() -> Self {
        Self::new()
    }
}

/// Settings for the pool; see README "Configuration".
#[derive(Clone, Debug)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Db {
    pub async fn connect(url: &str, settings: &PoolSettings) -> Result<Db, DbError> {
        if url.starts_with("sqlite:") {
            // WAL + NORMAL + a 5 s busy timeout keep concurrent workers alive.
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(DbError::Connect)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            if let Some(dir) = sqlite_parent_dir(url) {
                let _ = std::fs::create_dir_all(dir);
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(settings.max_connections.clamp(1, 8))
                .acquire_timeout(settings.acquire_timeout)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.lock_handle().await?.set_update_hook(|ev| {
                            if ev.operation == sqlx::sqlite::SqliteOperation::Insert
                                && ev.table == "Jobs"
                            {
                                SQLITE_JOB_INSERTS.notify();
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

    /// Applies our migrations, then the queue's (apalis keeps its own history), then our
    /// index tuning of the queue's table.
    pub async fn migrate(&self) -> Result<(), DbError> {
        match self {
            Db::Sqlite(pool) => {
                let mut ours = sqlx::migrate!("./migrations/sqlite");
                ours.dangerous_set_table_name(MIGRATIONS_TABLE);
                ours.run(pool).await?;
                apalis_sqlite::SqliteStorage::<()>::migrations()
                    .run(pool)
                    .await
                    .map_err(|e| DbError::QueueMigrate(e.to_string()))?;
            }
            Db::Pg(pool) => {
                let mut ours = sqlx::migrate!("./migrations/postgres");
                ours.dangerous_set_table_name(MIGRATIONS_TABLE);
                ours.run(pool).await?;
                apalis_postgres::PostgresStorage::<()>::setup(pool)
                    .await
                    .map_err(|e| DbError::QueueMigrate(e.to_string()))?;
                sqlx::raw_sql(include_str!("../migrations/queue-tuning/postgres.sql"))
                    .execute(pool)
                    .await
                    .map_err(|e| DbError::QueueMigrate(format!("queue index tuning: {e}")))?;
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
    /// with SQLITE_BUSY at once under a concurrent writer (the
    /// read lock cannot be upgraded).
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

fn sqlite_parent_dir(url: &str) -> Option<std::path::PathBuf> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()?;
    if path.is_empty() || path.starts_with(":memory:") {
        return None;
    }
    std::path::Path::new(path).parent().map(|p| p.to_path_buf())
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
