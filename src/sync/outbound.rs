//! Outbound sync: push a group's current status or assignee to one linked external issue.
//! Handlers read the group's state when they run, so a coalesced or late job never pushes a
//! stale value. Errors: 401/403/404 and a missing mapping stop at once (dead, with the
//! cause); 5xx and timeouts retry; 429 snoozes without using up an attempt. Every run ends
//! in a sync decision, written in its own transaction before the handler returns: what was
//! sent, or why nothing was (a failed provider call too, so it outlives the attempt).

use issuesync_jobs::sync_assignee_outbound::SyncAssigneeOutbound;
use issuesync_jobs::sync_status_outbound::SyncStatusOutbound;
use serde_json::Value;

use super::decision::{self, About, Reason};
use super::switch;
use crate::domain::types::group_status;
use crate::providers::http::ApiError;
use crate::providers::jira::client::JiraClient;
use crate::providers::vsts::client::VstsClient;
use crate::store::decisions::NewDecision;
use crate::store::external::{self, ExternalIssue};
use crate::store::integrations::{self, Integration, OrganizationIntegration};
use crate::store::{groups, users};
use crate::sync::JobCtx;
use crate::sync::JobError;
use crate::sync::Services;

/// What a run decides about, and how it records it.
struct Run<'a> {
    ctx: &'a JobCtx,
    state: &'a Services,
    about: About,
    field: &'static str,
}

impl Run<'_> {
    fn decision(&self, reason: Reason, detail: impl Into<String>) -> NewDecision {
        self.about
            .decide(decision::OUTBOUND, self.field, reason, detail)
    }

    /// Records a failure in its own transaction, so that it outlives the attempt.
    async fn record(&self, d: NewDecision) -> Result<(), JobError> {
        decision::write_alone(&self.state.db, vec![d]).await?;
        Ok(())
    }

    /// The decision a successful run ends with, written before the job returns (never with
    /// the batch completer's done marks: a group deleted meanwhile writes none, and cannot
    /// fail the other jobs of a batch). The push is done: a failed record is only logged.
    async fn finish(&self, d: NewDecision) -> Result<(), JobError> {
        if let Err(e) = decision::write_alone(&self.state.db, vec![d]).await {
            tracing::warn!(job_id = self.ctx.job_id, error = %e, "cannot record the sync decision");
        }
        Ok(())
    }

    async fn skip(&self, reason: Reason, detail: impl Into<String>) -> Result<(), JobError> {
        self.finish(self.decision(reason, detail)).await
    }

    /// A provider call's failure, recorded (rate limit: deferred; 4xx: refused with the
    /// provider's message; else failed, retried), then returned.
    async fn provider<T>(&self, r: Result<T, ApiError>) -> Result<T, JobError> {
        let e = match r {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let d = match &e {
            ApiError::RateLimited { until, .. } => self.decision(
                Reason::RateLimitedUntil,
                format!("the provider asked us to wait until {}", until.to_rfc3339()),
            ),
            ApiError::Permanent { status, message } => {
                self.decision(Reason::ProviderRefused, format!("HTTP {status}: {message}"))
            }
            ApiError::Transient(m) => self.decision(Reason::ProviderError, m.clone()),
        };
        if let Err(we) = self.record(d).await {
            tracing::warn!(error = %we, "cannot record the provider failure as a sync decision");
        }
        Err(e.into())
    }

    /// A permanent failure of ours (no mapping, no transition): recorded, then returned.
    async fn fail(&self, reason: Reason, detail: String) -> JobError {
        if let Err(we) = self.record(self.decision(reason, detail.clone())).await {
            tracing::warn!(error = %we, "cannot record the failure as a sync decision");
        }
        JobError::Permanent(detail)
    }

    async fn sent(
        &self,
        before: Option<String>,
        after: Option<String>,
        detail: impl Into<String>,
    ) -> Result<(), JobError> {
        self.finish(self.decision(Reason::Sent, detail).values(before, after))
            .await
    }
}

