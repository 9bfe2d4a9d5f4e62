-- Why a change did or did not cross between us and a provider: one row per decision point of
-- the inbound and outbound sync flows (reason codes: docs/api.md, "Sync decisions").
-- Append-only; rows older than sync_decisions.retention_days are pruned by the hourly
-- maintenance job, and a group's rows go with the group (the project delete cascade).
CREATE TABLE sync_decisions (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms             BIGINT NOT NULL,
    direction         TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    field             TEXT NOT NULL CHECK (field IN ('status', 'assignee', 'comment')),
    group_id          BIGINT REFERENCES groups(id) ON DELETE CASCADE,
    organization_id   BIGINT,
    integration_id    BIGINT,
    external_issue_id BIGINT,             -- kept as history: no foreign key
    external_key      TEXT,
    delivery_id       BIGINT,
    job_id            TEXT,
    actor_user_id     BIGINT,             -- one of our users
    actor             TEXT,               -- the provider's account (id / name)
    outcome           TEXT NOT NULL CHECK (outcome IN ('applied', 'skipped', 'deferred', 'failed')),
    reason            TEXT NOT NULL,
    before_value      TEXT,
    after_value       TEXT,
    detail            TEXT NOT NULL DEFAULT ''
);
-- Newest first per group, per external issue, per reason and per integration; by job (the
-- job page); by time (the retention purge and the unfiltered list).
CREATE INDEX sync_decisions_group ON sync_decisions (group_id, at_ms, id);
CREATE INDEX sync_decisions_external_issue ON sync_decisions (external_issue_id, at_ms, id);
CREATE INDEX sync_decisions_reason ON sync_decisions (reason, at_ms, id);
CREATE INDEX sync_decisions_integration ON sync_decisions (integration_id, at_ms, id);
CREATE INDEX sync_decisions_job ON sync_decisions (job_id);
CREATE INDEX sync_decisions_at ON sync_decisions (at_ms, id);

-- The event order guard, per field: the provider sequence (ADO rev, Jira timestamp) of the
-- last applied assignee and status event of an external issue, compared and set in the
-- transaction that applies the change. Starts from the old shared watermark.
ALTER TABLE external_issues ADD COLUMN assignee_event_seq BIGINT;
ALTER TABLE external_issues ADD COLUMN status_event_seq BIGINT;
UPDATE external_issues SET assignee_event_seq = last_event_seq, status_event_seq = last_event_seq;
