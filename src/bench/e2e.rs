//! `bench e2e`: N Jira Server assignee webhooks through `issuesync serve` and a worker
//! process until every assignment is applied and pushed to a second (mock) Jira that answers
//! after 20 ms, under that integration's rate limit.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::{get, put};
use serde::Serialize;
use serde_json::{Value, json};

use super::queue::spawn_workers;
use super::receiver::spawn_receiver;
use super::{BenchError, load};
use crate::store::external::{self, NewExternalIssue};
use crate::store::groups::{self, NewGroup};
use crate::store::integrations::{self, NewIntegration};
use crate::store::{jobs, organizations, projects, teams, users};
use crate::sync::Services;

const PRIVATE_KEY: &str = include_str!("../../tests/fixtures/test_rsa_private.pem");
const SECRET: &str = "bench webhook secret";
const EMAIL: &str = "bob@example.org";

#[derive(Debug, Serialize)]
pub struct E2eReport {
    pub backend: &'static str,
    pub webhooks: u64,
    pub send_secs: f64,
    /// First webhook sent → the last outbound request answered and the queue empty.
    pub drain_secs: f64,
    pub assignments_applied: i64,
    pub outbound_requests: u64,
    pub outbound_per_sec_avg: f64,
    pub outbound_per_sec_max: u64,
    pub rate_limit_per_sec: u32,
    pub mock_latency_ms: u64,
    /// Outbound jobs run at once by the worker.
    pub outbound_slots: usize,
}

/// Requests per wall-clock second, as the mock Jira saw them.
#[derive(Default)]
pub(super) struct Seen(pub(super) Mutex<BTreeMap<i64, u64>>);

impl Seen {
    pub(super) fn hit(&self) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(crate::now_ms() / 1000).or_default() += 1;
        }
    }
}

