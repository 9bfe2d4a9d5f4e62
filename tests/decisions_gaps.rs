//! Sync decisions where a change is dropped for a reason outside the flow's own logic: the
//! integration disabled after the delivery was accepted, an organization without an
//! installation, a Jira user search refused for our credentials. Each must say so (it used
//! to write nothing, a switch that is not there, or "no such user"). SQLite and
//! Postgres + Redis.

mod common;

use common::TestApp;
use common::decisions::{count, find, group_decisions, id, install, member, org_team_project};
use common::sync::{
    JIRA_SERVER_SECRET, jira_server_token, linked_group, map_project, mock_jira_statuses,
    named_jobs, post_jira_server, signing_jira_server,
};
use issuesync_jobs::sync_assignee_inbound::SyncAssigneeInbound;
use issuesync_jobs::sync_status_inbound::SyncStatusInbound;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

sqlite_and_pg_redis_tests!(
    disabled_integration_records_sync_disabled,
    organization_without_installation_says_so,
    jira_user_search_refused_is_provider_refused,
);

struct World {
    org: i64,
    user: i64,
    project: i64,
    js: i64,
    mock: MockServer,
}

/// Jira Server installed on "Acme" with every switch on (mapping 10000: 10101 / 3); Lauryn
/// (verified) in the project's team.
async fn world(app: &TestApp) -> World {
    let mock = MockServer::start().await;
    let (org, team, project) = org_team_project(app, "Web", None).await;
    let user = member(app, org, "lauryn@sentry.io", true, &[team]).await;
    let js = signing_jira_server(app, &mock.uri()).await;
    let all = json!({"sync_status_forward": true, "sync_status_reverse": true, "sync_forward_assignment": true, "sync_reverse_assignment": true});
    let oi = install(app, js, org, all).await;
    map_project(app, oi, "10000", "10101", "3").await;
    mock_jira_statuses(
        &mock,
        json!([
            {"id": "10101", "name": "Done", "statusCategory": {"key": "done"}},
            {"id": "1", "name": "Open", "statusCategory": {"key": "new"}}]),
    )
    .await;
    World {
        org,
        user,
        project,
        js,
        mock,
    }
}

/// A Jira Server webhook: `key` assigned to lauryn@sentry.io and moved from Open to Done.
async fn post_webhook(app: &TestApp, key: &str, ts: i64) {
    let token = jira_server_token(JIRA_SERVER_SECRET);
    let body = json!({"timestamp": ts, "user": {"name": "asmith"},
        "changelog": {"id": ts, "items": [{"field": "assignee"}, {"field": "status", "from": "1", "to": "10101"}]},
        "issue": {"key": key, "fields": {"assignee": {"emailAddress": "lauryn@sentry.io", "name": "lauryn"}}}});
    let (s, v) = post_jira_server(app, &token, &body).await;
    assert_eq!(s, 200);
    assert_eq!(v["status"], "queued", "{v}");
}

