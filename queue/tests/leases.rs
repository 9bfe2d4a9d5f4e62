//! Leases: a killed job's late result is dropped; a crashed worker's jobs are rescued (on
//! Postgres as soon as its session is gone); a job rescued past its attempts is given up;
//! a worker fetches as many jobs as it has free slots in one statement, prefetches up to
//! `fetch_batch_size`, and hands unstarted jobs back without an attempt when it stops.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, Probe, TestQueue, fast_config};
use issuesync_queue::{QueueConfig, admin};

both!(
    a_killed_job_stays_dead_and_its_late_result_is_dropped,
    a_crashed_workers_job_is_rescued_and_runs_again,
    a_job_rescued_past_its_attempts_is_given_up_with_the_reason,
    a_worker_fetches_as_many_jobs_as_it_has_free_slots_in_one_statement,
    a_graceful_stop_hands_prefetched_jobs_back_without_an_attempt,
    a_job_due_before_the_fetch_cursor_does_not_wait_for_the_backlog,
);

async fn a_killed_job_stays_dead_and_its_late_result_is_dropped(q: TestQueue) {
    let w = q.start(2, fast_config());
    let r = q
        .enqueue(&Probe {
            marker: "killed".into(),
            sleep_ms: 1200,
            ..Default::default()
        })
        .await;
    q.wait_ledger("killed", 1, 10).await;
    assert!(
        admin::kill_one(&q.db, r.id(), "operator said so")
            .await
            .expect("kill")
    );
    // Let the run end: its success must not overwrite the kill.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let j = q.show(r.id()).await;
    assert_eq!(j.job.state, "dead");
    assert_eq!(j.job.last_error.as_deref(), Some("operator said so"));
    assert_eq!(j.job.attempts, 0, "the dropped result charged an attempt");
    assert!(j.job.finished_at.is_some());
    // Kill refuses an empty reason, and a finished job is not killed again.
    assert!(admin::kill_one(&q.db, r.id(), " ").await.is_err());
    assert!(!admin::kill_one(&q.db, r.id(), "again").await.expect("kill"));
    w.stop().await.expect("stop");
}

/// Runs workers on their own runtime and database pool, then drops the runtime without
/// letting anything finish: what a SIGKILL does to a worker process.
fn crash_after_start(q: &TestQueue, marker: &'static str) -> std::thread::JoinHandle<()> {
    let url = q.tdb.url.clone();
    let registry = q.registry.clone();
    let db = q.db.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let own = common::connect(&url).await;
            let workers = common::start_on(own, registry, 2, fast_config());
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let runs: i64 = issuesync_queue::on_pool!(&db, |p| sqlx::query_scalar(
                    "SELECT COUNT(*) FROM test_ledger WHERE marker = $1"
                )
                .bind(marker)
                .fetch_one(p)
                .await
                .expect("ledger"));
                if runs > 0 || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Never stopped: the runtime goes away under it.
            std::mem::forget(workers);
        });
        rt.shutdown_background();
    })
}

async fn a_crashed_workers_job_is_rescued_and_runs_again(q: TestQueue) {
    let r = q
        .enqueue(&Probe {
            marker: "crash".into(),
            sleep_ms: 1500,
            ..Default::default()
        })
        .await;
    let _ = crash_after_start(&q, "crash").join();
    let crashed = Instant::now();
    assert_eq!(q.show(r.id()).await.job.state, "running");
    let w = q.start(2, fast_config());
    let j = q.wait_state(r.id(), "done", 20).await;
    let outcomes: Vec<&str> = j.history.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["lost", "done"]);
    assert_eq!(j.job.attempts, 2, "the lost attempt is charged");
    let lost = &j.history[0];
    assert!(
        lost.error
            .as_deref()
            .unwrap_or("")
            .starts_with("attempt 1 ended without a result"),
        "{lost:?}"
    );
    assert!(lost.worker.as_deref().unwrap_or("").starts_with("tests-"));
    assert_eq!(q.ledger("crash").await, (2, 1));
    // Found within a heartbeat or two (Postgres: the session is gone; SQLite: 5 missed
    // heartbeats of 200 ms).
    let rescue = crashed.elapsed();
    assert!(rescue < Duration::from_secs(5), "rescued after {rescue:?}");
    w.stop().await.expect("stop");
}

