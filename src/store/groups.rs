//! Groups (issues) and what hangs off them: assignee, activity, history.

use serde::Serialize;
use sqlx::types::Json;

use super::Result;
use crate::db::Tx;
use crate::on_tx;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Group {
    pub id: i64,
    pub project_id: i64,
    pub title: String,
    pub status: i32,
    pub substatus: Option<i32>,
    pub first_seen: i64,
    pub last_seen: i64,
    pub resolved_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Assignee {
    pub group_id: i64,
    pub user_id: Option<i64>,
    pub team_id: Option<i64>,
    pub date_added: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Activity {
    pub id: i64,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: i32,
    pub user_id: Option<i64>,
    #[schema(value_type = Object)]
    pub data: Json<serde_json::Value>,
    pub datetime: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct History {
    pub id: i64,
    pub status: i32,
    pub user_id: Option<i64>,
    pub team_id: Option<i64>,
    pub prev_history_id: Option<i64>,
    pub prev_history_date: Option<i64>,
    pub date_added: i64,
}

pub struct NewGroup<'a> {
    pub project_id: i64,
    pub title: &'a str,
    pub status: i32,
    pub substatus: Option<i32>,
    pub first_seen: i64,
    pub last_seen: i64,
}

pub async fn insert_group(tx: &mut Tx, g: &NewGroup<'_>) -> Result<Group> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "INSERT INTO groups (project_id, title, status, substatus, first_seen, last_seen) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         RETURNING id, project_id, title, status, substatus, first_seen, last_seen, resolved_at"
    )
    .bind(g.project_id)
    .bind(g.title)
    .bind(g.status)
    .bind(g.substatus)
    .bind(g.first_seen)
    .bind(g.last_seen)
    .fetch_one(c)
    .await)?)
}

pub async fn find_group(tx: &mut Tx, id: i64) -> Result<Option<Group>> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_as(
        "SELECT id, project_id, title, status, substatus, first_seen, last_seen, resolved_at FROM groups WHERE id = $1"
    )
    .bind(id)
    .fetch_optional(c)
    .await
    })?)
}

/// Groups of a project, newest first, keyset-paged by id.
pub async fn list_groups(
    tx: &mut Tx,
    project_id: i64,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Vec<Group>> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_as(
        "SELECT id, project_id, title, status, substatus, first_seen, last_seen, resolved_at FROM groups \
         WHERE project_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
    )
    .bind(project_id)
    .bind(before_id)
    .bind(limit)
    .fetch_all(c)
    .await
    })?)
}

pub async fn find_assignee(tx: &mut Tx, group_id: i64) -> Result<Option<Assignee>> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "SELECT group_id, user_id, team_id, date_added FROM group_assignees WHERE group_id = $1"
    )
    .bind(group_id)
    .fetch_optional(c)
    .await)?)
}

pub async fn list_activities(tx: &mut Tx, group_id: i64) -> Result<Vec<Activity>> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "SELECT id, type, user_id, data, datetime FROM activities WHERE group_id = $1 ORDER BY id"
    )
    .bind(group_id)
    .fetch_all(c)
    .await)?)
}

pub async fn list_history(tx: &mut Tx, group_id: i64) -> Result<Vec<History>> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "SELECT id, status, user_id, team_id, prev_history_id, prev_history_date, date_added \
         FROM group_history WHERE group_id = $1 ORDER BY id"
    )
    .bind(group_id)
    .fetch_all(c)
    .await)?)
}

/// What [`upsert_assignee`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssigneeUpsert {
    /// (user, team) of the assignee it replaced; None when the group had none.
    pub previous: Option<(Option<i64>, Option<i64>)>,
    /// False when the group already had exactly this assignee.
    pub changed: bool,
}

