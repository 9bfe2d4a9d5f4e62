//! The W3C `traceparent` of the enqueuing span: stored with the job, shown to operators,
//! handed to the handler, kept by a coalescing enqueue, and refused when the queue would not
//! store it.

mod common;

use common::{Latest, Probe, TestQueue, fast_config};
use issuesync_queue::{AfterInsert, Enqueued, NewJob, QueueError, admin, enqueue_job};

both!(
    the_handler_and_operators_see_the_traceparent,
    an_invalid_traceparent_is_refused,
    coalescing_keeps_the_newest_traceparent,
);

const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TP2: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn enqueue_new(q: &TestQueue, job: NewJob) -> Result<Enqueued, QueueError> {
    let mut tx = q.db.begin().await.expect("begin");
    let r = enqueue_job(&mut tx, job).await;
    tx.commit().await.expect("commit");
    r
}

fn probe(marker: &str) -> NewJob {
    NewJob::of(&Probe {
        marker: marker.into(),
        ..Default::default()
    })
    .expect("job")
}

async fn the_handler_and_operators_see_the_traceparent(q: TestQueue) {
    let traced = enqueue_new(&q, probe("tp").traceparent(Some(TP.into())))
        .await
        .expect("enqueue");
    let untraced = enqueue_new(&q, probe("no-tp")).await.expect("enqueue");

    let shown = q.show(traced.id()).await.job;
    assert_eq!(shown.traceparent.as_deref(), Some(TP));
    assert_eq!(q.show(untraced.id()).await.job.traceparent, None);
    let listed = admin::list(&q.db, &admin::JobFilter::default(), 10)
        .await
        .expect("list");
    let row = listed.iter().find(|j| j.id == traced.id()).expect("listed");
    assert_eq!(row.traceparent.as_deref(), Some(TP));

    let w = q.start(2, fast_config());
    q.wait_state(traced.id(), "done", 10).await;
    q.wait_state(untraced.id(), "done", 10).await;
    w.stop().await.expect("stop");
    assert_eq!(
        q.ledger_traceparents("tp").await,
        vec![Some(TP.to_string())]
    );
    assert_eq!(q.ledger_traceparents("no-tp").await, vec![None]);
}

async fn an_invalid_traceparent_is_refused(q: TestQueue) {
    let too_long = format!("{TP}0");
    for bad in [too_long.as_str(), "", "00-abc\n", "00-é"] {
        let r = enqueue_new(&q, probe("bad").traceparent(Some(bad.into()))).await;
        assert!(
            matches!(&r, Err(QueueError::Invalid(m)) if m.contains("traceparent")),
            "{bad:?}: {r:?}"
        );
        assert!(
            AfterInsert::of(
                &Probe::default(),
                &ulid::Ulid::generate().to_string(),
                "row_id",
                None
            )
            .expect("job")
            .traceparent(Some(bad.into()))
            .is_err(),
            "{bad:?}"
        );
    }
    assert_eq!(q.count("SELECT COUNT(*) FROM queue_jobs").await, 0);
    // The longest valid one (55 characters) is stored as is.
    assert_eq!(TP.len(), 55);
    let ok = enqueue_new(&q, probe("ok").traceparent(Some(TP.into())))
        .await
        .expect("enqueue");
    assert_eq!(q.show(ok.id()).await.job.traceparent.as_deref(), Some(TP));
}

async fn coalescing_keeps_the_newest_traceparent(q: TestQueue) {
    let latest = |value| {
        NewJob::of(&Latest {
            key: "k".into(),
            value,
            sleep_ms: 0,
        })
        .expect("job")
    };
    let first = enqueue_new(&q, latest(1).traceparent(Some(TP.into())))
        .await
        .expect("enqueue");
    let id = first.id().to_string();
    // The newest payload runs, so the trace of the change that wrote it is the one continued.
    assert_eq!(
        enqueue_new(&q, latest(2).traceparent(Some(TP2.into())))
            .await
            .expect("enqueue"),
        Enqueued::Coalesced(id.clone())
    );
    assert_eq!(q.show(&id).await.job.traceparent.as_deref(), Some(TP2));
    // An enqueue without a trace does not erase the one the job has.
    assert_eq!(
        enqueue_new(&q, latest(3)).await.expect("enqueue"),
        Enqueued::Coalesced(id.clone())
    );
    let j = q.show(&id).await.job;
    assert_eq!(j.payload_json()["value"], 3);
    assert_eq!(j.traceparent.as_deref(), Some(TP2));
}
