//! Push a group's assignee to one linked external issue (Sentry's
//! `integrations.tasks.sync_assignee_outbound`).
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncAssigneeOutbound {
    pub external_issue_id: i64,
    /// The group whose assignee is pushed; the handler reads its current assignee, so a
    /// coalesced or late job never pushes a stale value.
    #[serde(default)]
    pub group_id: Option<i64>,
    pub user_id: Option<i64>,
    pub assign: bool,
    /// The integration the change came from; never pushed back to it.
    #[serde(default)]
    pub source_integration_id: Option<i64>,
    /// Who asked for the change (our user), for the decision record; a coalesced job
    /// carries the latest intent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acting_user_id: Option<i64>,
}

impl crate::Job for SyncAssigneeOutbound {
    const JOB_NAME: &'static str = "sync_assignee_outbound";
    const QUEUE: &'static str = crate::queues::OUTBOUND;
    const MAX_ATTEMPTS: u32 = 6;
    const TIMEOUT_SECS: u64 = 120;
    const COALESCE: bool = true;
    fn dedup_key(&self) -> Option<String> {
        Some(format!("assignee:{}", self.external_issue_id))
    }
}

#[test]
fn round_trip() {
    crate::round_trip(SyncAssigneeOutbound {
        external_issue_id: 3,
        group_id: Some(4),
        user_id: Some(7),
        assign: true,
        source_integration_id: Some(1),
        acting_user_id: Some(2),
    });
}
