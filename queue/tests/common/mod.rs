//! Test harness of the queue crate: a fresh database per test (SQLite in a temporary
//! directory; Postgres from TEST_DATABASE_URL, skipped with a notice without it and failing
//! under CI=true), tiny job kinds with handlers, and apalis workers running our backend.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use issuesync_jobs::Job;
use issuesync_queue::admin::{self, JobDetail};
use issuesync_queue::db::{Db, PoolSettings};
use issuesync_queue::{
    Enqueued, JobError, JobMeta, Queue, QueueConfig, QueueError, Registry, RunJob, WorkerSpec,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one test per backend for an `async fn(TestQueue)`.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    if let Some(q) = super::common::setup(super::common::Backend::Sqlite).await { super::$name(q).await }
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(q) = super::common::setup(super::common::Backend::Postgres).await { super::$name(q).await }
                }
            }
        )*
    };
}

/// A database made for one test and dropped afterwards.
pub struct TestDb {
    pub url: String,
    admin_url: Option<String>,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// None (skip) when the backend is not configured; fails under CI=true.
    pub async fn create(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                Some(TestDb {
                    url: format!("sqlite://{}/queue.db", dir.path().display()),
                    admin_url: None,
                    name: String::new(),
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let Some(admin) = std::env::var("TEST_DATABASE_URL")
                    .ok()
                    .filter(|s| !s.is_empty())
                else {
                    assert!(
                        std::env::var("CI").map_or(true, |v| v != "true"),
                        "TEST_DATABASE_URL is not set but CI=true: this test must run in CI"
                    );
                    eprintln!("SKIPPED: TEST_DATABASE_URL is not set");
                    return None;
                };
                let name = format!(
                    "queue_test_{}",
                    ulid::Ulid::generate().to_string().to_lowercase()
                );
                let pool = sqlx::PgPool::connect(&admin)
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&pool)
                    .await
                    .expect("create database");
                pool.close().await;
                let base = admin.split('?').next().unwrap_or(&admin);
                let base = &base[..base.rfind('/').expect("a database in TEST_DATABASE_URL")];
                Some(TestDb {
                    url: format!("{base}/{name}"),
                    admin_url: Some(admin),
                    name,
                    _dir: None,
                })
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(admin) = self.admin_url.clone() else {
            return;
        };
        let name = self.name.clone();
        // Drop is sync: drop the database on a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&pool)
                    .await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

/// The handlers' context: the database, where they record each run in `test_ledger`.
#[derive(Clone)]
pub struct TestCtx {
    pub db: Db,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub enum Behaviour {
    #[default]
    Succeed,
    FailTransient,
    FailPermanent,
    /// Fails transiently until this attempt, then succeeds.
    FailUntil(i32),
    /// Rate limited (for `retry_after_ms`) until it has been snoozed this often.
    RateLimitedTimes(i32),
    Panic,
}

/// The test job: records its run, sleeps, then behaves as told.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub marker: String,
    #[serde(default)]
    pub behaviour: Behaviour,
    #[serde(default)]
    pub sleep_ms: u64,
    #[serde(default)]
    pub retry_after_ms: i64,
    #[serde(default)]
    pub dedup: Option<String>,
}

impl Job for Probe {
    const JOB_NAME: &'static str = "probe";
    const QUEUE: &'static str = "tests";
    const MAX_ATTEMPTS: u32 = 3;
    const TIMEOUT_SECS: u64 = 2;
    fn dedup_key(&self) -> Option<String> {
        self.dedup.clone()
    }
    fn partition_key(&self) -> Option<String> {
        Some(format!("marker:{}", self.marker))
    }
}

impl RunJob<TestCtx> for Probe {
    async fn run(self, ctx: &TestCtx, job: &JobMeta) -> Result<(), JobError> {
        record(ctx, job, &self.marker, None).await?;
        if self.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
        }
        match self.behaviour {
            Behaviour::Succeed => Ok(()),
            Behaviour::FailTransient => Err(JobError::Transient("probe failed on purpose".into())),
            Behaviour::FailPermanent => Err(JobError::Permanent("probe failed for good".into())),
            Behaviour::FailUntil(n) if job.attempt < n => Err(JobError::Transient(format!(
                "probe fails until attempt {n}"
            ))),
            Behaviour::FailUntil(_) => Ok(()),
            Behaviour::RateLimitedTimes(n) if job.snoozes < n => Err(JobError::RateLimited {
                reason: "probe asked to wait".into(),
                until: chrono::Utc::now() + chrono::Duration::milliseconds(self.retry_after_ms),
            }),
            Behaviour::RateLimitedTimes(_) => Ok(()),
            Behaviour::Panic => panic!("probe panicked on purpose"),
        }
    }
}

/// A coalescing kind: its handler records the value it was given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latest {
    pub key: String,
    pub value: i64,
    #[serde(default)]
    pub sleep_ms: u64,
}

impl Job for Latest {
    const JOB_NAME: &'static str = "latest";
    const QUEUE: &'static str = "tests";
    const MAX_ATTEMPTS: u32 = 3;
    const COALESCE: bool = true;
    fn dedup_key(&self) -> Option<String> {
        Some(format!("latest:{}", self.key))
    }
}

impl RunJob<TestCtx> for Latest {
    async fn run(self, ctx: &TestCtx, job: &JobMeta) -> Result<(), JobError> {
        record(ctx, job, &self.key, Some(self.value)).await?;
        tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
        Ok(())
    }
}

/// A kind with one attempt, on its own queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fragile {
    pub marker: String,
}

