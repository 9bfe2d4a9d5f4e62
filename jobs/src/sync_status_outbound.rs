//! Push a group's current status to one linked external issue (Sentry's
//! `integrations.tasks.sync_status_outbound`).
//! Coalesced: one pending job per external issue; it reads the group's status when it runs.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncStatusOutbound {
    pub group_id: i64,
    pub external_issue_id: i64,
    /// Who asked for the change (our user), for the decision record; a coalesced job
    /// carries the latest intent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acting_user_id: Option<i64>,
}

impl crate::Job for SyncStatusOutbound {
    const JOB_NAME: &'static str = "sync_status_outbound";
    const QUEUE: &'static str = crate::queues::OUTBOUND;
    const MAX_ATTEMPTS: u32 = 6;
    const TIMEOUT_SECS: u64 = 120;
    const COALESCE: bool = true;
    fn dedup_key(&self) -> Option<String> {
        Some(format!("status:{}", self.external_issue_id))
    }
}

#[test]
fn round_trip() {
    crate::round_trip(SyncStatusOutbound {
        group_id: 1,
        external_issue_id: 2,
        acting_user_id: None,
    });
}
