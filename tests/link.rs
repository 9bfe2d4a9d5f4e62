//! `POST /api/v1/groups/{id}/external-issues`: link a group to an issue that exists at the
//! provider. The provider is asked first; nothing is stored when it says no or cannot be
//! reached; a new link pushes the group's user assignee and status when the switches are on.

mod common;

use common::TestApp;
use common::sync::{linked_group, named_jobs, put_group};
use common::world::world;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

db_tests!(
    links_a_jira_issue_and_pushes_assignee_and_status,
    a_group_without_assignee_does_not_unassign_the_issue,
    links_an_ado_work_item,
    an_unknown_key_or_a_provider_failure_stores_nothing,
    refuses_what_cannot_be_linked
);

async fn mock_jira(mock: &MockServer, key: &str, status: u16, body: Value) {
    Mock::given(method("GET"))
        .and(path(format!("/rest/api/2/issue/{key}")))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(mock)
        .await;
}

async fn link(app: &TestApp, group: i64, integration: i64, key: &str) -> (u16, Value) {
    app.post(
        &format!("/groups/{group}/external-issues"),
        json!({"integration_id": integration, "key": key}),
    )
    .await
}

/// The keys of the external issues of the group, from the database.
async fn linked_keys(app: &TestApp, group: i64) -> Vec<String> {
    let mut tx = app.state.db.begin().await.unwrap();
    issuesync::store::external::list_group_external_issues(&mut tx, group)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect()
}

async fn activity_types(app: &TestApp, group: i64) -> Vec<i64> {
    let (_, g) = app
        .api(reqwest::Method::GET, &format!("/groups/{group}"), None)
        .await;
    g["activity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_i64().unwrap())
        .collect()
}

async fn links_a_jira_issue_and_pushes_assignee_and_status(app: TestApp) {
    let w = world(&app).await;
    mock_jira(
        &w.mock,
        "APP-9",
        200,
        json!({"key": "APP-9", "fields": {"summary": "Crash on save", "description": "It crashes."}}),
    )
    .await;
    let g = linked_group(&app, w.org, w.project, "boom", &[]).await;
    put_group(&app, g, json!({"assignedTo": format!("user:{}", w.user)})).await;

    let (s, v) = link(&app, g, w.jira, " APP-9 ").await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["created"], true);
    assert_eq!(
        v["enqueued"],
        json!(["sync_assignee_outbound", "sync_status_outbound"])
    );
    let e = &v["external_issue"];
    assert_eq!(
        (
            e["key"].as_str(),
            e["title"].as_str(),
            e["description"].as_str()
        ),
        (Some("APP-9"), Some("Crash on save"), Some("It crashes."))
    );
    assert_eq!(
        e["metadata"]["web_url"],
        format!("{}/browse/APP-9", w.mock.uri())
    );
    // The provider was asked for exactly that issue, signed as the tenant's app.
    let asked = w.requests("GET", "/rest/api/2/issue/APP-9").await;
    assert_eq!(asked.len(), 1);
    assert!(
        asked[0]
            .headers
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .is_some_and(|a| a.starts_with("JWT ")),
        "{:?}",
        asked[0].headers
    );
    assert_eq!(linked_keys(&app, g).await, ["APP-9"]);
    assert!(activity_types(&app, g).await.contains(&21));
    let assignee_jobs = named_jobs(&app, "sync_assignee_outbound").await;
    assert_eq!(assignee_jobs.len(), 1, "{assignee_jobs:?}");
    assert_eq!(named_jobs(&app, "sync_status_outbound").await.len(), 1);

    // Again: nothing changes, nothing more is enqueued.
    let (s, v) = link(&app, g, w.jira, "APP-9").await;
    assert_eq!((s, v["created"].as_bool()), (200, Some(false)), "{v}");
    assert_eq!(v["enqueued"], json!([]));
    assert_eq!(linked_keys(&app, g).await, ["APP-9"]);
    assert_eq!(named_jobs(&app, "sync_assignee_outbound").await.len(), 1);
    assert_eq!(
        activity_types(&app, g)
            .await
            .iter()
            .filter(|t| **t == 21)
            .count(),
        1
    );
}

