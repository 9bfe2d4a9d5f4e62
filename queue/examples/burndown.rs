//! Measures the queue from a release build (the methodology of River's, graphile-worker's and
//! Sidekiq's published figures: insert the backlog first, then time the drain):
//!
//! ```sh
//! cargo run --release -p issuesync-queue --example burndown -- --database-url URL \
//!     drain  --jobs 200000 --processes 2 --concurrency 8 [--fetch-batch N]
//! cargo run --release -p issuesync-queue --example burndown -- --database-url URL pickup --samples 200
//! cargo run --release -p issuesync-queue --example burndown -- --database-url URL \
//!     crash  --jobs 20000 --processes 3 --kill-every-secs 3
//! ```
//!
//! The database must be empty (a fresh one); the queue's migrations are applied. Workers are
//! child processes of this one (`worker`), with the default settings except the flags given.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use issuesync_jobs::Job;
use issuesync_queue::db::{Db, PoolSettings};
use issuesync_queue::{JobError, JobMeta, Queue, QueueConfig, Registry, RunJob, WorkerSpec};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
struct Cli {
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Insert N no-op jobs, then drain them with P worker processes × C.
    Drain {
        #[arg(long, default_value_t = 200_000)]
        jobs: usize,
        #[arg(long, default_value_t = 2)]
        processes: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// `fetch_batch_size` of the workers (default: the queue's default).
        #[arg(long)]
        fetch_batch: Option<usize>,
    },
    /// Idle pickup: one job at a time into an idle worker in another process.
    Pickup {
        #[arg(long, default_value_t = 200)]
        samples: usize,
    },
    /// A drain of jobs that take 20 ms while one worker process, at random, is SIGKILLed
    /// every few seconds and restarted: time until the dead one's jobs are taken back.
    Crash {
        #[arg(long, default_value_t = 20_000)]
        jobs: usize,
        #[arg(long, default_value_t = 3)]
        processes: usize,
        #[arg(long, default_value_t = 3.0)]
        kill_every_secs: f64,
    },
    /// (internal) A worker process; it stops gracefully when its stdin closes.
    Worker {
        #[arg(long)]
        concurrency: usize,
        #[arg(long)]
        fetch_batch: Option<usize>,
    },
}

/// The benchmark's job: sleeps, if asked to, and succeeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Noop {
    #[serde(default)]
    sleep_ms: u64,
}

impl Job for Noop {
    const JOB_NAME: &'static str = "noop";
    const QUEUE: &'static str = "bench";
    const MAX_ATTEMPTS: u32 = 3;
}

impl RunJob<()> for Noop {
    async fn run(self, _: &(), _: &JobMeta) -> std::result::Result<(), JobError> {
        if self.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
        }
        Ok(())
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let db = Db::connect(&cli.database_url, &PoolSettings::default()).await?;
    match cli.mode {
        Mode::Worker {
            concurrency,
            fetch_batch,
        } => worker(db, concurrency, fetch_batch).await,
        Mode::Drain {
            jobs,
            processes,
            concurrency,
            fetch_batch,
        } => {
            drain(
                &cli.database_url,
                db,
                jobs,
                processes,
                concurrency,
                fetch_batch,
            )
            .await
        }
        Mode::Pickup { samples } => pickup(&cli.database_url, db, samples).await,
        Mode::Crash {
            jobs,
            processes,
            kill_every_secs,
        } => crash(&cli.database_url, db, jobs, processes, kill_every_secs).await,
    }
}

async fn worker(db: Db, concurrency: usize, fetch_batch: Option<usize>) -> Result<()> {
    let mut config = QueueConfig::default();
    if let Some(f) = fetch_batch {
        config.fetch_batch_size = f;
    }
    let queue = Queue::start(db, config);
    let registry = Arc::new(Registry::new().register::<Noop>());
    let specs = [WorkerSpec {
        queue: Noop::QUEUE.into(),
        concurrency,
    }];
    let stdin_closed = async {
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await;
    };
    issuesync_queue::run_workers(&queue, registry, (), &specs, stdin_closed).await?;
    Ok(())
}

struct Workers {
    url: String,
    args: Vec<String>,
    procs: Vec<Child>,
}

