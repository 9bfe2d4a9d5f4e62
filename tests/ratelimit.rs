//! Three worker processes share one Redis rate limit of 10 requests/s for one integration.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use issuesync_jobs::sync_assignee_outbound::SyncAssigneeOutbound;
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Records when each request arrived.
#[derive(Clone, Default)]
struct Clock(Arc<Mutex<Vec<Instant>>>);

impl Respond for Clock {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        if let Ok(mut v) = self.0.lock() {
            v.push(Instant::now());
        }
        ResponseTemplate::new(200).set_body_json(json!({}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_ten_requests_a_second() {
    let Some(app) = common::spawn_app(common::Backend::Postgres, common::Seq::Redis).await else {
        return;
    };
    let mock = MockServer::start().await;
    let clock = Clock::default();
    Mock::given(method("PATCH"))
        .respond_with(clock.clone())
        .mount(&mock)
        .await;
    let org = app.create("/organizations", json!({"name": "Acme"})).await["id"]
        .as_i64()
        .unwrap();
    let project = app
        .create(
            &format!("/organizations/{org}/projects"),
            json!({"name": "Web"}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let vsts = app
        .create(
            "/integrations",
            json!({"provider": "vsts", "external_id": "acct-1", "name": "acct",
            "metadata": {"domain_name": format!("{}/", mock.uri()), "access_token": "t"}}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    app.api(
        reqwest::Method::PUT,
        &format!("/integrations/{vsts}/organizations/{org}"),
        Some(json!({"config": {"sync_forward_assignment": true}})),
    )
    .await;
    // Enough requests for 12 s at the limit: long enough for three processes to settle.
    const N: i64 = 120;
    let mut jobs = Vec::new();
    for i in 0..N {
        let g = app
            .create(
                &format!("/projects/{project}/groups"),
                json!({"title": format!("g{i}")}),
            )
            .await["id"]
            .as_i64()
            .unwrap();
        let e = app.create("/external-issues", json!({"organization_id": org, "integration_id": vsts, "key": (1000 + i).to_string(), "group_ids": [g]})).await;
        // The group has no assignee: each job is exactly one PATCH (remove AssignedTo).
        jobs.push(SyncAssigneeOutbound {
            external_issue_id: e["external_issue"]["id"].as_i64().unwrap(),
            group_id: Some(g),
            user_id: None,
            assign: false,
            source_integration_id: None,
            acting_user_id: None,
        });
    }
    let mut tx = app.state.db.begin().await.unwrap();
    for j in &jobs {
        issuesync::store::enqueue::enqueue(&mut tx, j)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();

    let spawn = || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_issuesync"));
        c.args(["work", "--queues", "outbound", "--concurrency", "4"])
            .envs(app.child_env())
            .env("ISSUESYNC_RATE_LIMIT__VSTS", "10")
            .stdout(std::process::Stdio::null());
        common::Child(c.spawn().expect("spawn worker"))
    };
    let workers: Vec<common::Child> = (0..3).map(|_| spawn()).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while clock.0.lock().map(|v| v.len()).unwrap_or(0) < N as usize {
        assert!(
            Instant::now() < deadline,
            "only {} requests in 120 s",
            clock.0.lock().map(|v| v.len()).unwrap_or(0)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(workers);
    let mut times = clock.0.lock().unwrap().clone();
    times.sort();
    let span = times[times.len() - 1] - times[0];
    // The most requests inside any 1-second window.
    let mut max_in_window = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= Duration::from_secs(1) {
            lo += 1;
        }
        max_in_window = max_in_window.max(hi - lo + 1);
    }
    eprintln!(
        "{} requests over {:.1}s, at most {max_in_window} in any second",
        times.len(),
        span.as_secs_f64()
    );
    assert!(span >= Duration::from_secs(11), "{N} requests in {span:?}");
    assert!(
        max_in_window <= 11,
        "{max_in_window} requests in one second"
    );
}
