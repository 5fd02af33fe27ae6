/**
 * Failover soak: many tasks over several real worker processes while whole worker process
 * trees (the worker and every agent it started) are SIGKILLed mid-run at random, and workers
 * are restarted gracefully at random. At the end every task must have SUCCEEDED exactly once:
 * none DEAD, FAILED, QUEUED or RUNNING, and no task ever ran twice at the same time (by the
 * agents' own start and end records). Exits 1 on any violation.
 *
 *   npm run soak                         (Redis from REDIS_URL; results in bench/results/)
 *   SOAK_KILLS=20 npm run soak           (a shorter run)
 *
 * Settings (environment): SOAK_KILLS (200), SOAK_WORKERS (4 alive at a time), SOAK_SLOTS (3 per
 * worker), SOAK_RATE (tasks submitted per second, 4), SOAK_LEASE_MS (the tasks service's
 * TASKS_LEASE_MS, 3000: short leases keep the soak fast; failover takes about a lease and a
 * half), SOAK_MAX_ATTEMPTS (3), SOAK_RESTART_EVERY (one graceful restart per that many kills, 10).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createLogger } from "@hookmesh/kit";
import { composeTasks, loadConfig } from "@hookmesh/tasks";
import { Redis } from "ioredis";
import { ActorSchema, EventSchema, Provider, SubjectSchema } from "../gen/hookmesh/events/v1/event_pb.js";
import { RouteSchema } from "../gen/hookmesh/tasks/v1/route_pb.js";
import { type Task, TaskStage, TaskState, TaskView } from "../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../gen/hookmesh/tasks/v1/task_service_pb.js";
import { BENCH_INSECURE, BENCH_TASKS_ENV } from "./settings.js";

const setting = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const KILLS = setting("SOAK_KILLS", 200);
const WORKERS = setting("SOAK_WORKERS", 4);
const SLOTS = setting("SOAK_SLOTS", 3);
const RATE = setting("SOAK_RATE", 4);
const LEASE_MS = setting("SOAK_LEASE_MS", 3_000);
const MAX_ATTEMPTS = setting("SOAK_MAX_ATTEMPTS", 3);
const RESTART_EVERY = setting("SOAK_RESTART_EVERY", 10);
/** Agents sleep 0.3 to 2 s: long enough to be killed mid-run, short enough to drain on restart. */
const AGENT_SLEEP_S = [0.3, 2];
/** Longest wait, after the last kill, for every task to end. */
const SETTLE_MS = 120_000;

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "hookmesh-soak-"));
const log = join(dir, "runs.log");
writeFileSync(log, "");

const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const prefix = `hookmesh-bench:soak:${randomUUID()}:`;
const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
const logger = createLogger({ service: "soak", level: "warn" });
const core = await composeTasks(
  loadConfig({
    ...BENCH_TASKS_ENV,
    REDIS_URL: redisUrl,
    TASKS_REDIS_PREFIX: prefix,
    TASKS_LEASE_MS: String(LEASE_MS),
    TASKS_MAX_ATTEMPTS: String(MAX_ATTEMPTS),
  }),
  { logger, env: {} },
);
await core.routingRules.upsert(
  create(RouteSchema, {
    id: "soak",
    provider: Provider.GITHUB,
    trigger: { kind: { case: "mention", value: { mention: "" } } },
    priority: 500,
    profile: { runner: "command", allowedEnv: ["HOOKMESH_SOAK_LOG"], maxRunTime: durationFromMs(30_000) },
  }),
);
const { port } = await core.server.listen(0, "127.0.0.1");
const tasksUrl = `http://127.0.0.1:${port}`;
const tasks = createClient(TaskService, createGrpcTransport({ baseUrl: tasksUrl }));

interface Worker {
  id: string;
  process: ChildProcess;
}
const workers = new Set<Worker>();
let started = 0;

