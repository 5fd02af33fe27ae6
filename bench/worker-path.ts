/**
 * Worker path benchmark (issue 11), in one run, each figure beside its baseline:
 *
 * - webhook → agent process start, p50/p99, at 20/s and at 200/s (one subject per webhook):
 *   signed GitHub deliveries through the real gateway and tasks service to real worker
 *   processes, which acknowledge on a GitHub stand-in that answers after BENCH_GITHUB_MS (the
 *   round trip a real comment costs) and start a trivial agent, unsandboxed (it records its
 *   start outside its run directory); where the time went, per stage (sent → QUEUED → RUNNING →
 *   agent start);
 * - SubmitEvent → agent process start at 20/s, against the same agent spawned directly;
 * - lifecycle throughput (a burst, until every task has SUCCEEDED) against direct spawns;
 * - failover: a worker SIGKILLed (with its agent) mid-run, and the time until its task starts
 *   again on a standby worker, under the tasks service's default lease;
 * - the kit client (retries + breaker) against a raw connect client, p50 of a unary call.
 *
 *   npm run bench:worker        (Redis from REDIS_URL; results in bench/results/worker-path.json)
 *
 * Settings (environment): BENCH_GITHUB_MS (the stand-in's answer time, 100), BENCH_FAILOVERS (3),
 * BENCH_SLOTS_PER_WORKER (32), BENCH_QUICK (set: only the webhook phase at 20/s, printed,
 * nothing written).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { type ConnectRouter, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { composeGateway, loadConfig as loadGatewayConfig } from "@hookmesh/gateway";
import { createClientFactory, createLogger } from "@hookmesh/kit";
import { signGitHub } from "@hookmesh/kit/testing";
import { composeTasks, loadConfig as loadTasksConfig } from "@hookmesh/tasks";
import { Redis } from "ioredis";
import { ActorSchema, EventSchema, Provider, SubjectSchema } from "../gen/hookmesh/events/v1/event_pb.js";
import { GitHubService } from "../gen/hookmesh/github/v1/github_pb.js";
import { RouteSchema } from "../gen/hookmesh/tasks/v1/route_pb.js";
import { TaskState, TaskView } from "../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../gen/hookmesh/tasks/v1/task_service_pb.js";
import { childrenCpuMs, cpuMs, directSpawns, loggedStarts } from "./processes.js";
import { BENCH_INSECURE, BENCH_TASKS_ENV } from "./settings.js";

const WORKERS = 2;
/**
 * Enough for 200 webhooks a second: a run holds its slot for at least two GitHub round trips
 * (the acknowledgment beside the agent, then the answer), 200/s × 0.2 s = 40 runs at once. With
 * fewer, that phase measures the wait for a free slot rather than the mesh.
 */
const SLOTS_PER_WORKER = Number(process.env.BENCH_SLOTS_PER_WORKER ?? 32);
const RATES = [20, 200];
/** Seconds of load at each rate. */
const RATE_SECONDS = 5;
const SUBMIT_TASKS = 100;
const THROUGHPUT_TASKS = 400;
const KIT_CALLS = 1_000;
const KIT_ROUNDS = 6;
const GITHUB_MS = Number(process.env.BENCH_GITHUB_MS ?? 100);
const FAILOVERS = Number(process.env.BENCH_FAILOVERS ?? 3);
const SECRET = "bench-webhook-secret";
/** The whole run stops by itself after this long, whatever happens. */
const HARD_LIMIT_MS = 600_000;

const hardLimit = setTimeout(() => {
  console.error(`bench/worker-path.ts: gave up after ${HARD_LIMIT_MS / 1000} s`);
  process.exit(1);
}, HARD_LIMIT_MS);
hardLimit.unref();

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "hookmesh-bench-"));
const startsLog = join(dir, "starts.log");
const runsLog = join(dir, "runs.log");
writeFileSync(startsLog, "");
writeFileSync(runsLog, "");
const loadAtStart = loadavg();

const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const prefix = `hookmesh-bench:worker:${randomUUID()}:`;
const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
const logger = createLogger({ service: "bench", level: "warn" });

// ---------------------------------------------------------------------------------------------
// The GitHub stand-in: comments answer after GITHUB_MS, GetIssue at once (the unary call of the
// client comparison).

