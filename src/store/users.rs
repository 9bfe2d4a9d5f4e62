use serde::Serialize;

use super::Result;
use crate::db::Tx;
use crate::on_tx;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub is_active: bool,
    pub date_added: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct UserEmail {
    pub user_id: i64,
    pub email: String,
    pub is_verified: bool,
}

pub async fn insert_user(tx: &mut Tx, name: &str, now: i64) -> Result<User> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "INSERT INTO users (name, is_active, date_added) VALUES ($1, $2, $3) \
         RETURNING id, name, is_active, date_added"
    )
    .bind(name)
    .bind(true)
    .bind(now)
    .fetch_one(c)
    .await)?)
}

pub async fn add_user_email(
    tx: &mut Tx,
    user_id: i64,
    email: &str,
    is_verified: bool,
) -> Result<UserEmail> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "INSERT INTO user_emails (user_id, email, is_verified) VALUES ($1, $2, $3) \
         RETURNING user_id, email, is_verified"
    )
    .bind(user_id)
    .bind(email)
    .bind(is_verified)
    .fetch_one(c)
    .await)?)
}

pub async fn find_user(tx: &mut Tx, id: i64) -> Result<Option<User>> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "SELECT id, name, is_active, date_added FROM users WHERE id = $1"
    )
    .bind(id)
    .fetch_optional(c)
    .await)?)
}

pub async fn list_users(tx: &mut Tx, limit: i64) -> Result<Vec<User>> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "SELECT id, name, is_active, date_added FROM users ORDER BY id LIMIT $1"
    )
    .bind(limit)
    .fetch_all(c)
    .await)?)
}

pub async fn list_user_emails(tx: &mut Tx, user_id: i64) -> Result<Vec<UserEmail>> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "SELECT user_id, email, is_verified FROM user_emails WHERE user_id = $1 ORDER BY id"
    )
    .bind(user_id)
    .fetch_all(c)
    .await)?)
}

/// Active users with a verified email equal to `email`, case-insensitive (Sentry's
/// `get_many_by_email(is_verified=True)`), in id order.
pub async fn find_users_by_verified_email(tx: &mut Tx, email: &str) -> Result<Vec<User>> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "SELECT DISTINCT u.id, u.name, u.is_active, u.date_added FROM users u \
         JOIN user_emails e ON e.user_id = u.id \
         WHERE lower(e.email) = lower($1) AND e.is_verified AND u.is_active ORDER BY u.id"
    )
    .bind(email)
    .fetch_all(c)
    .await)?)
}

/// Is `email` (case-insensitive) an unverified email of an active user?
pub async fn is_unverified_email_of_a_user(tx: &mut Tx, email: &str) -> Result<bool> {
    let n: i64 = on_tx!(tx, |c| sqlx::query_scalar(
        "SELECT COUNT(*) FROM user_emails e JOIN users u ON u.id = e.user_id \
         WHERE lower(e.email) = lower($1) AND NOT e.is_verified AND u.is_active"
    )
    .bind(email)
    .fetch_one(c)
    .await)?;
    Ok(n > 0)
}