/// Where linking meets the assignee sync: a group nobody is assigned to must not push an
/// unassignment over the Jira issue's assignee.
async fn a_group_without_assignee_does_not_unassign_the_issue(app: TestApp) {
    let w = world(&app).await;
    mock_jira(
        &w.mock,
        "APP-10",
        200,
        json!({"key": "APP-10", "fields": {"summary": "S"}}),
    )
    .await;
    let g = linked_group(&app, w.org, w.project, "boom", &[]).await;
    let (s, v) = link(&app, g, w.jira, "APP-10").await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["enqueued"], json!(["sync_status_outbound"]));
    assert!(named_jobs(&app, "sync_assignee_outbound").await.is_empty());
}

async fn links_an_ado_work_item(app: TestApp) {
    let w = world(&app).await;
    Mock::given(method("GET"))
        .and(path("/_apis/wit/workitems/77"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": 77, "fields": {"System.Title": "Login fails", "System.Description": "<p>500</p>"},
            "_links": {"html": {"href": "https://dev.azure.com/acct/proj/_workitems/edit/77"}}
        })))
        .mount(&w.mock)
        .await;
    let g = linked_group(&app, w.org, w.project, "boom", &[]).await;
    let (s, v) = link(&app, g, w.vsts, "77").await;
    assert_eq!(s, 201, "{v}");
    let e = &v["external_issue"];
    assert_eq!(e["title"], "Login fails");
    assert_eq!(
        e["metadata"]["web_url"],
        "https://dev.azure.com/acct/proj/_workitems/edit/77"
    );
    assert_eq!(linked_keys(&app, g).await, ["77"]);
    // A work item id is a number: the provider is not asked for anything else.
    let (s, v) = link(&app, g, w.vsts, "APP-1").await;
    assert_eq!(s, 404, "{v}");
}

async fn an_unknown_key_or_a_provider_failure_stores_nothing(app: TestApp) {
    let w = world(&app).await;
    mock_jira(
        &w.mock,
        "APP-404",
        404,
        json!({"errorMessages": ["Issue does not exist or you do not have permission to see it."]}),
    )
    .await;
    mock_jira(&w.mock, "APP-500", 500, json!({})).await;
    let g = linked_group(&app, w.org, w.project, "boom", &[]).await;
    put_group(&app, g, json!({"assignedTo": format!("user:{}", w.user)})).await;

    let (s, v) = link(&app, g, w.jira, "APP-404").await;
    assert_eq!((s, v["error"].as_str()), (404, Some("not_found")), "{v}");
    assert!(
        v["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Issue does not exist")),
        "{v}"
    );
    let (s, v) = link(&app, g, w.jira, "APP-500").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (502, Some("provider_unreachable")),
        "{v}"
    );

    assert!(linked_keys(&app, g).await.is_empty());
    let mut tx = app.state.db.begin().await.unwrap();
    for key in ["APP-404", "APP-500"] {
        let e = issuesync::store::external::find_external_issue_by_key(&mut tx, w.org, w.jira, key)
            .await
            .unwrap();
        assert!(e.is_none(), "{key} was stored");
    }
    drop(tx);
    assert!(!activity_types(&app, g).await.contains(&21));
    assert!(named_jobs(&app, "sync_assignee_outbound").await.is_empty());
    assert!(named_jobs(&app, "sync_status_outbound").await.is_empty());
}

async fn refuses_what_cannot_be_linked(app: TestApp) {
    let w = world(&app).await;
    let g = linked_group(&app, w.org, w.project, "boom", &[]).await;
    // An integration that is not installed on the group's organization.
    let other = app
        .create(
            "/integrations",
            json!({"provider": "jira", "external_id": "jira:other", "name": "other",
                "metadata": {"base_url": w.mock.uri(), "shared_secret": "x"}}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let (s, v) = link(&app, g, other, "APP-1").await;
    assert_eq!((s, v["error"].as_str()), (409, Some("conflict")), "{v}");
    let (s, v) = link(&app, g, 999_999, "APP-1").await;
    assert_eq!(s, 409, "{v}");
    let (s, v) = link(&app, 999_999, w.jira, "APP-1").await;
    assert_eq!((s, v["error"].as_str()), (404, Some("not_found")), "{v}");
    let (s, v) = link(&app, g, w.jira, "  ").await;
    assert_eq!((s, v["error"].as_str()), (400, Some("bad_request")), "{v}");
    // Nothing was asked of the provider.
    assert!(w.mock.received_requests().await.unwrap().is_empty());
}
