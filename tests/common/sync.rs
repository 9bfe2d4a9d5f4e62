//! Building blocks of the sync tests: fixtures, linked groups, group intents, provider
//! webhooks with their auth, wiremock provider mocks and what they received, job lists.

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::TestApp;

/// The ADO collection (the VSTS integration's external id) of the fixtures.
pub const COLLECTION: &str = "80ded3e8-3cd3-43b1-9f96-52032624aa3a";
/// The ADO project of the fixtures.
pub const PROJECT_GUID: &str = "c0bf429a-c03c-4a99-9336-d45be74db5a6";
pub const ADO_SECRET: &str = "3f1c9a0e5b7d2c4e6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e";
pub const JIRA_SECRET: &str = "test-shared-secret-do-not-use";
pub const JIRA_CLIENT_KEY: &str = "jira:1e5b9b2a-8a8f-4c2b-9d7e-2b8c1f0e7a11";
pub const JIRA_SERVER_ID: &str = "jira.example.com:issuesync";
pub const JIRA_SERVER_SECRET: &str = "a long secret value";
/// The RSA key Jira Server's OAuth1 signs with (its public half is in `oauth.rs`).
pub const PRIVATE: &str = include_str!("../fixtures/test_rsa_private.pem");

/// A JSON file of tests/fixtures.
pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture JSON")
}

/// A request's JSON body (Null when it is none).
pub fn body(r: &Request) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

/// A group of `project` titled `title`, linked in `org` to each (integration, key).
pub async fn linked_group(
    app: &TestApp,
    org: i64,
    project: i64,
    title: &str,
    links: &[(i64, &str)],
) -> i64 {
    let g = app
        .create(
            &format!("/projects/{project}/groups"),
            json!({"title": title}),
        )
        .await["id"]
        .as_i64()
        .expect("group id");
    for (integration, key) in links {
        app.create(
            "/external-issues",
            json!({"organization_id": org, "integration_id": integration, "key": key, "group_ids": [g]}),
        )
        .await;
    }
    g
}

