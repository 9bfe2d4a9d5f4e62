//! Outbound sync decisions end to end: change intents through `PUT /api/v1/groups/{id}`
//! (and one inbound webhook) reach wiremock providers; then what the providers received,
//! the decision rows in the database and the API's timeline. Every outbound reason code
//! happens here at least once. SQLite and Postgres + Redis.

mod common;

use common::TestApp;
use common::decisions::{count, find, group_decisions, install, member, wait_for};
use common::sync::{
    JIRA_SERVER_SECRET, jira_server_token, mock_ado_patch, mock_ado_users, mock_jira_issue,
    mock_jira_issue_gone, post_jira_server, put_group,
};
use common::world::world;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

sqlite_and_pg_redis_tests!(
    outbound_status_decisions,
    assignee_without_verified_email_leaves_the_external_issue_alone,
    outbound_assignee_decisions,
    project_delete_takes_the_decisions_and_a_waiting_push_records_link_gone,
);

async fn outbound_status_decisions(app: TestApp) {
    let w = world(&app).await;
    // The first scrape installs the recorder, so the counts below are seen.
    let scrape = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(scrape.status(), 200);
    mock_jira_issue(&w.mock, "APP-1", "1", "10000").await;
    mock_jira_issue(&w.mock, "APP-2", "10101", "10000").await;
    mock_jira_issue(&w.mock, "NOMAP-1", "1", "55555").await;
    mock_jira_issue(&w.mock, "RL-1", "1", "10000").await;
    mock_jira_issue(&w.mock, "CO-1", "10101", "10000").await;
    // APP-3 offers no transition to 10101.
    Mock::given(method("GET"))
        .and(path("/rest/api/2/issue/APP-3"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"fields": {"status": {"id": "1"}, "project": {"id": "10000"}}}),
            ),
        )
        .mount(&w.mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/2/issue/APP-3/transitions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"transitions": [{"id": "21", "to": {"id": "3"}}]})),
        )
        .mount(&w.mock)
        .await;
    mock_jira_issue_gone(&w.mock, "GONE-1").await;
    for key in ["APP-1", "RL-1", "CO-1"] {
        Mock::given(method("POST"))
            .and(path(format!("/rest/api/2/issue/{key}/transitions")))
            .respond_with(ResponseTemplate::new(204))
            .with_priority(2)
            .mount(&w.mock)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/rest/api/2/issue/RL-1/transitions"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&w.mock)
        .await;
    // Jira Cloud's installation pushes no status.
    install(&app, w.jira, w.org, json!({"sync_status_forward": false})).await;

    let js = w.jira_server;
    let sent = w.group(&app, &[(js, "APP-1")]).await;
    let at_target = w.group(&app, &[(js, "APP-2")]).await;
    let no_transition = w.group(&app, &[(js, "APP-3")]).await;
    let no_mapping = w.group(&app, &[(js, "NOMAP-1")]).await;
    let refused = w.group(&app, &[(js, "GONE-1")]).await;
    let limited = w.group(&app, &[(js, "RL-1")]).await;
    let switched_off = w.group(&app, &[(w.jira, "CLOUD-1")]).await;
    for g in [
        sent,
        at_target,
        no_transition,
        no_mapping,
        refused,
        limited,
        switched_off,
    ] {
        put_group(
            &app,
            g,
            json!({"status": "resolved", "acting_user_id": w.user}),
        )
        .await;
    }
    // Two intents while the first push waits: the second coalesces into it.
    let coalesced = w.group(&app, &[(js, "CO-1")]).await;
    put_group(&app, coalesced, json!({"status": "resolved"})).await;
    put_group(&app, coalesced, json!({"status": "unresolved"})).await;
    let ds = group_decisions(&app, coalesced).await;
    let c = find(&ds, "outbound", "status", "coalesced");
    assert_eq!(c["outcome"], "skipped");
    assert!(c["job_id"].is_null(), "written by the request, not a job");
    assert!(
        c["detail"].as_str().unwrap().contains("was still waiting"),
        "{c}"
    );
    // Archiving is never pushed.
    let archived = w.group(&app, &[(js, "ARCH-1")]).await;
    put_group(&app, archived, json!({"status": "ignored"})).await;
    assert_eq!(
        find(
            &group_decisions(&app, archived).await,
            "outbound",
            "status",
            "group_archived"
        )["external_key"],
        "ARCH-1"
    );

    let _workers = app.start_workers();
    app.drain().await;
    let d = group_decisions(&app, sent).await;
    let s = find(&d, "outbound", "status", "sent");
    assert_eq!(
        (s["before"].as_str(), s["after"].as_str()),
        (Some("1"), Some("10101"))
    );
    assert_eq!(s["actor_user_id"], w.user);
    assert!(s["job_id"].is_string());
    assert_eq!(
        w.requests("POST", "/rest/api/2/issue/APP-1/transitions")
            .await
            .len(),
        1
    );
    assert_eq!(
        find(
            &group_decisions(&app, at_target).await,
            "outbound",
            "status",
            "already_at_target"
        )["after"],
        "10101"
    );
    assert!(
        w.requests("POST", "/rest/api/2/issue/APP-2/transitions")
            .await
            .is_empty()
    );
    let nt = group_decisions(&app, no_transition).await;
    let nt = find(&nt, "outbound", "status", "no_transition");
    assert_eq!(nt["outcome"], "failed");
    assert_eq!(nt["detail"], "no transition of APP-3 leads to status 10101");
    assert_eq!(
        app.job(nt["job_id"].as_str().unwrap()).await.job.state,
        "dead"
    );
    assert!(
        find(
            &group_decisions(&app, no_mapping).await,
            "outbound",
            "status",
            "no_mapping"
        )["detail"]
            .as_str()
            .unwrap()
            .contains("\"55555\"")
    );
    let r = group_decisions(&app, refused).await;
    let r = find(&r, "outbound", "status", "provider_refused");
    assert!(
        r["detail"].as_str().unwrap().contains("404")
            && r["detail"]
                .as_str()
                .unwrap()
                .contains("Issue does not exist"),
        "{r}"
    );
    let l = wait_for(&app, limited, "sent", 20).await;
    let deferred = find(&l, "outbound", "status", "rate_limited_until");
    assert_eq!(deferred["outcome"], "deferred");
    assert!(
        deferred["detail"]
            .as_str()
            .unwrap()
            .starts_with("the provider asked us to wait until 20"),
        "{deferred}"
    );
    let off = group_decisions(&app, switched_off).await;
    assert!(
        find(&off, "outbound", "status", "sync_disabled")["detail"]
            .as_str()
            .unwrap()
            .contains("sync_status_forward is off")
    );
    // The coalesced job pushed the latest state once: unresolved (transition 21 to 3).
    let posts = w
        .requests("POST", "/rest/api/2/issue/CO-1/transitions")
        .await;
    assert_eq!(posts.len(), 1);
    assert_eq!(
        serde_json::from_slice::<Value>(&posts[0].body).unwrap(),
        json!({"transition": {"id": "21"}})
    );
    assert_eq!(
        find(
            &group_decisions(&app, coalesced).await,
            "outbound",
            "status",
            "sent"
        )["after"],
        "3"
    );

    // Counted once committed.
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("issuesync_sync_decisions_total{")
                && l.contains("reason=\"no_transition\"")
        })
        .unwrap_or_else(|| panic!("no counter for no_transition in:\n{metrics}"));
    assert!(
        line.contains("direction=\"outbound\"") && line.contains("outcome=\"failed\""),
        "{line}"
    );
}

