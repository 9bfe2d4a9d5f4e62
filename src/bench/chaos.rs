//! `bench chaos …`: the reliability scenarios too long or too disruptive for the test
//! suite. Each one injects a fault into real processes and checks what operators care
//! about afterwards: nothing lost, duplicates bounded, recovery time.
//!
//! - `crash`: SIGKILL a random one of 3 worker processes every few seconds during a burn-down;
//! - `restart postgres|redis`: restart the database (or Redis) under webhook load;
//! - `storm`: the provider fails 30 % with 5xx, 20 % with 429 + Retry-After and 10 % by
//!   timing out, then recovers.
//!
//! Over 600 lines because the scenarios share their process, fault and report plumbing; it
//! leaves the product with the rest of the harness.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use issuesync_jobs::Job;
use issuesync_jobs::noop::Noop;
use issuesync_jobs::sync_status_outbound::SyncStatusOutbound;
use rand::Rng;
use serde::Serialize;
use serde_json::{Value, json};

use super::e2e::{self, Seen};
use super::queue::spawn_workers;
use super::receiver::spawn_receiver;
use super::{BenchError, WorkerProc, load};
use crate::store::jobs;
use crate::sync::Services;

async fn one<T>(
    state: &Services,
    f: impl AsyncFnOnce(&mut crate::db::Tx) -> Result<T, crate::store::StoreError>,
) -> Result<T, BenchError> {
    let mut tx = state.db.begin().await?;
    Ok(f(&mut tx).await?)
}

// ---- crash -------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct CrashReport {
    pub backend: &'static str,
    pub jobs: usize,
    pub workers: usize,
    pub kills: usize,
    pub kill_every_secs: f64,
    /// Jobs the killed processes held (fetched or running) at the moments of the kills.
    pub in_flight_at_kills: i64,
    /// Side effects recorded more than once (a job re-run after its worker died).
    pub duplicates: i64,
    /// Jobs whose side effect never happened, or that did not finish: must be 0.
    pub lost: i64,
    /// Longest time from a kill until no job was held by the dead process any more.
    pub max_orphan_recovery_secs: f64,
    pub total_secs: f64,
}

