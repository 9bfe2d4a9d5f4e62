//! Teams, organization members and their team memberships.

use serde::Serialize;

use super::Result;
use crate::db::Tx;
use crate::on_tx;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Team {
    pub id: i64,
    pub organization_id: i64,
    pub slug: String,
    pub name: String,
    pub date_added: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Member {
    pub id: i64,
    pub organization_id: i64,
    pub user_id: i64,
    pub role: String,
    pub date_added: i64,
}

pub async fn insert_team(
    tx: &mut Tx,
    id: i64,
    organization_id: i64,
    slug: &str,
    name: &str,
    now: i64,
) -> Result<Team> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_as(
        "INSERT INTO teams (id, organization_id, slug, name, date_added) VALUES ($1, $2, $3, $4, $5) \
         RETURNING id, organization_id, slug, name, date_added"
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

pub async fn find_team(tx: &mut Tx, id: i64) -> Result<Option<Team>> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "SELECT id, organization_id, slug, name, date_added FROM teams WHERE id = $1"
    )
    .bind(id)
    .fetch_optional(c)
    .await)?)
}

pub async fn list_teams(tx: &mut Tx, organization_id: i64) -> Result<Vec<Team>> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_as(
        "SELECT id, organization_id, slug, name, date_added FROM teams WHERE organization_id = $1 ORDER BY slug"
    )
    .bind(organization_id)
    .fetch_all(c)
    .await
    })?)
}

pub async fn insert_member(
    tx: &mut Tx,
    organization_id: i64,
    user_id: i64,
    role: &str,
    now: i64,
) -> Result<Member> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_as(
        "INSERT INTO organization_members (organization_id, user_id, role, date_added) VALUES ($1, $2, $3, $4) \
         RETURNING id, organization_id, user_id, role, date_added"
    )
    .bind(organization_id)
    .bind(user_id)
    .bind(role)
    .bind(now)
    .fetch_one(c)
    .await
    })?)
}

pub async fn find_member(tx: &mut Tx, id: i64) -> Result<Option<Member>> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_as(
        "SELECT id, organization_id, user_id, role, date_added FROM organization_members WHERE id = $1"
    )
    .bind(id)
    .fetch_optional(c)
    .await
    })?)
}

pub async fn find_member_by_user(
    tx: &mut Tx,
    organization_id: i64,
    user_id: i64,
) -> Result<Option<Member>> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "SELECT id, organization_id, user_id, role, date_added FROM organization_members \
         WHERE organization_id = $1 AND user_id = $2"
    )
    .bind(organization_id)
    .bind(user_id)
    .fetch_optional(c)
    .await)?)
}

pub async fn list_members(tx: &mut Tx, organization_id: i64) -> Result<Vec<Member>> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "SELECT id, organization_id, user_id, role, date_added FROM organization_members \
         WHERE organization_id = $1 ORDER BY id"
    )
    .bind(organization_id)
    .fetch_all(c)
    .await)?)
}

/// Adds a member to a team (active); adding twice is a no-op.
pub async fn add_member_to_team(tx: &mut Tx, member_id: i64, team_id: i64) -> Result<()> {
    on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO organization_member_teams (organizationmember_id, team_id, is_active) VALUES ($1, $2, $3) \
         ON CONFLICT (organizationmember_id, team_id) DO UPDATE SET is_active = excluded.is_active"
    )
    .bind(member_id)
    .bind(team_id)
    .bind(true)
    .execute(c)
    .await
    .map(|_| ())
    })?;
    Ok(())
}

/// Removes a member from a team; true when a row went.
pub async fn remove_member_from_team(tx: &mut Tx, member_id: i64, team_id: i64) -> Result<bool> {
    let r = on_tx!(tx, |c| {
        sqlx::query(
        "DELETE FROM organization_member_teams WHERE organizationmember_id = $1 AND team_id = $2"
    )
    .bind(member_id)
    .bind(team_id)
    .execute(c)
    .await
    .map(|r| r.rows_affected())
    })?;
    Ok(r > 0)
}

pub async fn list_member_team_ids(tx: &mut Tx, member_id: i64) -> Result<Vec<i64>> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_scalar(
        "SELECT team_id FROM organization_member_teams WHERE organizationmember_id = $1 AND is_active ORDER BY team_id"
    )
    .bind(member_id)
    .fetch_all(c)
    .await
    })?)
}

/// User ids of a team's active members.
pub async fn list_team_user_ids(tx: &mut Tx, team_id: i64) -> Result<Vec<i64>> {
    Ok(on_tx!(tx, |c| sqlx::query_scalar(
        "SELECT m.user_id FROM organization_member_teams mt \
         JOIN organization_members m ON m.id = mt.organizationmember_id \
         WHERE mt.team_id = $1 AND mt.is_active ORDER BY m.user_id"
    )
    .bind(team_id)
    .fetch_all(c)
    .await)?)
}

/// Deletes a member and their team links.
pub async fn delete_member(tx: &mut Tx, member_id: i64) -> Result<bool> {
    on_tx!(tx, |c| sqlx::query(
        "DELETE FROM organization_member_teams WHERE organizationmember_id = $1"
    )
    .bind(member_id)
    .execute(&mut *c)
    .await
    .map(|_| ()))?;
    let n = on_tx!(tx, |c| sqlx::query(
        "DELETE FROM organization_members WHERE id = $1"
    )
    .bind(member_id)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n > 0)
}

/// An active member of an organization with what a picker shows: the name, else the
/// first (verified first) email.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberLabel {
    pub user_id: i64,
    pub name: String,
    pub email: Option<String>,
}

pub async fn list_member_labels(tx: &mut Tx, organization_id: i64) -> Result<Vec<MemberLabel>> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "SELECT u.id AS user_id, u.name AS name, \
            (SELECT e.email FROM user_emails e WHERE e.user_id = u.id \
             ORDER BY e.is_verified DESC, e.id LIMIT 1) AS email \
         FROM organization_members m JOIN users u ON u.id = m.user_id \
         WHERE m.organization_id = $1 AND u.is_active ORDER BY u.id"
    )
    .bind(organization_id)
    .fetch_all(c)
    .await)?)
}