function startWorker(): Worker {
  const id = `soak-${++started}`;
  const child = spawn(
    process.execPath,
    ["--import", import.meta.resolve("tsx"), here("../services/agent/src/main.ts")],
    {
      env: {
        ...process.env,
        ...BENCH_INSECURE,
        TASKS_URL: tasksUrl,
        AGENT_ID: id,
        AGENT_PORT: "0",
        AGENT_HOST: "127.0.0.1",
        AGENT_COMMAND: here("./soak-agent.sh"),
        AGENT_CONCURRENCY: String(SLOTS),
        AGENT_WORKDIR: join(dir, "runs"),
        AGENT_KILL_GRACE_MS: "300",
        AGENT_PROGRESS_INTERVAL_MS: "0",
        // A graceful restart lets the runs in progress finish (agents sleep at most 2 s).
        SHUTDOWN_GRACE_MS: "5000",
        HOOKMESH_SOAK_LOG: log,
        // Unsandboxed: the soak's evidence is each agent's start and end record, written on the
        // host outside its run directory, which the sandbox rightly forbids; the sandbox has its
        // own tests (services/agent/test/sandbox.test.ts) and plays no part in failover.
        AGENT_SANDBOX: "off",
        LOG_LEVEL: "error",
      },
      // Its own process group, so that the whole tree can be killed at once.
      detached: true,
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
  const worker = { id, process: child };
  workers.add(worker);
  return worker;
}

/** Every process below `pid` (the agents sit in process groups of their own). */
function descendants(pid: number): { pid: number; pgid: number }[] {
  const table = execFileSync("ps", ["-eo", "pid=,ppid=,pgid=,stat="], { encoding: "utf8" })
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter((cols) => cols.length === 4 && !cols[3]!.startsWith("Z"))
    .map(([p, pp, g]) => ({ pid: Number(p), ppid: Number(pp), pgid: Number(g) }));
  const found: { pid: number; pgid: number }[] = [];
  const walk = (parent: number) => {
    for (const row of table.filter((r) => r.ppid === parent)) {
      found.push(row);
      walk(row.pid);
    }
  };
  walk(pid);
  return found;
}

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

interface RunRecord {
  taskId: string;
  pgid: number;
  startMs: number;
  endMs?: number;
}

/** The agents' start and end records, one per run (a run is one agent process group). */
function runRecords(): RunRecord[] {
  const runs = new Map<string, RunRecord>();
  for (const line of readFileSync(log, "utf8").split("\n")) {
    const [kind, taskId, pgid, ns] = line.split(" ");
    if (!taskId || !pgid || !ns) continue;
    const key = `${taskId} ${pgid}`;
    const ms = Number(BigInt(ns) / 1_000n) / 1_000;
    if (kind === "start") runs.set(key, { taskId, pgid: Number(pgid), startMs: ms });
    else if (kind === "end") {
      const run = runs.get(key);
      if (run) run.endMs = ms;
    }
  }
  return [...runs.values()];
}

/** When each killed agent process group died: a run without an end record ended then. */
const killedAt = new Map<number, number>();
/** Tasks whose run was killed, and when: the clock of "time to resume". */
const interrupted: { taskId: string; atMs: number }[] = [];

/** SIGKILLs a worker and every process it started, mid-run; false if it was running nothing. */
function killTree(worker: Worker): boolean {
  const pid = worker.process.pid!;
  const tree = descendants(pid);
  const openRuns = runRecords().filter((r) => r.endMs === undefined);
  const agentGroups = new Set(tree.map((p) => p.pgid).filter((g) => g !== pid));
  const victims = openRuns.filter((r) => agentGroups.has(r.pgid));
  if (victims.length === 0) return false;
  killGroup(pid);
  for (const group of agentGroups) killGroup(group);
  const now = Date.now();
  for (const group of agentGroups) killedAt.set(group, now);
  for (const run of victims) interrupted.push({ taskId: run.taskId, atMs: now });
  workers.delete(worker);
  return true;
}

async function restart(worker: Worker): Promise<void> {
  workers.delete(worker);
  worker.process.kill("SIGTERM");
  startWorker();
  await once(worker.process, "exit");
}

let subjects = 0;
const submitted: string[] = [];
async function submit(): Promise<void> {
  const seconds = (AGENT_SLEEP_S[0]! + Math.random() * (AGENT_SLEEP_S[1]! - AGENT_SLEEP_S[0]!)).toFixed(2);
  const event = create(EventSchema, {
    provider: Provider.GITHUB,
    deliveryId: randomUUID(),
    eventType: "issue_comment",
    action: "created",
    actor: create(ActorSchema, { login: "soak", association: "OWNER" }),
    // A few tasks share each subject, so failover also meets the per-subject locks.
    subject: create(SubjectSchema, { key: `github:soak/repo#${Math.floor(subjects++ / 3)}` }),
    text: `@hookmesh sleep=${seconds}`,
  });
  const { task } = await tasks.submitEvent({ event });
  submitted.push(task!.id);
}

/** The task's stages, as its timeline tells them: what happened to it and why. */
async function story(id: string): Promise<string> {
  const stages: string[] = [];
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), 2_000);
  try {
    for await (const event of await core.engine.watch(id, "", stop.signal)) {
      if (event.kind.case !== "stage") continue;
      stages.push(`${TaskStage[event.kind.value.stage]} (attempt ${event.attempt}): ${event.kind.value.detail}`);
    }
  } catch {
    // Still running: what the timeline said so far.
  } finally {
    clearTimeout(timer);
  }
  return stages.join("; ");
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = values.toSorted((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const round = (n: number) => Math.round(n * 10) / 10;
const violations: string[] = [];
let kills = 0;
let restarts = 0;
let exitCode = 1;

try {
  for (let i = 0; i < WORKERS; i++) startWorker();
  const begin = Date.now();

  // Submits at a steady rate until the last kill, so that there is always work to kill.
  let submitting = true;
  const submitter = (async () => {
    while (submitting) {
      await submit();
      await sleep(1000 / RATE);
    }
  })();

  while (kills < KILLS) {
    await sleep(300 + Math.random() * 1200);
    const alive = [...workers];
    const victim = alive[Math.floor(Math.random() * alive.length)];
    if (!victim) continue;
    if (kills > 0 && kills % RESTART_EVERY === 0 && restarts < kills / RESTART_EVERY) {
      await restart(victim);
      restarts++;
      continue;
    }
    if (!killTree(victim)) continue;
    kills++;
    // The replacement comes up to a second and a half later, as a supervisor would start it.
    setTimeout(startWorker, Math.random() * 1500);
    if (kills % 20 === 0) console.error(`${kills} kills, ${submitted.length} tasks`);
  }
  submitting = false;
  await submitter;

  // Every task ends, or the soak says which did not.
  const deadline = Date.now() + SETTLE_MS;
  const final = new Map<string, Task>();
  while (final.size < submitted.length && Date.now() < deadline) {
    for (const id of submitted) {
      if (final.has(id)) continue;
      const { task } = await tasks.getTask({ id, view: TaskView.BASIC });
      if (task && task.state !== TaskState.QUEUED && task.state !== TaskState.RUNNING) final.set(id, task);
    }
    if (final.size < submitted.length) await sleep(500);
  }
  const seconds = (Date.now() - begin) / 1000;

  const runs = runRecords();
  const runsOf = new Map<string, RunRecord[]>();
  for (const run of runs) runsOf.set(run.taskId, [...(runsOf.get(run.taskId) ?? []), run]);
  let maxAttempt = 0;
  for (const id of submitted) {
    const task = final.get(id) ?? (await tasks.getTask({ id, view: TaskView.BASIC })).task!;
    maxAttempt = Math.max(maxAttempt, task.attempt);
    const succeeded = task.transitions.filter((t) => t.state === TaskState.SUCCEEDED).length;
    if (task.state !== TaskState.SUCCEEDED || succeeded !== 1) {
      violations.push(`task ${id} ended ${TaskState[task.state]} (${succeeded} successes): ${await story(id)}`);
    }
    // No two runs of a task at once: a run lasts from its start record to its end record, or
    // until its process group was killed.
    const intervals = (runsOf.get(id) ?? [])
      .map((r) => ({ ...r, untilMs: r.endMs ?? killedAt.get(r.pgid) ?? Number.POSITIVE_INFINITY }))
      .toSorted((a, b) => a.startMs - b.startMs);
    for (let i = 1; i < intervals.length; i++) {
      const [before, after] = [intervals[i - 1]!, intervals[i]!];
      if (after.startMs < before.untilMs) {
        violations.push(
          `task ${id} ran twice at once: run ${i} (group ${before.pgid}) from ${before.startMs} until ${before.untilMs}, ` +
            `run ${i + 1} (group ${after.pgid}) from ${after.startMs}`,
        );
      }
    }
    if (task.state === TaskState.SUCCEEDED && !(runsOf.get(id) ?? []).some((r) => r.endMs !== undefined)) {
      violations.push(`task ${id} SUCCEEDED without a finished run`);
    }
  }

  // Time to resume: from the kill to the interrupted task's next run start.
  const resumeMs: number[] = [];
  for (const { taskId, atMs } of interrupted) {
    const next = (runsOf.get(taskId) ?? []).map((r) => r.startMs).filter((ms) => ms > atMs);
    if (next.length > 0) resumeMs.push(Math.min(...next) - atMs);
  }

  const results = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, node: process.version },
    setup: {
      workers: WORKERS,
      slotsPerWorker: SLOTS,
      submitPerSecond: RATE,
      leaseMs: LEASE_MS,
      maxAttempts: MAX_ATTEMPTS,
      agentSleepSeconds: AGENT_SLEEP_S,
      restartEvery: RESTART_EVERY,
    },
    tasks: submitted.length,
    kills,
    restarts,
    workersStarted: started,
    runsInterrupted: interrupted.length,
    runs: runs.length,
    seconds: round(seconds),
    resumeAfterKillMs: { p50: round(percentile(resumeMs, 50)), p99: round(percentile(resumeMs, 99)) },
    maxAttemptSeen: maxAttempt,
    violations: violations.length,
  };
  mkdirSync(here("./results"), { recursive: true });
  writeFileSync(
    here("./results/failover-soak.json"),
    `${JSON.stringify({ ...results, violationDetails: violations.slice(0, 50) }, null, 2)}\n`,
  );
  console.log(JSON.stringify(results, null, 2));
  for (const violation of violations.slice(0, 50)) console.error(`VIOLATION ${violation}`);
  exitCode = violations.length === 0 ? 0 : 1;
} finally {
  for (const worker of workers) killGroup(worker.process.pid!);
  for (const run of runRecords()) if (run.endMs === undefined) killGroup(run.pgid);
  await core.close();
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(exitCode);