/// The external issue, its integration and the installation in the issue's organization,
/// or why there is nothing to do (gone, disabled, or `switch_key` off).
async fn target(
    run: &mut Run<'_>,
    external_issue_id: i64,
    switch_key: &str,
) -> Result<Option<(ExternalIssue, Integration, OrganizationIntegration)>, JobError> {
    let mut tx = run.state.db.begin().await?;
    let Some(issue) = external::find_external_issue(&mut tx, external_issue_id).await? else {
        tracing::info!(
            external_issue_id,
            "external issue was unlinked while the job waited"
        );
        drop(tx);
        run.skip(
            Reason::LinkGone,
            format!("external issue {external_issue_id} no longer exists"),
        )
        .await?;
        return Ok(None);
    };
    run.about.integration_id = Some(issue.integration_id);
    run.about.external_key = Some(issue.key.clone());
    run.about.organization_id = Some(issue.organization_id);
    let integration = integrations::find_integration(&mut tx, issue.integration_id)
        .await?
        .filter(|i| i.status == integrations::STATUS_ACTIVE);
    let oi = match &integration {
        Some(i) => integrations::list_organization_integrations(&mut tx, i.id)
            .await?
            .into_iter()
            .find(|oi| oi.organization_id == issue.organization_id),
        None => None,
    };
    drop(tx);
    let org = issue.organization_id;
    let why = match (integration, oi) {
        (Some(i), Some(oi)) if switch(&oi, switch_key) => return Ok(Some((issue, i, oi))),
        (None, _) => format!("integration {} is disabled or gone", issue.integration_id),
        (Some(_), oi) => super::off_detail(oi.as_ref(), switch_key, org),
    };
    run.skip(Reason::SyncDisabled, why).await?;
    Ok(None)
}

crate::handles!(SyncStatusOutbound => sync_status_outbound);

/// `sync_status_outbound`: Sentry's task and each provider's `sync_status_outbound`.
pub async fn sync_status_outbound(job: SyncStatusOutbound, ctx: &JobCtx) -> Result<(), JobError> {
    let state = &ctx.state;
    let mut run = Run {
        ctx,
        state,
        about: About {
            group_id: Some(job.group_id),
            external_issue_id: Some(job.external_issue_id),
            job_id: Some(ctx.job_id.clone()),
            actor_user_id: job.acting_user_id,
            ..Default::default()
        },
        field: decision::STATUS,
    };
    let group = {
        let mut tx = state.db.begin().await?;
        groups::find_group(&mut tx, job.group_id).await?
    };
    let Some(group) = group else {
        run.about.group_id = None;
        return run
            .skip(
                Reason::LinkGone,
                format!("group {} no longer exists", job.group_id),
            )
            .await;
    };
    let Some((issue, integration, oi)) =
        target(&mut run, job.external_issue_id, "sync_status_forward").await?
    else {
        return Ok(());
    };
    if group.status != group_status::RESOLVED && group.status != group_status::UNRESOLVED {
        // Ignored groups are never pushed.
        return run
            .skip(
                Reason::GroupArchived,
                "the group is archived; archived groups are not pushed",
            )
            .await;
    }
    let resolved = group.status == group_status::RESOLVED;
    let wanted = decision::status_value(group.status);
    match integration.provider.as_str() {
        "jira" | "jira_server" => {
            let client = JiraClient::new(&state.http, &integration, &state.jira_app_key())?;
            let current = run.provider(client.get_issue(&issue.key).await).await?;
            let Some(project) = json_id(current.pointer("/fields/project/id")) else {
                let d = format!("issue {} has no project", issue.key);
                return Err(run.fail(Reason::NoMapping, d).await);
            };
            let target = mapping(&run, oi.id, &project, resolved).await?;
            let now = json_id(current.pointer("/fields/status/id"));
            if now.as_deref() == Some(target.as_str()) {
                tracing::info!(issue = issue.key, "jira.sync_status_outbound.unchanged");
                let d = run
                    .decision(
                        Reason::AlreadyAtTarget,
                        format!("{} already has status {target} ({wanted})", issue.key),
                    )
                    .values(now, Some(target));
                return run.finish(d).await;
            }
            let transitions = run
                .provider(client.get_transitions(&issue.key).await)
                .await?;
            let Some(t) = transitions
                .iter()
                .find(|t| json_id(t.pointer("/to/id")).as_deref() == Some(target.as_str()))
            else {
                tracing::warn!(
                    issue = issue.key,
                    jira_status = target,
                    "jira.status-sync-fail"
                );
                let d = format!("no transition of {} leads to status {target}", issue.key);
                return Err(run.fail(Reason::NoTransition, d).await);
            };
            let Some(tid) = json_id(t.get("id")) else {
                let d = format!("the transition to status {target} has no id");
                return Err(run.fail(Reason::NoTransition, d).await);
            };
            run.provider(client.transition_issue(&issue.key, &tid).await)
                .await?;
            let detail = format!("transition {tid} to status {target} ({wanted})");
            run.sent(now, Some(target), detail).await
        }
        "vsts" => {
            let client = VstsClient::new(&state.http, &integration)?.with_db(&state.db);
            let item = run.provider(client.get_work_item(&issue.key).await).await?;
            let project_name = item
                .pointer("/fields/System.TeamProject")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let before = item
                .pointer("/fields/System.State")
                .and_then(Value::as_str)
                .map(str::to_string);
            let project_id = run
                .provider(client.get_projects().await)
                .await?
                .into_iter()
                .find(|(_, name)| *name == project_name)
                .map(|(id, _)| id)
                .unwrap_or_default();
            let state_name = mapping(&run, oi.id, &project_id, resolved).await?;
            run.provider(
                client
                    .update_field(&issue.key, "System.State", Some(&state_name))
                    .await,
            )
            .await?;
            let detail = format!("System.State set to {state_name} ({wanted})");
            run.sent(before, Some(state_name), detail).await
        }
        other => Err(JobError::Permanent(format!(
            "no outbound status sync for {other}"
        ))),
    }
}

