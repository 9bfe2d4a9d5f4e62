// BullMQ side of the burn-down, on Redis or on BullMQ's PostgreSQL backend.
// `insert N redis|postgres` adds N no-op jobs (addBulk); `work C redis|postgres` runs one
// worker process with concurrency C until killed; `count redis|postgres` prints
// completed,waiting+active. Finished jobs are kept (removeOnComplete: false), as ours are.
import { Queue, Worker, createPostgresBackend } from "bullmq";

const [, , cmd, arg, backendArg] = process.argv;
const backend = cmd === "count" ? arg : backendArg;
const name = "bench";

function options() {
  if (backend === "postgres") return { connection: { connectionString: process.env.DATABASE_URL, migrate: true } };
  const url = new URL(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
  return { connection: { host: url.hostname, port: Number(url.port || 6379), db: Number(url.pathname.slice(1) || 0) } };
}

const opts = options();
const factory = backend === "postgres" ? createPostgresBackend : undefined;
if (cmd === "insert") {
  const q = new Queue(name, opts, factory);
  await q.obliterate({ force: true }).catch(() => {});
  const n = Number(arg);
  for (let done = 0; done < n; done += 5000) {
    const k = Math.min(5000, n - done);
    await q.addBulk(Array.from({ length: k }, () => ({ name: "noop", data: {}, opts: { removeOnComplete: false } })));
  }
  await q.close();
  process.exit(0);
} else if (cmd === "work") {
  new Worker(name, async () => {}, { ...opts, concurrency: Number(arg) }, factory);
} else if (cmd === "count") {
  const q = new Queue(name, opts, factory);
  const c = await q.getJobCounts("completed", "waiting", "active", "prioritized", "delayed");
  console.log(`${c.completed},${c.waiting + c.active + c.prioritized + c.delayed}`);
  await q.close();
  process.exit(0);
} else {
  console.error("usage: bullmq.mjs insert N B | work C B | count B   (B = redis|postgres)");
  process.exit(2);
}
