//! The rate limiter and readiness while Redis is away: a private Redis (never the shared
//! one) is stopped under a running app, which stays ready, reports the degradation, limits
//! in-process at once and goes back to the shared bucket when Redis returns.

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_but_degraded_while_redis_is_away() {
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
