//! The job-kind filter of `jobs list --job` and `GET /api/v1/jobs?job=` finds the
//! `process_webhook` job the receiver stores with a delivery (on Postgres in one statement),
//! whose payload is byte for byte the envelope every other enqueue stores.

mod common;

use common::TestApp;
use issuesync_jobs::Envelope;
use issuesync_jobs::process_webhook::ProcessWebhook;
use serde_json::{Value, json};

const ADO_SECRET: &str = "3f1c9a0e5b7d2c4e6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e";

db_tests!(webhook_jobs_are_found_by_their_kind);

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect()
}

async fn webhook_jobs_are_found_by_their_kind(app: TestApp) {
    app.create("/integrations", json!({"provider": "vsts", "external_id": "80ded3e8-3cd3-43b1-9f96-52032624aa3a", "name": "acct",
        "metadata": {"domain_name": "https://acct.visualstudio.com/", "access_token": "t", "subscription": {"id": "s", "secret": ADO_SECRET}}}))
        .await;
    let body: Value = serde_json::from_str(include_str!(
        "fixtures/vsts_workitem_updated_assignee_change.json"
    ))
    .unwrap();
    let r = app
        .client
        .post(app.url("/extensions/vsts/issue-updated/"))
        .header("shared-secret", ADO_SECRET)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let job_id = v["job_id"].as_str().unwrap().to_string();
    let delivery_id = v["delivery_id"].as_i64().unwrap();
    // A job of another kind, enqueued the ordinary way.
    let (s, noop) = app
        .post(
            "/jobs",
            json!({"job": "noop", "args": {}, "delay_secs": 3600}),
        )
        .await;
    assert_eq!(s, 201, "{noop}");

    let (s, listed) = app.get("/jobs?job=process_webhook").await;
    assert_eq!(s, 200);
    assert_eq!(ids(&listed), std::slice::from_ref(&job_id));
    let (_, listed) = app.get("/jobs?job=noop").await;
    assert_eq!(ids(&listed), [noop["id"].as_str().unwrap().to_string()]);

    let (code, out) = app.run_cli(&["jobs", "list", "--job", "process_webhook", "--json"]);
    assert_eq!(code, 0, "{out}");
    let listed: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(ids(&listed), std::slice::from_ref(&job_id));
    // A webhook job stored in the jsonb-text form of earlier Postgres receivers is found too.
    let mut tx = app.state.db.begin().await.unwrap();
    let old = issuesync::store::jobs::enqueue(
        &mut tx,
        &issuesync::store::jobs::NewJob {
            queue: "webhooks",
            payload: br#"{"job": "process_webhook", "args": {"delivery_id": 424242}}"#.to_vec(),
            max_attempts: 8,
            run_at: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
            dedup_key: None,
            priority: 0,
            coalesce: false,
            id: None,
            fresh: false,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (_, listed) = app.get("/jobs?job=process_webhook").await;
    let mut found = ids(&listed);
    found.sort();
    let mut want = vec![job_id.clone(), old.id().to_string()];
    want.sort();
    assert_eq!(found, want);

    // One canonical stored form: the bytes of the serialized envelope.
    let mut tx = app.state.db.begin().await.unwrap();
    let row = issuesync::store::jobs::find_job(&mut tx, &job_id)
        .await
        .unwrap()
        .expect("the job row");
    drop(tx);
    let expected =
        serde_json::to_vec(&Envelope::of(&ProcessWebhook { delivery_id }).unwrap()).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&row.job),
        String::from_utf8_lossy(&expected)
    );
}
