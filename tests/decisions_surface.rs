//! Where people see sync decisions: the keyset-paged timelines and search of the admin API
//! (with their 400s), the `/ops` pages (group timeline, dashboard reason counts, the
//! decisions of a job), and the retention purge of the maintenance job. SQLite and
//! Postgres + Redis.

mod common;

use common::decisions::{api_pages, group_decisions, id, install, org_team_project};
use common::sync::{linked_group, put_group};
use common::{Backend, Seq, TestApp};
use serde_json::{Value, json};

sqlite_and_pg_redis_tests!(
    timelines_page_and_refuse_bad_parameters,
    ops_pages_show_decisions
);

struct World {
    org: i64,
    team: i64,
    project: i64,
    jira_server: i64,
}

async fn world(app: &TestApp, config: Value) -> World {
    let (org, team, project) = org_team_project(app, "Web", None).await;
    let jira_server = id(&app
        .create("/integrations", json!({"provider": "jira_server", "external_id": "jira.example.com:issuesync", "name": "issuesync",
            "metadata": {"base_url": "http://127.0.0.1:9", "webhook_secret": "s"}}))
        .await);
    install(app, jira_server, org, config).await;
    World {
        org,
        team,
        project,
        jira_server,
    }
}

impl World {
    async fn group(&self, app: &TestApp, keys: &[&str]) -> i64 {
        let links: Vec<(i64, &str)> = keys.iter().map(|k| (self.jira_server, *k)).collect();
        linked_group(app, self.org, self.project, "TypeError: x", &links).await
    }
}