pub async fn crash(
    state: &Services,
    n: usize,
    workers: usize,
    kill_every: Duration,
    config: Option<&std::path::Path>,
) -> Result<CrashReport, BenchError> {
    let queue = Noop::QUEUE;
    if one(state, async |tx| jobs::count_unfinished(tx, queue).await).await? > 0 {
        return Err(BenchError::Setup(
            "the maintenance queue is not empty; use an empty database".into(),
        ));
    }
    let run = uuid::Uuid::new_v4().simple().to_string();
    for chunk in (0..n).collect::<Vec<_>>().chunks(2000) {
        let mut tx = state.db.begin_write().await?;
        for i in chunk {
            crate::store::enqueue::enqueue(
                &mut tx,
                &Noop {
                    ledger: Some(format!("crash-{run}-{i}")),
                    ..Default::default()
                },
            )
            .await?;
        }
        tx.commit().await?;
        eprint!(
            "\rcrash: enqueued {}/{n}",
            chunk.last().map_or(0, |i| i + 1)
        );
    }
    eprintln!();
    let args = ["--queues", queue, "--concurrency", "8"];
    let mut procs: Vec<WorkerProc> = spawn_workers(state, config, workers, &args, &[])?;
    let started = Instant::now();
    let mut kills = 0;
    let mut in_flight = 0;
    // (pid, killed at): each is watched until nothing is held by it any more.
    let mut orphans: Vec<(u32, Instant)> = Vec::new();
    let mut max_recovery = 0f64;
    let mut next_kill = Instant::now() + kill_every;
    loop {
        let left = one(state, async |tx| jobs::count_unfinished(tx, queue).await).await?;
        let mut still = Vec::new();
        for (pid, at) in orphans.drain(..) {
            let held = one(state, async |tx| {
                jobs::count_held_by_prefix(tx, &format!("{queue}-{pid}-")).await
            })
            .await?;
            if held == 0 {
                max_recovery = max_recovery.max(at.elapsed().as_secs_f64());
            } else {
                still.push((pid, at));
            }
        }
        orphans = still;
        eprint!("\rcrash: {left} left, {kills} kills      ");
        if left == 0 && orphans.is_empty() {
            break;
        }
        if left > 0 && Instant::now() >= next_kill {
            let victim = rand::rng().random_range(0..procs.len());
            let pid = procs[victim].0.id();
            in_flight += one(state, async |tx| {
                jobs::count_held_by_prefix(tx, &format!("{queue}-{pid}-")).await
            })
            .await?;
            let _ = procs[victim].0.kill();
            let _ = procs[victim].0.wait();
            orphans.push((pid, Instant::now()));
            kills += 1;
            // The harness restarts it, as a process supervisor would.
            procs[victim] = spawn_workers(state, config, 1, &args, &[])?.remove(0);
            next_kill = Instant::now() + kill_every;
        }
        if started.elapsed() > Duration::from_secs(3600) {
            return Err(BenchError::Setup("not finished after an hour".into()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!();
    drop(procs);
    let prefix = format!("crash-{run}-");
    let (rows, distinct) = one(state, async |tx| {
        jobs::count_ledger_prefix(tx, &prefix).await
    })
    .await?;
    let not_done = one(state, async |tx| jobs::count_unfinished(tx, queue).await).await?;
    Ok(CrashReport {
        backend: state.db.backend(),
        jobs: n,
        workers,
        kills,
        kill_every_secs: kill_every.as_secs_f64(),
        in_flight_at_kills: in_flight,
        duplicates: rows - distinct,
        lost: (n as i64 - distinct) + not_done,
        max_orphan_recovery_secs: max_recovery,
        total_secs: started.elapsed().as_secs_f64(),
    })
}

// ---- restart -----------------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct RestartReport {
    pub target: String,
    pub backend: &'static str,
    pub webhooks_sent: u64,
    pub acknowledged: u64,
    pub stored: i64,
    pub assignments_applied: i64,
    /// Answers by status during the run: 503 while the database was away, never 2xx
    /// without a commit.
    pub statuses: BTreeMap<String, u64>,
    pub outage_secs: f64,
    /// From the service being back up until the receiver answered 2xx again.
    pub receiver_recovery_secs: f64,
    /// From the service being back up until a worker finished a job again.
    pub worker_recovery_secs: Option<f64>,
    /// Processes that exited by themselves during the run: must be 0.
    pub processes_died: usize,
    pub drain_secs: f64,
}

fn service_command(target: &str, up: bool) -> Result<std::process::Command, BenchError> {
    match target {
        "postgres" => {
            let version = std::fs::read_dir("/etc/postgresql")
                .ok()
                .and_then(|mut d| d.next())
                .and_then(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .ok_or_else(|| {
                    BenchError::Setup(
                        "no /etc/postgresql: this scenario runs on the machine's own cluster"
                            .into(),
                    )
                })?;
            let mut c = std::process::Command::new("pg_ctlcluster");
            c.args([
                "--skip-systemctl-redirect",
                &version,
                "main",
                if up { "start" } else { "stop" },
            ]);
            if !up {
                c.args(["-m", "fast"]);
            }
            Ok(c)
        }
        "redis" => {
            let mut c;
            if up {
                c = std::process::Command::new("redis-server");
                c.args([
                    "--daemonize",
                    "yes",
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    "6379",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ]);
            } else {
                c = std::process::Command::new("redis-cli");
                c.args(["shutdown", "nosave"]);
            }
            Ok(c)
        }
        other => Err(BenchError::Setup(format!(
            "restart takes postgres or redis, not {other:?}"
        ))),
    }
}

/// `rate` webhooks a second for `secs` while `target` is stopped for `down` after 5 s.
pub async fn restart(
    state: &Services,
    target: &str,
    secs: u64,
    down: Duration,
    rate: u32,
    config: Option<&std::path::Path>,
) -> Result<RestartReport, BenchError> {
    let n = u64::from(rate) * secs;
    let rate = f64::from(rate);
    let (mock, _seen) = e2e::mock_jira(Duration::from_millis(20)).await?;
    let token = e2e::seed(state, n, &mock).await?;
    let stored_before = one(state, async |tx| {
        crate::store::deliveries::count_deliveries(tx).await
    })
    .await?;
    let (mut serve, base) = spawn_receiver(state, config).await?;
    let mut workers = spawn_workers(
        state,
        config,
        2,
        &[],
        &[("ISSUESYNC_RATE_LIMIT__JIRA_SERVER", "500".into())],
    )?;
    let template: Value = serde_json::from_str(e2e::JIRA_SERVER_PAYLOAD)
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let spec = load::LoadSpec {
        url: format!("{base}/extensions/jira-server/issue-updated/{token}/"),
        rate: Some(rate),
        duration: Duration::from_secs(secs),
        connections: 32,
        headers: vec![("content-type".into(), "application/json".into())],
    };
    let load =
        tokio::spawn(async move { load::run(&spec, move |i| e2e::jira_body(&template, i)).await });
    tokio::time::sleep(Duration::from_secs(5)).await;
    eprintln!("restart: stopping {target}");
    let t_down = Instant::now();
    let _ = service_command(target, false)?.status();
    tokio::time::sleep(down).await;
    let _ = service_command(target, true)?.status();
    let t_up = Instant::now();
    let t_up_ms = crate::now_ms();
    eprintln!(
        "restart: {target} is back after {:.1} s",
        t_down.elapsed().as_secs_f64()
    );
    let report = load.await.map_err(|e| BenchError::Setup(e.to_string()))??;
    let load_started = t_down - Duration::from_secs(5);
    let recovered_at = report
        .last_failure_ms
        .map(|ms| load_started + Duration::from_secs_f64(ms / 1000.0));
    let receiver_recovery_secs =
        recovered_at.map_or(0.0, |r| r.saturating_duration_since(t_up).as_secs_f64());
    let drain_start = Instant::now();
    // Wait until everything acknowledged is applied (the processes reconnect by themselves).
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut died = 0;
    loop {
        for w in workers.iter_mut().chain(std::iter::once(&mut serve)) {
            if let Ok(Some(_)) = w.0.try_wait() {
                died += 1;
            }
        }
        if died > 0 {
            break;
        }
        let ok = async {
            let left = e2e::unfinished(state).await?;
            let assigned = e2e::count_assigned(state).await?;
            Ok::<_, BenchError>(left == 0 && assigned >= report.ok as i64)
        }
        .await;
        if matches!(ok, Ok(true)) {
            break;
        }
        if Instant::now() > deadline {
            return Err(BenchError::Setup(
                "not drained 10 minutes after the restart".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let stored = one(state, async |tx| {
        crate::store::deliveries::count_deliveries(tx).await
    })
    .await?
        - stored_before;
    let first_after: Option<i64> = one(state, async |tx| {
        jobs::first_finish_since(tx, t_up_ms).await
    })
    .await?;
    Ok(RestartReport {
        target: target.to_string(),
        backend: state.db.backend(),
        webhooks_sent: report.sent,
        acknowledged: report.ok,
        stored,
        assignments_applied: e2e::count_assigned(state).await?,
        statuses: report.statuses,
        outage_secs: t_up.duration_since(t_down).as_secs_f64(),
        receiver_recovery_secs,
        worker_recovery_secs: first_after.map(|ms| (ms - t_up_ms).max(0) as f64 / 1000.0),
        processes_died: died,
        drain_secs: drain_start.elapsed().as_secs_f64(),
    })
}

// ---- storm -------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct StormReport {
    pub jobs: usize,
    pub storm_secs: u64,
    pub rate_limit_per_sec: u32,
    pub requests: u64,
    /// Seconds from the first request to the last (both counted).
    pub busy_secs: u64,
    pub max_requests_in_a_second: u64,
    /// Answers the mock gave: ok, 500, 429 and timeouts.
    pub injected: BTreeMap<String, u64>,
    pub done: i64,
    pub dead: i64,
    pub dead_reasons: BTreeMap<String, i64>,
    /// Jobs whose used attempts exceed their failed attempts: a 429 used an attempt.
    pub attempts_charged_by_429: i64,
    pub snoozes: i64,
    pub total_secs: f64,
}

#[derive(Clone)]
pub(super) struct Storm {
    pub(super) until: Instant,
    pub(super) seen: Arc<Seen>,
    pub(super) injected: Arc<Mutex<BTreeMap<String, u64>>>,
    pub(super) hang: Duration,
}

impl Storm {
    fn count(&self, what: &str) {
        if let Ok(mut m) = self.injected.lock() {
            *m.entry(what.to_string()).or_default() += 1;
        }
    }

    /// None: answer normally; Some: the storm's answer.
    async fn fault(&self) -> Option<Response> {
        self.seen.hit();
        if Instant::now() >= self.until {
            self.count("ok");
            return None;
        }
        let roll: f64 = rand::rng().random();
        if roll < 0.3 {
            self.count("500");
            Some(StatusCode::INTERNAL_SERVER_ERROR.into_response())
        } else if roll < 0.5 {
            self.count("429");
            Some(
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "2")],
                    "slow down",
                )
                    .into_response(),
            )
        } else if roll < 0.6 {
            self.count("timeout");
            tokio::time::sleep(self.hang).await;
            Some(StatusCode::GATEWAY_TIMEOUT.into_response())
        } else {
            self.count("ok");
            None
        }
    }
}

pub(super) async fn storm_mock(storm: Storm) -> Result<String, BenchError> {
    let transitions: Value = serde_json::from_str(include_str!(
        "../../tests/fixtures/jira_transitions_response.json"
    ))
    .map_err(|e| BenchError::Setup(e.to_string()))?;
    let app = Router::new()
        .route(
            "/rest/api/2/issue/{key}",
            get(|State(s): State<Storm>, axum::extract::Path(key): axum::extract::Path<String>| async move {
                match s.fault().await {
                    Some(r) => r,
                    None => axum::Json(json!({"key": key, "fields": {"status": {"id": "3"}, "project": {"id": "10000"}}})).into_response(),
                }
            }),
        )
        .route(
            "/rest/api/2/issue/{key}/transitions",
            get({
                let t = transitions.clone();
                move |State(s): State<Storm>| async move {
                    match s.fault().await {
                        Some(r) => r,
                        None => axum::Json(t).into_response(),
                    }
                }
            })
            .merge(post(|State(s): State<Storm>| async move {
                match s.fault().await {
                    Some(r) => r,
                    None => StatusCode::NO_CONTENT.into_response(),
                }
            })),
        )
        .with_state(storm);
    e2e::serve_mock(app).await
}

/// Groups linked to Jira Server issues with a status mapping, resolved: one outbound
/// status sync each (three requests to `mock`). Returns (group, external issue) pairs.
pub(super) async fn seed_status_syncs(
    state: &Services,
    n: usize,
    mock: &str,
) -> Result<Vec<(i64, i64)>, BenchError> {
    let _token = e2e::seed(state, n as u64, mock).await?;
    let mut tx = state.db.begin_write().await?;
    // The outbound integration only: its rate limit is the one the mock checks.
    let issues: Vec<(i64, i64)> = crate::on_tx!(&mut tx, |c| {
        sqlx::query_as(
        "SELECT l.group_id, e.id FROM group_links l JOIN external_issues e ON e.id = l.linked_id \
         JOIN integrations i ON i.id = e.integration_id WHERE i.name = 'outbound'"
    )
    .fetch_all(c)
    .await
    })?;
    crate::on_tx!(&mut tx, |c| {
        sqlx::query(
        "INSERT INTO integration_external_projects (organization_integration_id, external_id, name, resolved_status, unresolved_status) \
         SELECT id, '10000', 'bench', '10101', '3' FROM organization_integrations"
    )
    .execute(c)
    .await
    .map(|_| ())
    })?;
    crate::on_tx!(&mut tx, |c| sqlx::query(
        "UPDATE organization_integrations SET config = '{\"sync_status_forward\": true}'"
    )
    .execute(c)
    .await
    .map(|_| ()))?;
    for (group_id, external_issue_id) in &issues {
        crate::store::enqueue::enqueue(
            &mut tx,
            &SyncStatusOutbound {
                group_id: *group_id,
                external_issue_id: *external_issue_id,
                acting_user_id: None,
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(issues)
}

pub async fn storm(
    state: &Services,
    n: usize,
    storm_secs: u64,
    rate_limit: u32,
    config: Option<&std::path::Path>,
) -> Result<StormReport, BenchError> {
    let seen = Arc::new(Seen::default());
    let injected = Arc::new(Mutex::new(BTreeMap::new()));
    let provider_timeout = Duration::from_secs(2);
    let mock = storm_mock(Storm {
        until: Instant::now() + Duration::from_secs(storm_secs),
        seen: seen.clone(),
        injected: injected.clone(),
        hang: provider_timeout + Duration::from_secs(1),
    })
    .await?;
    let issues = seed_status_syncs(state, n, &mock).await?;
    let started = Instant::now();
    let env = [
        ("ISSUESYNC_RATE_LIMIT__JIRA_SERVER", rate_limit.to_string()),
        (
            "ISSUESYNC_HTTP__PROVIDER_TIMEOUT_MS",
            provider_timeout.as_millis().to_string(),
        ),
        ("ISSUESYNC_QUEUE__CONCURRENCY__OUTBOUND", "16".to_string()),
    ];
    let mut procs = spawn_workers(state, config, 2, &["--queues", "outbound"], &env)?;
    let deadline = Instant::now() + Duration::from_secs(storm_secs + 1800);
    loop {
        let left = one(state, async |tx| {
            jobs::count_unfinished(tx, "outbound").await
        })
        .await?;
        eprint!(
            "\rstorm: {left} outbound jobs left, {:.0} s      ",
            started.elapsed().as_secs_f64()
        );
        if left == 0 {
            break;
        }
        for p in procs.iter_mut() {
            if let Ok(Some(s)) = p.0.try_wait() {
                return Err(BenchError::Setup(format!(
                    "a worker exited during the storm: {s}"
                )));
            }
        }
        if Instant::now() > deadline {
            return Err(BenchError::Setup("not drained after the storm".into()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!();
    drop(procs);
    let (per_sec, busy_secs): (Vec<u64>, u64) = seen
        .0
        .lock()
        .map(|m| {
            let span = span_secs(m.keys().next().copied(), m.keys().next_back().copied());
            (m.values().copied().collect(), span)
        })
        .unwrap_or_default();
    let outcome = one(state, async |tx| jobs::outbound_outcome(tx).await).await?;
    Ok(StormReport {
        jobs: issues.len(),
        storm_secs,
        rate_limit_per_sec: rate_limit,
        requests: per_sec.iter().sum(),
        busy_secs,
        max_requests_in_a_second: per_sec.iter().copied().max().unwrap_or(0),
        injected: injected.lock().map(|m| m.clone()).unwrap_or_default(),
        done: outcome.done,
        dead: outcome.dead,
        dead_reasons: outcome.dead_reasons,
        attempts_charged_by_429: outcome.overcharged,
        snoozes: outcome.snoozes,
        total_secs: started.elapsed().as_secs_f64(),
    })
}

/// What must hold after a scenario; each broken promise is one line.
pub trait Invariants {
    fn violations(&self) -> Vec<String>;
}

impl Invariants for CrashReport {
    fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.lost > 0 {
            v.push(format!("{} jobs lost", self.lost));
        }
        if self.duplicates > self.in_flight_at_kills {
            v.push(format!(
                "{} duplicates for {} jobs in flight at the kills",
                self.duplicates, self.in_flight_at_kills
            ));
        }
        if self.max_orphan_recovery_secs > 30.0 {
            v.push(format!(
                "orphans recovered after {:.1} s (limit 30 s)",
                self.max_orphan_recovery_secs
            ));
        }
        v
    }
}

impl Invariants for RestartReport {
    fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.stored != self.acknowledged as i64 {
            v.push(format!(
                "{} acknowledged but {} stored",
                self.acknowledged, self.stored
            ));
        }
        if self.assignments_applied < self.acknowledged as i64 {
            v.push(format!(
                "{} of {} acknowledged webhooks applied",
                self.assignments_applied, self.acknowledged
            ));
        }
        if self.processes_died > 0 {
            v.push(format!("{} processes died", self.processes_died));
        }
        for (status, n) in &self.statuses {
            if status != "200" && status != "503" {
                v.push(format!("{n} answers with status {status}"));
            }
        }
        if self.receiver_recovery_secs > 10.0 || self.worker_recovery_secs.is_none_or(|s| s > 10.0)
        {
            v.push(format!(
                "recovery took receiver {:.1} s, workers {:?} s (limit 10 s)",
                self.receiver_recovery_secs, self.worker_recovery_secs
            ));
        }
        v
    }
}

/// Seconds from clock second `first` to `last`, both counted (0 when nothing was seen).
pub fn span_secs(first: Option<i64>, last: Option<i64>) -> u64 {
    match (first, last) {
        (Some(first), Some(last)) => u64::try_from(last - first + 1).unwrap_or(0),
        _ => 0,
    }
}

/// The rate checks of a run whose requests the provider counted per clock second. The
/// limiter hands out slots 1/rate apart, but a request leaves when its task wakes up: on a
/// loaded host a few late ones land in the same second as the next ones, so one second may
/// see the rate + 10 % (at least 1); over the whole run (`busy_secs`) the rate must hold.
pub fn rate_violations(
    rate: u32,
    requests: u64,
    busy_secs: u64,
    max_in_a_second: u64,
) -> Vec<String> {
    let allowance = u64::from(rate).div_ceil(10).max(1);
    let rate = u64::from(rate);
    let mut v = Vec::new();
    if max_in_a_second > rate + allowance {
        v.push(format!(
            "{max_in_a_second} requests in one second over a limit of {rate} (+{allowance} for late wake-ups)"
        ));
    }
    if requests > rate * busy_secs + allowance {
        v.push(format!(
            "{requests} requests in {busy_secs} s over a limit of {rate}/s"
        ));
    }
    v
}

impl Invariants for StormReport {
    fn violations(&self) -> Vec<String> {
        let mut v = rate_violations(
            self.rate_limit_per_sec,
            self.requests,
            self.busy_secs,
            self.max_requests_in_a_second,
        );
        if self.attempts_charged_by_429 > 0 {
            v.push(format!(
                "{} jobs had an attempt used up by a 429",
                self.attempts_charged_by_429
            ));
        }
        if self.done + self.dead != self.jobs as i64 {
            v.push(format!(
                "{} done + {} dead of {} jobs",
                self.done, self.dead, self.jobs
            ));
        }
        if self.dead_reasons.keys().any(|r| r.trim().is_empty()) {
            v.push("a dead job has no reason".into());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storm(requests: u64, busy_secs: u64, max_in_a_second: u64) -> StormReport {
        StormReport {
            jobs: 1,
            storm_secs: 15,
            rate_limit_per_sec: 20,
            requests,
            busy_secs,
            max_requests_in_a_second: max_in_a_second,
            injected: BTreeMap::new(),
            done: 1,
            dead: 0,
            dead_reasons: BTreeMap::new(),
            attempts_charged_by_429: 0,
            snoozes: 0,
            total_secs: 1.0,
        }
    }

    #[test]
    fn a_few_late_arrivals_in_one_second_pass_but_not_more() {
        assert!(storm(142, 25, 22).violations().is_empty());
        let v = storm(142, 25, 23).violations();
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].starts_with("23 requests in one second"), "{v:?}");
    }

    #[test]
    fn the_rate_holds_over_the_whole_storm() {
        assert!(storm(202, 10, 20).violations().is_empty());
        let v = storm(203, 10, 20).violations();
        assert_eq!(
            v,
            vec!["203 requests in 10 s over a limit of 20/s".to_string()]
        );
    }
}
