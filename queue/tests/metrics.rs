//! The metrics reads, over rows seeded with known states and times: every count is exact,
//! so a query that picks the wrong rows, buckets or order fails.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::TestQueue;
use issuesync_queue::admin;
use issuesync_queue::{BucketCount, Db, OutcomeCount, ReasonCount};

both!(metrics_count_exactly_what_happened);

/// A job row as the queue would have left it.
struct Seed {
    id: &'static str,
    queue: &'static str,
    state: &'static str,
    run_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    dedup_key: Option<&'static str>,
    last_error: Option<&'static str>,
}

async fn job(db: &Db, s: Seed) {
    let holder = (s.state == "running").then_some("w-1");
    let ms = |t: DateTime<Utc>| t.timestamp_millis();
    match db {
        Db::Pg(p) => sqlx::query(
            "INSERT INTO queue_jobs (id, queue, kind, payload, state, run_at, max_attempts, dedup_key, \
             holder, started_at, finished_at, last_error) VALUES ($1, $2, 'probe', '\\x7b7d', $3, $4, 3, $5, $6, $7, $8, $9)",
        )
        .bind(s.id)
        .bind(s.queue)
        .bind(s.state)
        .bind(s.run_at)
        .bind(s.dedup_key)
        .bind(holder)
        .bind(s.started_at)
        .bind(s.finished_at)
        .bind(s.last_error)
        .execute(p)
        .await
        .map(|_| ()),
        Db::Sqlite(p) => sqlx::query(
            "INSERT INTO queue_jobs (id, queue, kind, payload, state, run_at, max_attempts, dedup_key, \
             holder, started_at, finished_at, last_error, created_at) \
             VALUES ($1, $2, 'probe', X'7B7D', $3, $4, 3, $5, $6, $7, $8, $9, $4)",
        )
        .bind(s.id)
        .bind(s.queue)
        .bind(s.state)
        .bind(ms(s.run_at))
        .bind(s.dedup_key)
        .bind(holder)
        .bind(s.started_at.map(ms))
        .bind(s.finished_at.map(ms))
        .bind(s.last_error)
        .execute(p)
        .await
        .map(|_| ()),
    }
    .expect("seed job");
}

async fn attempt(db: &Db, job_id: &str, outcome: &str, error: &str, finished_at: DateTime<Utc>) {
    match db {
        Db::Pg(p) => sqlx::query(
            "INSERT INTO queue_attempts (job_id, attempt, outcome, error, finished_at) VALUES ($1, 1, $2, $3, $4)",
        )
        .bind(job_id)
        .bind(outcome)
        .bind(error)
        .bind(finished_at)
        .execute(p)
        .await
        .map(|_| ()),
        Db::Sqlite(p) => sqlx::query(
            "INSERT INTO queue_attempts (job_id, attempt, outcome, error, finished_at) VALUES ($1, 1, $2, $3, $4)",
        )
        .bind(job_id)
        .bind(outcome)
        .bind(error)
        .bind(finished_at.timestamp_millis())
        .execute(p)
        .await
        .map(|_| ()),
    }
    .expect("seed attempt");
}

fn seed(id: &'static str, queue: &'static str, state: &'static str, run_at: DateTime<Utc>) -> Seed {
    Seed {
        id,
        queue,
        state,
        run_at,
        started_at: None,
        finished_at: None,
        dedup_key: None,
        last_error: None,
    }
}

fn bucket(bucket: i64, outcome: &str, count: i64) -> BucketCount {
    BucketCount {
        bucket,
        outcome: outcome.into(),
        count,
    }
}

