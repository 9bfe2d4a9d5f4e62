//! A row of any content is a dead job, never a stopped queue: rows written by raw SQL with a
//! payload that is not JSON or not UTF-8, an id that is not a ULID, an unknown kind, args that
//! do not fit (and on SQLite, text that is not UTF-8) each end dead with a reason naming the
//! problem, while the queue runs the other jobs and every operator query still answers.

mod common;

use common::{Probe, TestQueue, fast_config};
use issuesync_queue::admin::{self, JobFilter};
use issuesync_queue::{Db, Shown};

both!(bad_rows_end_dead_with_a_reason_and_the_queue_goes_on);

const PG_ROWS: &str = "
INSERT INTO queue_jobs (id, queue, kind, payload, max_attempts) VALUES
 ('01JBADR0WS00000000000NJS0N', 'tests', 'probe', convert_to('not json', 'UTF8'), 3),
 ('01JBADR0WS000000000000VTF8', 'tests', 'probe', decode('fffe7b7d', 'hex'), 3),
 ('job-1', 'tests', 'probe', convert_to('{\"marker\":\"bad-id\"}', 'UTF8'), 3),
 ('01JBADR0WS00000000000KND00', 'tests', 'nope', convert_to('{\"marker\":\"nope\"}', 'UTF8'), 3),
 ('01JBADR0WS00000000000F1T00', 'tests', 'probe', convert_to('{\"marker\":5}', 'UTF8'), 3);
";

const SQLITE_ROWS: &str = "
INSERT INTO queue_jobs (id, queue, kind, payload, max_attempts, run_at, created_at) VALUES
 ('01JBADR0WS00000000000NJS0N', 'tests', 'probe', CAST('not json' AS BLOB), 3, 0, 0),
 ('01JBADR0WS000000000000VTF8', 'tests', 'probe', X'FFFE7B7D', 3, 0, 0),
 ('job-1', 'tests', 'probe', CAST('{\"marker\":\"bad-id\"}' AS BLOB), 3, 0, 0),
 ('01JBADR0WS00000000000KND00', 'tests', 'nope', CAST('{\"marker\":\"nope\"}' AS BLOB), 3, 0, 0),
 ('01JBADR0WS00000000000F1T00', 'tests', 'probe', CAST('{\"marker\":5}' AS BLOB), 3, 0, 0),
 (CAST(X'FF4142' AS TEXT), 'tests', 'probe', CAST('{\"marker\":\"x\"}' AS BLOB), 3, 0, 0),
 ('01JBADR0WS00000000000K1ND8', 'tests', CAST(X'70726FFF' AS TEXT), CAST('{\"marker\":\"x\"}' AS BLOB), 3, 0, 0);
";

async fn bad_rows_end_dead_with_a_reason_and_the_queue_goes_on(q: TestQueue) {
    match &q.db {
        Db::Pg(p) => sqlx::raw_sql(PG_ROWS).execute(p).await.map(|_| ()),
        Db::Sqlite(p) => sqlx::raw_sql(SQLITE_ROWS).execute(p).await.map(|_| ()),
    }
    .expect("insert bad rows");
    let good = q
        .enqueue(&Probe {
            marker: "good".into(),
            ..Default::default()
        })
        .await;
    // Operator queries answer before anything ran, whatever the rows hold.
    let all = admin::list(&q.db, &JobFilter::default(), 100)
        .await
        .expect("list");
    let bad = if matches!(q.db, Db::Pg(_)) { 5 } else { 7 };
    assert_eq!(all.len(), bad + 1);
    let w = q.start(4, fast_config());
    q.wait_state(good.id(), "done", 10).await;
    let mut expect = vec![
        ("01JBADR0WS00000000000NJS0N", "its payload is not JSON"),
        ("01JBADR0WS000000000000VTF8", "its payload is not UTF-8"),
        ("job-1", "its id \"job-1\" is not a ULID"),
        (
            "01JBADR0WS00000000000KND00",
            "no handler for job kind \"nope\"",
        ),
        (
            "01JBADR0WS00000000000F1T00",
            "its payload does not fit job kind probe",
        ),
    ];
    if matches!(q.db, Db::Sqlite(_)) {
        expect.push(("01JBADR0WS00000000000K1ND8", "its kind is not UTF-8 text"));
    }
    for (id, why) in &expect {
        let j = q.wait_state(id, "dead", 10).await;
        let reason = j.job.last_error.clone().unwrap_or_default();
        assert!(reason.contains(why), "{id}: {reason}");
        assert_eq!(j.job.attempts, 1, "{id}");
    }
    let dead = JobFilter {
        state: Some(Shown::Dead),
        ..Default::default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while admin::list(&q.db, &dead, 100).await.expect("list").len() < bad {
        assert!(
            std::time::Instant::now() < deadline,
            "not every bad row is dead"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    if matches!(q.db, Db::Sqlite(_)) {
        let rows = admin::list(&q.db, &dead, 100).await.expect("list");
        let r = rows
            .iter()
            .find(|r| r.id.ends_with("AB"))
            .expect("the non-UTF-8 id, read lossily");
        assert!(
            r.last_error
                .as_deref()
                .unwrap_or("")
                .contains("its id is not UTF-8 text"),
            "{r:?}"
        );
    }
    // Searches, filters and counts still answer, over payloads of any bytes.
    let search = |s: &str| JobFilter {
        search: vec![s.to_string()],
        ..Default::default()
    };
    let hits = admin::list(&q.db, &search("\"marker\":\"good\""), 100)
        .await
        .expect("search");
    assert_eq!(
        hits.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        [good.id()]
    );
    assert_eq!(
        admin::list(&q.db, &search("not json"), 100)
            .await
            .expect("search")
            .len(),
        1
    );
    assert!(
        admin::list(&q.db, &search("é\u{fffd}"), 100)
            .await
            .expect("search")
            .is_empty()
    );
    let kind = JobFilter {
        kind: Some("nope".into()),
        ..Default::default()
    };
    assert_eq!(admin::list(&q.db, &kind, 100).await.expect("kind").len(), 1);
    let stats = admin::stats(&q.db).await.expect("stats");
    let dead_count: i64 = stats
        .counts
        .iter()
        .filter(|c| c.state == "dead")
        .map(|c| c.count)
        .sum();
    assert_eq!(dead_count, bad as i64);
    assert_eq!(
        admin::dashboard_counts(&q.db).await.expect("dashboard")["done"],
        1
    );
    // And the queue takes new work.
    let after = q
        .enqueue(&Probe {
            marker: "after".into(),
            ..Default::default()
        })
        .await;
    q.wait_state(after.id(), "done", 10).await;
    w.stop().await.expect("stop");
}
