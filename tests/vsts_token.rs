//! Azure DevOps access tokens: refreshed ahead of `metadata.expires` on the inbound and the
//! outbound path, in the form of the integration's OAuth flow, and only once when several jobs
//! find the token expired at the same time (refresh tokens are single-use). The real app
//! receives webhooks and runs the jobs; the token endpoint and ADO are wiremock servers.

mod common;

use common::TestApp;
use common::sync::{ado_state, fixture};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const COLLECTION: &str = "80ded3e8-3cd3-43b1-9f96-52032624aa3a";
const ADO_SECRET: &str = "3f1c9a0e5b7d2c4e6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e";
const STATES: &str = "/c0bf429a-c03c-4a99-9336-d45be74db5a6/_apis/wit/workitemtypes/Bug/states";

sqlite_and_pg_redis_tests!(
    expired_token_is_refreshed_before_the_inbound_states_call,
    vssps_flow_sends_the_azure_devops_refresh_form,
    concurrent_jobs_with_an_expired_token_refresh_once,
    refreshed_tokens_that_cannot_be_saved_are_kept_and_saved_later,
    reinstall_replaces_the_token_set,
    metadata_patch_racing_a_token_save_keeps_the_new_token,
);

struct World {
    org: i64,
    project: i64,
    vsts: i64,
    mock: MockServer,
}

/// An organization with a project, and an ADO integration whose access token expired 10 s ago.
async fn world(app: &TestApp, oauth: Value) -> World {
    let mock = MockServer::start().await;
    let common::seed::Seed { org, project, .. } = common::seed::org_team_project_member(app).await;
    let mut metadata = json!({
        "domain_name": format!("{}/", mock.uri()), "access_token": "old-token", "refresh_token": "r1",
        "expires": chrono::Utc::now().timestamp() - 10,
        "token_url": format!("{}/oauth2/token", mock.uri()),
        "subscription": {"id": "sub1", "secret": ADO_SECRET},
    });
    for (k, v) in oauth.as_object().unwrap() {
        metadata[k] = v.clone();
    }
    let vsts = app
        .create(
            "/integrations",
            json!({"provider": "vsts", "external_id": COLLECTION, "name": "laurynsentry", "metadata": metadata}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let (s, _) = app
        .api(
            reqwest::Method::PUT,
            &format!("/integrations/{vsts}/organizations/{org}"),
            Some(json!({"config": {"sync_status_reverse": true, "sync_forward_assignment": true}})),
        )
        .await;
    assert_eq!(s, 200);
    // The old token is refused everywhere; the new one is accepted.
    Mock::given(header("authorization", "Bearer old-token"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path(STATES))
        .and(header("authorization", "Bearer new-token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture("vsts_work_item_states_response.json")),
        )
        .mount(&mock)
        .await;
    World {
        org,
        project,
        vsts,
        mock,
    }
}

impl World {
    /// An unresolved group linked to work item `key`.
    async fn group(&self, app: &TestApp, key: &str) -> i64 {
        let g = app
            .create(
                &format!("/projects/{}/groups", self.project),
                json!({"title": format!("ADO {key}")}),
            )
            .await["id"]
            .as_i64()
            .unwrap();
        app.create("/external-issues", json!({"organization_id": self.org, "integration_id": self.vsts, "key": key, "group_ids": [g]})).await;
        g
    }

    async fn requests(&self, method_name: &str, path_str: &str) -> Vec<Request> {
        self.mock
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.method.as_str() == method_name && r.url.path() == path_str)
            .collect()
    }
}

/// The token endpoint: answers new tokens (after `delay_ms`).
async fn mount_token_endpoint(w: &World, delay_ms: u64) {
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "new-token", "refresh_token": "r2", "expires_in": 3599, "token_type": "bearer"}))
                .set_delay(std::time::Duration::from_millis(delay_ms)),
        )
        .mount(&w.mock)
        .await;
}