let comments = 0n;
const githubRoutes = (router: ConnectRouter) =>
  router.service(GitHubService, {
    async createComment() {
      await sleep(GITHUB_MS);
      return { comment: { id: ++comments } };
    },
    async updateComment() {
      await sleep(GITHUB_MS);
      return {};
    },
    async addReaction() {
      await sleep(GITHUB_MS);
      return { reactionId: 1n };
    },
    async getIssue() {
      return {};
    },
  });
const github = http2.createServer(connectNodeAdapter({ routes: githubRoutes }));
await new Promise<void>((resolve) => github.listen(0, "127.0.0.1", resolve));
const githubUrl = `http://127.0.0.1:${(github.address() as AddressInfo).port}`;

// ---------------------------------------------------------------------------------------------
// The system under test: tasks (its defaults, the lease among them) and the gateway, in this
// process; the workers, each its own process.

const tasksCore = await composeTasks(
  loadTasksConfig({ ...BENCH_TASKS_ENV, REDIS_URL: redisUrl, TASKS_REDIS_PREFIX: prefix, GITHUB_URL: githubUrl }),
  { logger, env: {} },
);
const leaseMs = loadTasksConfig(BENCH_INSECURE).leaseMs;
await tasksCore.routingRules.upsert(
  create(RouteSchema, {
    id: "bench",
    provider: Provider.GITHUB,
    trigger: { kind: { case: "mention", value: { mention: "" } } },
    priority: 500,
    profile: {
      runner: "command",
      allowedEnv: ["HOOKMESH_BENCH_LOG", "HOOKMESH_SOAK_LOG"],
      maxRunTime: durationFromMs(120_000),
    },
  }),
);
const { port: tasksPort } = await tasksCore.server.listen(0, "127.0.0.1");
const tasksUrl = `http://127.0.0.1:${tasksPort}`;
const tasks = createClient(TaskService, createGrpcTransport({ baseUrl: tasksUrl }));

const gateway = await composeGateway(
  loadGatewayConfig({
    ...BENCH_INSECURE,
    REDIS_URL: redisUrl,
    GATEWAY_REDIS_PREFIX: `${prefix}gateway:`,
    TASKS_URL: tasksUrl,
    GITHUB_WEBHOOK_SECRET: SECRET,
    DELIVERY_RETENTION: "1h",
    GATEWAY_DEDUP_WINDOW: "1h",
    GATEWAY_RATE_LIMIT: "1000000",
    GATEWAY_RATE_BURST: "1000000",
    SHUTDOWN_GRACE_MS: "0",
  }),
  { logger, env: {} },
);
const { http: gatewayAddress } = await gateway.server.listen(0, 0, "127.0.0.1");
gateway.start();
const webhookUrl = `http://127.0.0.1:${gatewayAddress.port}/webhooks/github`;

function startWorker(id: string, extra: Record<string, string>): ChildProcess {
  return spawn(process.execPath, ["--import", import.meta.resolve("tsx"), here("../services/agent/src/main.ts")], {
    env: {
      ...process.env,
      ...BENCH_INSECURE,
      TASKS_URL: tasksUrl,
      GITHUB_URL: githubUrl,
      AGENT_ID: id,
      AGENT_PORT: "0",
      AGENT_HOST: "127.0.0.1",
      AGENT_WORKDIR: join(dir, "runs"),
      HOOKMESH_BENCH_LOG: startsLog,
      HOOKMESH_SOAK_LOG: runsLog,
      // Unsandboxed: each agent records its start on the host, outside its run directory, which
      // the sandbox rightly forbids (and bwrap's own start is the sandbox's cost, not the queue's).
      AGENT_SANDBOX: "off",
      LOG_LEVEL: "error",
      ...extra,
    },
    // Its own process group, so that a failover can kill the worker and nothing else.
    detached: true,
    stdio: ["ignore", "ignore", "inherit"],
  });
}

const workers: ChildProcess[] = Array.from({ length: WORKERS }, (_, i) =>
  startWorker(`bench-${i}`, { AGENT_COMMAND: here("./trivial-agent.sh"), AGENT_CONCURRENCY: String(SLOTS_PER_WORKER) }),
);

// ---------------------------------------------------------------------------------------------
// Load.

