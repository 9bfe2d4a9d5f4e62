//! Test harness: spawns the real app on a random port against a fresh database.
//! Postgres and Redis come from TEST_DATABASE_URL / TEST_REDIS_URL; without them the
//! tests that need them print a notice and skip, except under CI=true where they fail.
#![allow(dead_code)]

pub mod decisions;
pub mod oauth;
pub mod seed;
pub mod sync;
pub mod world;

use std::sync::atomic::{AtomicU32, Ordering};

use issuesync::config::Settings;
use issuesync::startup;
use issuesync::sync::Services;
use serde_json::Value;

pub const TOKEN: &str = "test-admin-token";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seq {
    Local,
    Redis,
}

/// Which services a test needs; returns None (skip) when they are not configured.
pub fn require(backend: Backend, seq: Seq) -> Option<(Option<String>, Option<String>)> {
    let pg = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty());
    let redis = std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|s| !s.is_empty());
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let missing = match (backend, seq) {
        (Backend::Postgres, _) if pg.is_none() => Some("TEST_DATABASE_URL"),
        (_, Seq::Redis) if redis.is_none() => Some("TEST_REDIS_URL"),
        _ => None,
    };
    if let Some(var) = missing {
        assert!(
            !ci,
            "{var} is not set but CI=true: this test must run in CI"
        );
        eprintln!("SKIPPED: {var} is not set");
        return None;
    }
    Some((pg, redis))
}

/// A database made for one test and dropped afterwards.
pub struct TestDb {
    pub url: String,
    admin_url: Option<String>,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn create(backend: Backend, pg_admin: Option<&str>) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}/test.db", dir.path().display());
                TestDb {
                    url,
                    admin_url: None,
                    name: String::new(),
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let admin = pg_admin.expect("postgres url").to_string();
                let name = format!("issuesync_test_{}", uuid::Uuid::new_v4().simple());
                let pool = sqlx::PgPool::connect(&admin)
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&pool)
                    .await
                    .expect("create database");
                pool.close().await;
                let url = replace_db_name(&admin, &name);
                TestDb {
                    url,
                    admin_url: Some(admin),
                    name,
                    _dir: None,
                }
            }
        }
    }
}

fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match base.rfind('/') {
        Some(i) if base[..i].contains("://") && i > base.find("://").unwrap_or(0) + 2 => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(admin) = self.admin_url.clone() else {
            return;
        };
        let name = self.name.clone();
        // Drop is sync; do the async drop on a thread with its own runtime.
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

static REDIS_DB: AtomicU32 = AtomicU32::new(0);

/// A Redis URL on its own DB number (1..=15), flushed, so tests do not share keys.
pub async fn test_redis_url(base: &str) -> String {
    let n = REDIS_DB.fetch_add(1, Ordering::SeqCst) % 15 + 1;
    let base = base.trim_end_matches('/');
    let base = match base.rsplit_once('/') {
        Some((b, last)) if last.parse::<u32>().is_ok() => b.to_string(),
        _ => base.to_string(),
    };
    let url = format!("{base}/{n}");
    let client = redis::Client::open(url.as_str()).expect("redis url");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to TEST_REDIS_URL");
    let _: () = redis::cmd("FLUSHDB")
        .query_async(&mut c)
        .await
        .expect("flushdb");
    url
}

pub struct TestApp {
    pub addr: String,
    pub state: Services,
    pub client: reqwest::Client,
    pub db: TestDb,
    pub redis_url: Option<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Spawns the app; None when the needed services are not configured (the test then skips).
pub async fn spawn_app(backend: Backend, seq: Seq) -> Option<TestApp> {
    spawn_app_with(backend, seq, |_| {}).await
}

/// Spawns the app with settings adjusted by `tweak`.
pub async fn spawn_app_with(
    backend: Backend,
    seq: Seq,
    tweak: impl FnOnce(&mut Settings),
) -> Option<TestApp> {
    let (pg, redis) = require(backend, seq)?;
    let db = TestDb::create(backend, pg.as_deref()).await;
    let redis_url = match (seq, redis) {
        (Seq::Redis, Some(r)) => Some(test_redis_url(&r).await),
        _ => None,
    };
    let mut settings = Settings::for_tests(&db.url, redis_url.as_deref()).expect("settings");
    tweak(&mut settings);
    let state = startup::build_state(settings).await.expect("build state");
    state.db.migrate().await.expect("migrate");
    let server = startup::bind(state.clone()).await.expect("bind");
    let addr = format!("http://{}", server.addr);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run_until(async move {
        let _ = rx.await;
    }));
    Some(TestApp {
        addr,
        state,
        client: reqwest::Client::new(),
        db,
        redis_url,
        shutdown: Some(tx),
    })
}

impl TestApp {
    /// The backend and Redis setting this app was spawned with.
    pub fn backend_seq(&self) -> (Backend, Seq) {
        let backend = if self.state.db.backend() == "sqlite" {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let seq = if self.redis_url.is_some() {
            Seq::Redis
        } else {
            Seq::Local
        };
        (backend, seq)
    }

    /// Another app like this one (same backend, Redis or not), with `patch` applied to its
    /// settings.
    pub async fn like(&self, patch: Value) -> Option<TestApp> {
        let (backend, seq) = self.backend_seq();
        spawn_app_with(backend, seq, |s| {
            *s = s.clone().with_overrides(patch).expect("settings");
        })
        .await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.addr, path)
    }

    /// An admin API call with the token; returns (status, JSON body or Null).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, self.url(&format!("/api/v1{path}")))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.api(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.api(reqwest::Method::GET, path, None).await
    }

    /// POST that must answer 201; returns the body.
    pub async fn create(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.post(path, body.clone()).await;
        assert_eq!(status, 201, "POST {path} {body} -> {v}");
        v
    }
}

/// Generates one #[tokio::test] per backend/sequence combination for an async fn(TestApp).
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    if let Some(app) = common::spawn_app(common::Backend::Sqlite, common::Seq::Local).await { super::$name(app).await }
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_redis() {
                    if let Some(app) = common::spawn_app(common::Backend::Sqlite, common::Seq::Redis).await { super::$name(app).await }
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(app) = common::spawn_app(common::Backend::Postgres, common::Seq::Local).await { super::$name(app).await }
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_redis() {
                    if let Some(app) = common::spawn_app(common::Backend::Postgres, common::Seq::Redis).await { super::$name(app).await }
                }
            }
        )*
    };
}

