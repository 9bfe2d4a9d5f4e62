"""Celery side of the burn-down (Redis broker, task_acks_late=True: acked after it ran).

`insert N` sends N no-op tasks; the workers are `celery -A celery_bench worker`; each task
increments a Redis counter, which the harness reads with `count`.
"""
import os
import sys

import redis
from celery import Celery

BROKER = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("celery_bench", broker=BROKER)
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=int(os.environ.get("CELERY_PREFETCH", "1")),
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
)
counter = redis.Redis.from_url(BROKER)


@app.task(name="noop")
def noop():
    counter.incr("celery_bench:done")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "insert":
        counter.delete("celery_bench:done")
        counter.delete("celery")
        n = int(sys.argv[2])
        with app.producer_or_acquire() as producer:
            for _ in range(n):
                noop.apply_async(producer=producer)
    elif cmd == "count":
        print(int(counter.get("celery_bench:done") or 0))