/// A worker row and a running job it holds, written as a process would have left them.
async fn ghost_with_job(q: &TestQueue, heartbeat_age_secs: i64, attempts: i32) {
    let ok = match &q.db {
        issuesync_queue::Db::Pg(p) => {
            sqlx::query(
                "INSERT INTO queue_workers (id, queue, heartbeat_at, session_pid, session_start) \
                 VALUES ('ghost', 'fragile', now() - make_interval(secs => $1), 2147483000, now())",
            )
            .bind(heartbeat_age_secs as f64)
            .execute(p)
            .await
            .is_ok()
                && sqlx::query(
                    "INSERT INTO queue_jobs (id, queue, kind, payload, state, holder, lease, attempts, max_attempts, started_at) \
                     VALUES ('01JGH0STGH0STGH0STGH0STGH0', 'fragile', 'fragile', convert_to('{\"marker\":\"ghost\"}', 'UTF8'), \
                     'running', 'ghost', 1, $1, 2, now())",
                )
                .bind(attempts)
                .execute(p)
                .await
                .is_ok()
        }
        issuesync_queue::Db::Sqlite(p) => {
            let now = chrono::Utc::now().timestamp_millis();
            sqlx::query(
                "INSERT INTO queue_workers (id, queue, started_at, heartbeat_at) VALUES ('ghost', 'fragile', $1, $1)",
            )
            .bind(now - heartbeat_age_secs * 1000)
            .execute(p)
            .await
            .is_ok()
                && sqlx::query(
                    "INSERT INTO queue_jobs (id, queue, kind, payload, state, holder, lease, attempts, max_attempts, \
                     run_at, created_at, started_at) VALUES ('01JGH0STGH0STGH0STGH0STGH0', 'fragile', 'fragile', \
                     CAST('{\"marker\":\"ghost\"}' AS BLOB), 'running', 'ghost', 1, $1, 2, $2, $2, $2)",
                )
                .bind(attempts)
                .bind(now)
                .execute(p)
                .await
                .is_ok()
        }
    };
    assert!(ok, "cannot write the ghost worker");
}

async fn a_job_rescued_past_its_attempts_is_given_up_with_the_reason(q: TestQueue) {
    // Its worker stopped heartbeating an hour ago, during its last allowed attempt.
    ghost_with_job(&q, 3600, 1).await;
    let w = q.start(2, fast_config());
    let j = q.wait_state("01JGH0STGH0STGH0STGH0STGH0", "dead", 10).await;
    assert_eq!(j.job.attempts, 2);
    let reason = j.job.last_error.clone().unwrap_or_default();
    assert!(
        reason.starts_with("gave up after attempt 2 of 2, which ended without a result")
            && reason.ends_with("(worker ghost)"),
        "{reason}"
    );
    assert_eq!(j.history.last().map(|a| a.outcome.as_str()), Some("lost"));
    // Given up, it never runs again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(q.ledger("ghost").await, (0, 0));
    assert!(
        admin::live_workers(&q.db, Duration::from_secs(7200))
            .await
            .expect("workers")
            .iter()
            .all(|w| w.id != "ghost")
    );
    w.stop().await.expect("stop");
}

/// Postgres finds a crashed process by its session, long before its heartbeat expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_session_is_gone_is_rescued_before_its_heartbeat_expires() {
    let Some(q) = common::setup(Backend::Postgres).await else {
        return;
    };
    let config = QueueConfig {
        missed_heartbeats: 300, // 60 s
        ..fast_config()
    };
    let w = q.start(2, config);
    // Wait until the rescuer's own session is on record, then the ghost heartbeats "now".
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin::live_workers(&q.db, Duration::from_secs(5))
        .await
        .expect("workers")
        .len()
        < 2
    {
        assert!(Instant::now() < deadline, "workers did not register");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    ghost_with_job(&q, 0, 0).await;
    let put = Instant::now();
    let j = q.wait_state("01JGH0STGH0STGH0STGH0STGH0", "done", 10).await;
    assert!(
        put.elapsed() < Duration::from_secs(5),
        "rescued after {:?}",
        put.elapsed()
    );
    let outcomes: Vec<&str> = j.history.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["lost", "done"]);
    w.stop().await.expect("stop");
}