/// Worker pools running inside the test process; stopped (gracefully) on drop.
pub struct Workers {
    stop: tokio::sync::watch::Sender<bool>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Workers {
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl TestApp {
    /// Starts all worker pools in this process.
    pub fn start_workers(&self) -> Workers {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let pools = issuesync::worker::pools(&self.state, &[], None).expect("pools");
        let handle = tokio::spawn(issuesync::worker::run_pools(self.state.clone(), pools, rx));
        Workers {
            stop: tx,
            handle: Some(handle),
        }
    }

    /// Enqueues a job in its own transaction.
    pub async fn enqueue<J: issuesync_jobs::Job>(
        &self,
        job: &J,
    ) -> issuesync::store::jobs::Enqueued {
        let mut tx = self.state.db.begin().await.expect("begin");
        let r = issuesync::store::enqueue::enqueue(&mut tx, job)
            .await
            .expect("enqueue");
        tx.commit().await.expect("commit");
        r
    }

    pub async fn job(&self, id: &str) -> issuesync::ops::JobDetail {
        issuesync::ops::show(&self.state.db, id).await.expect("job")
    }

    /// Waits until the job is in `state` (or panics after `secs`).
    pub async fn wait_job_state(
        &self,
        id: &str,
        state: &str,
        secs: u64,
    ) -> issuesync::ops::JobDetail {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let j = self.job(id).await;
            if j.job.state == state {
                return j;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "job {id} is {} not {state} after {secs}s: {:?}",
                j.job.state,
                j.history
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub async fn ledger(&self, marker: &str) -> (i64, i64) {
        let mut tx = self.state.db.begin().await.expect("begin");
        issuesync::store::jobs::count_ledger(&mut tx, marker)
            .await
            .expect("ledger")
    }

    /// Environment for a child `issuesync` process on this app's database.
    pub fn child_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("DATABASE_URL".to_string(), self.db.url.clone()),
            ("ISSUESYNC_ADMIN_TOKEN".into(), TOKEN.into()),
            ("ISSUESYNC_QUEUE__BACKOFF_BASE_MS".into(), "1000".into()),
            ("ISSUESYNC_QUEUE__HEARTBEAT_SECS".into(), "1".into()),
            ("ISSUESYNC_QUEUE__MISSED_HEARTBEATS".into(), "5".into()),
            ("RUST_LOG".into(), "warn".into()),
        ];
        if let Some(r) = &self.redis_url {
            env.push(("REDIS_URL".into(), r.clone()));
        }
        env
    }

    /// Spawns `issuesync <args>` on this app's database.
    pub fn spawn_child(&self, args: &[&str]) -> Child {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_issuesync"));
        c.args(args)
            .envs(self.child_env())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit());
        Child(c.spawn().expect("spawn issuesync"))
    }

    /// Runs `issuesync <args>` to completion; returns (exit code, stdout).
    pub fn run_cli(&self, args: &[&str]) -> (i32, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_issuesync"))
            .args(args)
            .envs(self.child_env())
            .output()
            .expect("run issuesync");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    }
}

/// A child process, killed on drop.
pub struct Child(pub std::process::Child);

impl Child {
    pub fn signal(&self, sig: &str) {
        let _ = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.0.id().to_string()])
            .status();
    }

    /// Waits for exit up to `secs`; returns the exit status.
    pub fn wait_exit(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(s)) = self.0.try_wait() {
                return Some(s);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Generates one #[tokio::test] per database backend (no Redis) for an async fn(TestApp).
#[macro_export]
macro_rules! db_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    if let Some(app) = common::spawn_app(common::Backend::Sqlite, common::Seq::Local).await { super::$name(app).await }
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(app) = common::spawn_app(common::Backend::Postgres, common::Seq::Local).await { super::$name(app).await }
                }
            }
        )*
    };
}

impl TestApp {
    /// Waits until no job is pending, running, scheduled or failed (40 s at most).
    pub async fn drain(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
        loop {
            let stats = issuesync::ops::stats(&self.state.db).await.expect("stats");
            let busy: i64 = stats
                .counts
                .iter()
                .filter(|c| {
                    matches!(
                        c.state.as_str(),
                        "pending" | "running" | "scheduled" | "failed"
                    )
                })
                .map(|c| c.count)
                .sum();
            if busy == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "queue did not drain: {:?}",
                stats.counts
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// Generates a test on SQLite (in-process cache and sequence) and one on Postgres + Redis.
#[macro_export]
macro_rules! sqlite_and_pg_redis_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    if let Some(app) = common::spawn_app(common::Backend::Sqlite, common::Seq::Local).await { super::$name(app).await }
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_redis() {
                    if let Some(app) = common::spawn_app(common::Backend::Postgres, common::Seq::Redis).await { super::$name(app).await }
                }
            }
        )*
    };
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A client that does not follow redirects (the ops pages answer 303).
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Logs in to /ops; returns the `name=value` session cookie.
pub async fn ops_login(app: &TestApp) -> String {
    let r = no_redirects()
        .post(app.url("/ops/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 303);
    let set = r.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .expect("cookie")
        .to_string();
    set.split(';').next().unwrap_or_default().to_string()
}