pub(super) async fn mock_jira(latency: Duration) -> Result<(String, Arc<Seen>), BenchError> {
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route(
            "/rest/api/2/user/assignable/search",
            get(
                |State((seen, d)): State<(Arc<Seen>, Duration)>| async move {
                    tokio::time::sleep(d).await;
                    seen.hit();
                    axum::Json(json!([{"name": "bob", "emailAddress": EMAIL}]))
                },
            ),
        )
        .route(
            "/rest/api/2/issue/{key}/assignee",
            put(
                |State((seen, d)): State<(Arc<Seen>, Duration)>| async move {
                    tokio::time::sleep(d).await;
                    seen.hit();
                    axum::http::StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state((seen.clone(), latency));
    Ok((serve_mock(app).await?, seen))
}

/// Serves a mock provider on a free loopback port; returns its base URL.
pub(super) async fn serve_mock(app: Router) -> Result<String, BenchError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

/// An organization with `n` groups, each linked to `IN-i` of the inbound Jira Server and
/// `OUT-i` of the outbound one; the user Bob (verified email) on the project's team.
pub(super) async fn seed(state: &Services, n: u64, mock: &str) -> Result<String, BenchError> {
    let now = crate::now_ms();
    let sf = &state.snowflake;
    let id = || async {
        sf.generate()
            .await
            .map_err(|e| BenchError::Setup(e.to_string()))
    };
    let mut tx = state.db.begin_write().await?;
    let org =
        organizations::insert_organization(&mut tx, id().await?, "bench", "Bench", now).await?;
    let team = teams::insert_team(&mut tx, id().await?, org.id, "backend", "Backend", now).await?;
    let project = projects::insert_project(&mut tx, id().await?, org.id, "web", "Web", now).await?;
    projects::add_project_team(&mut tx, project.id, team.id).await?;
    let user = users::insert_user(&mut tx, "Bob", now).await?;
    users::add_user_email(&mut tx, user.id, EMAIL, true).await?;
    let member = teams::insert_member(&mut tx, org.id, user.id, "member", now).await?;
    teams::add_member_to_team(&mut tx, member.id, team.id).await?;
    let mut ids = Vec::new();
    for (name, switch) in [
        ("inbound", "sync_reverse_assignment"),
        ("outbound", "sync_forward_assignment"),
    ] {
        let i = integrations::insert_integration(
            &mut tx,
            &NewIntegration {
                provider: "jira_server",
                external_id: &format!("bench-{name}-{}", org.id),
                name,
                metadata: &json!({"base_url": mock, "webhook_secret": SECRET, "consumer_key": "bench",
                    "private_key": PRIVATE_KEY, "access_token": "bench-token"}),
            },
            now,
        )
        .await?;
        integrations::upsert_organization_integration(
            &mut tx,
            org.id,
            i.id,
            &json!({switch: true}),
            now,
        )
        .await?;
        ids.push(i);
    }
    tx.commit().await?;
    let (inbound, outbound) = (&ids[0], &ids[1]);
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut tx = state.db.begin_write().await?;
        for i in chunk {
            let g = groups::insert_group(
                &mut tx,
                &NewGroup {
                    project_id: project.id,
                    title: "bench",
                    status: 0,
                    substatus: None,
                    last_seen: now,
                    first_seen: now,
                },
            )
            .await?;
            for (integration, key) in [
                (inbound.id, format!("IN-{i}")),
                (outbound.id, format!("OUT-{i}")),
            ] {
                let e = external::insert_external_issue(
                    &mut tx,
                    &NewExternalIssue {
                        organization_id: org.id,
                        integration_id: integration,
                        key: &key,
                        title: "",
                        description: "",
                        metadata: serde_json::json!({}),
                    },
                    now,
                )
                .await?;
                external::link_group(&mut tx, g.id, project.id, e.id, now).await?;
            }
        }
        tx.commit().await?;
    }
    crate::providers::jira_server::auth::make_token(&inbound.external_id, SECRET)
        .map_err(|e| BenchError::Setup(format!("cannot sign the webhook token: {e}")))
}

/// The Jira Server assignee fixture for issue `IN-i`, a delivery of its own.
pub(super) fn jira_body(template: &Value, i: u64) -> Vec<u8> {
    let mut v = template.clone();
    v["issue"]["key"] = json!(format!("IN-{i}"));
    v["issue"]["id"] = json!(format!("{}", 100_000 + i));
    v["changelog"]["id"] = json!(1_000_000 + i);
    v["timestamp"] = json!(1_700_000_000_000i64 + i as i64);
    serde_json::to_vec(&v).unwrap_or_default()
}

pub(super) const JIRA_SERVER_PAYLOAD: &str =
    include_str!("../../tests/fixtures/jira_server_issue_updated_assignee_change.json");

pub(super) async fn count_assigned(state: &Services) -> Result<i64, BenchError> {
    let mut tx = state.db.begin().await?;
    Ok(crate::on_tx!(&mut tx, |c| sqlx::query_scalar(
        "SELECT COUNT(*) FROM group_assignees"
    )
    .fetch_one(c)
    .await)?)
}

pub(super) async fn unfinished(state: &Services) -> Result<i64, BenchError> {
    let mut tx = state.db.begin().await?;
    let mut n = 0;
    for q in issuesync_jobs::queues::ALL {
        n += jobs::count_unfinished(&mut tx, q).await?;
    }
    Ok(n)
}

pub async fn e2e(
    state: &Services,
    n: u64,
    rate_limit: u32,
    outbound_concurrency: Option<usize>,
    config: Option<&std::path::Path>,
) -> Result<E2eReport, BenchError> {
    let latency = Duration::from_millis(20);
    let (mock, seen) = mock_jira(latency).await?;
    eprintln!("e2e: seeding {n} groups");
    let token = seed(state, n, &mock).await?;
    let (_serve, base) = spawn_receiver(state, config).await?;
    let mut env = vec![
        ("ISSUESYNC_RATE_LIMIT__JIRA_SERVER", rate_limit.to_string()),
        ("ISSUESYNC_QUEUE__CONCURRENCY__INBOUND", "8".to_string()),
        ("ISSUESYNC_QUEUE__FETCH_BATCH_SIZE", "8".to_string()),
    ];
    if let Some(c) = outbound_concurrency {
        env.push(("ISSUESYNC_QUEUE__CONCURRENCY__OUTBOUND", c.to_string()));
    }
    let outbound_slots =
        outbound_concurrency.unwrap_or_else(|| state.settings.queue.concurrency_of("outbound"));
    let _workers = spawn_workers(state, config, 1, &[], &env)?;
    let template: Value = serde_json::from_str(include_str!(
        "../../tests/fixtures/jira_server_issue_updated_assignee_change.json"
    ))
    .map_err(|e| BenchError::Setup(e.to_string()))?;
    let t0 = Instant::now();
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let spec = load::LoadSpec {
        url: format!("{base}/extensions/jira-server/issue-updated/{token}/"),
        rate: Some(2000.0),
        duration: Duration::from_secs_f64(n as f64 / 2000.0),
        connections: 32,
        headers: vec![("content-type".into(), "application/json".into())],
    };
    let counter = sent.clone();
    let report = load::run(&spec, move |i| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        jira_body(&template, i)
    })
    .await?;
    let send_secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "e2e: {} webhooks stored in {send_secs:.1} s ({} refused)",
        report.ok, report.failed
    );
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let left = unfinished(state).await?;
        let assigned = count_assigned(state).await?;
        eprint!("\re2e: {assigned} assigned, {left} jobs left     ");
        if left == 0 && assigned >= report.ok as i64 {
            break;
        }
        if Instant::now() > deadline {
            return Err(BenchError::Setup("not drained after an hour".into()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!();
    let drain_secs = t0.elapsed().as_secs_f64();
    let per_sec: Vec<u64> = seen
        .0
        .lock()
        .map(|m| m.values().copied().collect())
        .unwrap_or_default();
    let total: u64 = per_sec.iter().sum();
    // Whole seconds only: the first and last are partial.
    let inner = if per_sec.len() > 2 {
        &per_sec[1..per_sec.len() - 1]
    } else {
        &per_sec[..]
    };
    Ok(E2eReport {
        backend: state.db.backend(),
        webhooks: report.ok,
        send_secs,
        drain_secs,
        assignments_applied: count_assigned(state).await?,
        outbound_requests: total,
        outbound_per_sec_avg: if inner.is_empty() {
            0.0
        } else {
            inner.iter().sum::<u64>() as f64 / inner.len() as f64
        },
        outbound_per_sec_max: per_sec.iter().copied().max().unwrap_or(0),
        rate_limit_per_sec: rate_limit,
        mock_latency_ms: latency.as_millis() as u64,
        outbound_slots,
    })
}
