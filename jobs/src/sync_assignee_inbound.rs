//! A provider changed an issue's assignee: apply it to the linked groups (Sentry's
//! `sync_group_assignee_inbound`).
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncAssigneeInbound {
    pub integration_id: i64,
    pub external_issue_key: String,
    /// The new assignee's email; `None` with `assign = false` unassigns.
    pub email: Option<String>,
    pub assign: bool,
    /// The event's place in the issue's order (ADO `rev`, Jira `timestamp`): applied only
    /// when no newer assignee event of the issue was applied (older payloads: `event_time_ms`).
    #[serde(
        default,
        alias = "event_time_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub sequence: Option<i64>,
    /// The stored delivery the change came in, for the decision record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<i64>,
    /// Who made the change at the provider (account id / name), for the decision record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

impl crate::Job for SyncAssigneeInbound {
    const JOB_NAME: &'static str = "sync_assignee_inbound";
    const QUEUE: &'static str = crate::queues::INBOUND;
    const MAX_ATTEMPTS: u32 = 6;
    fn partition_key(&self) -> Option<String> {
        Some(format!("integration:{}", self.integration_id))
    }
}

#[test]
fn round_trip() {
    crate::round_trip(SyncAssigneeInbound {
        integration_id: 1,
        external_issue_key: "APP-1".into(),
        email: Some("bob@example.org".into()),
        assign: true,
        sequence: Some(7),
        delivery_id: Some(3),
        actor: Some("bob".into()),
    });
}

#[test]
fn older_payloads_still_decode() {
    let old: SyncAssigneeInbound = serde_json::from_value(serde_json::json!({
        "integration_id": 1, "external_issue_key": "APP-1", "email": null, "assign": false,
        "event_time_ms": 5}))
    .expect("decode");
    assert_eq!(old.sequence, Some(5));
    assert_eq!(old.delivery_id, None);
}
