//! Inbound sync end to end: the real app receives provider fixtures over HTTP, verifies and
//! stores them, workers apply them; providers' APIs are wiremock servers. Runs on SQLite and
//! on Postgres + Redis.

mod common;

use common::TestApp;
use common::decisions::{install, org_team_project};
use common::sync::{
    ADO_SECRET, COLLECTION, JIRA_CLIENT_KEY, JIRA_SECRET, JIRA_SERVER_ID, JIRA_SERVER_SECRET,
    PROJECT_GUID, ado_state, connect_jwt, fixture, jira_server_token, mock_jira_statuses,
    named_jobs, outbound_jobs, post_jira, post_jira_server, post_vsts,
};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

sqlite_and_pg_redis_tests!(
    vsts_assign_reassign_unassign,
    assignee_needs_verified_email_and_project_access,
    two_orgs_share_an_integration_one_with_sync_off,
    vsts_status_decisions,
    jira_cloud_done_to_in_progress_unresolves,
    jira_server_assignment_and_echo_guard,
    archived_group_is_left_alone_unless_configured,
    stale_events_are_skipped,
    vsts_bad_input,
    jira_server_bad_input,
    jira_cloud_bad_input,
    database_away_answers_503_and_the_retry_succeeds,
    deliveries_can_be_listed_and_replayed,
    stored_job_is_the_process_webhook_job_of_its_delivery,
);

struct World {
    org: i64,
    project: i64,
    team: i64,
    /// Member of the project's team with verified lauryn@sentry.io, bob@example.org, jess@sentry.io.
    user: i64,
    vsts: i64,
    jira: i64,
    jira_server: i64,
    mock: MockServer,
}

impl World {
    async fn group(&self, app: &TestApp, title: &str, status: &str) -> i64 {
        app.create(
            &format!("/projects/{}/groups", self.project),
            json!({"title": title, "status": status}),
        )
        .await["id"]
            .as_i64()
            .unwrap()
    }

    /// Links a group to external issue `key` of `integration` in `org`.
    async fn link(&self, app: &TestApp, org: i64, integration: i64, key: &str, group: i64) {
        app.create("/external-issues", json!({"organization_id": org, "integration_id": integration, "key": key, "group_ids": [group]})).await;
    }
}

/// Inbound switches only: outbound pushes are tests/outbound.rs' business.
fn all_sync() -> Value {
    json!({"sync_status_reverse": true, "sync_reverse_assignment": true})
}

