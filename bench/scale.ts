/**
 * Scale curve (issue 11): signed GitHub webhooks per second through N gateway processes and N
 * tasks replicas, for N = 1 … BENCH_SCALE_MAX (3), on one Redis, each compared with N = 1 in
 * the same run.
 *
 * The replicas are deployed as `hookmesh start --replicas` wires them: every gateway is given
 * every tasks replica as a peer list (`TASKS_URL=a,b,c`, balanced by kit's client), the gateways
 * share one Redis key prefix (the duplicate check, the delivery log and the outbox's consumer
 * group) and the tasks replicas another (queue, records, routing rules). The load generator
 * (bench/ingest-load.ts) spreads SENDERS concurrent senders over the gateways' edges, each
 * body distinct and signed, for PHASE_SECONDS; then the run waits until every acknowledged
 * delivery is a task.
 *
 * Recorded for each N: acknowledged per second, the acknowledgment's p50/p99, the time until
 * every delivery was a task, CPU per delivery of all gateways and of all tasks replicas, and the
 * share of SubmitEvents calls each tasks replica served (the balance). No 5xx is allowed.
 *
 *   npm run bench:scale                        results under "latest" in bench/results/scale.json
 *   BENCH_LABEL=x BENCH_SCALE_MAX=2 BENCH_PHASE_SECONDS=5 npm run bench:scale
 */
import { type ChildProcess, execFileSync, fork } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { loadavg } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { metricValue, parsePrometheusText } from "@hookmesh/kit/testing";
import { Redis } from "ioredis";
import type { LoadPhase, LoadResult } from "./ingest-load.js";
import { cpuMs, freePort, machineFacts, recordRun, startService, untilAnswering } from "./processes.js";
import { BENCH_GATEWAY_ENV, BENCH_TASKS_ENV, BENCH_WEBHOOK_SECRET } from "./settings.js";

const MAX_REPLICAS = Number(process.env.BENCH_SCALE_MAX ?? 3);
const PHASE_SECONDS = Number(process.env.BENCH_PHASE_SECONDS ?? 10);
const SENDERS = 64;
const WARMUP_SECONDS = 3;
const DRAIN_LIMIT_MS = 120_000;
const HARD_LIMIT_MS = 900_000;

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const root = here("..");
const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const label = process.env.BENCH_LABEL ?? "latest";
const runPrefix = `hookmesh-bench:scale:${randomUUID()}:`;
const redis = new Redis(redisUrl);
const children = new Set<ChildProcess>();

const hardLimit = setTimeout(() => {
  console.error(`bench/scale.ts: gave up after ${HARD_LIMIT_MS / 1000} s`);
  for (const child of children) child.kill("SIGKILL");
  process.exit(1);
}, HARD_LIMIT_MS);
hardLimit.unref();

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

async function stop(processes: readonly ChildProcess[]): Promise<void> {
  await Promise.all(
    processes.map(async (child) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      await exited;
    }),
  );
}

const load = track(
  fork(here("./ingest-load.ts"), [], {
    execArgv: ["--import", "tsx"],
    env: { ...process.env, BENCH_SECRET: BENCH_WEBHOOK_SECRET },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  }),
);

function run(phase: LoadPhase): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    load.once("message", (reply: { result?: LoadResult; error?: string }) =>
      reply.result ? resolve(reply.result) : reject(new Error(reply.error)),
    );
    load.send(phase);
  });
}

/** `hookmesh_rpc_server_handled_total` of SubmitEvents at a tasks replica's admin port. */
async function submitEventsServed(admin: string): Promise<number> {
  const families = parsePrometheusText(await (await fetch(`${admin}/metrics`)).text());
  return metricValue(families, "hookmesh_rpc_server_handled_total", { rpc_method: "SubmitEvents" });
}

/** Milliseconds from now until `expected` tasks exist under `tasksPrefix`, or -1 past the limit. */
async function drained(tasksPrefix: string, expected: number): Promise<{ ms: number; tasks: number }> {
  const start = performance.now();
  for (;;) {
    const tasks = await redis.zcard(`${tasksPrefix}index:all`);
    if (tasks >= expected) return { ms: Math.round(performance.now() - start), tasks };
    if (performance.now() - start > DRAIN_LIMIT_MS) return { ms: -1, tasks };
    await sleep(20);
  }
}

const round = (n: number, places = 2) => Math.round(n * 10 ** places) / 10 ** places;

