//! `bench chaos connections|bodies|flood|scrape`: what one client, or many, can do to the
//! receiver without credentials, against a real `issuesync serve` process. Each scenario
//! probes `/healthz` (or webhooks) on fresh connections while the pressure is on and
//! checks the latency limits of docs/reliability.md.
//!
//! - `connections`: idle connections, a slowloris, optionally under a low descriptor limit;
//! - `bodies`: a burst of concurrent 1 MiB bodies, then the resident memory afterwards;
//! - `flood`: unauthenticated 1 MiB requests to every webhook route;
//! - `scrape`: 16 concurrent `/metrics` scrapers over a large queue, webhooks at a fixed rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::queue::rss_kib;
use super::receiver::{ServeOptions, spawn_receiver_with};
use super::{BenchError, Percentiles, percentiles};
use crate::sync::Services;

/// Latency of `GET /healthz` on a fresh connection (5 s when it never answers). Blocking,
/// on a thread of its own, so that the load this process generates does not delay it.
fn probe_once(host: &str) -> f64 {
    use std::io::{Read, Write};
    let started = Instant::now();
    let limit = Duration::from_secs(5);
    let run = || -> Option<()> {
        let addr = host.parse().ok()?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, limit).ok()?;
        s.set_read_timeout(Some(limit)).ok()?;
        s.write_all(
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).ok()?;
        buf.starts_with(b"HTTP/1.1 200").then_some(())
    };
    match run() {
        Some(()) if started.elapsed() < limit => started.elapsed().as_secs_f64() * 1000.0,
        _ => 5000.0,
    }
}

/// Probes `/healthz` every 20 ms until `stop`; returns the latencies.
fn probe(host: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<f64>> {
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            out.push(probe_once(&host));
            std::thread::sleep(Duration::from_millis(20));
        }
        out
    })
}

/// Holds a connection open without sending anything; reconnects when the server closes it
/// (`reconnect`). Counts the closes.
fn hold_idle(host: String, stop: Arc<AtomicBool>, reconnect: bool, closed: Arc<AtomicU64>) {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let Ok(mut s) = TcpStream::connect(&host).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let mut b = [0u8; 1];
            tokio::select! {
                _ = s.read(&mut b) => { closed.fetch_add(1, Ordering::Relaxed); }
                _ = wait_flag(&stop) => return,
            }
            if !reconnect {
                wait_flag(&stop).await;
                return;
            }
        }
    });
}

async fn wait_flag(flag: &AtomicBool) {
    while !flag.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends a request's headers at one byte a second; records how long the server took to
/// close each connection, and reconnects.
fn slowloris(host: String, stop: Arc<AtomicBool>, lifetimes: Arc<std::sync::Mutex<Vec<f64>>>) {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let Ok(mut s) = TcpStream::connect(&host).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let opened = Instant::now();
            let head = format!(
                "POST /extensions/vsts/issue-updated/ HTTP/1.1\r\nHost: {host}\r\nX-Slow: "
            );
            if s.write_all(head.as_bytes()).await.is_err() {
                continue;
            }
            let mut b = [0u8; 64];
            loop {
                tokio::select! {
                    r = s.read(&mut b) => {
                        if matches!(r, Ok(0) | Err(_)) {
                            break;
                        }
                    }
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {
                        if s.write_all(b"a").await.is_err() {
                            break;
                        }
                    }
                    _ = wait_flag(&stop) => return,
                }
            }
            if let Ok(mut l) = lifetimes.lock() {
                l.push(opened.elapsed().as_secs_f64());
            }
        }
    });
}

#[derive(Debug, Serialize)]
pub struct ConnectionsReport {
    pub idle_connections: usize,
    pub slowloris_connections: usize,
    /// The server's descriptor limit (RLIMIT_NOFILE), when lowered.
    pub nofile: Option<u64>,
    pub secs: u64,
    pub healthz: Percentiles,
    /// Probes that got no 200 within 5 s.
    pub healthz_failed: usize,
    /// Idle connections the server closed (header/idle timeout, or room for new ones).
    pub idle_closed: u64,
    /// Slowloris connections closed by the server, and the longest one lived.
    pub slowloris_closed: usize,
    pub slowloris_longest_secs: f64,
    pub server_rss_mib_before: f64,
    pub server_rss_mib_during_max: f64,
    pub server_rss_mib_after: f64,
    pub server_alive: bool,
}

