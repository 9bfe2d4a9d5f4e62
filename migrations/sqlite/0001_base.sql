-- issuesync schema (SQLite). Times are epoch milliseconds (BIGINT) on both backends so that
-- comparisons and ordering behave the same everywhere. JSON is TEXT here, jsonb on Postgres.
-- Never name a table jobs/workers: apalis-sqlite owns Jobs/Workers and SQLite names are case-insensitive.

CREATE TABLE organizations (
    id          BIGINT PRIMARY KEY,            -- snowflake
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    date_added  BIGINT NOT NULL
);

CREATE TABLE users (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    is_active   BOOLEAN NOT NULL DEFAULT TRUE,
    date_added  BIGINT NOT NULL
);

CREATE TABLE user_emails (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    is_verified BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE UNIQUE INDEX user_emails_user_email ON user_emails (user_id, lower(email));
CREATE INDEX user_emails_email ON user_emails (lower(email));

CREATE TABLE teams (
    id              BIGINT PRIMARY KEY,        -- snowflake
    organization_id BIGINT NOT NULL REFERENCES organizations(id),
    slug            TEXT NOT NULL,
    name            TEXT NOT NULL,
    date_added      BIGINT NOT NULL,
    UNIQUE (organization_id, slug)
);

CREATE TABLE organization_members (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id BIGINT NOT NULL REFERENCES organizations(id),
    user_id         BIGINT NOT NULL REFERENCES users(id),
    role            TEXT NOT NULL DEFAULT 'member',
    date_added      BIGINT NOT NULL,
    UNIQUE (organization_id, user_id)
);

CREATE TABLE organization_member_teams (
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,
    organizationmember_id  BIGINT NOT NULL REFERENCES organization_members(id),
    team_id                BIGINT NOT NULL REFERENCES teams(id),
    is_active              BOOLEAN NOT NULL DEFAULT TRUE,
    UNIQUE (organizationmember_id, team_id)
);

CREATE TABLE projects (
    id              BIGINT PRIMARY KEY,        -- snowflake
    organization_id BIGINT NOT NULL REFERENCES organizations(id),
    slug            TEXT NOT NULL,
    name            TEXT NOT NULL,
    status          INTEGER NOT NULL DEFAULT 0,
    date_added      BIGINT NOT NULL,
    UNIQUE (organization_id, slug)
);
CREATE UNIQUE INDEX projects_org_slug_ci ON projects (organization_id, lower(slug));

CREATE TABLE project_teams (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id  BIGINT NOT NULL REFERENCES projects(id),
    team_id     BIGINT NOT NULL REFERENCES teams(id),
    UNIQUE (project_id, team_id)
);

CREATE TABLE groups (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id  BIGINT NOT NULL REFERENCES projects(id),
    title       TEXT NOT NULL,
    status      INTEGER NOT NULL DEFAULT 0,    -- GroupStatus: 0 unresolved, 1 resolved, 2 ignored
    substatus   INTEGER,                       -- GroupSubStatus, NULL when resolved
    first_seen  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL,
    resolved_at BIGINT
);
CREATE INDEX groups_project_last_seen ON groups (project_id, last_seen, id);

CREATE TABLE group_assignees (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id  BIGINT NOT NULL REFERENCES projects(id),
    group_id    BIGINT NOT NULL UNIQUE REFERENCES groups(id),
    user_id     BIGINT REFERENCES users(id),
    team_id     BIGINT REFERENCES teams(id),
    date_added  BIGINT NOT NULL,
    CHECK ((user_id IS NULL) <> (team_id IS NULL))
);

CREATE TABLE group_subscriptions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id  BIGINT NOT NULL REFERENCES projects(id),
    group_id    BIGINT NOT NULL REFERENCES groups(id),
    user_id     BIGINT REFERENCES users(id),
    team_id     BIGINT REFERENCES teams(id),
    is_active   BOOLEAN NOT NULL DEFAULT TRUE,
    reason      INTEGER NOT NULL DEFAULT 0,
    date_added  BIGINT NOT NULL,
    CHECK ((user_id IS NULL) <> (team_id IS NULL))
);
CREATE UNIQUE INDEX group_subscriptions_user ON group_subscriptions (group_id, user_id) WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX group_subscriptions_team ON group_subscriptions (group_id, team_id) WHERE team_id IS NOT NULL;

