//! The persistent queue on each backend: pickup from another process, retries with backoff,
//! snoozes, operator retry/kill, dedup, graceful shutdown.

mod common;

use std::time::Duration;

use common::TestApp;
use issuesync::store::jobs::Enqueued;
use issuesync_jobs::noop::{Behaviour, Noop};
use serde_json::Value;

db_tests!(
    job_enqueued_by_another_process_runs,
    failing_job_backs_off_then_dies_with_its_error,
    rate_limited_job_snoozes_without_using_attempts,
    permanent_error_is_dead_at_once,
    operator_retry_runs_a_dead_job_again,
    operator_kill_stops_a_job,
    dedup_key_refuses_a_second_unfinished_job,
    sigterm_during_work_loses_nothing,
    sigterm_with_prefetch_loses_nothing,
    panicking_job_does_not_take_the_worker_down,
    enqueue_rolls_back_with_its_transaction,
);

fn noop(behaviour: Behaviour, ledger: &str) -> Noop {
    Noop {
        behaviour,
        ledger: Some(ledger.to_string()),
        ..Default::default()
    }
}

async fn job_enqueued_by_another_process_runs(app: TestApp) {
    let mut worker = app.spawn_child(&["work", "--queues", "maintenance"]);
    let r = app
        .enqueue(&noop(Behaviour::Succeed, "second-process"))
        .await;
    let j = app.wait_job_state(r.id(), "done", 20).await;
    assert_eq!(j.job.attempts, 1);
    assert_eq!(app.ledger("second-process").await, (1, 1));
    assert!(
        j.history[0].worker.starts_with("maintenance-"),
        "{:?}",
        j.history
    );
    // The child runs workers only for the queues it was given.
    assert!(worker.wait_exit(0).is_none(), "worker exited early");
}

async fn failing_job_backs_off_then_dies_with_its_error(app: TestApp) {
    let _w = app.start_workers();
    let r = app
        .enqueue(&noop(Behaviour::FailTransient, "backoff"))
        .await;
    let j = app.wait_job_state(r.id(), "dead", 30).await;
    assert_eq!((j.job.attempts, j.job.max_attempts), (3, 3));
    assert_eq!(j.job.last_error.as_deref(), Some("noop failed on purpose"));
    let outcomes: Vec<&str> = j.history.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["retry", "retry", "dead"]);
    // Delays grow: base 1 s then 2 s (times a jitter in [0.75, 1]; SQLite rounds up to 1 s).
    let gap1 = j.history[1].started_at - j.history[0].finished_at;
    let gap2 = j.history[2].started_at - j.history[1].finished_at;
    assert!(gap1 >= 700, "first retry after {gap1} ms");
    assert!(gap2 > gap1, "delays do not grow: {gap1} ms then {gap2} ms");
    assert_eq!(app.ledger("backoff").await, (3, 1));

    // `jobs show` prints the last error and the attempt history.
    let (code, out) = app.run_cli(&["jobs", "show", r.id(), "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(v["state"], "dead");
    assert_eq!(v["last_error"], "noop failed on purpose");
    assert_eq!(v["history"].as_array().map(Vec::len), Some(3));
    let (code, out) = app.run_cli(&["jobs", "show", r.id()]);
    assert_eq!(code, 0);
    assert!(out.contains("last error:  noop failed on purpose"), "{out}");
}

async fn rate_limited_job_snoozes_without_using_attempts(app: TestApp) {
    let _w = app.start_workers();
    let job = Noop {
        behaviour: Behaviour::RateLimitedTimes(2),
        retry_after_secs: 1,
        ledger: Some("snooze".into()),
        ..Default::default()
    };
    let r = app.enqueue(&job).await;
    let j = app.wait_job_state(r.id(), "done", 20).await;
    let outcomes: Vec<&str> = j.history.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["snoozed", "snoozed", "done"]);
    assert_eq!(j.job.attempts, 1, "snoozes used attempts");
    assert_eq!(j.job.max_attempts, 3);
    // Each snooze waited for its Retry-After.
    for w in j.history.windows(2) {
        assert!(
            w[1].started_at - w[0].finished_at >= 900,
            "ran again after {} ms",
            w[1].started_at - w[0].finished_at
        );
    }
}

