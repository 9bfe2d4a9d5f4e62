#!/usr/bin/env python3
"""Side by side, in one run: the new queue's burn-down (defaults and tuned), the Postgres
floor (queue/bench/floor.sh), and, when the old binary is built, the app's current queue
(`issuesync bench queue`, apalis' storage), each on a fresh database, alternating.

    cargo build --release --workspace --bins --examples
    python3 queue/bench/compare.py [--jobs 200000] [--old-jobs 50000] [--rounds 2]

Prints one JSON line per measurement and a summary of the ratios. The machine is shared:
compare the ratios of one run, not absolute figures across runs.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NEW = os.path.join(ROOT, "target", "release", "examples", "burndown")
OLD = os.path.join(ROOT, "target", "release", "issuesync")
PG = "postgres://postgres@127.0.0.1:5432"


def sh(cmd, env=None):
    e = dict(os.environ, **(env or {}))
    out = subprocess.run(cmd, capture_output=True, text=True, env=e)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")
    return out.stdout


def fresh_pg(name):
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", name], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], check=True)
    return f"{PG}/{name}"


def drop_pg(name):
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", name], check=True)


def fresh_sqlite(name):
    path = f"/tmp/{name}.db"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    return f"sqlite://{path}"


def last_json(out):
    """The one JSON document a command printed (pretty or on one line, after any logs)."""
    start = out.find("{")
    try:
        return json.loads(out[start:])
    except json.JSONDecodeError:
        return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def new_drain(url, jobs, fetch=None, processes=2, concurrency=8):
    cmd = [NEW, "--database-url", url, "drain", "--jobs", str(jobs), "--processes", str(processes),
           "--concurrency", str(concurrency)]
    if fetch:
        cmd += ["--fetch-batch", str(fetch)]
    return last_json(sh(cmd))


def old_drain(url, jobs, fetch, processes=2):
    cmd = [OLD, "bench", "queue", "--jobs", str(jobs), "--processes", str(processes), "--concurrency", "8",
           "--fetch-batch", str(fetch), "--json"]
    return last_json(sh(cmd, env={"DATABASE_URL": url}))


def floor(url, jobs, variant="plain"):
    return last_json(sh([os.path.join(HERE, "floor.sh"), url, str(jobs), "2", variant]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=200_000)
    ap.add_argument("--old-jobs", type=int, default=50_000, help="jobs for the old default modes (slow)")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    have_old = os.path.exists(OLD)
    results = {}

    def record(key, r, rate_key="jobs_per_sec"):
        r = dict(r, mode=key)
        print(json.dumps(r), flush=True)
        results.setdefault(key, []).append(r[rate_key])

    for rnd in range(a.rounds):
        for mode in ["floor", "floor-cursor", "new-default", "old-default", "new-tuned", "old-tuned",
                     "new-default-c64", "new-default-c500", "sqlite-new-default", "sqlite-old-default"]:
            if mode.startswith("old") or mode == "sqlite-old-default":
                if not have_old:
                    continue
            name = f"qbench_{mode.replace('-', '_')}"
            if mode in ("floor", "floor-cursor"):
                url = fresh_pg(name)
                record(mode, floor(url, a.jobs, "cursor" if mode == "floor-cursor" else "plain"), "floor_jobs_per_sec")
                drop_pg(name)
            elif mode in ("new-default-c64", "new-default-c500"):
                url = fresh_pg(name)
                record(mode, new_drain(url, a.jobs, concurrency=int(mode.rsplit("c", 1)[1])))
                drop_pg(name)
            elif mode == "new-default":
                url = fresh_pg(name)
                record(mode, new_drain(url, a.jobs))
                drop_pg(name)
            elif mode == "new-tuned":
                url = fresh_pg(name)
                record(mode, new_drain(url, a.jobs, fetch=500))
                drop_pg(name)
            elif mode == "old-default":
                url = fresh_pg(name)
                record(mode, old_drain(url, a.old_jobs, 1))
                drop_pg(name)
            elif mode == "old-tuned":
                url = fresh_pg(name)
                record(mode, old_drain(url, a.jobs, 500))
                drop_pg(name)
            elif mode == "sqlite-new-default":
                record(mode, new_drain(fresh_sqlite(name), a.old_jobs, processes=1))
            elif mode == "sqlite-old-default":
                record(mode, old_drain(fresh_sqlite(name), a.old_jobs, 1, processes=1))
            time.sleep(2)

    best = {k: max(v) for k, v in results.items()}
    print(json.dumps({"summary_best_jobs_per_sec": best}))
    ratios = {}
    for f in ("floor", "floor-cursor"):
        for k in ("new-default", "new-tuned", "new-default-c500"):
            if f in best and k in best:
                ratios[f"{k} / {f}"] = round(best[k] / best[f], 3)
    for new, old in (("new-default", "old-default"), ("new-default", "old-tuned"), ("new-tuned", "old-tuned"),
                     ("sqlite-new-default", "sqlite-old-default")):
        if new in best and old in best:
            ratios[f"{new} / {old}"] = round(best[new] / best[old], 2)
    print(json.dumps({"ratios": ratios}))


if __name__ == "__main__":
    main()
