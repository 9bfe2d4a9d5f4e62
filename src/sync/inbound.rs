//! Inbound sync: a stored delivery becomes typed events, and the events change our groups.
//! `process_webhook` parses and fans out; `sync_assignee_inbound` (spec §5.1) and
//! `sync_status_inbound` (spec §6.3) apply the changes.

use std::collections::HashMap;

use issuesync_jobs::process_webhook::ProcessWebhook;
use issuesync_jobs::sync_assignee_inbound::SyncAssigneeInbound;
use issuesync_jobs::sync_status_inbound::SyncStatusInbound;
use serde_json::{Value, json};

use super::{provider_name, switch};
use crate::domain::assign::{self, Actor, Effects, GroupRef};
use crate::domain::status::{StatusUpdate, update_group_status};
use crate::domain::types::{activity, group_status, substatus};
use crate::providers::jira::client::JiraClient;
use crate::providers::vsts::client::VstsClient;
use crate::providers::{AssigneeChange, InboundEvent, StatusChange};
use crate::startup::AppState;
use crate::store::external::{self, AffectedGroup};
use crate::store::integrations::{self, Integration, OrganizationIntegration};
use crate::store::{deliveries, projects, users};
use crate::worker::JobCtx;
use crate::worker::enqueue;
use crate::worker::error::JobError;

/// RESOLVE / UNRESOLVE / NOOP (spec §1.2 `ResolveSyncAction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveAction {
    Noop,
    Resolve,
    Unresolve,
}

impl ResolveAction {
    /// Both flags set is a config conflict and does nothing.
    pub fn from_flags(should_resolve: bool, should_unresolve: bool) -> ResolveAction {
        match (should_resolve, should_unresolve) {
            (true, true) => {
                tracing::warn!("sync-config-conflict");
                ResolveAction::Noop
            }
            (true, false) => ResolveAction::Resolve,
            (false, true) => ResolveAction::Unresolve,
            (false, false) => ResolveAction::Noop,
        }
    }
}

/// Azure DevOps (spec §2.3): New → done is a NOOP (both flags), any move into a non-done
/// state unresolves.
pub fn vsts_action(done: &[String], new_state: &str, old_state: Option<&str>) -> ResolveAction {
    let is_done = |s: &str| done.iter().any(|d| d == s);
    let should_resolve = old_state.is_none_or(|o| !is_done(o)) && is_done(new_state);
    let should_unresolve = !is_done(new_state) || old_state.is_none();
    ResolveAction::from_flags(should_resolve, should_unresolve)
}

/// Jira (spec §3.6): status ids moving into or out of the done category.
pub fn jira_action(done: &[String], from: Option<&str>, to: Option<&str>) -> ResolveAction {
    let is_done = |s: Option<&str>| s.is_some_and(|s| done.iter().any(|d| d == s));
    ResolveAction::from_flags(is_done(to) && !is_done(from), is_done(from) && !is_done(to))
}

async fn load_integration(state: &AppState, id: i64) -> Result<Integration, JobError> {
    let mut tx = state.db.begin().await?;
    let i = integrations::find_integration(&mut tx, id)
        .await?
        .ok_or_else(|| JobError::Permanent(format!("integration {id} does not exist")))?;
    if i.status != integrations::STATUS_ACTIVE {
        return Err(JobError::Permanent(format!("integration {id} is disabled")));
    }
    Ok(i)
}

/// Parses a stored delivery with its provider's parser.
pub fn parse_delivery(provider: &str, body: &Value) -> Result<Option<InboundEvent>, JobError> {
    let parsed = match provider {
        "vsts" => crate::providers::vsts::webhook::parse_workitem_updated(body),
        "jira" | "jira_server" => crate::providers::jira::webhook::parse_issue_updated(body),
        other => {
            return Err(JobError::Permanent(format!(
                "no parser for provider {other}"
            )));
        }
    };
    parsed.map_err(|e| JobError::Permanent(format!("stored delivery does not parse: {e}")))
}

/// Is this event our own echo? ADO `revisedBy`, Jira Server `user.name`, Jira Cloud
/// `accountType: app`, against the accounts recorded at install (`metadata.sync_actor_ids`).
pub fn is_own_echo(integration: &Integration, event: &InboundEvent) -> bool {
    if integration.provider == "jira" && event.actor_is_app {
        return true;
    }
    let ours: Vec<&str> = match integration.metadata.0.get("sync_actor_ids") {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => vec![s.as_str()],
        _ => vec![],
    };
    event
        .actor
        .iter()
        .any(|a| ours.iter().any(|o| o.eq_ignore_ascii_case(a)))
}

