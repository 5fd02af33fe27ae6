/**
 * Task lifecycle benchmark: how long from SubmitEvent until the agent process starts, and how
 * many tasks per second go through the whole lifecycle (submit, route, queue, lease, run,
 * report, complete), with real worker processes and a trivial shell agent.
 *
 * Baseline, in the same run: the same agent spawned directly by this process with the same
 * number of slots, which is the floor any queue in front of it can approach.
 *
 *   npx tsx bench/task-lifecycle.ts        (Redis from REDIS_URL; results in bench/results/)
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createLogger } from "@hookmesh/kit";
import { composeTasks, loadConfig } from "@hookmesh/tasks";
import { Redis } from "ioredis";
import { ActorSchema, EventSchema, Provider, SubjectSchema } from "../gen/hookmesh/events/v1/event_pb.js";
import { RouteSchema } from "../gen/hookmesh/tasks/v1/route_pb.js";
import { TaskState } from "../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../gen/hookmesh/tasks/v1/task_service_pb.js";
import { directSpawns } from "./processes.js";
import { BENCH_INSECURE, BENCH_TASKS_ENV } from "./settings.js";

const WORKERS = 2;
const SLOTS_PER_WORKER = 8;
const RATE_PER_SECOND = 20;
const LATENCY_TASKS = 200;
const THROUGHPUT_TASKS = 600;

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const agent = here("./trivial-agent.sh");
const dir = mkdtempSync(join(tmpdir(), "hookmesh-bench-"));
const log = join(dir, "starts.log");
writeFileSync(log, "");

const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const prefix = `hookmesh-bench:${randomUUID()}:`;
const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
const logger = createLogger({ service: "bench", level: "warn" });
const core = await composeTasks(loadConfig({ ...BENCH_TASKS_ENV, REDIS_URL: redisUrl, TASKS_REDIS_PREFIX: prefix }), {
  logger,
  env: {},
});
await core.routingRules.upsert(
  create(RouteSchema, {
    id: "bench",
    provider: Provider.GITHUB,
    trigger: { kind: { case: "mention", value: { mention: "" } } },
    priority: 500,
    profile: { runner: "command", allowedEnv: ["HOOKMESH_BENCH_LOG"] },
  }),
);
const { port } = await core.server.listen(0, "127.0.0.1");
const tasksUrl = `http://127.0.0.1:${port}`;
const tasks = createClient(TaskService, createGrpcTransport({ baseUrl: tasksUrl }));

const workers: ChildProcess[] = Array.from({ length: WORKERS }, (_, i) =>
  spawn(process.execPath, ["--import", import.meta.resolve("tsx"), here("../services/agent/src/main.ts")], {
    env: {
      ...process.env,
      ...BENCH_INSECURE,
      TASKS_URL: tasksUrl,
      AGENT_ID: `bench-${i}`,
      AGENT_PORT: "0",
      AGENT_HOST: "127.0.0.1",
      AGENT_COMMAND: agent,
      AGENT_CONCURRENCY: String(SLOTS_PER_WORKER),
      AGENT_WORKDIR: join(dir, "runs"),
      // The agent records its start outside its run directory, which the sandbox would refuse.
      AGENT_SANDBOX: "off",
      HOOKMESH_BENCH_LOG: log,
      LOG_LEVEL: "warn",
    },
    stdio: ["ignore", "ignore", "inherit"],
  }),
);

let subjects = 0;
async function submit(): Promise<string> {
  const event = create(EventSchema, {
    provider: Provider.GITHUB,
    deliveryId: randomUUID(),
    eventType: "issue_comment",
    action: "created",
    actor: create(ActorSchema, { login: "bench", association: "OWNER" }),
    // One subject per task: this measures the queue, not per-subject serialization.
    subject: create(SubjectSchema, { key: `github:bench/repo#${++subjects}` }),
    text: "@hookmesh go",
  });
  const { task } = await tasks.submitEvent({ event });
  return task!.id;
}

function starts(): Map<string, number> {
  return new Map(
    readFileSync(log, "utf8")
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => {
        const [id, ns] = line.split(" ");
        return [id!, Number(BigInt(ns!) / 1_000n) / 1_000];
      }),
  );
}

async function waitForStarts(ids: string[], timeoutMs: number): Promise<Map<string, number>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const seen = starts();
    if (ids.every((id) => seen.has(id))) return seen;
    if (Date.now() > deadline)
      throw new Error(`only ${ids.filter((id) => seen.has(id)).length} of ${ids.length} agents started`);
    await sleep(20);
  }
}

async function waitForSucceeded(ids: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const id of ids) {
    for (;;) {
      const { task } = await tasks.getTask({ id });
      if (task!.state === TaskState.SUCCEEDED) break;
      if (Date.now() > deadline) throw new Error(`task ${id} is ${TaskState[task!.state]}`);
      await sleep(20);
    }
  }
}

function percentile(values: number[], p: number): number {
  const sorted = values.toSorted((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const round = (n: number) => Math.round(n * 10) / 10;

/** The agent spawned directly, `count` times with `slots` at once: the floor. */
async function baseline(count: number, slots: number, ratePerSecond?: number) {
  const log = join(dir, "baseline.log");
  const { perSecond, startLatenciesMs } = await directSpawns(log, count, slots, ratePerSecond);
  rmSync(log, { force: true });
  return { perSecond, p50: percentile(startLatenciesMs, 50), p99: percentile(startLatenciesMs, 99) };
}

