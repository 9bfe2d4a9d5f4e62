-- The Postgres floor of a queue that keeps its finished jobs: per 500 jobs, one batched
-- SKIP LOCKED fetch UPDATE (committed asynchronously, as the queue's fetch is) and one
-- batched completion UPDATE under the fetched leases, with no application in between.
-- The same statements as the queue's storage/postgres.rs (fenced by the lease alone, as
-- there), on the same table and indexes.
-- Run with pgbench -M extended (the \gset arrays become bind parameters); see floor.sh.
WITH took AS (
    UPDATE queue_jobs AS j SET state = 'running', holder = 'floor', lease = j.lease + 1, started_at = now()
    FROM (SELECT id FROM queue_jobs WHERE queue = 'bench' AND state IN ('pending', 'failed')
          AND run_at <= now() ORDER BY run_at, id LIMIT 500 FOR UPDATE SKIP LOCKED) AS due,
         (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
    WHERE j.id = due.id
    RETURNING j.id, j.lease)
SELECT array_agg(id) AS ids, array_agg(lease) AS leases, array_agg(now()) AS times FROM took \gset
UPDATE queue_jobs AS j SET state = 'done', attempts = j.attempts + 1, started_at = f.started_at,
    finished_at = f.finished_at
FROM unnest(:ids::text[], :leases::bigint[], :times::timestamptz[], :times::timestamptz[])
     AS f(id, lease, started_at, finished_at)
WHERE j.id = f.id AND j.lease = f.lease;
