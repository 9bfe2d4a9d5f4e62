//! Operator queries on each backend: list with filters and paging, show, retry (one and by
//! filter, with dedup keys), kill by filter, purge by age, stats, dashboard counts, live
//! workers and saved progress.

mod common;

use std::time::Duration;

use common::{Behaviour, Probe, TestQueue, fast_config};
use issuesync_queue::admin::{self, JobFilter};
use issuesync_queue::{Enqueued, Shown, State};
use serde::{Deserialize, Serialize};

both!(
    operators_list_retry_kill_purge_and_count,
    progress_is_saved_per_job
);

fn probe(marker: &str, behaviour: Behaviour, dedup: Option<&str>) -> Probe {
    Probe {
        marker: marker.into(),
        behaviour,
        dedup: dedup.map(str::to_string),
        ..Default::default()
    }
}

fn state(s: Shown) -> JobFilter {
    JobFilter {
        state: Some(s),
        ..Default::default()
    }
}

async fn operators_list_retry_kill_purge_and_count(q: TestQueue) {
    let w = q.start(2, fast_config());
    let dead = q.enqueue(&probe("a", Behaviour::FailPermanent, None)).await;
    let done = q.enqueue(&probe("b", Behaviour::Succeed, None)).await;
    let keyed = q.enqueue(&probe("d", Behaviour::Succeed, Some("k"))).await;
    q.wait_state(dead.id(), "dead", 10).await;
    q.wait_state(done.id(), "done", 10).await;
    q.wait_state(keyed.id(), "done", 10).await;
    assert_eq!(
        admin::live_workers(&q.db, Duration::from_secs(5))
            .await
            .expect("workers")
            .len(),
        2
    );
    w.stop().await.expect("stop");
    assert!(
        admin::live_workers(&q.db, Duration::from_secs(5))
            .await
            .expect("workers")
            .is_empty()
    );

    let mut tx = q.db.begin().await.expect("begin");
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let scheduled =
        issuesync_queue::enqueue_at(&mut tx, &probe("c", Behaviour::Succeed, None), Some(later))
            .await
            .expect("enqueue");
    tx.commit().await.expect("commit");
    // A new holder of the finished job's key.
    let holder = q.enqueue(&probe("e", Behaviour::Succeed, Some("k"))).await;
    assert!(matches!(holder, Enqueued::New(_)));

    // Lists: by state, by partition, by ids, newest first with paging.
    let ids =
        |rows: Vec<issuesync_queue::JobRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(admin::list(&q.db, &state(Shown::Scheduled), 10)
            .await
            .expect("list")),
        [scheduled.id()]
    );
    assert_eq!(
        ids(admin::list(&q.db, &state(Shown::Pending), 10)
            .await
            .expect("list")),
        [holder.id()]
    );
    assert_eq!(
        ids(admin::list(&q.db, &state(Shown::Dead), 10)
            .await
            .expect("list")),
        [dead.id()]
    );
    let by_partition = JobFilter {
        partition: Some("marker:b".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(admin::list(&q.db, &by_partition, 10).await.expect("list")),
        [done.id()]
    );
    let all = ids(admin::list(&q.db, &JobFilter::default(), 10)
        .await
        .expect("list"));
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0] > w[1]), "newest first: {all:?}");
    let page = JobFilter {
        before: Some(all[1].clone()),
        ..Default::default()
    };
    assert_eq!(
        ids(admin::list(&q.db, &page, 2).await.expect("list")),
        all[2..4]
    );
    let chosen = JobFilter {
        ids: Some(vec![dead.id().into(), done.id().into(), "nope".into()]),
        ..Default::default()
    };
    assert_eq!(
        admin::list(&q.db, &chosen, 10).await.expect("list").len(),
        2
    );

    // Kill by filter, with a reason.
    assert_eq!(
        admin::kill(&q.db, &state(Shown::Scheduled), "not needed")
            .await
            .expect("kill"),
        1
    );
    let j = q.show(scheduled.id()).await;
    assert_eq!(
        (j.job.state.as_str(), j.job.last_error.as_deref()),
        ("dead", Some("not needed"))
    );

    // Retry by filter: the done ones run again; the keyed one without its key, which the
    // pending job holds.
    assert_eq!(
        admin::retry(&q.db, &state(Shown::Done))
            .await
            .expect("retry"),
        2
    );
    assert_eq!(q.show(keyed.id()).await.job.dedup_key, None);
    assert_eq!(
        q.show(holder.id()).await.job.dedup_key.as_deref(),
        Some("k")
    );
    assert!(admin::retry_one(&q.db, dead.id()).await.expect("retry"));
    let j = q.show(dead.id()).await;
    assert_eq!((j.job.state.as_str(), j.job.attempts), ("pending", 0));
    assert!(
        !admin::retry_one(&q.db, "01JN0SVCHJ0B0000000000000A")
            .await
            .expect("retry")
    );
    let w = q.start(2, fast_config());
    q.wait_state(done.id(), "done", 10).await;
    q.wait_state(keyed.id(), "done", 10).await;
    q.wait_state(holder.id(), "done", 10).await;
    let j = q.wait_state(dead.id(), "dead", 10).await;
    assert_eq!(j.job.attempts, 1, "attempts were reset by the retry");
    assert_eq!(q.ledger("a").await, (2, 1));
    assert_eq!(q.ledger("b").await, (2, 1));
    w.stop().await.expect("stop");

    // Stats and dashboard counts.
    let stats = admin::stats(&q.db).await.expect("stats");
    let count = |s: &str| {
        stats
            .counts
            .iter()
            .filter(|c| c.state == s)
            .map(|c| c.count)
            .sum::<i64>()
    };
    assert_eq!((count("done"), count("dead")), (3, 2));
    let outcome = |o: &str| {
        stats
            .last_hour
            .iter()
            .filter(|c| c.outcome == o)
            .map(|c| c.count)
            .sum::<i64>()
    };
    assert_eq!(outcome("done"), 3);
    assert_eq!(outcome("dead"), 2, "two failed runs of the dead job");
    let dash = admin::dashboard_counts(&q.db).await.expect("dashboard");
    assert_eq!(
        (dash["done"], dash["dead"], dash["pending"], dash["running"]),
        (3, 2, 0, 0)
    );

    // Purge: nothing is a day old; everything done is older than nothing.
    assert_eq!(
        admin::purge(&q.db, State::Done, Duration::from_secs(86_400))
            .await
            .expect("purge"),
        0
    );
    assert!(
        admin::purge(&q.db, State::Pending, Duration::ZERO)
            .await
            .is_err()
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        admin::purge(&q.db, State::Done, Duration::ZERO)
            .await
            .expect("purge"),
        3
    );
    assert_eq!(
        admin::purge(&q.db, State::Dead, Duration::ZERO)
            .await
            .expect("purge"),
        2
    );
    assert!(
        admin::list(&q.db, &JobFilter::default(), 10)
            .await
            .expect("list")
            .is_empty()
    );
    // The history went with the jobs.
    assert_eq!(q.count("SELECT COUNT(*) FROM queue_attempts").await, 0);
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Cursor {
    after: i64,
    pages: u32,
}

