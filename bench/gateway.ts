/**
 * Gateway benchmark: signed GitHub webhooks per second through the gateway to a durable state
 * (the 202: a task in the tasks service, or an entry in the gateway's outbox), and the p50/p99
 * acknowledgment latency at fixed rates, with the real gateway and the real tasks service.
 *
 * Baseline, in the same run and measured the same way: a minimal node:http server that does
 * one HMAC-SHA256 check of the raw body and one Redis write (SET) per request, and answers
 * 202. That is the floor for "verify, then make it durable" on this machine; the gateway adds
 * the delivery log, the duplicate check, the gRPC hop and the task store on top.
 *
 * Phases, each for both targets in turn (gateway, then baseline): open-loop fixed rates
 * (latency measured from each request's scheduled send time, so that falling behind shows),
 * then a closed loop of a few concurrent senders for the maximum throughput.
 *
 *   npx tsx bench/gateway.ts        (Redis from REDIS_URL; results in bench/results/gateway.json)
 */
import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { cpus } from "node:os";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { composeGateway, loadConfig as loadGatewayConfig } from "@hookmesh/gateway";
import { connectRedis, createLogger } from "@hookmesh/kit";
import { signGitHub } from "@hookmesh/kit/testing";
import { composeTasks, loadConfig as loadTasksConfig } from "@hookmesh/tasks";
import { BENCH_GATEWAY_ENV, BENCH_TASKS_ENV, BENCH_WEBHOOK_SECRET } from "./settings.js";

const RATES = [100, 300];
const PHASE_SECONDS = 5;
const MAX_SENDERS = 8;
const WARMUP_SECONDS = 2;
/** Requests still unanswered this long after their phase are counted as failures. */
const DRAIN_MS = 30_000;
/** The whole run stops by itself after this long, whatever happens. */
const HARD_LIMIT_MS = 240_000;
const SECRET = BENCH_WEBHOOK_SECRET;

const hardLimit = setTimeout(() => {
  console.error(`bench/gateway.ts: gave up after ${HARD_LIMIT_MS / 1000} s`);
  process.exit(1);
}, HARD_LIMIT_MS);
hardLimit.unref();

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const prefix = `hookmesh-bench:gateway:${randomUUID()}:`;
const logger = createLogger({ service: "bench", level: "warn" });

// A real issue_comment delivery mentioning the bot, one issue (subject) per request.
type Payload = { issue: Record<string, unknown>; comment: Record<string, unknown> } & Record<string, unknown>;
const examples = createRequire(import.meta.url)("@octokit/webhooks-examples") as {
  name: string;
  examples: Payload[];
}[];
const example = examples.find((d) => d.name === "issue_comment")!.examples.find((p) => p.action === "created")!;
const template = JSON.stringify({
  ...example,
  issue: { ...example.issue, number: 987654321 },
  comment: { ...example.comment, body: "@hookmesh can you take a look at this? Grüße 👋" },
});
const [bodyHead, bodyTail] = template.split("987654321") as [string, string];
const bodyFor = (n: number) => Buffer.from(`${bodyHead}${n}${bodyTail}`);

// ---------------------------------------------------------------------------------------------
// The system under test: tasks and the gateway, composed and connected as their mains do it.

const baselineRedis = await connectRedis({ url: redisUrl, variable: "REDIS_URL", logger });

const tasks = await composeTasks(
  loadTasksConfig({ ...BENCH_TASKS_ENV, REDIS_URL: redisUrl, TASKS_REDIS_PREFIX: prefix }),
  { logger, env: {} },
);
const { port: tasksPort } = await tasks.server.listen(0, "127.0.0.1");

const gateway = await composeGateway(
  loadGatewayConfig({
    ...BENCH_GATEWAY_ENV,
    REDIS_URL: redisUrl,
    GATEWAY_REDIS_PREFIX: `${prefix}gateway:`,
    TASKS_URL: `http://127.0.0.1:${tasksPort}`,
  }),
  { logger, env: {} },
);
const { http: gatewayAddress } = await gateway.server.listen(0, 0, "127.0.0.1");
gateway.start();

// ---------------------------------------------------------------------------------------------
// The baseline: one HMAC check and one Redis write per request.

const baseline = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (chunk: Buffer) => chunks.push(chunk));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    const given = Buffer.from(String(req.headers["x-hub-signature-256"] ?? ""));
    const expected = Buffer.from(`sha256=${createHmac("sha256", SECRET).update(body).digest("hex")}`);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      res.writeHead(401, { "content-type": "application/json" }).end('{"error":"signature mismatch"}');
      return;
    }
    baselineRedis.set(`${prefix}baseline:${String(req.headers["x-github-delivery"])}`, body).then(
      () => res.writeHead(202, { "content-type": "application/json" }).end('{"ok":true}'),
      () =>
        res.writeHead(503, { "content-type": "application/json", "retry-after": "5" }).end('{"error":"unavailable"}'),
    );
  });
});
await new Promise<void>((resolve) => baseline.listen(0, "127.0.0.1", resolve));
const baselinePort = (baseline.address() as AddressInfo).port;