const examples = createRequire(import.meta.url)("@octokit/webhooks-examples") as {
  name: string;
  examples: ({ action?: string } & Record<string, Record<string, unknown>>)[];
}[];
const example = examples.find((d) => d.name === "issue_comment")!.examples.find((p) => p.action === "created")!;
const template = JSON.stringify({
  ...example,
  issue: { ...example.issue, number: 987654321 },
  // An owner asks, so that the mention route takes it.
  comment: { ...example.comment, author_association: "OWNER", body: "@hookmesh have a look bench-token=123456789" },
});
const [bodyHead, bodyMiddle, bodyTail] = template.split(/987654321|123456789/) as [string, string, string];
const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 64 });
let issues = 0;
/** How long each webhook's 202 took, for the phase under way. */
let ackMs: number[] = [];

/**
 * Sends one signed delivery about a new issue; resolves with the token its agent will log (the
 * issue number), once the gateway has acknowledged it.
 */
function sendWebhook(): Promise<string> {
  const n = ++issues;
  const sentAt = Date.now();
  const body = Buffer.from(`${bodyHead}${n}${bodyMiddle}${n}${bodyTail}`);
  const headers = {
    "content-type": "application/json",
    "content-length": body.length,
    "x-github-event": "issue_comment",
    "x-github-delivery": randomUUID(),
    "x-hub-signature-256": signGitHub(body, SECRET),
  };
  const post = (retries: number): Promise<string> =>
    new Promise((resolve, reject) => {
      const req = http.request(webhookUrl, { method: "POST", agent: keepAlive, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          if (res.statusCode !== 202) {
            reject(new Error(`gateway answered ${res.statusCode}: ${Buffer.concat(chunks).toString()}`));
            return;
          }
          ackMs.push(Date.now() - sentAt);
          resolve(`token:${n}`);
        });
      });
      // A kept-alive connection the gateway closed as this request went out: sent again, as the
      // same delivery (the gateway's duplicate check makes that safe).
      req.on("error", (err: NodeJS.ErrnoException) =>
        err.code === "ECONNRESET" && retries > 0 ? resolve(post(retries - 1)) : reject(err),
      );
      req.end(body);
    });
  return post(2);
}

let subjects = 0;
async function submitEvent(text = "@hookmesh go"): Promise<string> {
  const event = create(EventSchema, {
    provider: Provider.GITHUB,
    deliveryId: randomUUID(),
    eventType: "issue_comment",
    action: "created",
    actor: create(ActorSchema, { login: "bench", association: "OWNER" }),
    subject: create(SubjectSchema, { key: `github:bench/submit#${++subjects}` }),
    text,
  });
  const { task } = await tasks.submitEvent({ event });
  return task!.id;
}

/**
 * Each started agent's start (ms since the epoch, from its own clock reading), by its task id
 * and, for a webhook's, by "token:N" too.
 */
function starts(log = startsLog): Map<string, number> {
  return loggedStarts(log);
}

/** Task ids of the agents started for these keys (task ids already, or webhook tokens). */
function taskIdsOf(keys: string[]): string[] {
  const byToken = new Map<string, string>();
  for (const line of readFileSync(startsLog, "utf8").split("\n")) {
    const [id, , token] = line.split(" ");
    if (id && token) byToken.set(`token:${token}`, id);
  }
  return keys.map((key) => byToken.get(key) ?? key);
}

async function waitForStarts(ids: string[], timeoutMs: number): Promise<Map<string, number>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const seen = starts();
    if (ids.every((id) => seen.has(id))) return seen;
    if (Date.now() > deadline) {
      const { tasks: recent } = await tasks.listTasks({ pageSize: 3 });
      const states = recent.map((t) => `${TaskState[t.state]}: ${t.transitions.at(-1)?.reason}`);
      throw new Error(
        `only ${ids.filter((id) => seen.has(id)).length} of ${ids.length} agents started; recent tasks: ${states.join("; ")}`,
      );
    }
    await sleep(20);
  }
}

