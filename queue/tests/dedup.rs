//! Dedup keys and coalescing, typed and through the registry's untyped enqueue (what the
//! admin API uses), and what enqueue refuses.

mod common;

use std::time::Duration;

use common::{Latest, Probe, TestQueue, fast_config};
use issuesync_queue::{Enqueued, NewJob, QueueError, admin};
use serde_json::json;

both!(
    a_dedup_key_refuses_a_second_unfinished_job_until_the_first_is_done,
    a_coalescing_job_replaces_a_waiting_one_and_queues_behind_a_running_one,
    the_registry_enqueue_dedups_and_coalesces_like_a_typed_one,
    enqueue_refuses_bad_ids_names_keys_and_payloads,
);

async fn a_dedup_key_refuses_a_second_unfinished_job_until_the_first_is_done(q: TestQueue) {
    let job = Probe {
        marker: "dedup".into(),
        dedup: Some("once".into()),
        ..Default::default()
    };
    let first = q.enqueue(&job).await;
    assert!(matches!(first, Enqueued::New(_)));
    let second = q.enqueue(&job).await;
    assert_eq!(second, Enqueued::Duplicate(first.id().to_string()));
    // Held while it runs too.
    let w = q.start(2, fast_config());
    q.wait_state(first.id(), "done", 10).await;
    // Finished, the key is free again; the finished job keeps it for operators to see.
    let third = q.enqueue(&job).await;
    assert!(
        matches!(third, Enqueued::New(ref id) if id != first.id()),
        "{third:?}"
    );
    assert_eq!(
        q.show(first.id()).await.job.dedup_key.as_deref(),
        Some("once")
    );
    q.wait_state(third.id(), "done", 10).await;
    assert_eq!(q.ledger("dedup").await, (2, 2));
    w.stop().await.expect("stop");
}

async fn a_coalescing_job_replaces_a_waiting_one_and_queues_behind_a_running_one(q: TestQueue) {
    let latest = |value: i64, sleep_ms: u64| Latest {
        key: "k".into(),
        value,
        sleep_ms,
    };
    // Waiting: the holder takes the newest payload.
    let first = q.enqueue(&latest(1, 1500)).await;
    assert!(matches!(first, Enqueued::New(_)));
    let second = q.enqueue(&latest(2, 1500)).await;
    assert_eq!(second, Enqueued::Coalesced(first.id().to_string()));
    // One slot, so that what queues behind the running job waits for it.
    let w = q.start(1, fast_config());
    q.wait_ledger("k", 1, 10).await;
    assert_eq!(q.ledger_values("k").await, [2]);
    // Running: a new job queues behind it with the newest payload, and later ones coalesce
    // into that one.
    let behind = q.enqueue(&latest(3, 0)).await;
    assert!(
        matches!(behind, Enqueued::New(ref id) if id != first.id()),
        "{behind:?}"
    );
    let again = q.enqueue(&latest(4, 0)).await;
    assert_eq!(again, Enqueued::Coalesced(behind.id().to_string()));
    q.wait_state(first.id(), "done", 10).await;
    q.wait_state(behind.id(), "done", 10).await;
    let values = q.ledger_values("k").await;
    assert_eq!(values.first(), Some(&2));
    assert_eq!(
        values.last(),
        Some(&4),
        "the last run saw the newest payload: {values:?}"
    );
    assert_eq!(values.len(), 2, "{values:?}");
    w.stop().await.expect("stop");
}

async fn the_registry_enqueue_dedups_and_coalesces_like_a_typed_one(q: TestQueue) {
    let mut tx = q.db.begin().await.expect("begin");
    let args = |v: i64| json!({"key": "r", "value": v});
    let a = q
        .registry
        .enqueue_json(&mut tx, "latest", &args(1), None)
        .await
        .expect("enqueue");
    let b = q
        .registry
        .enqueue_json(&mut tx, "latest", &args(2), None)
        .await
        .expect("enqueue");
    assert!(matches!(a, Enqueued::New(_)));
    assert_eq!(b, Enqueued::Coalesced(a.id().to_string()));
    let p = json!({"marker": "reg", "dedup": "d"});
    let c = q
        .registry
        .enqueue_json(&mut tx, "probe", &p, None)
        .await
        .expect("enqueue");
    let d = q
        .registry
        .enqueue_json(&mut tx, "probe", &p, None)
        .await
        .expect("enqueue");
    assert_eq!(d, Enqueued::Duplicate(c.id().to_string()));
    // Unknown kinds and args that do not fit are refused with a reason.
    let e = q.registry.enqueue_json(&mut tx, "nope", &p, None).await;
    assert!(
        matches!(e, Err(QueueError::Invalid(ref m)) if m.contains("unknown job kind \"nope\"")),
        "{e:?}"
    );
    let e = q
        .registry
        .enqueue_json(&mut tx, "latest", &json!({"key": 5}), None)
        .await;
    assert!(
        matches!(e, Err(QueueError::Invalid(ref m)) if m.starts_with("bad args for latest")),
        "{e:?}"
    );
    tx.commit().await.expect("commit");
    let j = q.show(a.id()).await;
    assert_eq!(j.job.payload_json()["value"], 2);
    assert_eq!(j.job.dedup_key.as_deref(), Some("latest:r"));
    let w = q.start(2, fast_config());
    q.wait_state(a.id(), "done", 10).await;
    q.wait_state(c.id(), "done", 10).await;
    assert_eq!(q.ledger_values("r").await, [2]);
    w.stop().await.expect("stop");
}

async fn enqueue_refuses_bad_ids_names_keys_and_payloads(q: TestQueue) {
    let good = || {
        NewJob::of(&Probe {
            marker: "x".into(),
            ..Default::default()
        })
        .expect("row")
    };
    let cases: Vec<(NewJob, &str)> = vec![
        (
            NewJob {
                id: "job-1".into(),
                ..good()
            },
            "is not a ULID",
        ),
        (
            NewJob {
                queue: "".into(),
                ..good()
            },
            "queue",
        ),
        (
            NewJob {
                kind: "a b".into(),
                ..good()
            },
            "job kind",
        ),
        (
            NewJob {
                dedup_key: Some("a\0b".into()),
                ..good()
            },
            "dedup key",
        ),
        (
            NewJob {
                partition_key: Some("".into()),
                ..good()
            },
            "partition key",
        ),
        (
            NewJob {
                max_attempts: 0,
                ..good()
            },
            "max attempts",
        ),
        (
            NewJob {
                payload: b"{not json".to_vec(),
                ..good()
            },
            "not JSON",
        ),
    ];
    for (job, why) in cases {
        let mut tx = q.db.begin().await.expect("begin");
        let r = issuesync_queue::enqueue_job(&mut tx, job).await;
        assert!(
            matches!(r, Err(QueueError::Invalid(ref m)) if m.contains(why)),
            "{why}: {r:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        admin::list(&q.db, &Default::default(), 10)
            .await
            .expect("list")
            .is_empty()
    );
}