// ---------------------------------------------------------------------------------------------
// The load: signed deliveries over keep-alive connections.

interface Target {
  name: "gateway" | "baseline";
  url: string;
}
const targets: Target[] = [
  { name: "gateway", url: `http://127.0.0.1:${gatewayAddress.port}/webhooks/github` },
  { name: "baseline", url: `http://127.0.0.1:${baselinePort}/webhooks/github` },
];

let sequence = 0;
/** Replies by kind, per target: the gateway's fast path (task id) or outbox (queued). */
const replies: Record<Target["name"], Record<string, number>> = { gateway: {}, baseline: {} };

function send(target: Target, agent: http.Agent): Promise<number> {
  const n = ++sequence;
  const body = bodyFor(n);
  return new Promise((resolve) => {
    const req = http.request(
      target.url,
      {
        method: "POST",
        agent,
        headers: {
          "content-type": "application/json",
          "content-length": body.length,
          "user-agent": "GitHub-Hookshot/bench",
          "x-github-event": "issue_comment",
          "x-github-delivery": `bench-${n}-${randomUUID()}`,
          "x-github-hook-id": "4242",
          "x-hub-signature-256": signGitHub(body, SECRET),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const status = res.statusCode ?? 0;
          const text = Buffer.concat(chunks).toString();
          const kind =
            status !== 202
              ? `http ${status}`
              : text.includes('"task_id"')
                ? "task"
                : text.includes('"queued"')
                  ? "outbox"
                  : "accepted";
          replies[target.name][kind] = (replies[target.name][kind] ?? 0) + 1;
          resolve(status);
        });
        res.on("error", () => resolve(0));
      },
    );
    req.on("error", () => resolve(0));
    req.end(body);
  });
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const round = (n: number) => Math.round(n * 100) / 100;

interface PhaseResult {
  sent: number;
  acknowledged: number;
  failed: number;
  perSecond: number;
  latencyMs: { p50: number; p99: number; max: number };
  /** Fixed rates: how late the generator sent, p99; a large value means the process was saturated. */
  sendLagMsP99?: number;
  /** The shared process's event-loop delay during the phase: stalls every target here pays for. */
  eventLoopDelayMs?: { p99: number; max: number };
}

function summarize(latencies: number[], statuses: number[], seconds: number): PhaseResult {
  const ok = latencies.filter((_, i) => statuses[i] === 202).sort((a, b) => a - b);
  return {
    sent: statuses.length,
    acknowledged: ok.length,
    failed: statuses.length - ok.length,
    perSecond: round(ok.length / seconds),
    latencyMs: { p50: round(percentile(ok, 50)), p99: round(percentile(ok, 99)), max: round(ok.at(-1) ?? NaN) },
  };
}

async function withDeadline<T>(work: Promise<T>, fallback: T): Promise<T> {
  return Promise.race([work, sleep(DRAIN_MS, fallback, { ref: false })]);
}

/** Open loop: one request every 1/rate s for PHASE_SECONDS, latency from its scheduled time. */
async function fixedRate(target: Target, rate: number): Promise<PhaseResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const count = rate * PHASE_SECONDS;
  const latencies: number[] = new Array(count).fill(NaN);
  const statuses: number[] = new Array(count).fill(0);
  const lags: number[] = [];
  const pending: Promise<void>[] = [];
  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    // A request is timed from its scheduled time, so that a generator held up by a busy
    // process counts against the latency; but from when it went out if a timer fired early
    // (libuv's clock is in whole milliseconds).
    const sentAt = performance.now();
    const from = Math.min(due, sentAt);
    lags.push(Math.max(0, sentAt - due));
    pending.push(
      send(target, agent).then((status) => {
        statuses[i] = status;
        latencies[i] = performance.now() - from;
      }),
    );
  }
  await withDeadline(Promise.all(pending), []);
  const seconds = (performance.now() - start) / 1000;
  loop.disable();
  agent.destroy();
  return {
    ...summarize(latencies, statuses, seconds),
    sendLagMsP99: round(
      percentile(
        lags.sort((a, b) => a - b),
        99,
      ),
    ),
    eventLoopDelayMs: { p99: round(loop.percentile(99) / 1e6), max: round(loop.max / 1e6) },
  };
}