pub async fn connections(
    state: &Services,
    idle: usize,
    slow: usize,
    nofile: Option<u64>,
    secs: u64,
    config: Option<&std::path::Path>,
) -> Result<ConnectionsReport, BenchError> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let (mut serve, base) = spawn_receiver_with(
        state,
        config,
        &ServeOptions {
            nofile,
            ..Default::default()
        },
    )
    .await?;
    let host = base.trim_start_matches("http://").to_string();
    let pid = serve.0.id();
    let before = rss_kib(pid).unwrap_or(0);
    let stop = Arc::new(AtomicBool::new(false));
    let closed = Arc::new(AtomicU64::new(0));
    let lifetimes = Arc::new(std::sync::Mutex::new(Vec::new()));
    // Under a descriptor limit the idle connections stay closed once closed: they are the
    // exhaustion, not a reconnecting attacker.
    for _ in 0..idle {
        hold_idle(host.clone(), stop.clone(), nofile.is_none(), closed.clone());
    }
    for _ in 0..slow {
        slowloris(host.clone(), stop.clone(), lifetimes.clone());
    }
    eprintln!("connections: {idle} idle, {slow} slowloris for {secs} s");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let probes = probe(host.clone(), stop.clone());
    let mut during = 0;
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        during = during.max(rss_kib(pid).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let lat = probes.await.map_err(|e| BenchError::Setup(e.to_string()))?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid).unwrap_or(0);
    let alive = matches!(serve.0.try_wait(), Ok(None));
    let failed = lat.iter().filter(|l| **l >= 5000.0).count();
    let lives = lifetimes.lock().map(|l| l.clone()).unwrap_or_default();
    Ok(ConnectionsReport {
        idle_connections: idle,
        slowloris_connections: slow,
        nofile,
        secs,
        healthz: percentiles(lat),
        healthz_failed: failed,
        idle_closed: closed.load(Ordering::Relaxed),
        slowloris_closed: lives.len(),
        slowloris_longest_secs: lives.iter().copied().fold(0.0, f64::max),
        server_rss_mib_before: before as f64 / 1024.0,
        server_rss_mib_during_max: during as f64 / 1024.0,
        server_rss_mib_after: after as f64 / 1024.0,
        server_alive: alive,
    })
}

#[derive(Debug, Serialize)]
pub struct BodiesReport {
    pub bodies: usize,
    pub body_bytes: usize,
    /// Answers by status.
    pub statuses: std::collections::BTreeMap<String, u64>,
    pub rss_mib_idle: f64,
    pub rss_mib_peak: f64,
    /// Resident memory 5 s after the burst.
    pub rss_mib_after: f64,
    pub server_alive: bool,
}

/// A 1 MiB body that Discord's route must read before it can check the signature.
fn big_body(bytes: usize) -> Vec<u8> {
    let mut v = b"{\"type\":1,\"pad\":\"".to_vec();
    v.resize(bytes.saturating_sub(2), b'x');
    v.extend_from_slice(b"\"}");
    v
}

pub async fn bodies(
    state: &Services,
    n: usize,
    config: Option<&std::path::Path>,
) -> Result<BodiesReport, BenchError> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let (mut serve, base) = spawn_receiver_with(state, config, &ServeOptions::default()).await?;
    let pid = serve.0.id();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let url = format!("{base}/extensions/discord/interactions/");
    let body = axum::body::Bytes::from(big_body(1 << 20));
    // Warm up (first requests allocate the runtime's and the pools' memory), then settle.
    for _ in 0..5 {
        let _ = client.post(&url).body(body.clone()).send().await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_kib(pid).unwrap_or(0);
    let peak = Arc::new(AtomicU64::new(idle));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid).unwrap_or(0), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    eprintln!("bodies: {n} concurrent 1 MiB bodies");
    let sends: Vec<_> = (0..n)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            tokio::spawn(async move {
                client
                    .post(&url)
                    .header("x-signature-ed25519", "00".repeat(64))
                    .header(
                        "x-signature-timestamp",
                        chrono::Utc::now().timestamp().to_string(),
                    )
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16().to_string())
                    .unwrap_or_else(|_| "error".into())
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for s in sends {
        let s = s.await.unwrap_or_else(|_| "error".into());
        *statuses.entry(s).or_insert(0) += 1;
    }
    done.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = rss_kib(pid).unwrap_or(0);
    Ok(BodiesReport {
        bodies: n,
        body_bytes: body.len(),
        statuses,
        rss_mib_idle: idle as f64 / 1024.0,
        rss_mib_peak: peak.load(Ordering::Relaxed) as f64 / 1024.0,
        rss_mib_after: after as f64 / 1024.0,
        server_alive: matches!(serve.0.try_wait(), Ok(None)),
    })
}

