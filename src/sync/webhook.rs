//! `process_webhook`: a stored, verified delivery becomes typed events, our own echoes are
//! dropped, and the changes fan out to `sync_assignee_inbound` / `sync_status_inbound` jobs
//! that carry the event's sequence. Every group the delivery could touch but does not gets
//! a sync decision saying why.

use issuesync_jobs::process_webhook::ProcessWebhook;
use issuesync_jobs::sync_assignee_inbound::SyncAssigneeInbound;
use issuesync_jobs::sync_status_inbound::SyncStatusInbound;
use serde_json::{Value, json};

use super::decision::{self, About, Reason};
use super::inbound::{after_commit, is_disabled, load_integration};
use super::switch;
use crate::domain::assign::Effects;
use crate::providers::jira::client::JiraClient;
use crate::providers::{AssigneeChange, InboundEvent, StatusChange};
use crate::store::deliveries;
use crate::store::enqueue::enqueue;
use crate::store::external::{self, AffectedGroup};
use crate::store::integrations::{self, Integration};
use crate::sync::JobCtx;
use crate::sync::JobError;
use crate::sync::Services;

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

/// The accounts our own writes show up as (`metadata.sync_actor_ids`: a list or one string).
pub fn sync_actor_ids(integration: &Integration) -> Vec<&str> {
    match integration.metadata.0.get("sync_actor_ids") {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => vec![s.as_str()],
        _ => vec![],
    }
}

/// Is this event our own echo? ADO `revisedBy`, Jira Server `user.name`, Jira Cloud
/// `user.accountId`, against our accounts (`metadata.sync_actor_ids`). Another app's change
/// on Jira Cloud (Jira Automation, another Connect app: also `accountType: app`) is real.
pub fn is_own_echo(integration: &Integration, event: &InboundEvent) -> bool {
    let ours = sync_actor_ids(integration);
    event
        .actor
        .iter()
        .any(|a| ours.iter().any(|o| o.eq_ignore_ascii_case(a)))
}

/// Jira Cloud: the Connect `installed` payload carries no account of our app user, and the
/// tenant cannot be called before that callback has answered, so the first app-made event
/// looks our app user up (`/rest/api/2/myself` with the app JWT) and keeps it in
/// `metadata.sync_actor_ids`. Returns the integration as stored afterwards.
async fn learn_app_account(
    state: &Services,
    integration: Integration,
) -> Result<Integration, JobError> {
    let account = JiraClient::new(&state.http, &integration, &state.jira_app_key())?
        .myself()
        .await?
        .ok_or_else(|| JobError::Transient("Jira answered /myself without an accountId".into()))?;
    // Only this key is written: a concurrent write of the others (a PATCH) is kept.
    let mut patch = serde_json::Map::new();
    patch.insert("sync_actor_ids".into(), json!([account]));
    let mut tx = state.db.begin_write().await?;
    let updated = integrations::patch_integration(&mut tx, integration.id, None, &patch, None)
        .await?
        .ok_or_else(|| JobError::Permanent(format!("integration {} is gone", integration.id)))?;
    tx.commit().await?;
    state.integrations.invalidate_all();
    tracing::info!(
        integration_id = updated.id,
        account,
        "learned our Jira app user's account"
    );
    Ok(updated)
}

/// The fields an event changes.
fn fields(event: &InboundEvent) -> Vec<&'static str> {
    let mut f = Vec::new();
    if event.assignee.is_some() {
        f.push(decision::ASSIGNEE);
    }
    if event.status.is_some() {
        f.push(decision::STATUS);
    }
    f
}

