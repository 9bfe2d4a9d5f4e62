//! A verified webhook delivery was stored; parse it and fan out to the sync jobs.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessWebhook {
    /// `webhook_deliveries.id`.
    pub delivery_id: i64,
}

impl ProcessWebhook {
    /// Its dedup key is this followed by the delivery id.
    pub const DEDUP_PREFIX: &'static str = "delivery:";
}

impl crate::Job for ProcessWebhook {
    const JOB_NAME: &'static str = "process_webhook";
    const QUEUE: &'static str = crate::queues::WEBHOOKS;
    const MAX_ATTEMPTS: u32 = 8;
    const TIMEOUT_SECS: u64 = 60;
    fn dedup_key(&self) -> Option<String> {
        Some(format!("{}{}", Self::DEDUP_PREFIX, self.delivery_id))
    }
}

#[test]
fn round_trip() {
    crate::round_trip(ProcessWebhook { delivery_id: 42 });
}
