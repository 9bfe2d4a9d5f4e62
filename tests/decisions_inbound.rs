//! Inbound sync decisions end to end: provider webhooks through the real receiver and
//! workers (providers mocked with wiremock), then the decision rows in the database, the
//! API's timeline and `issuesync explain`. Every inbound reason code happens here at least
//! once. SQLite and Postgres + Redis.

mod common;

use common::TestApp;
use common::decisions::{
    count, find, group_decisions, id, install, member, org_team_project, wait_for,
};
use common::sync::{
    self, ADO_SECRET, COLLECTION, JIRA_CLIENT_KEY, JIRA_SECRET, JIRA_SERVER_ID, JIRA_SERVER_SECRET,
    PROJECT_GUID, ado_state, connect_jwt, fixture, jira_server_token, mock_jira_statuses,
    post_jira_server,
};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Our Connect app user (the echo fixture's actor) and Jira Automation's app account.
const OUR_APP_ACCOUNT: &str = "557058:app-0f1e2d3c";
const AUTOMATION_ACCOUNT: &str = "557058:f58131cb-b67d-43c7-b30d-6b58d40bd077";

sqlite_and_pg_redis_tests!(
    inbound_assignee_decisions_and_explain,
    inbound_status_decisions,
    jira_cloud_change_by_another_app_syncs,
);

struct World {
    org: i64,
    project: i64,
    alice: i64,
    vsts: i64,
    jira: i64,
    jira_server: i64,
    mock: MockServer,
}

fn inbound_sync() -> Value {
    json!({"sync_status_reverse": true, "sync_reverse_assignment": true})
}

/// Organization "Acme" with project `backend` (team Backend): Alice (verified
/// alice@example.com, in the team), Ghost (unverified ghost@example.com, in the team),
/// Outsider (verified, in the organization but no team). Three integrations installed with
/// the inbound switches on; ADO states and Jira statuses mocked.
async fn world(app: &TestApp) -> World {
    let mock = MockServer::start().await;
    let (org, team, project) = org_team_project(app, "Backend", Some("backend")).await;
    let alice = member(app, org, "alice@example.com", true, &[team]).await;
    member(app, org, "ghost@example.com", false, &[team]).await;
    member(app, org, "outsider@example.com", true, &[]).await;
    let vsts = id(&app
        .create("/integrations", json!({"provider": "vsts", "external_id": COLLECTION, "name": "acct",
            "metadata": {"domain_name": format!("{}/", mock.uri()), "access_token": "ado-token", "subscription": {"id": "sub1", "secret": ADO_SECRET}}}))
        .await);
    let jira = id(&app
        .create(
            "/integrations",
            json!({"provider": "jira", "external_id": JIRA_CLIENT_KEY, "name": "JIRA",
            "metadata": {"base_url": mock.uri(), "shared_secret": JIRA_SECRET}}),
        )
        .await);
    let jira_server = id(&app
        .create("/integrations", json!({"provider": "jira_server", "external_id": JIRA_SERVER_ID, "name": "issuesync",
            "metadata": {"base_url": mock.uri(), "webhook_secret": JIRA_SERVER_SECRET, "sync_actor_ids": ["issuesync-bot"]}}))
        .await);
    for i in [vsts, jira, jira_server] {
        install(app, i, org, inbound_sync()).await;
    }
    mock_jira_statuses(
        &mock,
        json!([
            {"id": "10101", "name": "Done", "statusCategory": {"key": "done"}},
            {"id": "3", "name": "In Progress", "statusCategory": {"key": "indeterminate"}},
            {"id": "1", "name": "Open", "statusCategory": {"key": "new"}}]),
    )
    .await;
    World {
        org,
        project,
        alice,
        vsts,
        jira,
        jira_server,
        mock,
    }
}

impl World {
    async fn group(&self, app: &TestApp, project: i64, status: &str) -> i64 {
        id(&app
            .create(
                &format!("/projects/{project}/groups"),
                json!({"title": "boom", "status": status}),
            )
            .await)
    }

    async fn link(&self, app: &TestApp, org: i64, integration: i64, key: &str, group: i64) -> i64 {
        let v = app
            .create("/external-issues", json!({"organization_id": org, "integration_id": integration, "key": key, "group_ids": [group]}))
            .await;
        v["external_issue"]["id"]
            .as_i64()
            .expect("external issue id")
    }

    /// A second organization whose installation of `integration` has `config`, with one
    /// group linked to `key`.
    async fn other_org(
        &self,
        app: &TestApp,
        integration: i64,
        config: Value,
        key: &str,
    ) -> (i64, i64) {
        let org2 = id(&app.create("/organizations", json!({"name": "Other"})).await);
        let p2 = id(&app
            .create(
                &format!("/organizations/{org2}/projects"),
                json!({"name": "P2"}),
            )
            .await);
        install(app, integration, org2, config).await;
        let g2 = self.group(app, p2, "unresolved").await;
        self.link(app, org2, integration, key, g2).await;
        (org2, g2)
    }
}

/// A Jira Server assignee change of APP-1 at `ts` by `actor`; `email` None unassigns.
async fn jira_server_assignee(app: &TestApp, ts: i64, actor: &str, email: Option<&str>) -> Value {
    let assignee = match email {
        Some(e) => json!({"emailAddress": e, "name": e}),
        None => Value::Null,
    };
    let body = json!({"timestamp": ts, "user": {"name": actor, "key": format!("key-{actor}")},
        "changelog": {"id": ts, "items": [{"field": "assignee"}]},
        "issue": {"id": "10001", "key": "APP-1", "fields": {"assignee": assignee}}});
    let (s, v) = post_jira_server(app, &jira_server_token(JIRA_SERVER_SECRET), &body).await;
    assert_eq!(s, 200);
    assert_eq!(v["status"], "queued", "{v}");
    app.drain().await;
    v
}

async fn inbound_assignee_decisions_and_explain(app: TestApp) {
    let w = world(&app).await;
    let _workers = app.start_workers();
    let g = w.group(&app, w.project, "unresolved").await;
    let issue = w.link(&app, w.org, w.jira_server, "APP-1", g).await;
    let (org2, g2) = w
        .other_org(
            &app,
            w.jira_server,
            json!({"sync_reverse_assignment": false}),
            "APP-1",
        )
        .await;

    let first = jira_server_assignee(&app, 1000, "asmith", Some("alice@example.com")).await;
    let ds = group_decisions(&app, g).await;
    let applied = find(&ds, "inbound", "assignee", "applied");
    assert_eq!(applied["outcome"], "applied");
    assert_eq!(applied["after"], format!("user:{}", w.alice));
    assert_eq!(applied["before"], Value::Null);
    assert_eq!(applied["delivery_id"], first["delivery_id"]);
    assert_eq!(applied["external_issue_id"], issue);
    assert_eq!(applied["integration_id"], w.jira_server);
    assert_eq!(applied["organization_id"], w.org);
    assert_eq!(applied["actor"], "asmith / key-asmith");
    assert!(applied["job_id"].as_str().is_some_and(|j| !j.is_empty()));
    // The same delivery's other organization has the switch off: its group hears why.
    let other = group_decisions(&app, g2).await;
    let off = find(&other, "inbound", "assignee", "sync_disabled");
    assert_eq!(off["outcome"], "skipped");
    let detail = off["detail"].as_str().unwrap();
    assert!(
        detail.contains("sync_reverse_assignment") && detail.contains(&org2.to_string()),
        "{detail}"
    );
    assert_eq!(
        app.get(&format!("/groups/{g2}")).await.1["assignedTo"],
        Value::Null
    );

    jira_server_assignee(&app, 1001, "asmith", Some("alice@example.com")).await;
    jira_server_assignee(&app, 1002, "asmith", Some("ghost@example.com")).await;
    jira_server_assignee(&app, 1003, "asmith", Some("outsider@example.com")).await;
    jira_server_assignee(&app, 1004, "asmith", Some("nobody@example.net")).await;
    // Late: older than the last applied assignee event (1004).
    jira_server_assignee(&app, 999, "asmith", Some("outsider@example.com")).await;
    // Our own service account's write, echoed back.
    jira_server_assignee(&app, 1005, "issuesync-bot", Some("ghost@example.com")).await;
    let ds = group_decisions(&app, g).await;
    assert_eq!(
        find(&ds, "inbound", "assignee", "already_in_state")["outcome"],
        "skipped"
    );
    assert_eq!(
        find(&ds, "inbound", "assignee", "email_not_verified")["detail"],
        "ghost@example.com is not a verified email of any member of project backend"
    );
    assert!(
        find(&ds, "inbound", "assignee", "user_not_in_project")["detail"]
            .as_str()
            .unwrap()
            .contains("outsider@example.com")
    );
    assert_eq!(
        find(&ds, "inbound", "assignee", "user_not_found")["detail"],
        "no user has the email nobody@example.net"
    );
    let stale = find(&ds, "inbound", "assignee", "stale_event");
    assert_eq!(
        stale["detail"],
        "event sequence 999 is older than the applied assignee event 1004"
    );
    let echo = find(&ds, "inbound", "assignee", "own_echo");
    assert_eq!(echo["actor"], "issuesync-bot / key-issuesync-bot");
    assert!(
        echo["job_id"].is_string(),
        "written by the process_webhook job"
    );
    // None of that changed the assignee.
    assert_eq!(
        app.get(&format!("/groups/{g}")).await.1["assignedTo"],
        format!("user:{}", w.alice)
    );

    jira_server_assignee(&app, 1006, "asmith", None).await;
    let ds = group_decisions(&app, g).await;
    let unassigned = ds.iter().find(|d| d["direction"] == "inbound").unwrap();
    assert_eq!(
        (
            unassigned["reason"].as_str(),
            unassigned["before"].clone(),
            unassigned["after"].clone()
        ),
        (
            Some("applied"),
            json!(format!("user:{}", w.alice)),
            Value::Null
        )
    );
    assert_eq!(
        app.get(&format!("/groups/{g}")).await.1["assignedTo"],
        Value::Null
    );
    // Not pushed back to Jira Server, where it came from (recorded by the inbound job).
    let back = find(&ds, "outbound", "assignee", "source_integration");
    assert_eq!(back["job_id"], unassigned["job_id"]);
    // The external issue's own timeline holds this group's rows.
    let by_issue =
        common::decisions::api_pages(&app, &format!("/external-issues/{issue}/sync")).await;
    assert_eq!(by_issue.len(), ds.len());

    // The CLI says it in sentences (oldest first), and --json is one document.
    let (code, out) = app.run_cli(&["explain", "APP-1"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("APP-1:\n"), "{out}");
    assert!(
        out.contains(" inbound assignee from Jira Server APP-1: skipped, email_not_verified: ghost@example.com is not a verified email of any member of project backend\n"),
        "{out}"
    );
    assert!(
        out.contains("skipped, sync_disabled: sync_reverse_assignment is off for organization"),
        "{out}"
    );
    let lines: Vec<&str> = out.lines().skip(1).collect();
    assert!(
        lines[lines.len() - 2]
            .contains("inbound assignee from Jira Server APP-1: applied, applied: unassigned")
            && lines[lines.len() - 1]
                .contains("outbound assignee to Jira Server APP-1: skipped, source_integration"),
        "newest last: {out}"
    );
    let (code, out) = app.run_cli(&["explain", &g.to_string(), "--json", "--limit", "3"]);
    assert_eq!(code, 0);
    let doc: Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(doc["subject"]["kind"], "group");
    assert_eq!(doc["subject"]["id"], g);
    assert_eq!(doc["decisions"].as_array().unwrap().len(), 3);
    assert_eq!(doc["decisions"][0]["id"], ds[0]["id"]);
    let (code, out) = app.run_cli(&["explain", "NOPE-404"]);
    assert_eq!((code, out.as_str()), (1, ""));
}

async fn post_vsts(app: &TestApp, body: &Value) {
    assert_eq!(sync::post_vsts(app, body, Some(ADO_SECRET)).await.0, 200);
}

async fn inbound_status_decisions(app: TestApp) {
    let w = world(&app).await;
    let states = format!("/{PROJECT_GUID}/_apis/wit/workitemtypes/Bug/states");
    // The states API fails once, then answers.
    Mock::given(method("GET"))
        .and(path(states.clone()))
        .respond_with(ResponseTemplate::new(500).set_body_string("TF400898: An internal error"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&w.mock)
        .await;
    Mock::given(method("GET"))
        .and(path(states))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture("vsts_work_item_states_response.json")),
        )
        .with_priority(2)
        .mount(&w.mock)
        .await;
    let g = w.group(&app, w.project, "unresolved").await;
    w.link(&app, w.org, w.vsts, "33", g).await;
    let (org2, g2) = w
        .other_org(&app, w.vsts, json!({"sync_status_reverse": false}), "33")
        .await;
    let _workers = app.start_workers();

    post_vsts(&app, &ado_state(33, Some("Active"), "Resolved", "n-4", 4)).await;
    let ds = wait_for(&app, g, "applied", 30).await;
    let failed = find(&ds, "inbound", "status", "provider_error");
    assert_eq!(failed["outcome"], "failed");
    assert!(
        failed["detail"]
            .as_str()
            .unwrap()
            .contains("Active → Resolved"),
        "{failed}"
    );
    let applied = find(&ds, "inbound", "status", "applied");
    assert_eq!(
        (applied["before"].as_str(), applied["after"].as_str()),
        (Some("unresolved"), Some("resolved"))
    );
    assert_eq!(app.get(&format!("/groups/{g}")).await.1["status"], 1);
    let off = find(
        &group_decisions(&app, g2).await,
        "inbound",
        "status",
        "sync_disabled",
    )
    .clone();
    assert!(off["detail"].as_str().unwrap().contains(&format!(
        "sync_status_reverse is off for organization {org2}"
    )));
    app.drain().await;

    post_vsts(&app, &ado_state(33, Some("Active"), "Resolved", "n-5", 5)).await;
    app.drain().await;
    // A work item created in a done state: both flags, a NOOP.
    post_vsts(&app, &ado_state(33, None, "Resolved", "n-6", 6)).await;
    app.drain().await;
    // An older revision arrives late: it must not unresolve.
    post_vsts(&app, &ado_state(33, Some("Resolved"), "Active", "n-3", 3)).await;
    app.drain().await;
    let ds = group_decisions(&app, g).await;
    assert_eq!(
        find(&ds, "inbound", "status", "already_in_state")["before"],
        "resolved"
    );
    assert!(
        find(&ds, "inbound", "status", "no_status_mapping")["detail"]
            .as_str()
            .unwrap()
            .contains("neither a resolve nor an unresolve")
    );
    assert_eq!(
        find(&ds, "inbound", "status", "stale_event")["detail"],
        "event sequence 3 is older than the applied status event 6"
    );
    assert_eq!(app.get(&format!("/groups/{g}")).await.1["status"], 1);

    // An archived group is left alone.
    let archived = w.group(&app, w.project, "ignored").await;
    w.link(&app, w.org, w.vsts, "34", archived).await;
    post_vsts(&app, &ado_state(34, Some("Active"), "Resolved", "n-34", 2)).await;
    app.drain().await;
    let ds = group_decisions(&app, archived).await;
    assert_eq!(
        find(&ds, "inbound", "status", "archived_kept")["before"],
        "ignored"
    );
    assert_eq!(app.get(&format!("/groups/{archived}")).await.1["status"], 2);
    assert_eq!(count(&ds, "applied"), 0);
}

async fn post_jira(app: &TestApp, body: &Value, delivery: &str) {
    let jwt = connect_jwt(JIRA_SECRET, "/extensions/jira/issue-updated/", 180);
    let (s, _) = sync::post_jira(app, Some(&format!("JWT {jwt}")), body, delivery).await;
    assert_eq!(s, 200);
}

/// Fix: a Jira Cloud change made by another app (Jira Automation: `accountType: app` too)
/// is a real change; only our own app user's changes are echoes. Our app user is looked up
/// once (`/myself`) and kept in `metadata.sync_actor_ids`.
async fn jira_cloud_change_by_another_app_syncs(app: TestApp) {
    let w = world(&app).await;
    Mock::given(method("GET"))
        .and(path("/rest/api/2/myself"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"accountId": OUR_APP_ACCOUNT, "accountType": "app", "displayName": "Issue Sync"}),
        ))
        .expect(1)
        .mount(&w.mock)
        .await;
    let g = w.group(&app, w.project, "unresolved").await;
    w.link(&app, w.org, w.jira, "OPS-9", g).await;
    let _workers = app.start_workers();

    // Our own write echoed back (assignee to an account of which Jira hides the email).
    post_jira(
        &app,
        &fixture("jira_cloud_issue_updated_app_actor.json"),
        "wh-echo",
    )
    .await;
    app.drain().await;
    let ds = group_decisions(&app, g).await;
    let echo = find(&ds, "inbound", "assignee", "own_echo");
    assert_eq!(echo["actor"], OUR_APP_ACCOUNT);
    let (_, integration) = app.get(&format!("/integrations/{}", w.jira)).await;
    assert_eq!(
        integration["metadata"]["sync_actor_ids"],
        json!([OUR_APP_ACCOUNT])
    );

    // Jira Automation moves the issue to Done: resolved.
    post_jira(
        &app,
        &fixture("jira_cloud_issue_updated_automation.json"),
        "wh-automation",
    )
    .await;
    app.drain().await;
    let got = app.get(&format!("/groups/{g}")).await.1;
    assert_eq!(
        got["status"], 1,
        "a change by Jira Automation was dropped as an echo"
    );
    let ds = group_decisions(&app, g).await;
    let applied = find(&ds, "inbound", "status", "applied");
    assert_eq!(applied["actor"], AUTOMATION_ACCOUNT);
    assert_eq!(applied["after"], "resolved");
    assert_eq!(count(&ds, "own_echo"), 1);
    // /myself was asked once (expect(1) is checked when the mock server drops).
    let myself: Vec<_> = w
        .mock
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/rest/api/2/myself")
        .collect();
    assert_eq!(myself.len(), 1);
    assert!(
        myself[0]
            .headers
            .get("authorization")
            .is_some_and(|a| a.to_str().unwrap_or("").starts_with("JWT ")),
        "asked as the app"
    );

    // Our account can be set through the API, which checks it.
    let url = format!("/integrations/{}", w.jira);
    let patch = |v: Value| {
        app.api(
            reqwest::Method::PATCH,
            &url,
            Some(json!({"metadata": {"sync_actor_ids": v}})),
        )
    };
    for bad in [json!(5), json!([""]), json!([{"id": "x"}])] {
        let (s, v) = patch(bad.clone()).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("bad_request")),
            "{bad}: {v}"
        );
    }
    let (s, v) = patch(json!([OUR_APP_ACCOUNT, "557058:other"])).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["metadata"]["sync_actor_ids"][1], "557058:other");
}
