//! The sync-decision record: one append-only row per decision of the inbound and outbound
//! flows (why a change did or did not cross). Reads are newest first and keyset-paged on
//! `(at_ms, id)`.

use serde::Serialize;

use super::Result;
use crate::db::Tx;
use crate::on_tx;

/// What a decision is about and what caused it: the group, the external issue, the
/// delivery or job, and who acted (our user, or the provider's account).
#[derive(Debug, Clone, Default, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Refs {
    pub group_id: Option<i64>,
    pub organization_id: Option<i64>,
    pub integration_id: Option<i64>,
    pub external_issue_id: Option<i64>,
    pub external_key: Option<String>,
    pub delivery_id: Option<i64>,
    pub job_id: Option<String>,
    pub actor_user_id: Option<i64>,
    pub actor: Option<String>,
}

/// A stored decision.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Decision {
    pub id: i64,
    pub at_ms: i64,
    pub direction: String,
    pub field: String,
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub refs: Refs,
    pub outcome: String,
    pub reason: String,
    #[sqlx(rename = "before_value")]
    #[serde(rename = "before")]
    pub before: Option<String>,
    #[sqlx(rename = "after_value")]
    #[serde(rename = "after")]
    pub after: Option<String>,
    pub detail: String,
}

/// A decision to write (`id` is assigned by the database).
#[derive(Debug, Clone, Default)]
pub struct NewDecision {
    pub at_ms: i64,
    pub direction: &'static str,
    pub field: &'static str,
    pub refs: Refs,
    pub outcome: &'static str,
    pub reason: &'static str,
    pub before: Option<String>,
    pub after: Option<String>,
    pub detail: String,
}

const COLUMNS: &str = "id, at_ms, direction, field, group_id, organization_id, integration_id, \
    external_issue_id, external_key, delivery_id, job_id, actor_user_id, actor, outcome, reason, \
    before_value, after_value, detail";

/// Writes `d`, unless it names a group that no longer exists (deleted while the flow ran):
/// a group's decisions go with it, and a vanished one must not fail the caller's
/// transaction on the foreign key. Returns whether the row was written.
pub async fn insert_decision(tx: &mut Tx, d: &NewDecision) -> Result<bool> {
    let n = on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO sync_decisions (at_ms, direction, field, group_id, organization_id, integration_id, \
         external_issue_id, external_key, delivery_id, job_id, actor_user_id, actor, outcome, reason, \
         before_value, after_value, detail) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17 \
         WHERE $4 IS NULL OR EXISTS (SELECT 1 FROM groups WHERE id = $4)"
    )
    .bind(d.at_ms)
    .bind(d.direction)
    .bind(d.field)
    .bind(d.refs.group_id)
    .bind(d.refs.organization_id)
    .bind(d.refs.integration_id)
    .bind(d.refs.external_issue_id)
    .bind(&d.refs.external_key)
    .bind(d.refs.delivery_id)
    .bind(&d.refs.job_id)
    .bind(d.refs.actor_user_id)
    .bind(&d.refs.actor)
    .bind(d.outcome)
    .bind(d.reason)
    .bind(&d.before)
    .bind(&d.after)
    .bind(&d.detail)
    .execute(c)
    .await
    .map(|r| r.rows_affected())
    })?;
    Ok(n > 0)
}

/// Where a page starts: rows strictly older than this `(at_ms, id)`.
pub type Cursor = (i64, i64);

/// Whose timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeline {
    Group(i64),
    ExternalIssue(i64),
}

/// A group's or an external issue's decisions, newest first.
pub async fn list_timeline(
    tx: &mut Tx,
    of: Timeline,
    before: Option<Cursor>,
    limit: i64,
) -> Result<Vec<Decision>> {
    let (column, key) = match of {
        Timeline::Group(id) => ("group_id", id),
        Timeline::ExternalIssue(id) => ("external_issue_id", id),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM sync_decisions WHERE {column} = $1 \
         AND ($2 IS NULL OR (at_ms, id) < ($2, $3)) ORDER BY at_ms DESC, id DESC LIMIT $4"
    );
    let (at, id) = split(before);
    Ok(on_tx!(tx, |c| sqlx::query_as(sqlx::AssertSqlSafe(
        sql.clone()
    ))
    .bind(key)
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(c)
    .await)?)
}

