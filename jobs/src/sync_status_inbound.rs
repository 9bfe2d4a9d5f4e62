//! A provider changed an issue's status: resolve or unresolve the linked groups (Sentry's
//! `integrations.tasks.sync_status_inbound`).
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncStatusInbound {
    pub integration_id: i64,
    pub organization_id: i64,
    pub issue_key: String,
    /// Provider-specific change: ADO `{new_state, old_state, project}`, Jira `{changelog, issue}`.
    pub data: serde_json::Value,
    /// The event's place in the issue's order (ADO `rev`, Jira `timestamp`): applied only
    /// when no newer status event of the issue was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<i64>,
    /// The stored delivery the change came in, for the decision record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<i64>,
    /// Who made the change at the provider, for the decision record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

impl crate::Job for SyncStatusInbound {
    const JOB_NAME: &'static str = "sync_status_inbound";
    const QUEUE: &'static str = crate::queues::INBOUND;
    const MAX_ATTEMPTS: u32 = 6;
    fn partition_key(&self) -> Option<String> {
        Some(format!("integration:{}", self.integration_id))
    }
}

#[test]
fn round_trip() {
    crate::round_trip(SyncStatusInbound {
        integration_id: 1,
        organization_id: 2,
        issue_key: "31".into(),
        data: serde_json::json!({"new_state": "Resolved", "old_state": "Active", "project": "p"}),
        sequence: Some(4),
        delivery_id: None,
        actor: None,
    });
}