#[derive(Debug, Serialize)]
pub struct FloodReport {
    pub connections: usize,
    pub secs: u64,
    pub requests: u64,
    pub statuses: std::collections::BTreeMap<String, u64>,
    pub healthz: Percentiles,
    pub healthz_failed: usize,
    pub server_alive: bool,
}

/// 1 MiB requests without valid credentials, round-robin over the webhook routes.
pub async fn flood(
    state: &Services,
    connections: usize,
    secs: u64,
    config: Option<&std::path::Path>,
) -> Result<FloodReport, BenchError> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    super::receiver::seed(state).await?;
    let (mut serve, base) = spawn_receiver_with(state, config, &ServeOptions::default()).await?;
    let host = base.trim_start_matches("http://").to_string();
    let body = axum::body::Bytes::from(big_body(1 << 20));
    let fake_jwt = "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln";
    let routes: Vec<(String, Vec<(&'static str, String)>)> = vec![
        (format!("{base}/extensions/vsts/issue-updated/"), vec![]),
        (
            format!("{base}/extensions/vsts/issue-updated/"),
            vec![("shared-secret", "guess".into())],
        ),
        (
            format!("{base}/extensions/jira-server/issue-updated/{fake_jwt}/"),
            vec![],
        ),
        (
            format!("{base}/extensions/jira/issue-updated/"),
            vec![("authorization", format!("JWT {fake_jwt}"))],
        ),
        (
            format!("{base}/extensions/discord/interactions/"),
            vec![
                ("x-signature-ed25519", "00".repeat(64)),
                (
                    "x-signature-timestamp",
                    chrono::Utc::now().timestamp().to_string(),
                ),
            ],
        ),
    ];
    let routes = Arc::new(routes);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    eprintln!("flood: {connections} connections of unauthenticated 1 MiB requests for {secs} s");
    let mut senders = Vec::new();
    for c in 0..connections {
        let (routes, stop, sent, statuses, client, body) = (
            routes.clone(),
            stop.clone(),
            sent.clone(),
            statuses.clone(),
            client.clone(),
            body.clone(),
        );
        senders.push(tokio::spawn(async move {
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                let (url, headers) = &routes[i % routes.len()];
                let mut req = client.post(url).body(body.clone());
                for (k, v) in headers {
                    req = req.header(*k, v);
                }
                let status = req
                    .send()
                    .await
                    .map(|r| r.status().as_u16().to_string())
                    .unwrap_or_else(|_| "closed".into());
                sent.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut m) = statuses.lock() {
                    *m.entry(status).or_insert(0u64) += 1;
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let probes = probe(host, stop.clone());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let lat = probes.await.map_err(|e| BenchError::Setup(e.to_string()))?;
    for s in senders {
        let _ = s.await;
    }
    let failed = lat.iter().filter(|l| **l >= 5000.0).count();
    Ok(FloodReport {
        connections,
        secs,
        requests: sent.load(Ordering::Relaxed),
        statuses: statuses.lock().map(|m| m.clone()).unwrap_or_default(),
        healthz: percentiles(lat),
        healthz_failed: failed,
        server_alive: matches!(serve.0.try_wait(), Ok(None)),
    })
}

#[derive(Debug, Serialize)]
pub struct ScrapeReport {
    pub backend: &'static str,
    pub jobs_in_queue: i64,
    pub scrapers: usize,
    pub scrapes: u64,
    pub webhook_rate: f64,
    /// Webhooks with no scraper, then with the scrapers on.
    pub webhooks_alone: super::load::LoadReport,
    pub webhooks_scraped: super::load::LoadReport,
    pub metrics_p99_ms: f64,
}

pub async fn scrape(
    state: &Services,
    jobs: usize,
    scrapers: usize,
    secs: u64,
    config: Option<&std::path::Path>,
) -> Result<ScrapeReport, BenchError> {
    use issuesync_jobs::Job;
    use issuesync_jobs::noop::Noop;
    super::receiver::seed(state).await?;
    let queue = Noop::QUEUE;
    let have = {
        let mut tx = state.db.begin().await?;
        crate::store::jobs::count_unfinished(&mut tx, queue).await?
    };
    if (have as usize) < jobs {
        let payload = serde_json::to_vec(
            &issuesync_jobs::Envelope::of(&Noop::default())
                .map_err(|e| BenchError::Setup(e.to_string()))?,
        )
        .map_err(|e| BenchError::Setup(e.to_string()))?;
        let mut left = jobs - have as usize;
        while left > 0 {
            let k = left.min(20_000);
            let mut tx = state.db.begin_write().await?;
            crate::store::jobs::insert_many_jobs(
                &mut tx,
                queue,
                Noop::MAX_ATTEMPTS as i32,
                &payload,
                k,
            )
            .await?;
            tx.commit().await?;
            left -= k;
            eprint!("\rscrape: {left} jobs left to insert   ");
        }
        eprintln!();
    }
    let in_queue = {
        let mut tx = state.db.begin().await?;
        crate::store::jobs::count_unfinished(&mut tx, queue).await?
    };
    let (_serve, base) = spawn_receiver_with(state, config, &ServeOptions::default()).await?;
    let rate = 100.0;
    let load = |label: &str| {
        eprintln!("scrape: webhooks at {rate}/s for {secs} s, {label}");
        super::receiver::run_load(&base, Some(rate), Duration::from_secs(secs), 16)
    };
    let alone = load("no scraper").await?;
    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..scrapers {
        let (stop, scrapes, url) = (stop.clone(), scrapes.clone(), format!("{base}/metrics"));
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if let Ok(r) = client.get(&url).send().await {
                    let _ = r.bytes().await;
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                scrapes.fetch_add(1, Ordering::Relaxed);
            }
            lat
        }));
    }
    let scraped = load(&format!("{scrapers} scrapers")).await?;
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap_or_default());
    }
    Ok(ScrapeReport {
        backend: state.db.backend(),
        jobs_in_queue: in_queue,
        scrapers,
        scrapes: scrapes.load(Ordering::Relaxed),
        webhook_rate: rate,
        webhooks_alone: alone,
        webhooks_scraped: scraped,
        metrics_p99_ms: percentiles(lat).p99_ms,
    })
}

