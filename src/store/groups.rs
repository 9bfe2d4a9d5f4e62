//! Groups (issues) and what hangs off them: assignee, activity, history.

use serde::Serialize;
use sqlx::types::Json;

use super::Result;
use crate::db::Tx;
use crate::on_tx;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
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

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Activity {
    pub id: i64,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: i32,
    pub user_id: Option<i64>,
    pub data: Json<serde_json::Value>,
    pub datetime: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
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
