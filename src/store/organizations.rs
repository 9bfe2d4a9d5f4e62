use serde::Serialize;

use super::Result;
use crate::db::Tx;
use crate::on_tx;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Organization {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub date_added: i64,
}

/// Inserts an organization with a given (snowflake) id.
pub async fn insert_organization(
    tx: &mut Tx,
    id: i64,
    slug: &str,
    name: &str,
    now: i64,
) -> Result<Organization> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "INSERT INTO organizations (id, slug, name, date_added) VALUES ($1, $2, $3, $4) \
         RETURNING id, slug, name, date_added"
    )
    .bind(id)
    .bind(slug)
    .bind(name)
    .bind(now)
    .fetch_one(c)
    .await)?)
}

pub async fn find_organization(tx: &mut Tx, id: i64) -> Result<Option<Organization>> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "SELECT id, slug, name, date_added FROM organizations WHERE id = $1"
    )
    .bind(id)
    .fetch_optional(c)
    .await)?)
}

pub async fn list_organizations(tx: &mut Tx, limit: i64) -> Result<Vec<Organization>> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "SELECT id, slug, name, date_added FROM organizations ORDER BY id LIMIT $1"
    )
    .bind(limit)
    .fetch_all(c)
    .await)?)
}

pub async fn organization_slug_taken(tx: &mut Tx, slug: &str) -> Result<bool> {
    let n: i64 = on_tx!(tx, |c| sqlx::query_scalar(
        "SELECT COUNT(*) FROM organizations WHERE lower(slug) = lower($1)"
    )
    .bind(slug)
    .fetch_one(c)
    .await)?;
    Ok(n > 0)
}
