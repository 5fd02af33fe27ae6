/**
 * Ingest benchmark (issue 11): signed GitHub webhooks per second through the gateway to a
 * durable state, against a minimal baseline measured the same way in the same run.
 *
 * Every program runs in a process of its own, as deployed: the tasks service and the gateway
 * (their mains compiled by `npm run build` and run by plain Node, as the image runs them,
 * cleartext on loopback; BENCH_TSX=1 runs their sources under tsx, whose loader thread adds
 * some 40 MB to each RSS), the baseline (bench/ingest-baseline.ts: node:http, one
 * HMAC-SHA256 check, one Redis XADD) and the load generator (bench/ingest-load.ts: keep-alive
 * agents, every body distinct and signed). The phases:
 *
 * - saturation: a closed loop of SENDERS concurrent senders for PHASE_SECONDS: acknowledged
 *   (202) per second and the acknowledgment's p50/p99;
 * - fixed load: 1,000 requests a second offered for PHASE_SECONDS, open loop: acknowledged per
 *   second and p50/p99 from each request's scheduled time;
 * - saturation with the tasks process stopped (SIGSTOP) during the gateway's turn: the
 *   acknowledgment's own cost, without tasks' work on the same cores;
 * - the fixed load with the tasks process stopped: the acknowledgment's latency at 1,000/s
 *   when the gateway has the cores the tasks service would take (as it would with tasks on
 *   other machines).
 *
 * Each phase runs for the baseline, then at once for the gateway, so that the machine's other
 * work weighs on both alike.
 *
 * For the gateway, after each phase: how long until every accepted delivery is a task (the
 * outbox drained), the delivery → QUEUED latency (from each request's send time to its task's
 * QUEUED transition, read from the tasks service), and the gateway's RSS and heap (its
 * Prometheus metrics). No 5xx is allowed: any makes the run fail.
 *
 * Then, for the gateway only, a sustained phase: SUSTAINED_RATE (1,000) requests a second offered for
 * SUSTAINED_SECONDS, sampling the gateway's RSS throughout; after the last answer, how long
 * until its outbox is empty and every delivery a task, and the same latencies.
 *
 *   npm run bench:ingest                      results under "latest" in bench/results/ingest.json
 *   BENCH_LABEL=before npm run bench:ingest   under another label, beside the others kept there
 *   BENCH_PROFILE=1 npm run bench:ingest      also --cpu-prof the gateway and tasks; prints the
 *                                             top self-time frames (profiles in bench/results/profiles)
 *   BENCH_PHASE_SECONDS=5 npm run bench:ingest     shorter phases (10 s unless set)
 *   BENCH_SUSTAINED_SECONDS=0 npm run bench:ingest without the sustained phase (30 s unless set)
 *   BENCH_SUSTAINED_RATE=300 npm run bench:ingest  the sustained phase at 300/s (1,000/s unless set)
 *   BENCH_GATEWAY_NODE_FLAGS=--max-semi-space-size=8 BENCH_GATEWAY_MALLOC_ARENA_MAX=2 npm run bench:ingest
 *                                             memory settings to try on the gateway
 */
import { type ChildProcess, execFileSync, fork } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { loadavg } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { metricValue, parsePrometheusText } from "@hookmesh/kit/testing";
import { Redis } from "ioredis";
import { TaskState, TaskView } from "../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../gen/hookmesh/tasks/v1/task_service_pb.js";
import type { LoadPhase, LoadResult } from "./ingest-load.js";
import {
  cpuMs,
  freePort,
  machineFacts,
  recordRun,
  rssMb,
  startService,
  untilAnswering,
  untilListening,
} from "./processes.js";
import { BENCH_GATEWAY_ENV, BENCH_TASKS_ENV, BENCH_WEBHOOK_SECRET } from "./settings.js";

const PHASE_SECONDS = Number(process.env.BENCH_PHASE_SECONDS ?? 10);
const SUSTAINED_SECONDS = Number(process.env.BENCH_SUSTAINED_SECONDS ?? 30);
const SUSTAINED_RATE = Number(process.env.BENCH_SUSTAINED_RATE ?? 1000);
const SENDERS = 64;
const FIXED_RATE = 1000;
const WARMUP_SECONDS = 3;
/** How long the outbox may take to drain after a phase before the run says it did not. */
const DRAIN_LIMIT_MS = 60_000;
const HARD_LIMIT_MS = 900_000;
const SECRET = BENCH_WEBHOOK_SECRET;

