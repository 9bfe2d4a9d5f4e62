#!/usr/bin/env python3
"""Side-by-side benchmark: issuesync and its peers on this machine, in one run.

    python3 bench/run.py                 # everything, N = 200,000; writes bench/RESULTS.md
    python3 bench/run.py --short         # CI: small N, issuesync only, no peers, no file
    python3 bench/run.py --only queue    # one mode: queue | receiver | e2e | invalidate

Needs PostgreSQL (BENCH_PG, default postgres://postgres@127.0.0.1:5432) and Redis
(BENCH_REDIS, default redis://127.0.0.1:6379), a release build (cargo build --release), and
for the peers `bench/peers/install.sh`. Each system gets a fresh database (or Redis DB)
and the same in-flight concurrency (2 processes x 8, or one process x 16).
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "bench", "peers")
TOOLS = os.path.join(PEERS, ".installed")
EXE = os.path.join(ROOT, "target", "release", "issuesync")
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379")
PROCS, CONC = 2, 8


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def sh(cmd, env=None, cwd=None, check=True, capture=True):
    full = dict(os.environ, RUST_LOG="warn", **(env or {}))
    r = subprocess.run(cmd, env=full, cwd=cwd, text=True, capture_output=capture)
    if check and r.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed ({r.returncode}): {r.stderr[-2000:]}")
    return r.stdout if capture else ""


def fresh_db(name):
    sh(["psql", f"{PG}/postgres", "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"])
    sh(["psql", f"{PG}/postgres", "-qc", f"CREATE DATABASE {name}"])
    return f"{PG}/{name}"


def psql_value(url, sql):
    return sh(["psql", url, "-tAc", sql]).strip()


def rss_mib(pids):
    best = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        best = max(best, int(line.split()[1]))
        except OSError:
            pass
    return best / 1024


def drain(procs, done, n, timeout=3600):
    """Waits until done() >= n; returns (seconds since the workers were spawned, max RSS)."""
    start, top = time.monotonic(), 0.0
    while True:
        top = max(top, rss_mib([p.pid for p in procs]))
        if done() >= n:
            return time.monotonic() - start, top
        if time.monotonic() - start > timeout:
            raise SystemExit("bench: not drained within the timeout")
        time.sleep(0.1)


def stop(procs):
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


# ---- queue burn-down -------------------------------------------------------------------

def ours_queue(n, backend, fetch):
    if backend == "postgres":
        url = fresh_db("bench_issuesync")
    else:
        path = "/tmp/issuesync-bench.db"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        url = f"sqlite://{path}"
    out = sh([EXE, "bench", "queue", "--jobs", str(n), "--processes", str(PROCS),
              "--concurrency", str(CONC), "--fetch-batch", str(fetch), "--json"],
             env={"DATABASE_URL": url})
    r = json.loads(out)
    return {"jobs_per_sec": r["jobs_per_sec"], "rss_mib": r["max_worker_rss_mib"],
            "insert_per_sec": r["inserts_per_sec"], "executions": r["executions"]}


def river_queue(n):
    url = fresh_db("bench_river")
    river = os.path.join(TOOLS, "bin", "riverqueue")
    sh([river, "migrate-up", "--database-url", url])
    out = sh([river, "bench", "--database-url", url, "-n", str(n), "--max-workers", str(PROCS * CONC)])
    m = re.search(r"overall job/sec \[\s*([\d.]+)\s*\]", out)
    if not m:
        raise SystemExit(f"bench: cannot read River's output: {out[-500:]}")
    return {"jobs_per_sec": float(m.group(1)), "rss_mib": None, "insert_per_sec": None}


def node(args, env, background=False):
    cmd = ["node", *args]
    cwd = os.path.join(TOOLS, "node")
    if background:
        return subprocess.Popen(cmd, cwd=cwd, env=dict(os.environ, **env),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return sh(cmd, env=env, cwd=cwd)


def sync_peer_scripts():
    for f in ("graphile.mjs", "bullmq.mjs"):
        with open(os.path.join(PEERS, f)) as src, open(os.path.join(TOOLS, "node", f), "w") as dst:
            dst.write(src.read())


def graphile_queue(n, mode):
    url = fresh_db("bench_graphile")
    env = {"DATABASE_URL": url}
    t = time.monotonic()
    node(["graphile.mjs", "insert", str(n)], env)
    insert = n / (time.monotonic() - t)
    procs = [node(["graphile.mjs", "work", str(CONC), mode], env, background=True) for _ in range(PROCS)]
    # graphile-worker deletes finished jobs: done = n - jobs left.
    left = lambda: int(psql_value(url, "SELECT count(*) FROM graphile_worker._private_jobs") or 0)
    secs, rss = drain(procs, lambda: n - left(), n)
    stop(procs)
    return {"jobs_per_sec": n / secs, "rss_mib": rss, "insert_per_sec": insert}


def bullmq_queue(n, backend):
    env = {"REDIS_URL": f"{REDIS}/13"}
    if backend == "postgres":
        env["DATABASE_URL"] = fresh_db("bench_bullmq")
    else:
        sh(["redis-cli", "-n", "13", "FLUSHDB"])
    t = time.monotonic()
    node(["bullmq.mjs", "insert", str(n), backend], env)
    insert = n / (time.monotonic() - t)
    procs = [node(["bullmq.mjs", "work", str(CONC), backend], env, background=True) for _ in range(PROCS)]

    def done():
        if backend == "redis":
            return int(sh(["redis-cli", "-n", "13", "ZCARD", "bull:bench:completed"]).strip() or 0)
        # psql, not a node process per poll: polling must not steal the workers' CPU.
        return int(psql_value(env["DATABASE_URL"], "SELECT count(*) FROM bullmq.job WHERE state = 'completed'") or 0)

    secs, rss = drain(procs, done, n)
    stop(procs)
    return {"jobs_per_sec": n / secs, "rss_mib": rss, "insert_per_sec": insert}


def celery_queue(n, prefetch):
    sh(["redis-cli", "-n", "12", "FLUSHDB"])
    py = os.path.join(TOOLS, "venv", "bin", "python")
    env = {"REDIS_URL": f"{REDIS}/12", "CELERY_PREFETCH": str(prefetch), "PYTHONPATH": PEERS}
    t = time.monotonic()
    sh([py, os.path.join(PEERS, "celery_bench.py"), "insert", str(n)], env=env)
    insert = n / (time.monotonic() - t)
    celery = os.path.join(TOOLS, "venv", "bin", "celery")
    procs = [subprocess.Popen([celery, "-A", "celery_bench", "worker", "--pool", "threads", "-c", str(CONC),
                               "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning",
                               "-n", f"bench{i}@%h"],
                              cwd=PEERS, env=dict(os.environ, **env),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(PROCS)]
    done = lambda: int(sh([py, os.path.join(PEERS, "celery_bench.py"), "count"], env=env).strip() or 0)
    secs, rss = drain(procs, done, n)
    stop(procs)
    return {"jobs_per_sec": n / secs, "rss_mib": rss, "insert_per_sec": insert}


def queue_mode(n, short):
    rows = []
    systems = [
        ("issuesync, Postgres", "per-job fetch (fetch_batch_size 1)", "kept", lambda: ours_queue(n, "postgres", 1)),
        ("issuesync, Postgres", "batched fetch (500, as graphile's localQueue) + batched completion", "kept", lambda: ours_queue(n, "postgres", 500)),
        ("issuesync, SQLite", "per-job fetch (fetch_batch_size 1)", "kept", lambda: ours_queue(n, "sqlite", 1)),
        ("issuesync, SQLite", "batched fetch (500) + batched completion", "kept", lambda: ours_queue(n, "sqlite", 500)),
    ]
    if not short:
        sync_peer_scripts()
        systems += [
            ("River for Rust 0.5.0, Postgres", "batched completer (its only mode)", "kept", lambda: river_queue(n)),
            ("graphile-worker 0.17.3, Postgres", "unbatched (defaults)", "deleted", lambda: graphile_queue(n, "unbatched")),
            ("graphile-worker 0.17.3, Postgres", "batched (localQueue 500, batch delays 0)", "deleted", lambda: graphile_queue(n, "batched")),
            ("BullMQ 6.7.0, Redis", "per-job (no batch mode)", "kept", lambda: bullmq_queue(n, "redis")),
            ("BullMQ 6.7.0, Postgres backend", "per-job (no batch mode)", "kept", lambda: bullmq_queue(n, "postgres")),
            ("Celery 5.7.0, Redis, acks_late", "prefetch 1 (per-job)", "deleted (no result backend)", lambda: celery_queue(n, 1)),
            ("Celery 5.7.0, Redis, acks_late", "prefetch 4 (default)", "deleted (no result backend)", lambda: celery_queue(n, 4)),
        ]
    for name, mode, finished, run in systems:
        log(f"queue: {name}, {mode}")
        r = run()
        log(f"queue: {name}, {mode}: {r['jobs_per_sec']:.0f} jobs/s")
        rows.append((name, mode, finished, r))
    return rows


# ---- the other modes (issuesync only) ----------------------------------------------------

def receiver_mode(short):
    out = {}
    for backend in ("sqlite", "postgres"):
        url = fresh_db("bench_receiver") if backend == "postgres" else "sqlite:///tmp/issuesync-bench-rcv.db"
        if backend == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists("/tmp/issuesync-bench-rcv.db" + suffix):
                    os.remove("/tmp/issuesync-bench-rcv.db" + suffix)
        secs = "3" if short else "20"
        log(f"receiver: {backend}, max rate, ours then the bare handler")
        r = json.loads(sh([EXE, "bench", "receiver", "--rates", "max", "--reference",
                           "--duration-secs", secs, "--json"], env={"DATABASE_URL": url}))
        ours_max = r["runs"][0]["achieved_rate"]
        # Fixed rates: 500/s and half of our own maximum, again side by side.
        half = max(1, int(ours_max / 2))
        log(f"receiver: {backend}, 500/s and {half}/s (half of our max)")
        fixed = json.loads(sh([EXE, "bench", "receiver", "--rates", f"500,{half}", "--reference",
                               "--duration-secs", secs, "--json"], env={"DATABASE_URL": url}))
        r["runs"] = fixed["runs"] + r["runs"]
        r["reference_runs"] = fixed["reference_runs"] + r["reference_runs"]
        r["acknowledged"] += fixed["acknowledged"]
        r["stored"] += fixed["stored"]
        r["half_of_max"] = half
        out[backend] = r
    return out


def e2e_mode(short):
    """The default outbound concurrency (4), then slots sized to the rate: 200/s × 20 ms × 2."""
    n = "300" if short else "10000"
    out = []
    for slots in (None, 8):
        url = fresh_db("bench_e2e")
        sh(["redis-cli", "-u", f"{REDIS}/11", "FLUSHDB"])
        log(f"e2e: {n} webhooks, outbound slots {slots or 'default'}")
        args = [EXE, "bench", "e2e", "--webhooks", n, "--rate-limit", "200", "--json"]
        if slots:
            args += ["--outbound-concurrency", str(slots)]
        out.append(json.loads(sh(args, env={"DATABASE_URL": url, "REDIS_URL": f"{REDIS}/11"})))
    return out


def pickup_mode(short):
    url = fresh_db("bench_pickup")
    log("pickup: idle enqueue -> start latency")
    return json.loads(sh([EXE, "bench", "pickup", "--samples", "30" if short else "200", "--json"],
                         env={"DATABASE_URL": url}))


def invalidate_mode(short):
    url = fresh_db("bench_invalidate")
    sh(["redis-cli", "-n", "10", "FLUSHDB"])
    groups, recent = ("5000", "2000") if short else ("200000", "80000")
    log(f"invalidate: {groups} groups")
    return json.loads(sh([EXE, "bench", "invalidate", "--groups", groups, "--recent", recent, "--json"],
                         env={"DATABASE_URL": url, "REDIS_URL": f"{REDIS}/10"}))


# ---- report ------------------------------------------------------------------------------

def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    settings = psql_value(f"{PG}/postgres", "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings "
                          "WHERE name IN ('synchronous_commit','fsync','shared_buffers','max_connections','wal_level','max_wal_size')")
    return {
        "cores": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
        "postgres": psql_value(f"{PG}/postgres", "SHOW server_version"), "postgres_settings": settings,
        "redis": sh(["redis-server", "--version"]).strip(),
    }


def fmt(x, digits=0):
    return "–" if x is None else f"{x:,.{digits}f}"


def report(n, queue, receiver, e2e, pickup, invalidate, facts, started):
    lines = ["# Benchmark results", "",
             f"One run of `python3 bench/run.py` on {time.strftime('%Y-%m-%d', time.gmtime(started))}, release build. "
             "All systems ran one after another on the same machine, the same PostgreSQL and Redis, "
             f"with the same in-flight concurrency ({PROCS} processes × {CONC}, or one process × {PROCS * CONC}). "
             "The machine is shared and noisy: compare the ratios of one run, not absolute figures across runs.", "",
             "## Machine", "",
             f"- {facts['cores']} cores: {facts['cpu']}; Linux {facts['kernel']}",
             f"- PostgreSQL {facts['postgres']} ({facts['postgres_settings']}), on the same machine",
             f"- {facts['redis']}", ""]
    if queue:
        ours = {m: r["jobs_per_sec"] for (name, m, _, r) in queue if name == "issuesync, Postgres"}
        best = max(ours.values()) if ours else None
        lines += ["## Queue burn-down", "",
                  f"{n:,} no-op jobs inserted first, then drained; jobs/s = N ÷ (workers spawned → queue empty). "
                  "River reports its own overall rate (insert and work overlap in its bench).", "",
                  "| system | mode | finished jobs | jobs/s | issuesync PG best ÷ this | worker RSS max |",
                  "|---|---|---|---:|---:|---:|"]
        for name, mode, finished, r in queue:
            ratio = f"{best / r['jobs_per_sec']:.2f}×" if best and r["jobs_per_sec"] else "–"
            lines.append(f"| {name} | {mode} | {finished} | {fmt(r['jobs_per_sec'])} | {ratio} | "
                         f"{fmt(r.get('rss_mib'), 1)} MiB |".replace("– MiB", "–"))
        lines.append("")
    if pickup:
        p = pickup["idle_pickup"]
        lines += ["## Idle enqueue → start (Postgres, LISTEN/NOTIFY, worker in another process)", "",
                  f"{p['samples']} samples, one at a time: p50 {p['p50_ms']:.1f} ms, p99 {p['p99_ms']:.1f} ms, max {p['max_ms']:.1f} ms.", ""]
    if receiver:
        lines += ["## Receiver: durable ADO webhook ingest", "",
                  "Load generator in its own process on loopback (`issuesync bench load`), a fresh delivery id per "
                  "request, latency from the scheduled send time. Every ok answer was committed first; "
                  "\"stored\" is the count of delivery rows afterwards. The reference is a bare axum + sqlx "
                  "handler (`bench reference-serve`: one autocommitted INSERT of the body per request, no parsing, "
                  "no authentication, no job) on the same database and pool size, run right after ours at each "
                  "rate under the same load generator. The fixed rates are 500/s and half of our maximum.", "",
                  "| backend | target | ok req/s | p50 ms | p99 ms | p999 ms | failed | bare ok req/s | bare p99 ms | ours ÷ bare |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for backend, r in receiver.items():
            bare_runs = r.get("reference_runs") or [None] * len(r["runs"])
            for run, bare in zip(r["runs"], bare_runs):
                target = "max" if run["target_rate"] is None else f"{run['target_rate']:.0f}/s"
                lat = run["latency"]
                b_rate = fmt(bare["achieved_rate"]) if bare else "–"
                b_p99 = f"{bare['latency']['p99_ms']:.1f}" if bare else "–"
                ratio = f"{100 * run['achieved_rate'] / bare['achieved_rate']:.0f} %" if bare and bare["achieved_rate"] else "–"
                lines.append(f"| {backend} | {target} | {fmt(run['achieved_rate'])} | {lat['p50_ms']:.1f} | "
                             f"{lat['p99_ms']:.1f} | {run['p999_ms']:.1f} | {run['failed']} | {b_rate} | {b_p99} | {ratio} |")
        for backend, r in receiver.items():
            lines.append("")
            lines.append(f"{backend}: acknowledged {r['acknowledged']:,}, stored {r['stored']:,}.")
            pg = r.get("pgbench")
            if pg:
                mx = next((x["achieved_rate"] for x in r["runs"] if x["target_rate"] is None), 0)
                lines.append(f"pgbench single-row insert of the same payload, {pg['clients']} clients: "
                             f"{pg['tps']:,.0f} tps (latency avg {pg['latency_avg_ms']:.2f} ms); "
                             f"issuesync at max = {100 * mx / pg['tps']:.0f} % of it.")
        lines.append("")
    if e2e:
        lines += ["## End to end: Jira Server assignee webhooks → assignments → outbound Jira", "",
                  "One worker process; the outbound integration's limit is shared through Redis; the mock Jira "
                  "answers after 20 ms. The average is over the whole seconds of the run.", "",
                  "| outbound slots | webhooks | stored in | drained in | assignments | requests | avg req/s | max in a second | limit | avg ÷ limit |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for e in e2e:
            lines.append(f"| {e['outbound_slots']} | {e['webhooks']:,} | {e['send_secs']:.1f} s | {e['drain_secs']:.1f} s | "
                         f"{e['assignments_applied']:,} | {e['outbound_requests']:,} | {e['outbound_per_sec_avg']:.1f} | "
                         f"{e['outbound_per_sec_max']} | {e['rate_limit_per_sec']} | "
                         f"{100 * e['outbound_per_sec_avg'] / e['rate_limit_per_sec']:.0f} % |")
        lines.append("")
    if invalidate:
        lines += ["## Cache invalidation", "",
                  f"{invalidate['groups']:,} groups, {invalidate['recent']:,} recent: batched job {invalidate['batched_secs']:.2f} s "
                  f"({invalidate['batched_round_trips']} Redis round trips) vs one DEL per key {invalidate['naive_secs']:.2f} s "
                  f"({invalidate['naive_round_trips']} round trips): {invalidate['speedup']:.1f}×.", ""]
    lines += targets(queue, receiver, pickup, e2e)
    lines += ["## Reproduce", "", "```sh", "cargo build --release", "bench/peers/install.sh   # pinned peers into bench/peers/.installed",
              f"python3 bench/run.py       # N = {n:,}; --only queue|receiver|e2e|pickup|invalidate", "```", ""]
    return "\n".join(lines)


def targets(queue, receiver, pickup, e2e=None):
    """The issue's targets, read off this run (a row only for what this run measured)."""
    rows = []
    yes = lambda ok: "yes" if ok else "**no**"
    if queue:
        rate = lambda name, prefix: max((r["jobs_per_sec"] for (n, m, _, r) in queue
                                         if n.startswith(name) and m.startswith(prefix)), default=None)
        ours = rate("issuesync, Postgres", "batched")
        for peer, mode in (("graphile-worker", "batched"), ("River", "")):
            theirs = rate(peer, mode)
            if ours and theirs:
                rows.append(f"| queue burn-down on Postgres ≥ 1.5× {peer} {mode} | "
                            f"{ours:,.0f} vs {theirs:,.0f} jobs/s = {ours / theirs:.2f}× | {yes(ours >= 1.5 * theirs)} |")
        rss = max((r["rss_mib"] for (n, _, _, r) in queue if n.startswith("issuesync") and r.get("rss_mib")), default=None)
        if rss:
            rows.append(f"| worker RSS ≤ 64 MiB during burn-down | {rss:.1f} MiB | {yes(rss <= 64)} |")
    if pickup:
        p99 = pickup["idle_pickup"]["p99_ms"]
        rows.append(f"| idle enqueue → start p99 ≤ 10 ms with LISTEN/NOTIFY | {p99:.1f} ms | {yes(p99 <= 10)} |")
    for backend, r in (receiver or {}).items():
        ours = next((x for x in r["runs"] if x["target_rate"] is None), None)
        bare = next((x for x in r.get("reference_runs", []) if x["target_rate"] is None), None)
        if ours and bare and bare["achieved_rate"]:
            pct = 100 * ours["achieved_rate"] / bare["achieved_rate"]
            rows.append(f"| {backend}: durable ingest at max ≥ 85 % of the bare handler | "
                        f"{ours['achieved_rate']:,.0f} vs {bare['achieved_rate']:,.0f} req/s = {pct:.0f} % | {yes(pct >= 85)} |")
        half = r.get("half_of_max")
        at = next((x for x in r["runs"] if half and x["target_rate"] == half), None)
        if at:
            p99 = at["latency"]["p99_ms"]
            ok = p99 <= 10 and at["achieved_rate"] >= 0.95 * half
            rows.append(f"| {backend}: p99 ≤ 10 ms at half of max ({half:,}/s) | p99 {p99:.1f} ms at "
                        f"{at['achieved_rate']:,.0f} req/s | {yes(ok)} |")
    for e in e2e or []:
        pct = 100 * e["outbound_per_sec_avg"] / e["rate_limit_per_sec"]
        rows.append(f"| e2e outbound ≥ 95 % of the rate limit ({e['outbound_slots']} slots) | "
                    f"{e['outbound_per_sec_avg']:.1f} of {e['rate_limit_per_sec']}/s = {pct:.0f} % | {yes(pct >= 95)} |")
    if not rows:
        return []
    return ["## Against the targets (read off this run)", "", "| target | measured | met |", "|---|---|---|",
            *rows, ""]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--short", action="store_true", help="CI: small N, issuesync only")
    ap.add_argument("--jobs", type=int, default=200_000)
    ap.add_argument("--only", choices=["queue", "receiver", "e2e", "pickup", "invalidate"])
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "RESULTS.md"))
    ap.add_argument("--exe", help="the issuesync binary (default: target/release/issuesync)")
    a = ap.parse_args()
    global EXE
    EXE = a.exe or EXE
    n = 2_000 if a.short else a.jobs
    if not os.path.exists(EXE):
        raise SystemExit("bench: build first: cargo build --release")
    started = time.time()
    want = lambda m: a.only in (None, m)
    queue = queue_mode(n, a.short) if want("queue") else None
    pickup = pickup_mode(a.short) if want("pickup") else None
    receiver = receiver_mode(a.short) if want("receiver") else None
    e2e = e2e_mode(a.short) if want("e2e") else None
    invalidate = invalidate_mode(a.short) if want("invalidate") else None
    text = report(n, queue, receiver, e2e, pickup, invalidate, machine(), started)
    if a.short:
        print(text)
        # The short run proves the harness works; it fails loudly when a mode broke.
        if receiver and any(r["acknowledged"] != r["stored"] for r in receiver.values()):
            raise SystemExit("bench: acknowledged and stored deliveries differ")
        if e2e and any(e["assignments_applied"] < e["webhooks"] for e in e2e):
            raise SystemExit("bench: not every assignment was applied")
        return
    with open(a.out, "w") as f:
        f.write(text)
    log(f"wrote {a.out}")


if __name__ == "__main__":
    main()
