//! External issues (Jira keys, ADO work item ids) and their links to groups.

use serde::Serialize;
use sqlx::types::Json;

use super::Result;
use crate::db::Tx;
use crate::on_tx;

pub const LINKED_TYPE_ISSUE: i32 = 1;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ExternalIssue {
    pub id: i64,
    pub organization_id: i64,
    pub integration_id: i64,
    pub key: String,
    pub title: String,
    pub description: String,
    #[schema(value_type = Object)]
    pub metadata: Json<serde_json::Value>,
    pub date_added: i64,
}

pub struct NewExternalIssue<'a> {
    pub organization_id: i64,
    pub integration_id: i64,
    pub key: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    /// What the provider told us besides (its web URL); `{}` when nothing.
    pub metadata: serde_json::Value,
}

pub async fn insert_external_issue(
    tx: &mut Tx,
    e: &NewExternalIssue<'_>,
    now: i64,
) -> Result<ExternalIssue> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_as(
        "INSERT INTO external_issues (organization_id, integration_id, key, title, description, metadata, date_added) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         RETURNING id, organization_id, integration_id, key, title, description, metadata, date_added"
    )
    .bind(e.organization_id)
    .bind(e.integration_id)
    .bind(e.key)
    .bind(e.title)
    .bind(e.description)
    .bind(Json(&e.metadata))
    .bind(now)
    .fetch_one(c)
    .await
    })?)
}

pub async fn find_external_issue(tx: &mut Tx, id: i64) -> Result<Option<ExternalIssue>> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "SELECT id, organization_id, integration_id, key, title, description, metadata, date_added \
         FROM external_issues WHERE id = $1"
    )
    .bind(id)
    .fetch_optional(c)
    .await)?)
}

/// The external issue `key` of an integration in an organization.
pub async fn find_external_issue_by_key(
    tx: &mut Tx,
    organization_id: i64,
    integration_id: i64,
    key: &str,
) -> Result<Option<ExternalIssue>> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "SELECT id, organization_id, integration_id, key, title, description, metadata, date_added \
         FROM external_issues WHERE organization_id = $1 AND integration_id = $2 AND key = $3"
    )
    .bind(organization_id)
    .bind(integration_id)
    .bind(key)
    .fetch_optional(c)
    .await)?)
}

/// Links a group to an external issue; linking twice is a no-op. True when the link is new.
pub async fn link_group(
    tx: &mut Tx,
    group_id: i64,
    project_id: i64,
    external_issue_id: i64,
    now: i64,
) -> Result<bool> {
    Ok(on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO group_links (group_id, project_id, linked_type, relationship, linked_id, date_added) \
         VALUES ($1, $2, 1, 1, $3, $4) ON CONFLICT (group_id, linked_type, linked_id) DO NOTHING"
    )
    .bind(group_id)
    .bind(project_id)
    .bind(external_issue_id)
    .bind(now)
    .execute(c)
    .await
    .map(|r| r.rows_affected() > 0)
    })?)
}

/// The external issues linked to a group.
pub async fn list_group_external_issues(tx: &mut Tx, group_id: i64) -> Result<Vec<ExternalIssue>> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_as(
        "SELECT e.id, e.organization_id, e.integration_id, e.key, e.title, e.description, e.metadata, e.date_added \
         FROM group_links l JOIN external_issues e ON e.id = l.linked_id \
         WHERE l.group_id = $1 AND l.linked_type = 1 ORDER BY e.id"
    )
    .bind(group_id)
    .fetch_all(c)
    .await
    })?)
}

/// A group affected by an external issue, with what the flows need about it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AffectedGroup {
    pub group_id: i64,
    pub project_id: i64,
    pub organization_id: i64,
    pub status: i32,
    pub substatus: Option<i32>,
    pub external_issue_id: i64,
}