/// `PUT /groups/{g}` that must answer 200; returns the group.
pub async fn put_group(app: &TestApp, g: i64, body: Value) -> Value {
    let (s, v) = app
        .api(reqwest::Method::PUT, &format!("/groups/{g}"), Some(body))
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

/// The requests `mock` received for `method_name` `path_str`.
pub async fn requests(mock: &MockServer, method_name: &str, path_str: &str) -> Vec<Request> {
    mock.received_requests()
        .await
        .expect("recorded requests")
        .into_iter()
        .filter(|r| r.method.as_str() == method_name && r.url.path() == path_str)
        .collect()
}

/// How many requests `mock` received for `method_name` `path_str`.
pub async fn hits(mock: &MockServer, method_name: &str, path_str: &str) -> usize {
    requests(mock, method_name, path_str).await.len()
}

/// Jira's GET of issue `key` (in `status`, of Jira project `project`) and of its
/// transitions (the fixture's); `delay` slows the issue GET down.
pub async fn mock_jira_issue_with(
    mock: &MockServer,
    key: &str,
    status: &str,
    project: &str,
    delay: std::time::Duration,
) {
    Mock::given(method("GET"))
        .and(path(format!("/rest/api/2/issue/{key}")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(
                    json!({"key": key, "fields": {"status": {"id": status}, "project": {"id": project}}}),
                )
                .set_delay(delay),
        )
        .mount(mock)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/rest/api/2/issue/{key}/transitions")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("jira_transitions_response.json")),
        )
        .mount(mock)
        .await;
}

/// [`mock_jira_issue_with`] answering at once.
pub async fn mock_jira_issue(mock: &MockServer, key: &str, status: &str, project: &str) {
    mock_jira_issue_with(mock, key, status, project, std::time::Duration::ZERO).await;
}

/// ADO accepts every PATCH of work item `item`.
pub async fn mock_ado_patch(mock: &MockServer, item: i64) {
    Mock::given(method("PATCH"))
        .and(path(format!("/_apis/wit/workitems/{item}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(mock)
        .await;
}

/// A Jira Server webhook token for `JIRA_SERVER_ID` signed with `secret`.
pub fn jira_server_token(secret: &str) -> String {
    issuesync::providers::jira_server::auth::make_token(JIRA_SERVER_ID, secret).expect("token")
}

/// POSTs `body` to Jira Server's webhook route with `token`; returns the status and the
/// JSON answer (Null when it is none).
pub async fn post_jira_server(app: &TestApp, token: &str, body: &Value) -> (u16, Value) {
    let r = app
        .client
        .post(app.url(&format!("/extensions/jira-server/issue-updated/{token}/")))
        .json(body)
        .send()
        .await
        .expect("post");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// The jobs `filter` selects (100 at most), newest first.
pub async fn jobs(
    app: &TestApp,
    filter: issuesync::store::jobs::JobFilter,
) -> Vec<issuesync::ops::JobView> {
    issuesync::ops::list(&app.state.db, &filter, 100)
        .await
        .expect("jobs")
}

/// The jobs of the outbound queue.
pub async fn outbound_jobs(app: &TestApp) -> Vec<issuesync::ops::JobView> {
    jobs(
        app,
        issuesync::store::jobs::JobFilter {
            queue: Some("outbound".into()),
            ..Default::default()
        },
    )
    .await
}

/// The jobs named `job_name`.
pub async fn named_jobs(app: &TestApp, job_name: &str) -> Vec<issuesync::ops::JobView> {
    jobs(
        app,
        issuesync::store::jobs::JobFilter {
            job_name: Some(job_name.into()),
            ..Default::default()
        },
    )
    .await
}

/// The jobs in `state`.
pub async fn jobs_in_state(app: &TestApp, state: &str) -> Vec<issuesync::ops::JobView> {
    jobs(
        app,
        issuesync::store::jobs::JobFilter {
            state: Some(state.into()),
            ..Default::default()
        },
    )
    .await
}

/// POSTs `body` to ADO's webhook route, with the `shared-secret` header when given; returns
/// the status and the JSON answer (Null when it is none).
pub async fn post_vsts(app: &TestApp, body: &Value, secret: Option<&str>) -> (u16, Value) {
    let mut req = app
        .client
        .post(app.url("/extensions/vsts/issue-updated/"))
        .json(body);
    if let Some(s) = secret {
        req = req.header("shared-secret", s);
    }
    let r = req.send().await.expect("post");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// A Connect JWT of `JIRA_CLIENT_KEY` signed with `secret` for a POST of `path`, expiring
/// in `exp_in` seconds.
pub fn connect_jwt(secret: &str, path: &str, exp_in: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"iss": JIRA_CLIENT_KEY, "iat": now, "exp": now + exp_in, "qsh": issuesync::providers::jira::auth::qsh("POST", path, &[])});
    issuesync::providers::jira::auth::sign(&claims, secret).expect("jwt")
}

/// POSTs `body` to Jira Cloud's webhook route as delivery `id`, with `Authorization: auth`
/// when given; returns the status and the JSON answer (Null when it is none).
pub async fn post_jira(app: &TestApp, auth: Option<&str>, body: &Value, id: &str) -> (u16, Value) {
    let mut req = app
        .client
        .post(app.url("/extensions/jira/issue-updated/"))
        .header("X-Atlassian-Webhook-Identifier", id)
        .json(body);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let r = req.send().await.expect("post");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// A Jira Server integration at `base_url` that signs its API calls (OAuth1 with
/// [`PRIVATE`], consumer `issuesync`, token `tok-123`); returns its id.
pub async fn signing_jira_server(app: &TestApp, base_url: &str) -> i64 {
    app.create("/integrations", json!({"provider": "jira_server", "external_id": JIRA_SERVER_ID, "name": "issuesync",
        "metadata": {"base_url": base_url, "webhook_secret": JIRA_SERVER_SECRET, "consumer_key": "issuesync", "private_key": PRIVATE, "access_token": "tok-123"}}))
        .await["id"]
        .as_i64()
        .expect("integration id")
}

/// Maps external project `external_id` of installation `oi` to the resolved and unresolved
/// statuses; must answer 200.
pub async fn map_project(
    app: &TestApp,
    oi: i64,
    external_id: &str,
    resolved: &str,
    unresolved: &str,
) {
    let (s, v) = app
        .post(
            &format!("/organization-integrations/{oi}/external-projects"),
            json!({"external_id": external_id, "resolved_status": resolved, "unresolved_status": unresolved}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

/// Jira's status list (`/rest/api/2/status`) answers `statuses`.
pub async fn mock_jira_statuses(mock: &MockServer, statuses: Value) {
    Mock::given(method("GET"))
        .and(path("/rest/api/2/status"))
        .respond_with(ResponseTemplate::new(200).set_body_json(statuses))
        .mount(mock)
        .await;
}

/// Jira answers 404 "Issue does not exist" for issue `key`.
pub async fn mock_jira_issue_gone(mock: &MockServer, key: &str) {
    Mock::given(method("GET"))
        .and(path(format!("/rest/api/2/issue/{key}")))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_string("{\"errorMessages\":[\"Issue does not exist\"]}"),
        )
        .mount(mock)
        .await;
}

/// ADO's user graph (`/_apis/graph/users`) lists users with these mail addresses.
pub async fn mock_ado_users(mock: &MockServer, emails: &[&str]) {
    let value: Vec<Value> = emails.iter().map(|e| json!({"mailAddress": e})).collect();
    Mock::given(method("GET"))
        .and(path("/_apis/graph/users"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "value": value })))
        .mount(mock)
        .await;
}

/// An organization with ADO installed (inbound status sync on) against `mock`, its work item
/// states mocked, and a group linked to work item `item`; returns (integration, group).
pub async fn ado_inbound_status(app: &TestApp, mock: &MockServer, item: i64) -> (i64, i64) {
    use super::decisions::{id, install, org_team_project};
    let (org, _, project) = org_team_project(app, "Backend", Some("backend")).await;
    let ado = id(&app
        .create("/integrations", json!({"provider": "vsts", "external_id": COLLECTION, "name": "acct",
            "metadata": {"domain_name": format!("{}/", mock.uri()), "access_token": "ado-token", "subscription": {"id": "sub1", "secret": ADO_SECRET}}}))
        .await);
    install(app, ado, org, json!({"sync_status_reverse": true})).await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/{PROJECT_GUID}/_apis/wit/workitemtypes/Bug/states"
        )))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture("vsts_work_item_states_response.json")),
        )
        .mount(mock)
        .await;
    let group = linked_group(app, org, project, "boom", &[(ado, &item.to_string())]).await;
    (ado, group)
}

/// ADO's "work item updated" of work item `item` at revision `rev`, its state moved `old` →
/// `new` (no `old`: the item was created in that state).
pub fn ado_state(item: i64, old: Option<&str>, new: &str, notification: &str, rev: i64) -> Value {
    let mut v = fixture("vsts_workitem_updated_state_change.json");
    v["id"] = json!(notification);
    v["resource"]["workItemId"] = json!(item);
    v["resource"]["rev"] = json!(rev);
    v["resource"]["fields"]["System.State"] = match old {
        Some(o) => json!({"oldValue": o, "newValue": new}),
        None => json!({"newValue": new}),
    };
    v
}