impl super::chaos::Invariants for ConnectionsReport {
    fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.healthz.p99_ms > 100.0 {
            v.push(format!(
                "/healthz p99 {:.1} ms (limit 100 ms)",
                self.healthz.p99_ms
            ));
        }
        if self.healthz_failed > 0 {
            v.push(format!(
                "{} /healthz probes got no answer",
                self.healthz_failed
            ));
        }
        if self.slowloris_connections > 0 && self.slowloris_closed == 0 {
            v.push("no slowloris connection was closed".into());
        }
        if !self.server_alive {
            v.push("the server died".into());
        }
        v
    }
}

impl super::chaos::Invariants for BodiesReport {
    fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.rss_mib_after > 2.0 * self.rss_mib_idle {
            v.push(format!(
                "RSS {:.1} MiB after the burst, over 2 × {:.1} MiB idle",
                self.rss_mib_after, self.rss_mib_idle
            ));
        }
        if !self.server_alive {
            v.push("the server died".into());
        }
        v
    }
}

impl super::chaos::Invariants for FloodReport {
    fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.healthz.p99_ms > 100.0 {
            v.push(format!(
                "/healthz p99 {:.1} ms under the flood (limit 100 ms)",
                self.healthz.p99_ms
            ));
        }
        if self.healthz_failed > 0 {
            v.push(format!(
                "{} /healthz probes got no answer",
                self.healthz_failed
            ));
        }
        if self.statuses.keys().any(|s| s.starts_with('2')) {
            v.push("an unauthenticated request was answered 2xx".into());
        }
        if !self.server_alive {
            v.push("the server died".into());
        }
        v
    }
}

impl super::chaos::Invariants for ScrapeReport {
    fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        let p99 = self.webhooks_scraped.latency.p99_ms;
        if p99 > 50.0 {
            v.push(format!(
                "webhook p99 {p99:.1} ms with {} scrapers (limit 50 ms)",
                self.scrapers
            ));
        }
        if self.webhooks_scraped.failed > 0 {
            v.push(format!(
                "{} webhooks failed with the scrapers on",
                self.webhooks_scraped.failed
            ));
        }
        v
    }
}