async function waitForEnded(ids: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const id of ids) {
    for (;;) {
      const { task } = await tasks.getTask({ id, view: TaskView.BASIC });
      if (task!.state === TaskState.SUCCEEDED) break;
      if (Date.now() > deadline) throw new Error(`task ${id} is ${TaskState[task!.state]}`);
      await sleep(20);
    }
  }
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = values.toSorted((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
const round = (n: number) => Math.round(n * 10) / 10;
const summary = (values: number[]) => ({ p50: round(percentile(values, 50)), p99: round(percentile(values, 99)) });

/** Sends `count` at `ratePerSecond` with `send`; each task's latency from its send to its agent's start. */
async function atRate(ratePerSecond: number, count: number, send: () => Promise<string>) {
  const sentAt = new Map<string, number>();
  const pending: Promise<void>[] = [];
  const begin = performance.now();
  for (let i = 0; i < count; i++) {
    const due = begin + (i * 1000) / ratePerSecond;
    if (due > performance.now()) await sleep(due - performance.now());
    const at = Date.now();
    const sent = send().then((id) => void sentAt.set(id, at));
    // Its failure is thrown by the Promise.all below, inside the run's try, which stops the workers.
    sent.catch(() => {});
    pending.push(sent);
  }
  await Promise.all(pending);
  const started = await waitForStarts([...sentAt.keys()], 120_000);
  await waitForEnded(taskIdsOf([...sentAt.keys()]), 120_000);
  return { ...summary([...sentAt].map(([id, at]) => started.get(id)! - at)), stages: await stagesOf(sentAt, started) };
}

/**
 * Where the time went, per task: from the send to the task's QUEUED transition (the tasks
 * service's clock), from QUEUED to RUNNING (the lease), and from RUNNING to the agent's own
 * clock reading at its start (the worker's preparation and the spawn). One machine's clock.
 */
async function stagesOf(sentAt: Map<string, number>, started: Map<string, number>) {
  const toQueued: number[] = [];
  const toRunning: number[] = [];
  const toStart: number[] = [];
  const keys = [...sentAt.keys()];
  for (const [i, taskId] of taskIdsOf(keys).entries()) {
    const { task } = await tasks.getTask({ id: taskId, view: TaskView.BASIC });
    const at = (state: TaskState) => {
      const time = task!.transitions.find((t) => t.state === state)?.time;
      return time ? timestampMs(time) : Number.NaN;
    };
    toQueued.push(at(TaskState.QUEUED) - sentAt.get(keys[i]!)!);
    toRunning.push(at(TaskState.RUNNING) - at(TaskState.QUEUED));
    toStart.push(started.get(keys[i]!)! - at(TaskState.RUNNING));
  }
  return { sentToQueued: summary(toQueued), queuedToRunning: summary(toRunning), runningToStart: summary(toStart) };
}

// ---------------------------------------------------------------------------------------------
// Failover: a worker runs a long task alone, a standby waits, the first is SIGKILLed with its agent.

interface RunRecord {
  taskId: string;
  pgid: number;
  startMs: number;
}

function runRecords(): RunRecord[] {
  return readFileSync(runsLog, "utf8")
    .split("\n")
    .map((line) => line.split(" "))
    .filter(([kind]) => kind === "start")
    .map(([, taskId, pgid, ns]) => ({
      taskId: taskId!,
      pgid: Number(pgid),
      startMs: Number(BigInt(ns!) / 1_000n) / 1_000,
    }));
}

async function waitForRun(taskId: string, after: number, timeoutMs: number): Promise<RunRecord> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const run = runRecords().find((r) => r.taskId === taskId && r.startMs > after);
    if (run) return run;
    if (Date.now() > deadline) throw new Error(`task ${taskId} did not start again within ${timeoutMs} ms`);
    await sleep(10);
  }
}

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

const failoverWorker = (i: number) =>
  startWorker(`failover-${i}`, {
    AGENT_COMMAND: here("./soak-agent.sh"),
    AGENT_CONCURRENCY: "1",
    AGENT_PROGRESS_INTERVAL_MS: "0",
  });

async function failovers(count: number): Promise<number[]> {
  const times: number[] = [];
  let active = failoverWorker(0);
  const spawned = [active];
  try {
    for (let i = 1; i <= count; i++) {
      const taskId = await submitEvent("@hookmesh sleep=60");
      const run = await waitForRun(taskId, 0, 60_000);
      const standby = failoverWorker(i);
      spawned.push(standby);
      // Long enough for the standby to start and wait in LeaseTasks on this loaded machine.
      await sleep(4_000);
      const killedAt = Date.now();
      killGroup(active.pid!);
      killGroup(run.pgid);
      const again = await waitForRun(taskId, killedAt, 120_000);
      times.push(again.startMs - killedAt);
      console.error(`failover ${i}: ${round(again.startMs - killedAt)} ms`);
      await tasks.cancelTask({ id: taskId, reason: "bench" });
      active = standby;
    }
  } finally {
    for (const worker of spawned) killGroup(worker.pid!);
    for (const run of runRecords()) killGroup(run.pgid);
  }
  return times;
}