/// Sets a group's assignee with one upsert on the unique `group_id` index, so concurrent
/// assignments never collide: each one commits, and the last to commit wins. On Postgres
/// the upsert locks the row first (a no-op update when it exists) and returns the previous
/// assignee under that lock; SQLite has a single writer, so the row read first stays valid.
pub async fn upsert_assignee(
    tx: &mut Tx,
    project_id: i64,
    group_id: i64,
    user_id: Option<i64>,
    team_id: Option<i64>,
    now: i64,
) -> Result<AssigneeUpsert> {
    let previous = match tx {
        Tx::Pg(t) => {
            let (created, u, tm): (bool, Option<i64>, Option<i64>) = sqlx::query_as(
                "INSERT INTO group_assignees (project_id, group_id, user_id, team_id, date_added) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (group_id) DO UPDATE SET project_id = group_assignees.project_id \
                 RETURNING (xmax = 0), user_id, team_id",
            )
            .bind(project_id)
            .bind(group_id)
            .bind(user_id)
            .bind(team_id)
            .bind(now)
            .fetch_one(&mut **t)
            .await?;
            if created {
                return Ok(AssigneeUpsert {
                    previous: None,
                    changed: true,
                });
            }
            Some((u, tm))
        }
        Tx::Sqlite(_) => find_assignee(tx, group_id)
            .await?
            .map(|a| (a.user_id, a.team_id)),
    };
    let changed = on_tx!(tx, |c| sqlx::query(
        "INSERT INTO group_assignees (project_id, group_id, user_id, team_id, date_added) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (group_id) DO UPDATE SET user_id = excluded.user_id, \
           team_id = excluded.team_id, date_added = excluded.date_added \
         WHERE group_assignees.user_id IS DISTINCT FROM excluded.user_id \
            OR group_assignees.team_id IS DISTINCT FROM excluded.team_id"
    )
    .bind(project_id)
    .bind(group_id)
    .bind(user_id)
    .bind(team_id)
    .bind(now)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?
        > 0;
    Ok(AssigneeUpsert { previous, changed })
}

/// Deletes a group's assignee rows; returns how many went.
pub async fn delete_assignee(tx: &mut Tx, group_id: i64) -> Result<u64> {
    Ok(on_tx!(tx, |c| sqlx::query(
        "DELETE FROM group_assignees WHERE group_id = $1"
    )
    .bind(group_id)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?)
}

/// Subscribes a user to a group (an existing subscription is kept as it is).
pub async fn subscribe_user(
    tx: &mut Tx,
    project_id: i64,
    group_id: i64,
    user_id: i64,
    reason: i32,
    now: i64,
) -> Result<()> {
    on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO group_subscriptions (project_id, group_id, user_id, is_active, reason, date_added) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (group_id, user_id) WHERE user_id IS NOT NULL DO NOTHING"
    )
    .bind(project_id)
    .bind(group_id)
    .bind(user_id)
    .bind(true)
    .bind(reason)
    .bind(now)
    .execute(c)
    .await
    .map(|_| ())
    })?;
    Ok(())
}

/// Deletes the users' subscriptions of a given reason.
pub async fn unsubscribe_users(
    tx: &mut Tx,
    group_id: i64,
    user_ids: &[i64],
    reason: i32,
) -> Result<u64> {
    let mut n = 0;
    for uid in user_ids {
        n += on_tx!(tx, |c| {
            sqlx::query(
            "DELETE FROM group_subscriptions WHERE group_id = $1 AND user_id = $2 AND reason = $3"
        )
        .bind(group_id)
        .bind(uid)
        .bind(reason)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
        })?;
    }
    Ok(n)
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Subscription {
    pub user_id: Option<i64>,
    pub team_id: Option<i64>,
    pub is_active: bool,
    pub reason: i32,
}

pub async fn list_subscriptions(tx: &mut Tx, group_id: i64) -> Result<Vec<Subscription>> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_as(
        "SELECT user_id, team_id, is_active, reason FROM group_subscriptions WHERE group_id = $1 ORDER BY id"
    )
    .bind(group_id)
    .fetch_all(c)
    .await
    })?)
}

pub async fn insert_activity(
    tx: &mut Tx,
    project_id: i64,
    group_id: i64,
    kind: i32,
    user_id: Option<i64>,
    data: &serde_json::Value,
    now: i64,
) -> Result<()> {
    on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO activities (project_id, group_id, type, user_id, data, datetime) VALUES ($1, $2, $3, $4, $5, $6)"
    )
    .bind(project_id)
    .bind(group_id)
    .bind(kind)
    .bind(user_id)
    .bind(Json(data))
    .bind(now)
    .execute(c)
    .await
    .map(|_| ())
    })?;
    Ok(())
}

/// The latest history row of a group with one of `statuses`: (id, date_added).
pub async fn find_latest_history(
    tx: &mut Tx,
    group_id: i64,
    statuses: &[i32],
) -> Result<Option<(i64, i64)>> {
    if statuses.is_empty() {
        return Ok(None);
    }
    let list = statuses
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT id, date_added FROM group_history WHERE group_id = $1 AND status IN ({list}) ORDER BY date_added DESC, id DESC LIMIT 1"
    );
    Ok(on_tx!(tx, |c| sqlx::query_as(sqlx::AssertSqlSafe(
        sql.clone()
    ))
    .bind(group_id)
    .fetch_optional(c)
    .await)?)
}

pub struct NewHistory {
    pub organization_id: i64,
    pub group_id: i64,
    pub project_id: i64,
    pub user_id: Option<i64>,
    pub team_id: Option<i64>,
    pub status: i32,
    pub prev: Option<(i64, i64)>,
}

