//! `Group.objects.update_group_status` (Sentry): bulk status change with an Activity and a
//! GroupHistory row per group that actually changed. It never enqueues outbound syncs: an
//! inbound status change is pushed to no integration (the ping-pong guard for status).

use serde_json::Value;

use super::assign::{GroupRef, write_history};
use super::types::history;
use crate::db::Tx;
use crate::store::{StoreError, groups};

/// A status to set, and how to record it.
pub struct StatusUpdate<'a> {
    pub status: i32,
    pub substatus: Option<i32>,
    pub activity_type: i32,
    pub activity_data: &'a Value,
    pub acting_user: Option<i64>,
    /// Set by manual resolves; inbound resolves leave it alone, as in Sentry.
    pub resolved_at: Option<i64>,
}

/// Sets the status on each group not already there; returns the groups changed.
pub async fn update_group_status(
    tx: &mut Tx,
    targets: &[GroupRef],
    u: &StatusUpdate<'_>,
) -> Result<Vec<i64>, StoreError> {
    let now = crate::now_ms();
    let mut changed = Vec::new();
    for g in targets {
        if !groups::set_group_status(tx, g.group_id, u.status, u.substatus, u.resolved_at).await? {
            continue;
        }
        groups::insert_activity(
            tx,
            g.project_id,
            g.group_id,
            u.activity_type,
            u.acting_user,
            u.activity_data,
            now,
        )
        .await?;
        if let Some(h) = history::from_activity(u.activity_type) {
            write_history(tx, *g, h, u.acting_user, now).await?;
        }
        changed.push(g.group_id);
    }
    Ok(changed)
}
