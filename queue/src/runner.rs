//! Runs the workers of a process under apalis' monitor: one apalis worker per queue on our
//! backend, with apalis' concurrency limit, tracing spans and panic catching, restarted by
//! the monitor if it ever fails, and a bounded graceful shutdown.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;

use apalis::layers::WorkerBuilderExt;
use apalis::layers::catch_panic::CatchPanicLayer;
use apalis::layers::tracing::{DefaultOnFailure, TraceLayer};
use apalis_core::monitor::Monitor;
use apalis_core::worker::builder::WorkerBuilder;

use crate::error::{JobError, QueueError};
use crate::registry::Registry;
use crate::runtime::Queue;

/// One queue's worker in this process.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub queue: String,
    pub concurrency: usize,
}

/// A panic in a handler is a transient failure: retried with backoff, dead after its attempts.
fn panicked(p: &Box<dyn Any + Send>) -> JobError {
    let msg = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    JobError::Transient(format!("panicked: {msg}"))
}

/// Runs `specs` until `signal` resolves; then in-flight jobs get the queue's shutdown timeout
/// to finish, unstarted ones are handed back without an attempt, and every outcome is written
/// before this returns. Worker names are `<queue>-<pid>-<random>-<run>`.
pub async fn run_workers<Ctx, S>(
    queue: &Queue,
    registry: Arc<Registry<Ctx>>,
    ctx: Ctx,
    specs: &[WorkerSpec],
    signal: S,
) -> Result<(), QueueError>
where
    Ctx: Clone + Send + Sync + 'static,
    S: Future<Output = ()> + Send,
{
    for s in specs {
        if !registry.queues().contains(&s.queue.as_str()) {
            return Err(QueueError::Invalid(format!(
                "no job kind runs on queue {:?}; queues are {:?}",
                s.queue,
                registry.queues()
            )));
        }
    }
    let instance = format!(
        "{}-{:06x}",
        std::process::id(),
        rand::random::<u32>() & 0xff_ffff
    );
    let mut monitor = Monitor::new()
        .should_restart(|w, e| {
            tracing::warn!(worker = w.name(), error = %e, "worker failed; restarting");
            true
        })
        .shutdown_timeout(queue.config().shutdown_timeout());
    for spec in specs {
        let (q, reg, ctx) = (queue.clone(), registry.clone(), ctx.clone());
        let (name, concurrency) = (spec.queue.clone(), spec.concurrency.max(1));
        let instance = instance.clone();
        monitor = monitor.register(move |run| {
            WorkerBuilder::new(format!("{name}-{instance}-{run}"))
                .backend(q.backend(&name, concurrency))
                .concurrency(concurrency)
                // The completer logs each failure once, with what it led to.
                .layer(
                    TraceLayer::new()
                        .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
                )
                .layer(CatchPanicLayer::with_panic_handler(
                    panicked as fn(&Box<dyn Any + Send>) -> JobError,
                ))
                .build(reg.dispatcher(ctx.clone()))
        });
        tracing::info!(queue = spec.queue, concurrency, "worker started");
    }
    let result = monitor
        .run_with_signal(async {
            signal.await;
            Ok(())
        })
        .await;
    queue.shutdown().await;
    result.map_err(|e| QueueError::Invalid(format!("the workers failed: {e}")))
}
