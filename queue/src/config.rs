//! The queue's tuning keys (see docs/queue.md for what each one trades).

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct QueueConfig {
    /// How often a worker process writes its workers' heartbeat and looks for dead ones.
    pub heartbeat_ms: u64,
    /// A worker silent for this many heartbeats is dead (on Postgres a crashed process is
    /// found sooner: its listener session is gone).
    pub missed_heartbeats: u32,
    /// Safety-net poll of an idle worker (Postgres wakes workers with LISTEN/NOTIFY, SQLite
    /// with its update hook in this process).
    pub poll_interval_ms_postgres: u64,
    pub poll_interval_ms_sqlite: u64,
    /// A worker fetches, in one statement, as many jobs as it has free slots; with a value
    /// above its concurrency it holds up to this many (running and fetched), the prefetch
    /// bound. Prefetched jobs are handed back without an attempt at shutdown.
    pub fetch_batch_size: usize,
    /// Retry delay: base × 2^(attempt − 1) × a jitter in [0.75, 1], capped.
    pub backoff_base_ms: u64,
    pub backoff_max_secs: u64,
    /// In-flight jobs get this long after a shutdown signal.
    pub shutdown_timeout_secs: u64,
    /// Most outcomes written in one transaction by the batch completer.
    pub completion_batch: usize,
    /// How long the completer waits for more outcomes before it writes a batch.
    pub completion_linger_ms: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            heartbeat_ms: 5000,
            missed_heartbeats: 4,
            poll_interval_ms_postgres: 500,
            poll_interval_ms_sqlite: 50,
            fetch_batch_size: 1,
            backoff_base_ms: 5000,
            backoff_max_secs: 3600,
            shutdown_timeout_secs: 30,
            completion_batch: 512,
            completion_linger_ms: 5,
        }
    }
}

impl QueueConfig {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.max(1))
    }

    /// How long a silent worker is taken for alive.
    pub fn stale_after(&self) -> Duration {
        self.heartbeat() * self.missed_heartbeats.max(1)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    pub(crate) fn poll_interval(&self, postgres: bool) -> Duration {
        Duration::from_millis(if postgres {
            self.poll_interval_ms_postgres
        } else {
            self.poll_interval_ms_sqlite
        })
        .max(Duration::from_millis(1))
    }

    /// Retry delay after attempt `attempt` (1-based): exponential, capped, with jitter in
    /// [0.75, 1] so that successive delays always grow and a burst of failures spreads out.
    pub fn backoff(&self, attempt: i32) -> Duration {
        use rand::Rng;
        let exp = 2u64.saturating_pow(attempt.saturating_sub(1).clamp(0, 30) as u32);
        let ms = self
            .backoff_base_ms
            .saturating_mul(exp)
            .min(self.backoff_max_secs.saturating_mul(1000));
        let jitter = rand::rng().random_range(0.75..=1.0);
        Duration::from_millis((ms as f64 * jitter) as u64)
    }
}
