//! The one function every status or assignee change goes through (the admin API, Discord,
//! the main product's status intents, regressions): Sentry's `update_groups` /
//! `handle_assigned_to`. It writes the change with its activity and history, and in the same
//! transaction enqueues the outbound syncs, so every path syncs.

use issuesync_jobs::sync_status_outbound::SyncStatusOutbound;
use serde_json::{Value, json};

use super::decision;
use crate::db::Tx;
use crate::domain::assign::{self, Actor, Effects, GroupRef, OutboundNote, OutboundNoted};
use crate::domain::status::{StatusUpdate, update_group_status};
use crate::domain::types::{activity, group_status, subscription_reason, substatus};
use crate::store::enqueue::enqueue;
use crate::store::jobs::Enqueued;
use crate::store::{StoreError, external, groups, projects};
use crate::sync::Services;

/// A requested status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusIntent {
    Resolved,
    /// `ongoing` by default; `regressed` for a regression.
    Unresolved {
        regressed: bool,
    },
    /// Archived until escalating by default, or forever.
    Ignored {
        forever: bool,
    },
}

/// A requested change: status and/or assignee (`Some(None)` unassigns).
#[derive(Debug, Clone, Default)]
pub struct GroupChange {
    pub status: Option<StatusIntent>,
    pub assigned_to: Option<Option<Actor>>,
}

/// Who asked.
#[derive(Debug, Clone, Default)]
pub struct ChangeSource {
    pub acting_user: Option<i64>,
    /// e.g. "discord": written into the activity data.
    pub integration: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("no such group")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    /// The assignee is not a member (user) or not a team of the group's organization.
    #[error("{0}")]
    UnknownAssignee(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ChangeError {
    fn from(e: sqlx::Error) -> Self {
        ChangeError::Store(e.into())
    }
}

/// Applies `change` to group `group_id` and enqueues the outbound syncs, in one transaction.
pub async fn apply_group_change(
    state: &Services,
    group_id: i64,
    change: &GroupChange,
    source: &ChangeSource,
) -> Result<(), ChangeError> {
    let mut tx = state.db.begin_write().await?;
    let effects = apply_group_change_in(&mut tx, group_id, change, source).await?;
    tx.commit().await?;
    crate::sync::inbound::after_commit(state, effects).await;
    Ok(())
}

/// [`apply_group_change`] inside the caller's transaction (which also holds, say, the
/// delivery row of a Discord interaction), with the sync decisions it made about outbound
/// pushes. The caller hands `Effects` to `after_commit` after the commit.
pub async fn apply_group_change_in(
    tx: &mut Tx,
    group_id: i64,
    change: &GroupChange,
    source: &ChangeSource,
) -> Result<Effects, ChangeError> {
    let g = group_ref(tx, group_id)
        .await?
        .ok_or(ChangeError::NotFound)?;
    let extra = match &source.integration {
        Some(i) => json!({"integration": i}),
        None => json!({}),
    };
    let mut effects = Effects::default();
    if let Some(to) = change.assigned_to {
        match to {
            Some(actor) => {
                check_assignable(tx, g, actor).await?;
                assign::assign(tx, g, actor, source.acting_user, &extra, None, &mut effects)
                    .await?;
            }
            None => {
                assign::deassign(tx, g, source.acting_user, None, &mut effects).await?;
            }
        }
    }
    if let Some(status) = change.status {
        apply_status(tx, g, status, source, &extra, &mut effects).await?;
    }
    let about = decision::About {
        actor_user_id: source.acting_user,
        ..Default::default()
    };
    decision::record_outbound_notes(tx, &about, &mut effects).await?;
    Ok(effects)
}

/// The group with its project and organization; None when either is gone.
pub async fn group_ref(tx: &mut Tx, group_id: i64) -> Result<Option<GroupRef>, StoreError> {
    let Some(group) = groups::find_group(tx, group_id).await? else {
        return Ok(None);
    };
    let Some(project) = projects::find_project(tx, group.project_id).await? else {
        return Ok(None);
    };
    Ok(Some(GroupRef {
        group_id,
        project_id: group.project_id,
        organization_id: project.organization_id,
    }))
}

/// The assignee must belong to the group's organization.
async fn check_assignable(tx: &mut Tx, g: GroupRef, actor: Actor) -> Result<(), ChangeError> {
    match actor {
        Actor::User(u) => {
            if crate::store::teams::find_member_by_user(tx, g.organization_id, u)
                .await?
                .is_none()
            {
                return Err(ChangeError::UnknownAssignee(format!(
                    "user {u} is not a member of the group's organization"
                )));
            }
        }
        Actor::Team(t) => {
            if crate::store::teams::find_team(tx, t)
                .await?
                .is_none_or(|team| team.organization_id != g.organization_id)
            {
                return Err(ChangeError::UnknownAssignee(format!(
                    "team {t} is not in the group's organization"
                )));
            }
        }
    }
    Ok(())
}

async fn apply_status(
    tx: &mut Tx,
    g: GroupRef,
    status: StatusIntent,
    source: &ChangeSource,
    extra: &Value,
    effects: &mut Effects,
) -> Result<(), ChangeError> {
    let now = crate::now_ms();
    let (status_value, sub, kind, resolved_at, sync) = match status {
        StatusIntent::Resolved => (
            group_status::RESOLVED,
            None,
            activity::SET_RESOLVED,
            Some(now),
            true,
        ),
        StatusIntent::Unresolved { regressed: false } => (
            group_status::UNRESOLVED,
            Some(substatus::ONGOING),
            activity::SET_UNRESOLVED,
            None,
            true,
        ),
        StatusIntent::Unresolved { regressed: true } => (
            group_status::UNRESOLVED,
            Some(substatus::REGRESSED),
            activity::SET_REGRESSION,
            None,
            true,
        ),
        StatusIntent::Ignored { forever } => {
            let sub = if forever {
                substatus::FOREVER
            } else {
                substatus::UNTIL_ESCALATING
            };
            (
                group_status::IGNORED,
                Some(sub),
                activity::SET_IGNORED,
                None,
                false,
            )
        }
    };
    let update = StatusUpdate {
        status: status_value,
        substatus: sub,
        activity_type: kind,
        activity_data: extra,
        acting_user: source.acting_user,
        resolved_at,
    };
    let changed = update_group_status(tx, &[g], &update).await?;
    if !changed.is_empty()
        && let Some(u) = source.acting_user
    {
        groups::subscribe_user(
            tx,
            g.project_id,
            g.group_id,
            u,
            subscription_reason::STATUS_CHANGE,
            now,
        )
        .await?;
    }
    // kick_off_status_syncs: resolve and unresolve (regressions included), never ignore.
    for issue in external::list_group_external_issues(tx, g.group_id).await? {
        let note = if sync {
            let job = SyncStatusOutbound {
                group_id: g.group_id,
                external_issue_id: issue.id,
                acting_user_id: source.acting_user,
            };
            // A coalescing kind: a duplicate is a waiting job that took this payload.
            match enqueue(tx, &job).await? {
                Enqueued::New(_) => continue,
                Enqueued::Duplicate(job_id) => OutboundNote::Coalesced { job_id },
            }
        } else {
            OutboundNote::GroupArchived
        };
        effects.outbound.push(OutboundNoted {
            group: g,
            issue,
            field: decision::STATUS,
            note,
            acting_user: source.acting_user,
        });
    }
    Ok(())
}
