//! Outbound sync: push a group's current status or assignee to one linked external issue.
//! Handlers read the group's state when they run, so a coalesced or late job never pushes a
//! stale value. Errors: 401/403/404 and a missing mapping stop at once (dead, with the
//! cause); 5xx and timeouts retry; 429 snoozes without using up an attempt.

use issuesync_jobs::sync_assignee_outbound::SyncAssigneeOutbound;
use issuesync_jobs::sync_status_outbound::SyncStatusOutbound;
use serde_json::Value;

use super::switch;
use crate::domain::types::group_status;
use crate::providers::jira::client::JiraClient;
use crate::providers::vsts::client::VstsClient;
use crate::startup::AppState;
use crate::store::external::{self, ExternalIssue};
use crate::store::integrations::{self, Integration, OrganizationIntegration};
use crate::store::{groups, users};
use crate::worker::JobCtx;
use crate::worker::error::JobError;

/// The external issue, its integration and the installation in the issue's organization;
/// `None` (nothing to do) when any of them is gone, disabled, or has `switch_key` off.
async fn target(
    state: &AppState,
    external_issue_id: i64,
    switch_key: &str,
) -> Result<Option<(ExternalIssue, Integration, OrganizationIntegration)>, JobError> {
    let mut tx = state.db.begin().await?;
    let Some(issue) = external::find_external_issue(&mut tx, external_issue_id).await? else {
        tracing::info!(
            external_issue_id,
            "external issue was unlinked while the job waited"
        );
        return Ok(None);
    };
    let Some(integration) = integrations::find_integration(&mut tx, issue.integration_id)
        .await?
        .filter(|i| i.status == integrations::STATUS_ACTIVE)
    else {
        return Ok(None);
    };
    let oi = integrations::list_organization_integrations(&mut tx, integration.id)
        .await?
        .into_iter()
        .find(|oi| oi.organization_id == issue.organization_id);
    match oi {
        Some(oi) if switch(&oi, switch_key) => Ok(Some((issue, integration, oi))),
        _ => Ok(None),
    }
}

/// `sync_status_outbound` (spec §3.4, §2.4, §6.4).
pub async fn sync_status_outbound(job: SyncStatusOutbound, ctx: &JobCtx) -> Result<(), JobError> {
    let state = &ctx.state;
    let group = {
        let mut tx = state.db.begin().await?;
        groups::find_group(&mut tx, job.group_id).await?
    };
    let Some(group) = group
        .filter(|g| g.status == group_status::RESOLVED || g.status == group_status::UNRESOLVED)
    else {
        // Ignored groups are never pushed.
        return Ok(());
    };
    let Some((issue, integration, oi)) =
        target(state, job.external_issue_id, "sync_status_forward").await?
    else {
        return Ok(());
    };
    let resolved = group.status == group_status::RESOLVED;
    match integration.provider.as_str() {
        "jira" | "jira_server" => {
            let client = JiraClient::new(&state.http, &integration, &state.jira_app_key())?;
            let current = client.get_issue(&issue.key).await?;
            let project = json_id(current.pointer("/fields/project/id")).ok_or_else(|| {
                JobError::Permanent(format!("issue {} has no project", issue.key))
            })?;
            let target = mapping(state, oi.id, &project, resolved).await?;
            if json_id(current.pointer("/fields/status/id")).as_deref() == Some(target.as_str()) {
                tracing::info!(issue = issue.key, "jira.sync_status_outbound.unchanged");
                return Ok(());
            }
            let transitions = client.get_transitions(&issue.key).await?;
            let Some(t) = transitions
                .iter()
                .find(|t| json_id(t.pointer("/to/id")).as_deref() == Some(target.as_str()))
            else {
                tracing::warn!(
                    issue = issue.key,
                    jira_status = target,
                    "jira.status-sync-fail"
                );
                return Err(JobError::Permanent(format!(
                    "no transition of {} leads to status {target}",
                    issue.key
                )));
            };
            let tid = json_id(t.get("id"))
                .ok_or_else(|| JobError::Permanent("transition without an id".into()))?;
            client.transition_issue(&issue.key, &tid).await?;
        }
        "vsts" => {
            let client = VstsClient::new(&state.http, &integration)?.with_db(&state.db);
            let item = client.get_work_item(&issue.key).await?;
            let project_name = item
                .pointer("/fields/System.TeamProject")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let project_id = client
                .get_projects()
                .await?
                .into_iter()
                .find(|(_, name)| *name == project_name)
                .map(|(id, _)| id)
                .unwrap_or_default();
            let state_name = mapping(state, oi.id, &project_id, resolved).await?;
            client
                .update_field(&issue.key, "System.State", Some(&state_name))
                .await?;
        }
        other => {
            return Err(JobError::Permanent(format!(
                "no outbound status sync for {other}"
            )));
        }
    }
    Ok(())
}