// ---------------------------------------------------------------------------------------------
// The kit client against a raw connect client, one unary call at a time, in alternating rounds.

async function clientCost() {
  const clients = createClientFactory({ logger });
  const kit = clients.client(GitHubService, githubUrl, "github");
  const raw = createClient(GitHubService, createGrpcTransport({ baseUrl: githubUrl }));
  const timed = async (client: typeof raw, into: number[]) => {
    for (let i = 0; i < KIT_CALLS; i++) {
      const begin = performance.now();
      await client.getIssue({});
      into.push(performance.now() - begin);
    }
  };
  await timed(kit, []);
  await timed(raw, []);
  const kitMs: number[] = [];
  const rawMs: number[] = [];
  for (let round = 0; round < KIT_ROUNDS; round++) {
    await timed(kit, kitMs);
    await timed(raw, rawMs);
  }
  clients.close();
  const p50 = (values: number[]) => Math.round(percentile(values, 50) * 1000) / 1000;
  return {
    calls: kitMs.length,
    kitP50Ms: p50(kitMs),
    rawP50Ms: p50(rawMs),
    kitP99Ms: Math.round(percentile(kitMs, 99) * 1000) / 1000,
    rawP99Ms: Math.round(percentile(rawMs, 99) * 1000) / 1000,
    ratioP50: Math.round((percentile(kitMs, 50) / percentile(rawMs, 50)) * 100) / 100,
  };
}

/**
 * CPU used so far (ms): this process (the gateway, the tasks service, the GitHub stand-in and
 * the load), the workers, the agents they ran (their waited-for children), the agents this
 * process spawned directly, and Redis.
 */
async function cpuNow() {
  const own = process.cpuUsage();
  const info = await redis.info("cpu");
  const redisSeconds = ["used_cpu_sys", "used_cpu_user"].reduce(
    (sum, name) => sum + Number(new RegExp(`^${name}:([\\d.]+)`, "m").exec(info)?.[1] ?? 0),
    0,
  );
  return {
    benchProcess: (own.user + own.system) / 1000,
    workers: workers.reduce((sum, w) => sum + cpuMs(w.pid!), 0),
    agents: workers.reduce((sum, w) => sum + childrenCpuMs(w.pid!), 0),
    directAgents: childrenCpuMs(process.pid),
    redis: redisSeconds * 1000,
  };
}

/** CPU per task (ms) between two readings, by where it was spent; what did not move is left out. */
function cpuPer(before: Awaited<ReturnType<typeof cpuNow>>, after: typeof before, tasks: number) {
  const per = Object.entries(after).map(([name, ms]) => [
    name,
    round((ms - before[name as keyof typeof before]) / tasks),
  ]);
  return Object.fromEntries(per.filter(([, ms]) => (ms as number) > 0));
}

/** Ends a BENCH_QUICK run after its one phase, through the cleanup. */
class Quick extends Error {}

// ---------------------------------------------------------------------------------------------

