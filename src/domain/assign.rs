//! `GroupAssignee.assign` / `deassign` / `remove_old_assignees` (Sentry's
//! `models/groupassignee.py`), inside the caller's transaction. Cache invalidation happens
//! after commit, so it is returned as work for the caller ([`Effects`]).

use serde_json::{Value, json};

use super::types::{activity, history, subscription_reason};
use crate::db::Tx;
use crate::store::enqueue::enqueue;
use crate::store::groups::{self, Assignee, NewHistory};
use crate::store::jobs::Enqueued;
use crate::store::{StoreError, external, teams, users};

/// Who a group is assigned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    User(i64),
    Team(i64),
}

impl Actor {
    fn columns(self) -> (Option<i64>, Option<i64>) {
        match self {
            Actor::User(u) => (Some(u), None),
            Actor::Team(t) => (None, Some(t)),
        }
    }

    /// Parses `user:ID` / `team:ID` (the admin API's `assignedTo`, Discord's select values).
    pub fn parse(s: &str) -> Option<Actor> {
        let (kind, id) = s.split_once(':')?;
        let id: i64 = id.parse().ok()?;
        match kind {
            "user" => Some(Actor::User(id)),
            "team" => Some(Actor::Team(id)),
            _ => None,
        }
    }

    pub fn of(a: &Assignee) -> Option<Actor> {
        match (a.user_id, a.team_id) {
            (Some(u), _) => Some(Actor::User(u)),
            (_, Some(t)) => Some(Actor::Team(t)),
            _ => None,
        }
    }
}

/// The group the change applies to.
#[derive(Debug, Clone, Copy)]
pub struct GroupRef {
    pub group_id: i64,
    pub project_id: i64,
    pub organization_id: i64,
}

/// What a change did about the outbound push of one linked external issue, when that was
/// decided at the time of the change rather than by a job: the sync layer records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundNote {
    /// Not pushed back to the integration the change came from.
    SourceIntegration,
    /// A team assignment is not pushed.
    TeamAssignee,
    /// A waiting outbound job of the issue (this id) takes the change instead.
    Coalesced { job_id: String },
    /// Archiving is not pushed.
    GroupArchived,
}

/// An [`OutboundNote`] about one external issue of a group.
#[derive(Debug, Clone)]
pub struct OutboundNoted {
    pub group: GroupRef,
    pub issue: external::ExternalIssue,
    /// `status` or `assignee`.
    pub field: &'static str,
    pub note: OutboundNote,
    pub acting_user: Option<i64>,
}