async fn running_started_at(q: &TestQueue) -> Vec<i64> {
    admin::list(
        &q.db,
        &admin::JobFilter {
            state: Some(issuesync_queue::Shown::Running),
            ..Default::default()
        },
        1000,
    )
    .await
    .expect("list")
    .iter()
    .filter_map(|j| j.started_at.map(|t| t.timestamp_micros()))
    .collect()
}

async fn a_worker_fetches_as_many_jobs_as_it_has_free_slots_in_one_statement(q: TestQueue) {
    for _ in 0..30 {
        q.enqueue(&Probe {
            marker: "slots".into(),
            sleep_ms: 700,
            ..Default::default()
        })
        .await;
    }
    // No prefetch: 8 slots, 8 jobs taken by one statement (they share its start time).
    let w = q.start(8, fast_config());
    q.wait_ledger("slots", 8, 10).await;
    let held = running_started_at(&q).await;
    assert_eq!(held.len(), 8, "{held:?}");
    assert!(
        held.iter().all(|t| *t == held[0]),
        "not one statement: {held:?}"
    );
    w.stop().await.expect("stop");
    // Prefetch bound above the concurrency: 12 held, 8 running.
    let w = q.start(
        8,
        QueueConfig {
            fetch_batch_size: 12,
            ..fast_config()
        },
    );
    q.wait_ledger("slots", 16, 10).await;
    let held = running_started_at(&q).await;
    assert_eq!(held.len(), 12, "{held:?}");
    w.stop().await.expect("stop");
}

async fn a_graceful_stop_hands_prefetched_jobs_back_without_an_attempt(q: TestQueue) {
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(
            q.enqueue(&Probe {
                marker: "stop".into(),
                // Long enough that a loaded machine cannot finish all ten before the stop.
                sleep_ms: 1500,
                ..Default::default()
            })
            .await
            .id()
            .to_string(),
        );
    }
    let w = q.start(
        2,
        QueueConfig {
            fetch_batch_size: 8,
            ..fast_config()
        },
    );
    q.wait_ledger("stop", 2, 10).await;
    w.stop().await.expect("stop");
    let started = q.ledger("stop").await.0;
    let mut done = 0;
    for id in &ids {
        let j = q.show(id).await.job;
        match j.state.as_str() {
            "done" => done += 1,
            "pending" => {
                assert_eq!(j.attempts, 0, "an unstarted job lost an attempt");
                assert!(j.worker.is_none() && j.started_at.is_none(), "{j:?}");
            }
            other => panic!("job {id} is {other} after a graceful stop"),
        }
    }
    assert_eq!(
        done, started,
        "every started job finished before the stop returned"
    );
    assert!(done < 10, "nothing was left to hand back");
    assert!(
        admin::live_workers(&q.db, Duration::from_secs(60))
            .await
            .expect("workers")
            .is_empty()
    );
    let w = q.start(4, fast_config());
    for id in &ids {
        q.wait_state(id, "done", 20).await;
    }
    assert_eq!(q.ledger("stop").await, (10, 10));
    w.stop().await.expect("stop");
}

async fn a_job_due_before_the_fetch_cursor_does_not_wait_for_the_backlog(q: TestQueue) {
    let mut last = String::new();
    for _ in 0..400 {
        last = q
            .enqueue(&Probe {
                marker: "backlog".into(),
                sleep_ms: 10,
                ..Default::default()
            })
            .await
            .id()
            .to_string();
    }
    let w = q.start(4, fast_config());
    q.wait_ledger("backlog", 40, 10).await;
    // Due ten seconds ago: it sorts before everything the worker has fetched so far.
    let mut tx = q.db.begin().await.expect("begin");
    let early = chrono::Utc::now() - chrono::Duration::seconds(10);
    let behind = issuesync_queue::enqueue_at(
        &mut tx,
        &Probe {
            marker: "behind".into(),
            ..Default::default()
        },
        Some(early),
    )
    .await
    .expect("enqueue");
    tx.commit().await.expect("commit");
    let j = q.wait_state(behind.id(), "done", 10).await;
    let last = q.wait_state(&last, "done", 30).await;
    assert!(
        j.job.started_at < last.job.started_at,
        "the early job waited for the whole backlog"
    );
    w.stop().await.expect("stop");
}
