-- floor.sql with the fetch cursor the queue uses on Postgres: each client starts its next
-- fetch after the last job of its previous one, so it does not walk the dead index entries of
-- jobs already taken. pgbench keeps :last_run_at and :last_id per client; floor.sh starts them
-- at the beginning of the queue (-D).
WITH took AS (
    UPDATE queue_jobs AS j SET state = 'running', holder = 'floor', lease = j.lease + 1, started_at = now()
    FROM (SELECT id FROM queue_jobs WHERE queue = 'bench' AND state IN ('pending', 'failed')
          AND run_at <= now() AND (run_at, id) > (:last_run_at::timestamptz, :last_id::text)
          ORDER BY run_at, id LIMIT 500 FOR UPDATE SKIP LOCKED) AS due,
         (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
    WHERE j.id = due.id
    RETURNING j.id, j.lease, j.run_at)
SELECT array_agg(id) AS ids, array_agg(lease) AS leases, array_agg(now()) AS times,
    COALESCE((array_agg(run_at ORDER BY run_at DESC, id DESC))[1], '-infinity') AS last_run_at,
    COALESCE((array_agg(id ORDER BY run_at DESC, id DESC))[1], '') AS last_id
FROM took \gset
UPDATE queue_jobs AS j SET state = 'done', attempts = j.attempts + 1, started_at = f.started_at,
    finished_at = f.finished_at
FROM unnest(:ids::text[], :leases::bigint[], :times::timestamptz[], :times::timestamptz[])
     AS f(id, lease, started_at, finished_at)
WHERE j.id = f.id AND j.lease = f.lease;