/// Work to do after the transaction commits, and what the sync layer records about it.
#[derive(Debug, Default)]
pub struct Effects {
    /// Groups whose `assignee_exists`/`owner_exists` keys must be deleted.
    pub invalidate_groups: Vec<i64>,
    /// Outbound pushes decided at change time (recorded as sync decisions in the same
    /// transaction, then drained).
    pub outbound: Vec<OutboundNoted>,
    /// Labels (direction, field, outcome, reason) of the sync decisions written in the
    /// transaction, counted once it committed.
    pub decisions: Vec<[&'static str; 4]>,
}

impl Effects {
    pub fn merge(&mut self, other: Effects) {
        self.invalidate_groups.extend(other.invalidate_groups);
        self.outbound.extend(other.outbound);
        self.decisions.extend(other.decisions);
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct AssignResult {
    pub new_assignment: bool,
    pub updated_assignment: bool,
    /// The assignee before the call.
    pub previous: Option<Actor>,
}

/// Assigns a group to a user or team. Re-assigning the current assignee changes nothing.
/// `source_integration` is the integration the change came from: it is never pushed back.
pub async fn assign(
    tx: &mut Tx,
    g: GroupRef,
    to: Actor,
    acting_user: Option<i64>,
    extra: &Value,
    source_integration: Option<i64>,
    effects: &mut Effects,
) -> Result<AssignResult, StoreError> {
    let now = crate::now_ms();
    subscribe_actor(tx, g, to, now).await?;
    let (user_id, team_id) = to.columns();
    let upsert =
        groups::upsert_assignee(tx, g.project_id, g.group_id, user_id, team_id, now).await?;
    let created = upsert.previous.is_none();
    let previous_actor = upsert.previous.and_then(|(u, t)| match (u, t) {
        (Some(u), _) => Some(Actor::User(u)),
        (_, Some(t)) => Some(Actor::Team(t)),
        _ => None,
    });
    if !upsert.changed {
        return Ok(AssignResult {
            previous: previous_actor,
            ..Default::default()
        });
    }
    let (id, kind, email) = match to {
        Actor::User(u) => (u, "user", primary_email(tx, u).await?),
        Actor::Team(t) => (t, "team", None),
    };
    let mut data =
        json!({"assignee": id.to_string(), "assigneeEmail": email, "assigneeType": kind});
    if let (Some(d), Some(e)) = (data.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    groups::insert_activity(
        tx,
        g.project_id,
        g.group_id,
        activity::ASSIGNED,
        acting_user,
        &data,
        now,
    )
    .await?;
    write_history(tx, g, history::ASSIGNED, acting_user, now).await?;
    let push = Push {
        source: source_integration,
        acting_user,
    };
    match to {
        Actor::User(u) => enqueue_outbound_assignee(tx, g, Some(u), true, push, effects).await?,
        Actor::Team(_) => note_team_assignment(tx, g, push, effects).await?,
    }
    if let Some(prev) = previous_actor {
        remove_old_assignees(tx, g, prev, Some(to)).await?;
    }
    // An improvement on Sentry, which leaves a 60 s negative cache stale on assign.
    effects.invalidate_groups.push(g.group_id);
    Ok(AssignResult {
        new_assignment: created,
        updated_assignment: !created,
        previous: previous_actor,
    })
}

/// Removes a group's assignee; returns the one removed (None when there was none).
pub async fn deassign(
    tx: &mut Tx,
    g: GroupRef,
    acting_user: Option<i64>,
    source_integration: Option<i64>,
    effects: &mut Effects,
) -> Result<Option<Actor>, StoreError> {
    let now = crate::now_ms();
    let previous = groups::find_assignee(tx, g.group_id).await?;
    if groups::delete_assignee(tx, g.group_id).await? == 0 {
        return Ok(None);
    }
    groups::insert_activity(
        tx,
        g.project_id,
        g.group_id,
        activity::UNASSIGNED,
        acting_user,
        &json!({}),
        now,
    )
    .await?;
    write_history(tx, g, history::UNASSIGNED, acting_user, now).await?;
    effects.invalidate_groups.push(g.group_id);
    let push = Push {
        source: source_integration,
        acting_user,
    };
    enqueue_outbound_assignee(tx, g, None, false, push, effects).await?;
    let previous = previous.as_ref().and_then(Actor::of);
    if let Some(prev) = previous {
        remove_old_assignees(tx, g, prev, None).await?;
    }
    Ok(previous)
}

/// Drops the "assigned" subscriptions of the previous assignee (as Sentry's
/// `remove_old_assignees`), keeping a user's when the new assignee is a team containing them
/// (and the new user's when the old team contained them).
pub async fn remove_old_assignees(
    tx: &mut Tx,
    g: GroupRef,
    previous: Actor,
    new: Option<Actor>,
) -> Result<(), StoreError> {
    let mut users: Vec<i64> = match previous {
        Actor::Team(t) => teams::list_team_user_ids(tx, t).await?,
        Actor::User(u) => vec![u],
    };
    match (previous, new) {
        (Actor::Team(_), Some(Actor::User(nu))) => users.retain(|u| *u != nu),
        (Actor::User(pu), Some(Actor::Team(nt)))
            if teams::list_team_user_ids(tx, nt).await?.contains(&pu) =>
        {
            return Ok(());
        }
        (Actor::User(pu), Some(Actor::User(nu))) if pu == nu => return Ok(()),
        _ => {}
    }
    for u in &users {
        tracing::info!(group_id = g.group_id, user_id = u, "groupassignee.remove");
    }
    groups::unsubscribe_users(tx, g.group_id, &users, subscription_reason::ASSIGNED).await?;
    Ok(())
}

/// User → their subscription; team → every member's (the team-workflow flag is off).
async fn subscribe_actor(tx: &mut Tx, g: GroupRef, to: Actor, now: i64) -> Result<(), StoreError> {
    let users = match to {
        Actor::User(u) => vec![u],
        Actor::Team(t) => teams::list_team_user_ids(tx, t).await?,
    };
    for u in users {
        groups::subscribe_user(
            tx,
            g.project_id,
            g.group_id,
            u,
            subscription_reason::ASSIGNED,
            now,
        )
        .await?;
    }
    Ok(())
}

async fn primary_email(tx: &mut Tx, user_id: i64) -> Result<Option<String>, StoreError> {
    let emails = users::list_user_emails(tx, user_id).await?;
    Ok(emails
        .iter()
        .find(|e| e.is_verified)
        .or(emails.first())
        .map(|e| e.email.clone()))
}

/// A GroupHistory row linked to the latest row of the inverse status.
pub async fn write_history(
    tx: &mut Tx,
    g: GroupRef,
    status: i32,
    acting_user: Option<i64>,
    now: i64,
) -> Result<(), StoreError> {
    let prev = groups::find_latest_history(tx, g.group_id, history::inverse(status)).await?;
    groups::insert_history(
        tx,
        &NewHistory {
            organization_id: g.organization_id,
            group_id: g.group_id,
            project_id: g.project_id,
            user_id: acting_user,
            team_id: None,
            status,
            prev,
        },
        now,
    )
    .await
}

/// Where an assignee change came from, for its outbound pushes.
#[derive(Debug, Clone, Copy)]
struct Push {
    /// The integration it came from: never pushed back there.
    source: Option<i64>,
    acting_user: Option<i64>,
}

fn note(
    effects: &mut Effects,
    g: GroupRef,
    issue: external::ExternalIssue,
    note: OutboundNote,
    acting_user: Option<i64>,
) {
    effects.outbound.push(OutboundNoted {
        group: g,
        issue,
        field: "assignee",
        note,
        acting_user,
    });
}

/// One `sync_assignee_outbound` per linked external issue, except those of the integration
/// the change came from (the ping-pong guard, Sentry's `AssignmentSource`).
async fn enqueue_outbound_assignee(
    tx: &mut Tx,
    g: GroupRef,
    user_id: Option<i64>,
    assign: bool,
    push: Push,
    effects: &mut Effects,
) -> Result<(), StoreError> {
    for issue in external::list_group_external_issues(tx, g.group_id).await? {
        if Some(issue.integration_id) == push.source {
            note(
                effects,
                g,
                issue,
                OutboundNote::SourceIntegration,
                push.acting_user,
            );
            continue;
        }
        let job = issuesync_jobs::sync_assignee_outbound::SyncAssigneeOutbound {
            external_issue_id: issue.id,
            group_id: Some(g.group_id),
            user_id,
            assign,
            source_integration_id: push.source,
            acting_user_id: push.acting_user,
        };
        // A coalescing kind: a duplicate is a waiting job that took this payload.
        if let Enqueued::Duplicate(job_id) = enqueue(tx, &job).await? {
            note(
                effects,
                g,
                issue,
                OutboundNote::Coalesced { job_id },
                push.acting_user,
            );
        }
    }
    Ok(())
}

/// A team assignment pushes nothing; each linked issue (but the source's) notes why.
async fn note_team_assignment(
    tx: &mut Tx,
    g: GroupRef,
    push: Push,
    effects: &mut Effects,
) -> Result<(), StoreError> {
    for issue in external::list_group_external_issues(tx, g.group_id).await? {
        let why = if Some(issue.integration_id) == push.source {
            OutboundNote::SourceIntegration
        } else {
            OutboundNote::TeamAssignee
        };
        note(effects, g, issue, why, push.acting_user);
    }
    Ok(())
}
