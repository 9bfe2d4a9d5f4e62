//! Queue wiring: one apalis worker per queue on the database that holds our data, our poll
//! strategies, and a dispatcher that runs each job through the registry of kinds and writes
//! the outcome itself (backoff, snooze, dead), because apalis' SQL backends have no backoff
//! and would re-fetch a failed job at once.

pub mod completer;
pub mod handlers;
pub mod poll;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::*;
use futures::FutureExt;
use issuesync_jobs::Envelope;
use issuesync_queue::{JobMeta, KindInfo, Registry};
use rand::Rng;
use serde_json::Value;
use tokio::sync::watch;
use tracing::Instrument;

use self::poll::{Both, Tick, Wake};
use crate::db::{Db, SQLITE_JOB_INSERTS};
use crate::now_ms;
use crate::store::enqueue::enqueue;
use crate::store::jobs::{self, AttemptRecord, Finish};
use crate::sync::{JobCtx, JobError, Services};

/// The worker's state: the shared services and the batched writer of successes.
#[derive(Clone)]
struct WorkerState {
    services: Services,
    completer: completer::Completer,
    registry: Arc<Registry<JobCtx>>,
}

/// Every job kind with its handler, registered once: each handler says `handles!` next to
/// its code, and a kind of the contract missing here fails the test below.
pub fn registry() -> Registry<JobCtx> {
    use issuesync_jobs::*;
    Registry::new()
        .register::<process_webhook::ProcessWebhook>()
        .register::<discord_interaction::DiscordInteraction>()
        .register::<sync_assignee_inbound::SyncAssigneeInbound>()
        .register::<sync_status_inbound::SyncStatusInbound>()
        .register::<sync_status_outbound::SyncStatusOutbound>()
        .register::<sync_assignee_outbound::SyncAssigneeOutbound>()
        .register::<invalidate_project_caches::InvalidateProjectCaches>()
        .register::<purge_jobs::PurgeJobs>()
        .register::<noop::Noop>()
}

/// Retry delay after attempt `attempt` (1-based): exponential, capped, with jitter in [0.75, 1]
/// so that successive delays always grow and a burst of failures spreads out.
pub fn backoff(attempt: i32, base_ms: u64, max_secs: u64) -> Duration {
    let exp = 2u64.saturating_pow(attempt.saturating_sub(1).clamp(0, 30) as u32);
    let ms = base_ms
        .saturating_mul(exp)
        .min(max_secs.saturating_mul(1000));
    let jitter = rand::rng().random_range(0.75..=1.0);
    Duration::from_millis((ms as f64 * jitter) as u64)
}

/// The apalis handler: every job of every queue comes through here.
async fn dispatch(
    job: Value,
    id: TaskId,
    attempt: Attempt,
    worker: WorkerContext,
    state: Data<WorkerState>,
) -> Result<(), BoxDynError> {
    let started_ms = now_ms();
    let started = Instant::now();
    let job_id = id.to_string();
    let worker_name = worker.name().to_string();
    let attempt = i32::try_from(attempt.current()).unwrap_or(i32::MAX);
    let state: WorkerState = (*state).clone();

    let env: Result<Envelope, _> = serde_json::from_value(job);
    let span = job_span(&job_id, attempt, env.as_ref().ok());
    run_job(
        env,
        state,
        job_id,
        worker_name,
        attempt,
        started,
        started_ms,
    )
    .instrument(span)
    .await;
    Ok(())
}

/// The span of one attempt: a child of the span that enqueued the job when its envelope
/// carries a `traceparent`. Its fields are on every log line the attempt writes.
fn job_span(job_id: &str, attempt: i32, env: Option<&Envelope>) -> tracing::Span {
    let kind = env.map(|e| e.job.as_str()).unwrap_or("?");
    let arg = |k: &str| env.and_then(|e| e.args.get(k)).and_then(Value::as_i64);
    let span = tracing::info_span!(
        "job",
        otel.name = %format_args!("job {kind}"),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        job_id,
        job = kind,
        attempt,
        delivery_id = arg("delivery_id"),
        integration_id = arg("integration_id"),
        outcome = tracing::field::Empty,
    );
    if let Some(t) = env.and_then(|e| e.traceparent.as_deref()) {
        crate::trace::continue_trace(&span, t);
    }
    span
}

