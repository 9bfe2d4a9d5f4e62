//! Secrets never reach the logs or the operator surface: a real `issuesync run` process
//! with debug logging handles webhooks and syncs carrying every kind of credential, and
//! its captured output, `jobs show` and `deliveries list` are searched for each secret.

mod common;

use std::time::{Duration, Instant};

use common::sync::{PRIVATE, linked_group, put_group};
use common::{Backend, Seq};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const ADO: &str = include_str!("fixtures/vsts_workitem_updated_assignee_change.json");
const ADO_SECRET: &str = "ado-secret-4f1c9a7e2b";
const WEBHOOK_SECRET: &str = "jira-server-webhook-secret-77aa";
const ACCESS_TOKEN: &str = "oauth-access-token-9b3e";
const CLOUD_SECRET: &str = "connect-shared-secret-51d0";
const DISCORD_TOKEN: &str = "discord-interaction-token-c0ffee";
const APP_ID: &str = "1234567890123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_up(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{base}/healthz")).await.is_err() {
        assert!(Instant::now() < deadline, "issuesync run did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn secrets_stay_out_of_logs(backend: Backend, seq: Seq) {
    let Some(app) = common::spawn_app(backend, seq).await else {
        return;
    };
    // Every provider answers 401 with a body that echoes nothing secret, so errors are logged.
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(401).set_body_string("{\"errorMessages\":[\"denied\"]}"),
        )
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(404).set_body_string("{\"message\":\"Unknown Webhook\"}"),
        )
        .mount(&mock)
        .await;
    let id = |v: Value| v["id"].as_i64().unwrap();
    let org = id(app.create("/organizations", json!({"name": "Acme"})).await);
    let project = id(app
        .create(
            &format!("/organizations/{org}/projects"),
            json!({"name": "Web"}),
        )
        .await);
    let user = id(app.create("/users", json!({"name": "Alice", "emails": [{"email": "alice@example.com", "is_verified": true}]})).await);
    app.create(
        &format!("/organizations/{org}/members"),
        json!({"user_id": user}),
    )
    .await;
    app.create(
        &format!("/users/{user}/identities"),
        json!({"provider": "discord", "external_id": "111"}),
    )
    .await;
    let collection = "80ded3e8-3cd3-43b1-9f96-52032624aa3a";
    app.create("/integrations", json!({"provider": "vsts", "external_id": collection, "name": "ado",
        "metadata": {"domain_name": format!("{}/", mock.uri()), "access_token": ACCESS_TOKEN, "subscription": {"id": "s", "secret": ADO_SECRET}}})).await;
    let server = id(app.create("/integrations", json!({"provider": "jira_server", "external_id": "jira.example.com:issuesync", "name": "server",
        "metadata": {"base_url": mock.uri(), "webhook_secret": WEBHOOK_SECRET, "consumer_key": "issuesync", "private_key": PRIVATE, "access_token": ACCESS_TOKEN}})).await);
    app.create(
        "/integrations",
        json!({"provider": "jira", "external_id": "jira:tenant", "name": "cloud",
        "metadata": {"base_url": mock.uri(), "shared_secret": CLOUD_SECRET}}),
    )
    .await;
    let key = SigningKey::from_bytes(&std::array::from_fn(|i| i as u8));
    let discord = id(app
        .create(
            "/integrations",
            json!({"provider": "discord", "external_id": APP_ID, "name": "discord",
        "metadata": {"public_key": hex::encode(key.verifying_key().to_bytes())}}),
        )
        .await);
    for i in [server, discord] {
        let (s, oi) = app
            .api(
                reqwest::Method::PUT,
                &format!("/integrations/{i}/organizations/{org}"),
                Some(json!({"config": {"sync_status_forward": true}})),
            )
            .await;
        assert_eq!(s, 200);
        app.post(
            &format!("/organization-integrations/{}/external-projects", oi["id"]),
            json!({"external_id": "10000", "resolved_status": "10101", "unresolved_status": "3"}),
        )
        .await;
    }
    let g = linked_group(&app, org, project, "boom", &[(server, "APP-1")]).await;

    // The service under test: one process, debug logs captured.
    let log_path = app.db.url.replace("sqlite://", "").replace("test.db", "") + "service.log";
    let log_path = if backend == Backend::Sqlite {
        log_path
    } else {
        std::env::temp_dir()
            .join(format!("issuesync-secrets-{}.log", uuid::Uuid::new_v4()))
            .display()
            .to_string()
    };
    let log = std::fs::File::create(&log_path).unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_issuesync"));
    cmd.arg("run")
        .envs(app.child_env())
        .env("RUST_LOG", "debug")
        .env("ISSUESYNC_BIND", format!("127.0.0.1:{port}"))
        .env("ISSUESYNC_DISCORD__INLINE_BUDGET_MS", "0")
        .env("ISSUESYNC_DISCORD__API_BASE_URL", mock.uri())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let child = common::Child(cmd.spawn().unwrap());
    wait_up(&base).await;
    let client = reqwest::Client::new();

    // Webhooks with right and wrong credentials.
    let ado = ADO.to_string();
    for secret in [ADO_SECRET, "wrong-ado-secret-guess"] {
        client
            .post(format!("{base}/extensions/vsts/issue-updated/"))
            .header("shared-secret", secret)
            .header("content-type", "application/json")
            .body(ado.clone())
            .send()
            .await
            .unwrap();
    }
    let token = issuesync::providers::jira_server::auth::make_token(
        "jira.example.com:issuesync",
        WEBHOOK_SECRET,
    )
    .unwrap();
    let body = include_str!("fixtures/jira_server_issue_updated_assignee_change.json");
    let r = client
        .post(format!(
            "{base}/extensions/jira-server/issue-updated/{token}/"
        ))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"iss": "jira:tenant", "iat": now, "exp": now + 300, "qsh": issuesync::providers::jira::auth::qsh("POST", "/extensions/jira/issue-updated/", &[])});
    let jwt = issuesync::providers::jira::auth::sign(&claims, CLOUD_SECRET).unwrap();
    let cloud = include_str!("fixtures/jira_cloud_issue_updated_assignee_change.json");
    client
        .post(format!("{base}/extensions/jira/issue-updated/?jwt={jwt}"))
        .header("content-type", "application/json")
        .body(cloud)
        .send()
        .await
        .unwrap();
    // A deferred Discord interaction: its follow-up URL carries the interaction token.
    let interaction = json!({"id": "99", "application_id": APP_ID, "type": 3, "token": DISCORD_TOKEN,
        "member": {"user": {"id": "111"}}, "data": {"custom_id": format!("resolve:{g}"), "component_type": 2}}).to_string();
    let sig = hex::encode(
        key.sign(format!("{now}{interaction}").as_bytes())
            .to_bytes(),
    );
    let r = client
        .post(format!("{base}/extensions/discord/interactions/"))
        .header("x-signature-ed25519", sig)
        .header("x-signature-timestamp", now.to_string())
        .body(interaction)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // An outbound sync that fails at the provider (OAuth1 with the private key and token).
    put_group(&app, g, json!({"status": "unresolved"})).await;

    // Wait until the work is over: the sync job dead, the Discord job done.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let jobs = issuesync::ops::list(&app.state.db, &Default::default(), 100)
            .await
            .unwrap();
        let busy = jobs
            .iter()
            .filter(|j| {
                matches!(
                    j.state.as_str(),
                    "pending" | "running" | "failed" | "scheduled"
                )
            })
            .count();
        let dead_sync = jobs
            .iter()
            .any(|j| j.job == "sync_status_outbound" && j.state == "dead");
        if busy == 0 && dead_sync {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "work did not finish: {:?}",
            jobs.iter()
                .map(|j| (&j.job, &j.state, &j.last_error))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(child);
    let mut out = std::fs::read_to_string(&log_path).unwrap();
    assert!(out.contains("DEBUG"), "debug logging was on");
    assert!(
        out.contains("provider answered 401"),
        "the failing sync was logged"
    );
    // The operator surface too.
    let jobs = issuesync::ops::list(&app.state.db, &Default::default(), 100)
        .await
        .unwrap();
    for j in &jobs {
        let (code, shown) = app.run_cli(&["jobs", "show", &j.id, "--json"]);
        assert_eq!(code, 0);
        out.push_str(&shown);
    }
    out.push_str(&app.run_cli(&["deliveries", "list", "--json"]).1);
    out.push_str(&app.run_cli(&["jobs", "list", "--json", "--limit", "100"]).1);
    let pem_line = PRIVATE.lines().nth(1).unwrap();
    for (what, secret) in [
        ("ADO shared secret", ADO_SECRET),
        ("a guessed secret", "wrong-ado-secret-guess"),
        ("Jira Server webhook secret", WEBHOOK_SECRET),
        ("Jira Server URL token", token.as_str()),
        ("OAuth1 access token", ACCESS_TOKEN),
        ("RSA private key", pem_line),
        ("Connect shared secret", CLOUD_SECRET),
        ("Connect JWT", jwt.as_str()),
        ("Discord interaction token", DISCORD_TOKEN),
        ("admin token", common::TOKEN),
    ] {
        assert!(
            !out.contains(secret),
            "the {what} appears in the logs or the operator output"
        );
    }
    let _ = std::fs::remove_file(&log_path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_logs_sqlite() {
    secrets_stay_out_of_logs(Backend::Sqlite, Seq::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_logs_postgres_redis() {
    secrets_stay_out_of_logs(Backend::Postgres, Seq::Redis).await;
}
