-- Accounts of our users at a chat provider (Discord user ids), so that a click on a
-- message acts as that user. One of our users per external account.
CREATE TABLE identities (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    provider    TEXT NOT NULL,
    external_id TEXT NOT NULL,
    user_id     BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    date_added  BIGINT NOT NULL,
    UNIQUE (provider, external_id)
);
CREATE INDEX identities_user ON identities (user_id);