pub async fn insert_history(tx: &mut Tx, h: &NewHistory, now: i64) -> Result<()> {
    on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO group_history (organization_id, group_id, project_id, user_id, team_id, status, prev_history_id, prev_history_date, date_added) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    )
    .bind(h.organization_id)
    .bind(h.group_id)
    .bind(h.project_id)
    .bind(h.user_id)
    .bind(h.team_id)
    .bind(h.status)
    .bind(h.prev.map(|p| p.0))
    .bind(h.prev.map(|p| p.1))
    .bind(now)
    .execute(c)
    .await
    .map(|_| ())
    })?;
    Ok(())
}

/// Sets status/substatus (and resolved_at when given) unless the group already has them;
/// true when the row changed.
pub async fn set_group_status(
    tx: &mut Tx,
    group_id: i64,
    status: i32,
    substatus: Option<i32>,
    resolved_at: Option<i64>,
) -> Result<bool> {
    let n = on_tx!(tx, |c| {
        sqlx::query(
        "UPDATE groups SET status = $2, substatus = $3, resolved_at = COALESCE($4, resolved_at) \
         WHERE id = $1 AND (status <> $2 OR substatus IS DISTINCT FROM $3)"
    )
    .bind(group_id)
    .bind(status)
    .bind(substatus)
    .bind(resolved_at)
    .execute(c)
    .await
    .map(|r| r.rows_affected())
    })?;
    Ok(n > 0)
}

/// One keyset page of ids of a project's groups seen at or after `since_ms`, above `after_id`.
pub async fn recent_group_ids_page(
    tx: &mut Tx,
    project_id: i64,
    since_ms: i64,
    after_id: i64,
    limit: i64,
) -> Result<Vec<i64>> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_scalar(
        "SELECT id FROM groups WHERE project_id = $1 AND last_seen >= $2 AND id > $3 ORDER BY id LIMIT $4"
    )
    .bind(project_id)
    .bind(since_ms)
    .bind(after_id)
    .bind(limit)
    .fetch_all(c)
    .await
    })?)
}

pub async fn set_ownership(tx: &mut Tx, project_id: i64, raw: &str, now: i64) -> Result<()> {
    on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO project_ownership (project_id, raw, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (project_id) DO UPDATE SET raw = excluded.raw, updated_at = excluded.updated_at"
    )
    .bind(project_id)
    .bind(raw)
    .bind(now)
    .execute(c)
    .await
    .map(|_| ())
    })?;
    Ok(())
}

pub async fn find_ownership(tx: &mut Tx, project_id: i64) -> Result<Option<String>> {
    Ok(on_tx!(tx, |c| sqlx::query_scalar(
        "SELECT raw FROM project_ownership WHERE project_id = $1"
    )
    .bind(project_id)
    .fetch_optional(c)
    .await)?)
}

/// One keyset page of the backlog of a deleted project (see [`backlog_recent_groups`]).
pub async fn backlog_page(
    tx: &mut Tx,
    project_id: i64,
    after_id: i64,
    limit: i64,
) -> Result<Vec<i64>> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_scalar(
        "SELECT group_id FROM invalidation_backlog WHERE project_id = $1 AND group_id > $2 ORDER BY group_id LIMIT $3"
    )
    .bind(project_id)
    .bind(after_id)
    .bind(limit)
    .fetch_all(c)
    .await
    })?)
}

/// Keeps the ids of a project's recent groups before the project is deleted.
pub async fn backlog_recent_groups(
    tx: &mut Tx,
    project_id: i64,
    since_ms: i64,
    now: i64,
) -> Result<()> {
    on_tx!(tx, |c| sqlx::query(
        "INSERT INTO invalidation_backlog (project_id, group_id, created_at) \
         SELECT project_id, id, $3 FROM groups WHERE project_id = $1 AND last_seen >= $2 \
         ON CONFLICT (project_id, group_id) DO NOTHING"
    )
    .bind(project_id)
    .bind(since_ms)
    .bind(now)
    .execute(c)
    .await
    .map(|_| ()))?;
    Ok(())
}

/// Forgets backlog rows older than `before_ms`.
pub async fn purge_backlog(tx: &mut Tx, before_ms: i64) -> Result<u64> {
    Ok(on_tx!(tx, |c| sqlx::query(
        "DELETE FROM invalidation_backlog WHERE created_at < $1"
    )
    .bind(before_ms)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?)
}

/// Ids of the projects of a team.
pub async fn team_project_ids(tx: &mut Tx, team_id: i64) -> Result<Vec<i64>> {
    Ok(on_tx!(tx, |c| sqlx::query_scalar(
        "SELECT project_id FROM project_teams WHERE team_id = $1 ORDER BY project_id"
    )
    .bind(team_id)
    .fetch_all(c)
    .await)?)
}
