//! Linking a group to an issue that already exists at the provider: the provider is asked
//! first (the issue must exist; its title, description and web URL are kept), then the
//! external issue, the link and an activity are written in one transaction, and then the
//! group's current assignee and status go out as Sentry's `after_link` does, when the
//! installation's switches say so.

use serde_json::{Value, json};

use crate::domain::types::activity;
use crate::providers::http::ApiError;
use crate::providers::jira::client::JiraClient;
use crate::providers::vsts::client::VstsClient;
use crate::store::enqueue::enqueue;
use crate::store::external::{self, ExternalIssue, NewExternalIssue};
use crate::store::{StoreError, groups, integrations, projects};
use crate::sync::{Services, switch};
use issuesync_jobs::sync_assignee_outbound::SyncAssigneeOutbound;
use issuesync_jobs::sync_status_outbound::SyncStatusOutbound;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The group does not exist (404).
    #[error("{0}")]
    NoGroup(String),
    /// The integration does not exist or is not installed on the group's organization (409).
    #[error("{0}")]
    Conflict(String),
    /// The provider has no such issue (404, with the provider's message).
    #[error("{0}")]
    NotFound(String),
    /// The provider could not be asked (502).
    #[error("{0}")]
    Provider(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for LinkError {
    fn from(e: sqlx::Error) -> Self {
        LinkError::Store(e.into())
    }
}

/// What a link did: the external issue, and whether the link is new (linking the same
/// issue again changes nothing and enqueues nothing).
#[derive(Debug)]
pub struct Linked {
    pub external_issue: ExternalIssue,
    pub created: bool,
    /// The outbound jobs it enqueued (`sync_assignee_outbound`, `sync_status_outbound`).
    pub enqueued: Vec<&'static str>,
}

/// The issue as the provider shows it.
struct Found {
    title: String,
    description: String,
    web_url: Option<String>,
}

fn provider_error(provider: &str, key: &str, e: ApiError) -> LinkError {
    match e {
        ApiError::Permanent {
            status: 404,
            message,
        } => LinkError::NotFound(format!("{provider} has no issue {key:?}: {message}")),
        ApiError::Permanent { status, message } => {
            LinkError::Provider(format!("{provider} answered {status}: {message}"))
        }
        ApiError::Transient(m) => LinkError::Provider(format!("{provider}: {m}")),
        ApiError::RateLimited { until, .. } => LinkError::Provider(format!(
            "{provider} is rate limiting us until {until}; try again then"
        )),
    }
}

async fn ask_provider(
    state: &Services,
    integration: &integrations::Integration,
    key: &str,
) -> Result<Found, LinkError> {
    let provider = integration.provider.as_str();
    let text = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    match provider {
        "jira" | "jira_server" => {
            let client = JiraClient::new(&state.http, integration, &state.jira_app_key())
                .map_err(|e| provider_error(provider, key, e))?;
            let v = client
                .get_issue_fields(key, "summary,description")
                .await
                .map_err(|e| provider_error(provider, key, e))?;
            let base = text(&integration.metadata.0, "/base_url");
            Ok(Found {
                title: text(&v, "/fields/summary").unwrap_or_default(),
                description: text(&v, "/fields/description").unwrap_or_default(),
                web_url: base.map(|b| format!("{}/browse/{key}", b.trim_end_matches('/'))),
            })
        }
        "vsts" => {
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_digit()) {
                return Err(LinkError::NotFound(format!(
                    "an Azure DevOps work item id is a number, not {key:?}"
                )));
            }
            let client = VstsClient::new(&state.http, integration)
                .map_err(|e| provider_error(provider, key, e))?
                .with_db(&state.db);
            let v = client
                .get_work_item(key)
                .await
                .map_err(|e| provider_error(provider, key, e))?;
            Ok(Found {
                title: text(&v, "/fields/System.Title").unwrap_or_default(),
                description: text(&v, "/fields/System.Description").unwrap_or_default(),
                web_url: text(&v, "/_links/html/href"),
            })
        }
        other => Err(LinkError::Conflict(format!(
            "issues of {other} integrations cannot be linked"
        ))),
    }
}