const hardLimit = setTimeout(() => {
  console.error(`bench/ingest.ts: gave up after ${HARD_LIMIT_MS / 1000} s`);
  stopAll();
  process.exit(1);
}, HARD_LIMIT_MS);
hardLimit.unref();

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const root = here("..");
const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const label = process.env.BENCH_LABEL ?? "latest";
const profile = process.env.BENCH_PROFILE === "1";
const fromSources = process.env.BENCH_TSX === "1";
const gatewayNodeFlags = (process.env.BENCH_GATEWAY_NODE_FLAGS ?? "").split(" ").filter(Boolean);
const mallocArenaMax = process.env.BENCH_GATEWAY_MALLOC_ARENA_MAX;
const profileDir = here("./results/profiles");
const prefix = `hookmesh-bench:ingest:${randomUUID()}:`;
const tasksPrefix = `${prefix}tasks:`;
const redis = new Redis(redisUrl);
const children: ChildProcess[] = [];

function stopAll(): void {
  for (const child of children) if (child.exitCode === null) child.kill("SIGTERM");
}

/** A service's main (`gateway/src/main`, without extension) in its own Node process, profiled when asked. */
function service(name: string, main: string, env: Record<string, string>): ChildProcess {
  // A directory each: tsx's loader thread writes a profile of its own beside the main thread's.
  const flags = profile ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}/${name}`] : [];
  // Memory settings to try on the gateway (V8's young generation, glibc's arenas), recorded in the results.
  if (name === "gateway") flags.push(...gatewayNodeFlags);
  const child = startService(
    main,
    { ...(name === "gateway" && mallocArenaMax && { MALLOC_ARENA_MAX: mallocArenaMax }), ...env },
    { fromSources, nodeFlags: flags },
  );
  children.push(child);
  return child;
}

const load = fork(here("./ingest-load.ts"), [], {
  execArgv: ["--import", "tsx"],
  env: { ...process.env, BENCH_SECRET: SECRET },
  stdio: ["ignore", "inherit", "inherit", "ipc"],
});
children.push(load);

function run(phase: LoadPhase): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    load.once("message", (reply: { result?: LoadResult; error?: string }) =>
      reply.result ? resolve(reply.result) : reject(new Error(reply.error)),
    );
    load.send(phase);
  });
}

/** Tasks created so far: every accepted delivery of this run becomes one. */
const taskCount = () => redis.zcard(`${tasksPrefix}index:all`);

/** Milliseconds from now until the tasks service has `expected` tasks, or -1 past the limit. */
async function drained(expected: number): Promise<{ ms: number; tasks: number }> {
  const start = performance.now();
  for (;;) {
    const tasks = await taskCount();
    if (tasks >= expected) return { ms: Math.round(performance.now() - start), tasks };
    if (performance.now() - start > DRAIN_LIMIT_MS) return { ms: -1, tasks };
    await sleep(20);
  }
}

const percentileOf = (sorted: number[], p: number) =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

/**
 * Delivery → QUEUED: from each acknowledged request's send time to its task's QUEUED
 * transition, as the tasks service lists them (newest first, so the phase just run comes first).
 */
async function deliveryToQueued(
  tasks: Client<typeof TaskService>,
  tracked: Array<[string, number]>,
): Promise<{ p50: number; p99: number; max: number; measured: number }> {
  const sentAt = new Map(tracked);
  const latencies: number[] = [];
  let pageToken = "";
  do {
    const page = await tasks.listTasks({ pageSize: 500, pageToken, view: TaskView.BASIC });
    for (const task of page.tasks) {
      const sent = sentAt.get(task.id);
      const queued = task.transitions.find((t) => t.state === TaskState.QUEUED)?.time;
      if (sent === undefined || queued === undefined) continue;
      latencies.push(timestampMs(queued) - sent);
      sentAt.delete(task.id);
    }
    pageToken = page.nextPageToken;
  } while (pageToken !== "" && sentAt.size > 0);
  latencies.sort((a, b) => a - b);
  return {
    p50: percentileOf(latencies, 50),
    p99: percentileOf(latencies, 99),
    max: latencies.at(-1) ?? Number.NaN,
    measured: latencies.length,
  };
}

/** The gateway's memory as its Prometheus metrics tell it (MB): where its RSS is. */
async function gatewayMemory(adminUrl: string): Promise<Record<string, number>> {
  const families = parsePrometheusText(await (await fetch(`${adminUrl}/metrics`)).text());
  const mb = (name: string, labels: Record<string, string> = {}) =>
    Math.round(metricValue(families, name, labels) / 2 ** 20);
  return {
    rss: mb("process_resident_memory_bytes"),
    heapTotal: mb("nodejs_heap_size_total_bytes"),
    heapUsed: mb("nodejs_heap_size_used_bytes"),
    external: mb("nodejs_external_memory_bytes"),
    newSpace: mb("nodejs_heap_space_size_total_bytes", { space: "new" }),
    oldSpaceUsed: mb("nodejs_heap_space_size_used_bytes", { space: "old" }),
  };
}

/** Milliseconds from now until the gateway's outbox stream is empty (forwarded entries are deleted), or -1. */
async function outboxEmpty(): Promise<number> {
  const start = performance.now();
  while ((await redis.xlen(`${prefix}gateway:outbox`)) > 0) {
    if (performance.now() - start > DRAIN_LIMIT_MS) return -1;
    await sleep(20);
  }
  return Math.round(performance.now() - start);
}

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  timeDeltas: number[];
}

/**
 * The heaviest functions by self time in a service's busiest thread's profile, as percentages of
 * the time it was not idle.
 */
function topFrames(dir: string, count = 20): { frame: string; selfPercent: number }[] {
  const self = new Map<string, number>();
  let busiest = -1;
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"))) {
    const data = JSON.parse(readFileSync(`${dir}/${file}`, "utf8")) as CpuProfile;
    const byId = new Map(data.nodes.map((n) => [n.id, n.callFrame]));
    const frames = new Map<string, number>();
    let busy = 0;
    data.samples.forEach((id, i) => {
      const frame = byId.get(id)!;
      if (frame.functionName === "(idle)") return;
      const where = frame.url
        .replace(/^file:\/\//, "")
        .replace(root, "")
        .split("node_modules/")
        .at(-1);
      const name = `${frame.functionName || "(anonymous)"}${where ? ` ${where}:${frame.lineNumber + 1}` : ""}`;
      const delta = data.timeDeltas[i] ?? 0;
      frames.set(name, (frames.get(name) ?? 0) + delta);
      busy += delta;
    });
    if (busy <= busiest) continue;
    busiest = busy;
    self.clear();
    for (const [name, us] of frames) self.set(name, us / busy);
  }
  return [...self]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([frame, share]) => ({ frame, selfPercent: Math.round(share * 1000) / 10 }));
}

const round2 = (n: number) => Math.round(n * 100) / 100;

const loadBefore = loadavg();
const results: Record<string, Record<string, unknown>> = { baseline: {}, gateway: {} };
let exitCode = 0;
try {
  if (profile) rmSync(profileDir, { recursive: true, force: true });
  if (!fromSources) execFileSync("npm", ["run", "build"], { cwd: root, stdio: "ignore" });
  const [tasksPort, gatewayPort, gatewayHttpPort, gatewayAdminPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const tasksClient = createClient(TaskService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${tasksPort}` }));
  const gatewayAdmin = `http://127.0.0.1:${gatewayAdminPort}`;
  const tasks = service("tasks", "services/tasks/src/main", {
    ...(BENCH_TASKS_ENV as Record<string, string>),
    REDIS_URL: redisUrl,
    TASKS_REDIS_PREFIX: tasksPrefix,
    TASKS_PORT: String(tasksPort),
  });
  await untilListening(tasksPort);
  const gateway = service("gateway", "gateway/src/main", {
    ...(BENCH_GATEWAY_ENV as Record<string, string>),
    REDIS_URL: redisUrl,
    GATEWAY_REDIS_PREFIX: `${prefix}gateway:`,
    GATEWAY_PORT: String(gatewayPort),
    GATEWAY_HTTP_PORT: String(gatewayHttpPort),
    GATEWAY_ADMIN_PORT: String(gatewayAdminPort),
    TASKS_URL: `http://127.0.0.1:${tasksPort}`,
  });
  await untilAnswering(`http://127.0.0.1:${gatewayHttpPort}/readyz`);
  const baseline = fork(here("./ingest-baseline.ts"), [], {
    execArgv: ["--import", "tsx"],
    env: { ...process.env, BENCH_SECRET: SECRET, BENCH_BASELINE_STREAM: `${prefix}baseline` },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  children.push(baseline);
  const baselinePortMessage = await new Promise<{ port: number }>((resolve) =>
    baseline.once("message", (m) => resolve(m as { port: number })),
  );
  const urls = {
    baseline: `http://127.0.0.1:${baselinePortMessage.port}/webhooks/github`,
    gateway: `http://127.0.0.1:${gatewayHttpPort}/webhooks/github`,
  };

  let accepted = 0;
  const phases: Record<string, Omit<LoadPhase, "url">> = {
    warmup: { mode: "closed", senders: 8, seconds: WARMUP_SECONDS },
    saturation: { mode: "closed", senders: SENDERS, seconds: PHASE_SECONDS },
    [`rate${FIXED_RATE}`]: { mode: "open", rate: FIXED_RATE, seconds: PHASE_SECONDS },
    // The acknowledgment's own cost: the tasks process stopped (SIGSTOP) while the gateway is
    // loaded, so that it takes none of the 2 cores; what was acknowledged meanwhile is counted
    // as tasks once it runs again.
    saturationTasksPaused: { mode: "closed", senders: SENDERS, seconds: PHASE_SECONDS },
    // The acknowledgment's latency at 1,000/s with the CPU the tasks service would take left to
    // the gateway: what a tasks service on other cores would leave it.
    [`rate${FIXED_RATE}TasksPaused`]: { mode: "open", rate: FIXED_RATE, seconds: PHASE_SECONDS },
  };
  // Each phase for both targets in turn, so that what else the machine runs weighs on both alike.
  for (const [name, phase] of Object.entries(phases)) {
    for (const target of ["baseline", "gateway"] as const) {
      const paused = name.endsWith("TasksPaused") && target === "gateway";
      const pids = target === "gateway" ? { gateway: gateway.pid!, tasks: tasks.pid! } : { baseline: baseline.pid! };
      const cpuBefore = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuMs(pid)]));
      if (paused) tasks.kill("SIGSTOP");
      const { tracked, ...result } = await run({ ...phase, url: urls[target], track: target === "gateway" });
      // The gateway's CPU while it answered, before it forwards what piled up (with tasks
      // stopped: the acknowledgment alone).
      const gatewayCpuDuringPhase = target === "gateway" ? cpuMs(gateway.pid!) - cpuBefore.gateway! : 0;
      if (paused) tasks.kill("SIGCONT");
      const serverErrors = Object.entries(result.replies).filter(([kind]) => /^http 5|^error/.test(kind));
      if (serverErrors.length > 0) {
        exitCode = 1;
        console.error(`${target} ${name}: 5xx or errors: ${JSON.stringify(result.replies)}`);
      }
      const entry: Record<string, unknown> = { ...result, loadAverage1m: Math.round(loadavg()[0]! * 100) / 100 };
      if (target === "gateway") {
        accepted += result.acknowledged;
        entry.gatewayCpuMsPerAckDuringPhase = round2(gatewayCpuDuringPhase / result.acknowledged);
        entry.rssMbAfter = rssMb(gateway.pid!);
        entry.untilAllTasks = await drained(accepted);
        entry.memoryMbAfterDrain = await gatewayMemory(gatewayAdmin);
        if (name !== "warmup") entry.deliveryToQueuedMs = await deliveryToQueued(tasksClient, tracked ?? []);
      }
      // CPU per acknowledged delivery, the gateway's and tasks' until every one is a task: what
      // the machine's other work cannot distort the way it distorts rates.
      entry.cpuMsPerDelivery = Object.fromEntries(
        Object.entries(pids).map(([k, pid]) => [k, round2((cpuMs(pid) - cpuBefore[k]!) / result.acknowledged)]),
      );
      if (name !== "warmup") results[target][name] = entry;
      console.error(`${target} ${name}: ${JSON.stringify(entry)}`);
      await sleep(1_000);
    }
  }

  if (SUSTAINED_SECONDS > 0) {
    const cpuBefore = { gateway: cpuMs(gateway.pid!), tasks: cpuMs(tasks.pid!) };
    let rssMbMax = 0;
    const sampling = setInterval(() => {
      rssMbMax = Math.max(rssMbMax, rssMb(gateway.pid!));
    }, 250);
    const { tracked, ...result } = await run({
      mode: "open",
      rate: SUSTAINED_RATE,
      seconds: SUSTAINED_SECONDS,
      url: urls.gateway,
      track: true,
    });
    const rssMbAtLastAnswer = rssMb(gateway.pid!);
    const outboxEmptyMs = await outboxEmpty();
    clearInterval(sampling);
    accepted += result.acknowledged;
    const entry: Record<string, unknown> = {
      ...result,
      loadAverage1m: Math.round(loadavg()[0]! * 100) / 100,
      // From the last answer, not the last request sent: the load stops when its last request is answered.
      outboxEmptyMsAfterLoad: outboxEmptyMs,
      untilAllTasks: await drained(accepted),
      rssMbMax: Math.max(rssMbMax, rssMbAtLastAnswer),
      rssMbAtLastAnswer,
      rssMbAfterDrain: rssMb(gateway.pid!),
      memoryMbAfterDrain: await gatewayMemory(gatewayAdmin),
      deliveryToQueuedMs: await deliveryToQueued(tasksClient, tracked ?? []),
      cpuMsPerDelivery: {
        gateway: round2((cpuMs(gateway.pid!) - cpuBefore.gateway) / result.acknowledged),
        tasks: round2((cpuMs(tasks.pid!) - cpuBefore.tasks) / result.acknowledged),
      },
    };
    const serverErrors = Object.entries(result.replies).filter(([kind]) => /^http 5|^error/.test(kind));
    if (serverErrors.length > 0) {
      exitCode = 1;
      console.error(`gateway sustained: 5xx or errors: ${JSON.stringify(result.replies)}`);
    }
    results.gateway[`sustained${SUSTAINED_RATE}`] = entry;
    console.error(`gateway sustained${SUSTAINED_RATE}: ${JSON.stringify(entry)}`);
  }

  const b = results.baseline as Record<string, LoadResult>;
  const g = results.gateway as Record<string, LoadResult>;
  const round = (n: number) => Math.round(n * 1000) / 1000;
  const cpu = (phase: LoadResult | undefined) =>
    (phase as unknown as { cpuMsPerDelivery: Record<string, number> }).cpuMsPerDelivery;
  const run_ = {
    date: new Date().toISOString(),
    machine: machineFacts(loadBefore),
    setup: {
      payloadBytes: g.saturation!.payloadBytes,
      phaseSeconds: PHASE_SECONDS,
      sustainedSeconds: SUSTAINED_SECONDS,
      sustainedRatePerSecond: SUSTAINED_RATE,
      saturationSenders: SENDERS,
      fixedRatePerSecond: FIXED_RATE,
      profiled: profile,
      services: fromSources ? "sources under tsx" : "compiled (npm run build), plain node",
      gatewayNodeFlags,
      gatewayMallocArenaMax: mallocArenaMax ?? "default",
      note: "tasks, gateway, baseline and load generator each in their own Node process; Redis shared; 2 cores shared with other work (see loadAverage). Fixed-rate latency is from each request's scheduled time.",
    },
    baseline: results.baseline,
    gateway: results.gateway,
    ratios: {
      saturationThroughputVsBaseline: round(g.saturation!.perSecond / b.saturation!.perSecond),
      saturationTasksPausedThroughputVsBaseline: round(
        g.saturationTasksPaused!.perSecond / b.saturationTasksPaused!.perSecond,
      ),
      saturationP99VsBaseline: round(g.saturation!.latencyMs.p99 / b.saturation!.latencyMs.p99),
      // The baseline's CPU per delivery over the gateway's and tasks' together: the throughput
      // ratio a CPU-bound machine of its own would give (Redis's CPU is in neither: it is shared).
      saturationCpuPerDeliveryBaselineOverMesh: round(
        cpu(b.saturation).baseline! / (cpu(g.saturation).gateway! + cpu(g.saturation).tasks!),
      ),
      saturationCpuPerDeliveryBaselineOverGateway: round(cpu(b.saturation).baseline! / cpu(g.saturation).gateway!),
      [`p99At${FIXED_RATE}TasksPausedVsBaseline`]: round(
        g[`rate${FIXED_RATE}TasksPaused`]!.latencyMs.p99 / b[`rate${FIXED_RATE}TasksPaused`]!.latencyMs.p99,
      ),
      [`p99At${FIXED_RATE}VsBaseline`]: round(
        g[`rate${FIXED_RATE}`]!.latencyMs.p99 / b[`rate${FIXED_RATE}`]!.latencyMs.p99,
      ),
    },
  };
  recordRun("ingest", label, run_);
} catch (err) {
  exitCode = 1;
  console.error(err);
} finally {
  stopAll();
  await Promise.all(
    children.map((child) =>
      child.exitCode === null ? new Promise((resolve) => child.once("exit", resolve)) : Promise.resolve(),
    ),
  );
  let deleted = 0;
  for await (const keys of redis.scanStream({ match: `${prefix}*`, count: 1_000 }) as AsyncIterable<string[]>) {
    if (keys.length > 0) deleted += await redis.unlink(...keys);
  }
  console.error(`cleaned up ${deleted} keys under ${prefix}`);
  redis.disconnect();
  if (profile) {
    for (const name of ["gateway", "tasks"]) {
      console.log(`\n${name}: top self time (% of its busy time)`);
      for (const { frame, selfPercent } of topFrames(`${profileDir}/${name}`))
        console.log(`  ${selfPercent}%  ${frame}`);
    }
  }
}
process.exit(exitCode);