async fn timelines_page_and_refuse_bad_parameters(app: TestApp) {
    let w = world(&app, json!({"sync_forward_assignment": true})).await;
    let g = w.group(&app, &["P-1", "P-2", "P-3"]).await;
    // Six decisions at request time: archiving and a team assignee, per linked issue.
    put_group(&app, g, json!({"status": "ignored"})).await;
    put_group(&app, g, json!({"assignedTo": format!("team:{}", w.team)})).await;
    let all = group_decisions(&app, g).await;
    assert_eq!(all.len(), 6);

    let (s, p1) = app.get(&format!("/groups/{g}/sync?limit=4")).await;
    assert_eq!(s, 200, "{p1}");
    let first = p1["decisions"].as_array().unwrap();
    assert_eq!(first.len(), 4);
    let cursor = p1["next_cursor"].as_str().expect("a next cursor");
    let (_, p2) = app
        .get(&format!("/groups/{g}/sync?limit=4&before={cursor}"))
        .await;
    let second = p2["decisions"].as_array().unwrap();
    assert_eq!(second.len(), 2);
    assert_eq!(p2["next_cursor"], Value::Null);
    let ids: Vec<i64> = first.iter().chain(second).map(id).collect();
    let expected: Vec<i64> = all.iter().map(id).collect();
    assert_eq!(ids, expected, "pages overlap or skip");
    let times: Vec<i64> = first
        .iter()
        .chain(second)
        .map(|d| d["at_ms"].as_i64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|t| t[0] >= t[1]),
        "newest first: {times:?}"
    );
    // The newest decisions are the team assignments.
    assert_eq!(first[0]["reason"], "team_assignee");
    assert!(
        first[0]["sentence"]
            .as_str()
            .unwrap()
            .contains("outbound assignee to Jira Server P-")
    );

    // Search.
    let app = &app;
    let search = |q: &str| {
        let url = format!("/sync-decisions?{q}");
        async move { app.get(&url).await }
    };
    let (s, v) = search(&format!(
        "reason=team_assignee&integration={}&since=24h",
        w.jira_server
    ))
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["decisions"].as_array().unwrap().len(), 3);
    let (_, v) = search("reason=team_assignee&direction=inbound").await;
    assert!(v["decisions"].as_array().unwrap().is_empty());
    assert_eq!(
        api_pages(app, "/sync-decisions?outcome=skipped")
            .await
            .len(),
        6
    );
    let future = chrono::Utc::now().timestamp_millis() + 3_600_000;
    let (_, v) = search(&format!("since={future}")).await;
    assert!(v["decisions"].as_array().unwrap().is_empty());

    // Bad parameters: 400 with the error shape; unknown ids: 404.
    for q in [
        "reason=nope",
        "direction=sideways",
        "outcome=maybe",
        "since=yesterday",
        "integration=abc",
        "limit=0",
        "limit=501",
        "before=12",
        "colour=red",
    ] {
        let (s, v) = search(q).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("bad_request")),
            "{q}: {v}"
        );
        assert!(
            v["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{q}: {v}"
        );
    }
    let (s, v) = app.get(&format!("/groups/{g}/sync?before=x.y")).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(app.get("/groups/999999/sync").await.0, 404);
    assert_eq!(app.get("/external-issues/999999/sync").await.0, 404);
    let r = app
        .client
        .get(app.url("/api/v1/sync-decisions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

async fn ops_page(app: &TestApp, path: &str) -> (u16, String) {
    let r = app
        .client
        .get(app.url(path))
        .bearer_auth(common::TOKEN)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.text().await.unwrap())
}

async fn ops_pages_show_decisions(app: TestApp) {
    // Status pushes are off: the outbound job records sync_disabled.
    let w = world(
        &app,
        json!({"sync_forward_assignment": true, "sync_status_forward": false}),
    )
    .await;
    let g = w.group(&app, &["OPS-1"]).await;
    put_group(&app, g, json!({"assignedTo": format!("team:{}", w.team)})).await;
    put_group(&app, g, json!({"status": "resolved"})).await;
    let _workers = app.start_workers();
    app.drain().await;
    let ds = group_decisions(&app, g).await;
    let off = common::decisions::find(&ds, "outbound", "status", "sync_disabled");
    let job = off["job_id"]
        .as_str()
        .expect("written by the job")
        .to_string();

    let (s, html) = ops_page(&app, &format!("/ops/groups/{g}")).await;
    assert_eq!(s, 200, "{html}");
    assert!(
        html.contains("Sync timeline") && html.contains("<code>team_assignee</code>"),
        "{html}"
    );
    assert!(
        html.contains("<code>sync_disabled</code>") && html.contains(&format!("/ops/jobs/{job}")),
        "{html}"
    );
    let (s, html) = ops_page(&app, "/ops").await;
    assert_eq!(s, 200);
    assert!(
        html.contains("id=\"reasons\"") && html.contains("reason=team_assignee"),
        "{html}"
    );
    let (s, html) = ops_page(&app, &format!("/ops/jobs/{job}")).await;
    assert_eq!(s, 200);
    assert!(
        html.contains("id=\"job-decisions\"") && html.contains("sync_status_forward is off"),
        "{html}"
    );
    assert!(
        html.contains(&format!("href=\"/ops/groups/{g}\"")),
        "the job page links its group: {html}"
    );
    let (s, html) = ops_page(&app, "/ops/jobs?kind=sync_status_outbound").await;
    assert_eq!(s, 200);
    assert!(html.contains(&format!("/ops/groups/{g}")), "{html}");
    let (s, html) = ops_page(&app, "/ops/decisions?reason=team_assignee&since=24h").await;
    assert_eq!(s, 200);
    assert!(
        html.contains(&format!("href=\"/ops/groups/{g}\""))
            && !html.contains("<code>sync_disabled</code></a>"),
        "{html}"
    );
    let (s, _) = ops_page(&app, "/ops/decisions?reason=bogus").await;
    assert_eq!(s, 400);
    let (s, _) = ops_page(&app, "/ops/groups/999999").await;
    assert_eq!(s, 404);
}

/// Decisions past `sync_decisions.retention_days` go with the hourly purge job; younger
/// ones stay.
async fn retention(backend: Backend, seq: Seq) {
    let Some(app) =
        common::spawn_app_with(backend, seq, |s| s.sync_decisions.retention_days = 10).await
    else {
        return;
    };
    let w = world(&app, json!({"sync_forward_assignment": true})).await;
    let g = w.group(&app, &["RET-1"]).await;
    let day = 86_400_000;
    let now = chrono::Utc::now().timestamp_millis();
    {
        let mut tx = app.state.db.begin().await.unwrap();
        for (age_days, detail) in [(11, "old"), (12, "older"), (9, "young")] {
            let d = issuesync::store::decisions::NewDecision {
                at_ms: now - age_days * day,
                direction: "outbound",
                field: "assignee",
                refs: issuesync::store::decisions::Refs {
                    group_id: Some(g),
                    ..Default::default()
                },
                outcome: "skipped",
                reason: "team_assignee",
                detail: detail.into(),
                ..Default::default()
            };
            issuesync::store::decisions::insert_decision(&mut tx, &d)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    put_group(&app, g, json!({"assignedTo": format!("team:{}", w.team)})).await;
    assert_eq!(group_decisions(&app, g).await.len(), 4);
    let _workers = app.start_workers();
    let job = app
        .enqueue(&issuesync_jobs::purge_jobs::PurgeJobs { slot: 1 })
        .await;
    app.wait_job_state(job.id(), "done", 30).await;
    let left: Vec<String> = group_decisions(&app, g)
        .await
        .iter()
        .map(|d| d["detail"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, ["team assignments are not pushed", "young"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purge_sqlite() {
    retention(Backend::Sqlite, Seq::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purge_postgres() {
    retention(Backend::Postgres, Seq::Local).await;
}
