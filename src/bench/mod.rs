//! The benchmark harness (`issuesync bench …`). Figures are measured in release builds and
//! reported side by side; nothing here runs in the test suite.

pub mod chaos;
pub mod e2e;
pub mod limiter;
pub mod load;
pub mod queue;
pub mod receiver;
pub mod reference;
pub mod siege;

use std::process::Stdio;
use std::time::{Duration, Instant};

use issuesync_jobs::noop::Noop;
use serde::Serialize;

use crate::store::enqueue::{enqueue, enqueue_at};
use crate::store::jobs;
use crate::sync::Services;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Percentiles {
    pub samples: usize,
    pub min_ms: f64,
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
        min_ms: v.first().copied().unwrap_or(0.0),
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
pub struct WorkerProc(pub std::process::Child);

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_ledger(
    state: &Services,
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

async fn ledger_time(state: &Services, marker: &str) -> Result<i64, BenchError> {
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
    state: &Services,
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

#[derive(Debug, Serialize)]
pub struct InvalidateReport {
    pub groups: usize,
    pub recent: usize,
    pub batched_secs: f64,
    /// UNLINK/DEL commands the batched job sent to Redis.
    pub batched_round_trips: u64,
    pub batched_keys_deleted: i64,
    pub naive_secs: f64,
    pub naive_round_trips: u64,
    /// naive time / batched time.
    pub speedup: f64,
}

/// `calls` of UNLINK and DEL so far, from `INFO commandstats`.
async fn redis_delete_calls(conn: &redis::aio::ConnectionManager) -> Result<u64, BenchError> {
    let mut c = conn.clone();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .map_err(|e| BenchError::Setup(format!("redis: {e}")))?;
    Ok(info
        .lines()
        .filter(|l| l.starts_with("cmdstat_unlink:") || l.starts_with("cmdstat_del:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum())
}

/// Sets the assignee_exists key of every recent group (pipelined; not measured).
async fn populate_keys(
    state: &Services,
    conn: &redis::aio::ConnectionManager,
    ids: &[i64],
) -> Result<(), BenchError> {
    for chunk in ids.chunks(10_000) {
        let mut pipe = redis::pipe();
        for g in chunk {
            pipe.cmd("SET")
                .arg(
                    state
                        .caches
                        .key(&crate::domain::caches::assignee_exists_key(*g)),
                )
                .arg("1")
                .arg("EX")
                .arg(86_400)
                .ignore();
        }
        let mut c = conn.clone();
        let _: () = pipe
            .query_async(&mut c)
            .await
            .map_err(|e| BenchError::Setup(format!("redis: {e}")))?;
    }
    Ok(())
}

/// The project-wide invalidation (the production job handler) against a naive loop of one
/// DEL per key, on Postgres + Redis, measured in the same process.
pub async fn invalidate(
    state: &Services,
    groups: usize,
    recent: usize,
) -> Result<InvalidateReport, BenchError> {
    let (crate::db::Db::Pg(pool), crate::kv::Kv::Redis(conn)) = (&state.db, &state.kv) else {
        return Err(BenchError::Setup(
            "bench invalidate needs DATABASE_URL=postgres://… and REDIS_URL".into(),
        ));
    };
    let recent = recent.min(groups);
    let org = crate::domain::project::create_organization(
        &state.domain_ctx(),
        "bench",
        Some(&format!(
            "bench-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )),
    )
    .await
    .map_err(|e| BenchError::Setup(e.to_string()))?;
    let project =
        crate::domain::project::create_project(&state.domain_ctx(), org.id, "bench", None, &[])
            .await
            .map_err(|e| BenchError::Setup(e.to_string()))?;
    let now = crate::now_ms();
    eprintln!("inserting {groups} groups ({recent} seen in the last 24 h)…");
    sqlx::query(
        "INSERT INTO groups (project_id, title, status, substatus, first_seen, last_seen) \
         SELECT $1, 'bench', 0, 7, $2, CASE WHEN g <= $3 THEN $2 ELSE $4 END FROM generate_series(1, $5) g",
    )
    .bind(project.id)
    .bind(now)
    .bind(recent as i64)
    .bind(now - 3 * 86_400_000)
    .bind(groups as i64)
    .execute(pool)
    .await?;
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM groups WHERE project_id = $1 AND last_seen >= $2 ORDER BY id",
    )
    .bind(project.id)
    .bind(now - 86_400_000)
    .fetch_all(pool)
    .await?;

    eprintln!("populating {} keys…", ids.len());
    populate_keys(state, conn, &ids).await?;
    let before = redis_delete_calls(conn).await?;
    let started = Instant::now();
    let ctx = crate::sync::JobCtx::new(
        state.clone(),
        format!("bench-{}", uuid::Uuid::new_v4().simple()),
        1,
    );
    let job = issuesync_jobs::invalidate_project_caches::InvalidateProjectCaches {
        project_id: project.id,
        kind: issuesync_jobs::invalidate_project_caches::CacheKind::AssigneeExists,
        fail_after_pages: None,
    };
    crate::worker::handlers::invalidate_project_caches(job, &ctx)
        .await
        .map_err(|e| BenchError::Setup(format!("invalidation failed: {e}")))?;
    let batched_secs = started.elapsed().as_secs_f64();
    let batched_round_trips = redis_delete_calls(conn).await? - before;
    let progress = {
        let mut tx = state.db.begin().await?;
        jobs::find_progress(&mut tx, &ctx.job_id)
            .await?
            .unwrap_or_default()
    };

    eprintln!("naive loop…");
    populate_keys(state, conn, &ids).await?;
    let before = redis_delete_calls(conn).await?;
    let started = Instant::now();
    let all: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM groups WHERE project_id = $1 AND last_seen >= $2")
            .bind(project.id)
            .bind(now - 86_400_000)
            .fetch_all(pool)
            .await?;
    for g in all {
        let key = state
            .caches
            .key(&crate::domain::caches::assignee_exists_key(g));
        state
            .kv
            .delete_many(std::slice::from_ref(&key))
            .await
            .map_err(|e| BenchError::Setup(e.to_string()))?;
    }
    let naive_secs = started.elapsed().as_secs_f64();
    let naive_round_trips = redis_delete_calls(conn).await? - before;

    crate::domain::project::delete_project(&state.db, project.id)
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    Ok(InvalidateReport {
        groups,
        recent,
        batched_secs,
        batched_round_trips,
        batched_keys_deleted: progress.keys_deleted,
        naive_secs,
        naive_round_trips,
        speedup: naive_secs / batched_secs.max(1e-9),
    })
}
