//! Inbound sync: the events of a delivery (fanned out by `process_webhook`, in
//! `sync::webhook`) change our groups. `sync_assignee_inbound` (Sentry's
//! `sync_group_assignee_inbound`) and `sync_status_inbound` (Sentry's task of that name)
//! apply them in event order, each field against its own
//! stored sequence, and write a sync decision for every group they touch or leave alone.

use std::collections::HashMap;

use issuesync_jobs::sync_assignee_inbound::SyncAssigneeInbound;
use issuesync_jobs::sync_status_inbound::SyncStatusInbound;
use serde_json::{Value, json};

use super::decision::{self, About, Reason};
use super::resolve::{ResolveAction, describe_change, resolve_action};
use super::{disabled_detail, off_detail, provider_name, switch};
use crate::db::Tx;
use crate::domain::assign::{self, Actor, Effects, GroupRef};
use crate::domain::status::{StatusUpdate, update_group_status};
use crate::domain::types::{activity, group_status, substatus};
use crate::store::decisions::NewDecision;
use crate::store::external::{self, AffectedGroup, SequenceClaim, SequenceField};
use crate::store::integrations::{self, Integration, OrganizationIntegration};
use crate::store::{projects, users};
use crate::sync::JobCtx;
use crate::sync::JobError;
use crate::sync::Services;

/// The integration, active or not (a disabled one's events are recorded as `sync_disabled`
/// by the caller); a missing one is a permanent error.
pub(super) async fn load_integration(state: &Services, id: i64) -> Result<Integration, JobError> {
    let mut tx = state.db.begin().await?;
    integrations::find_integration(&mut tx, id)
        .await?
        .ok_or_else(|| JobError::Permanent(format!("integration {id} does not exist")))
}

pub(super) fn is_disabled(i: &Integration) -> bool {
    i.status != integrations::STATUS_ACTIVE
}

/// `sync_disabled` for `field` of every group linked to `key` (the integration is
/// disabled), in a transaction of its own; the job is done.
async fn record_disabled(
    state: &Services,
    base: &About,
    integration_id: i64,
    key: &str,
    org: Option<i64>,
    field: &'static str,
) -> Result<(), JobError> {
    let groups = {
        let mut tx = state.db.begin().await?;
        external::groups_by_external_issue(&mut tx, integration_id, key).await?
    };
    let ds: Vec<NewDecision> = groups
        .iter()
        .filter(|g| org.is_none_or(|o| o == g.organization_id))
        .map(|g| {
            about(
                base,
                g,
                field,
                Reason::SyncDisabled,
                disabled_detail(integration_id),
            )
        })
        .collect();
    decision::write_alone(&state.db, ds).await?;
    tracing::info!(
        integration_id,
        key,
        "the integration is disabled; event dropped"
    );
    Ok(())
}

fn group_ref(g: &AffectedGroup) -> GroupRef {
    GroupRef {
        group_id: g.group_id,
        project_id: g.project_id,
        organization_id: g.organization_id,
    }
}

/// Installations of the integration keyed by organization.
pub(super) async fn installs(
    state: &Services,
    integration_id: i64,
) -> Result<HashMap<i64, OrganizationIntegration>, JobError> {
    let mut tx = state.db.begin().await?;
    Ok(
        integrations::list_organization_integrations(&mut tx, integration_id)
            .await?
            .into_iter()
            .map(|oi| (oi.organization_id, oi))
            .collect(),
    )
}

/// The event order guard for `field` of each affected group's external issue: the groups
/// whose issue took `seq` (or all, without a sequence), and a `stale_event` decision for the
/// others. Claims in external-issue id order, so concurrent jobs lock rows in one order.
async fn fresh_groups(
    tx: &mut Tx,
    effects: &mut Effects,
    base: &About,
    groups: Vec<AffectedGroup>,
    field: SequenceField,
    seq: Option<i64>,
) -> Result<Vec<AffectedGroup>, JobError> {
    let Some(seq) = seq else { return Ok(groups) };
    let mut issues: Vec<i64> = groups.iter().map(|g| g.external_issue_id).collect();
    issues.sort_unstable();
    issues.dedup();
    let mut stale = HashMap::new();
    for id in issues {
        if let SequenceClaim::Stale { stored } =
            external::claim_event_sequence(tx, id, field, seq).await?
        {
            stale.insert(id, stored);
        }
    }
    let name = match field {
        SequenceField::Assignee => decision::ASSIGNEE,
        SequenceField::Status => decision::STATUS,
    };
    let mut fresh = Vec::new();
    for g in groups {
        match stale.get(&g.external_issue_id) {
            None => fresh.push(g),
            Some(stored) => {
                let stored = stored.map_or("?".to_string(), |s| s.to_string());
                tracing::info!(group_id = g.group_id, seq, stored, "stale_event");
                let detail =
                    format!("event sequence {seq} is older than the applied {name} event {stored}");
                let d =
                    base.for_group(&g)
                        .decide(decision::INBOUND, name, Reason::StaleEvent, detail);
                decision::write(tx, effects, d).await?;
            }
        }
    }
    Ok(fresh)
}

