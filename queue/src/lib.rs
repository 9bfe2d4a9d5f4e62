//! The job queue of issuesync: our own tables on PostgreSQL and SQLite, run by apalis'
//! worker through our [`QueueBackend`], with one [`Registry`] of job kinds.
//!
//! - Producers enqueue typed jobs from the `issuesync-jobs` crate inside their own
//!   transaction: [`enqueue`], [`enqueue_at`], [`enqueue_with_id`]; the receiver's one-statement
//!   insert on Postgres uses [`pg_enqueue_after!`] and [`AfterInsert`].
//! - A worker process builds one [`Queue`] and runs its workers with [`run_workers`], which
//!   dispatches each job to the handler registered for its kind ([`RunJob`]).
//! - Operators use [`admin`].
//!
//! See docs/queue.md for the states, the guarantees and the tuning keys.

pub mod admin;
pub mod db;
pub mod from_apalis;

mod ack;
mod backend;
mod config;
mod enqueue;
mod error;
mod listener;
mod model;
mod registry;
mod runner;
mod runtime;
mod storage;

pub use ack::Acker;
pub use backend::{FetchedJob, QueueBackend};
pub use config::QueueConfig;
pub use db::{Db, Tx};
pub use enqueue::{AfterInsert, NewJob, enqueue, enqueue_at, enqueue_job, enqueue_with_id};
pub use error::{JobError, QueueError};
pub use model::{
    AttemptRow, BucketCount, Enqueued, JobRow, OutcomeCount, QueueCount, ReasonCount, Shown, State,
    WorkerRow,
};
pub use registry::{Dispatcher, JobMeta, KindInfo, Registry, RunJob};
pub use runner::{WorkerSpec, run_workers};
pub use runtime::Queue;
