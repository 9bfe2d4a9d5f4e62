//! SQL access, one module per aggregate. Every function takes a [`Tx`] so callers decide the
//! transaction boundary; the same statements run on SQLite and Postgres (`$n` placeholders,
//! epoch-ms BIGINT times, JSON through `sqlx::types::Json`).

pub mod decisions;
pub mod deliveries;
pub mod enqueue;
pub mod external;
pub mod groups;
pub mod identities;
pub mod integrations;
pub mod jobs;
pub mod organizations;
pub mod projects;
pub mod sessions;
pub mod teams;
pub mod users;

use crate::db;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A value the database cannot store (a NUL character in text on Postgres, say).
    #[error("value not storable: {0}")]
    BadValue(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Db(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if db::is_unique_violation(&e) {
            StoreError::Conflict(e.to_string())
        } else if db::is_unavailable(&e) {
            StoreError::Unavailable(e)
        } else if db::is_bad_value(&e) {
            StoreError::BadValue(e)
        } else {
            StoreError::Db(e)
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Turns `None` into `NotFound(what)`.
pub fn found<T>(row: Option<T>, what: impl Into<String>) -> Result<T> {
    row.ok_or_else(|| StoreError::NotFound(what.into()))
}
