//! A group deleted while its outbound push runs: the push's decision has no group to point
//! at. It must not take the other jobs that finish with it down (they used to share the
//! batch completer's transaction, which the decision's foreign key rolled back, leaving
//! every job of the batch `running` until a rescue ran them again). SQLite and
//! Postgres + Redis.

mod common;

use std::time::{Duration, Instant};

use common::TestApp;
use common::decisions::{db_group_decisions, group_decisions, id, install, org_team_project};
use common::sync::{
    hits, linked_group, map_project, mock_jira_issue_with, outbound_jobs, put_group,
    signing_jira_server,
};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SURVIVORS: usize = 6;
const DOOMED: usize = 2;
/// How long Jira takes to answer the first GET of every issue: the window in which the
/// doomed project is deleted, and what makes the pushes finish together.
const SLOW: Duration = Duration::from_millis(1500);

mod a_group_deleted_while_its_push_runs_does_not_fail_the_batch {
    use super::*;

    /// Enough outbound slots and provider budget for every push to run at once.
    fn wide(s: &mut issuesync::config::Settings) {
        s.queue.concurrency.insert("outbound".into(), 16);
        s.rate_limit.insert(
            "jira_server".into(),
            issuesync::config::RateLimit::Unlimited,
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        if let Some(app) =
            common::spawn_app_with(common::Backend::Sqlite, common::Seq::Local, wide).await
        {
            super::group_deleted_mid_push(app).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_redis() {
        if let Some(app) =
            common::spawn_app_with(common::Backend::Postgres, common::Seq::Redis, wide).await
        {
            super::group_deleted_mid_push(app).await
        }
    }
}

/// GET issue (slow), its transitions, and a transition POST that succeeds.
async fn mock_issue(mock: &MockServer, key: &str) {
    mock_jira_issue_with(mock, key, "1", "10000", SLOW).await;
    Mock::given(method("POST"))
        .and(path(format!("/rest/api/2/issue/{key}/transitions")))
        .respond_with(ResponseTemplate::new(204))
        .mount(mock)
        .await;
}

/// A group of `project` linked to `key`, resolved (which queues its push).
async fn resolved_group(app: &TestApp, org: i64, project: i64, integration: i64, key: &str) -> i64 {
    let g = linked_group(app, org, project, key, &[(integration, key)]).await;
    put_group(app, g, json!({"status": "resolved"})).await;
    g
}

async fn group_deleted_mid_push(app: TestApp) {
    let mock = MockServer::start().await;
    let (org, team, kept) = org_team_project(&app, "Kept", None).await;
    let doomed = id(&app
        .create(
            &format!("/organizations/{org}/projects"),
            json!({"name": "Doomed", "teams": [team]}),
        )
        .await);
    let js = signing_jira_server(&app, &mock.uri()).await;
    let oi = install(&app, js, org, json!({"sync_status_forward": true})).await;
    map_project(&app, oi, "10000", "10101", "3").await;

    let mut survivors = Vec::new();
    for n in 0..SURVIVORS {
        let key = format!("KEEP-{n}");
        mock_issue(&mock, &key).await;
        survivors.push((key.clone(), resolved_group(&app, org, kept, js, &key).await));
    }
    let mut gone = Vec::new();
    for n in 0..DOOMED {
        let key = format!("DOOM-{n}");
        mock_issue(&mock, &key).await;
        gone.push((
            key.clone(),
            resolved_group(&app, org, doomed, js, &key).await,
        ));
    }

    let workers = app.start_workers();
    // Every push has read its group and waits for Jira: delete the doomed project now.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut waiting = 0;
        for (key, _) in survivors.iter().chain(&gone) {
            waiting += hits(&mock, "GET", &format!("/rest/api/2/issue/{key}")).await;
        }
        if waiting == SURVIVORS + DOOMED {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {waiting} pushes reached Jira"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, v) = app
        .api(
            reqwest::Method::DELETE,
            &format!("/projects/{doomed}"),
            None,
        )
        .await;
    assert_eq!(s, 204, "{v}");

    // Every push ends done on its first attempt, well before any rescue could run it again
    // (this worker is alive: its `running` jobs would wait for it to stop).
    let deadline = Instant::now() + Duration::from_secs(15);
    let jobs = loop {
        let jobs = outbound_jobs(&app).await;
        if jobs.len() == SURVIVORS + DOOMED && jobs.iter().all(|j| j.state == "done") {
            break jobs;
        }
        assert!(
            Instant::now() < deadline,
            "outbound jobs not all done: {:?}",
            jobs.iter()
                .map(|j| (&j.state, j.attempts, &j.payload))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(jobs.iter().all(|j| j.attempts == 1), "{jobs:?}");
    workers.stop().await;

    // Nothing ran twice: Jira saw each push once, the doomed ones included.
    for (key, _) in survivors.iter().chain(&gone) {
        for (m, p) in [
            ("GET", format!("/rest/api/2/issue/{key}")),
            ("POST", format!("/rest/api/2/issue/{key}/transitions")),
        ] {
            assert_eq!(hits(&mock, m, &p).await, 1, "{m} {p}");
        }
    }
    // The surviving groups hold their `sent`; the deleted ones hold nothing.
    for (key, g) in &survivors {
        let ds = group_decisions(&app, *g).await;
        assert_eq!(ds.len(), 1, "{key}: {ds:#?}");
        assert_eq!(
            (ds[0]["reason"].as_str(), ds[0]["after"].as_str()),
            (Some("sent"), Some("10101")),
            "{key}"
        );
    }
    for (key, g) in &gone {
        assert!(db_group_decisions(&app, *g).await.is_empty(), "{key}");
    }
    let (s, v) = app.get("/sync-decisions?reason=sent&since=1h").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["decisions"].as_array().unwrap().len(), SURVIVORS, "{v}");
}
