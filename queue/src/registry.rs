//! The one registry of job kinds. A kind is a payload type from the `jobs` crate (name,
//! queue, attempts, timeout, dedup, coalesce) plus its handler, [`RunJob`], implemented where
//! the context lives; `register::<J>()` needs both, so no kind exists without a handler. The
//! registry validates and enqueues untyped jobs (the admin API), and dispatches fetched ones.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::task::Task;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use issuesync_jobs::Job;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

use crate::backend::{FetchedJob, Lease};
use crate::db::Tx;
use crate::enqueue::{NewJob, enqueue_job};
use crate::error::{JobError, QueueError};
use crate::model::Enqueued;

/// The handler of a job kind, for a context `Ctx` (the app's state). Implemented in the crate
/// that has the context, for the payload type of the `jobs` crate.
pub trait RunJob<Ctx>: Job {
    fn run(self, ctx: &Ctx, job: &JobMeta) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// What a handler knows about the job it runs.
#[derive(Debug, Clone)]
pub struct JobMeta {
    pub id: String,
    pub kind: &'static str,
    pub queue: &'static str,
    /// 1 on the first attempt; snoozes do not count.
    pub attempt: i32,
    pub max_attempts: i32,
    pub snoozes: i32,
    pub partition_key: Option<String>,
    /// The W3C `traceparent` of the span that enqueued the job: the handler's span continues
    /// that trace.
    pub traceparent: Option<String>,
    pub worker: Arc<str>,
}

impl JobMeta {
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }
}

/// A kind's name, queue and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    pub name: &'static str,
    pub queue: &'static str,
    pub max_attempts: u32,
    pub timeout: Duration,
    pub coalesce: bool,
}

struct Call<Ctx> {
    payload: Vec<u8>,
    ctx: Ctx,
    meta: JobMeta,
}

struct Kind<Ctx> {
    info: KindInfo,
    /// Decodes untyped args as this kind and builds its row.
    prepare: fn(&serde_json::Value) -> Result<NewJob, QueueError>,
    /// The handler behind apalis' timeout layer (each kind has its own limit).
    run: BoxCloneSyncService<Call<Ctx>, (), BoxError>,
}

pub struct Registry<Ctx> {
    kinds: BTreeMap<&'static str, Kind<Ctx>>,
}

impl<Ctx: Clone + Send + Sync + 'static> Default for Registry<Ctx> {
    fn default() -> Self {
        Registry {
            kinds: BTreeMap::new(),
        }
    }
}

/// The payload as `J`; a payload that is not UTF-8, not JSON or does not fit is permanent.
fn decode<J: Job>(payload: &[u8]) -> Result<J, JobError> {
    serde_json::from_slice::<J>(payload).map_err(|e| {
        JobError::Permanent(match std::str::from_utf8(payload) {
            Err(u) => format!(
                "its payload is not UTF-8 (invalid byte at offset {})",
                u.valid_up_to()
            ),
            Ok(_) if serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_err() => {
                format!("its payload is not JSON: {e}")
            }
            Ok(_) => format!("its payload does not fit job kind {}: {e}", J::JOB_NAME),
        })
    })
}

fn prepare<J: Job>(args: &serde_json::Value) -> Result<NewJob, QueueError> {
    let job: J = J::deserialize(args)
        .map_err(|e| QueueError::Invalid(format!("bad args for {}: {e}", J::JOB_NAME)))?;
    NewJob::of(&job)
}

