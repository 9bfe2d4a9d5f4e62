// graphile-worker side of the burn-down. `insert N` adds N no-op jobs; `work C batched|unbatched`
// runs one worker process with concurrency C until killed. Batched = graphile's documented
// batching (localQueue 500, complete/fail batch delay 0), unbatched = its defaults.
import { run, makeWorkerUtils } from "graphile-worker";

const [, , cmd, arg, mode] = process.argv;
const connectionString = process.env.DATABASE_URL;

if (cmd === "insert") {
  const utils = await makeWorkerUtils({ connectionString });
  await utils.migrate();
  const n = Number(arg);
  for (let done = 0; done < n; done += 10000) {
    const k = Math.min(10000, n - done);
    await utils.addJobs(Array.from({ length: k }, () => ({ identifier: "noop", payload: {} })));
  }
  await utils.release();
} else if (cmd === "work") {
  const batched = mode === "batched";
  const runner = await run({
    connectionString,
    concurrency: Number(arg),
    maxPoolSize: Number(arg) + 2,
    noHandleSignals: false,
    pollInterval: 1000,
    taskList: { noop: async () => {} },
    logger: undefined,
    preset: batched
      ? { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } }
      : {},
  });
  await runner.promise;
} else {
  console.error("usage: graphile.mjs insert N | work C batched|unbatched");
  process.exit(2);
}