try {
  // The workers connect and start waiting for work before anything is measured.
  const warm = await Promise.all(Array.from({ length: 10 }, () => sendWebhook()));
  await waitForStarts(warm, 60_000);
  await waitForEnded(taskIdsOf(warm), 60_000);

  const webhookToStartMs: Record<string, { p50: number; p99: number }> = {};
  const webhookAckMs: Record<string, { p50: number; p99: number }> = {};
  for (const rate of RATES) {
    ackMs = [];
    webhookToStartMs[`rate${rate}`] = await atRate(rate, rate * RATE_SECONDS, sendWebhook);
    webhookAckMs[`rate${rate}`] = summary(ackMs);
    if (process.env.BENCH_QUICK) {
      const [someId] = taskIdsOf(["token:20"]);
      const { task } = await tasks.getTask({ id: someId!, view: TaskView.BASIC });
      const at = (t?: { seconds: bigint; nanos: number }) => (t ? Number(t.seconds) * 1000 + t.nanos / 1e6 : 0);
      const created = at(task!.createTime);
      const story = task!.transitions.map((t) => `${TaskState[t.state]} +${round(at(t.time) - created)} ${t.reason}`);
      const received = at(task!.event?.receiveTime) - created;
      console.log(JSON.stringify({ webhookToStartMs, webhookAckMs, story, route: task!.routeId, received }));
      break;
    }
  }
  if (process.env.BENCH_QUICK) throw new Quick();

  const submitToStartMs = await atRate(20, SUBMIT_TASKS, () => submitEvent());

  const cpuBeforeBurst = await cpuNow();
  const burstStart = performance.now();
  const burst = await Promise.all(Array.from({ length: THROUGHPUT_TASKS }, () => submitEvent()));
  await waitForEnded(burst, 180_000);
  const tasksPerSecond = THROUGHPUT_TASKS / ((performance.now() - burstStart) / 1000);
  const lifecycleCpu = cpuPer(cpuBeforeBurst, await cpuNow(), THROUGHPUT_TASKS);

  const slots = WORKERS * SLOTS_PER_WORKER;
  const directAtRate = await directSpawns(join(dir, "direct.log"), SUBMIT_TASKS, slots, 20);
  const cpuBeforeDirect = await cpuNow();
  const directBurst = await directSpawns(join(dir, "direct.log"), THROUGHPUT_TASKS, slots);
  const directCpu = cpuPer(cpuBeforeDirect, await cpuNow(), THROUGHPUT_TASKS);
  const directStartMs = summary(directAtRate.startLatenciesMs);

  for (const worker of workers) worker.kill("SIGTERM");
  await Promise.all(workers.map((w) => (w.exitCode === null ? once(w, "exit") : undefined)));
  const failoverMs = await failovers(FAILOVERS);

  const client = await clientCost();

  const results = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
    load: {
      before: loadAtStart.map((n) => Math.round(n * 100) / 100),
      after: loadavg().map((n) => Math.round(n * 100) / 100),
      note: "1, 5 and 15 minute load averages; other helpers share this machine",
    },
    setup: {
      workers: WORKERS,
      slotsPerWorker: SLOTS_PER_WORKER,
      sandbox: "off (agents record their start outside their run directory)",
      githubStandInMs: GITHUB_MS,
      ratesPerSecond: RATES,
      secondsPerRate: RATE_SECONDS,
      submitTasksAt20PerSecond: SUBMIT_TASKS,
      throughputTasks: THROUGHPUT_TASKS,
      tasksLeaseMs: leaseMs,
      note: "gateway, tasks service and load generator share this process; each worker is a process",
    },
    webhookToStartMs,
    webhookAckMs,
    submitToStartMs,
    directSpawnToStartMs: directStartMs,
    lifecycle: {
      tasksPerSecond: round(tasksPerSecond),
      directSpawnsPerSecond: round(directBurst.perSecond),
      ratio: Math.round((tasksPerSecond / directBurst.perSecond) * 100) / 100,
      cpuMsPerTask: lifecycleCpu,
      cpuMsPerDirectSpawn: directCpu,
    },
    failover: {
      restartAfterKillMs: failoverMs.map(round),
      max: round(Math.max(...failoverMs)),
    },
    client,
    goals: {
      webhookToStartP50Le8: Object.values(webhookToStartMs).every((r) => r.p50 <= 8),
      webhookToStartP99Le30: Object.values(webhookToStartMs).every((r) => r.p99 <= 30),
      submitToStartWithin2msOfDirect: submitToStartMs.p50 - directStartMs.p50 <= 2,
      lifecycleGe06xDirect: tasksPerSecond / directBurst.perSecond >= 0.6,
      failoverLe10s: Math.max(...failoverMs) <= 10_000,
      kitClientLe11xRaw: client.ratioP50 <= 1.1,
    },
  };
  mkdirSync(here("./results"), { recursive: true });
  const out = process.env.BENCH_OUT ?? here("./results/worker-path.json");
  writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
  console.log(JSON.stringify(results, null, 2));
} catch (err) {
  if (!(err instanceof Quick)) throw err;
} finally {
  for (const worker of workers) killGroup(worker.pid!);
  await gateway.close();
  await tasksCore.close();
  github.close();
  keepAlive.destroy();
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