/// The status the project maps a resolved/unresolved group to; missing = permanent error.
async fn mapping(
    state: &AppState,
    oi_id: i64,
    external_project: &str,
    resolved: bool,
) -> Result<String, JobError> {
    let mut tx = state.db.begin().await?;
    let p = integrations::list_external_projects(&mut tx, oi_id)
        .await?
        .into_iter()
        .find(|p| p.external_id == external_project);
    let p = p.ok_or_else(|| {
        JobError::Permanent(format!(
            "external-project-not-found: no status mapping for project {external_project:?}"
        ))
    })?;
    Ok(if resolved {
        p.resolved_status
    } else {
        p.unresolved_status
    })
}

/// An id given as a string or a number.
fn json_id(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `sync_assignee_outbound` (spec §2.5, §3.5, §4.6, §6.2).
pub async fn sync_assignee_outbound(
    job: SyncAssigneeOutbound,
    ctx: &JobCtx,
) -> Result<(), JobError> {
    let state = &ctx.state;
    let Some((issue, integration, _)) =
        target(state, job.external_issue_id, "sync_forward_assignment").await?
    else {
        return Ok(());
    };
    if job.source_integration_id == Some(integration.id) {
        return Ok(());
    }
    // The group's assignee now; a team assignment is never synced outbound.
    let user_id = match job.group_id {
        Some(gid) => {
            let mut tx = state.db.begin().await?;
            match groups::find_assignee(&mut tx, gid).await? {
                None => None,
                Some(a) if a.user_id.is_some() => a.user_id,
                Some(_) => return Ok(()),
            }
        }
        None => job.user_id.filter(|_| job.assign),
    };
    // A deleted user unassigns (spec §6.2).
    let emails: Vec<String> = match user_id {
        None => vec![],
        Some(uid) => {
            let mut tx = state.db.begin().await?;
            match users::find_user(&mut tx, uid).await? {
                None => vec![],
                Some(_) => users::list_user_emails(&mut tx, uid)
                    .await?
                    .into_iter()
                    .filter(|e| e.is_verified)
                    .map(|e| e.email.to_lowercase())
                    .collect(),
            }
        }
    };
    let assign = user_id.is_some() && !emails.is_empty();
    match integration.provider.as_str() {
        "jira" | "jira_server" => {
            let client = JiraClient::new(&state.http, &integration, &state.jira_app_key())?;
            let target = if assign {
                Some(find_jira_user(&client, &issue.key, &emails).await?)
            } else {
                None
            };
            client.assign_issue(&issue.key, target.as_deref()).await?;
        }
        "vsts" => {
            let client = VstsClient::new(&state.http, &integration)?.with_db(&state.db);
            let value = if assign {
                let all = client.user_emails().await?;
                // A later page may overwrite an earlier match, as in Sentry.
                let m = all
                    .into_iter()
                    .rfind(|m| emails.contains(&m.to_lowercase()));
                Some(m.ok_or_else(|| JobError::Permanent("vsts.assignee-not-found: no Azure DevOps user has a verified email of the assignee".into()))?)
            } else {
                None
            };
            client
                .update_field(&issue.key, "System.AssignedTo", value.as_deref())
                .await?;
        }
        other => {
            return Err(JobError::Permanent(format!(
                "no outbound assignee sync for {other}"
            )));
        }
    }
    Ok(())
}

/// Jira Server: a single search result wins (it may hide emails); otherwise emails are
/// compared. Jira Cloud: emails compared (the email API when `use_email_scope`).
async fn find_jira_user(
    client: &JiraClient<'_>,
    key: &str,
    emails: &[String],
) -> Result<String, JobError> {
    let use_scope = client
        .integration
        .metadata
        .0
        .get("use_email_scope")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    for email in emails {
        let found = match client.search_assignable(key, email).await {
            Ok(f) => f,
            Err(crate::providers::http::ApiError::Permanent { status, message }) => {
                tracing::info!(status, message, "jira.user-search-request-error");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if client.integration.provider == "jira_server" && found.len() == 1 {
            return Ok(found[0].id.clone());
        }
        for u in &found {
            let mut candidate = u.email.clone();
            if candidate.is_none() && use_scope {
                candidate = client.get_email(&u.id).await?;
            }
            if candidate.is_some_and(|c| c.to_lowercase() == *email) {
                return Ok(u.id.clone());
            }
        }
    }
    Err(JobError::Permanent(
        "jira.assignee-not-found: no Jira user matches a verified email of the assignee".into(),
    ))
}
