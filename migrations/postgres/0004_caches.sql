-- Progress of resumable jobs (project cache invalidation): the last finished keyset cursor.
CREATE TABLE job_progress (
    job_id       TEXT PRIMARY KEY,
    cursor       BIGINT NOT NULL DEFAULT 0,
    pages        INTEGER NOT NULL DEFAULT 0,
    keys_deleted BIGINT NOT NULL DEFAULT 0,
    updated_at   BIGINT NOT NULL
);

-- Ownership rules text of a project (evaluation is the main product's; we invalidate).
CREATE TABLE project_ownership (
    project_id BIGINT PRIMARY KEY REFERENCES projects(id),
    raw        TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Recent groups of deleted projects, kept so that the project's cache invalidation (run after
-- the delete commits) still knows their ids. Purged with finished jobs after a day.
CREATE TABLE invalidation_backlog (
    project_id BIGINT NOT NULL,
    group_id   BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, group_id)
);