impl Workers {
    fn spawn(
        url: &str,
        n: usize,
        concurrency: usize,
        fetch_batch: Option<usize>,
    ) -> Result<Workers> {
        let mut args = vec![
            "worker".to_string(),
            "--concurrency".into(),
            concurrency.to_string(),
        ];
        if let Some(f) = fetch_batch {
            args.extend(["--fetch-batch".into(), f.to_string()]);
        }
        let mut w = Workers {
            url: url.to_string(),
            args,
            procs: Vec::new(),
        };
        for _ in 0..n {
            let p = w.one()?;
            w.procs.push(p);
        }
        Ok(w)
    }

    fn one(&self) -> Result<Child> {
        Ok(Command::new(std::env::current_exe()?)
            .arg("--database-url")
            .arg(&self.url)
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?)
    }

    fn max_rss_kib(&self) -> u64 {
        self.procs
            .iter()
            .map(|p| rss_kib(p.id()).unwrap_or(0))
            .max()
            .unwrap_or(0)
    }

    /// Graceful stop: close their stdin and wait.
    fn stop(mut self) {
        for p in &mut self.procs {
            drop(p.stdin.take());
        }
        for p in &mut self.procs {
            let _ = p.wait();
        }
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Inserts the backlog in chunks, one statement per chunk on Postgres.
async fn insert_backlog(db: &Db, n: usize, job: &Noop) -> Result<f64> {
    db.migrate_queue().await?;
    let payload = serde_json::to_vec(job)?;
    let started = Instant::now();
    let mut done = 0;
    while done < n {
        let k = (n - done).min(10_000);
        let ids: Vec<String> = (0..k).map(|_| ulid::Ulid::generate().to_string()).collect();
        match db {
            Db::Pg(p) => {
                sqlx::query(
                    "INSERT INTO queue_jobs (id, queue, kind, payload, max_attempts) \
                     SELECT id, 'bench', 'noop', $2, 3 FROM unnest($1::text[]) AS id",
                )
                .bind(&ids)
                .bind(&payload)
                .execute(p)
                .await?;
            }
            Db::Sqlite(p) => {
                let now = chrono::Utc::now().timestamp_millis();
                let mut tx = p.begin().await?;
                for id in &ids {
                    sqlx::query(
                        "INSERT INTO queue_jobs (id, queue, kind, payload, max_attempts, run_at, created_at) \
                         VALUES ($1, 'bench', 'noop', $2, 3, $3, $3)",
                    )
                    .bind(id)
                    .bind(&payload)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
        }
        done += k;
    }
    // Statistics for the planner, as autovacuum would gather after a bulk insert.
    if let Db::Pg(p) = db {
        sqlx::query("ANALYZE queue_jobs").execute(p).await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

async fn scalar(db: &Db, sql: &'static str) -> Result<i64> {
    Ok(issuesync_queue::on_pool!(db, |p| sqlx::query_scalar(sql)
        .fetch_one(p)
        .await?))
}

/// Unfinished jobs of the bench queue (two index probes: cheap enough to poll).
async fn busy(db: &Db) -> Result<bool> {
    Ok(scalar(
        db,
        "SELECT CAST(CASE WHEN EXISTS (SELECT 1 FROM queue_jobs WHERE queue = 'bench' AND state IN ('pending', 'failed')) \
         OR EXISTS (SELECT 1 FROM queue_jobs WHERE holder IS NOT NULL AND state = 'running') THEN 1 ELSE 0 END AS BIGINT)",
    )
    .await?
        == 1)
}

async fn drain(
    url: &str,
    db: Db,
    n: usize,
    processes: usize,
    concurrency: usize,
    fetch_batch: Option<usize>,
) -> Result<()> {
    let insert_secs = insert_backlog(&db, n, &Noop { sleep_ms: 0 }).await?;
    eprintln!("inserted {n} jobs in {insert_secs:.1} s; draining with {processes} × {concurrency}");
    let workers = Workers::spawn(url, processes, concurrency, fetch_batch)?;
    let spawned = Instant::now();
    let mut rss = 0;
    while busy(&db).await? {
        rss = rss.max(workers.max_rss_kib());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let wall = spawned.elapsed().as_secs_f64();
    workers.stop();
    let done = scalar(&db, "SELECT COUNT(*) FROM queue_jobs WHERE state = 'done'").await?;
    let attempts = scalar(&db, "SELECT COALESCE(SUM(attempts), 0) FROM queue_jobs").await?;
    println!(
        "{{\"backend\":\"{}\",\"jobs\":{n},\"done\":{done},\"attempts\":{attempts},\"processes\":{processes},\
         \"concurrency\":{concurrency},\"fetch_batch\":{},\"insert_secs\":{insert_secs:.2},\"wall_secs\":{wall:.2},\
         \"jobs_per_sec\":{:.0},\"max_worker_rss_mib\":{:.1}}}",
        db.backend(),
        fetch_batch.unwrap_or(QueueConfig::default().fetch_batch_size),
        n as f64 / wall,
        rss as f64 / 1024.0
    );
    Ok(())
}

async fn pickup(url: &str, db: Db, samples: usize) -> Result<()> {
    db.migrate_queue().await?;
    let workers = Workers::spawn(url, 1, 8, None)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut ms = Vec::with_capacity(samples);
    for _ in 0..samples {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut tx = db.begin().await?;
        let r = issuesync_queue::enqueue(&mut tx, &Noop { sleep_ms: 0 }).await?;
        tx.commit().await?;
        let committed = chrono::Utc::now();
        let deadline = Instant::now() + Duration::from_secs(10);
        let started = loop {
            let j = issuesync_queue::admin::show(&db, r.id()).await?;
            if let Some(j) = j.filter(|j| j.job.state == "done") {
                break j.job.started_at.unwrap_or(committed);
            }
            if Instant::now() > deadline {
                return Err("a job was not picked up within 10 s".into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        ms.push((started - committed).num_microseconds().unwrap_or(0) as f64 / 1000.0);
    }
    workers.stop();
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{{\"backend\":\"{}\",\"samples\":{samples},\"p50_ms\":{:.1},\"p99_ms\":{:.1},\"max_ms\":{:.1}}}",
        db.backend(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    Ok(())
}

async fn crash(url: &str, db: Db, n: usize, processes: usize, every: f64) -> Result<()> {
    insert_backlog(&db, n, &Noop { sleep_ms: 20 }).await?;
    let mut workers = Workers::spawn(url, processes, 8, None)?;
    let started = Instant::now();
    let mut orphans: Vec<(u32, Instant)> = Vec::new();
    let (mut kills, mut worst) = (0, 0f64);
    let mut next = Instant::now() + Duration::from_secs_f64(every);
    loop {
        let mut still = Vec::new();
        for (pid, at) in orphans.drain(..) {
            let held: i64 = issuesync_queue::on_pool!(&db, |p| sqlx::query_scalar(
                "SELECT COUNT(*) FROM queue_jobs WHERE state = 'running' AND holder LIKE $1"
            )
            .bind(format!("bench-{pid}-%"))
            .fetch_one(p)
            .await?);
            if held == 0 {
                worst = worst.max(at.elapsed().as_secs_f64());
            } else {
                still.push((pid, at));
            }
        }
        orphans = still;
        let working = busy(&db).await?;
        if !working && orphans.is_empty() {
            break;
        }
        if working && Instant::now() >= next {
            let i = rand::random_range(0..workers.procs.len());
            let pid = workers.procs[i].id();
            let _ = workers.procs[i].kill();
            let _ = workers.procs[i].wait();
            orphans.push((pid, Instant::now()));
            kills += 1;
            workers.procs[i] = workers.one()?;
            next = Instant::now() + Duration::from_secs_f64(every);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = started.elapsed().as_secs_f64();
    workers.stop();
    let done = scalar(&db, "SELECT COUNT(*) FROM queue_jobs WHERE state = 'done'").await?;
    let rerun = scalar(
        &db,
        "SELECT COUNT(DISTINCT job_id) FROM queue_attempts WHERE outcome = 'lost'",
    )
    .await?;
    println!(
        "{{\"backend\":\"{}\",\"jobs\":{n},\"done\":{done},\"lost\":{},\"kills\":{kills},\"rescued_jobs\":{rerun},\
         \"max_orphan_recovery_secs\":{worst:.2},\"total_secs\":{total:.1}}}",
        db.backend(),
        n as i64 - done
    );
    Ok(())
}