impl Job for Fragile {
    const JOB_NAME: &'static str = "fragile";
    const QUEUE: &'static str = "fragile";
    const MAX_ATTEMPTS: u32 = 2;
}

impl RunJob<TestCtx> for Fragile {
    async fn run(self, ctx: &TestCtx, job: &JobMeta) -> Result<(), JobError> {
        record(ctx, job, &self.marker, None).await
    }
}

async fn record(
    ctx: &TestCtx,
    job: &JobMeta,
    marker: &str,
    value: Option<i64>,
) -> Result<(), JobError> {
    let mut tx = ctx.db.begin().await?;
    issuesync_queue::on_tx!(&mut tx, |c| {
        sqlx::query(
        "INSERT INTO test_ledger (job_id, marker, attempt, value, at_ms, traceparent) VALUES ($1, $2, $3, $4, $5, $6)"
    )
    .bind(&job.id)
    .bind(marker)
    .bind(job.attempt)
    .bind(value)
    .bind(chrono::Utc::now().timestamp_millis())
    .bind(job.traceparent.as_deref())
    .execute(c)
    .await
    .map(|_| ())
    })?;
    tx.commit().await?;
    Ok(())
}

pub fn registry() -> Registry<TestCtx> {
    Registry::new()
        .register::<Probe>()
        .register::<Latest>()
        .register::<Fragile>()
}

/// Fast settings: 200 ms heartbeat (dead after 1 s), 50 ms poll, 200 ms backoff base.
pub fn fast_config() -> QueueConfig {
    QueueConfig {
        heartbeat_ms: 200,
        missed_heartbeats: 5,
        poll_interval_ms_postgres: 50,
        poll_interval_ms_sqlite: 50,
        backoff_base_ms: 200,
        backoff_max_secs: 5,
        shutdown_timeout_secs: 10,
        ..QueueConfig::default()
    }
}

pub struct TestQueue {
    pub backend: Backend,
    pub db: Db,
    pub registry: Arc<Registry<TestCtx>>,
    pub tdb: TestDb,
}

pub async fn setup(backend: Backend) -> Option<TestQueue> {
    // RUST_LOG=issuesync_queue=debug shows the queue's logs.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let tdb = TestDb::create(backend).await?;
    let db = connect(&tdb.url).await;
    db.migrate_queue().await.expect("queue migrations");
    issuesync_queue::on_pool!(&db, |p| {
        sqlx::query(
        "CREATE TABLE test_ledger (job_id TEXT NOT NULL, marker TEXT NOT NULL, attempt INTEGER NOT NULL, \
         value BIGINT, at_ms BIGINT NOT NULL, traceparent TEXT)"
    )
    .execute(p)
    .await
    .map(|_| ())
    .expect("ledger table")
    });
    Some(TestQueue {
        backend,
        db,
        registry: Arc::new(registry()),
        tdb,
    })
}

