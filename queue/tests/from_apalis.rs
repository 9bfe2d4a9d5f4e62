//! Existing deployments: apalis' schema (built by apalis' own migrations, plus the index
//! tuning our app applied on Postgres) with jobs in it, written as the app wrote them; the
//! move takes the unfinished ones into the queue's tables, drops apalis' tables, and the
//! jobs then run through the new backend.

mod common;

use common::{TestQueue, fast_config};
use issuesync_queue::Db;
use issuesync_queue::from_apalis::{self, Moved};

both!(unfinished_apalis_jobs_move_over_and_run);

const PG_OLD_JOBS: &str = "
INSERT INTO apalis.workers (id, worker_type, storage_name) VALUES ('tests-77-old-0', 'tests', 'sql');
INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, idempotency_key, last_result, lock_by) VALUES
 ('01JAPA11S000000000000PEND0', 'tests', convert_to('{\"job\":\"probe\",\"args\":{\"marker\":\"m\",\"dedup\":\"key-1\"},\"traceparent\":\"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\"}', 'UTF8'), 'Pending', 0, 3, now(), 0, 'key-1', NULL, NULL),
 ('01JAPA11S000000000000SCHD0', 'tests', convert_to('{\"job\":\"probe\",\"args\":{\"marker\":\"m\"}}', 'UTF8'), 'Pending', 0, 3, now() + interval '2 seconds', 0, NULL, NULL, NULL),
 ('01JAPA11S000000000000FA110', 'tests', convert_to('{\"job\":\"probe\",\"args\":{\"marker\":\"m\"},\"traceparent\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}', 'UTF8'), 'Failed', 1, 3, now(), 0, NULL, '{\"Err\":\"upstream 503\"}', NULL),
 ('01JAPA11S000000000000RVN00', 'tests', convert_to('{\"job\":\"probe\",\"args\":{\"marker\":\"m\"}}', 'UTF8'), 'Queued', 0, 3, now(), 0, NULL, NULL, 'tests-77-old-0'),
 ('01JAPA11S000000000000BAD00', 'tests', decode('ff00', 'hex'), 'Pending', 0, 3, now(), 0, NULL, NULL, NULL),
 ('01JAPA11S000000000000D0NE0', 'tests', convert_to('{\"job\":\"probe\",\"args\":{\"marker\":\"m\"}}', 'UTF8'), 'Done', 1, 3, now(), 0, NULL, '{\"Ok\":null}', NULL),
 ('01JAPA11S000000000000K11D0', 'tests', convert_to('{\"job\":\"probe\",\"args\":{\"marker\":\"m\"}}', 'UTF8'), 'Killed', 1, 3, now(), 0, NULL, '{\"Err\":\"bad\"}', NULL),
 ('01JAPA11S00000000000SPENT0', 'tests', convert_to('{\"job\":\"probe\",\"args\":{\"marker\":\"m\"}}', 'UTF8'), 'Failed', 3, 3, now(), 0, NULL, '{\"Err\":\"gone\"}', NULL);
";

const SQLITE_OLD_JOBS: &str = "
INSERT INTO Workers (id, worker_type, storage_name, layers, last_seen) VALUES ('tests-77-old-0', 'tests', 'sql', '', strftime('%s','now'));
INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, run_at, priority, metadata, idempotency_key, last_result, lock_by) VALUES
 (CAST('{\"job\":\"probe\",\"args\":{\"marker\":\"m\",\"dedup\":\"key-1\"},\"traceparent\":\"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\"}' AS BLOB), '01JAPA11S000000000000PEND0', 'tests', 'Pending', 0, 3, CAST(strftime('%s','now') AS INTEGER), 0, '{}', 'key-1', NULL, NULL),
 (CAST('{\"job\":\"probe\",\"args\":{\"marker\":\"m\"}}' AS BLOB), '01JAPA11S000000000000SCHD0', 'tests', 'Pending', 0, 3, CAST(strftime('%s','now') AS INTEGER) + 2, 0, '{}', NULL, NULL, NULL),
 (CAST('{\"job\":\"probe\",\"args\":{\"marker\":\"m\"},\"traceparent\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}' AS BLOB), '01JAPA11S000000000000FA110', 'tests', 'Failed', 1, 3, CAST(strftime('%s','now') AS INTEGER), 0, '{}', NULL, '{\"Err\":\"upstream 503\"}', NULL),
 (CAST('{\"job\":\"probe\",\"args\":{\"marker\":\"m\"}}' AS BLOB), '01JAPA11S000000000000RVN00', 'tests', 'Queued', 0, 3, CAST(strftime('%s','now') AS INTEGER), 0, '{}', NULL, NULL, 'tests-77-old-0'),
 (X'FF00', '01JAPA11S000000000000BAD00', 'tests', 'Pending', 0, 3, CAST(strftime('%s','now') AS INTEGER), 0, '{}', NULL, NULL, NULL),
 (CAST('{\"job\":\"probe\",\"args\":{\"marker\":\"m\"}}' AS BLOB), '01JAPA11S000000000000D0NE0', 'tests', 'Done', 1, 3, CAST(strftime('%s','now') AS INTEGER), 0, '{}', NULL, '{\"Ok\":null}', NULL),
 (CAST('{\"job\":\"probe\",\"args\":{\"marker\":\"m\"}}' AS BLOB), '01JAPA11S000000000000K11D0', 'tests', 'Killed', 1, 3, CAST(strftime('%s','now') AS INTEGER), 0, '{}', NULL, '{\"Err\":\"bad\"}', NULL),
 (CAST('{\"job\":\"probe\",\"args\":{\"marker\":\"m\"}}' AS BLOB), '01JAPA11S00000000000SPENT0', 'tests', 'Failed', 3, 3, CAST(strftime('%s','now') AS INTEGER), 0, '{}', NULL, '{\"Err\":\"gone\"}', NULL);