/// One decision per group and field.
fn decide_all(
    base: &About,
    groups: &[AffectedGroup],
    fields: &[&'static str],
    reason: Reason,
    detail: &str,
) -> Vec<crate::store::decisions::NewDecision> {
    let mut out = Vec::new();
    for g in groups {
        let about = base.for_group(g);
        for f in fields {
            out.push(about.decide(decision::INBOUND, f, reason, detail));
        }
    }
    out
}

async fn linked_groups(
    state: &Services,
    integration_id: i64,
    key: &str,
) -> Result<Vec<AffectedGroup>, JobError> {
    let mut tx = state.db.begin().await?;
    Ok(external::groups_by_external_issue(&mut tx, integration_id, key).await?)
}

/// Records `provider_error` for every group linked to the issue and every field of the
/// event, then returns the error (a database that fails meanwhile only loses the record).
async fn provider_failed(
    state: &Services,
    base: &About,
    (integration_id, key): (i64, &str),
    fields: &[&'static str],
    e: JobError,
) -> JobError {
    let Ok(groups) = linked_groups(state, integration_id, key).await else {
        return e;
    };
    let ds = decide_all(base, &groups, fields, Reason::ProviderError, &e.to_string());
    if let Err(we) = decision::write_alone(&state.db, ds).await {
        tracing::warn!(error = %we, "cannot record the provider error as a sync decision");
    }
    e
}

crate::handles!(ProcessWebhook => process_webhook);

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
    // The job span declares the field; the args do not carry it.
    tracing::Span::current().record("integration_id", integration_id);
    let mut integration = load_integration(state, integration_id).await?;
    let body: Value = serde_json::from_slice(&delivery.body)
        .map_err(|e| JobError::Permanent(format!("stored body is not JSON: {e}")))?;
    let Some(event) = parse_delivery(&delivery.provider, &body)? else {
        tracing::info!(delivery_id = delivery.id, "delivery has nothing to sync");
        return Ok(());
    };
    let actor = (!event.actor.is_empty()).then(|| event.actor.join(" / "));
    let base = About {
        integration_id: Some(integration_id),
        external_key: Some(event.issue_key.clone()),
        delivery_id: Some(delivery.id),
        job_id: Some(ctx.job_id.clone()),
        actor: actor.clone(),
        ..Default::default()
    };
    let changed = fields(&event);
    if is_disabled(&integration) {
        // Disabled after the delivery was accepted: nothing syncs, every group hears why.
        let groups = linked_groups(state, integration_id, &event.issue_key).await?;
        let detail = super::disabled_detail(integration_id);
        let ds = decide_all(&base, &groups, &changed, Reason::SyncDisabled, &detail);
        decision::write_alone(&state.db, ds).await?;
        return Ok(());
    }
    // Groups linked in organizations without an installation: left alone, and told so.
    let uninstalled = {
        let mut tx = state.db.begin().await?;
        external::groups_without_installation(&mut tx, integration_id, &event.issue_key).await?
    };
    let mut not_installed = Vec::new();
    for g in &uninstalled {
        let detail = super::off_detail(None, "", g.organization_id);
        not_installed.extend(decide_all(
            &base,
            std::slice::from_ref(g),
            &changed,
            Reason::SyncDisabled,
            &detail,
        ));
    }
    if integration.provider == "jira"
        && event.actor_is_app
        && sync_actor_ids(&integration).is_empty()
    {
        integration = match learn_app_account(state, integration).await {
            Ok(i) => i,
            Err(e) => {
                return Err(provider_failed(
                    state,
                    &base,
                    (integration_id, &event.issue_key),
                    &changed,
                    e,
                )
                .await);
            }
        };
    }
    if is_own_echo(&integration, &event) {
        tracing::info!(
            delivery_id = delivery.id,
            issue = event.issue_key,
            "ignoring our own change echoed back"
        );
        let groups = linked_groups(state, integration_id, &event.issue_key).await?;
        let detail = format!(
            "{} is our own account (metadata.sync_actor_ids)",
            actor.as_deref().unwrap_or("the actor")
        );
        let ds = decide_all(&base, &groups, &changed, Reason::OwnEcho, &detail);
        decision::write_alone(&state.db, ds).await?;
        return Ok(());
    }
    // Jira Cloud hides emails; with use_email_scope the email API is asked (before the tx).
    // A missing email still goes to the job, which records why nothing was assigned.
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
                    let client = JiraClient::new(&state.http, &integration, &state.jira_app_key())?;
                    match client.get_email(acc).await {
                        Ok(e) => e,
                        Err(e) => {
                            let e = JobError::from(e);
                            let f = [decision::ASSIGNEE];
                            return Err(provider_failed(
                                state,
                                &base,
                                (integration_id, &event.issue_key),
                                &f,
                                e,
                            )
                            .await);
                        }
                    }
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
            Some(email)
        }
    };

    let mut effects = Effects::default();
    let mut tx = state.db.begin_write().await?;
    for d in not_installed {
        decision::write(&mut tx, &mut effects, d).await?;
    }
    if let Some(email) = assignee {
        let assign = !matches!(event.assignee, Some(AssigneeChange::Unassign));
        enqueue(
            &mut tx,
            &SyncAssigneeInbound {
                integration_id,
                external_issue_key: event.issue_key.clone(),
                email,
                assign,
                sequence: event.sequence,
                delivery_id: Some(delivery.id),
                actor: actor.clone(),
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
        let mut groups: Option<Vec<AffectedGroup>> = None;
        for oi in integrations::list_organization_integrations(&mut tx, integration_id).await? {
            if switch(&oi, "sync_status_reverse") {
                enqueue(
                    &mut tx,
                    &SyncStatusInbound {
                        integration_id,
                        organization_id: oi.organization_id,
                        issue_key: event.issue_key.clone(),
                        data: data.clone(),
                        sequence: event.sequence,
                        delivery_id: Some(delivery.id),
                        actor: actor.clone(),
                    },
                )
                .await?;
                continue;
            }
            // The switch is off: the groups of this organization hear why.
            if groups.is_none() {
                groups = Some(
                    external::groups_by_external_issue(&mut tx, integration_id, &event.issue_key)
                        .await?,
                );
            }
            let org_groups: Vec<AffectedGroup> = groups
                .iter()
                .flatten()
                .filter(|g| g.organization_id == oi.organization_id)
                .cloned()
                .collect();
            let detail = format!(
                "sync_status_reverse is off for organization {}",
                oi.organization_id
            );
            for d in decide_all(
                &base,
                &org_groups,
                &[decision::STATUS],
                Reason::SyncDisabled,
                &detail,
            ) {
                decision::write(&mut tx, &mut effects, d).await?;
            }
        }
    }
    tx.commit().await?;
    after_commit(state, effects).await;
    Ok(())
}