pub async fn connect(url: &str) -> Db {
    Db::connect(url, &PoolSettings::default())
        .await
        .expect("connect")
}

/// Workers running in the background until stopped.
pub struct Workers {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<Result<(), QueueError>>>,
}

impl Workers {
    /// Stops them gracefully and waits until everything is written.
    pub async fn stop(mut self) -> Result<(), QueueError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.handle.take() {
            Some(h) => h.await.expect("workers task"),
            None => Ok(()),
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl TestQueue {
    /// Workers for the `tests` and `fragile` queues with `concurrency` each.
    pub fn start(&self, concurrency: usize, config: QueueConfig) -> Workers {
        start_on(self.db.clone(), self.registry.clone(), concurrency, config)
    }

    pub async fn enqueue<J: Job>(&self, job: &J) -> Enqueued {
        let mut tx = self.db.begin().await.expect("begin");
        let r = issuesync_queue::enqueue(&mut tx, job)
            .await
            .expect("enqueue");
        tx.commit().await.expect("commit");
        r
    }

    pub async fn show(&self, id: &str) -> JobDetail {
        admin::show(&self.db, id)
            .await
            .expect("show")
            .expect("the job exists")
    }

    pub async fn wait_state(&self, id: &str, state: &str, secs: u64) -> JobDetail {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let j = self.show(id).await;
            if j.job.state == state {
                return j;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} is {} not {state} after {secs} s: {j:?}",
                j.job.state
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// (runs, distinct jobs) recorded under `marker`.
    pub async fn ledger(&self, marker: &str) -> (i64, i64) {
        issuesync_queue::on_pool!(&self.db, |p| sqlx::query_as(
            "SELECT COUNT(*), COUNT(DISTINCT job_id) FROM test_ledger WHERE marker = $1"
        )
        .bind(marker)
        .fetch_one(p)
        .await
        .expect("ledger"))
    }

    /// The values recorded under `marker`, in run order.
    pub async fn ledger_values(&self, marker: &str) -> Vec<i64> {
        issuesync_queue::on_pool!(&self.db, |p| sqlx::query_scalar(
            "SELECT value FROM test_ledger WHERE marker = $1 ORDER BY at_ms, attempt"
        )
        .bind(marker)
        .fetch_all(p)
        .await
        .expect("ledger values"))
    }

    /// The traceparent each run under `marker` was given, in run order.
    pub async fn ledger_traceparents(&self, marker: &str) -> Vec<Option<String>> {
        issuesync_queue::on_pool!(&self.db, |p| sqlx::query_scalar(
            "SELECT traceparent FROM test_ledger WHERE marker = $1 ORDER BY at_ms, attempt"
        )
        .bind(marker)
        .fetch_all(p)
        .await
        .expect("ledger traceparents"))
    }

    pub async fn wait_ledger(&self, marker: &str, runs: i64, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.ledger(marker).await.0 < runs {
            assert!(
                Instant::now() < deadline,
                "fewer than {runs} runs of {marker} after {secs} s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Raw SQL, the same text on both backends.
    pub async fn exec(&self, sql: &'static str) {
        issuesync_queue::on_pool!(&self.db, |p| sqlx::query(sql)
            .execute(p)
            .await
            .map(|_| ())
            .expect(sql));
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        issuesync_queue::on_pool!(&self.db, |p| sqlx::query_scalar(sql)
            .fetch_one(p)
            .await
            .expect(sql))
    }
}

pub fn start_on(
    db: Db,
    registry: Arc<Registry<TestCtx>>,
    concurrency: usize,
    config: QueueConfig,
) -> Workers {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let queue = Queue::start(db.clone(), config);
        let specs = [
            WorkerSpec {
                queue: "tests".into(),
                concurrency,
            },
            WorkerSpec {
                queue: "fragile".into(),
                concurrency,
            },
        ];
        issuesync_queue::run_workers(&queue, registry, TestCtx { db }, &specs, async move {
            let _ = stopped.await;
        })
        .await
    });
    Workers {
        stop: Some(stop),
        handle: Some(handle),
    }
}