async fn run_job(
    env: Result<Envelope, serde_json::Error>,
    state: WorkerState,
    job_id: String,
    worker_name: String,
    attempt: i32,
    started: Instant,
    started_ms: i64,
) {
    let (name, queue, outcome) = match env {
        Err(e) => (
            "?".to_string(),
            "?",
            Err(JobError::Permanent(format!(
                "undecodable job envelope: {e}"
            ))),
        ),
        Ok(env) => {
            let kind = issuesync_jobs::kind(&env.job);
            let queue = kind.map(|k| k.queue).unwrap_or("?");
            let ctx = JobCtx::new(state.services.clone(), job_id.clone(), attempt);
            let max = kind.map(|k| k.max_attempts as i32).unwrap_or(1);
            let outcome = if attempt > max {
                // Rescued after its last allowed attempt: that attempt ended without a
                // result (the process crashed, was killed or froze while running it).
                // Running it again could crash the worker again, forever.
                Err(JobError::Permanent(format!(
                    "gave up: attempt {attempt} is past the limit of {max}, and the last one \
                     ended without a result (the worker process died, was killed or lost its \
                     heartbeat while running this job)"
                )))
            } else {
                // The registry decodes the args (a payload that does not fit its kind is
                // permanent) and applies the kind's timeout; a panic is caught here.
                let payload = serde_json::to_vec(&env.args).unwrap_or_default();
                let meta = |info: KindInfo| JobMeta {
                    id: job_id.clone(),
                    kind: info.name,
                    queue: info.queue,
                    attempt,
                    max_attempts: max,
                    snoozes: 0,
                    partition_key: None,
                    traceparent: env.traceparent.clone(),
                    worker: Arc::from(worker_name.as_str()),
                };
                let run = state.registry.run(&env.job, payload, ctx, meta);
                match AssertUnwindSafe(run).catch_unwind().await {
                    Err(panic) => Err(JobError::Transient(format!(
                        "panicked: {}",
                        panic_message(&*panic)
                    ))),
                    Ok(r) => r.map_err(JobError::from),
                }
            };
            (env.job, queue, outcome)
        }
    };
    let q = &state.services.settings.queue;
    let (finish, label) = match &outcome {
        Ok(()) => (Finish::Done, "done"),
        Err(JobError::Transient(e)) => {
            let at = chrono::Utc::now() + backoff(attempt, q.backoff_base_ms, q.backoff_max_secs);
            (
                Finish::Retry {
                    error: e.clone(),
                    at,
                },
                "retry",
            )
        }
        Err(JobError::Permanent(e)) => (Finish::Dead { reason: e.clone() }, "dead"),
        Err(JobError::RateLimited { reason, until }) => (
            Finish::Snooze {
                reason: reason.clone(),
                until: *until,
            },
            "snoozed",
        ),
    };
    let error = outcome.as_ref().err().map(|e| e.to_string());
    let finished_at = now_ms();
    let written = if matches!(finish, Finish::Done) {
        state
            .completer
            .complete(
                &state.services.db,
                jobs::DoneJob {
                    id: job_id.clone(),
                    worker: worker_name.clone(),
                    queue: queue.to_string(),
                    job_name: name.clone(),
                    attempt,
                    started_at: started_ms,
                    finished_at,
                },
            )
            .await
            .map(|()| Some("done".to_string()))
    } else {
        write_outcome(
            &state.services.db,
            &job_id,
            &worker_name,
            &finish,
            &AttemptRecord {
                job_id: &job_id,
                queue,
                job_name: &name,
                attempt,
                outcome: label,
                error: error.as_deref(),
                worker: &worker_name,
                started_at: started_ms,
                finished_at,
            },
        )
        .await
    };
    let elapsed = started.elapsed().as_secs_f64();
    let final_label = match &written {
        Ok(Some(s)) if label == "retry" && s == "dead" => "dead",
        _ => label,
    };
    let span = tracing::Span::current();
    span.record("outcome", final_label);
    if final_label != "done" {
        span.record("otel.status_code", "error");
    }
    metrics::histogram!("issuesync_job_duration_seconds", "job" => name.clone()).record(elapsed);
    metrics::counter!("issuesync_job_attempts_total", "job" => name.clone(), "outcome" => final_label).increment(1);
    match written {
        Ok(Some(_)) => {
            // A success is logged by the completer once written.
            if let Some(e) = &error {
                tracing::warn!(job_id, job = name, attempt, outcome = final_label, error = %e, "job attempt failed");
            }
        }
        Ok(None) => tracing::warn!(
            job_id,
            job = name,
            "job was rescued or killed while it ran; its outcome is dropped"
        ),
        Err(e) => {
            tracing::error!(job_id, job = name, error = %e, "cannot record the job outcome; it will be rescued")
        }
    }
}

