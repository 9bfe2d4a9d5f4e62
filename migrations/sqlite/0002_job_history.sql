-- What the queue library does not keep: one row per attempt of a job (for `jobs show`), and a
-- ledger of diagnostic side effects (noop jobs) used to count executions in tests.
CREATE TABLE job_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      TEXT NOT NULL,
    queue       TEXT NOT NULL,
    job_name    TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    outcome     TEXT NOT NULL,   -- done | retry | dead | snoozed
    error       TEXT,
    worker      TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT NOT NULL
);
CREATE INDEX job_attempts_job ON job_attempts (job_id, id);
CREATE INDEX job_attempts_finished ON job_attempts (finished_at);

CREATE TABLE job_ledger (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     TEXT NOT NULL,
    marker     TEXT NOT NULL,
    attempt    INTEGER NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX job_ledger_marker ON job_ledger (marker);