/// Groups linked to the external issue `key` of an integration, in organizations that have
/// the integration installed (Sentry's `get_groups_by_external_issue`), ordered by group id.
pub async fn groups_by_external_issue(
    tx: &mut Tx,
    integration_id: i64,
    key: &str,
) -> Result<Vec<AffectedGroup>> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_as(
        "SELECT g.id AS group_id, g.project_id, p.organization_id, g.status, g.substatus, e.id AS external_issue_id \
         FROM external_issues e \
         JOIN organization_integrations oi ON oi.organization_id = e.organization_id AND oi.integration_id = e.integration_id AND oi.status = 0 \
         JOIN group_links l ON l.linked_id = e.id AND l.linked_type = 1 \
         JOIN groups g ON g.id = l.group_id \
         JOIN projects p ON p.id = g.project_id AND p.organization_id = e.organization_id \
         WHERE e.integration_id = $1 AND e.key = $2 ORDER BY g.id"
    )
    .bind(integration_id)
    .bind(key)
    .fetch_all(c)
    .await
    })?)
}

/// The groups linked to `key` of the integration in organizations it has no active
/// installation on (which the sync leaves alone), by group id.
pub async fn groups_without_installation(
    tx: &mut Tx,
    integration_id: i64,
    key: &str,
) -> Result<Vec<AffectedGroup>> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_as(
        "SELECT g.id AS group_id, g.project_id, p.organization_id, g.status, g.substatus, e.id AS external_issue_id \
         FROM external_issues e \
         JOIN group_links l ON l.linked_id = e.id AND l.linked_type = 1 \
         JOIN groups g ON g.id = l.group_id \
         JOIN projects p ON p.id = g.project_id AND p.organization_id = e.organization_id \
         WHERE e.integration_id = $1 AND e.key = $2 AND NOT EXISTS (SELECT 1 FROM organization_integrations oi \
           WHERE oi.organization_id = e.organization_id AND oi.integration_id = e.integration_id AND oi.status = 0) \
         ORDER BY g.id"
    )
    .bind(integration_id)
    .bind(key)
    .fetch_all(c)
    .await
    })?)
}

/// Which per-field event sequence of an external issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceField {
    Assignee,
    Status,
}

impl SequenceField {
    fn column(self) -> &'static str {
        match self {
            SequenceField::Assignee => "assignee_event_seq",
            SequenceField::Status => "status_event_seq",
        }
    }
}

/// The outcome of [`claim_event_sequence`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceClaim {
    /// The event is the newest seen for this field (or as new as it): apply it.
    Fresh,
    /// A newer event was applied already; `stored` is its sequence.
    Stale { stored: Option<i64> },
}

/// The event order guard: sets the field's sequence (ADO rev, Jira timestamp) of external
/// issue `id` to `seq` unless a newer one is stored; an equal one is applied again (a
/// replay). One conditional UPDATE, so it is a compare-and-set: on Postgres a concurrent
/// claim waits for this transaction's row lock and then re-checks against the committed
/// value; SQLite serializes writers. Call it in the transaction that applies the change.
pub async fn claim_event_sequence(
    tx: &mut Tx,
    id: i64,
    field: SequenceField,
    seq: i64,
) -> Result<SequenceClaim> {
    let col = field.column();
    let update = format!(
        "UPDATE external_issues SET {col} = $2 WHERE id = $1 AND ({col} IS NULL OR {col} <= $2)"
    );
    let n = on_tx!(tx, |c| sqlx::query(sqlx::AssertSqlSafe(update.clone()))
        .bind(id)
        .bind(seq)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    if n > 0 {
        return Ok(SequenceClaim::Fresh);
    }
    let select = format!("SELECT {col} FROM external_issues WHERE id = $1");
    let stored: Option<Option<i64>> = on_tx!(tx, |c| sqlx::query_scalar(sqlx::AssertSqlSafe(
        select.clone()
    ))
    .bind(id)
    .fetch_optional(c)
    .await)?;
    Ok(SequenceClaim::Stale {
        stored: stored.flatten(),
    })
}

/// Ids of the external issues with this key, in any integration (the ops page's search).
pub async fn external_issue_ids_by_key(tx: &mut Tx, key: &str) -> Result<Vec<i64>> {
    Ok(on_tx!(tx, |c| sqlx::query_scalar(
        "SELECT id FROM external_issues WHERE key = $1 ORDER BY id LIMIT 100"
    )
    .bind(key)
    .fetch_all(c)
    .await)?)
}
