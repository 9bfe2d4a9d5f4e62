//! External issues (Jira keys, ADO work item ids) and their links to groups.

use serde::Serialize;
use sqlx::types::Json;

use super::Result;
use crate::db::Tx;
use crate::on_tx;

pub const LINKED_TYPE_ISSUE: i32 = 1;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ExternalIssue {
    pub id: i64,
    pub organization_id: i64,
    pub integration_id: i64,
    pub key: String,
    pub title: String,
    pub description: String,
    pub metadata: Json<serde_json::Value>,
    pub date_added: i64,
}

pub struct NewExternalIssue<'a> {
    pub organization_id: i64,
    pub integration_id: i64,
    pub key: &'a str,
    pub title: &'a str,
    pub description: &'a str,
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
    .bind(Json(serde_json::json!({})))
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

/// Links a group to an external issue; linking twice is a no-op.
pub async fn link_group(
    tx: &mut Tx,
    group_id: i64,
    project_id: i64,
    external_issue_id: i64,
    now: i64,
) -> Result<()> {
    on_tx!(tx, |c| {
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
    .map(|_| ())
    })?;
    Ok(())
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

/// Records the last provider sequence (ADO rev, Jira timestamp) applied to an external issue
/// of an integration; false (and nothing written) when `seq` is older than the stored one.
pub async fn advance_event_sequence(
    tx: &mut Tx,
    integration_id: i64,
    key: &str,
    seq: i64,
) -> Result<bool> {
    let stale: i64 = on_tx!(tx, |c| {
        sqlx::query_scalar(
        "SELECT COUNT(*) FROM external_issues WHERE integration_id = $1 AND key = $2 AND last_event_seq > $3"
    )
    .bind(integration_id)
    .bind(key)
    .bind(seq)
    .fetch_one(c)
    .await
    })?;
    if stale > 0 {
        return Ok(false);
    }
    on_tx!(tx, |c| sqlx::query(
        "UPDATE external_issues SET last_event_seq = $3 WHERE integration_id = $1 AND key = $2 \
         AND (last_event_seq IS NULL OR last_event_seq < $3)"
    )
    .bind(integration_id)
    .bind(key)
    .bind(seq)
    .execute(c)
    .await
    .map(|_| ()))?;
    Ok(true)
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
