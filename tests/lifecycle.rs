//! Jira Connect `installed` / `uninstalled` lifecycle callbacks.

mod common;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PRIVATE: &str = include_str!("fixtures/test_rsa_private.pem");
const PUBLIC: &str = include_str!("fixtures/test_rsa_public.pem");
const PUBLIC_URL: &str = "https://issuesync.example.com";

fn install_jwt(kid: &str, iss: &str, path: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.to_string());
    let claims = json!({"iss": iss, "aud": PUBLIC_URL, "iat": now, "exp": now + 180, "qsh": issuesync::providers::jira::auth::qsh("POST", path, &[])});
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn hs_jwt(iss: &str, secret: &str, path: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"iss": iss, "iat": now, "exp": now + 180, "qsh": issuesync::providers::jira::auth::qsh("POST", path, &[])});
    issuesync::providers::jira::auth::sign(&claims, secret).unwrap()
}

async fn post(
    app: &common::TestApp,
    path: &str,
    jwt: Option<String>,
    body: &Value,
) -> (u16, Value) {
    let mut req = app.client.post(app.url(path)).json(body);
    if let Some(t) = jwt {
        req = req.header("Authorization", format!("JWT {t}"));
    }
    let r = req.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn lifecycle(backend: common::Backend) {
    let keys = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/k1"))
        .respond_with(ResponseTemplate::new(200).set_body_string(PUBLIC))
        .mount(&keys)
        .await;
    let keys_url = keys.uri();
    let Some(app) = common::spawn_app_with(backend, common::Seq::Local, |s| {
        s.jira_install_keys_url = keys_url;
        s.public_url = PUBLIC_URL.into();
    })
    .await
    else {
        return;
    };
    let installed = "/extensions/jira/installed/";
    let body = json!({"key": "com.example.errortracker", "clientKey": "jira:tenant-1", "sharedSecret": "first-secret", "baseUrl": "https://acme.atlassian.net", "eventType": "installed"});

    assert_eq!(post(&app, installed, None, &body).await.0, 401);
    assert_eq!(
        post(
            &app,
            installed,
            Some(install_jwt("k2", "jira:tenant-1", installed)),
            &body
        )
        .await
        .0,
        401,
        "unknown key id"
    );
    assert_eq!(
        post(
            &app,
            installed,
            Some(install_jwt("k1", "jira:other", installed)),
            &body
        )
        .await
        .0,
        401,
        "issuer is not the clientKey"
    );
    assert_eq!(
        post(
            &app,
            installed,
            Some(install_jwt("k1", "jira:tenant-1", "/elsewhere/")),
            &body
        )
        .await
        .0,
        401,
        "qsh"
    );
    assert_eq!(
        post(
            &app,
            installed,
            Some(hs_jwt("jira:tenant-1", "guess", installed)),
            &body
        )
        .await
        .0,
        401,
        "HS256 from an unknown tenant"
    );
    let (s, v) = post(
        &app,
        installed,
        Some(install_jwt("k1", "jira:tenant-1", installed)),
        &body,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let id = v["integration_id"].as_i64().unwrap();
    let mut tx = app.state.db.begin().await.unwrap();
    let i = issuesync::store::integrations::find_integration(&mut tx, id)
        .await
        .unwrap()
        .unwrap();
    drop(tx);
    assert_eq!(
        (i.provider.as_str(), i.external_id.as_str(), i.status),
        ("jira", "jira:tenant-1", 0)
    );
    assert_eq!(i.metadata.0["shared_secret"], "first-secret");
    assert_eq!(i.metadata.0["base_url"], "https://acme.atlassian.net");

    // Re-install, signed with the current secret, rotates it.
    let mut again = body.clone();
    again["sharedSecret"] = json!("second-secret");
    assert_eq!(
        post(
            &app,
            installed,
            Some(hs_jwt("jira:tenant-1", "first-secret", installed)),
            &again
        )
        .await
        .0,
        200
    );
    let mut tx = app.state.db.begin().await.unwrap();
    let i = issuesync::store::integrations::find_integration(&mut tx, id)
        .await
        .unwrap()
        .unwrap();
    drop(tx);
    assert_eq!(i.metadata.0["shared_secret"], "second-secret");

    // Uninstall disables the tenant; its webhooks are then refused.
    let uninstalled = "/extensions/jira/uninstalled/";
    assert_eq!(
        post(
            &app,
            uninstalled,
            Some(hs_jwt("jira:tenant-1", "first-secret", uninstalled)),
            &json!({"clientKey": "jira:tenant-1"})
        )
        .await
        .0,
        401
    );
    assert_eq!(
        post(
            &app,
            uninstalled,
            Some(hs_jwt("jira:tenant-1", "second-secret", uninstalled)),
            &json!({"clientKey": "jira:tenant-1"})
        )
        .await
        .0,
        200
    );
    let hook = "/extensions/jira/issue-updated/";
    let (s, _) = post(
        &app,
        hook,
        Some(hs_jwt("jira:tenant-1", "second-secret", hook)),
        &json!({"changelog": {"items": []}, "issue": {"key": "A-1"}}),
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(
        post(
            &app,
            installed,
            Some(install_jwt("k1", "jira:tenant-1", installed)),
            &json!({"clientKey": "x"})
        )
        .await
        .0,
        400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_lifecycle_sqlite() {
    lifecycle(common::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_lifecycle_postgres() {
    lifecycle(common::Backend::Postgres).await;
}
