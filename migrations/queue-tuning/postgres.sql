-- Applied after apalis' own migrations on every `migrate` (idempotent), because they create
-- the table. Fewer index writes per job on apalis.jobs: every fetch and every finish is an
-- UPDATE that cannot be HOT (status and lock_by are indexed), so each writes a new entry into
-- every index of the table, and apalis 1.0's migrations leave two duplicates behind.
-- Measured with `issuesync bench queue` (bench/RESULTS.md).

-- Duplicate of jobs_pkey (both unique on id).
DROP INDEX IF EXISTS apalis.unique_job_id;
-- Duplicate of idx_apalis_jobs_lock_by.
DROP INDEX IF EXISTS apalis.lidx;
-- Only held jobs have a lock_by; finished ones (NULL) need no entry. apalis' rescue finds
-- jobs by lock_by equality and ours by prefix, both of which imply NOT NULL.
CREATE INDEX IF NOT EXISTS issuesync_jobs_held ON apalis.jobs (lock_by) WHERE lock_by IS NOT NULL;
DROP INDEX IF EXISTS apalis.idx_apalis_jobs_lock_by;
-- The foreign key from lock_by to apalis.workers costs a lookup and a row lock on the worker
-- per fetched job (~10 % of a burn-down). Nothing deletes worker rows (apalis upserts them,
-- and so does nothing of ours), so it guards against nothing that happens.
ALTER TABLE apalis.jobs DROP CONSTRAINT IF EXISTS fk_worker_lock_by;