async fn metrics_count_exactly_what_happened(q: TestQueue) {
    let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("now");
    let t0 = now - chrono::Duration::hours(1);
    let m = |min: i64| t0 + chrono::Duration::minutes(min);
    let db = &q.db;
    let done = |id, queue, at| Seed {
        started_at: Some(at),
        finished_at: Some(at),
        ..seed(id, queue, "done", at)
    };
    // Queue a: two successes in the window and one before it, a failed job waiting for its
    // retry (due), a dead one (a retry, then dead), a scheduled one that snoozed, a running
    // one, and a killed one with a key.
    job(db, done("A1", "a", m(1))).await;
    job(db, done("A2", "a", m(25))).await;
    job(db, done("A3", "a", m(-5))).await;
    job(
        db,
        Seed {
            started_at: Some(m(11)),
            last_error: Some("e1"),
            ..seed("A4", "a", "failed", now - chrono::Duration::seconds(1))
        },
    )
    .await;
    attempt(db, "A4", "retry", "e1", m(12)).await;
    job(
        db,
        Seed {
            started_at: Some(m(30)),
            finished_at: Some(m(31)),
            last_error: Some("gone"),
            dedup_key: Some("k:2"),
            ..seed("A5", "a", "dead", m(30))
        },
    )
    .await;
    attempt(db, "A5", "retry", "e2", m(21)).await;
    attempt(db, "A5", "dead", "gone", m(31)).await;
    job(
        db,
        seed("A6", "a", "pending", now + chrono::Duration::hours(1)),
    )
    .await;
    attempt(db, "A6", "snoozed", "rate limited: github", m(2)).await;
    attempt(db, "A6", "snoozed", "rate limited: github", m(3)).await;
    attempt(db, "A6", "snoozed", "rate limited: jira", m(40)).await;
    attempt(db, "A6", "snoozed", "rate limited: old", m(-1)).await;
    job(
        db,
        Seed {
            started_at: Some(now),
            ..seed("A7", "a", "running", m(59))
        },
    )
    .await;
    job(
        db,
        Seed {
            finished_at: Some(m(50)),
            last_error: Some("killed by an operator"),
            dedup_key: Some("k:1"),
            ..seed("A8", "a", "dead", m(45))
        },
    )
    .await;
    // Queue b: a job due for ten minutes, a failed one waiting for a later retry, a success.
    job(
        db,
        seed("B1", "b", "pending", now - chrono::Duration::minutes(10)),
    )
    .await;
    job(
        db,
        seed("B2", "b", "failed", now + chrono::Duration::hours(1)),
    )
    .await;
    job(db, done("B3", "b", m(55))).await;
    // Queue c: only a running job; queue d: only a finished one.
    job(db, seed("C1", "c", "running", m(0))).await;
    job(db, done("D1", "d", m(-10))).await;

    // Buckets of 10 minutes from t0.
    assert_eq!(
        admin::attempts_by_bucket(db, t0, Duration::from_secs(600))
            .await
            .expect("buckets"),
        vec![
            bucket(0, "done", 1),
            bucket(0, "snoozed", 2),
            bucket(1, "retry", 1),
            bucket(2, "done", 1),
            bucket(2, "retry", 1),
            bucket(3, "dead", 1),
            bucket(4, "snoozed", 1),
            bucket(5, "done", 1),
        ]
    );
    assert!(
        admin::attempts_by_bucket(db, t0, Duration::ZERO)
            .await
            .is_err()
    );

    assert_eq!(
        admin::snoozes_since(db, t0).await.expect("snoozes"),
        vec![
            ReasonCount {
                reason: Some("rate limited: github".into()),
                count: 2
            },
            ReasonCount {
                reason: Some("rate limited: jira".into()),
                count: 1
            },
        ]
    );

    let oc = |queue: &str, outcome: &str, count| OutcomeCount {
        queue: queue.into(),
        outcome: outcome.into(),
        count,
    };
    assert_eq!(
        admin::attempts_since(db, t0).await.expect("since"),
        vec![
            oc("a", "dead", 1),
            oc("a", "done", 2),
            oc("a", "retry", 2),
            oc("a", "snoozed", 3),
            oc("b", "done", 1),
        ]
    );

    // The first finish counts attempt rows too, not only successes.
    let first = |since| async move { admin::first_finish_since(db, since).await.expect("first") };
    assert_eq!(first(t0).await, Some(m(1)));
    assert_eq!(first(m(26)).await, Some(m(31)));
    assert_eq!(first(m(56)).await, None);

    let ages = admin::oldest_due_age(db).await.expect("ages");
    assert_eq!(ages.keys().collect::<Vec<_>>(), vec!["a", "b"]);
    assert!((0.5..60.0).contains(&ages["a"]), "{ages:?}");
    assert!((599.0..660.0).contains(&ages["b"]), "{ages:?}");

    for (queue, n) in [("a", 3), ("b", 2), ("c", 1), ("d", 0), ("nope", 0)] {
        assert_eq!(
            admin::count_unfinished(db, queue).await.expect("count"),
            n,
            "{queue}"
        );
        assert_eq!(
            admin::any_unfinished(db, queue).await.expect("any"),
            n > 0,
            "{queue}"
        );
    }

    let ids = |rows: Vec<issuesync_queue::JobRow>| {
        rows.into_iter()
            .map(|r| (r.id, r.state, r.last_error))
            .collect::<Vec<_>>()
    };
    let row = |id: &str, state: &str, err: &str| {
        (id.to_string(), state.to_string(), Some(err.to_string()))
    };
    assert_eq!(
        ids(admin::recent_failures(db, "a", None, 10)
            .await
            .expect("failures")),
        vec![
            row("A8", "dead", "killed by an operator"),
            row("A5", "dead", "gone"),
            row("A4", "failed", "e1"),
        ]
    );
    assert_eq!(
        ids(admin::recent_failures(db, "a", None, 1)
            .await
            .expect("failures")),
        vec![row("A8", "dead", "killed by an operator")]
    );
    let keys = vec!["k:2".to_string(), "k:9".to_string()];
    assert_eq!(
        ids(admin::recent_failures(db, "a", Some(&keys), 10)
            .await
            .expect("failures")),
        vec![row("A5", "dead", "gone")]
    );
    assert!(
        admin::recent_failures(db, "a", Some(&[]), 10)
            .await
            .expect("failures")
            .is_empty()
    );
    assert_eq!(
        admin::recent_failures(db, "b", None, 10)
            .await
            .expect("failures")
            .len(),
        1
    );
}