";

/// The old schema as the app left it, with jobs.
async fn old_schema_with_jobs(db: &Db) {
    match db {
        Db::Pg(p) => {
            apalis_postgres::PostgresStorage::<()>::setup(p)
                .await
                .expect("apalis migrations");
            sqlx::raw_sql(include_str!("fixtures/apalis-queue-tuning.sql"))
                .execute(p)
                .await
                .expect("queue tuning");
            sqlx::raw_sql(PG_OLD_JOBS)
                .execute(p)
                .await
                .expect("old jobs");
        }
        Db::Sqlite(p) => {
            apalis_sqlite::SqliteStorage::<()>::migrations()
                .run(p)
                .await
                .expect("apalis migrations");
            sqlx::raw_sql(SQLITE_OLD_JOBS)
                .execute(p)
                .await
                .expect("old jobs");
        }
    }
}

async fn old_tables_exist(db: &Db) -> bool {
    match db {
        Db::Pg(p) => sqlx::query_scalar("SELECT to_regclass('apalis.jobs') IS NOT NULL")
            .fetch_one(p)
            .await
            .expect("query"),
        Db::Sqlite(p) => sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name IN ('Jobs', 'Workers', '_sqlx_migrations'))",
        )
        .fetch_one(p)
        .await
        .expect("query"),
    }
}

async fn unfinished_apalis_jobs_move_over_and_run(q: TestQueue) {
    old_schema_with_jobs(&q.db).await;
    let moved = from_apalis::move_jobs(&q.db, &q.registry)
        .await
        .expect("move");
    assert_eq!(
        moved,
        Moved {
            jobs: 5,
            unreadable: 1,
            dropped: true
        }
    );
    assert!(
        !old_tables_exist(&q.db).await,
        "apalis' tables are still there"
    );
    // Running again finds nothing to do.
    assert_eq!(
        from_apalis::move_jobs(&q.db, &q.registry)
            .await
            .expect("move"),
        Moved::default()
    );

    let pending = q.show("01JAPA11S000000000000PEND0").await.job;
    assert_eq!(
        (pending.state.as_str(), pending.kind.as_str()),
        ("pending", "probe")
    );
    assert_eq!(pending.dedup_key.as_deref(), Some("key-1"));
    assert_eq!(pending.partition_key.as_deref(), Some("marker:m"));
    assert_eq!(pending.payload_json()["marker"], "m");
    // The envelope's traceparent moves into its column; one the queue would refuse is dropped.
    assert_eq!(
        pending.traceparent.as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    assert_eq!(
        q.show("01JAPA11S000000000000SCHD0").await.job.traceparent,
        None
    );
    assert_eq!(
        q.show("01JAPA11S000000000000SCHD0").await.job.state,
        "scheduled"
    );
    let failed = q.show("01JAPA11S000000000000FA110").await.job;
    assert_eq!((failed.state.as_str(), failed.attempts), ("failed", 1));
    assert_eq!(failed.last_error.as_deref(), Some("upstream 503"));
    assert_eq!(failed.traceparent, None);
    let held = q.show("01JAPA11S000000000000RVN00").await.job;
    assert_eq!((held.state.as_str(), held.attempts), ("pending", 0));
    assert!(
        held.last_error
            .as_deref()
            .unwrap_or("")
            .contains("tests-77-old-0")
    );
    let bad = q.show("01JAPA11S000000000000BAD00").await.job;
    assert_eq!(bad.state, "dead");
    assert!(
        bad.last_error
            .as_deref()
            .unwrap_or("")
            .contains("not a job envelope"),
        "{bad:?}"
    );
    for finished in [
        "01JAPA11S000000000000D0NE0",
        "01JAPA11S000000000000K11D0",
        "01JAPA11S00000000000SPENT0",
    ] {
        assert!(
            issuesync_queue::admin::show(&q.db, finished)
                .await
                .expect("show")
                .is_none()
        );
    }

    // The moved jobs run on the new backend.
    let w = q.start(4, fast_config());
    for id in [
        "01JAPA11S000000000000PEND0",
        "01JAPA11S000000000000SCHD0",
        "01JAPA11S000000000000FA110",
        "01JAPA11S000000000000RVN00",
    ] {
        q.wait_state(id, "done", 15).await;
    }
    assert_eq!(q.show("01JAPA11S000000000000FA110").await.job.attempts, 2);
    assert_eq!(q.ledger("m").await, (4, 4));
    let traces = q.ledger_traceparents("m").await;
    assert_eq!(
        traces.iter().flatten().collect::<Vec<_>>(),
        vec!["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]
    );
    w.stop().await.expect("stop");
}
