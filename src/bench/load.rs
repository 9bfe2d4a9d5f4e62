//! The HTTP load generator of the receiver and end-to-end benchmarks (`bench load` runs it
//! as a process of its own on loopback). Written here rather than using wrk or oha because
//! every request needs its own delivery id (a repeated one is a duplicate, answered without
//! a write) and an open-loop fixed rate with latencies counted from the scheduled send time,
//! so a stalled server cannot hide its queueing (coordinated omission).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::{BenchError, Percentiles, percentiles};

pub struct LoadSpec {
    pub url: String,
    /// Requests per second; `None` = as fast as `connections` allow (closed loop).
    pub rate: Option<f64>,
    pub duration: Duration,
    /// Requests in flight at most.
    pub connections: usize,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LoadReport {
    pub target_rate: Option<f64>,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub achieved_rate: f64,
    pub latency: Percentiles,
    pub p999_ms: f64,
    /// The first few failures, for the report.
    pub errors: Vec<String>,
    /// Answers by HTTP status ("error" when there was none).
    pub statuses: std::collections::BTreeMap<String, u64>,
    /// Send times (ms after the start) of the first and the last failed request.
    pub first_failure_ms: Option<f64>,
    pub last_failure_ms: Option<f64>,
}

struct Outcome {
    ok: bool,
    status: Option<u16>,
    sent_ms: f64,
    latency_ms: f64,
    error: Option<String>,
}

/// Sends requests built by `body(i)` (POST) until `duration` is over.
pub async fn run(
    spec: &LoadSpec,
    body: impl Fn(u64) -> Vec<u8> + Send + Sync + 'static,
) -> Result<LoadReport, BenchError> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(spec.connections)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| BenchError::Setup(format!("http client: {e}")))?;
    let body = Arc::new(body);
    let permits = Arc::new(Semaphore::new(spec.connections));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Outcome>();
    let start = Instant::now();
    let mut i = 0u64;
    loop {
        let scheduled = match spec.rate {
            Some(r) => start + Duration::from_secs_f64(i as f64 / r),
            None => Instant::now(),
        };
        if scheduled.duration_since(start) >= spec.duration {
            break;
        }
        // Tokio's timer has 1 ms ticks: sleep only when the send time is ahead, or a sleep
        // per request would cap the rate near 1000/s.
        if scheduled > Instant::now() + Duration::from_micros(500) {
            tokio::time::sleep_until(scheduled.into()).await;
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (client, body, tx, url) = (client.clone(), body.clone(), tx.clone(), spec.url.clone());
        let headers = spec.headers.clone();
        tokio::spawn(async move {
            let mut req = client.post(&url).body(body(i));
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            let r = req.send().await;
            let status = r.as_ref().ok().map(|r| r.status().as_u16());
            let (ok, error) = match r {
                // A duplicate is acknowledged without a write: it does not count.
                Ok(resp) if resp.status().is_success() => {
                    let text = resp.text().await.unwrap_or_default();
                    if text.contains("\"duplicate\"") {
                        (false, Some(format!("not stored: {text}")))
                    } else {
                        (true, None)
                    }
                }
                Ok(resp) => (false, Some(format!("HTTP {}", resp.status()))),
                Err(e) => (false, Some(e.to_string())),
            };
            let _ = tx.send(Outcome {
                ok,
                status,
                sent_ms: scheduled.duration_since(start).as_secs_f64() * 1000.0,
                latency_ms: scheduled.elapsed().as_secs_f64() * 1000.0,
                error,
            });
            drop(permit);
        });
        i += 1;
    }
    drop(tx);
    let mut latencies = Vec::with_capacity(i as usize);
    let (mut ok, mut failed, mut errors) = (0, 0, Vec::new());
    let mut statuses = std::collections::BTreeMap::new();
    let (mut first_failure_ms, mut last_failure_ms) = (None::<f64>, None::<f64>);
    while let Some(o) = rx.recv().await {
        latencies.push(o.latency_ms);
        *statuses
            .entry(o.status.map_or("error".to_string(), |s| s.to_string()))
            .or_insert(0) += 1;
        if o.ok {
            ok += 1;
        } else {
            failed += 1;
            first_failure_ms = Some(first_failure_ms.map_or(o.sent_ms, |f| f.min(o.sent_ms)));
            last_failure_ms = Some(last_failure_ms.map_or(o.sent_ms, |l| l.max(o.sent_ms)));
            if errors.len() < 5
                && let Some(e) = o.error
            {
                errors.push(e);
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let p999_ms = {
        let mut v = latencies.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(((v.len() as f64 - 1.0) * 0.999).round().max(0.0) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Ok(LoadReport {
        target_rate: spec.rate,
        sent: i,
        ok,
        failed,
        achieved_rate: ok as f64 / elapsed,
        latency: percentiles(latencies),
        p999_ms,
        errors,
        statuses,
        first_failure_ms,
        last_failure_ms,
    })
}