async fn set_integration_status(app: &TestApp, integration: i64, status: &str) {
    let (s, v) = app
        .api(
            reqwest::Method::PATCH,
            &format!("/integrations/{integration}"),
            Some(json!({"status": status})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

/// The states of the jobs named `job_name`.
async fn job_states(app: &TestApp, job_name: &str) -> Vec<String> {
    named_jobs(app, job_name)
        .await
        .into_iter()
        .map(|j| j.state)
        .collect()
}

/// A delivery accepted while the integration was active, processed after it was disabled,
/// and inbound jobs that run once it is: each group hears `sync_disabled`, nothing changes,
/// and the jobs are done (a skip, not a failure).
async fn disabled_integration_records_sync_disabled(app: TestApp) {
    let w = world(&app).await;
    let g = linked_group(&app, w.org, w.project, "APP-1", &[(w.js, "APP-1")]).await;
    post_webhook(&app, "APP-1", 1000).await;
    set_integration_status(&app, w.js, "disabled").await;
    app.enqueue(&SyncAssigneeInbound {
        integration_id: w.js,
        external_issue_key: "APP-1".into(),
        email: Some("lauryn@sentry.io".into()),
        assign: true,
        sequence: Some(2000),
        delivery_id: None,
        actor: None,
    })
    .await;
    app.enqueue(&SyncStatusInbound {
        integration_id: w.js,
        organization_id: w.org,
        issue_key: "APP-1".into(),
        data: json!({"changelog": {"from": "1", "to": "10101"}}),
        sequence: Some(2000),
        delivery_id: None,
        actor: None,
    })
    .await;
    let workers = app.start_workers();
    app.drain().await;
    workers.stop().await;

    let ds = group_decisions(&app, g).await;
    let off: Vec<&Value> = ds
        .iter()
        .filter(|d| d["reason"] == "sync_disabled")
        .collect();
    // The delivery's assignee and status, then the two jobs'.
    assert_eq!(off.len(), 4, "{ds:#?}");
    for d in &off {
        assert_eq!(d["direction"], "inbound");
        assert_eq!(
            d["detail"],
            format!("integration {} is disabled", w.js),
            "{d}"
        );
    }
    assert!(off.iter().any(|d| d["delivery_id"].is_i64()));
    assert_eq!(count(&ds, "applied"), 0, "{ds:#?}");
    let (_, group) = app.get(&format!("/groups/{g}")).await;
    assert!(group["assignedTo"].is_null(), "{group}");
    assert_eq!(group["status_name"], "unresolved", "{group}");
    for job in [
        "process_webhook",
        "sync_assignee_inbound",
        "sync_status_inbound",
    ] {
        assert_eq!(job_states(&app, job).await, ["done"], "{job}");
    }
}

/// A group linked in an organization the integration is not installed on: the sync leaves
/// it alone, and its decisions say why (it used to hear nothing).
async fn organization_without_installation_says_so(app: TestApp) {
    let w = world(&app).await;
    let org2 = id(&app.create("/organizations", json!({"name": "Other"})).await);
    let p2 = id(&app
        .create(
            &format!("/organizations/{org2}/projects"),
            json!({"name": "P2"}),
        )
        .await);
    let g2 = linked_group(&app, org2, p2, "APP-2", &[(w.js, "APP-2")]).await;
    let workers = app.start_workers();
    post_webhook(&app, "APP-2", 1000).await;
    app.drain().await;
    workers.stop().await;
    let ds = group_decisions(&app, g2).await;
    let why = format!("the integration is not installed on organization {org2}");
    // One per field of the delivery, from the delivery.
    assert_eq!(ds.len(), 2, "{ds:#?}");
    for field in ["assignee", "status"] {
        let d = find(&ds, "inbound", field, "sync_disabled");
        assert_eq!(d["detail"], why, "{d}");
        assert!(d["delivery_id"].is_i64(), "{d}");
    }
    let (_, group) = app.get(&format!("/groups/{g2}")).await;
    assert!(group["assignedTo"].is_null(), "{group}");
}

/// Jira answers the user search with 401: our credentials are refused, which is not "no
/// such user". The job is dead with the cause, the issue is not assigned.
async fn jira_user_search_refused_is_provider_refused(app: TestApp) {
    let w = world(&app).await;
    Mock::given(method("GET"))
        .and(path("/rest/api/2/user/assignable/search"))
        .respond_with(
            ResponseTemplate::new(401).set_body_string(
                "{\"errorMessages\":[\"You are not authenticated. Authentication required to perform this operation.\"]}",
            ),
        )
        .mount(&w.mock)
        .await;
    Mock::given(method("PUT"))
        .and(path("/rest/api/2/issue/APP-3/assignee"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&w.mock)
        .await;
    let g = linked_group(&app, w.org, w.project, "APP-3", &[(w.js, "APP-3")]).await;
    let workers = app.start_workers();
    let (s, v) = app
        .api(
            reqwest::Method::PUT,
            &format!("/groups/{g}"),
            Some(json!({"assignedTo": format!("user:{}", w.user)})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    app.drain().await;
    workers.stop().await;
    let ds = group_decisions(&app, g).await;
    assert_eq!(count(&ds, "external_user_not_found"), 0, "{ds:#?}");
    let refused = find(&ds, "outbound", "assignee", "provider_refused");
    assert_eq!(refused["outcome"], "failed");
    assert!(
        refused["detail"].as_str().unwrap().contains("401"),
        "{refused}"
    );
    assert_eq!(job_states(&app, "sync_assignee_outbound").await, ["dead"]);
    let puts = w
        .mock
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "PUT")
        .count();
    assert_eq!(puts, 0);
}
