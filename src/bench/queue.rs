//! `bench queue`: burn-down of N no-op jobs by P worker processes × C concurrency, the
//! methodology of River's, graphile-worker's and Sidekiq's published figures: insert the
//! backlog first, then time the drain from the first start to the last finish.

use std::process::Stdio;
use std::time::{Duration, Instant};

use issuesync_jobs::noop::Noop;
use issuesync_jobs::{Envelope, Job};
use serde::Serialize;

use super::{BenchError, WorkerProc};
use crate::store::jobs;
use crate::sync::Services;

#[derive(Debug, Serialize)]
pub struct BurnDownReport {
    pub backend: &'static str,
    pub jobs: usize,
    pub processes: usize,
    pub concurrency: usize,
    /// Jobs per fetch (`queue.fetch_batch_size`).
    pub fetch_batch: usize,
    /// RUST_LOG of the workers.
    pub worker_log: String,
    pub insert_secs: f64,
    pub inserts_per_sec: f64,
    /// First attempt start → last attempt finish.
    pub drain_secs: f64,
    /// Worker processes spawned → queue empty (how the peers are timed too).
    pub wall_secs: f64,
    pub jobs_per_sec: f64,
    /// Attempts recorded: more than `jobs` means some ran twice.
    pub executions: i64,
    /// Largest resident set of one worker process while draining.
    pub max_worker_rss_mib: f64,
}

/// Resident set size of a process, from /proc (Linux).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub fn spawn_workers(
    state: &Services,
    config: Option<&std::path::Path>,
    processes: usize,
    args: &[&str],
    env: &[(&str, String)],
) -> Result<Vec<WorkerProc>, BenchError> {
    let exe = std::env::current_exe().map_err(|e| BenchError::Setup(e.to_string()))?;
    (0..processes)
        .map(|_| {
            let mut cmd = std::process::Command::new(&exe);
            if let Some(c) = config {
                cmd.arg("--config").arg(c);
            }
            cmd.arg("work")
                .args(args)
                .env("DATABASE_URL", &state.settings.database_url)
                .env("RUST_LOG", "warn")
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .stdout(Stdio::null());
            if let Some(r) = &state.settings.redis_url {
                cmd.env("REDIS_URL", r);
            }
            cmd.spawn()
                .map(WorkerProc)
                .map_err(|e| BenchError::Setup(format!("cannot start a worker: {e}")))
        })
        .collect()
}

/// `workers` is (processes, concurrency of each); `worker_log` their RUST_LOG.
pub async fn burn_down(
    state: &Services,
    n: usize,
    (processes, concurrency): (usize, usize),
    fetch_batch: usize,
    worker_log: &str,
    config: Option<&std::path::Path>,
) -> Result<BurnDownReport, BenchError> {
    let queue = Noop::QUEUE;
    {
        let mut tx = state.db.begin().await?;
        let busy = jobs::count_unfinished(&mut tx, queue).await?;
        if busy > 0 {
            return Err(BenchError::Setup(format!(
                "the {queue} queue has {busy} unfinished jobs; run the benchmark on an empty database"
            )));
        }
    }
    let payload = serde_json::to_vec(
        &Envelope::of(&Noop::default()).map_err(|e| BenchError::Setup(e.to_string()))?,
    )
    .map_err(|e| BenchError::Setup(e.to_string()))?;
    let t0_ms = crate::now_ms();
    let started = Instant::now();
    let chunk = 10_000;
    let mut inserted = 0;
    while inserted < n {
        let k = chunk.min(n - inserted);
        let mut tx = state.db.begin_write().await?;
        jobs::insert_many_jobs(&mut tx, queue, Noop::MAX_ATTEMPTS as i32, &payload, k).await?;
        tx.commit().await?;
        inserted += k;
        eprint!("\rinserted {inserted}/{n}");
    }
    let insert_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "\rinserted {n} jobs in {insert_secs:.1} s; draining with {processes} × {concurrency}"
    );

    let workers = spawn_workers(
        state,
        config,
        processes,
        &["--queues", queue, "--concurrency", &concurrency.to_string()],
        &[
            ("ISSUESYNC_QUEUE__FETCH_BATCH_SIZE", fetch_batch.to_string()),
            ("RUST_LOG", worker_log.to_string()),
        ],
    )?;
    let spawned = Instant::now();
    let mut max_rss = 0u64;
    let deadline = Instant::now() + Duration::from_secs(3600);
    // The exact count scans the table, so it is shown every 2 s; the 100 ms end probe is
    // two index lookups and takes no measurable time from the workers.
    let mut shown = Instant::now();
    loop {
        for w in &workers {
            max_rss = max_rss.max(rss_kib(w.0.id()).unwrap_or(0));
        }
        let mut tx = state.db.begin().await?;
        if !jobs::any_unfinished(&mut tx, queue).await? {
            break;
        }
        if shown.elapsed() >= Duration::from_secs(2) {
            let left = jobs::count_unfinished(&mut tx, queue).await?;
            eprint!("\r{left} jobs left      ");
            shown = Instant::now();
        }
        drop(tx);
        if Instant::now() > deadline {
            return Err(BenchError::Setup(
                "jobs still unfinished after an hour".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprint!("\r0 jobs left      ");
    let wall_secs = spawned.elapsed().as_secs_f64();
    eprintln!();
    drop(workers);
    let (first, last, executions) = {
        let mut tx = state.db.begin().await?;
        jobs::attempt_span(&mut tx, Noop::JOB_NAME, t0_ms).await?
    };
    let drain_secs = match (first, last) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1000.0,
        _ => return Err(BenchError::Setup("no attempt was recorded".into())),
    };
    Ok(BurnDownReport {
        backend: state.db.backend(),
        jobs: n,
        processes,
        concurrency,
        fetch_batch,
        worker_log: worker_log.to_string(),
        insert_secs,
        inserts_per_sec: n as f64 / insert_secs,
        drain_secs,
        wall_secs,
        jobs_per_sec: n as f64 / wall_secs,
        executions,
        max_worker_rss_mib: max_rss as f64 / 1024.0,
    })
}
