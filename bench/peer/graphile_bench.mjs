// The peer benchmark: graphile-worker (a PostgreSQL job queue for Node)
// running the dispatch and lifecycle workloads of bench/dispatch_bench.cc,
// in one Node process: the worker pool (run() with a taskList, woken by
// LISTEN/NOTIFY, graphile-worker's default) and the creators calling
// addJob. Prints one line of JSON.
//
//   PEER_DATABASE_URL=postgresql://… node graphile_bench.mjs --tools_dir=DIR
//     [--one_creator_jobs=N] [--jobs=N] [--creators=N] [--concurrency=N] [--warmup=N]
//
// DIR holds node_modules/graphile-worker (bench/run.sh installs it).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";

function flags() {
  const out = {};
  for (const arg of process.argv.slice(2)) {
    const m = /^--([a-z_]+)=(.*)$/.exec(arg);
    if (!m) throw new Error(`unknown argument ${arg}`);
    out[m[1]] = m[2];
  }
  return out;
}

const opt = flags();
const toolsDir = opt.tools_dir;
const oneCreatorJobs = Number(opt.one_creator_jobs ?? 1000);
const jobs = Number(opt.jobs ?? 2000);
const creators = Number(opt.creators ?? 8);
const concurrency = Number(opt.concurrency ?? 64);
const warmup = Number(opt.warmup ?? 50);
const connectionString = process.env.PEER_DATABASE_URL;
if (!toolsDir || !connectionString) {
  throw new Error("--tools_dir and PEER_DATABASE_URL are required");
}

const pkgDir = join(toolsDir, "node_modules", "graphile-worker");
const version = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")).version;
const { run, Logger } = await import(pathToFileURL(join(pkgDir, "dist", "index.js")).href);

// Warnings and errors only: a log line per job is not the queue's work
// (the broker, likewise, logs no line per task).
const logger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") console.error(`graphile-worker ${level}: ${message}`);
});

function summarize(ms) {
  ms.sort((a, b) => a - b);
  const at = (p) => (ms.length ? ms[Math.min(ms.length - 1, Math.round((p / 100) * (ms.length - 1)))] : 0);
  return { count: ms.length, p50: at(50), p95: at(95), p99: at(99) };
}

// When each job's handler started, by the job's number.
const started = new Map();
let completed = 0;
let onComplete = null;

const runner = await run({
  connectionString,
  concurrency,
  // The pool serves the workers, the LISTEN connection and addJob.
  maxPoolSize: concurrency + 4,
  noHandleSignals: true,
  logger,
  taskList: {
    probe: async (payload) => {
      started.set(payload.n, performance.now());
    },
  },
});
runner.events.on("job:complete", () => {
  completed += 1;
  if (onComplete) onComplete();
});

function waitCompleted(n) {
  return new Promise((resolve) => {
    const check = () => {
      if (completed >= n) {
        onComplete = null;
        resolve();
      }
    };
    onComplete = check;
    check();
  });
}

// job:complete fires once the handler returned and the delete of the job
// was issued, not when it committed: the end of a run is when the job
// table is empty.
async function waitTableEmpty(client) {
  for (;;) {
    const { rows } = await client.query(
      "select exists (select 1 from graphile_worker._private_jobs) as any",
    );
    if (!rows[0].any) return;
  }
}

let next = 0;
// `count` jobs from `parallel` creators, each awaiting its addJob before the
// next; returns each job's addJob call → handler start in ms.
async function workload(count, parallel) {
  const issued = new Map();
  const first = next;
  const last = next + count;
  const base = completed;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < last) {
        const n = next++;
        issued.set(n, performance.now());
        await runner.addJob("probe", { n });
      }
    }),
  );
  await waitCompleted(base + count);
  const handlersDone = performance.now();
  await pool.withClient(waitTableEmpty);
  const durable = performance.now();
  const latencies = [];
  for (let n = first; n < last; n++) {
    if (started.has(n)) latencies.push(started.get(n) - issued.get(n));
  }
  return { latency: summarize(latencies), handlersDoneMs: handlersDone - t0, durableMs: durable - t0 };
}

// A plain pg client from graphile-worker's own dependency, for the check
// above.
const pg = (await import(pathToFileURL(join(toolsDir, "node_modules", "pg", "lib", "index.js")).href)).default;
const pool = {
  async withClient(fn) {
    const client = new pg.Client({ connectionString });
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end();
    }
  },
};

await workload(warmup, creators);
const one = await workload(oneCreatorJobs, 1);
const many = await workload(jobs, creators);
await runner.stop();

console.log(
  JSON.stringify({
    name: "graphile-worker",
    version,
    node: process.version,
    concurrency,
    one_creator: one.latency,
    creators,
    many_creators: many.latency,
    lifecycle_jobs: jobs,
    lifecycle_ms: many.durableMs,
    lifecycle_jobs_per_s: jobs / (many.durableMs / 1000),
    handlers_done_ms: many.handlersDoneMs,
  }),
);
