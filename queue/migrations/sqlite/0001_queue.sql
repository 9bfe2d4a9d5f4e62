-- The job queue; see migrations/postgres/0001_queue.sql for what each column means. Times
-- are milliseconds since the Unix epoch. The tables are STRICT, so a column holds only its
-- type; text written by raw SQL may still be any bytes, so the queries read it as BLOBs.
CREATE TABLE queue_jobs (
    id            TEXT NOT NULL PRIMARY KEY,
    queue         TEXT NOT NULL,
    kind          TEXT NOT NULL,
    payload       BLOB NOT NULL,
    state         TEXT NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'running', 'failed', 'dead', 'done')),
    run_at        INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts  INTEGER NOT NULL CHECK (max_attempts >= 1),
    snoozes       INTEGER NOT NULL DEFAULT 0 CHECK (snoozes >= 0),
    dedup_key     TEXT,
    partition_key TEXT,
    traceparent   TEXT,
    holder        TEXT,
    lease         INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    last_error    TEXT
) STRICT;

CREATE INDEX queue_jobs_fetch ON queue_jobs (queue, run_at, id) WHERE state IN ('pending', 'failed');
CREATE INDEX queue_jobs_running ON queue_jobs (holder) WHERE state = 'running';
CREATE UNIQUE INDEX queue_jobs_dedup ON queue_jobs (queue, dedup_key)
    WHERE dedup_key IS NOT NULL AND state IN ('pending', 'failed', 'running');

CREATE TABLE queue_attempts (
    id          INTEGER PRIMARY KEY,
    job_id      TEXT NOT NULL REFERENCES queue_jobs (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('retry', 'dead', 'snoozed', 'lost')),
    error       TEXT,
    worker      TEXT,
    started_at  INTEGER,
    finished_at INTEGER NOT NULL
) STRICT;
CREATE INDEX queue_attempts_job ON queue_attempts (job_id, id);

CREATE TABLE queue_progress (
    job_id     TEXT NOT NULL PRIMARY KEY REFERENCES queue_jobs (id) ON DELETE CASCADE,
    progress   TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE queue_workers (
    id           TEXT NOT NULL PRIMARY KEY,
    queue        TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
) STRICT;
