//! A Jira Cloud site installs us from our Connect descriptor: the admin gives Jira the
//! descriptor's URL, Jira calls the `installed` callback it names (signed with Atlassian's
//! RS256 install key), then sends the webhook it names, signed with the shared secret that
//! install delivered. Everything the test sends after the descriptor comes from it.

mod common;

use common::decisions::{install, member, org_team_project};
use common::sync::{JIRA_CLIENT_KEY, fixture, linked_group};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PRIVATE: &str = include_str!("fixtures/test_rsa_private.pem");
const PUBLIC: &str = include_str!("fixtures/test_rsa_public.pem");
const PUBLIC_URL: &str = "https://issuesync.example.com";

/// The install token Atlassian signs for a lifecycle callback of `path`.
fn install_jwt(aud: &str, path: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("k1".into());
    let claims = json!({"iss": JIRA_CLIENT_KEY, "aud": aud, "iat": now, "exp": now + 180,
        "qsh": issuesync::providers::jira::auth::qsh("POST", path, &[])});
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(PRIVATE.as_bytes()).expect("key");
    jsonwebtoken::encode(&header, &claims, &key).expect("jwt")
}

/// A tenant's token for a POST of `path`, signed with its shared secret.
fn tenant_jwt(secret: &str, path: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"iss": JIRA_CLIENT_KEY, "iat": now, "exp": now + 180,
        "qsh": issuesync::providers::jira::auth::qsh("POST", path, &[])});
    issuesync::providers::jira::auth::sign(&claims, secret).expect("jwt")
}

/// Jira's issue webhook to `hook`, as delivery `id`, signed with `secret`.
async fn post_hook(app: &common::TestApp, hook: &str, id: &str, secret: &str) -> reqwest::Response {
    app.client
        .post(app.url(hook))
        .header("X-Atlassian-Webhook-Identifier", id)
        .header("Authorization", format!("JWT {}", tenant_jwt(secret, hook)))
        .json(&fixture("jira_cloud_issue_updated_assignee_change.json"))
        .send()
        .await
        .expect("webhook")
}

/// The descriptor's fields Atlassian requires, in the shapes it requires.
fn check_descriptor(d: &Value) {
    let key = d["key"].as_str().expect("key");
    assert_eq!(key, "issuesync.example.com.jira");
    assert!(
        key.len() <= 64
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)),
        "{key}"
    );
    assert_eq!(d["name"], "issuesync");
    assert!(d["description"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(d["baseUrl"], PUBLIC_URL);
    assert_eq!(d["authentication"]["type"], "jwt");
    assert_eq!(d["apiMigrations"]["signed-install"], true, "{d}");
    let scopes: Vec<&str> = d["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(scopes, ["read", "write", "access_email_addresses"]);
    let hooks = d["modules"]["webhooks"].as_array().expect("webhooks");
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0]["event"], "jira:issue_updated");
    assert_eq!(hooks[0]["excludeBody"], false);
}

async fn installs_from_its_descriptor(backend: common::Backend) {
    let keys = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/k1"))
        .respond_with(ResponseTemplate::new(200).set_body_string(PUBLIC))
        .mount(&keys)
        .await;
    let jira = MockServer::start().await;
    let (keys_url, site) = (keys.uri(), jira.uri());
    let Some(app) = common::spawn_app_with(backend, common::Seq::Local, |s| {
        s.jira_install_keys_url = keys_url;
        s.public_url = PUBLIC_URL.into();
    })
    .await
    else {
        return;
    };

    let r = app
        .client
        .get(app.url("/extensions/jira/descriptor/"))
        .send()
        .await
        .expect("get descriptor");
    assert_eq!(r.status().as_u16(), 200);
    let d: Value = r.json().await.expect("descriptor JSON");
    check_descriptor(&d);
    let base = d["baseUrl"].as_str().expect("baseUrl").to_string();
    let installed = d["lifecycle"]["installed"].as_str().expect("installed");
    let hook = d["modules"]["webhooks"][0]["url"].as_str().expect("url");

    // Jira calls `installed` at the descriptor's path, the token's audience its baseUrl.
    let body = json!({"key": d["key"], "clientKey": JIRA_CLIENT_KEY, "sharedSecret": "site-secret",
        "baseUrl": site, "eventType": "installed"});
    let r = app
        .client
        .post(app.url(installed))
        .header(
            "Authorization",
            format!("JWT {}", install_jwt(&base, installed)),
        )
        .json(&body)
        .send()
        .await
        .expect("installed");
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{v}");
    let integration = v["integration_id"].as_i64().expect("integration id");

    // An admin installs it on an organization, and a group is linked to APP-123.
    let (org, team, project) = org_team_project(&app, "Web", None).await;
    let jess = member(&app, org, "jess@sentry.io", true, &[team]).await;
    install(
        &app,
        integration,
        org,
        json!({"sync_reverse_assignment": true}),
    )
    .await;
    let g = linked_group(&app, org, project, "boom", &[(integration, "APP-123")]).await;

    // Jira's webhook, at the descriptor's URL, signed with the secret the install delivered.
    let _workers = app.start_workers();
    let r = post_hook(&app, hook, "wh-connect-1", "site-secret").await;
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!((status, v["status"].as_str()), (200, Some("queued")), "{v}");
    app.drain().await;
    let (s, got) = app
        .api(reqwest::Method::GET, &format!("/groups/{g}"), None)
        .await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(got["assignedTo"], format!("user:{jess}"), "{got}");

    // A token signed with anything but the delivered secret is refused.
    let r = post_hook(&app, hook, "wh-connect-2", "guess").await;
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installs_from_its_descriptor_sqlite() {
    installs_from_its_descriptor(common::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installs_from_its_descriptor_postgres() {
    installs_from_its_descriptor(common::Backend::Postgres).await;
}

/// `jira.app_key` and `jira.app_name` replace the derived key and the default name.
#[tokio::test]
async fn app_key_and_name_come_from_the_settings() {
    let Some(app) = common::spawn_app_with(common::Backend::Sqlite, common::Seq::Local, |s| {
        s.public_url = PUBLIC_URL.into();
        s.jira.app_key = "com.acme.sync".into();
        s.jira.app_name = "Acme Sync".into();
    })
    .await
    else {
        return;
    };
    let d: Value = app
        .client
        .get(app.url("/extensions/jira/descriptor/"))
        .send()
        .await
        .expect("get descriptor")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (d["key"].as_str(), d["name"].as_str()),
        (Some("com.acme.sync"), Some("Acme Sync"))
    );
}