/// Links group `group_id` to issue `key` of integration `integration_id`.
pub async fn link_existing_issue(
    state: &Services,
    group_id: i64,
    integration_id: i64,
    key: &str,
) -> Result<Linked, LinkError> {
    let key = key.trim();
    let (group, organization_id, integration, installation) = {
        let mut tx = state.db.begin().await?;
        let group = groups::find_group(&mut tx, group_id)
            .await?
            .ok_or_else(|| LinkError::NoGroup(format!("group {group_id} does not exist")))?;
        let project = projects::find_project(&mut tx, group.project_id)
            .await?
            .ok_or_else(|| LinkError::NoGroup(format!("group {group_id} has no project")))?;
        let organization_id = project.organization_id;
        let integration = integrations::find_integration(&mut tx, integration_id)
            .await?
            .filter(|i| i.status == 0)
            .ok_or_else(|| {
                LinkError::Conflict(format!("integration {integration_id} is not active"))
            })?;
        let installation = integrations::list_organization_integrations(&mut tx, integration_id)
            .await?
            .into_iter()
            .find(|oi| oi.organization_id == organization_id && oi.status == 0)
            .ok_or_else(|| {
                LinkError::Conflict(format!(
                    "integration {integration_id} is not installed on organization {organization_id}"
                ))
            })?;
        (group, organization_id, integration, installation)
    };
    // Outside any transaction: a slow provider holds no connection or lock.
    let found = ask_provider(state, &integration, key).await?;

    let now = crate::now_ms();
    let mut tx = state.db.begin_write().await?;
    let issue =
        match external::find_external_issue_by_key(&mut tx, organization_id, integration_id, key)
            .await?
        {
            Some(e) => e,
            None => {
                let metadata = match &found.web_url {
                    Some(u) => json!({"web_url": u}),
                    None => json!({}),
                };
                let new = NewExternalIssue {
                    organization_id,
                    integration_id,
                    key,
                    title: &found.title,
                    description: &found.description,
                    metadata,
                };
                external::insert_external_issue(&mut tx, &new, now).await?
            }
        };
    // The insert itself says whether the link is new: of two links racing, one writes the
    // activity and pushes.
    let created = external::link_group(&mut tx, group.id, group.project_id, issue.id, now).await?;
    let mut enqueued = Vec::new();
    if created {
        let data = json!({"provider": integration.provider, "title": found.title,
            "location": found.web_url, "label": key, "new": false});
        groups::insert_activity(
            &mut tx,
            group.project_id,
            group.id,
            activity::CREATE_ISSUE,
            None,
            &data,
            now,
        )
        .await?;
        // Only a user assignee goes out: a group without one (or with a team) leaves the
        // issue's assignee alone, as Sentry's after_link does.
        let assignee = groups::find_assignee(&mut tx, group.id).await?;
        if let Some(user_id) = assignee.and_then(|a| a.user_id)
            && switch(&installation, "sync_forward_assignment")
        {
            let job = SyncAssigneeOutbound {
                external_issue_id: issue.id,
                group_id: Some(group.id),
                user_id: Some(user_id),
                assign: true,
                source_integration_id: None,
                acting_user_id: None,
            };
            enqueue(&mut tx, &job).await?;
            enqueued.push("sync_assignee_outbound");
        }
        if switch(&installation, "sync_status_forward") {
            let job = SyncStatusOutbound {
                group_id: group.id,
                external_issue_id: issue.id,
                acting_user_id: None,
            };
            enqueue(&mut tx, &job).await?;
            enqueued.push("sync_status_outbound");
        }
    }
    tx.commit().await?;
    Ok(Linked {
        external_issue: issue,
        created,
        enqueued,
    })
}
