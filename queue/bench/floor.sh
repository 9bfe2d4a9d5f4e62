#!/bin/sh
# The Postgres floor for the burn-down (see floor.sql): a fresh database with the queue's
# schema and N pending jobs, drained by C pgbench clients, 500 jobs a batch.
#   queue/bench/floor.sh postgres://postgres@127.0.0.1:5432/qbench_floor 200000 2 [cursor]
# With "cursor", floor_cursor.sql: the same with the queue's fetch cursor.
# Prints jobs/s (500 × pgbench's tps; every batch is full, as N is a multiple of 500 × C).
set -eu
url=$1; jobs=${2:-200000}; clients=${3:-2}; variant=${4:-plain}
here=$(dirname "$0")
psql -q -X -v ON_ERROR_STOP=1 "$url" -f "$here/../migrations/postgres/0001_queue.sql"
psql -q -X -v ON_ERROR_STOP=1 "$url" -c "INSERT INTO queue_jobs (id, queue, kind, payload, max_attempts) \
  SELECT lpad(to_hex(g), 26, '0'), 'bench', 'noop', convert_to('{\"sleep_ms\":0}', 'UTF8'), 3 \
  FROM generate_series(1, $jobs) AS g"
psql -q -X "$url" -c "ANALYZE queue_jobs"
per_client=$((jobs / 500 / clients))
if [ "$variant" = cursor ]; then
  out=$(pgbench -n -M extended -f "$here/floor_cursor.sql" -D last_run_at=-infinity -D last_id=0 \
    -c "$clients" -j "$clients" -t "$per_client" "$url")
else
  out=$(pgbench -n -M extended -f "$here/floor.sql" -c "$clients" -j "$clients" -t "$per_client" "$url")
fi
tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
done=$(psql -At -X "$url" -c "SELECT COUNT(*) FROM queue_jobs WHERE state = 'done'")
echo "{\"floor_jobs_per_sec\": $(echo "$tps * 500" | bc), \"done\": $done, \"jobs\": $jobs, \"clients\": $clients, \"variant\": \"$variant\"}"
