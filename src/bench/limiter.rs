//! `bench chaos redis-down`: worker processes with many outbound slots share one
//! integration's rate limit through a private Redis (started and stopped by the scenario,
//! never the machine's own), which goes away for a while and comes back. The provider must
//! never see more than the limit in a second, and no acquire may wait long on Redis.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::chaos::{Invariants, Storm, seed_status_syncs, storm_mock};
use super::e2e::Seen;
use super::receiver::free_port;
use super::{BenchError, WorkerProc};
use crate::sync::Services;

#[derive(Debug, Serialize)]
pub struct RedisDownReport {
    pub workers: usize,
    pub slots_per_worker: usize,
    pub rate_limit_per_sec: u32,
    pub redis_down_secs: u64,
    pub requests: u64,
    /// The most requests the provider saw in one wall-clock second, overall and while
    /// Redis was down.
    pub max_in_a_second: u64,
    pub max_in_a_second_redis_down: u64,
    pub requests_while_down: u64,
    /// Redis calls of the limiters, and those over 100 ms (from the workers' histograms).
    pub redis_calls: u64,
    pub redis_calls_over_100ms: u64,
    /// Workers whose `issuesync_ratelimit_fallback` gauge was 1 during the outage, and 0
    /// at the end.
    pub workers_in_fallback_while_down: usize,
    pub workers_back_to_shared: usize,
    /// "Redis unavailable" warnings per worker (once per outage is the promise: a Redis
    /// call over 50 ms on a loaded machine is an outage too, so there may be more than the
    /// one the scenario makes) and "answers again" lines: equal when each was logged once.
    pub fallback_warnings: Vec<usize>,
    pub recoveries: Vec<usize>,
    /// Requests per wall-clock second, by second from Redis going away (negative: before).
    pub per_second: Vec<(i64, u64)>,
}

/// A Redis of our own on `port`, stopped on drop.
pub fn start_redis(port: u16) -> Result<WorkerProc, BenchError> {
    let p = port.to_string();
    let child = std::process::Command::new("redis-server")
        .args([
            "--port",
            &p,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| BenchError::Setup(format!("cannot start redis-server: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(BenchError::Setup("redis-server did not come up".into()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(WorkerProc(child))
}

/// One value of a metric line `name{…le="0.1"…} value` (or `name value`) from /metrics.
fn metric(text: &str, name: &str, label: Option<&str>) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once('}')?,
            None => ("", rest),
        };
        if label.is_some_and(|want| !labels.contains(want)) {
            return None;
        }
        value.trim().parse().ok()
    })
}