try {
  // Let the workers connect and start long-polling before anything is measured.
  await waitForSucceeded([await submit()], 30_000);

  // Latency at a fixed rate.
  const submittedAt = new Map<string, number>();
  const pending: Promise<void>[] = [];
  const begin = performance.now();
  for (let i = 0; i < LATENCY_TASKS; i++) {
    const due = begin + (i * 1000) / RATE_PER_SECOND;
    if (due > performance.now()) await sleep(due - performance.now());
    const at = Date.now();
    pending.push(submit().then((id) => void submittedAt.set(id, at)));
  }
  await Promise.all(pending);
  const latencyStarts = await waitForStarts([...submittedAt.keys()], 60_000);
  const latencies = [...submittedAt].map(([id, at]) => latencyStarts.get(id)! - at);

  // Throughput: a burst, until every task has succeeded.
  const burstStart = performance.now();
  const burst = await Promise.all(Array.from({ length: THROUGHPUT_TASKS }, () => submit()));
  await waitForSucceeded(burst, 120_000);
  const tasksPerSecond = THROUGHPUT_TASKS / ((performance.now() - burstStart) / 1000);

  const slots = WORKERS * SLOTS_PER_WORKER;
  const floorLatency = await baseline(LATENCY_TASKS, slots, RATE_PER_SECOND);
  const floorThroughput = await baseline(THROUGHPUT_TASKS, slots);

  const results = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, node: process.version },
    setup: {
      workers: WORKERS,
      slotsPerWorker: SLOTS_PER_WORKER,
      ratePerSecond: RATE_PER_SECOND,
      latencyTasks: LATENCY_TASKS,
      throughputTasks: THROUGHPUT_TASKS,
    },
    lifecycle: {
      submitToStartMs: { p50: round(percentile(latencies, 50)), p99: round(percentile(latencies, 99)) },
      tasksPerSecond: round(tasksPerSecond),
    },
    baseline: {
      spawnToStartMs: { p50: round(floorLatency.p50), p99: round(floorLatency.p99) },
      spawnsPerSecond: round(floorThroughput.perSecond),
    },
    ratios: {
      throughputVsBaseline: Math.round((tasksPerSecond / floorThroughput.perSecond) * 100) / 100,
      p50LatencyOverBaselineMs: round(percentile(latencies, 50) - floorLatency.p50),
    },
  };
  mkdirSync(here("./results"), { recursive: true });
  writeFileSync(here("./results/task-lifecycle.json"), `${JSON.stringify(results, null, 2)}\n`);
  console.log(JSON.stringify(results, null, 2));
} finally {
  for (const worker of workers) worker.kill("SIGTERM");
  await Promise.all(workers.map((w) => (w.exitCode === null ? once(w, "exit") : undefined)));
  await core.close();
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
  rmSync(dir, { recursive: true, force: true });
}
