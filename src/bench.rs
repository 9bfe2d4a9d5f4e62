//! The benchmark harness (`issuesync bench …`). Figures are measured in release builds and
//! reported side by side; nothing here runs in the test suite.

use std::process::Stdio;
use std::time::{Duration, Instant};

use issuesync_jobs::noop::Noop;
use serde::Serialize;

use crate::startup::AppState;
use crate::store::jobs;
use crate::worker::{enqueue, enqueue_at};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
}

#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub fn percentiles(mut v: Vec<f64>) -> Percentiles {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| {
        if v.is_empty() {
            0.0
        } else {
            v[((v.len() as f64 - 1.0) * p).round() as usize]
        }
    };
    Percentiles {
        samples: v.len(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: v.last().copied().unwrap_or(0.0),
    }
}

#[derive(Debug, Serialize)]
pub struct PickupReport {
    pub backend: &'static str,
    /// Commit of the enqueue (this process) → handler start (the worker process), worker idle.
    pub idle_pickup: Percentiles,
    /// Handler start − the job's scheduled time (negative would be early).
    pub scheduled_delay_error: Percentiles,
}

/// A worker process on the same database, killed on drop.
struct WorkerProc(std::process::Child);

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_ledger(
    state: &AppState,
    marker: &str,
    n: i64,
    timeout: Duration,
) -> Result<(), BenchError> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut tx = state.db.begin().await?;
        if jobs::count_ledger(&mut tx, marker).await?.0 >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BenchError::Setup(format!(
                "the worker did not run job {marker} within {timeout:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn ledger_time(state: &AppState, marker: &str) -> Result<i64, BenchError> {
    let mut tx = state.db.begin().await?;
    Ok(crate::on_tx!(&mut tx, |c| sqlx::query_scalar(
        "SELECT MIN(created_at) FROM job_ledger WHERE marker = $1"
    )
    .bind(marker)
    .fetch_one(c)
    .await)?)
}

/// Idle pickup latency and scheduled-job delay error, with a worker in another process.
pub async fn pickup(
    state: &AppState,
    samples: usize,
    gap: Duration,
    config: Option<&std::path::Path>,
) -> Result<PickupReport, BenchError> {
    let exe = std::env::current_exe().map_err(|e| BenchError::Setup(e.to_string()))?;
    let mut cmd = std::process::Command::new(exe);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.args(["work", "--queues", "maintenance"])
        .env("DATABASE_URL", &state.settings.database_url)
        .stdout(Stdio::null());
    let _worker = WorkerProc(
        cmd.spawn()
            .map_err(|e| BenchError::Setup(format!("cannot start a worker: {e}")))?,
    );

    let run = uuid::Uuid::new_v4().simple().to_string();
    // Warm-up: the worker is up once it ran one job.
    let warm = format!("pickup-{run}-warm");
    let mut tx = state.db.begin().await?;
    enqueue(
        &mut tx,
        &Noop {
            ledger: Some(warm.clone()),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    wait_ledger(state, &warm, 1, Duration::from_secs(30)).await?;

    let mut idle = Vec::with_capacity(samples);
    for i in 0..samples {
        tokio::time::sleep(gap).await;
        let marker = format!("pickup-{run}-{i}");
        let mut tx = state.db.begin().await?;
        enqueue(
            &mut tx,
            &Noop {
                ledger: Some(marker.clone()),
                ..Default::default()
            },
        )
        .await?;
        tx.commit().await?;
        let committed = crate::now_ms();
        wait_ledger(state, &marker, 1, Duration::from_secs(60)).await?;
        idle.push((ledger_time(state, &marker).await? - committed) as f64);
    }

    let mut delayed = Vec::new();
    let n = samples.clamp(1, 20);
    for i in 0..n {
        let marker = format!("pickup-{run}-delay-{i}");
        // Spread the due times over the second so SQLite's 1 s resolution shows.
        let due =
            chrono::Utc::now() + chrono::Duration::milliseconds(1500 + (i as i64 * 137) % 1000);
        let mut tx = state.db.begin().await?;
        enqueue_at(
            &mut tx,
            &Noop {
                ledger: Some(marker.clone()),
                ..Default::default()
            },
            Some(due),
        )
        .await?;
        tx.commit().await?;
        delayed.push((marker, due.timestamp_millis()));
    }
    let mut errors = Vec::new();
    for (marker, due) in &delayed {
        wait_ledger(state, marker, 1, Duration::from_secs(60)).await?;
        errors.push((ledger_time(state, marker).await? - due) as f64);
    }
    Ok(PickupReport {
        backend: state.db.backend(),
        idle_pickup: percentiles(idle),
        scheduled_delay_error: percentiles(errors),
    })
}