/// Fix: an assignee without a verified email leaves the external issues alone (today's main
/// sent Jira `{"name": null}` and ADO a `remove`); they are unassigned only when the group
/// has no assignee.
async fn assignee_without_verified_email_leaves_the_external_issue_alone(app: TestApp) {
    let w = world(&app).await;
    let nomail = member(&app, w.org, "nomail@example.com", false, &[w.team]).await;
    Mock::given(method("PUT"))
        .and(path("/rest/api/2/issue/APP-9/assignee"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&w.mock)
        .await;
    mock_ado_patch(&w.mock, 31).await;
    let g = w
        .group(&app, &[(w.jira_server, "APP-9"), (w.vsts, "31")])
        .await;
    let _workers = app.start_workers();
    put_group(&app, g, json!({"assignedTo": format!("user:{nomail}")})).await;
    app.drain().await;
    let writes: Vec<String> = w
        .mock
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() != "GET")
        .map(|r| {
            format!(
                "{} {} {}",
                r.method,
                r.url.path(),
                String::from_utf8_lossy(&r.body)
            )
        })
        .collect();
    assert!(
        writes.is_empty(),
        "the external issues were changed: {writes:?}"
    );
    let ds = group_decisions(&app, g).await;
    assert_eq!(count(&ds, "external_user_not_found"), 2, "{ds:#?}");
    for d in ds
        .iter()
        .filter(|d| d["reason"] == "external_user_not_found")
    {
        assert_eq!(d["detail"], format!("user {nomail} has no verified email"));
        assert_eq!(d["after"], format!("user:{nomail}"));
    }
    // The group really has no assignee now: both are unassigned.
    put_group(&app, g, json!({"assignedTo": null})).await;
    app.drain().await;
    let puts = w.requests("PUT", "/rest/api/2/issue/APP-9/assignee").await;
    assert_eq!(puts.len(), 1);
    assert_eq!(
        serde_json::from_slice::<Value>(&puts[0].body).unwrap(),
        json!({"name": null})
    );
    let patches = w.requests("PATCH", "/_apis/wit/workitems/31").await;
    assert_eq!(patches.len(), 1);
    assert_eq!(
        serde_json::from_slice::<Value>(&patches[0].body).unwrap(),
        json!([{"op": "remove", "path": "/fields/System.AssignedTo"}])
    );
    let ds = group_decisions(&app, g).await;
    let sent: Vec<&Value> = ds.iter().filter(|d| d["reason"] == "sent").collect();
    assert_eq!(sent.len(), 2);
    assert!(
        sent.iter()
            .all(|d| d["detail"] == "unassigned: the group has no assignee")
    );
}