async fn world(app: &TestApp) -> World {
    let mock = MockServer::start().await;
    let (org, team, project) = org_team_project(app, "Web", None).await;
    let user = app
        .create(
            "/users",
            json!({"name": "Lauryn", "emails": [
            {"email": "lauryn@sentry.io", "is_verified": true},
            {"email": "bob@example.org", "is_verified": true},
            {"email": "jess@sentry.io", "is_verified": true}]}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    app.create(
        &format!("/organizations/{org}/members"),
        json!({"user_id": user, "teams": [team]}),
    )
    .await;
    let vsts = app
        .create("/integrations", json!({"provider": "vsts", "external_id": COLLECTION, "name": "laurynsentry",
            "metadata": {"domain_name": format!("{}/", mock.uri()), "access_token": "ado-token", "subscription": {"id": "sub1", "secret": ADO_SECRET}}}))
        .await["id"]
        .as_i64()
        .unwrap();
    let jira = app
        .create(
            "/integrations",
            json!({"provider": "jira", "external_id": JIRA_CLIENT_KEY, "name": "JIRA",
            "metadata": {"base_url": mock.uri(), "shared_secret": JIRA_SECRET}}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let jira_server = app
        .create("/integrations", json!({"provider": "jira_server", "external_id": JIRA_SERVER_ID, "name": "issuesync",
            "metadata": {"base_url": mock.uri(), "webhook_secret": JIRA_SERVER_SECRET, "sync_actor_ids": ["issuesync-bot"]}}))
        .await["id"]
        .as_i64()
        .unwrap();
    for i in [vsts, jira, jira_server] {
        install(app, i, org, all_sync()).await;
    }
    // ADO work item states of the project (Bug has states).
    Mock::given(method("GET"))
        .and(path(format!(
            "/{PROJECT_GUID}/_apis/wit/workitemtypes/Bug/states"
        )))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture("vsts_work_item_states_response.json")),
        )
        .mount(&mock)
        .await;
    // Jira statuses: 10101 is done.
    mock_jira_statuses(
        &mock,
        json!([
            {"id": "10101", "name": "Done", "statusCategory": {"key": "done"}},
            {"id": "3", "name": "In Progress", "statusCategory": {"key": "indeterminate"}},
            {"id": "1", "name": "Open", "statusCategory": {"key": "new"}},
            {"id": "5", "name": "Resolved", "statusCategory": {"key": "done"}}]),
    )
    .await;
    World {
        org,
        project,
        team,
        user,
        vsts,
        jira,
        jira_server,
        mock,
    }
}

/// A client of its own for an oversized body: the server answers 413 and closes the
/// connection before reading it all, which must not poison the shared client's pool.
fn oversized_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn group(app: &TestApp, id: i64) -> Value {
    app.get(&format!("/groups/{id}")).await.1
}

async fn subscriptions(app: &TestApp, group: i64) -> Vec<(Option<i64>, i32)> {
    let mut tx = app.state.db.begin().await.unwrap();
    issuesync::store::groups::list_subscriptions(&mut tx, group)
        .await
        .unwrap()
        .iter()
        .map(|s| (s.user_id, s.reason))
        .collect()
}

/// Sets both cache keys of a group, so a test can see them deleted.
async fn prime_cache(app: &TestApp, group: i64) {
    use issuesync::domain::caches::*;
    app.state
        .caches
        .set(
            &assignee_exists_key(group),
            "0",
            ASSIGNEE_DOES_NOT_EXIST_DURATION,
        )
        .await
        .unwrap();
    app.state
        .caches
        .set(
            &owner_exists_key(group),
            "1",
            ISSUE_OWNERS_DEBOUNCE_DURATION,
        )
        .await
        .unwrap();
}

async fn cache_keys(app: &TestApp, group: i64) -> (Option<String>, Option<String>) {
    use issuesync::domain::caches::*;
    (
        app.state
            .caches
            .get(&assignee_exists_key(group))
            .await
            .unwrap(),
        app.state
            .caches
            .get(&owner_exists_key(group))
            .await
            .unwrap(),
    )
}

async fn counts(app: &TestApp) -> (i64, i64) {
    let mut tx = app.state.db.begin().await.unwrap();
    let deliveries = issuesync::store::deliveries::count_deliveries(&mut tx)
        .await
        .unwrap();
    let jobs = issuesync::ops::list(&app.state.db, &Default::default(), 10_000)
        .await
        .unwrap()
        .iter()
        .filter(|j| j.job != "purge_jobs")
        .count() as i64;
    (deliveries, jobs)
}

async fn vsts_assign_reassign_unassign(app: TestApp) {
    let w = world(&app).await;
    let _workers = app.start_workers();
    let g31 = w.group(&app, "ADO 31", "unresolved").await;
    w.link(&app, w.org, w.vsts, "31", g31).await;
    // Someone else holds the group first, to see the reassignment clean up after them.
    let other = app.create("/users", json!({"name": "Other", "emails": [{"email": "other@example.com", "is_verified": true}]})).await["id"].as_i64().unwrap();
    app.create(
        &format!("/organizations/{}/members", w.org),
        json!({"user_id": other, "teams": [w.team]}),
    )
    .await;
    {
        let mut tx = app.state.db.begin_write().await.unwrap();
        let gref = issuesync::domain::assign::GroupRef {
            group_id: g31,
            project_id: w.project,
            organization_id: w.org,
        };
        let mut fx = Default::default();
        issuesync::domain::assign::assign(
            &mut tx,
            gref,
            issuesync::domain::assign::Actor::User(other),
            None,
            &json!({}),
            None,
            &mut fx,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    prime_cache(&app, g31).await;

    let (s, v) = post_vsts(
        &app,
        &fixture("vsts_workitem_updated_assignee_change.json"),
        Some(ADO_SECRET),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("queued")), "{v}");
    app.drain().await;
    // Deleted by the change (a later GET reads through and caches again).
    assert_eq!(cache_keys(&app, g31).await, (None, None));
    let g = group(&app, g31).await;
    assert_eq!(g["assignedTo"], format!("user:{}", w.user));
    let last = g["activity"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["type"], 11);
    assert_eq!(last["data"]["assignee"], w.user.to_string());
    assert_eq!(last["data"]["assigneeEmail"], "lauryn@sentry.io");
    assert_eq!(last["data"]["assigneeType"], "user");
    let hist: Vec<i64> = g["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_i64().unwrap())
        .collect();
    assert_eq!(hist, [5, 5]);
    // The old assignee's "assigned" subscription went; the new one has one.
    assert_eq!(subscriptions(&app, g31).await, [(Some(w.user), 2)]);

    // Unassign (work item 33).
    let g33 = w.group(&app, "ADO 33", "unresolved").await;
    w.link(&app, w.org, w.vsts, "33", g33).await;
    {
        let mut tx = app.state.db.begin_write().await.unwrap();
        let gref = issuesync::domain::assign::GroupRef {
            group_id: g33,
            project_id: w.project,
            organization_id: w.org,
        };
        issuesync::domain::assign::assign(
            &mut tx,
            gref,
            issuesync::domain::assign::Actor::User(w.user),
            None,
            &json!({}),
            None,
            &mut Default::default(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    prime_cache(&app, g33).await;
    let (s, _) = post_vsts(
        &app,
        &fixture("vsts_workitem_updated_unassigned.json"),
        Some(ADO_SECRET),
    )
    .await;
    assert_eq!(s, 200);
    app.drain().await;
    // Deleted by the change (a later GET reads through and caches again).
    assert_eq!(cache_keys(&app, g33).await, (None, None));
    let g = group(&app, g33).await;
    assert_eq!(g["assignedTo"], Value::Null);
    assert_eq!(
        g["activity"].as_array().unwrap().last().unwrap()["type"],
        12
    );
    let hist = g["history"].as_array().unwrap();
    assert_eq!(hist.last().unwrap()["status"], 6);
    assert_eq!(
        hist.last().unwrap()["prev_history_id"],
        hist[0]["id"],
        "UNASSIGNED links back to ASSIGNED"
    );
    assert!(subscriptions(&app, g33).await.is_empty());

    // The same delivery again: 200, nothing new enqueued.
    let before = counts(&app).await;
    let (s, v) = post_vsts(
        &app,
        &fixture("vsts_workitem_updated_unassigned.json"),
        Some(ADO_SECRET),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("duplicate")));
    assert_eq!(counts(&app).await, before);
}

async fn assignee_needs_verified_email_and_project_access(app: TestApp) {
    let w = world(&app).await;
    let _workers = app.start_workers();
    // Unverified email: nobody is assigned.
    let unverified = app
        .create(
            "/users",
            json!({"name": "U", "emails": [{"email": "ghost@example.com", "is_verified": false}]}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    app.create(
        &format!("/organizations/{}/members", w.org),
        json!({"user_id": unverified, "teams": [w.team]}),
    )
    .await;
    // A user with a verified email who is in the org but not in the project's team.
    let outsider = app.create("/users", json!({"name": "O", "emails": [{"email": "outsider@example.com", "is_verified": true}]})).await["id"].as_i64().unwrap();
    app.create(
        &format!("/organizations/{}/members", w.org),
        json!({"user_id": outsider}),
    )
    .await;

    let g = w.group(&app, "APP-1", "unresolved").await;
    w.link(&app, w.org, w.jira_server, "APP-1", g).await;
    let token = jira_server_token(JIRA_SERVER_SECRET);
    for (i, email) in ["ghost@example.com", "outsider@example.com"]
        .iter()
        .enumerate()
    {
        let body = json!({"timestamp": 1000 + i, "changelog": {"items": [{"field": "assignee"}], "id": 100 + i},
                          "issue": {"key": "APP-1", "fields": {"assignee": {"emailAddress": email}}}});
        assert_eq!(post_jira_server(&app, &token, &body).await.0, 200);
        // One at a time: processed out of order, the older event would be skipped as stale.
        app.drain().await;
    }
    let got = group(&app, g).await;
    assert_eq!(got["assignedTo"], Value::Null);
    assert!(got["activity"].as_array().unwrap().is_empty());
    // The jobs ran and finished without error.
    let jobs = named_jobs(&app, "sync_assignee_inbound").await;
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|j| j.state == "done"), "{jobs:?}");
}

async fn two_orgs_share_an_integration_one_with_sync_off(app: TestApp) {
    let w = world(&app).await;
    let _workers = app.start_workers();
    let org2 = app
        .create("/organizations", json!({"name": "Other Org"}))
        .await["id"]
        .as_i64()
        .unwrap();
    let team2 = app
        .create(
            &format!("/organizations/{org2}/teams"),
            json!({"name": "T"}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let p2 = app
        .create(
            &format!("/organizations/{org2}/projects"),
            json!({"name": "P", "teams": [team2]}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    app.create(
        &format!("/organizations/{org2}/members"),
        json!({"user_id": w.user, "teams": [team2]}),
    )
    .await;
    install(
        &app,
        w.vsts,
        org2,
        json!({"sync_reverse_assignment": false}),
    )
    .await;
    let g1 = w.group(&app, "org1", "unresolved").await;
    w.link(&app, w.org, w.vsts, "31", g1).await;
    let g2 = app
        .create(&format!("/projects/{p2}/groups"), json!({"title": "org2"}))
        .await["id"]
        .as_i64()
        .unwrap();
    w.link(&app, org2, w.vsts, "31", g2).await;

    assert_eq!(
        post_vsts(
            &app,
            &fixture("vsts_workitem_updated_assignee_change.json"),
            Some(ADO_SECRET)
        )
        .await
        .0,
        200
    );
    app.drain().await;
    assert_eq!(
        group(&app, g1).await["assignedTo"],
        format!("user:{}", w.user)
    );
    assert_eq!(
        group(&app, g2).await["assignedTo"],
        Value::Null,
        "org with sync off was changed"
    );
}

async fn vsts_status_decisions(app: TestApp) {
    let w = world(&app).await;
    let _workers = app.start_workers();
    let g = w.group(&app, "ADO 33", "unresolved").await;
    w.link(&app, w.org, w.vsts, "33", g).await;

    // A new work item (no old state) created as Resolved: both flags set, a NOOP.
    assert_eq!(
        post_vsts(
            &app,
            &ado_state(33, None, "Resolved", "n-1", 3),
            Some(ADO_SECRET)
        )
        .await
        .0,
        200
    );
    app.drain().await;
    let got = group(&app, g).await;
    assert_eq!(got["status"], 0);
    assert!(got["activity"].as_array().unwrap().is_empty());

    // Active → Resolved: RESOLVE.
    assert_eq!(
        post_vsts(
            &app,
            &ado_state(33, Some("Active"), "Resolved", "n-2", 4),
            Some(ADO_SECRET)
        )
        .await
        .0,
        200
    );
    app.drain().await;
    let got = group(&app, g).await;
    assert_eq!(
        (got["status"].as_i64(), got["substatus"].clone()),
        (Some(1), Value::Null)
    );
    let act = got["activity"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(act["type"], 1);
    assert_eq!(
        act["data"],
        json!({"provider": "Azure DevOps", "provider_key": "vsts", "integration_id": w.vsts})
    );
    assert_eq!(
        got["history"].as_array().unwrap().last().unwrap()["status"],
        1
    );
    assert_eq!(
        got["resolved_at"],
        Value::Null,
        "inbound resolve does not set resolved_at"
    );

    // Resolved → Active: UNRESOLVE to unresolved/ongoing.
    assert_eq!(
        post_vsts(
            &app,
            &ado_state(33, Some("Resolved"), "Active", "n-3", 5),
            Some(ADO_SECRET)
        )
        .await
        .0,
        200
    );
    app.drain().await;
    let got = group(&app, g).await;
    assert_eq!(
        (got["status"].as_i64(), got["substatus"].as_i64()),
        (Some(0), Some(3))
    );
    assert_eq!(
        got["activity"].as_array().unwrap().last().unwrap()["type"],
        2
    );
    let hist = got["history"].as_array().unwrap();
    assert_eq!(hist.last().unwrap()["status"], 0);
    assert_eq!(hist.last().unwrap()["prev_history_id"], hist[0]["id"]);
    // Inbound status changes are pushed to no integration.
    let outbound = outbound_jobs(&app).await;
    assert!(outbound.is_empty(), "{outbound:?}");
}

async fn jira_cloud_done_to_in_progress_unresolves(app: TestApp) {
    let w = world(&app).await;
    let _workers = app.start_workers();
    let g = w.group(&app, "APP-123", "resolved").await;
    w.link(&app, w.org, w.jira, "APP-123", g).await;
    let jwt = connect_jwt(JIRA_SECRET, "/extensions/jira/issue-updated/", 180);
    let (s, v) = post_jira(
        &app,
        Some(&format!("JWT {jwt}")),
        &fixture("jira_cloud_issue_updated_status_change.json"),
        "wh-1",
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("queued")), "{v}");
    // Assignee from the Cloud fixture too.
    let (s, _) = post_jira(
        &app,
        Some(&format!("JWT {jwt}")),
        &fixture("jira_cloud_issue_updated_assignee_change.json"),
        "wh-2",
    )
    .await;
    assert_eq!(s, 200);
    app.drain().await;
    let got = group(&app, g).await;
    assert_eq!(
        (got["status"].as_i64(), got["substatus"].as_i64()),
        (Some(0), Some(3))
    );
    let acts: Vec<i64> = got["activity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_i64().unwrap())
        .collect();
    assert!(acts.contains(&2) && acts.contains(&11), "{acts:?}");
    assert_eq!(got["assignedTo"], format!("user:{}", w.user));
    // The statuses API was asked once with a Connect JWT.
    let reqs = w.mock.received_requests().await.unwrap();
    let status_calls: Vec<_> = reqs
        .iter()
        .filter(|r| r.url.path() == "/rest/api/2/status")
        .collect();
    assert_eq!(status_calls.len(), 1);
    let auth = status_calls[0]
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(auth.starts_with("JWT "), "{auth}");
    let token = auth.trim_start_matches("JWT ");
    // Signed with the tenant's secret, for exactly this request, by our app key.
    let claims = issuesync::providers::jira::auth::verify(
        token,
        JIRA_SECRET,
        "GET",
        "/rest/api/2/status",
        &[],
        chrono::Utc::now().timestamp(),
    )
    .unwrap();
    assert_eq!(claims.iss, app.state.jira_app_key());
    assert!(
        issuesync::providers::jira::auth::verify(
            token,
            JIRA_SECRET,
            "POST",
            "/rest/api/2/status",
            &[],
            chrono::Utc::now().timestamp()
        )
        .is_err()
    );
}

async fn jira_server_assignment_and_echo_guard(app: TestApp) {
    let w = world(&app).await;
    let _workers = app.start_workers();
    let g = w.group(&app, "APP-1", "unresolved").await;
    w.link(&app, w.org, w.jira_server, "APP-1", g).await;
    let token = jira_server_token(JIRA_SERVER_SECRET);
    // Our own service account's change is ignored.
    let mut echo = fixture("jira_server_issue_updated_assignee_change.json");
    echo["user"] = json!({"name": "issuesync-bot"});
    echo["timestamp"] = json!(1);
    assert_eq!(post_jira_server(&app, &token, &echo).await.0, 200);
    app.drain().await;
    assert_eq!(
        group(&app, g).await["assignedTo"],
        Value::Null,
        "echo was applied"
    );
    // A human's change is applied.
    assert_eq!(
        post_jira_server(
            &app,
            &token,
            &fixture("jira_server_issue_updated_assignee_change.json")
        )
        .await
        .0,
        200
    );
    app.drain().await;
    let got = group(&app, g).await;
    assert_eq!(got["assignedTo"], format!("user:{}", w.user));
    assert_eq!(
        got["activity"].as_array().unwrap().last().unwrap()["data"]["assigneeEmail"],
        "lauryn@sentry.io"
    );
}

async fn archived_group_is_left_alone_unless_configured(app: TestApp) {
    let w = world(&app).await;
    let _workers = app.start_workers();
    let g = w.group(&app, "APP-123", "ignored").await;
    w.link(&app, w.org, w.jira, "APP-123", g).await;
    let jwt = connect_jwt(JIRA_SECRET, "/extensions/jira/issue-updated/", 180);
    let mut to_done = fixture("jira_cloud_issue_updated_status_change.json");
    to_done["changelog"]["items"][0]["from"] = json!("3");
    to_done["changelog"]["items"][0]["to"] = json!("10101");
    post_jira(&app, Some(&format!("JWT {jwt}")), &to_done, "wh-a").await;
    app.drain().await;
    assert_eq!(
        group(&app, g).await["status"],
        2,
        "Jira Done resolved an archived group"
    );
    let mut cfg = all_sync();
    cfg["sync_status_reverse_overrides_ignored"] = json!(true);
    install(&app, w.jira, w.org, cfg).await;
    post_jira(&app, Some(&format!("JWT {jwt}")), &to_done, "wh-b").await;
    app.drain().await;
    assert_eq!(group(&app, g).await["status"], 1);
}

async fn stale_events_are_skipped(app: TestApp) {
    let w = world(&app).await;
    let _workers = app.start_workers();
    let g = w.group(&app, "ADO 33", "unresolved").await;
    w.link(&app, w.org, w.vsts, "33", g).await;
    post_vsts(
        &app,
        &ado_state(33, Some("Active"), "Resolved", "n-10", 10),
        Some(ADO_SECRET),
    )
    .await;
    app.drain().await;
    // An older revision arrives late: it must not unresolve.
    post_vsts(
        &app,
        &ado_state(33, Some("Resolved"), "Active", "n-9", 9),
        Some(ADO_SECRET),
    )
    .await;
    app.drain().await;
    assert_eq!(group(&app, g).await["status"], 1);
}

async fn vsts_bad_input(app: TestApp) {
    let w = world(&app).await;
    let body = fixture("vsts_workitem_updated_assignee_change.json");
    let before = counts(&app).await;
    assert_eq!(post_vsts(&app, &body, Some("wrong")).await.0, 401);
    let (s, v) = post_vsts(&app, &body, None).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("unauthorized")));
    let mut unknown = body.clone();
    unknown["resourceContainers"]["collection"]["id"] =
        json!("00000000-0000-0000-0000-000000000000");
    assert_eq!(post_vsts(&app, &unknown, Some(ADO_SECRET)).await.0, 404);
    let mut missing = body.clone();
    missing
        .as_object_mut()
        .unwrap()
        .remove("resourceContainers");
    assert_eq!(post_vsts(&app, &missing, Some(ADO_SECRET)).await.0, 400);
    let r = app
        .client
        .post(app.url("/extensions/vsts/issue-updated/"))
        .header("shared-secret", ADO_SECRET)
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let big = "x".repeat(2 * 1024 * 1024);
    let r = oversized_client()
        .post(app.url("/extensions/vsts/issue-updated/"))
        .header("shared-secret", ADO_SECRET)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "payload_too_large");
    // Another event type is verified, then ignored.
    let mut other = body.clone();
    other["eventType"] = json!("workitem.created");
    assert_eq!(
        post_vsts(&app, &other, Some(ADO_SECRET)).await,
        (
            200,
            json!({"status": "ignored", "reason": "event type is not workitem.updated"})
        )
    );
    assert_eq!(
        counts(&app).await,
        before,
        "refused input was stored or enqueued"
    );
    // The same delivery twice: one job.
    assert_eq!(
        post_vsts(&app, &body, Some(ADO_SECRET)).await.1["status"],
        "queued"
    );
    assert_eq!(
        post_vsts(&app, &body, Some(ADO_SECRET)).await.1["status"],
        "duplicate"
    );
    assert_eq!(counts(&app).await, (before.0 + 1, before.1 + 1));
    let _ = w;
}

fn unsigned_jwt(header: Value, claims: Value) -> String {
    use base64_url::encode;
    format!(
        "{}.{}.",
        encode(&header.to_string()),
        encode(&claims.to_string())
    )
}

mod base64_url {
    pub fn encode(s: &str) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, x)| acc | (u32::from(*x) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}

async fn jira_server_bad_input(app: TestApp) {
    let _w = world(&app).await;
    let body = fixture("jira_server_issue_updated_assignee_change.json");
    let before = counts(&app).await;
    assert_eq!(
        post_jira_server(&app, &jira_server_token("wrong secret"), &body)
            .await
            .0,
        401
    );
    assert_eq!(post_jira_server(&app, "garbage", &body).await.0, 401);
    let none = unsigned_jwt(
        json!({"alg": "none", "typ": "JWT"}),
        json!({"id": JIRA_SERVER_ID}),
    );
    assert_eq!(post_jira_server(&app, &none, &body).await.0, 401);
    let hs384 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS384),
        &json!({"id": JIRA_SERVER_ID}),
        &jsonwebtoken::EncodingKey::from_secret(JIRA_SERVER_SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(post_jira_server(&app, &hs384, &body).await.0, 401);
    let unknown =
        issuesync::providers::jira_server::auth::make_token("nope:nope", JIRA_SERVER_SECRET)
            .unwrap();
    assert_eq!(post_jira_server(&app, &unknown, &body).await.0, 404);
    let token = jira_server_token(JIRA_SERVER_SECRET);
    let r = app
        .client
        .post(app.url(&format!("/extensions/jira-server/issue-updated/{token}/")))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = oversized_client()
        .post(app.url(&format!("/extensions/jira-server/issue-updated/{token}/")))
        .body("y".repeat(2 * 1024 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        post_jira_server(&app, &token, &json!({"issue": {"key": "APP-1"}})).await,
        (
            200,
            json!({"status": "ignored", "reason": "missing-changelog"})
        )
    );
    assert_eq!(counts(&app).await, before);
    assert_eq!(
        post_jira_server(&app, &token, &body).await.1["status"],
        "queued"
    );
    assert_eq!(
        post_jira_server(&app, &token, &body).await.1["status"],
        "duplicate"
    );
    assert_eq!(counts(&app).await, (before.0 + 1, before.1 + 1));
}

async fn jira_cloud_bad_input(app: TestApp) {
    let _w = world(&app).await;
    let body = fixture("jira_cloud_issue_updated_assignee_change.json");
    let path = "/extensions/jira/issue-updated/";
    let before = counts(&app).await;
    assert_eq!(post_jira(&app, None, &body, "x1").await.0, 401);
    assert_eq!(
        post_jira(&app, Some("JWT not.a.jwt"), &body, "x1").await.0,
        401
    );
    assert_eq!(
        post_jira(
            &app,
            Some(&format!("JWT {}", connect_jwt("forged", path, 180))),
            &body,
            "x1"
        )
        .await
        .0,
        401
    );
    assert_eq!(
        post_jira(
            &app,
            Some(&format!("JWT {}", connect_jwt(JIRA_SECRET, path, -120))),
            &body,
            "x1"
        )
        .await
        .0,
        401,
        "expired"
    );
    assert_eq!(
        post_jira(
            &app,
            Some(&format!("JWT {}", connect_jwt(JIRA_SECRET, "/other/", 180))),
            &body,
            "x1"
        )
        .await
        .0,
        401,
        "qsh"
    );
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"iss": JIRA_CLIENT_KEY, "iat": now, "exp": now + 100, "qsh": issuesync::providers::jira::auth::qsh("POST", path, &[])});
    let none = unsigned_jwt(json!({"alg": "none"}), claims.clone());
    assert_eq!(
        post_jira(&app, Some(&format!("JWT {none}")), &body, "x1")
            .await
            .0,
        401
    );
    let hs384 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS384),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JIRA_SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        post_jira(&app, Some(&format!("JWT {hs384}")), &body, "x1")
            .await
            .0,
        401
    );
    let mut unknown = claims.clone();
    unknown["iss"] = json!("jira:unknown");
    let unknown = issuesync::providers::jira::auth::sign(&unknown, JIRA_SECRET).unwrap();
    assert_eq!(
        post_jira(&app, Some(&format!("JWT {unknown}")), &body, "x1")
            .await
            .0,
        404
    );
    let good = format!("JWT {}", connect_jwt(JIRA_SECRET, path, 180));
    let r = app
        .client
        .post(app.url(path))
        .header("Authorization", &good)
        .body("[1,2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = oversized_client()
        .post(app.url(path))
        .header("Authorization", &good)
        .body("z".repeat(2 * 1024 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(counts(&app).await, before);
    // The token may also come as ?jwt=.
    let r = app
        .client
        .post(app.url(&format!(
            "{path}?jwt={}",
            connect_jwt(JIRA_SECRET, path, 180)
        )))
        .header("X-Atlassian-Webhook-Identifier", "q1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        post_jira(&app, Some(&good), &body, "q1").await.1["status"],
        "duplicate"
    );
    assert_eq!(counts(&app).await, (before.0 + 1, before.1 + 1));
}

async fn database_away_answers_503_and_the_retry_succeeds(app: TestApp) {
    let _w = world(&app).await;
    let body = fixture("vsts_workitem_updated_assignee_change.json");
    let before = counts(&app).await;
    match &app.state.db {
        issuesync::db::Db::Pg(_) => {
            let admin = sqlx::PgPool::connect(&std::env::var("TEST_DATABASE_URL").unwrap())
                .await
                .unwrap();
            let name = app.db.url.rsplit('/').next().unwrap().to_string();
            let block = format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false");
            sqlx::query(sqlx::AssertSqlSafe(block))
                .execute(&admin)
                .await
                .unwrap();
            let kill = format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            );
            sqlx::query(sqlx::AssertSqlSafe(kill))
                .execute(&admin)
                .await
                .unwrap();
            let (s, v) = post_vsts(&app, &body, Some(ADO_SECRET)).await;
            assert_eq!((s, v["error"].as_str()), (503, Some("unavailable")), "{v}");
            let allow = format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true");
            sqlx::query(sqlx::AssertSqlSafe(allow))
                .execute(&admin)
                .await
                .unwrap();
        }
        issuesync::db::Db::Sqlite(_) => {
            // Another writer holds the database longer than the 5 s busy timeout.
            let path = app.db.url.trim_start_matches("sqlite://").to_string();
            let mut conn =
                <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{path}"))
                    .await
                    .unwrap();
            sqlx::query("BEGIN EXCLUSIVE")
                .execute(&mut conn)
                .await
                .unwrap();
            let (s, v) = post_vsts(&app, &body, Some(ADO_SECRET)).await;
            assert_eq!((s, v["error"].as_str()), (503, Some("unavailable")), "{v}");
            sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
        }
    }
    assert_eq!(counts(&app).await, before, "a refused delivery was stored");
    // The provider retries: stored once and queued.
    let (s, v) = post_vsts(&app, &body, Some(ADO_SECRET)).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("queued")), "{v}");
    assert_eq!(counts(&app).await, (before.0 + 1, before.1 + 1));
}

async fn deliveries_can_be_listed_and_replayed(app: TestApp) {
    let w = world(&app).await;
    let g = w.group(&app, "ADO 31", "unresolved").await;
    w.link(&app, w.org, w.vsts, "31", g).await;
    let (_, v) = post_vsts(
        &app,
        &fixture("vsts_workitem_updated_assignee_change.json"),
        Some(ADO_SECRET),
    )
    .await;
    let delivery = v["delivery_id"].as_i64().unwrap();
    // While its job is pending, a replay is refused.
    let (s, e) = app
        .post(&format!("/deliveries/{delivery}/replay"), json!({}))
        .await;
    assert_eq!((s, e["error"].as_str()), (400, Some("bad_request")), "{e}");
    let workers = app.start_workers();
    app.drain().await;
    let (s, list) = app.get("/deliveries?provider=vsts").await;
    assert_eq!(s, 200);
    assert_eq!(list[0]["id"], delivery);
    assert_eq!(list[0]["job_state"], "done");
    assert_eq!(
        list[0]["headers"].get("shared-secret"),
        None,
        "an auth header was stored"
    );
    // Unassign by hand, then replay: the assignment is applied again.
    {
        // Read-then-write while workers run: SQLite needs BEGIN IMMEDIATE.
        let mut tx = app.state.db.begin_write().await.unwrap();
        let gref = issuesync::domain::assign::GroupRef {
            group_id: g,
            project_id: w.project,
            organization_id: w.org,
        };
        issuesync::domain::assign::deassign(&mut tx, gref, None, None, &mut Default::default())
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let (code, out) = app.run_cli(&["deliveries", "replay", &delivery.to_string()]);
    assert_eq!(code, 0, "{out}");
    app.drain().await;
    assert_eq!(
        group(&app, g).await["assignedTo"],
        format!("user:{}", w.user)
    );
    assert_eq!(
        app.post("/deliveries/999999/replay", json!({})).await.0,
        404
    );
    let (code, out) = app.run_cli(&["deliveries", "list", "--json"]);
    assert_eq!(code, 0);
    assert!(
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
            == 1
    );
    workers.stop().await;
}

/// On Postgres the receiver builds the job row in SQL (one statement with the delivery);
/// it must be exactly what `enqueue` of the same job would store, on both backends.
async fn stored_job_is_the_process_webhook_job_of_its_delivery(app: TestApp) {
    use issuesync_jobs::{Envelope, Job, process_webhook::ProcessWebhook};
    let w = world(&app).await;
    let g = w.group(&app, "ADO 31", "unresolved").await;
    w.link(&app, w.org, w.vsts, "31", g).await;
    let body = fixture("vsts_workitem_updated_assignee_change.json");
    let (s, v) = post_vsts(&app, &body, Some(ADO_SECRET)).await;
    assert_eq!(s, 200, "{v}");
    let delivery_id = v["delivery_id"].as_i64().unwrap();
    let job_id = v["job_id"].as_str().unwrap().to_string();
    let mut tx = app.state.db.begin().await.unwrap();
    let row = issuesync::store::jobs::find_job(&mut tx, &job_id)
        .await
        .unwrap()
        .expect("the job row");
    let stored = issuesync::store::deliveries::find_delivery(&mut tx, delivery_id)
        .await
        .unwrap()
        .expect("the delivery row");
    drop(tx);
    let job = ProcessWebhook { delivery_id };
    let envelope: Envelope = serde_json::from_slice(&row.job).expect("an envelope");
    assert_eq!(envelope.job, ProcessWebhook::JOB_NAME);
    assert_eq!(envelope.decode::<ProcessWebhook>().unwrap(), job);
    assert_eq!(
        serde_json::to_value(&envelope).unwrap(),
        serde_json::to_value(Envelope::of(&job).unwrap()).unwrap()
    );
    assert_eq!(row.idempotency_key, job.dedup_key());
    assert_eq!(row.queue, ProcessWebhook::QUEUE);
    assert_eq!(row.max_attempts, ProcessWebhook::MAX_ATTEMPTS as i32);
    assert_eq!((row.state.as_str(), row.attempts), ("pending", 0));
    assert_eq!(stored.job_id.as_deref(), Some(job_id.as_str()));
    // A provider retry of the same delivery stores neither a delivery nor a job.
    let before = counts(&app).await;
    let (s, v) = post_vsts(&app, &body, Some(ADO_SECRET)).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("duplicate")), "{v}");
    assert_eq!(counts(&app).await, before);
    // And the job runs: the assignment lands.
    let workers = app.start_workers();
    app.drain().await;
    workers.stop().await;
    assert_eq!(
        group(&app, g).await["assignedTo"],
        format!("user:{}", w.user)
    );
}