/// What an inbound job's decisions share: the issue, the delivery, the job, the actor.
fn job_about(
    ctx: &JobCtx,
    integration_id: i64,
    key: &str,
    delivery_id: Option<i64>,
    actor: &Option<String>,
) -> About {
    About {
        integration_id: Some(integration_id),
        external_key: Some(key.to_string()),
        delivery_id,
        job_id: Some(ctx.job_id.clone()),
        actor: actor.clone(),
        ..Default::default()
    }
}

/// An inbound decision about group `g`.
fn about(
    base: &About,
    g: &AffectedGroup,
    field: &'static str,
    reason: Reason,
    detail: String,
) -> NewDecision {
    base.for_group(g)
        .decide(decision::INBOUND, field, reason, detail)
}

fn actor_value(a: Option<Actor>) -> Option<String> {
    match a {
        Some(Actor::User(u)) => decision::assignee_value(Some(u), None),
        Some(Actor::Team(t)) => decision::assignee_value(None, Some(t)),
        None => None,
    }
}

crate::handles!(SyncAssigneeInbound => sync_assignee_inbound);

/// Sentry's `sync_group_assignee_inbound`: assign the linked groups to the user with that
/// verified email who can see the project, or deassign them, in event order.
pub async fn sync_assignee_inbound(job: SyncAssigneeInbound, ctx: &JobCtx) -> Result<(), JobError> {
    let state = &ctx.state;
    let integration = load_integration(state, job.integration_id).await?;
    let installs = installs(state, integration.id).await?;
    let base = job_about(
        ctx,
        integration.id,
        &job.external_issue_key,
        job.delivery_id,
        &job.actor,
    );
    if is_disabled(&integration) {
        let key = &job.external_issue_key;
        return record_disabled(state, &base, integration.id, key, None, decision::ASSIGNEE).await;
    }
    let mut effects = Effects::default();
    let mut tx = state.db.begin_write().await?;
    let linked =
        external::groups_by_external_issue(&mut tx, integration.id, &job.external_issue_key)
            .await?;
    if linked.is_empty() {
        tracing::info!(
            integration_id = integration.id,
            issue = job.external_issue_key,
            assign = job.assign,
            "no-affected-groups"
        );
        return Ok(());
    }
    let (affected, off): (Vec<AffectedGroup>, Vec<AffectedGroup>) =
        linked.into_iter().partition(|g| {
            installs
                .get(&g.organization_id)
                .is_some_and(|oi| switch(oi, "sync_reverse_assignment"))
        });
    for g in &off {
        let oi = installs.get(&g.organization_id);
        let detail = off_detail(oi, "sync_reverse_assignment", g.organization_id);
        decision::write(
            &mut tx,
            &mut effects,
            about(&base, g, decision::ASSIGNEE, Reason::SyncDisabled, detail),
        )
        .await?;
    }
    let affected = fresh_groups(
        &mut tx,
        &mut effects,
        &base,
        affected,
        SequenceField::Assignee,
        job.sequence,
    )
    .await?;
    match (job.assign, job.email.as_deref()) {
        (false, _) => {
            for g in &affected {
                let removed = assign::deassign(
                    &mut tx,
                    group_ref(g),
                    None,
                    Some(integration.id),
                    &mut effects,
                )
                .await?;
                let (reason, detail) = match removed {
                    Some(_) => (Reason::Applied, "unassigned".to_string()),
                    None => (
                        Reason::AlreadyInState,
                        "the group had no assignee".to_string(),
                    ),
                };
                decision::write(
                    &mut tx,
                    &mut effects,
                    about(&base, g, decision::ASSIGNEE, reason, detail)
                        .values(actor_value(removed), None),
                )
                .await?;
            }
        }
        (true, None) => {
            let detail = format!(
                "the provider did not give the assignee's email{}",
                if integration.provider == "jira" {
                    " (Jira Cloud hides it unless the integration sets use_email_scope)"
                } else {
                    ""
                }
            );
            for g in &affected {
                decision::write(
                    &mut tx,
                    &mut effects,
                    about(
                        &base,
                        g,
                        decision::ASSIGNEE,
                        Reason::UserNotFound,
                        detail.clone(),
                    ),
                )
                .await?;
            }
        }
        (true, Some(email)) => {
            let users = users::find_users_by_verified_email(&mut tx, email).await?;
            let unverified =
                users.is_empty() && users::is_unverified_email_of_a_user(&mut tx, email).await?;
            for g in &affected {
                let mut chosen = None;
                for u in &users {
                    if projects::user_has_project(&mut tx, u.id, g.project_id).await? {
                        chosen = Some(u.id);
                        break;
                    }
                }
                let Some(uid) = chosen else {
                    tracing::info!(
                        group_id = g.group_id,
                        "sync_group_assignee_inbound._handle_assign.user_not_found"
                    );
                    let project = projects::find_project(&mut tx, g.project_id)
                        .await?
                        .map_or_else(|| g.project_id.to_string(), |p| p.slug);
                    let (reason, detail) = if !users.is_empty() {
                        (
                            Reason::UserNotInProject,
                            format!(
                                "the users with the verified email {email} are not members of a team of project {project}"
                            ),
                        )
                    } else if unverified {
                        (
                            Reason::EmailNotVerified,
                            format!(
                                "{email} is not a verified email of any member of project {project}"
                            ),
                        )
                    } else {
                        (
                            Reason::UserNotFound,
                            format!("no user has the email {email}"),
                        )
                    };
                    decision::write(
                        &mut tx,
                        &mut effects,
                        about(&base, g, decision::ASSIGNEE, reason, detail),
                    )
                    .await?;
                    continue;
                };
                tracing::info!(
                    group_id = g.group_id,
                    user_id = uid,
                    "sync_group_assignee_inbound._handle_assign.assigning.group"
                );
                let r = assign::assign(
                    &mut tx,
                    group_ref(g),
                    Actor::User(uid),
                    None,
                    &json!({}),
                    Some(integration.id),
                    &mut effects,
                )
                .await?;
                let changed = r.new_assignment || r.updated_assignment;
                let (reason, detail) = if changed {
                    (
                        Reason::Applied,
                        format!("assigned to the user with the verified email {email}"),
                    )
                } else {
                    (
                        Reason::AlreadyInState,
                        format!("already assigned to the user with {email}"),
                    )
                };
                let after = decision::assignee_value(Some(uid), None);
                decision::write(
                    &mut tx,
                    &mut effects,
                    about(&base, g, decision::ASSIGNEE, reason, detail)
                        .values(actor_value(r.previous), after),
                )
                .await?;
            }
        }
    }
    decision::record_outbound_notes(&mut tx, &base, &mut effects).await?;
    tx.commit().await?;
    after_commit(state, effects).await;
    Ok(())
}