async fn outbound_assignee_decisions(app: TestApp) {
    let w = world(&app).await;
    // Jira Server finds nobody for this email; ADO knows Lauryn.
    Mock::given(method("GET"))
        .and(path("/rest/api/2/user/assignable/search"))
        .and(query_param("username", "lauryn@sentry.io"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&w.mock)
        .await;
    mock_ado_users(&w.mock, &["Lauryn@Sentry.io"]).await;
    mock_ado_patch(&w.mock, 31).await;
    let g = w
        .group(&app, &[(w.jira_server, "APP-1"), (w.vsts, "31")])
        .await;
    let _workers = app.start_workers();
    put_group(
        &app,
        g,
        json!({"assignedTo": format!("user:{}", w.user), "acting_user_id": w.user}),
    )
    .await;
    app.drain().await;
    let ds = group_decisions(&app, g).await;
    let nf = find(&ds, "outbound", "assignee", "external_user_not_found");
    assert_eq!(nf["external_key"], "APP-1");
    assert!(
        nf["detail"]
            .as_str()
            .unwrap()
            .starts_with("no Jira user assignable to APP-1"),
        "{nf}"
    );
    assert!(
        w.requests("PUT", "/rest/api/2/issue/APP-1/assignee")
            .await
            .is_empty()
    );
    let s = find(&ds, "outbound", "assignee", "sent");
    assert_eq!(
        (s["external_key"].as_str(), s["after"].as_str()),
        (Some("31"), Some("Lauryn@Sentry.io"))
    );
    assert_eq!(s["actor_user_id"], w.user);

    // A team assignment is not pushed: one decision per linked issue, at request time.
    put_group(&app, g, json!({"assignedTo": format!("team:{}", w.team)})).await;
    let ds = group_decisions(&app, g).await;
    assert_eq!(count(&ds, "team_assignee"), 2);
    assert!(find(&ds, "outbound", "assignee", "team_assignee")["job_id"].is_null());
    app.drain().await;

    // From Jira Server: applied here, pushed to ADO, never back to Jira Server.
    let token = jira_server_token(JIRA_SERVER_SECRET);
    let hook = json!({"timestamp": 5, "user": {"name": "asmith"}, "changelog": {"items": [{"field": "assignee"}], "id": 1},
        "issue": {"key": "APP-1", "fields": {"assignee": {"emailAddress": "lauryn@sentry.io"}}}});
    let (s, _) = post_jira_server(&app, &token, &hook).await;
    assert_eq!(s, 200);
    app.drain().await;
    let ds = group_decisions(&app, g).await;
    let back = find(&ds, "outbound", "assignee", "source_integration");
    assert_eq!(back["external_key"], "APP-1");
    assert_eq!(back["integration_id"], w.jira_server);
    assert!(back["delivery_id"].is_i64(), "caused by the delivery");
    assert_eq!(
        w.requests("PATCH", "/_apis/wit/workitems/31").await.len(),
        2
    );
    assert!(
        w.requests("PUT", "/rest/api/2/issue/APP-1/assignee")
            .await
            .is_empty()
    );
}

/// Where features meet: deleting a project deletes its groups' decisions (the cascade), and
/// an outbound job still waiting for a group of it records `link_gone` (no group id: the
/// group is gone) instead of failing.
async fn project_delete_takes_the_decisions_and_a_waiting_push_records_link_gone(app: TestApp) {
    let w = world(&app).await;
    let g = w.group(&app, &[(w.jira_server, "DEL-1")]).await;
    put_group(&app, g, json!({"assignedTo": format!("team:{}", w.team)})).await;
    put_group(&app, g, json!({"status": "resolved"})).await;
    assert_eq!(count(&group_decisions(&app, g).await, "team_assignee"), 1);
    let (s, _) = app
        .api(
            reqwest::Method::DELETE,
            &format!("/projects/{}", w.project),
            None,
        )
        .await;
    assert_eq!(s, 204);
    assert!(
        common::decisions::db_group_decisions(&app, g)
            .await
            .is_empty()
    );
    let (s, v) = app.get(&format!("/groups/{g}/sync")).await;
    assert_eq!((s, v["error"].as_str()), (404, Some("not_found")));
    let _workers = app.start_workers();
    app.drain().await;
    let (s, v) = app.get("/sync-decisions?reason=link_gone&since=1h").await;
    assert_eq!(s, 200, "{v}");
    let gone = v["decisions"].as_array().unwrap();
    assert_eq!(gone.len(), 1, "{v}");
    assert_eq!(gone[0]["group_id"], Value::Null);
    assert_eq!(gone[0]["detail"], format!("group {g} no longer exists"));
    assert_eq!(gone[0]["direction"], "outbound");
}