/// `process_webhook`: a verified delivery → `sync_assignee_inbound` / `sync_status_inbound` jobs.
pub async fn process_webhook(job: ProcessWebhook, ctx: &JobCtx) -> Result<(), JobError> {
    let state = &ctx.state;
    let delivery = {
        let mut tx = state.db.begin().await?;
        deliveries::find_delivery(&mut tx, job.delivery_id)
            .await?
            .ok_or_else(|| {
                JobError::Permanent(format!("delivery {} does not exist", job.delivery_id))
            })?
    };
    let integration_id = delivery
        .integration_id
        .ok_or_else(|| JobError::Permanent("delivery has no integration".into()))?;
    let integration = load_integration(state, integration_id).await?;
    let body: Value = serde_json::from_slice(&delivery.body)
        .map_err(|e| JobError::Permanent(format!("stored body is not JSON: {e}")))?;
    let Some(event) = parse_delivery(&delivery.provider, &body)? else {
        tracing::info!(delivery_id = delivery.id, "delivery has nothing to sync");
        return Ok(());
    };
    if is_own_echo(&integration, &event) {
        tracing::info!(
            delivery_id = delivery.id,
            issue = event.issue_key,
            "ignoring our own change echoed back"
        );
        return Ok(());
    }
    // Jira Cloud hides emails; with use_email_scope the email API is asked (before the tx).
    let assignee = match &event.assignee {
        None => None,
        Some(AssigneeChange::Unassign) => Some(None),
        Some(AssigneeChange::Assign { email: Some(e), .. }) => Some(Some(e.clone())),
        Some(AssigneeChange::Assign {
            email: None,
            account_id,
        }) => {
            let use_scope = integration
                .metadata
                .0
                .get("use_email_scope")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let email = match (integration.provider.as_str(), account_id) {
                ("jira", Some(acc)) if use_scope => {
                    JiraClient::new(&state.http, &integration, &state.jira_app_key())?
                        .get_email(acc)
                        .await?
                }
                _ => None,
            };
            if email.is_none() {
                tracing::info!(
                    issue = event.issue_key,
                    integration_id,
                    "missing-assignee-email"
                );
            }
            email.map(Some)
        }
    };

    let mut tx = state.db.begin_write().await?;
    if let Some(seq) = event.sequence
        && !external::advance_event_sequence(&mut tx, integration_id, &event.issue_key, seq).await?
    {
        tracing::info!(
            issue = event.issue_key,
            seq,
            integration_id,
            "skipping a stale event older than the last applied one"
        );
        return Ok(());
    }
    if let Some(email) = assignee {
        let assign = email.is_some();
        enqueue(
            &mut tx,
            &SyncAssigneeInbound {
                integration_id,
                external_issue_key: event.issue_key.clone(),
                email,
                assign,
                event_time_ms: event.sequence.filter(|_| integration.provider != "vsts"),
            },
        )
        .await?;
    }
    if let Some(change) = &event.status {
        let data = match change {
            StatusChange::Vsts {
                new_state,
                old_state,
                project,
            } => json!({"new_state": new_state, "old_state": old_state, "project": project}),
            StatusChange::Jira { from, to } => json!({"changelog": {"from": from, "to": to}}),
        };
        for oi in integrations::list_organization_integrations(&mut tx, integration_id).await? {
            if switch(&oi, "sync_status_reverse") {
                enqueue(
                    &mut tx,
                    &SyncStatusInbound {
                        integration_id,
                        organization_id: oi.organization_id,
                        issue_key: event.issue_key.clone(),
                        data: data.clone(),
                    },
                )
                .await?;
            }
        }
    }
    tx.commit().await?;
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
async fn installs(
    state: &AppState,
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

/// `sync_group_assignee_inbound` (spec §5.1): assign the linked groups to the user with that
/// verified email who can see the project, or deassign them.
pub async fn sync_assignee_inbound(job: SyncAssigneeInbound, ctx: &JobCtx) -> Result<(), JobError> {
    let state = &ctx.state;
    let integration = load_integration(state, job.integration_id).await?;
    let installs = installs(state, integration.id).await?;
    let mut tx = state.db.begin_write().await?;
    let affected: Vec<AffectedGroup> =
        external::groups_by_external_issue(&mut tx, integration.id, &job.external_issue_key)
            .await?
            .into_iter()
            .filter(|g| {
                installs
                    .get(&g.organization_id)
                    .is_some_and(|oi| switch(oi, "sync_reverse_assignment"))
            })
            .collect();
    if affected.is_empty() {
        tracing::info!(
            integration_id = integration.id,
            issue = job.external_issue_key,
            assign = job.assign,
            "no-affected-groups"
        );
        return Ok(());
    }
    let mut effects = Effects::default();
    match job.email.as_deref().filter(|_| job.assign) {
        None => {
            for g in &affected {
                assign::deassign(
                    &mut tx,
                    group_ref(g),
                    None,
                    Some(integration.id),
                    &mut effects,
                )
                .await?;
            }
        }
        Some(email) => {
            let users = users::find_users_by_verified_email(&mut tx, email).await?;
            for g in &affected {
                let mut chosen = None;
                for u in &users {
                    if projects::user_has_project(&mut tx, u.id, g.project_id).await? {
                        chosen = Some(u.id);
                        break;
                    }
                }
                match chosen {
                    Some(uid) => {
                        tracing::info!(
                            group_id = g.group_id,
                            user_id = uid,
                            "sync_group_assignee_inbound._handle_assign.assigning.group"
                        );
                        assign::assign(
                            &mut tx,
                            group_ref(g),
                            Actor::User(uid),
                            None,
                            &json!({}),
                            Some(integration.id),
                            &mut effects,
                        )
                        .await?;
                    }
                    None => tracing::info!(
                        group_id = g.group_id,
                        "sync_group_assignee_inbound._handle_assign.user_not_found"
                    ),
                }
            }
        }
    }
    tx.commit().await?;
    invalidate(state, &effects).await;
    Ok(())
}

/// Deletes the cache keys of changed groups after the commit; a cache outage only logs.
pub async fn invalidate(state: &AppState, effects: &Effects) {
    if let Err(e) = state
        .caches
        .invalidate_groups(&effects.invalidate_groups)
        .await
    {
        tracing::warn!(error = %e, groups = ?effects.invalidate_groups, "cannot invalidate group caches");
    }
}

/// `sync_status_inbound` (spec §6.3), retried on provider failure (Sentry drops it).
pub async fn sync_status_inbound(job: SyncStatusInbound, ctx: &JobCtx) -> Result<(), JobError> {
    let state = &ctx.state;
    let integration = load_integration(state, job.integration_id).await?;
    let installs = installs(state, integration.id).await?;
    let Some(oi) = installs
        .get(&job.organization_id)
        .filter(|oi| switch(oi, "sync_status_reverse"))
    else {
        return Ok(());
    };
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
    let action = match integration.provider.as_str() {
        "vsts" => {
            let new_state = job
                .data
                .get("new_state")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let old_state = job.data.get("old_state").and_then(Value::as_str);
            let project = job
                .data
                .get("project")
                .and_then(Value::as_str)
                .ok_or_else(|| JobError::Permanent("no project in the event".into()))?;
            let done = VstsClient::new(&state.http, &integration)?
                .with_db(&state.db)
                .done_states(project)
                .await?;
            vsts_action(&done, new_state, old_state)
        }
        "jira" | "jira_server" => {
            let from = job.data.pointer("/changelog/from").and_then(Value::as_str);
            let to = job.data.pointer("/changelog/to").and_then(Value::as_str);
            let done = JiraClient::new(&state.http, &integration, &state.jira_app_key())?
                .done_status_ids()
                .await?;
            jira_action(&done, from, to)
        }
        other => {
            return Err(JobError::Permanent(format!(
                "no status sync for provider {other}"
            )));
        }
    };
    let overrides_ignored = switch(oi, "sync_status_reverse_overrides_ignored");
    let targets: Vec<GroupRef> = affected
        .iter()
        .filter(|g| {
            let keep = g.status != group_status::IGNORED || overrides_ignored;
            if !keep {
                tracing::info!(
                    group_id = g.group_id,
                    "archived group left alone by an inbound status change"
                );
            }
            keep
        })
        .map(group_ref)
        .collect();
    let data = json!({"provider": provider_name(&integration.provider), "provider_key": integration.provider, "integration_id": integration.id});
    let mut tx = state.db.begin_write().await?;
    let changed = match action {
        ResolveAction::Noop => vec![],
        // The strategy's release variants need releases, which we do not model: plain resolve.
        ResolveAction::Resolve => {
            let u = StatusUpdate {
                status: group_status::RESOLVED,
                substatus: None,
                activity_type: activity::SET_RESOLVED,
                activity_data: &data,
                acting_user: None,
                resolved_at: None,
            };
            update_group_status(&mut tx, &targets, &u).await?
        }
        ResolveAction::Unresolve => {
            let u = StatusUpdate {
                status: group_status::UNRESOLVED,
                substatus: Some(substatus::ONGOING),
                activity_type: activity::SET_UNRESOLVED,
                activity_data: &data,
                acting_user: None,
                resolved_at: None,
            };
            update_group_status(&mut tx, &targets, &u).await?
        }
    };
    tx.commit().await?;
    tracing::info!(
        issue = job.issue_key,
        ?action,
        changed = changed.len(),
        "inbound status applied"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn vsts_decisions() {
        let done = s(&["Resolved", "Closed"]);
        assert_eq!(
            vsts_action(&done, "Resolved", Some("New")),
            ResolveAction::Resolve
        );
        assert_eq!(vsts_action(&done, "Resolved", None), ResolveAction::Noop);
        assert_eq!(
            vsts_action(&done, "Active", Some("Resolved")),
            ResolveAction::Unresolve
        );
        assert_eq!(
            vsts_action(&done, "Active", Some("New")),
            ResolveAction::Unresolve
        );
        assert_eq!(
            vsts_action(&done, "Closed", Some("Resolved")),
            ResolveAction::Noop
        );
        assert_eq!(
            vsts_action(&[], "Resolved", Some("Active")),
            ResolveAction::Unresolve
        );
    }

    #[test]
    fn jira_decisions() {
        let done = s(&["10101"]);
        assert_eq!(
            jira_action(&done, Some("3"), Some("10101")),
            ResolveAction::Resolve
        );
        assert_eq!(
            jira_action(&done, Some("10101"), Some("3")),
            ResolveAction::Unresolve
        );
        assert_eq!(
            jira_action(&done, Some("1"), Some("3")),
            ResolveAction::Noop
        );
    }
}