async fn post_vsts(app: &TestApp, body: &Value) {
    let r = app
        .client
        .post(app.url("/extensions/vsts/issue-updated/"))
        .header("shared-secret", ADO_SECRET)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The fields of a form-encoded body (decoded as a URL query, which is the same encoding).
fn form(r: &Request) -> std::collections::BTreeMap<String, String> {
    let body = String::from_utf8_lossy(&r.body);
    reqwest::Url::parse(&format!("http://x/?{body}"))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// Enqueues the outbound unassign of the group's work item, as the sync would.
async fn enqueue_unassign(app: &TestApp, group: i64) -> String {
    let mut tx = app.state.db.begin().await.unwrap();
    let issue = issuesync::store::external::list_group_external_issues(&mut tx, group)
        .await
        .unwrap()[0]
        .id;
    drop(tx);
    app.enqueue(
        &issuesync_jobs::sync_assignee_outbound::SyncAssigneeOutbound {
            external_issue_id: issue,
            group_id: Some(group),
            user_id: None,
            assign: false,
            source_integration_id: None,
            acting_user_id: None,
        },
    )
    .await
    .id()
    .to_string()
}

async fn status(app: &TestApp, group: i64) -> i64 {
    app.get(&format!("/groups/{group}")).await.1["status"]
        .as_i64()
        .unwrap()
}

async fn stored_metadata(app: &TestApp, id: i64) -> Value {
    let mut tx = app.state.db.begin().await.unwrap();
    issuesync::store::integrations::find_integration(&mut tx, id)
        .await
        .unwrap()
        .unwrap()
        .metadata
        .0
}

async fn expired_token_is_refreshed_before_the_inbound_states_call(app: TestApp) {
    let w = world(
        &app,
        json!({"client_id": "app-id", "client_secret": "app-secret"}),
    )
    .await;
    mount_token_endpoint(&w, 0).await;
    let g = w.group(&app, "33").await;
    let _workers = app.start_workers();
    post_vsts(&app, &ado_state(33, Some("Active"), "Resolved", "n-1", 4)).await;
    app.drain().await;

    assert_eq!(
        status(&app, g).await,
        1,
        "the inbound status change was not applied"
    );
    let states = w.requests("GET", STATES).await;
    assert!(!states.is_empty());
    assert!(
        states
            .iter()
            .all(|r| r.headers.get("authorization").unwrap() == "Bearer new-token"),
        "the states API was called with the expired token before the refresh"
    );
    let refreshes = w.requests("POST", "/oauth2/token").await;
    assert_eq!(refreshes.len(), 1);
    // The Microsoft Entra form (the default flow).
    assert_eq!(
        form(&refreshes[0]),
        [
            ("client_id", "app-id"),
            ("client_secret", "app-secret"),
            ("grant_type", "refresh_token"),
            ("refresh_token", "r1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    );
    let m = stored_metadata(&app, w.vsts).await;
    assert_eq!(
        (m["access_token"].as_str(), m["refresh_token"].as_str()),
        (Some("new-token"), Some("r2"))
    );
    let expires = m["expires"].as_i64().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now + 3500..=now + 3600).contains(&expires),
        "expires {expires}, now {now}"
    );
    // The rest of the metadata is untouched by the token write.
    assert_eq!(m["subscription"]["secret"], ADO_SECRET);
    assert_eq!(m["client_secret"], "app-secret");
}

async fn vssps_flow_sends_the_azure_devops_refresh_form(app: TestApp) {
    let w = world(
        &app,
        json!({"oauth_flow": "vssps", "client_secret": "app-secret-jwt",
               "redirect_uri": "https://tracker.example.com/extensions/vsts/setup/"}),
    )
    .await;
    mount_token_endpoint(&w, 0).await;
    Mock::given(method("PATCH"))
        .and(path("/_apis/wit/workitems/5"))
        .and(header("authorization", "Bearer new-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&w.mock)
        .await;
    let g = w.group(&app, "5").await;
    // The outbound path: unassign work item 5.
    enqueue_unassign(&app, g).await;
    let _workers = app.start_workers();
    app.drain().await;

    let refreshes = w.requests("POST", "/oauth2/token").await;
    assert_eq!(refreshes.len(), 1);
    assert_eq!(
        form(&refreshes[0]),
        [
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            ),
            ("client_assertion", "app-secret-jwt"),
            ("grant_type", "refresh_token"),
            ("assertion", "r1"),
            (
                "redirect_uri",
                "https://tracker.example.com/extensions/vsts/setup/"
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    );
    assert_eq!(
        refreshes[0].headers.get("content-type").unwrap(),
        "application/x-www-form-urlencoded"
    );
    let patches = w.requests("PATCH", "/_apis/wit/workitems/5").await;
    assert_eq!(patches.len(), 1, "refreshed ahead, so no request failed");
    assert_eq!(
        patches[0].headers.get("authorization").unwrap(),
        "Bearer new-token"
    );
    let m = stored_metadata(&app, w.vsts).await;
    assert_eq!(
        (m["access_token"].as_str(), m["refresh_token"].as_str()),
        (Some("new-token"), Some("r2"))
    );
}

async fn concurrent_jobs_with_an_expired_token_refresh_once(app: TestApp) {
    let w = world(
        &app,
        json!({"client_id": "app-id", "client_secret": "app-secret"}),
    )
    .await;
    // A slow token endpoint, so that the other jobs find the token expired while the first
    // refresh is on the wire.
    mount_token_endpoint(&w, 800).await;
    Mock::given(method("PATCH"))
        .and(path("/_apis/wit/workitems/35"))
        .and(header("authorization", "Bearer new-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&w.mock)
        .await;
    let g33 = w.group(&app, "33").await;
    let g34 = w.group(&app, "34").await;
    let g35 = w.group(&app, "35").await;
    // Two inbound status changes and one outbound unassign, queued before any worker runs.
    post_vsts(&app, &ado_state(33, Some("Active"), "Resolved", "n-33", 4)).await;
    post_vsts(&app, &ado_state(34, Some("Active"), "Resolved", "n-34", 4)).await;
    enqueue_unassign(&app, g35).await;
    let _workers = app.start_workers();
    app.drain().await;

    assert_eq!((status(&app, g33).await, status(&app, g34).await), (1, 1));
    assert_eq!(
        w.requests("PATCH", "/_apis/wit/workitems/35").await.len(),
        1
    );
    let refreshes = w.requests("POST", "/oauth2/token").await;
    assert_eq!(
        refreshes.len(),
        1,
        "the single-use refresh token was sent {} times",
        refreshes.len()
    );
    let old: Vec<String> = w
        .mock
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| {
            r.headers
                .get("authorization")
                .is_some_and(|h| h == "Bearer old-token")
        })
        .map(|r| r.url.path().to_string())
        .collect();
    assert!(old.is_empty(), "requests with the expired token: {old:?}");
    let m = stored_metadata(&app, w.vsts).await;
    assert_eq!(m["refresh_token"], "r2");
    let dead = issuesync::ops::list(
        &app.state.db,
        &issuesync::store::jobs::JobFilter {
            state: Some("dead".into()),
            ..Default::default()
        },
        10,
    )
    .await
    .unwrap();
    assert!(dead.is_empty(), "{dead:?}");
}

/// Makes the database refuse every write that stores refresh token `r2` (a failing save).
async fn refuse_saving_r2(app: &TestApp, refuse: bool) {
    use issuesync::db::Db;
    match (&app.state.db, refuse) {
        (Db::Sqlite(p), true) => sqlx::raw_sql(
            "CREATE TRIGGER refuse_r2 BEFORE UPDATE ON integrations \
             WHEN json_extract(NEW.metadata, '$.refresh_token') = 'r2' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        )
        .execute(p)
        .await
        .map(|_| ()),
        (Db::Sqlite(p), false) => sqlx::raw_sql("DROP TRIGGER refuse_r2")
            .execute(p)
            .await
            .map(|_| ()),
        (Db::Pg(p), true) => sqlx::raw_sql(
            "CREATE FUNCTION refuse_r2() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.metadata->>'refresh_token' = 'r2' THEN RAISE EXCEPTION 'refused by the test'; END IF; \
             RETURN NEW; END $$; \
             CREATE TRIGGER refuse_r2 BEFORE UPDATE ON integrations FOR EACH ROW EXECUTE FUNCTION refuse_r2()",
        )
        .execute(p)
        .await
        .map(|_| ()),
        (Db::Pg(p), false) => sqlx::raw_sql("DROP TRIGGER refuse_r2 ON integrations")
            .execute(p)
            .await
            .map(|_| ()),
    }
    .unwrap();
}

/// The refresh succeeds at the provider (r1 is used up) but the new tokens cannot be saved:
/// the job does not go on as if they were, nor does a retry send the used r1 again; the
/// tokens are saved once the database takes them.
async fn refreshed_tokens_that_cannot_be_saved_are_kept_and_saved_later(app: TestApp) {
    let w = world(
        &app,
        json!({"client_id": "app-id", "client_secret": "app-secret"}),
    )
    .await;
    mount_token_endpoint(&w, 0).await;
    Mock::given(method("PATCH"))
        .and(path("/_apis/wit/workitems/5"))
        .and(header("authorization", "Bearer new-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&w.mock)
        .await;
    let g = w.group(&app, "5").await;
    refuse_saving_r2(&app, true).await;
    let job = enqueue_unassign(&app, g).await;
    let workers = app.start_workers();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let failed = loop {
        let j = app.job(&job).await;
        assert_ne!(j.job.state, "done", "{:?}", j.history);
        if j.history.iter().any(|a| a.error.is_some()) {
            break j;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", j.history);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    drop(workers);
    assert_eq!(w.requests("POST", "/oauth2/token").await.len(), 1);
    assert!(
        w.requests("PATCH", "/_apis/wit/workitems/5")
            .await
            .is_empty(),
        "the job went on with tokens that were not saved"
    );
    let m = stored_metadata(&app, w.vsts).await;
    assert_eq!(m["refresh_token"], "r1");
    let error = format!("{:?}", failed.history);
    assert!(error.contains("could not be saved"), "{error}");
    assert!(
        !error.contains("r2") && !error.contains("new-token"),
        "a token in the job's error: {error}"
    );

    // The database takes writes again: the retry saves the kept tokens, without a refresh.
    refuse_saving_r2(&app, false).await;
    let _workers = app.start_workers();
    app.drain().await;
    assert_eq!(
        w.requests("POST", "/oauth2/token").await.len(),
        1,
        "the used refresh token was sent again"
    );
    assert_eq!(w.requests("PATCH", "/_apis/wit/workitems/5").await.len(), 1);
    let m = stored_metadata(&app, w.vsts).await;
    assert_eq!(
        (m["access_token"].as_str(), m["refresh_token"].as_str()),
        (Some("new-token"), Some("r2"))
    );
    assert!(m["expires"].as_i64().unwrap() > chrono::Utc::now().timestamp() + 3000);
}

/// A reinstall replaces the token set: the old refresh token and expiry belong to the old
/// grant and must not be kept next to the new access token.
async fn reinstall_replaces_the_token_set(app: TestApp) {
    let w = world(
        &app,
        json!({"client_id": "app-id", "client_secret": "app-secret"}),
    )
    .await;
    let body = json!({"organization_id": w.org, "account_id": COLLECTION, "account_name": "laurynsentry",
                      "base_url": w.mock.uri(), "access_token": "installed-token"});
    let (s, i) = app.post("/integrations/vsts/install", body.clone()).await;
    assert_eq!((s, i["id"].as_i64()), (201, Some(w.vsts)), "{i}");
    let m = stored_metadata(&app, w.vsts).await;
    assert_eq!(m["access_token"], "installed-token");
    assert!(
        m.get("refresh_token").is_none() && m.get("expires").is_none(),
        "the old grant's tokens were kept: {m}"
    );
    // The subscription and the app's credentials are the integration's, not the grant's.
    assert_eq!(m["subscription"]["secret"], ADO_SECRET);
    assert_eq!(m["client_secret"], "app-secret");

    // With a refresh token and its expiry, both are the new ones.
    let mut with_refresh = body;
    with_refresh["access_token"] = json!("second-token");
    with_refresh["refresh_token"] = json!("r9");
    with_refresh["expires"] = json!(2_000_000_000);
    let (s, i) = app.post("/integrations/vsts/install", with_refresh).await;
    assert_eq!(s, 201, "{i}");
    let m = stored_metadata(&app, w.vsts).await;
    assert_eq!(
        (
            m["access_token"].as_str(),
            m["refresh_token"].as_str(),
            m["expires"].as_i64()
        ),
        (Some("second-token"), Some("r9"), Some(2_000_000_000))
    );
    assert_eq!(i["metadata"]["refresh_token"], "[redacted]");
}

/// An admin PATCH of the metadata while a refresh saves new tokens (the save holds the row
/// until it commits) keeps the new tokens: the PATCH writes only its own keys.
async fn metadata_patch_racing_a_token_save_keeps_the_new_token(app: TestApp) {
    let w = world(
        &app,
        json!({"client_id": "app-id", "client_secret": "app-secret"}),
    )
    .await;
    let mut save = app.state.db.begin_write().await.unwrap();
    let tokens =
        json!({"access_token": "new-token", "refresh_token": "r2", "expires": 2_000_000_000});
    assert!(
        issuesync::store::integrations::save_refreshed_tokens(&mut save, w.vsts, "r1", &tokens)
            .await
            .unwrap()
    );
    let patch = {
        let url = app.url(&format!("/api/v1/integrations/{}", w.vsts));
        let client = app.client.clone();
        tokio::spawn(async move {
            client
                .patch(url)
                .bearer_auth(common::TOKEN)
                .json(&json!({"name": "renamed", "metadata": {"sync_actor_ids": ["bot"], "client_id": null}}))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    // The PATCH is under way (on Postgres it read the row and waits to write it).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    save.commit().await.unwrap();
    assert_eq!(patch.await.unwrap(), 200);
    let m = stored_metadata(&app, w.vsts).await;
    assert_eq!(
        (m["access_token"].as_str(), m["refresh_token"].as_str()),
        (Some("new-token"), Some("r2")),
        "the PATCH wrote back the tokens it had read: {m}"
    );
    assert_eq!(m["expires"], 2_000_000_000);
    assert_eq!(m["sync_actor_ids"], json!(["bot"]));
    assert!(m.get("client_id").is_none());
    assert_eq!(m["client_secret"], "app-secret");
    let (_, i) = app.get(&format!("/integrations/{}", w.vsts)).await;
    assert_eq!(i["name"], "renamed");
}
