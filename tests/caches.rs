//! Project-wide cache invalidation: keyset pages of 1000, only recent groups, resumable, and
//! enqueued in the same transaction as the change that triggers it. In-process and Redis.

mod common;

use std::time::Duration;

use common::TestApp;
use issuesync::domain::caches::{ASSIGNEE_EXISTS_DURATION, assignee_exists_key, owner_exists_key};
use issuesync::store::groups::NewGroup;
use issuesync::store::jobs::JobFilter;
use issuesync_jobs::invalidate_project_caches::{CacheKind, InvalidateProjectCaches};
use serde_json::json;

sqlite_and_pg_redis_tests!(
    only_recent_groups_in_batches_of_1000,
    a_crash_resumes_at_the_next_page,
    triggers_enqueue_in_their_transaction,
    assignee_exists_reads_through_the_cache
);

/// A project with `recent` groups seen now and `old` groups seen two days ago; every group's
/// assignee key is set. Returns (project id, recent ids, old ids).
async fn project_with_groups(
    app: &TestApp,
    org: i64,
    name: &str,
    recent: usize,
    old: usize,
) -> (i64, Vec<i64>, Vec<i64>) {
    let p = app
        .create(
            &format!("/organizations/{org}/projects"),
            json!({"name": name}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let now = issuesync::now_ms();
    let (mut r, mut o) = (Vec::new(), Vec::new());
    let mut tx = app.state.db.begin().await.unwrap();
    for i in 0..recent + old {
        let seen = if i < recent {
            now
        } else {
            now - 2 * 86_400_000
        };
        let g = issuesync::store::groups::insert_group(
            &mut tx,
            &NewGroup {
                project_id: p,
                title: "g",
                status: 0,
                substatus: Some(7),
                first_seen: seen,
                last_seen: seen,
            },
        )
        .await
        .unwrap();
        if i < recent {
            r.push(g.id)
        } else {
            o.push(g.id)
        }
    }
    tx.commit().await.unwrap();
    for g in r.iter().chain(o.iter()) {
        app.state
            .caches
            .set(&assignee_exists_key(*g), "1", ASSIGNEE_EXISTS_DURATION)
            .await
            .unwrap();
    }
    (p, r, o)
}

async fn present(app: &TestApp, ids: &[i64]) -> usize {
    let mut n = 0;
    for g in ids {
        if app
            .state
            .caches
            .get(&assignee_exists_key(*g))
            .await
            .unwrap()
            .is_some()
        {
            n += 1;
        }
    }
    n
}

async fn org(app: &TestApp) -> i64 {
    app.create("/organizations", json!({"name": "Acme"})).await["id"]
        .as_i64()
        .unwrap()
}

async fn only_recent_groups_in_batches_of_1000(app: TestApp) {
    let org = org(&app).await;
    let (a, recent, old) = project_with_groups(&app, org, "A", 2500, 300).await;
    let (_, other, _) = project_with_groups(&app, org, "B", 10, 0).await;
    let r = app
        .enqueue(&InvalidateProjectCaches {
            project_id: a,
            kind: CacheKind::AssigneeExists,
            fail_after_pages: None,
        })
        .await;
    let _w = app.start_workers();
    let j = app.wait_job_state(r.id(), "done", 60).await;
    let p = j.progress.expect("progress");
    assert_eq!((p.pages, p.keys_deleted), (3, 2500), "exactly 3 batches");
    assert_eq!(present(&app, &recent).await, 0);
    assert_eq!(
        present(&app, &old).await,
        300,
        "keys of old groups were deleted"
    );
    assert_eq!(
        present(&app, &other).await,
        10,
        "keys of another project were deleted"
    );
    let (code, out) = app.run_cli(&["jobs", "show", r.id()]);
    assert_eq!(code, 0);
    assert!(
        out.contains("progress:    3 page(s), 2500 key(s) deleted"),
        "{out}"
    );
}

async fn a_crash_resumes_at_the_next_page(app: TestApp) {
    let org = org(&app).await;
    let (a, recent, _) = project_with_groups(&app, org, "A", 2500, 0).await;
    let r = app
        .enqueue(&InvalidateProjectCaches {
            project_id: a,
            kind: CacheKind::AssigneeExists,
            fail_after_pages: Some(2),
        })
        .await;
    let _w = app.start_workers();
    let j = app.wait_job_state(r.id(), "done", 60).await;
    let outcomes: Vec<&str> = j.history.iter().map(|h| h.outcome.as_str()).collect();
    assert_eq!(outcomes, ["retry", "done"], "{:?}", j.history);
    assert_eq!(
        j.history[0].error.as_deref(),
        Some("injected failure after 2 page(s)")
    );
    let p = j.progress.expect("progress");
    // Pages 1-2 before the crash, page 3 after it: nothing was walked (or deleted) twice.
    assert_eq!((p.pages, p.keys_deleted), (3, 2500));
    assert_eq!(present(&app, &recent).await, 0);
}

async fn invalidations(app: &TestApp) -> Vec<serde_json::Value> {
    issuesync::ops::list(
        &app.state.db,
        &JobFilter {
            job_name: Some("invalidate_project_caches".into()),
            ..Default::default()
        },
        100,
    )
    .await
    .unwrap()
    .into_iter()
    .map(|j| j.payload)
    .collect()
}

async fn triggers_enqueue_in_their_transaction(app: TestApp) {
    let org = org(&app).await;
    let team = app
        .create(&format!("/organizations/{org}/teams"), json!({"name": "T"}))
        .await["id"]
        .as_i64()
        .unwrap();
    let p = app
        .create(
            &format!("/organizations/{org}/projects"),
            json!({"name": "P", "teams": [team]}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let user = app.create("/users", json!({"name": "U"})).await["id"]
        .as_i64()
        .unwrap();
    let member = app
        .create(
            &format!("/organizations/{org}/members"),
            json!({"user_id": user, "teams": [team]}),
        )
        .await["member"]["id"]
        .as_i64()
        .unwrap();
    assert!(invalidations(&app).await.is_empty());

    // Member leaves the team → assignee_exists of the team's projects.
    assert_eq!(
        app.api(
            reqwest::Method::DELETE,
            &format!("/members/{member}/teams/{team}"),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        invalidations(&app).await,
        [json!({"project_id": p, "kind": "assignee_exists"})]
    );
    // Ownership rules → owner_debounce (a second pending assignee_exists would be a duplicate).
    let (s, _) = app
        .api(
            reqwest::Method::PUT,
            &format!("/projects/{p}/ownership"),
            Some(json!({"raw": "path:src/* #backend"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        app.get(&format!("/projects/{p}/ownership")).await.1["raw"],
        "path:src/* #backend"
    );
    let kinds: Vec<String> = invalidations(&app)
        .await
        .iter()
        .map(|v| v["kind"].as_str().unwrap().to_string())
        .collect();
    assert!(kinds.contains(&"owner_debounce".to_string()), "{kinds:?}");
    // Team removed from the project; member removed from the org; project deleted.
    assert_eq!(
        app.api(
            reqwest::Method::PUT,
            &format!("/members/{member}/teams/{team}"),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        app.api(reqwest::Method::DELETE, &format!("/members/{member}"), None)
            .await
            .0,
        204
    );
    assert_eq!(
        app.api(
            reqwest::Method::DELETE,
            &format!("/projects/{p}/teams/{team}"),
            None
        )
        .await
        .0,
        204
    );
    let (_, recent, _) = project_with_groups(&app, org, "Doomed", 5, 0).await;
    let doomed = app
        .get(&format!("/organizations/{org}/projects"))
        .await
        .1
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "Doomed")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        app.api(
            reqwest::Method::DELETE,
            &format!("/projects/{doomed}"),
            None
        )
        .await
        .0,
        204
    );
    let all = invalidations(&app).await;
    for kind in ["assignee_exists", "owner_debounce"] {
        assert!(
            all.contains(&json!({"project_id": doomed, "kind": kind})),
            "{all:?}"
        );
    }
    // The deleted project's keys still go: its recent group ids were kept for the job.
    let _w = app.start_workers();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while present(&app, &recent).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "deleted project's keys stayed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // In the caller's transaction: a rollback leaves no job behind.
    let before = invalidations(&app).await.len();
    let mut tx = app.state.db.begin().await.unwrap();
    issuesync::domain::caches::enqueue_invalidation(&mut tx, 424242, CacheKind::OwnerDebounce)
        .await
        .unwrap();
    issuesync::domain::caches::invalidate_team_projects(&mut tx, &[team])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(invalidations(&app).await.len(), before);
    // And a failed project delete (unknown id) enqueues nothing.
    assert_eq!(
        app.api(reqwest::Method::DELETE, "/projects/999999", None)
            .await
            .0,
        404
    );
    assert_eq!(invalidations(&app).await.len(), before);
    let _ = owner_exists_key(0);
}

async fn assignee_exists_reads_through_the_cache(app: TestApp) {
    let org = org(&app).await;
    let team = app
        .create(&format!("/organizations/{org}/teams"), json!({"name": "T"}))
        .await["id"]
        .as_i64()
        .unwrap();
    let p = app
        .create(
            &format!("/organizations/{org}/projects"),
            json!({"name": "P", "teams": [team]}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let user = app.create("/users", json!({"name": "U"})).await["id"]
        .as_i64()
        .unwrap();
    app.create(
        &format!("/organizations/{org}/members"),
        json!({"user_id": user, "teams": [team]}),
    )
    .await;
    let g = app
        .create(&format!("/projects/{p}/groups"), json!({"title": "x"}))
        .await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        app.get(&format!("/groups/{g}")).await.1["assignee_exists"],
        false
    );
    assert_eq!(
        app.state
            .caches
            .get(&assignee_exists_key(g))
            .await
            .unwrap()
            .as_deref(),
        Some("0"),
        "negative result cached"
    );
    let (s, _) = app
        .api(
            reqwest::Method::PUT,
            &format!("/groups/{g}"),
            Some(json!({"assignedTo": format!("user:{user}")})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        app.get(&format!("/groups/{g}")).await.1["assignee_exists"],
        true,
        "assign did not invalidate"
    );
    assert_eq!(
        app.state
            .caches
            .get(&assignee_exists_key(g))
            .await
            .unwrap()
            .as_deref(),
        Some("1")
    );
}
