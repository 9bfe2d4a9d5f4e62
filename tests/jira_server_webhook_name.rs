//! The Jira Server install registers its webhook under the name Sentry's integration uses, so
//! that Jira admins recognise it, or under the configured `jira_server.webhook_name`.

mod common;

use common::{Backend, Seq, TestApp};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PRIVATE: &str = include_str!("fixtures/test_rsa_private.pem");

/// Installs Jira Server against a mock; returns the registration body Jira received.
async fn registration(app: &TestApp) -> Value {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/rest/webhooks/1.0/webhook"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(
                json!({"self": format!("{}/rest/webhooks/1.0/webhook/7", mock.uri())}),
            ),
        )
        .mount(&mock)
        .await;
    let org = app.create("/organizations", json!({"name": "Acme"})).await["id"]
        .as_i64()
        .unwrap();
    let (s, i) = app
        .post(
            "/integrations/jira-server/install",
            json!({"organization_id": org, "url": mock.uri(), "consumer_key": "issuesync",
                   "private_key": PRIVATE, "access_token": "oauth-tok"}),
        )
        .await;
    assert_eq!(s, 201, "{i}");
    let (s, saved) = app.get(&format!("/integrations/{}", i["id"])).await;
    assert_eq!((s, saved["provider"].as_str()), (200, Some("jira_server")));
    let reqs = mock.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 1);
    serde_json::from_slice(&reqs[0].body).unwrap()
}

async fn default_name(backend: Backend) {
    let Some(app) = common::spawn_app(backend, Seq::Local).await else {
        return;
    };
    let body = registration(&app).await;
    assert_eq!(body["name"], "Sentry Issue Sync", "{body}");
    assert_eq!(
        body["events"],
        json!(["jira:issue_created", "jira:issue_updated"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_webhook_name_is_sentrys_sqlite() {
    default_name(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_webhook_name_is_sentrys_postgres() {
    default_name(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_webhook_name_is_used() {
    let Some(app) = common::spawn_app_with(Backend::Sqlite, Seq::Local, |s| {
        s.jira_server.webhook_name = "Acme tracker sync".into();
    })
    .await
    else {
        return;
    };
    assert_eq!(registration(&app).await["name"], "Acme tracker sync");
}
