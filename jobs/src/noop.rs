//! A diagnostic job: does nothing, or fails in a chosen way. Used by the benchmark harness,
//! the reliability scenarios and operators checking that workers are alive.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    #[default]
    Succeed,
    /// Fails with a transient error (retried with backoff).
    FailTransient,
    /// Fails with a permanent error (dead at once).
    FailPermanent,
    /// Rate-limited: snoozed for `retry_after_secs` without using an attempt.
    RateLimited,
    /// Panics.
    Panic,
    /// Fails transiently until the given attempt, then succeeds.
    FailUntilAttempt(u32),
    /// Rate-limited until the given snooze count, then succeeds.
    RateLimitedTimes(u32),
    /// Allocates and touches memory until the process runs out (a poison job under a
    /// memory limit: the worker process dies with it). Gives up after 8 GiB.
    ExhaustMemory,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Noop {
    #[serde(default)]
    pub behaviour: Behaviour,
    /// Sleep this long before finishing.
    #[serde(default)]
    pub sleep_ms: u64,
    #[serde(default)]
    pub retry_after_secs: u64,
    /// When set, the run is recorded in `job_ledger` (committed before the job finishes), so
    /// tests can count executions, duplicates included.
    #[serde(default)]
    pub ledger: Option<String>,
    #[serde(default)]
    pub dedup: Option<String>,
}

impl Noop {
    /// Behaviours that take the worker process down with them: for the reliability suite,
    /// which enqueues them in-process, never for the admin API.
    pub fn harms_the_worker(&self) -> bool {
        matches!(self.behaviour, Behaviour::Panic | Behaviour::ExhaustMemory)
    }
}

impl crate::Job for Noop {
    const JOB_NAME: &'static str = "noop";
    const QUEUE: &'static str = crate::queues::MAINTENANCE;
    const MAX_ATTEMPTS: u32 = 3;
    const TIMEOUT_SECS: u64 = 30;
    fn dedup_key(&self) -> Option<String> {
        self.dedup.clone()
    }
}

#[test]
fn round_trip() {
    crate::round_trip(Noop {
        behaviour: Behaviour::FailUntilAttempt(2),
        sleep_ms: 5,
        retry_after_secs: 0,
        ledger: Some("x".into()),
        dedup: None,
    });
    crate::round_trip(Noop::default());
}