/** N gateways and N tasks replicas, loaded to saturation; what they did. */
async function measure(replicas: number): Promise<Record<string, unknown>> {
  const prefix = `${runPrefix}${replicas}:`;
  const tasksPrefix = `${prefix}tasks:`;
  const tasks: { child: ChildProcess; url: string; admin: string }[] = [];
  for (let i = 0; i < replicas; i++) {
    const [port, adminPort] = [await freePort(), await freePort()];
    const child = track(
      startService("services/tasks/src/main", {
        ...(BENCH_TASKS_ENV as Record<string, string>),
        REDIS_URL: redisUrl,
        TASKS_REDIS_PREFIX: tasksPrefix,
        TASKS_PORT: String(port),
        TASKS_ADMIN_PORT: String(adminPort),
      }),
    );
    tasks.push({ child, url: `http://127.0.0.1:${port}`, admin: `http://127.0.0.1:${adminPort}` });
  }
  for (const { admin } of tasks) await untilAnswering(`${admin}/readyz`);
  const gateways: { child: ChildProcess; edge: string }[] = [];
  for (let i = 0; i < replicas; i++) {
    const [port, httpPort, adminPort] = [await freePort(), await freePort(), await freePort()];
    const child = track(
      startService("gateway/src/main", {
        ...(BENCH_GATEWAY_ENV as Record<string, string>),
        REDIS_URL: redisUrl,
        GATEWAY_REDIS_PREFIX: `${prefix}gateway:`,
        GATEWAY_PORT: String(port),
        GATEWAY_HTTP_PORT: String(httpPort),
        GATEWAY_ADMIN_PORT: String(adminPort),
        TASKS_URL: tasks.map((t) => t.url).join(","),
      }),
    );
    gateways.push({ child, edge: `http://127.0.0.1:${httpPort}` });
  }
  for (const { edge } of gateways) await untilAnswering(`${edge}/readyz`);
  const url = gateways.map((g) => `${g.edge}/webhooks/github`).join(",");

  const warmup = await run({ mode: "closed", senders: 8, seconds: WARMUP_SECONDS, url });
  const warm = await drained(tasksPrefix, warmup.acknowledged);
  const processes = [...gateways.map((g) => g.child), ...tasks.map((t) => t.child)];
  const cpuBefore = new Map(processes.map((child) => [child, cpuMs(child.pid!)]));
  const servedBefore = await Promise.all(tasks.map((t) => submitEventsServed(t.admin)));
  const loadBefore = loadavg()[0]!;

  const result = await run({ mode: "closed", senders: SENDERS, seconds: PHASE_SECONDS, url });
  const untilAllTasks = await drained(tasksPrefix, warm.tasks + result.acknowledged);

  const cpuOf = (group: readonly ChildProcess[]) =>
    round(group.reduce((sum, child) => sum + cpuMs(child.pid!) - cpuBefore.get(child)!, 0) / result.acknowledged);
  const served = (await Promise.all(tasks.map((t) => submitEventsServed(t.admin)))).map(
    (after, i) => after - servedBefore[i]!,
  );
  const servedTotal = served.reduce((a, b) => a + b, 0);
  const entry = {
    ...result,
    loadAverage1m: { before: round(loadBefore), after: round(loadavg()[0]!) },
    untilAllTasks,
    cpuMsPerDelivery: { gateways: cpuOf(gateways.map((g) => g.child)), tasks: cpuOf(tasks.map((t) => t.child)) },
    submitEventsShareByTasksReplica: served.map((n) => round(servedTotal === 0 ? 0 : n / servedTotal)),
  };
  await stop(processes);
  const serverErrors = Object.keys(result.replies).filter((kind) => /^http 5|^error/.test(kind));
  if (serverErrors.length > 0)
    throw new Error(`${replicas} replicas: 5xx or errors: ${JSON.stringify(result.replies)}`);
  return entry;
}

let exitCode = 0;
try {
  execFileSync("npm", ["run", "build"], { cwd: root, stdio: "ignore" });
  const loadBefore = loadavg();
  const byReplicas: Record<string, Record<string, unknown>> = {};
  for (let n = 1; n <= MAX_REPLICAS; n++) {
    byReplicas[n] = await measure(n);
    console.error(`${n} gateways + ${n} tasks: ${JSON.stringify(byReplicas[n])}`);
  }
  const rate = (n: number) => (byReplicas[n] as unknown as LoadResult).perSecond;
  const results = {
    date: new Date().toISOString(),
    machine: machineFacts(loadBefore),
    setup: {
      phaseSeconds: PHASE_SECONDS,
      senders: SENDERS,
      note: "N gateways and N tasks replicas, each a compiled service in its own Node process, cleartext on loopback, one Redis; every gateway balances over every tasks replica (a peer list); the load generator spreads its senders over the gateways.",
    },
    byReplicas,
    throughputVsOneReplica: Object.fromEntries(
      Object.keys(byReplicas).map((n) => [n, round(rate(Number(n)) / rate(1), 3)]),
    ),
  };
  recordRun("scale", label, results);
} catch (err) {
  exitCode = 1;
  console.error(err);
} finally {
  await stop([...children]);
  let deleted = 0;
  for await (const keys of redis.scanStream({ match: `${runPrefix}*`, count: 1_000 }) as AsyncIterable<string[]>) {
    if (keys.length > 0) deleted += await redis.unlink(...keys);
  }
  console.error(`cleaned up ${deleted} keys under ${runPrefix}`);
  redis.disconnect();
}
process.exit(exitCode);