CREATE TABLE activities (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id  BIGINT NOT NULL REFERENCES projects(id),
    group_id    BIGINT NOT NULL REFERENCES groups(id),
    type        INTEGER NOT NULL,              -- ActivityType
    user_id     BIGINT,
    data        TEXT NOT NULL DEFAULT '{}',
    datetime    BIGINT NOT NULL
);
CREATE INDEX activities_group ON activities (group_id, id);

CREATE TABLE group_history (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id   BIGINT NOT NULL,
    group_id          BIGINT NOT NULL REFERENCES groups(id),
    project_id        BIGINT NOT NULL REFERENCES projects(id),
    release_id        BIGINT,
    user_id           BIGINT,
    team_id           BIGINT,
    status            INTEGER NOT NULL,        -- GroupHistoryStatus
    prev_history_id   BIGINT REFERENCES group_history(id),
    prev_history_date BIGINT,
    date_added        BIGINT NOT NULL
);
CREATE INDEX group_history_group ON group_history (group_id, date_added);

CREATE TABLE integrations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    provider    TEXT NOT NULL,                 -- vsts | jira | jira_server | discord
    external_id TEXT NOT NULL,
    name        TEXT NOT NULL,
    metadata    TEXT NOT NULL DEFAULT '{}',
    status      INTEGER NOT NULL DEFAULT 0,    -- 0 active, 1 disabled
    date_added  BIGINT NOT NULL,
    UNIQUE (provider, external_id)
);

CREATE TABLE organization_integrations (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id BIGINT NOT NULL REFERENCES organizations(id),
    integration_id  BIGINT NOT NULL REFERENCES integrations(id),
    config          TEXT NOT NULL DEFAULT '{}',
    status          INTEGER NOT NULL DEFAULT 0,
    date_added      BIGINT NOT NULL,
    UNIQUE (organization_id, integration_id)
);

CREATE TABLE integration_external_projects (
    id                          INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_integration_id BIGINT NOT NULL REFERENCES organization_integrations(id),
    external_id                 TEXT NOT NULL,
    name                        TEXT NOT NULL DEFAULT '',
    resolved_status             TEXT NOT NULL,
    unresolved_status           TEXT NOT NULL,
    UNIQUE (organization_integration_id, external_id)
);

CREATE TABLE external_issues (
    id                           INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id              BIGINT NOT NULL REFERENCES organizations(id),
    integration_id               BIGINT NOT NULL REFERENCES integrations(id),
    key                          TEXT NOT NULL,
    title                        TEXT NOT NULL DEFAULT '',
    description                  TEXT NOT NULL DEFAULT '',
    metadata                     TEXT NOT NULL DEFAULT '{}',
    date_added                   BIGINT NOT NULL,
    provider_assignee_updated_at BIGINT,
    UNIQUE (organization_id, integration_id, key)
);
CREATE INDEX external_issues_integration_key ON external_issues (integration_id, key);

CREATE TABLE group_links (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id     BIGINT NOT NULL REFERENCES groups(id),
    project_id   BIGINT NOT NULL REFERENCES projects(id),
    linked_type  INTEGER NOT NULL DEFAULT 1,   -- 1 = issue
    relationship INTEGER NOT NULL DEFAULT 1,   -- 1 = resolves
    linked_id    BIGINT NOT NULL,              -- external_issues.id
    date_added   BIGINT NOT NULL,
    UNIQUE (group_id, linked_type, linked_id)
);
CREATE INDEX group_links_linked ON group_links (linked_type, linked_id);

CREATE TABLE webhook_deliveries (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    provider       TEXT NOT NULL,
    delivery_key   TEXT NOT NULL,
    integration_id BIGINT REFERENCES integrations(id),
    received_at    BIGINT NOT NULL,
    headers        TEXT NOT NULL DEFAULT '{}',  -- only the headers we keep; never auth headers
    body           BLOB NOT NULL,
    job_id         TEXT,
    UNIQUE (provider, delivery_key)
);
CREATE INDEX webhook_deliveries_received ON webhook_deliveries (provider, received_at);
