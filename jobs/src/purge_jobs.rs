//! Retention: delete finished jobs older than the configured ages (scheduled hourly).
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PurgeJobs {
    /// The hour (epoch s / 3600) it was scheduled for; the dedup key, so every worker
    /// process can schedule it and it still runs once an hour.
    pub slot: i64,
}

impl crate::Job for PurgeJobs {
    const JOB_NAME: &'static str = "purge_jobs";
    const QUEUE: &'static str = crate::queues::MAINTENANCE;
    const MAX_ATTEMPTS: u32 = 3;
    const TIMEOUT_SECS: u64 = 300;
    fn dedup_key(&self) -> Option<String> {
        Some(format!("purge:{}", self.slot))
    }
}

#[test]
fn round_trip() {
    crate::round_trip(PurgeJobs { slot: 493_000 });
}
