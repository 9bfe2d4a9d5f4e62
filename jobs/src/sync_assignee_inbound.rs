//! A provider changed an issue's assignee: apply it to the linked groups (spec §5.1).
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncAssigneeInbound {
    pub integration_id: i64,
    pub external_issue_key: String,
    /// The new assignee's email; `None` with `assign = false` unassigns.
    pub email: Option<String>,
    pub assign: bool,
    /// Provider event time (ms), for the ordered-assignment guard.
    #[serde(default)]
    pub event_time_ms: Option<i64>,
}

impl crate::Job for SyncAssigneeInbound {
    const JOB_NAME: &'static str = "sync_assignee_inbound";
    const QUEUE: &'static str = crate::queues::INBOUND;
    const MAX_ATTEMPTS: u32 = 6;
}

#[test]
fn round_trip() {
    crate::round_trip(SyncAssigneeInbound {
        integration_id: 1,
        external_issue_key: "APP-1".into(),
        email: Some("bob@example.org".into()),
        assign: true,
        event_time_ms: None,
    });
}