/** Closed loop: `senders` concurrent senders, each sending the next request when answered. */
async function maxThroughput(target: Target, senders: number, seconds = PHASE_SECONDS): Promise<PhaseResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: senders });
  const latencies: number[] = [];
  const statuses: number[] = [];
  const start = performance.now();
  const stopAt = start + seconds * 1000;
  await withDeadline(
    Promise.all(
      Array.from({ length: senders }, async () => {
        while (performance.now() < stopAt) {
          const sentAt = performance.now();
          const status = await send(target, agent);
          latencies.push(performance.now() - sentAt);
          statuses.push(status);
        }
      }),
    ),
    [],
  );
  const elapsed = (performance.now() - start) / 1000;
  agent.destroy();
  return summarize(latencies, statuses, elapsed);
}

async function clean(): Promise<number> {
  let deleted = 0;
  const stream = baselineRedis.scanStream({ match: `${prefix}*`, count: 1_000 });
  for await (const keys of stream as AsyncIterable<string[]>) {
    if (keys.length === 0) continue;
    deleted += await baselineRedis.unlink(...keys);
  }
  return deleted;
}

type TargetResults = Record<string, PhaseResult>;
const results: Record<Target["name"], TargetResults> = { gateway: {}, baseline: {} };

try {
  for (const target of targets) {
    const warm = await maxThroughput(target, MAX_SENDERS, WARMUP_SECONDS);
    if (warm.acknowledged === 0 || warm.failed > 0)
      throw new Error(`${target.name}: warm-up failed: ${JSON.stringify(replies[target.name])}`);
    replies[target.name] = {};
  }
  for (const rate of RATES) {
    for (const target of targets) {
      results[target.name][`rate${rate}`] = await fixedRate(target, rate);
      console.error(`${target.name} @ ${rate}/s: ${JSON.stringify(results[target.name][`rate${rate}`])}`);
      await sleep(500);
    }
  }
  for (const target of targets) {
    results[target.name].max = await maxThroughput(target, MAX_SENDERS);
    console.error(`${target.name} max (${MAX_SENDERS} senders): ${JSON.stringify(results[target.name].max)}`);
    await sleep(500);
  }

  const g = results.gateway;
  const b = results.baseline;
  const output = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, node: process.version },
    setup: {
      payload: "issue_comment.created from @octokit/webhooks-examples, one issue per request",
      payloadBytes: bodyFor(1).length,
      fixedRatesPerSecond: RATES,
      phaseSeconds: PHASE_SECONDS,
      maxThroughputSenders: MAX_SENDERS,
      warmupSeconds: WARMUP_SECONDS,
      redis: new URL(redisUrl).host,
      note: "load generator, gateway, tasks service and baseline share one Node process; Redis is shared. Latency at fixed rates is from each request's scheduled send time.",
    },
    gateway: { ...g, replies: replies.gateway },
    baseline: { ...b, replies: replies.baseline },
    ratios: {
      maxThroughputVsBaseline: round(g.max!.perSecond / b.max!.perSecond),
      ...Object.fromEntries(
        RATES.flatMap((rate) => [
          [`p50At${rate}PerSecondVsBaseline`, round(g[`rate${rate}`]!.latencyMs.p50 / b[`rate${rate}`]!.latencyMs.p50)],
          [`p99At${rate}PerSecondVsBaseline`, round(g[`rate${rate}`]!.latencyMs.p99 / b[`rate${rate}`]!.latencyMs.p99)],
          [
            `p50At${rate}PerSecondOverBaselineMs`,
            round(g[`rate${rate}`]!.latencyMs.p50 - b[`rate${rate}`]!.latencyMs.p50),
          ],
        ]),
      ),
    },
  };
  mkdirSync(here("./results"), { recursive: true });
  writeFileSync(here("./results/gateway.json"), `${JSON.stringify(output, null, 2)}\n`);
  console.log(JSON.stringify(output, null, 2));
  console.log(
    `gateway: ${g.max!.perSecond}/s max (${MAX_SENDERS} senders) = ${output.ratios.maxThroughputVsBaseline}x the baseline's ${b.max!.perSecond}/s; ` +
      RATES.map(
        (rate) =>
          `at ${rate}/s p50 ${g[`rate${rate}`]!.latencyMs.p50} ms vs ${b[`rate${rate}`]!.latencyMs.p50} ms, p99 ${g[`rate${rate}`]!.latencyMs.p99} ms vs ${b[`rate${rate}`]!.latencyMs.p99} ms`,
      ).join("; "),
  );
} finally {
  await gateway.close();
  await new Promise<void>((resolve) => baseline.close(() => resolve()));
  await tasks.close();
  const deleted = await clean();
  console.error(`cleaned up ${deleted} keys under ${prefix}`);
  baselineRedis.disconnect();
}