impl<Ctx: Clone + Send + Sync + 'static> Registry<Ctx> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers kind `J` with its handler. A second kind with the same name is a programming
    /// error, caught by the first test that builds the registry.
    pub fn register<J: RunJob<Ctx>>(mut self) -> Self {
        let info = KindInfo {
            name: J::JOB_NAME,
            queue: J::QUEUE,
            max_attempts: J::MAX_ATTEMPTS,
            timeout: Duration::from_secs(J::TIMEOUT_SECS),
            coalesce: J::COALESCE,
        };
        let run = ServiceBuilder::new()
            .layer(apalis::layers::TimeoutLayer::new(info.timeout))
            .service_fn(|call: Call<Ctx>| async move {
                let job = decode::<J>(&call.payload)?;
                job.run(&call.ctx, &call.meta).await
            });
        let kind = Kind {
            info,
            prepare: prepare::<J>,
            run: BoxCloneSyncService::new(run),
        };
        let name = J::JOB_NAME;
        assert!(
            self.kinds.insert(name, kind).is_none(),
            "job kind {name} is registered twice"
        );
        self
    }

    pub fn kind(&self, name: &str) -> Option<KindInfo> {
        self.kinds.get(name).map(|k| k.info)
    }

    pub fn kinds(&self) -> impl Iterator<Item = KindInfo> + '_ {
        self.kinds.values().map(|k| k.info)
    }

    /// The queues that have at least one kind.
    pub fn queues(&self) -> Vec<&'static str> {
        let mut q: Vec<&'static str> = self.kinds.values().map(|k| k.info.queue).collect();
        q.sort_unstable();
        q.dedup();
        q
    }

    /// The row for untyped args of `kind`: they must decode as that kind, and its dedup key,
    /// partition and coalescing come from the kind, as for a typed enqueue.
    pub fn prepare(&self, kind: &str, args: &serde_json::Value) -> Result<NewJob, QueueError> {
        let k = self.kinds.get(kind).ok_or_else(|| {
            QueueError::Invalid(format!(
                "unknown job kind {kind:?}; kinds are {}",
                self.names()
            ))
        })?;
        (k.prepare)(args)
    }

    /// Enqueues untyped args (the admin API): a coalescing kind coalesces, a keyed kind dedups.
    pub async fn enqueue_json(
        &self,
        tx: &mut Tx,
        kind: &str,
        args: &serde_json::Value,
        run_at: Option<DateTime<Utc>>,
    ) -> Result<Enqueued, QueueError> {
        enqueue_job(tx, self.prepare(kind, args)?.run_at(run_at)).await
    }

    /// The partition of a stored payload, when it decodes as its kind.
    pub fn partition_of(&self, kind: &str, payload: &[u8]) -> Option<String> {
        let k = self.kinds.get(kind)?;
        let args: serde_json::Value = serde_json::from_slice(payload).ok()?;
        (k.prepare)(&args).ok()?.partition_key
    }

    fn names(&self) -> String {
        self.kinds.keys().copied().collect::<Vec<_>>().join(", ")
    }

    /// Why a job of `kind` cannot run here.
    fn no_handler(&self, kind: &str) -> String {
        format!(
            "no handler for job kind {kind:?} (kinds are {})",
            self.names()
        )
    }

    /// Runs `payload` as a job of `kind` with `ctx`, under the kind's timeout: what the
    /// dispatcher does with a fetched job, for a worker that fetched it some other way.
    pub fn run(
        &self,
        kind: &str,
        payload: Vec<u8>,
        ctx: Ctx,
        meta: impl FnOnce(KindInfo) -> JobMeta,
    ) -> BoxFuture<'static, Result<(), JobError>> {
        let Some(kind) = self.kinds.get(kind) else {
            let reason = self.no_handler(kind);
            return Box::pin(async move { Err(JobError::Permanent(reason)) });
        };
        let timeout = kind.info.timeout;
        let call = Call {
            payload,
            ctx,
            meta: meta(kind.info),
        };
        let run = kind.run.clone();
        Box::pin(async move {
            run.oneshot(call)
                .await
                .map_err(|e| match e.downcast::<JobError>() {
                    Ok(e) => *e,
                    Err(e) if e.is::<tower::timeout::error::Elapsed>() => {
                        JobError::Transient(format!("timed out after {}s", timeout.as_secs()))
                    }
                    Err(e) => JobError::Transient(e.to_string()),
                })
        })
    }

    /// The apalis service that runs fetched jobs with `ctx`.
    pub fn dispatcher(self: &Arc<Self>, ctx: Ctx) -> Dispatcher<Ctx> {
        Dispatcher {
            registry: self.clone(),
            ctx,
        }
    }
}

/// Runs each fetched job with the handler of its kind. A row that cannot run (an id that
/// is not a ULID, text that is not UTF-8, an unknown kind, a payload that does not fit) ends
/// as a permanent error naming the problem: a dead job, never a stopped worker.
pub struct Dispatcher<Ctx> {
    registry: Arc<Registry<Ctx>>,
    ctx: Ctx,
}

impl<Ctx: Clone> Clone for Dispatcher<Ctx> {
    fn clone(&self) -> Self {
        Dispatcher {
            registry: self.registry.clone(),
            ctx: self.ctx.clone(),
        }
    }
}

impl<Ctx: Clone + Send + Sync + 'static> Service<Task<FetchedJob>> for Dispatcher<Ctx> {
    type Response = ();
    type Error = JobError;
    type Future = BoxFuture<'static, Result<(), JobError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: Task<FetchedJob>) -> Self::Future {
        let lease = task.ctx().data().get::<Lease>().cloned();
        let job = task.args.0;
        let worker = match &lease {
            Some(l) => {
                l.mark_started();
                l.worker.clone()
            }
            None => Arc::from("?"),
        };
        let bad = |reason: String| -> Self::Future {
            Box::pin(async move { Err(JobError::Permanent(reason)) })
        };
        if let Some(problem) = job.problem {
            return bad(format!("this row cannot run: {problem}"));
        }
        let id = job.lease.id;
        if ulid::Ulid::from_string(&id).is_err() {
            return bad(format!(
                "its id {id:?} is not a ULID (enqueue writes only ULIDs)"
            ));
        }
        if !self.registry.kinds.contains_key(job.kind.as_str()) {
            return bad(self.registry.no_handler(&job.kind));
        }
        let max_attempts = job.max_attempts;
        let attempt = job.attempts.saturating_add(1);
        if attempt > max_attempts {
            return bad(format!(
                "gave up: attempt {attempt} is past its limit of {max_attempts}"
            ));
        }
        self.registry
            .run(&job.kind, job.payload, self.ctx.clone(), |info| JobMeta {
                id,
                kind: info.name,
                queue: info.queue,
                attempt,
                max_attempts,
                snoozes: job.snoozes,
                partition_key: job.partition_key,
                traceparent: job.traceparent,
                worker,
            })
    }
}
