//! Every job kind of the contract has a handler in this version, and the admin API enqueues a
//! kind the way the sync does (a coalescing kind coalesces).

mod common;

use common::TestApp;
use serde_json::{Value, json};

db_tests!(
    every_kind_has_a_handler,
    admin_enqueue_of_a_coalescing_kind_coalesces,
    the_api_refuses_a_noop_that_would_harm_the_worker
);

/// The smallest args each kind accepts. A new kind needs a line here.
fn minimal_args(kind: &str) -> Value {
    match kind {
        "process_webhook" | "discord_interaction" => json!({"delivery_id": 999_999}),
        "sync_assignee_inbound" => {
            json!({"integration_id": 999_999, "external_issue_key": "X-1", "email": null, "assign": false})
        }
        "sync_status_inbound" => {
            json!({"integration_id": 999_999, "organization_id": 1, "issue_key": "X-1", "data": {}})
        }
        "sync_status_outbound" => json!({"group_id": 999_999, "external_issue_id": 999_999}),
        "sync_assignee_outbound" => {
            json!({"external_issue_id": 999_999, "user_id": null, "assign": false})
        }
        "invalidate_project_caches" => json!({"project_id": 999_999, "kind": "assignee_exists"}),
        "purge_jobs" => json!({"slot": 1}),
        "noop" => json!({}),
        other => panic!("job kind {other} has no minimal payload in this test: add one"),
    }
}

async fn every_kind_has_a_handler(app: TestApp) {
    let mut ids = Vec::new();
    for kind in issuesync_jobs::KINDS {
        let (s, v) = app
            .post(
                "/jobs",
                json!({"job": kind.name, "args": minimal_args(kind.name)}),
            )
            .await;
        assert_eq!(s, 201, "{}: {v}", kind.name);
        ids.push((kind.name, v["id"].as_str().unwrap().to_string()));
    }
    let _workers = app.start_workers();
    // Each job's first attempt shows what its handler made of the (mostly dangling) payload.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for (kind, id) in &ids {
        let first = loop {
            let j = app.job(id).await;
            if let Some(a) = j.history.first() {
                break a.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{kind} never ran: {:?}",
                j.job
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let error = first.error.unwrap_or_default();
        assert!(
            !error.contains("no handler"),
            "job kind {kind} is in the contract but has no handler: {error}"
        );
    }
    // A kind that is not in the contract cannot be enqueued at all, such as the removed
    // install_subscription (installs register their webhooks themselves, as Sentry's do).
    let (s, v) = app
        .post(
            "/jobs",
            json!({"job": "install_subscription", "args": {"integration_id": 1}}),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("bad_request")), "{v}");
}

async fn admin_enqueue_of_a_coalescing_kind_coalesces(app: TestApp) {
    let enqueue = |group: i64| {
        let app = &app;
        async move {
            app.post(
                "/jobs",
                json!({"job": "sync_status_outbound", "args": {"group_id": group, "external_issue_id": 7}}),
            )
            .await
        }
    };
    let (s, first) = enqueue(1).await;
    assert_eq!((s, first["result"].as_str()), (201, Some("new")), "{first}");
    let id = first["id"].as_str().unwrap().to_string();
    // No worker runs: the first job is pending when the second comes.
    let (s, second) = enqueue(2).await;
    assert_eq!(
        (s, second["result"].as_str(), second["id"].as_str()),
        (200, Some("duplicate"), Some(id.as_str())),
        "{second}"
    );
    let job = app.job(&id).await;
    assert_eq!(job.job.state, "pending");
    assert_eq!(
        job.job.payload,
        json!({"group_id": 2, "external_issue_id": 7}),
        "the pending job did not take the newer payload"
    );
    // The same as the sync's own enqueue of that kind, into the same pending job.
    let by_sync = app
        .enqueue(&issuesync_jobs::sync_status_outbound::SyncStatusOutbound {
            group_id: 3,
            external_issue_id: 7,
            acting_user_id: None,
        })
        .await;
    assert_eq!(by_sync.id(), id);
    let (_, listed) = app.get("/jobs?job=sync_status_outbound").await;
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["payload"]["group_id"], 3);
}

/// The noop's panic and memory-exhaustion behaviours exist for the reliability suite, which
/// enqueues them in-process; through the admin API they would let a token holder crash-loop
/// or OOM a worker, so they are refused and nothing is stored.
async fn the_api_refuses_a_noop_that_would_harm_the_worker(app: TestApp) {
    for behaviour in ["panic", "exhaust_memory"] {
        let (s, v) = app
            .post(
                "/jobs",
                json!({"job": "noop", "args": {"behaviour": behaviour}}),
            )
            .await;
        assert_eq!((s, v["error"].as_str()), (400, Some("bad_request")), "{v}");
        assert!(
            v["detail"].as_str().is_some_and(|d| d.contains(behaviour)),
            "{v}"
        );
    }
    let (s, v) = app.get("/jobs?job=noop").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v.as_array().map(Vec::len), Some(0), "{v}");
    // The harmless behaviours are still accepted.
    let (s, v) = app
        .post(
            "/jobs",
            json!({"job": "noop", "args": {"behaviour": "fail_permanent"}}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
}
