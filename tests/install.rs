//! Install flows against wiremock providers: the exact registration requests, nothing saved
//! on failure, and a reinstall that keeps a working subscription.

mod common;

use common::sync::{PRIVATE, post_jira_server};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn install(backend: common::Backend) {
    let Some(app) = common::spawn_app_with(backend, common::Seq::Local, |s| {
        s.public_url = "https://issuesync.example.com".into()
    })
    .await
    else {
        return;
    };
    let mock = MockServer::start().await;
    let org = app.create("/organizations", json!({"name": "Acme"})).await["id"]
        .as_i64()
        .unwrap();

    // Azure DevOps: one subscription, kept on reinstall.
    Mock::given(method("POST"))
        .and(path("/_apis/hooks/subscriptions"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "sub-42", "status": "enabled"})),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let body = json!({"organization_id": org, "account_id": "acct-guid", "account_name": "acct", "base_url": mock.uri(), "access_token": "tok", "config": {"sync_status_forward": true}});
    let (s, i) = app.post("/integrations/vsts/install", body.clone()).await;
    assert_eq!(s, 201, "{i}");
    assert_eq!(i["metadata"]["subscription"]["id"], "sub-42");
    assert_eq!(i["metadata"]["subscription"]["secret"], "[redacted]");
    let reqs = mock.received_requests().await.unwrap();
    let sent: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    let secret = {
        let mut tx = app.state.db.begin().await.unwrap();
        let stored =
            issuesync::store::integrations::find_integration(&mut tx, i["id"].as_i64().unwrap())
                .await
                .unwrap()
                .unwrap();
        stored.metadata.0["subscription"]["secret"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(secret.len(), 64);
    assert!(
        secret
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(
        sent,
        json!({"publisherId": "tfs", "eventType": "workitem.updated", "resourceVersion": "1.0", "consumerId": "webHooks", "consumerActionId": "httpRequest",
               "consumerInputs": {"url": "https://issuesync.example.com/extensions/vsts/issue-updated/", "resourceDetailsToSend": "all", "httpHeaders": format!("shared-secret:{secret}")}})
    );
    assert_eq!(reqs[0].headers.get("authorization").unwrap(), "Bearer tok");
    let (s, again) = app.post("/integrations/vsts/install", body).await;
    assert_eq!(s, 201);
    assert_eq!(again["id"], i["id"]);
    assert_eq!(
        mock.received_requests().await.unwrap().len(),
        1,
        "a reinstall created a second subscription"
    );

    // Jira Server: refused → nothing saved, the provider's message passed on.
    Mock::given(method("POST"))
        .and(path("/bad/rest/webhooks/1.0/webhook"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"messages": [{"key": "Webhook URL is not valid"}]})),
        )
        .mount(&mock)
        .await;
    let jbody = |base: String| json!({"organization_id": org, "url": base, "consumer_key": "issuesync", "private_key": PRIVATE, "access_token": "oauth-tok", "config": {"sync_reverse_assignment": true}});
    let (s, e) = app
        .post(
            "/integrations/jira-server/install",
            jbody(format!("{}/bad", mock.uri())),
        )
        .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (400, Some("provider_refused")),
        "{e}"
    );
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("Webhook URL is not valid"),
        "{e}"
    );
    assert!(
        app.get("/integrations?provider=jira_server")
            .await
            .1
            .as_array()
            .unwrap()
            .is_empty(),
        "a failed install saved something"
    );

    // Jira Server: registered first, OAuth1-signed, with the token URL; then saved.
    Mock::given(method("POST"))
        .and(path("/jira/rest/webhooks/1.0/webhook"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"self": "https://jira/rest/webhooks/1.0/webhook/7"})),
        )
        .mount(&mock)
        .await;
    let (s, i) = app
        .post(
            "/integrations/jira-server/install",
            jbody(format!("{}/jira", mock.uri())),
        )
        .await;
    assert_eq!(s, 201, "{i}");
    let host = mock.uri().trim_start_matches("http://").to_string();
    assert_eq!(i["external_id"], format!("{host}:issuesync"));
    let reg = mock
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .rfind(|r| r.url.path() == "/jira/rest/webhooks/1.0/webhook")
        .unwrap();
    let sent: Value = serde_json::from_slice(&reg.body).unwrap();
    assert_eq!(
        sent["events"],
        json!(["jira:issue_created", "jira:issue_updated"])
    );
    let url = sent["url"].as_str().unwrap();
    let token = url
        .strip_prefix("https://issuesync.example.com/extensions/jira-server/issue-updated/")
        .unwrap()
        .trim_end_matches('/');
    let expected_secret = issuesync::providers::jira_server::auth::webhook_secret(PRIVATE);
    issuesync::providers::jira_server::auth::verify_token(token, &expected_secret).unwrap();
    assert_eq!(
        issuesync::providers::jira_server::auth::peek_token_id(token).unwrap(),
        format!("{host}:issuesync")
    );
    assert!(
        common::oauth::verify_oauth1(&reg, "issuesync", "oauth-tok"),
        "the registration is not validly OAuth1-signed"
    );
    let auth = reg.headers.get("authorization").unwrap().to_str().unwrap();
    assert!(
        auth.starts_with("OAuth ")
            && auth.contains("oauth_signature_method=\"RSA-SHA1\"")
            && auth.contains("oauth_token=\"oauth-tok\""),
        "{auth}"
    );
    // The registered URL works: a webhook signed with that token is accepted.
    let hook = json!({"timestamp": 1, "changelog": {"items": [{"field": "assignee"}], "id": 1}, "issue": {"key": "X-1", "fields": {"assignee": null}}});
    let (s, _) = post_jira_server(&app, token, &hook).await;
    assert_eq!(s, 200);
    // Bad input.
    let (s, _) = app.post("/integrations/jira-server/install", json!({"organization_id": org, "url": "not a url", "consumer_key": "k", "private_key": PRIVATE, "access_token": "t"})).await;
    assert_eq!(s, 400);
    let (s, _) = app.post("/integrations/jira-server/install", json!({"organization_id": org, "url": "https://x", "consumer_key": "k", "private_key": "nope", "access_token": "t"})).await;
    assert_eq!(s, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_sqlite() {
    install(common::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_postgres() {
    install(common::Backend::Postgres).await;
}
