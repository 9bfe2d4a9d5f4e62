use serde::Serialize;

use super::Result;
use crate::db::Tx;
use crate::on_tx;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Project {
    pub id: i64,
    pub organization_id: i64,
    pub slug: String,
    pub name: String,
    pub status: i32,
    pub date_added: i64,
}

pub async fn insert_project(
    tx: &mut Tx,
    id: i64,
    organization_id: i64,
    slug: &str,
    name: &str,
    now: i64,
) -> Result<Project> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_as(
        "INSERT INTO projects (id, organization_id, slug, name, status, date_added) VALUES ($1, $2, $3, $4, 0, $5) \
         RETURNING id, organization_id, slug, name, status, date_added"
    )
    .bind(id)
    .bind(organization_id)
    .bind(slug)
    .bind(name)
    .bind(now)
    .fetch_one(c)
    .await
    })?)
}

pub async fn find_project(tx: &mut Tx, id: i64) -> Result<Option<Project>> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "SELECT id, organization_id, slug, name, status, date_added FROM projects WHERE id = $1"
    )
    .bind(id)
    .fetch_optional(c)
    .await)?)
}

pub async fn list_projects(tx: &mut Tx, organization_id: i64) -> Result<Vec<Project>> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "SELECT id, organization_id, slug, name, status, date_added FROM projects \
         WHERE organization_id = $1 ORDER BY slug"
    )
    .bind(organization_id)
    .fetch_all(c)
    .await)?)
}

/// Is `slug` used by another project of the organization (case-insensitive)?
pub async fn project_slug_taken(tx: &mut Tx, organization_id: i64, slug: &str) -> Result<bool> {
    let n: i64 = on_tx!(tx, |c| sqlx::query_scalar(
        "SELECT COUNT(*) FROM projects WHERE organization_id = $1 AND lower(slug) = lower($2)"
    )
    .bind(organization_id)
    .bind(slug)
    .fetch_one(c)
    .await)?;
    Ok(n > 0)
}

pub async fn add_project_team(tx: &mut Tx, project_id: i64, team_id: i64) -> Result<()> {
    on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO project_teams (project_id, team_id) VALUES ($1, $2) ON CONFLICT (project_id, team_id) DO NOTHING"
    )
    .bind(project_id)
    .bind(team_id)
    .execute(c)
    .await
    .map(|_| ())
    })?;
    Ok(())
}

pub async fn remove_project_team(tx: &mut Tx, project_id: i64, team_id: i64) -> Result<bool> {
    let n = on_tx!(tx, |c| sqlx::query(
        "DELETE FROM project_teams WHERE project_id = $1 AND team_id = $2"
    )
    .bind(project_id)
    .bind(team_id)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n > 0)
}

pub async fn list_project_team_ids(tx: &mut Tx, project_id: i64) -> Result<Vec<i64>> {
    Ok(on_tx!(tx, |c| sqlx::query_scalar(
        "SELECT team_id FROM project_teams WHERE project_id = $1 ORDER BY team_id"
    )
    .bind(project_id)
    .fetch_all(c)
    .await)?)
}

/// Is the user a member of a team that has the project, with an active team membership?
/// (Sentry's `Project.objects.get_by_users`, for one pair.)
pub async fn user_has_project(tx: &mut Tx, user_id: i64, project_id: i64) -> Result<bool> {
    let n: i64 = on_tx!(tx, |c| sqlx::query_scalar(
        "SELECT COUNT(*) FROM project_teams pt \
         JOIN organization_member_teams mt ON mt.team_id = pt.team_id AND mt.is_active \
         JOIN organization_members m ON m.id = mt.organizationmember_id \
         WHERE pt.project_id = $1 AND m.user_id = $2"
    )
    .bind(project_id)
    .bind(user_id)
    .fetch_one(c)
    .await)?;
    Ok(n > 0)
}

/// Deletes a project and everything that hangs off it, children first. Runs inside the
/// caller's transaction, so a failure leaves the project whole (Sentry cascades by hand too).
/// Every table with a foreign key to `projects` or `groups` needs its line here:
/// tests/project_delete.rs finds them in the schema catalog and fails on a missing one.
pub async fn delete_project_cascade(tx: &mut Tx, project_id: i64) -> Result<bool> {
    const CHILDREN: &[&str] = &[
        "DELETE FROM project_ownership WHERE project_id = $1",
        "DELETE FROM group_history WHERE project_id = $1",
        "DELETE FROM activities WHERE project_id = $1",
        "DELETE FROM group_subscriptions WHERE project_id = $1",
        "DELETE FROM group_assignees WHERE project_id = $1",
        "DELETE FROM group_links WHERE project_id = $1",
        "DELETE FROM groups WHERE project_id = $1",
        "DELETE FROM project_teams WHERE project_id = $1",
    ];
    for sql in CHILDREN {
        on_tx!(tx, |c| sqlx::query(*sql)
            .bind(project_id)
            .execute(&mut *c)
            .await
            .map(|_| ()))?;
    }
    let n = on_tx!(tx, |c| sqlx::query("DELETE FROM projects WHERE id = $1")
        .bind(project_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(n > 0)
}
