//! `log_format = "json"`: a real `issuesync run` takes an ADO webhook and syncs it; every
//! line it writes is one JSON object, and the lines written while handling the request and
//! the jobs carry the request id, job id, delivery id and integration of their spans. The
//! log format does not depend on the backend, so this runs on SQLite.

mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::sync::{ADO_SECRET, ado_inbound_status, ado_state};
use serde_json::Value;
use wiremock::MockServer;

/// The fields of the span named `name` (the innermost one) on a log line.
fn span<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line["spans"]
        .as_array()?
        .iter()
        .rev()
        .find(|s| s["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_is_json_with_the_span_fields() {
    let Some(app) = common::spawn_app(common::Backend::Sqlite, common::Seq::Local).await else {
        return;
    };
    let provider = MockServer::start().await;
    let (ado, group) = ado_inbound_status(&app, &provider, 33).await;
    let port = common::free_port();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_issuesync"));
    cmd.arg("run")
        .envs(app.child_env())
        .env("ISSUESYNC_BIND", format!("127.0.0.1:{port}"))
        .env("ISSUESYNC_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = common::Child(cmd.spawn().expect("spawn issuesync run"));
    let stderr = child.0.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while app
        .client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "issuesync run did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = app
        .client
        .post(format!("{base}/extensions/vsts/issue-updated/"))
        .header("shared-secret", ADO_SECRET)
        .header("x-request-id", "json-logs-req-1")
        .json(&ado_state(33, Some("Active"), "Resolved", "json-logs-1", 3))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.expect("json");
    // Synced: the group is resolved.
    while app.get(&format!("/groups/{group}")).await.1["status"] != 1 {
        assert!(
            Instant::now() < deadline + Duration::from_secs(30),
            "not synced"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.drain().await;
    child.signal("TERM");
    assert!(child.wait_exit(30).is_some(), "issuesync run did not stop");
    let lines = reader.join().expect("stderr lines");
    assert!(!lines.is_empty(), "no log lines");

    let parsed: Vec<Value> = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match serde_json::from_str::<Value>(l) {
            Ok(v) if v.is_object() => v,
            _ => panic!("not one JSON object: {l}"),
        })
        .collect();
    // The receiver's line ties the request id to the delivery and its job.
    let queued = parsed
        .iter()
        .find(|l| span(l, "request").is_some_and(|s| s["request_id"] == "json-logs-req-1"))
        .unwrap_or_else(|| panic!("no line with the request id: {lines:#?}"));
    assert_eq!(queued["fields"]["delivery_id"], answer["delivery_id"]);
    assert_eq!(queued["fields"]["job_id"], answer["job_id"]);

    let inbound = parsed
        .iter()
        .filter_map(|l| span(l, "job"))
        .find(|s| s["job"] == "sync_status_inbound")
        .unwrap_or_else(|| panic!("no sync_status_inbound line: {lines:#?}"));
    assert_eq!(inbound["integration_id"], ado);
    assert_eq!(inbound["delivery_id"], answer["delivery_id"]);
    assert_eq!(inbound["attempt"], 1);
    assert!(inbound["job_id"].is_string());
}
