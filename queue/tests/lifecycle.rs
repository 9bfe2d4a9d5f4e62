//! A job's life on each backend: done at once, retried with growing backoff then dead, snoozed
//! without using attempts, a panic or a timeout as a failure, scheduled to the millisecond,
//! rolled back with its transaction.

mod common;

use std::time::Duration;

use common::{Behaviour, Probe, TestQueue, fast_config};
use issuesync_queue::{Enqueued, admin};

both!(
    a_job_runs_once_and_is_done_without_a_history_row,
    a_failing_job_backs_off_then_dies_with_its_error,
    a_rate_limited_job_snoozes_without_using_attempts,
    a_panic_or_a_timeout_is_a_failed_attempt_and_the_worker_goes_on,
    a_scheduled_job_runs_at_its_millisecond,
    an_enqueue_rolls_back_with_its_transaction,
);

fn probe(marker: &str, behaviour: Behaviour) -> Probe {
    Probe {
        marker: marker.into(),
        behaviour,
        ..Default::default()
    }
}

async fn a_job_runs_once_and_is_done_without_a_history_row(q: TestQueue) {
    let w = q.start(4, fast_config());
    let r = q.enqueue(&probe("once", Behaviour::Succeed)).await;
    assert!(matches!(r, Enqueued::New(_)));
    let j = q.wait_state(r.id(), "done", 10).await;
    assert_eq!((j.job.attempts, j.job.snoozes), (1, 0));
    assert_eq!(q.ledger("once").await, (1, 1));
    assert_eq!(j.job.partition_key.as_deref(), Some("marker:once"));
    // The success is the job row itself: no attempt row was written for it.
    assert_eq!(q.count("SELECT COUNT(*) FROM queue_attempts").await, 0);
    assert_eq!(j.history.len(), 1);
    assert_eq!(j.history[0].outcome, "done");
    assert!(
        j.history[0]
            .worker
            .as_deref()
            .unwrap_or("")
            .starts_with("tests-")
    );
    assert!(j.job.started_at.is_some() && j.job.finished_at >= j.job.started_at);
    w.stop().await.expect("stop");
}

async fn a_failing_job_backs_off_then_dies_with_its_error(q: TestQueue) {
    let w = q.start(4, fast_config());
    let r = q.enqueue(&probe("backoff", Behaviour::FailTransient)).await;
    let j = q.wait_state(r.id(), "dead", 20).await;
    assert_eq!((j.job.attempts, j.job.max_attempts), (3, 3));
    assert_eq!(j.job.last_error.as_deref(), Some("probe failed on purpose"));
    let outcomes: Vec<&str> = j.history.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["retry", "retry", "dead"]);
    let attempts: Vec<i32> = j.history.iter().map(|a| a.attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    // Base 200 ms, then 400 ms (times a jitter in [0.75, 1]): the delays grow.
    let at = |i: usize| j.history[i].started_at.expect("started");
    let gap1 = (at(1) - j.history[0].finished_at).num_milliseconds();
    let gap2 = (at(2) - j.history[1].finished_at).num_milliseconds();
    assert!(gap1 >= 140, "first retry after {gap1} ms");
    assert!(gap2 > gap1, "delays do not grow: {gap1} ms then {gap2} ms");
    assert_eq!(q.ledger("backoff").await, (3, 1));
    w.stop().await.expect("stop");
}

async fn a_rate_limited_job_snoozes_without_using_attempts(q: TestQueue) {
    let w = q.start(4, fast_config());
    let job = Probe {
        marker: "snooze".into(),
        behaviour: Behaviour::RateLimitedTimes(2),
        retry_after_ms: 300,
        ..Default::default()
    };
    let r = q.enqueue(&job).await;
    let j = q.wait_state(r.id(), "done", 20).await;
    assert_eq!(
        (j.job.attempts, j.job.snoozes),
        (1, 2),
        "snoozes used attempts"
    );
    let outcomes: Vec<&str> = j.history.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["snoozed", "snoozed", "done"]);
    // Every run was the first attempt, and each snooze waited for its Retry-After.
    assert!(j.history.iter().all(|a| a.attempt == 1), "{:?}", j.history);
    for w in j.history.windows(2) {
        let waited = (w[1].started_at.expect("started") - w[0].finished_at).num_milliseconds();
        assert!(waited >= 280, "ran again after {waited} ms");
    }
    assert!(
        j.history[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("probe asked to wait")
    );
    w.stop().await.expect("stop");
}

async fn a_panic_or_a_timeout_is_a_failed_attempt_and_the_worker_goes_on(q: TestQueue) {
    let w = q.start(2, fast_config());
    let panics = q.enqueue(&probe("panic", Behaviour::Panic)).await;
    // Probe's timeout is 2 s.
    let slow = q
        .enqueue(&Probe {
            marker: "slow".into(),
            sleep_ms: 10_000,
            ..Default::default()
        })
        .await;
    let good = q.enqueue(&probe("good", Behaviour::Succeed)).await;
    q.wait_state(good.id(), "done", 10).await;
    let j = q.wait_state(panics.id(), "dead", 20).await;
    assert_eq!(j.job.attempts, 3);
    assert_eq!(
        j.job.last_error.as_deref(),
        Some("panicked: probe panicked on purpose")
    );
    let j = q.wait_state(slow.id(), "dead", 30).await;
    assert_eq!(j.job.last_error.as_deref(), Some("timed out after 2s"));
    assert_eq!(q.ledger("slow").await, (3, 1));
    // The worker still takes new work.
    let again = q.enqueue(&probe("good", Behaviour::Succeed)).await;
    q.wait_state(again.id(), "done", 10).await;
    w.stop().await.expect("stop");
}

async fn a_scheduled_job_runs_at_its_millisecond(q: TestQueue) {
    let w = q.start(2, fast_config());
    // A time that is not on a whole second.
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(1_337);
    let mut tx = q.db.begin().await.expect("begin");
    let r = issuesync_queue::enqueue_at(&mut tx, &probe("later", Behaviour::Succeed), Some(at))
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
    let j = q.show(r.id()).await;
    assert_eq!(j.job.state, "scheduled");
    assert_eq!(j.job.run_at.timestamp_millis(), at.timestamp_millis());
    let scheduled = admin::dashboard_counts(&q.db).await.expect("counts");
    assert_eq!(scheduled["scheduled"], 1);
    let j = q.wait_state(r.id(), "done", 10).await;
    let started = j.job.started_at.expect("started");
    let late = (started - at).num_milliseconds();
    assert!((0..400).contains(&late), "ran {late} ms after its time");
    w.stop().await.expect("stop");
}

async fn an_enqueue_rolls_back_with_its_transaction(q: TestQueue) {
    let w = q.start(2, fast_config());
    let mut tx = q.db.begin().await.expect("begin");
    let r = issuesync_queue::enqueue(&mut tx, &probe("rolled-back", Behaviour::Succeed))
        .await
        .expect("enqueue");
    tx.rollback().await.expect("rollback");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(admin::show(&q.db, r.id()).await.expect("show").is_none());
    assert_eq!(q.ledger("rolled-back").await, (0, 0));
    w.stop().await.expect("stop");
}