/// Writes the outcome and the attempt row in one transaction; `None` when the worker no
/// longer holds the job.
async fn write_outcome(
    db: &Db,
    id: &str,
    worker: &str,
    finish: &Finish,
    record: &AttemptRecord<'_>,
) -> Result<Option<String>, crate::store::StoreError> {
    let mut tx = db.begin().await?;
    let state = jobs::finish_job(&mut tx, id, worker, finish).await?;
    if state.is_some() {
        let outcome = match (&state, record.outcome) {
            (Some(s), "retry") if s == "dead" => "dead",
            (_, o) => o,
        };
        jobs::record_attempt(&mut tx, &AttemptRecord { outcome, ..*record }).await?;
    }
    tx.commit().await?;
    Ok(state)
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Which queues to run, and how many jobs at once on each.
#[derive(Clone, Debug)]
pub struct PoolSpec {
    pub queue: String,
    pub concurrency: usize,
}

/// The pools of `queues` (all when empty), with per-queue concurrency from config unless
/// `concurrency` overrides it.
pub fn pools(
    state: &Services,
    queues: &[String],
    concurrency: Option<usize>,
) -> Result<Vec<PoolSpec>, String> {
    let names: Vec<String> = if queues.is_empty() {
        issuesync_jobs::queues::ALL
            .iter()
            .map(|q| q.to_string())
            .collect()
    } else {
        queues.to_vec()
    };
    names
        .into_iter()
        .map(|q| {
            if !issuesync_jobs::queues::ALL.contains(&q.as_str()) {
                return Err(format!(
                    "unknown queue {q:?}; queues are {:?}",
                    issuesync_jobs::queues::ALL
                ));
            }
            let concurrency = concurrency
                .unwrap_or_else(|| state.settings.queue.concurrency_of(&q))
                .max(1);
            Ok(PoolSpec {
                queue: q,
                concurrency,
            })
        })
        .collect()
}

/// Runs the pools until `shutdown` flips to true, then lets in-flight jobs finish (up to
/// `queue.shutdown_timeout_secs`). A worker whose backend fails (database restart) is
/// restarted with a growing pause, so an outage does not spin.
pub async fn run_pools(services: Services, pools: Vec<PoolSpec>, shutdown: watch::Receiver<bool>) {
    let state = WorkerState {
        services,
        completer: Default::default(),
        registry: Arc::new(registry()),
    };
    let instance = format!(
        "{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let mut tasks = tokio::task::JoinSet::new();
    for pool in pools {
        let state = state.clone();
        let shutdown = shutdown.clone();
        let instance = instance.clone();
        tasks.spawn(async move { supervise(state, pool, instance, shutdown).await });
    }
    tokio::spawn(schedule_retention(state.services.clone(), shutdown.clone()));
    while tasks.join_next().await.is_some() {}
}

async fn supervise(
    state: WorkerState,
    pool: PoolSpec,
    instance: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut run = 0usize;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let name = format!("{}-{instance}-{run}", pool.queue);
        let started = Instant::now();
        let result = run_worker(&state, &pool, &name, shutdown.clone()).await;
        if *shutdown.borrow() {
            tracing::info!(worker = name, "worker stopped");
            return;
        }
        run += 1;
        // Back off 1 s, 2 s, … 10 s while it keeps failing fast; reset after a good run.
        let pause = if started.elapsed() > Duration::from_secs(60) {
            Duration::from_secs(1)
        } else {
            Duration::from_secs((run as u64).min(10))
        };
        match result {
            Ok(()) => tracing::warn!(worker = name, "worker ended; restarting"),
            Err(e) => {
                tracing::warn!(worker = name, error = %e, pause_s = pause.as_secs(), "worker failed; restarting")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

async fn run_worker(
    state: &WorkerState,
    pool: &PoolSpec,
    name: &str,
    shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let q = &state.services.settings.queue;
    let heartbeat = Duration::from_secs(q.heartbeat_secs);
    let grace = Duration::from_secs(q.shutdown_timeout_secs);
    let mut stop = shutdown.clone();
    let signal = async move {
        let _ = stop.wait_for(|s| *s).await;
        Ok::<(), std::io::Error>(())
    };
    // fetch_batch_size 1 (the default): a job is fetched only when a slot is free, so nothing
    // fetched is left unstarted at shutdown (apalis re-queues those with attempts+1, which
    // uncharge_handbacks gives back).
    let fut = match &state.services.db {
        Db::Pg(p) => {
            let cfg = apalis_postgres::Config::default()
                .queue(&pool.queue)
                .batch_size(q.fetch_batch_size.max(1))
                .heartbeat_interval(heartbeat)
                .missed_heartbeats(q.missed_heartbeats as usize)
                .lock_tasks(false)
                .persist_results(false);
            let wake = apalis_postgres::Pubsub::new(p.clone(), pool.queue.clone());
            let backend = apalis_postgres::PostgresStorage::<Value>::new(p)
                .with_config(cfg)
                .poll_with_strategy(Both(
                    Wake(wake),
                    Tick::new(Duration::from_millis(q.poll_interval_ms_postgres)),
                ));
            let worker = WorkerBuilder::new(name)
                .backend(backend)
                .concurrency(pool.concurrency)
                .data(state.clone())
                .build(dispatch);
            with_grace(worker.run_until(signal), grace, shutdown.clone()).boxed()
        }
        Db::Sqlite(p) => {
            let cfg = apalis_sqlite::Config::default()
                .queue(&pool.queue)
                .batch_size(q.fetch_batch_size.max(1))
                .heartbeat_interval(heartbeat)
                .missed_heartbeats(q.missed_heartbeats as usize)
                .lock_tasks(false)
                .persist_results(false);
            let backend = apalis_sqlite::SqliteStorage::<Value>::new(p)
                .with_config(cfg)
                .poll_with_strategy(Both(
                    Wake(SQLITE_JOB_INSERTS.subscribe()),
                    Tick::new(Duration::from_millis(q.poll_interval_ms_sqlite)),
                ));
            let worker = WorkerBuilder::new(name)
                .backend(backend)
                .concurrency(pool.concurrency)
                .data(state.clone())
                .build(dispatch);
            with_grace(worker.run_until(signal), grace, shutdown.clone()).boxed()
        }
    };
    tracing::info!(
        worker = name,
        queue = pool.queue,
        concurrency = pool.concurrency,
        "worker started"
    );
    let result = fut.await;
    state.completer.flush().await;
    if let Err(e) = uncharge_handbacks(&state.services.db).await {
        tracing::warn!(worker = name, error = %e, "cannot give back the attempts of unstarted jobs");
    }
    result
}

/// See [`jobs::uncharge_shutdown_handbacks`].
async fn uncharge_handbacks(db: &Db) -> Result<(), crate::store::StoreError> {
    let mut tx = db.begin().await?;
    let n = jobs::uncharge_shutdown_handbacks(&mut tx).await?;
    tx.commit().await?;
    if n > 0 {
        tracing::info!(
            jobs = n,
            "handed back prefetched jobs without using an attempt"
        );
    }
    Ok(())
}

/// Bounds the drain after the shutdown signal: in-flight jobs get `grace` to finish; jobs
/// still running then are dropped and later rescued by the heartbeat.
async fn with_grace<F, E>(
    run: F,
    grace: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String>
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let deadline = async move {
        let _ = shutdown.wait_for(|s| *s).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        r = run => r.map_err(|e| e.to_string()),
        _ = deadline => Err(format!("jobs still running {}s after shutdown; left for rescue", grace.as_secs())),
    }
}

/// Every worker process enqueues the hourly purge with a dedup key, so it runs once an hour.
async fn schedule_retention(state: Services, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_secs(300));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let slot = chrono::Utc::now().timestamp() / 3600;
        let job = issuesync_jobs::purge_jobs::PurgeJobs { slot };
        let r = async {
            let mut tx = state.db.begin().await?;
            enqueue(&mut tx, &job).await?;
            tx.commit().await?;
            Ok::<_, crate::store::StoreError>(())
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot schedule the retention job");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// The contract's kinds (what producers may enqueue) and the registry's (what runs) are
    /// the same, with the same queue and limits.
    #[test]
    fn every_kind_of_the_contract_is_registered() {
        let registry = super::registry();
        let mut registered: Vec<_> = registry
            .kinds()
            .map(|k| (k.name, k.queue, k.max_attempts, k.timeout, k.coalesce))
            .collect();
        let mut contract: Vec<_> = issuesync_jobs::KINDS
            .iter()
            .map(|k| {
                let timeout = Duration::from_secs(k.timeout_secs);
                (k.name, k.queue, k.max_attempts, timeout, k.coalesce)
            })
            .collect();
        registered.sort();
        contract.sort();
        assert_eq!(registered, contract);
    }
}