/// The status the project maps a resolved/unresolved group to; missing = a `no_mapping`
/// decision and a permanent error.
async fn mapping(
    run: &Run<'_>,
    oi_id: i64,
    external_project: &str,
    resolved: bool,
) -> Result<String, JobError> {
    let found = {
        let mut tx = run.state.db.begin().await?;
        integrations::list_external_projects(&mut tx, oi_id)
            .await?
            .into_iter()
            .find(|p| p.external_id == external_project)
    };
    let Some(p) = found else {
        let d = format!(
            "external-project-not-found: no status mapping for project {external_project:?}"
        );
        return Err(run.fail(Reason::NoMapping, d).await);
    };
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

/// Who the external issue should be assigned to.
enum Wanted {
    Nobody,
    User(i64),
}

crate::handles!(SyncAssigneeOutbound => sync_assignee_outbound);

/// `sync_assignee_outbound` (Sentry's task and the providers' method of that name).
/// Unassigns only when the group
/// really has no assignee: an assignee we cannot find at the provider (no verified email, a
/// deleted user, no matching account) leaves the external issue alone.
pub async fn sync_assignee_outbound(
    job: SyncAssigneeOutbound,
    ctx: &JobCtx,
) -> Result<(), JobError> {
    let state = &ctx.state;
    let mut run = Run {
        ctx,
        state,
        about: About {
            group_id: job.group_id,
            external_issue_id: Some(job.external_issue_id),
            job_id: Some(ctx.job_id.clone()),
            actor_user_id: job.acting_user_id,
            ..Default::default()
        },
        field: decision::ASSIGNEE,
    };
    if let Some(gid) = job.group_id {
        let mut tx = state.db.begin().await?;
        if groups::find_group(&mut tx, gid).await?.is_none() {
            drop(tx);
            run.about.group_id = None;
            return run
                .skip(Reason::LinkGone, format!("group {gid} no longer exists"))
                .await;
        }
    }
    let Some((issue, integration, _)) =
        target(&mut run, job.external_issue_id, "sync_forward_assignment").await?
    else {
        return Ok(());
    };
    if job.source_integration_id == Some(integration.id) {
        return run
            .skip(
                Reason::SourceIntegration,
                "the change came from this integration",
            )
            .await;
    }
    // The group's assignee now; a team assignment is never synced outbound.
    let wanted = match job.group_id {
        Some(gid) => {
            let mut tx = state.db.begin().await?;
            match groups::find_assignee(&mut tx, gid).await? {
                None => Wanted::Nobody,
                Some(a) => match (a.user_id, a.team_id) {
                    (Some(u), _) => Wanted::User(u),
                    (None, t) => {
                        drop(tx);
                        let d = run
                            .decision(Reason::TeamAssignee, "team assignments are not pushed")
                            .values(None, decision::assignee_value(None, t));
                        return run.finish(d).await;
                    }
                },
            }
        }
        None => match job.user_id.filter(|_| job.assign) {
            Some(u) => Wanted::User(u),
            None => Wanted::Nobody,
        },
    };
    let emails = match wanted {
        Wanted::Nobody => vec![],
        Wanted::User(uid) => {
            let mut tx = state.db.begin().await?;
            let emails = match users::find_user(&mut tx, uid).await? {
                None => None,
                Some(_) => Some(
                    users::list_user_emails(&mut tx, uid)
                        .await?
                        .into_iter()
                        .filter(|e| e.is_verified)
                        .map(|e| e.email.to_lowercase())
                        .collect::<Vec<_>>(),
                ),
            };
            drop(tx);
            match emails {
                None => {
                    return not_found(&run, uid, format!("user {uid} no longer exists")).await;
                }
                Some(e) if e.is_empty() => {
                    return not_found(&run, uid, format!("user {uid} has no verified email")).await;
                }
                Some(e) => e,
            }
        }
    };
    let user = match wanted {
        Wanted::User(u) => Some(u),
        Wanted::Nobody => None,
    };
    match integration.provider.as_str() {
        "jira" | "jira_server" => {
            let client = JiraClient::new(&state.http, &integration, &state.jira_app_key())?;
            let account = match user {
                None => None,
                Some(uid) => match find_jira_user(&run, &client, &issue.key, &emails).await? {
                    Some(a) => Some(a),
                    None => {
                        let why = format!(
                            "no Jira user assignable to {} has a verified email of user {uid}",
                            issue.key
                        );
                        return not_found(&run, uid, why).await;
                    }
                },
            };
            run.provider(client.assign_issue(&issue.key, account.as_deref()).await)
                .await?;
            sent_assignee(&run, user, account).await
        }
        "vsts" => {
            let client = VstsClient::new(&state.http, &integration)?.with_db(&state.db);
            let value = match user {
                None => None,
                Some(uid) => {
                    let all = run.provider(client.user_emails().await).await?;
                    // A later page may overwrite an earlier match, as in Sentry.
                    match all
                        .into_iter()
                        .rfind(|m| emails.contains(&m.to_lowercase()))
                    {
                        Some(m) => Some(m),
                        None => {
                            let why =
                                format!("no Azure DevOps user has a verified email of user {uid}");
                            return not_found(&run, uid, why).await;
                        }
                    }
                }
            };
            run.provider(
                client
                    .update_field(&issue.key, "System.AssignedTo", value.as_deref())
                    .await,
            )
            .await?;
            sent_assignee(&run, user, value).await
        }
        other => Err(JobError::Permanent(format!(
            "no outbound assignee sync for {other}"
        ))),
    }
}

/// `external_user_not_found`: the external issue is left alone (never unassigned for it).
async fn not_found(run: &Run<'_>, uid: i64, why: String) -> Result<(), JobError> {
    tracing::info!(user_id = uid, why, "assignee-not-found");
    let d = run
        .decision(Reason::ExternalUserNotFound, why)
        .values(None, decision::assignee_value(Some(uid), None));
    run.finish(d).await
}

async fn sent_assignee(
    run: &Run<'_>,
    user: Option<i64>,
    account: Option<String>,
) -> Result<(), JobError> {
    let detail = match (&user, &account) {
        (Some(u), Some(a)) => format!("assigned to {a} (user {u})"),
        _ => "unassigned: the group has no assignee".to_string(),
    };
    run.sent(None, account, detail).await
}

/// Jira Server: a single search result wins (it may hide emails); otherwise emails are
/// compared. Jira Cloud: emails compared (the email API when `use_email_scope`). None when
/// nobody matches.
async fn find_jira_user(
    run: &Run<'_>,
    client: &JiraClient<'_>,
    key: &str,
    emails: &[String],
) -> Result<Option<String>, JobError> {
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
            // Our credentials refused: not a missing user, and no other email fares better.
            Err(
                e @ ApiError::Permanent {
                    status: 401 | 403, ..
                },
            ) => return run.provider(Err(e)).await,
            Err(ApiError::Permanent { status, message }) => {
                tracing::info!(status, message, "jira.user-search-request-error");
                continue;
            }
            Err(e) => return run.provider(Err(e)).await,
        };
        if client.integration.provider == "jira_server" && found.len() == 1 {
            return Ok(Some(found[0].id.clone()));
        }
        for u in &found {
            let mut candidate = u.email.clone();
            if candidate.is_none() && use_scope {
                candidate = run.provider(client.get_email(&u.id).await).await?;
            }
            if candidate.is_some_and(|c| c.to_lowercase() == *email) {
                return Ok(Some(u.id.clone()));
            }
        }
    }
    Ok(None)
}
