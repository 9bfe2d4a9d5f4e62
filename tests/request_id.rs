//! `X-Request-Id`: a caller's plain id is kept, anything else is replaced by a generated one,
//! every answer carries it, and the request's log lines name it.

mod common;

use common::TestApp;

db_tests!(request_ids_are_kept_or_generated_and_returned);

async fn get_with(app: &TestApp, path: &str, id: Option<&str>) -> (u16, String) {
    let mut req = app.client.get(app.url(path));
    if let Some(id) = id {
        req = req.header("x-request-id", id);
    }
    let resp = req.send().await.expect("request");
    let id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (resp.status().as_u16(), id)
}

async fn request_ids_are_kept_or_generated_and_returned(app: TestApp) {
    // Kept, on a success, an authentication refusal and an unknown route.
    for path in ["/healthz", "/api/v1/jobs", "/no-such-route"] {
        let (_, id) = get_with(&app, path, Some("lb-7f3a:42/x_y.z")).await;
        assert_eq!(id, "lb-7f3a:42/x_y.z", "{path}");
    }
    // Generated (a ULID) when absent, empty, too long or not a plain token.
    let long = "a".repeat(129);
    for given in [
        None,
        Some(""),
        Some(long.as_str()),
        Some("two words"),
        Some("a\"b"),
    ] {
        let (status, id) = get_with(&app, "/healthz", given).await;
        assert_eq!(status, 200);
        assert!(
            id.len() == 26 && ulid::Ulid::from_string(&id).is_ok(),
            "given {given:?}, answered {id:?}"
        );
    }
    let (_, a) = get_with(&app, "/healthz", None).await;
    let (_, b) = get_with(&app, "/healthz", None).await;
    assert_ne!(a, b, "each request gets its own id");
}

/// A refused webhook's log line names the request id (a real `issuesync serve`, logs piped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_id_is_on_the_request_log_lines() {
    use std::io::Read;
    let db = common::TestDb::create(common::Backend::Sqlite, None).await;
    let migrated = std::process::Command::new(env!("CARGO_BIN_EXE_issuesync"))
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .env_remove("REDIS_URL")
        .output()
        .expect("migrate");
    assert!(migrated.status.success(), "{migrated:?}");
    let port = common::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_issuesync"))
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env_remove("REDIS_URL")
        .env("ISSUESYNC_BIND", format!("127.0.0.1:{port}"))
        .env("ISSUESYNC_ADMIN_TOKEN", "request-id-test-token")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("serve");
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "serve did not start");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // No Authorization: the ADO webhook is refused, and the refusal is logged at info.
    let resp = client
        .post(format!("{base}/extensions/vsts/issue-updated/"))
        .header("x-request-id", "trace-me-123")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("webhook");
    assert_eq!(resp.status().as_u16(), 401);
    let _ = child.kill();
    let _ = child.wait();
    let mut log = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut log);
    }
    let line = log
        .lines()
        .find(|l| l.contains("webhook refused"))
        .unwrap_or_else(|| panic!("no refusal logged: {log}"));
    assert!(line.contains("request_id=trace-me-123"), "{line}");
}