async fn progress_is_saved_per_job(q: TestQueue) {
    let job = q.enqueue(&probe("p", Behaviour::Succeed, None)).await;
    let other = q.enqueue(&probe("p", Behaviour::Succeed, None)).await;
    let mut tx = q.db.begin().await.expect("begin");
    assert_eq!(
        admin::find_progress::<Cursor>(&mut tx, job.id())
            .await
            .expect("find"),
        None
    );
    admin::save_progress(
        &mut tx,
        job.id(),
        &Cursor {
            after: 10,
            pages: 1,
        },
    )
    .await
    .expect("save");
    admin::save_progress(
        &mut tx,
        job.id(),
        &Cursor {
            after: 20,
            pages: 2,
        },
    )
    .await
    .expect("save");
    tx.commit().await.expect("commit");
    let mut tx = q.db.begin().await.expect("begin");
    let p = admin::find_progress::<Cursor>(&mut tx, job.id())
        .await
        .expect("find");
    assert_eq!(
        p,
        Some(Cursor {
            after: 20,
            pages: 2
        })
    );
    assert_eq!(
        admin::find_progress::<Cursor>(&mut tx, other.id())
            .await
            .expect("find"),
        None
    );
    // A progress that does not fit is an error, not a panic.
    assert!(
        admin::find_progress::<Vec<String>>(&mut tx, job.id())
            .await
            .is_err()
    );
}