/// The decisions of one or several external issues (every integration's `PROJ-1`), newest
/// first.
pub async fn list_decisions_of_issues(
    tx: &mut Tx,
    external_issue_ids: &[i64],
    limit: i64,
) -> Result<Vec<Decision>> {
    let mut out = Vec::new();
    for id in external_issue_ids {
        out.extend(list_timeline(tx, Timeline::ExternalIssue(*id), None, limit).await?);
    }
    out.sort_by_key(|d| std::cmp::Reverse((d.at_ms, d.id)));
    out.truncate(usize::try_from(limit).unwrap_or(0));
    Ok(out)
}

/// What `/api/v1/sync-decisions` filters on; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct DecisionFilter {
    pub reason: Option<String>,
    pub integration_id: Option<i64>,
    pub since_ms: Option<i64>,
    pub direction: Option<String>,
    pub outcome: Option<String>,
}

/// Decisions matching the filter, newest first.
pub async fn search_decisions(
    tx: &mut Tx,
    f: &DecisionFilter,
    before: Option<Cursor>,
    limit: i64,
) -> Result<Vec<Decision>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM sync_decisions WHERE ($1 IS NULL OR reason = $1) \
         AND ($2 IS NULL OR integration_id = $2) AND ($3 IS NULL OR at_ms >= $3) \
         AND ($4 IS NULL OR direction = $4) AND ($5 IS NULL OR outcome = $5) \
         AND ($6 IS NULL OR (at_ms, id) < ($6, $7)) ORDER BY at_ms DESC, id DESC LIMIT $8"
    );
    let (at, id) = split(before);
    Ok(on_tx!(tx, |c| sqlx::query_as(sqlx::AssertSqlSafe(
        sql.clone()
    ))
    .bind(&f.reason)
    .bind(f.integration_id)
    .bind(f.since_ms)
    .bind(&f.direction)
    .bind(&f.outcome)
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(c)
    .await)?)
}

/// The decisions a job wrote, newest first.
pub async fn list_job_decisions(tx: &mut Tx, job_id: &str, limit: i64) -> Result<Vec<Decision>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM sync_decisions WHERE job_id = $1 ORDER BY at_ms DESC, id DESC LIMIT $2"
    );
    Ok(on_tx!(tx, |c| sqlx::query_as(sqlx::AssertSqlSafe(
        sql.clone()
    ))
    .bind(job_id)
    .bind(limit)
    .fetch_all(c)
    .await)?)
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ReasonCount {
    pub direction: String,
    pub outcome: String,
    pub reason: String,
    pub count: i64,
}

/// Decisions since `since_ms` by direction, outcome and reason, most frequent first.
pub async fn count_reasons_since(tx: &mut Tx, since_ms: i64) -> Result<Vec<ReasonCount>> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_as(
        "SELECT direction, outcome, reason, COUNT(*) AS count FROM sync_decisions WHERE at_ms >= $1 \
         GROUP BY direction, outcome, reason ORDER BY count DESC, direction, reason"
    )
    .bind(since_ms)
    .fetch_all(c)
    .await
    })?)
}

/// Deletes up to `batch` decisions older than `before_ms`; returns how many went.
pub async fn purge_decisions_before(tx: &mut Tx, before_ms: i64, batch: i64) -> Result<u64> {
    Ok(on_tx!(tx, |c| sqlx::query(
        "DELETE FROM sync_decisions WHERE id IN \
         (SELECT id FROM sync_decisions WHERE at_ms < $1 ORDER BY at_ms, id LIMIT $2)"
    )
    .bind(before_ms)
    .bind(batch)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?)
}

fn split(c: Option<Cursor>) -> (Option<i64>, Option<i64>) {
    match c {
        Some((at, id)) => (Some(at), Some(id)),
        None => (None, None),
    }
}

impl NewDecision {
    /// The value before and after the change (status names; `user:ID`/`team:ID`).
    pub fn values(mut self, before: Option<String>, after: Option<String>) -> Self {
        self.before = before;
        self.after = after;
        self
    }
}