async fn scrape(port: u16) -> String {
    let url = format!("http://127.0.0.1:{port}/metrics");
    match reqwest::get(&url).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

pub async fn redis_down(
    state: &Services,
    workers: usize,
    slots: usize,
    rate_limit: u32,
    down_secs: u64,
    config: Option<&std::path::Path>,
) -> Result<RedisDownReport, BenchError> {
    let redis_port = free_port()?;
    let mut redis = Some(start_redis(redis_port)?);
    let redis_url = format!("redis://127.0.0.1:{redis_port}");
    let seen = Arc::new(Seen::default());
    let mock = storm_mock(Storm {
        until: Instant::now(),
        seen: seen.clone(),
        injected: Arc::new(Mutex::new(BTreeMap::new())),
        hang: Duration::ZERO,
    })
    .await?;
    // More work than the run needs: the queue never runs dry.
    let up_secs = 5;
    let jobs = (u64::from(rate_limit) * (2 * up_secs + down_secs + 5)) as usize;
    seed_status_syncs(state, jobs, &mock).await?;
    let exe = std::env::current_exe().map_err(|e| BenchError::Setup(e.to_string()))?;
    let logs = tempfile_dir()?;
    let mut procs = Vec::new();
    let mut metric_ports = Vec::new();
    for w in 0..workers {
        let port = free_port()?;
        metric_ports.push(port);
        let log = std::fs::File::create(logs.join(format!("worker-{w}.log")))
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        let mut cmd = std::process::Command::new(&exe);
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        cmd.args(["work", "--queues", "outbound"])
            .env("DATABASE_URL", &state.settings.database_url)
            .env("REDIS_URL", &redis_url)
            .env("ISSUESYNC_METRICS_BIND", format!("127.0.0.1:{port}"))
            .env("ISSUESYNC_QUEUE__CONCURRENCY__OUTBOUND", slots.to_string())
            .env("ISSUESYNC_RATE_LIMIT__JIRA_SERVER", rate_limit.to_string())
            .env("RUST_LOG", "warn,issuesync::providers::ratelimit=info")
            .stdout(Stdio::null())
            .stderr(log);
        procs.push(WorkerProc(cmd.spawn().map_err(|e| {
            BenchError::Setup(format!("cannot start a worker: {e}"))
        })?));
    }
    eprintln!(
        "redis-down: {workers} workers × {slots} slots, limit {rate_limit}/s; Redis up for {up_secs} s"
    );
    tokio::time::sleep(Duration::from_secs(up_secs)).await;
    eprintln!("redis-down: stopping our Redis for {down_secs} s");
    let down_from = crate::now_ms() / 1000;
    drop(redis.take());
    tokio::time::sleep(Duration::from_secs(down_secs / 2)).await;
    let mut in_fallback = 0;
    for p in &metric_ports {
        let text = scrape(*p).await;
        if metric(&text, "issuesync_ratelimit_fallback", None) == Some(1.0) {
            in_fallback += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(down_secs - down_secs / 2)).await;
    let down_to = crate::now_ms() / 1000;
    redis = Some(start_redis(redis_port)?);
    eprintln!("redis-down: Redis is back; {} s more", up_secs + 10);
    tokio::time::sleep(Duration::from_secs(up_secs + 10)).await;
    let (mut calls, mut slow, mut back) = (0.0, 0.0, 0);
    for p in &metric_ports {
        let text = scrape(*p).await;
        let count = metric(&text, "issuesync_ratelimit_redis_seconds_count", None).unwrap_or(0.0);
        let fast = metric(
            &text,
            "issuesync_ratelimit_redis_seconds_bucket",
            Some("le=\"0.1\""),
        )
        .unwrap_or(0.0);
        calls += count;
        slow += count - fast;
        if metric(&text, "issuesync_ratelimit_fallback", None) == Some(0.0) {
            back += 1;
        }
    }
    drop(procs);
    drop(redis);
    let count = |w: usize, what: &str| {
        std::fs::read_to_string(logs.join(format!("worker-{w}.log")))
            .map(|t| t.matches(what).count())
            .unwrap_or(0)
    };
    let warnings = (0..workers)
        .map(|w| count(w, "rate limiter: Redis unavailable"))
        .collect();
    let recoveries = (0..workers)
        .map(|w| count(w, "rate limiter: Redis answers again"))
        .collect();
    let per_sec = seen.0.lock().map(|m| m.clone()).unwrap_or_default();
    // Whole seconds of the outage only (its first and last are shared with Redis up).
    let down: Vec<u64> = per_sec
        .iter()
        .filter(|(s, _)| **s > down_from && **s < down_to)
        .map(|(_, n)| *n)
        .collect();
    Ok(RedisDownReport {
        workers,
        slots_per_worker: slots,
        rate_limit_per_sec: rate_limit,
        redis_down_secs: down_secs,
        requests: per_sec.values().sum(),
        max_in_a_second: per_sec.values().copied().max().unwrap_or(0),
        max_in_a_second_redis_down: down.iter().copied().max().unwrap_or(0),
        requests_while_down: down.iter().sum(),
        redis_calls: calls as u64,
        redis_calls_over_100ms: slow.max(0.0) as u64,
        workers_in_fallback_while_down: in_fallback,
        workers_back_to_shared: back,
        fallback_warnings: warnings,
        recoveries,
        per_second: per_sec.iter().map(|(s, n)| (s - down_from, *n)).collect(),
    })
}

fn tempfile_dir() -> Result<std::path::PathBuf, BenchError> {
    let d = std::env::temp_dir().join(format!("issuesync-redis-down-{}", std::process::id()));
    std::fs::create_dir_all(&d).map_err(|e| BenchError::Setup(e.to_string()))?;
    Ok(d)
}

impl Invariants for RedisDownReport {
    fn violations(&self) -> Vec<String> {
        let first = self.per_second.first().map(|(s, _)| *s);
        let last = self.per_second.last().map(|(s, _)| *s);
        let mut v = super::chaos::rate_violations(
            self.rate_limit_per_sec,
            self.requests,
            super::chaos::span_secs(first, last),
            self.max_in_a_second,
        );
        if self.requests_while_down == 0 {
            v.push("no request went out while Redis was down (the limiter stalled)".into());
        }
        // Each call gives up after 50 ms; one measured over 100 ms is a task that was not
        // polled in time on a starved host (seen 1-2 in 6,000 on a debug build with 150
        // slots on 2 cores), while a stalled limiter makes every call slow.
        if self.redis_calls_over_100ms > self.redis_calls / 1000 {
            v.push(format!(
                "{} of {} Redis calls of the limiter took over 100 ms (limit 1 in 1,000)",
                self.redis_calls_over_100ms, self.redis_calls
            ));
        }
        if self.workers_in_fallback_while_down < self.workers {
            v.push(format!(
                "{} of {} workers reported the in-process fallback while Redis was down",
                self.workers_in_fallback_while_down, self.workers
            ));
        }
        if self.workers_back_to_shared < self.workers {
            v.push(format!(
                "{} of {} workers went back to the shared bucket",
                self.workers_back_to_shared, self.workers
            ));
        }
        if self.fallback_warnings.contains(&0) || self.fallback_warnings != self.recoveries {
            v.push(format!(
                "fallback warnings per worker {:?} for recoveries {:?} (once per outage expected)",
                self.fallback_warnings, self.recoveries
            ));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(max_in_a_second: u64, per_second: Vec<(i64, u64)>) -> RedisDownReport {
        RedisDownReport {
            workers: 3,
            slots_per_worker: 50,
            rate_limit_per_sec: 10,
            redis_down_secs: 6,
            requests: per_second.iter().map(|(_, n)| n).sum(),
            max_in_a_second,
            max_in_a_second_redis_down: 9,
            requests_while_down: 45,
            redis_calls: 6355,
            redis_calls_over_100ms: 0,
            workers_in_fallback_while_down: 3,
            workers_back_to_shared: 3,
            fallback_warnings: vec![1, 1, 1],
            recoveries: vec![1, 1, 1],
            per_second,
        }
    }

    #[test]
    fn a_late_request_or_a_rare_slow_call_passes_but_a_faster_rate_does_not() {
        let steady: Vec<(i64, u64)> = (-5..20).map(|s| (s, 9)).collect();
        assert!(report(11, steady.clone()).violations().is_empty());
        let mut slow = report(10, steady.clone());
        slow.redis_calls_over_100ms = 6;
        assert!(slow.violations().is_empty());
        slow.redis_calls_over_100ms = 7;
        assert_eq!(slow.violations().len(), 1);
        assert_eq!(report(12, steady).violations().len(), 1);
        let fast: Vec<(i64, u64)> = (0..10).map(|s| (s, 11)).collect();
        assert_eq!(
            report(11, fast).violations(),
            vec!["110 requests in 10 s over a limit of 10/s".to_string()]
        );
    }
}