/// After a commit: deletes the cache keys of changed groups (a cache outage only logs) and
/// counts the sync decisions written.
pub async fn after_commit(state: &Services, effects: Effects) {
    decision::count(&effects.decisions);
    if let Err(e) = state
        .caches
        .invalidate_groups(&effects.invalidate_groups)
        .await
    {
        tracing::warn!(error = %e, groups = ?effects.invalidate_groups, "cannot invalidate group caches");
    }
}

crate::handles!(SyncStatusInbound => sync_status_inbound);

/// `sync_status_inbound` (Sentry's task of that name), retried on provider failure (Sentry
/// drops it), in
/// event order per external issue.
pub async fn sync_status_inbound(job: SyncStatusInbound, ctx: &JobCtx) -> Result<(), JobError> {
    let state = &ctx.state;
    let integration = load_integration(state, job.integration_id).await?;
    let installs = installs(state, integration.id).await?;
    let base = job_about(
        ctx,
        integration.id,
        &job.issue_key,
        job.delivery_id,
        &job.actor,
    );
    let st = decision::STATUS;
    if is_disabled(&integration) {
        let (key, org) = (&job.issue_key, Some(job.organization_id));
        return record_disabled(state, &base, integration.id, key, org, st).await;
    }
    let change = describe_change(&integration.provider, &job.data);
    let affected: Vec<AffectedGroup> = {
        let mut tx = state.db.begin().await?;
        external::groups_by_external_issue(&mut tx, integration.id, &job.issue_key)
            .await?
            .into_iter()
            .filter(|g| g.organization_id == job.organization_id)
            .collect()
    };
    if affected.is_empty() {
        return Ok(());
    }
    // Nothing applied: the same status decision for every group, in its own transaction.
    let all = |reason: Reason, detail: String| {
        let ds: Vec<NewDecision> = affected
            .iter()
            .map(|g| about(&base, g, st, reason, detail.clone()))
            .collect();
        decision::write_alone(&state.db, ds)
    };
    let Some(oi) = installs
        .get(&job.organization_id)
        .filter(|oi| switch(oi, "sync_status_reverse"))
    else {
        // Switched off (or uninstalled) while the job waited.
        let oi = installs.get(&job.organization_id);
        let detail = off_detail(oi, "sync_status_reverse", job.organization_id);
        all(Reason::SyncDisabled, detail).await?;
        return Ok(());
    };
    if integration.provider == "vsts" && job.data.get("project").and_then(Value::as_str).is_none() {
        all(
            Reason::NoStatusMapping,
            format!("{change}: the event names no project"),
        )
        .await?;
        return Err(JobError::Permanent("no project in the event".into()));
    }
    let action = match resolve_action(state, &integration, &job.data).await {
        Ok(a) => a,
        Err(e) => {
            all(Reason::ProviderError, format!("{change}: {e}")).await?;
            return Err(e);
        }
    };
    let overrides_ignored = switch(oi, "sync_status_reverse_overrides_ignored");
    let data = json!({"provider": provider_name(&integration.provider), "provider_key": integration.provider, "integration_id": integration.id});
    let update = match action {
        ResolveAction::Noop => None,
        // The strategy's release variants need releases, which we do not model: plain resolve.
        ResolveAction::Resolve => Some(StatusUpdate {
            status: group_status::RESOLVED,
            substatus: None,
            activity_type: activity::SET_RESOLVED,
            activity_data: &data,
            acting_user: None,
            resolved_at: None,
        }),
        ResolveAction::Unresolve => Some(StatusUpdate {
            status: group_status::UNRESOLVED,
            substatus: Some(substatus::ONGOING),
            activity_type: activity::SET_UNRESOLVED,
            activity_data: &data,
            acting_user: None,
            resolved_at: None,
        }),
    };
    let mut effects = Effects::default();
    let mut tx = state.db.begin_write().await?;
    // Read again inside the write transaction: the status before the change, and the order
    // guard, must be the committed ones.
    let affected: Vec<AffectedGroup> =
        external::groups_by_external_issue(&mut tx, integration.id, &job.issue_key)
            .await?
            .into_iter()
            .filter(|g| g.organization_id == job.organization_id)
            .collect();
    let affected = fresh_groups(
        &mut tx,
        &mut effects,
        &base,
        affected,
        SequenceField::Status,
        job.sequence,
    )
    .await?;
    let mut changed = 0;
    for g in &affected {
        let before = Some(decision::status_value(g.status));
        let Some(u) = &update else {
            let detail = format!("{change} is neither a resolve nor an unresolve");
            decision::write(
                &mut tx,
                &mut effects,
                about(&base, g, st, Reason::NoStatusMapping, detail).values(before, None),
            )
            .await?;
            continue;
        };
        if g.status == group_status::IGNORED && !overrides_ignored {
            tracing::info!(
                group_id = g.group_id,
                "archived group left alone by an inbound status change"
            );
            let detail = format!(
                "{change}: the group is archived and sync_status_reverse_overrides_ignored is off"
            );
            decision::write(
                &mut tx,
                &mut effects,
                about(&base, g, st, Reason::ArchivedKept, detail).values(before, None),
            )
            .await?;
            continue;
        }
        let after = Some(decision::status_value(u.status));
        let (reason, detail) = if update_group_status(&mut tx, &[group_ref(g)], u)
            .await?
            .is_empty()
        {
            (
                Reason::AlreadyInState,
                format!("{change}: the group already had that status"),
            )
        } else {
            changed += 1;
            (Reason::Applied, change.clone())
        };
        decision::write(
            &mut tx,
            &mut effects,
            about(&base, g, st, reason, detail).values(before, after),
        )
        .await?;
    }
    tx.commit().await?;
    after_commit(state, effects).await;
    tracing::info!(
        issue = job.issue_key,
        ?action,
        changed,
        "inbound status applied"
    );
    Ok(())
}
