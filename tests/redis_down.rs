//! The rate limiter and readiness while Redis is away: a private Redis (never the shared
//! one) is stopped under a running app, which stays ready, reports the degradation, limits
//! in-process at once and goes back to the shared bucket when Redis returns.

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;

/// The tests of this file run one at a time: `issuesync_ratelimit_fallback` is one gauge per
/// process.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_but_degraded_while_redis_is_away() {
    let _serial = SERIAL.lock().await;
    for backend in [common::Backend::Sqlite, common::Backend::Postgres] {
        let Some((pg, _)) = common::require(backend, common::Seq::Local) else {
            continue;
        };
        let port = common::free_port();
        let redis = issuesync::bench::limiter::start_redis(port).expect("a private redis-server");
        let db = common::TestDb::create(backend, pg.as_deref()).await;
        let url = format!("redis://127.0.0.1:{port}");
        let settings = issuesync::config::Settings::for_tests(&db.url, Some(&url)).unwrap();
        let state = issuesync::startup::build_state(settings).await.unwrap();
        state.db.migrate().await.unwrap();
        let server = issuesync::startup::bind(state.clone()).await.unwrap();
        let base = format!("http://{}", server.addr);
        tokio::spawn(server.run_until(std::future::pending()));
        let ready = |base: String| async move {
            let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        };
        assert_eq!(ready(base.clone()).await.0, 200);
        drop(redis);
        let (status, v) = ready(base.clone()).await;
        assert_eq!(status, 200, "{backend:?}: not ready without Redis: {v}");
        assert!(
            v["degraded"].as_array().is_some_and(|d| !d.is_empty()),
            "{backend:?}: Redis down is not reported: {v}"
        );
        // The limiter gives up on Redis at once and reports its fallback.
        let acquire = state.http.limiter.acquire("jira", 1);
        tokio::time::timeout(Duration::from_secs(5), acquire)
            .await
            .expect("an acquire waited on the dead Redis");
        let (_, v) = ready(base.clone()).await;
        assert_eq!(v["rate_limiter"], "fallback", "{v}");
        let metrics = reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("issuesync_ratelimit_fallback 1"),
            "{metrics:.2000}"
        );
        // Redis back: the shared bucket is used again.
        let _redis = issuesync::bench::limiter::start_redis(port).expect("a private redis-server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while state.http.limiter.mode() != "shared" {
            assert!(Instant::now() < deadline, "never back to the shared bucket");
            state.http.limiter.acquire("jira", 1).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Blocks our Redis for `ms` with a busy script (a slow Redis, not a dead one).
fn block_redis(port: u16, ms: u64) -> std::process::Child {
    let script = format!(
        "local s = redis.call('TIME') repeat local n = redis.call('TIME') \
         until (n[1] - s[1]) * 1000000 + (n[2] - s[2]) > {} return 1",
        ms * 1000
    );
    std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "EVAL", &script, "0"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-cli")
}

/// The switch to the in-process share and back: the first in-process request waits one
/// share interval (not a quiet second), the share holds, a process that sends nothing goes
/// back to the shared bucket by itself when Redis returns, and one slow answer is no outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_starts_soon_and_returns_without_requests() {
    let _serial = SERIAL.lock().await;
    for backend in [common::Backend::Sqlite, common::Backend::Postgres] {
        let Some((pg, _)) = common::require(backend, common::Seq::Local) else {
            continue;
        };
        let port = common::free_port();
        let redis = issuesync::bench::limiter::start_redis(port).expect("a private redis-server");
        let db = common::TestDb::create(backend, pg.as_deref()).await;
        let url = format!("redis://127.0.0.1:{port}");
        let settings = issuesync::config::Settings::for_tests(&db.url, Some(&url)).unwrap();
        let state = issuesync::startup::build_state(settings).await.unwrap();
        state.db.migrate().await.unwrap();
        let limiter = &state.http.limiter;
        limiter.acquire("jira", 1).await;
        assert_eq!(limiter.mode(), "shared");

        drop(redis);
        let switched = Instant::now();
        limiter.acquire("jira", 1).await;
        let first = switched.elapsed();
        assert_eq!(limiter.mode(), "fallback", "{backend:?}");
        // jira: 10/s, one process: 2 shared intervals + one share interval (~0.3 s).
        assert!(
            first < Duration::from_millis(900),
            "{backend:?}: the first in-process request waited {first:?}"
        );
        let t = Instant::now();
        for _ in 0..5 {
            limiter.acquire("jira", 1).await;
        }
        assert!(
            t.elapsed() >= Duration::from_millis(450),
            "{backend:?}: 5 in-process requests in {:?}, over the share",
            t.elapsed()
        );

        let _redis = issuesync::bench::limiter::start_redis(port).expect("a private redis-server");
        let deadline = Instant::now() + Duration::from_secs(8);
        while limiter.mode() != "shared" {
            assert!(
                Instant::now() < deadline,
                "{backend:?}: an idle process never went back to the shared bucket"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Redis busy for 80 ms: one call goes unanswered in 50 ms, the next is answered.
        limiter.acquire("jira", 1).await;
        let mut busy = block_redis(port, 80);
        tokio::time::sleep(Duration::from_millis(15)).await;
        limiter.acquire("jira", 1).await;
        assert_eq!(
            limiter.mode(),
            "shared",
            "{backend:?}: one slow answer switched to the in-process share"
        );
        let _ = busy.wait();
    }
}
