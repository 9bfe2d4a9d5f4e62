//! Operator sessions ended by a logout (the cookies themselves are signed, not stored).

use super::Result;
use crate::db::Tx;
use crate::on_tx;

/// Records that the session with this digest ended; drops entries past their expiry.
pub async fn revoke_session(tx: &mut Tx, digest: &str, expires_at: i64, now: i64) -> Result<()> {
    on_tx!(tx, |c| sqlx::query(
        "DELETE FROM ops_revoked_sessions WHERE expires_at < $1"
    )
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|_| ()))?;
    on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO ops_revoked_sessions (digest, expires_at) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING"
    )
    .bind(digest)
    .bind(expires_at)
    .execute(c)
    .await
    .map(|_| ())
    })?;
    Ok(())
}

pub async fn is_session_revoked(tx: &mut Tx, digest: &str) -> Result<bool> {
    Ok(on_tx!(tx, |c| sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM ops_revoked_sessions WHERE digest = $1"
    )
    .bind(digest)
    .fetch_one(c)
    .await)?
        > 0)
}
