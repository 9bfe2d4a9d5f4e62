//! Linked accounts at chat providers (a Discord user id → one of our users).

use serde::Serialize;

use super::Result;
use crate::db::Tx;
use crate::on_tx;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Identity {
    pub id: i64,
    pub provider: String,
    pub external_id: String,
    pub user_id: i64,
    pub date_added: i64,
}

/// Links an external account to a user; a Conflict when the account is linked already.
pub async fn insert_identity(
    tx: &mut Tx,
    provider: &str,
    external_id: &str,
    user_id: i64,
    now: i64,
) -> Result<Identity> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_as(
        "INSERT INTO identities (provider, external_id, user_id, date_added) VALUES ($1, $2, $3, $4) \
         RETURNING id, provider, external_id, user_id, date_added"
    )
    .bind(provider)
    .bind(external_id)
    .bind(user_id)
    .bind(now)
    .fetch_one(c)
    .await
    })?)
}

/// The user an external account is linked to.
pub async fn find_identity_user(
    tx: &mut Tx,
    provider: &str,
    external_id: &str,
) -> Result<Option<i64>> {
    Ok(on_tx!(tx, |c| sqlx::query_scalar(
        "SELECT user_id FROM identities WHERE provider = $1 AND external_id = $2"
    )
    .bind(provider)
    .bind(external_id)
    .fetch_optional(c)
    .await)?)
}

pub async fn list_user_identities(tx: &mut Tx, user_id: i64) -> Result<Vec<Identity>> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "SELECT id, provider, external_id, user_id, date_added FROM identities \
         WHERE user_id = $1 ORDER BY id"
    )
    .bind(user_id)
    .fetch_all(c)
    .await)?)
}

/// Unlinks; false when there was no such link.
pub async fn delete_identity(tx: &mut Tx, id: i64) -> Result<bool> {
    Ok(on_tx!(tx, |c| sqlx::query(
        "DELETE FROM identities WHERE id = $1"
    )
    .bind(id)
    .execute(c)
    .await
    .map(|r| r.rows_affected() > 0))?)
}
