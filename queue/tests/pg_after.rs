//! Postgres: a row and its job in one statement (the receiver's "delivery + job" insert),
//! with the job's SQL from the crate. The job gets the new row's id in its args and in its
//! dedup key; when the row is not inserted (a duplicate delivery), no job is either.

mod common;

use common::{Backend, Probe, fast_config};
use issuesync_queue::AfterInsert;

const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_and_its_job_are_inserted_in_one_statement() {
    let Some(q) = common::setup(Backend::Postgres).await else {
        return;
    };
    let issuesync_queue::Db::Pg(pool) = &q.db else {
        unreachable!()
    };
    sqlx::query("CREATE TABLE test_rows (id BIGSERIAL PRIMARY KEY, key TEXT UNIQUE NOT NULL)")
        .execute(pool)
        .await
        .expect("table");
    let insert = |key: &'static str| {
        let id = ulid::Ulid::generate().to_string();
        let job = AfterInsert::of(
            &Probe {
                marker: "after".into(),
                ..Default::default()
            },
            &id,
            "row_id",
            Some("row:".into()),
        )
        .and_then(|j| j.traceparent(Some(TP.into())))
        .expect("job");
        async move {
            let sql = issuesync_queue::pg_enqueue_after!(
                "INSERT INTO test_rows (key) VALUES ($10) ON CONFLICT (key) DO NOTHING RETURNING id",
                "SELECT id FROM src"
            );
            let row: Option<i64> = job
                .bind(sqlx::query_scalar(sql))
                .bind(key)
                .fetch_optional(pool)
                .await
                .expect("insert");
            (row, id)
        }
    };
    let (row, job_id) = insert("first").await;
    let row = row.expect("a new row");
    let j = q.show(&job_id).await.job;
    assert_eq!(j.payload_json()["row_id"], row);
    assert_eq!(j.payload_json()["marker"], "after");
    assert_eq!(j.dedup_key, Some(format!("row:{row}")));
    assert_eq!(j.partition_key.as_deref(), Some("marker:after"));
    assert_eq!(j.traceparent.as_deref(), Some(TP));
    // A duplicate row: neither the row nor a job.
    let (again, other_id) = insert("first").await;
    assert_eq!(again, None);
    assert!(
        issuesync_queue::admin::show(&q.db, &other_id)
            .await
            .expect("show")
            .is_none()
    );
    // A bad id is refused before anything is written.
    assert!(AfterInsert::of(&Probe::default(), "nope", "row_id", None).is_err());
    let w = q.start(2, fast_config());
    q.wait_state(&job_id, "done", 10).await;
    assert_eq!(q.ledger("after").await, (1, 1));
    assert_eq!(
        q.ledger_traceparents("after").await,
        vec![Some(TP.to_string())]
    );
    w.stop().await.expect("stop");
}