async fn permanent_error_is_dead_at_once(app: TestApp) {
    let _w = app.start_workers();
    let r = app.enqueue(&noop(Behaviour::FailPermanent, "perm")).await;
    let j = app.wait_job_state(r.id(), "dead", 20).await;
    assert_eq!(j.job.attempts, 1);
    assert_eq!(
        j.job.last_error.as_deref(),
        Some("noop failed permanently on purpose")
    );
    assert_eq!(app.ledger("perm").await, (1, 1));
}

async fn operator_retry_runs_a_dead_job_again(app: TestApp) {
    let w = app.start_workers();
    let r = app
        .enqueue(&noop(Behaviour::FailPermanent, "retry-me"))
        .await;
    app.wait_job_state(r.id(), "dead", 20).await;
    let (code, out) = app.run_cli(&["jobs", "retry", r.id()]);
    assert_eq!((code, out.trim()), (0, "retried 1 job(s)"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while app.ledger("retry-me").await.0 < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "retried job did not run"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let j = app.wait_job_state(r.id(), "dead", 20).await;
    assert_eq!(j.job.attempts, 1, "attempts were reset by the retry");
    w.stop().await;

    // Bulk retry by state through the API, of a dead job that now succeeds.
    let r2 = app
        .enqueue(&Noop {
            dedup: Some("x".into()),
            ..Noop::default()
        })
        .await;
    app.run_cli(&["jobs", "kill", r2.id()]);
    assert_eq!(app.job(r2.id()).await.job.state, "dead");
    let (s, v) = app
        .post(
            "/jobs/retry",
            serde_json::json!({"state": "dead", "queue": "maintenance"}),
        )
        .await;
    assert_eq!((s, v["retried"].as_i64()), (200, Some(2)));
    let _w = app.start_workers();
    app.wait_job_state(r2.id(), "done", 20).await;
}

async fn operator_kill_stops_a_job(app: TestApp) {
    let _w = app.start_workers();
    let mut tx = app.state.db.begin().await.unwrap();
    let later = chrono::Utc::now() + chrono::Duration::seconds(2);
    let r = issuesync::store::enqueue::enqueue_at(
        &mut tx,
        &noop(Behaviour::Succeed, "killed"),
        Some(later),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(app.job(r.id()).await.job.state, "scheduled");
    let (code, out) = app.run_cli(&["jobs", "kill", r.id(), "--reason", "bad data"]);
    assert_eq!((code, out.trim()), (0, "killed 1 job(s)"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let j = app.job(r.id()).await;
    assert_eq!(j.job.state, "dead");
    assert_eq!(j.job.last_error.as_deref(), Some("bad data"));
    assert_eq!(app.ledger("killed").await, (0, 0), "a killed job ran");
    // Unknown ids and bad usage are clear errors.
    let (code, _) = app.run_cli(&["jobs", "show", "01AAAAAAAAAAAAAAAAAAAAAAAA"]);
    assert_eq!(code, 1);
    let (code, _) = app.run_cli(&["jobs", "retry"]);
    assert_eq!(code, 1);
}

async fn dedup_key_refuses_a_second_unfinished_job(app: TestApp) {
    let job = Noop {
        dedup: Some("once".into()),
        ledger: Some("dedup".into()),
        ..Default::default()
    };
    let first = app.enqueue(&job).await;
    let second = app.enqueue(&job).await;
    assert!(matches!(first, Enqueued::New(_)));
    assert_eq!(second, Enqueued::Duplicate(first.id().to_string()));
    let (s, v) = app
        .post(
            "/jobs",
            serde_json::json!({"job": "noop", "args": {"dedup": "once"}}),
        )
        .await;
    assert_eq!(
        (s, v["result"].as_str(), v["id"].as_str()),
        (200, Some("duplicate"), Some(first.id()))
    );
    let _w = app.start_workers();
    app.wait_job_state(first.id(), "done", 20).await;
    // Once finished, the key is free again.
    let third = app.enqueue(&job).await;
    assert!(matches!(third, Enqueued::New(ref id) if id != first.id()));
    app.wait_job_state(third.id(), "done", 20).await;
    assert_eq!(app.ledger("dedup").await, (2, 2));
}

async fn sigterm_during_work_loses_nothing(app: TestApp) {
    sigterm_loses_nothing(app, 1).await;
}

/// With prefetching, the jobs fetched but not started at SIGTERM go back without an attempt.
async fn sigterm_with_prefetch_loses_nothing(app: TestApp) {
    sigterm_loses_nothing(app, 8).await;
}

async fn sigterm_loses_nothing(app: TestApp, fetch_batch: usize) {
    let mut ids = Vec::new();
    for _ in 0..12 {
        let job = Noop {
            sleep_ms: 800,
            ledger: Some("sigterm".into()),
            ..Default::default()
        };
        ids.push(app.enqueue(&job).await.id().to_string());
    }
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_issuesync"));
    cmd.args(["work", "--queues", "maintenance", "--concurrency", "3"])
        .envs(app.child_env())
        .env("ISSUESYNC_QUEUE__FETCH_BATCH_SIZE", fetch_batch.to_string())
        .stdout(std::process::Stdio::null());
    let mut worker = common::Child(cmd.spawn().expect("spawn issuesync"));
    // Let it start some jobs, then ask it to stop.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while app.ledger("sigterm").await.0 < 3 {
        assert!(std::time::Instant::now() < deadline, "worker did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.signal("TERM");
    let status = worker
        .wait_exit(20)
        .expect("worker did not exit after SIGTERM");
    assert!(status.success(), "{status:?}");
    let started = app.ledger("sigterm").await.0;
    let mut done = 0;
    for id in &ids {
        let j = app.job(id).await;
        match j.job.state.as_str() {
            "done" => done += 1,
            "pending" => assert_eq!(j.job.attempts, 0, "an unstarted job lost an attempt"),
            other => panic!("job {id} is {other} after a graceful stop"),
        }
    }
    assert_eq!(done, started, "every started job finished before exit");
    // Another worker finishes the rest; nothing ran twice.
    let _w = app.start_workers();
    for id in &ids {
        app.wait_job_state(id, "done", 30).await;
    }
    assert_eq!(app.ledger("sigterm").await, (12, 12));
}

async fn panicking_job_does_not_take_the_worker_down(app: TestApp) {
    let _w = app.start_workers();
    let bad = app.enqueue(&noop(Behaviour::Panic, "panic")).await;
    let good = app.enqueue(&noop(Behaviour::Succeed, "after-panic")).await;
    app.wait_job_state(good.id(), "done", 20).await;
    let j = app.wait_job_state(bad.id(), "dead", 30).await;
    assert_eq!(j.job.attempts, 3);
    assert_eq!(
        j.job.last_error.as_deref(),
        Some("panicked: noop panicked on purpose")
    );
    let again = app.enqueue(&noop(Behaviour::Succeed, "after-panic")).await;
    app.wait_job_state(again.id(), "done", 20).await;
}

async fn enqueue_rolls_back_with_its_transaction(app: TestApp) {
    let mut tx = app.state.db.begin().await.unwrap();
    let r = issuesync::store::enqueue::enqueue(&mut tx, &noop(Behaviour::Succeed, "rollback"))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let mut tx = app.state.db.begin().await.unwrap();
    assert!(
        issuesync::store::jobs::find_job(&mut tx, r.id())
            .await
            .unwrap()
            .is_none()
    );
}
