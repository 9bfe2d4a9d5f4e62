-- Operator sessions ended by a logout before they expired. Session cookies are signed, not
-- stored, so a logout writes the cookie's digest here until the session would have expired;
-- being in the database, it holds for every receiver process.
CREATE TABLE ops_revoked_sessions (
    digest     TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX ops_revoked_sessions_expiry ON ops_revoked_sessions (expires_at);
