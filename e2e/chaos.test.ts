/**
 * Chaos: the gateway's delivery guarantees while what it depends on is down.
 *
 * - The tasks service stopped: every signed delivery is still acknowledged (202), from the
 *   gateway's outbox; when tasks comes back on the same port, the outbox drains and every
 *   delivery becomes exactly one task, provider retries included.
 * - Redis stopped (a dedicated redis-server, never the shared one): nothing can be made
 *   durable, so every delivery gets 503 with Retry-After and none is acknowledged, and /readyz
 *   says 503; when Redis is back on the same port, deliveries are acknowledged again.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import * as http from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { examplesOf, type RunningGateway, startGateway, TEST_SECRETS } from "@hookmesh/gateway/testing";
import { createLogger } from "@hookmesh/kit";
import { freePort, signGitHub, testRedis } from "@hookmesh/kit/testing";
import { startTasks } from "@hookmesh/tasks/testing";
import { afterEach, describe, expect, it, vi } from "vitest";
import { type Delivery, DeliveryStatus } from "../gen/hookmesh/gateway/v1/delivery_pb.js";
import { DeliveryService } from "../gen/hookmesh/gateway/v1/delivery_service_pb.js";
import { TaskService } from "../gen/hookmesh/tasks/v1/task_service_pb.js";
import { get } from "./deliveries.js";
import { listAllTasks, tasksPerDelivery } from "./tasks.js";

const logger = createLogger({ service: "chaos", level: "silent" });
const SECRET = TEST_SECRETS.github;
const HOOK_ID = "31337";

/** Real GitHub payloads, one event type per delivery in turn. */
const PAYLOADS = ["issues", "issue_comment", "pull_request", "push"].flatMap((event) =>
  examplesOf(event)
    .slice(0, 3)
    .map((payload) => ({ event, payload })),
);

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown>;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });

function deliver(base: string, deliveryId: string, i: number): Promise<Answer> {
  const { event, payload } = PAYLOADS[i % PAYLOADS.length]!;
  // Each delivery its own event: the same signed body under another delivery id is a replay.
  const body = Buffer.from(JSON.stringify({ ...payload, chaos_delivery: deliveryId }));
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${base}/webhooks/github`,
      {
        method: "POST",
        agent,
        headers: {
          "content-type": "application/json",
          "content-length": body.length,
          "x-github-event": event,
          "x-github-delivery": deliveryId,
          "x-github-hook-id": HOOK_ID,
          "x-hub-signature-256": signGitHub(body, SECRET),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString();
          let parsed: Record<string, unknown> = {};
          try {
            parsed = JSON.parse(text) as Record<string, unknown>;
          } catch {
            parsed = { raw: text };
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed });
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** Delivers every id, `concurrency` at a time; the answers in the ids' order. */
async function deliverAll(base: string, ids: string[], concurrency = 20): Promise<Answer[]> {
  const answers: Answer[] = new Array(ids.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < ids.length) {
        const i = next++;
        answers[i] = await deliver(base, ids[i]!, i);
      }
    }),
  );
  return answers;
}

async function listAllDeliveries(deliveries: Client<typeof DeliveryService>): Promise<Delivery[]> {
  const all: Delivery[] = [];
  for (let pageToken = ""; ; ) {
    const page = await deliveries.listDeliveries({ pageSize: 500, pageToken });
    all.push(...page.deliveries);
    if (!page.nextPageToken) return all;
    pageToken = page.nextPageToken;
  }
}

/** What `probe` gives once it gives something; fails after `timeoutMs` saying what it waited for. */
function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  return vi.waitFor(
    async () => {
      const value = await probe();
      if (value === undefined) throw new Error(`still waiting for ${what}`);
      return value;
    },
    { timeout: timeoutMs, interval: 100 },
  );
}

/** Things to stop after each test, last started first. */
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await Promise.resolve(cleanups.pop()!()).catch(() => {});
});

function grpcClient<T extends typeof TaskService | typeof DeliveryService>(service: T, baseUrl: string): Client<T> {
  const sessions = new Http2SessionManager(baseUrl);
  cleanups.push(() => sessions.abort());
  return createClient(service, createGrpcTransport({ baseUrl, sessionManager: sessions }));
}

describe("chaos: the tasks service stopped", () => {
  it("acknowledges 500 signed deliveries from the outbox, and each becomes exactly one task when tasks is back", {
    timeout: 90_000,
  }, async () => {
    const db = await testRedis("gateway-chaos-tasks");
    cleanups.push(() => db.cleanup());
    const first = await startTasks(db, logger);
    const port = first.port;
    const gateway = await startGateway(db, first.url, logger);
    cleanups.push(() => gateway.close());
    // A delivery made a task first, so that the gateway's client and health watch are warm.
    expect((await deliver(gateway.base, `warm-${randomUUID()}`, 0)).status).toBe(202);
    await gateway.forwarded();
    await first.close();

    const ids = Array.from({ length: 500 }, (_, i) => `chaos-${i}-${randomUUID()}`);
    const sendStarted = performance.now();
    const answers = await deliverAll(gateway.base, ids);
    const sendSeconds = (performance.now() - sendStarted) / 1000;
    const refused = answers.map((a, i) => ({ ...a, id: ids[i] })).filter((a) => a.status !== 202);
    expect(refused.slice(0, 5), `${refused.length} of 500 deliveries were not acknowledged`).toEqual([]);
    for (const answer of answers) expect(answer.body).toMatchObject({ queued: true });
    expect(await gateway.outbox.length()).toBe(500);

    // GitHub redelivering some of them (the same GUID) while tasks is still down: duplicates.
    const retried = await deliverAll(gateway.base, ids.slice(0, 50));
    for (const answer of retried) expect(answer).toMatchObject({ status: 202, body: { duplicate: true } });
    expect(await gateway.outbox.length()).toBe(500);

    // Tasks comes back on the same port: the outbox drains into it.
    const restartedAt = performance.now();
    const tasksAgain = await startTasks(db, logger, { port });
    cleanups.push(() => tasksAgain.close());
    const tasks = grpcClient(TaskService, tasksAgain.url);
    const wanted = new Set(ids);
    const all = await until("every queued delivery to become a task", 30_000, async () => {
      if ((await gateway.outbox.length()) > 0) return undefined;
      const listed = await listAllTasks(tasks, 100);
      return listed.filter((t) => wanted.has(t.event!.deliveryId)).length >= 500 ? listed : undefined;
    });
    const drainSeconds = (performance.now() - restartedAt) / 1000;

    // Redeliveries after the drain are duplicates of the tasks that exist.
    const late = await deliverAll(gateway.base, ids.slice(450));
    for (const answer of late) expect(answer).toMatchObject({ status: 202, body: { duplicate: true } });
    await sleep(500);

    const counts = tasksPerDelivery(await listAllTasks(tasks, 100));
    const missing = ids.filter((id) => !counts.has(id));
    const doubled = ids.filter((id) => (counts.get(id) ?? 0) > 1);
    expect(missing, "deliveries acknowledged but never a task").toEqual([]);
    expect(doubled, "deliveries that became more than one task").toEqual([]);
    expect(all.filter((t) => wanted.has(t.event!.deliveryId))).toHaveLength(500);
    expect(await gateway.outbox.length()).toBe(0);

    // The delivery log says where each one went: one verified entry per delivery, with its task.
    const taskOf = new Map(all.map((t) => [t.event!.deliveryId, t.id]));
    const logged = (await listAllDeliveries(grpcClient(DeliveryService, gateway.grpcUrl))).filter((d) =>
      wanted.has(d.deliveryId),
    );
    const firsts = logged.filter((d) => d.status !== DeliveryStatus.DUPLICATE);
    expect(firsts).toHaveLength(500);
    for (const d of firsts) {
      expect(
        [DeliveryStatus.ACCEPTED, DeliveryStatus.IGNORED],
        `delivery ${d.deliveryId} is ${DeliveryStatus[d.status]}`,
      ).toContain(d.status);
      expect(d.taskId).toBe(taskOf.get(d.deliveryId));
    }
    expect(logged.filter((d) => d.status === DeliveryStatus.DUPLICATE)).toHaveLength(100);
    console.log(
      `chaos (tasks down): 500 deliveries acknowledged in ${sendSeconds.toFixed(1)} s; all tasks ${drainSeconds.toFixed(1)} s after tasks restarted`,
    );
  });
});

// -------------------------------------------------------------------------------------------------

/** A redis-server of this test's own, without persistence: killing it loses everything in it. */
async function startRedisServer(port: number): Promise<ChildProcess> {
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  await until(`redis-server on port ${port}`, 10_000, async () => {
    if (child.exitCode !== null) throw new Error(`redis-server exited: ${output}`);
    return output.includes("Ready to accept connections") ? true : undefined;
  });
  return child;
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGKILL");
  await once(child, "exit");
}

/** The tasks service and the gateway, both on a dedicated redis-server that the test can kill. */
async function meshOnDedicatedRedis() {
  const port = await freePort();
  const redisServer = { child: await startRedisServer(port) };
  cleanups.push(() => kill(redisServer.child));
  // Both services connect to it as configured, as they would in production.
  const env = { REDIS_URL: `redis://127.0.0.1:${port}` };
  const db = { prefix: `hookmesh-test:gateway-chaos-redis:${randomUUID()}:` };
  const tasks = { current: await startTasks(db, logger, { env }) };
  cleanups.push(() => tasks.current.close());
  const gateway: RunningGateway = await startGateway(db, tasks.current.url, logger, env);
  cleanups.push(() => gateway.close());
  const reader = grpcClient(TaskService, tasks.current.url);
  return {
    db,
    env,
    tasks,
    gateway,
    reader,
    async stopRedis() {
      await kill(redisServer.child);
      await until("/readyz to say 503", 10_000, async () =>
        (await get(gateway.base, "/readyz")) === 503 ? true : undefined,
      );
    },
    /** Starts redis-server again on the same port, empty, and waits until the gateway is ready. */
    async startRedis() {
      redisServer.child = await startRedisServer(port);
      await until("/readyz to say 200", 15_000, async () =>
        (await get(gateway.base, "/readyz")) === 200 ? true : undefined,
      );
    },
  };
}

describe("chaos: Redis stopped", () => {
  it("answers 503 with Retry-After and acknowledges nothing while Redis is down, and 202 again once it is back", {
    timeout: 60_000,
  }, async () => {
    const { gateway, reader, stopRedis, startRedis } = await meshOnDedicatedRedis();
    const before = await deliver(gateway.base, `before-${randomUUID()}`, 0);
    expect(before).toMatchObject({ status: 202, body: { task_id: expect.any(String) } });
    expect(await get(gateway.base, "/readyz")).toBe(200);

    await stopRedis();
    expect(await get(gateway.base, "/healthz")).toBe(200);
    const outage = Array.from({ length: 100 }, (_, i) => `outage-${i}-${randomUUID()}`);
    const answers = await deliverAll(gateway.base, outage, 10);
    const acknowledged = answers.filter((a) => a.status >= 200 && a.status < 300);
    expect(acknowledged, "deliveries acknowledged while nothing could keep them").toEqual([]);
    for (const answer of answers) {
      expect(answer.status).toBe(503);
      expect(answer.headers["retry-after"]).toMatch(/^[1-9]\d*$/);
    }
    // GitHub retrying them while Redis is still down: the same answer, not a duplicate's 202.
    for (const answer of await deliverAll(gateway.base, outage.slice(0, 20), 10)) expect(answer.status).toBe(503);
    expect(await get(gateway.base, "/readyz")).toBe(503);
    expect(await get(gateway.base, "/healthz")).toBe(200);

    // Redis is back on the same port (empty: it kept nothing): deliveries are acknowledged again,
    // and the forwarder makes them tasks once the breaker on tasks lets it through again.
    await startRedis();
    const after = Array.from({ length: 50 }, (_, i) => `after-${i}-${randomUUID()}`);
    const answersAfter = await deliverAll(gateway.base, after, 10);
    for (const answer of answersAfter) expect(answer.status).toBe(202);
    const probe = await deliver(gateway.base, `fast-${randomUUID()}`, 1);
    expect(probe).toMatchObject({ status: 202, body: { task_id: expect.any(String) } });
    const task = await until("a delivery to become a task again", 15_000, async () =>
      reader.getTask({ id: String(probe.body.task_id) }).then(
        ({ task }) => task,
        () => undefined,
      ),
    );
    expect(task.event?.deliveryId).toMatch(/^fast-/);

    // The retried outage deliveries are now processed (the provider kept them), each once.
    for (const answer of await deliverAll(gateway.base, outage.slice(0, 20), 10)) expect(answer.status).toBe(202);
    await sleep(500);
    const counts = tasksPerDelivery(await listAllTasks(reader, 100));
    expect(outage.slice(0, 20).filter((id) => (counts.get(id) ?? 0) > 1)).toEqual([]);
    // Nothing refused during the outage and never retried turned up as a task.
    expect(outage.slice(20).filter((id) => counts.has(id))).toEqual([]);
  });

  it("forwards what the outbox takes after Redis came back empty, once tasks is back", {
    timeout: 60_000,
  }, async () => {
    // Redis restarting without its data takes the outbox's consumer group with it; the gateway
    // must still forward what it acknowledges afterwards.
    const { db, env, tasks, gateway, reader, stopRedis, startRedis } = await meshOnDedicatedRedis();
    await stopRedis();
    await startRedis();
    const port = tasks.current.port;
    await tasks.current.close();
    const queued = Array.from({ length: 20 }, (_, i) => `queued-${i}-${randomUUID()}`);
    for (const answer of await deliverAll(gateway.base, queued, 10))
      expect(answer).toMatchObject({ status: 202, body: { queued: true } });
    tasks.current = await startTasks(db, logger, { port, env });
    const wanted = new Set(queued);
    const listed = await until("the deliveries queued after the Redis restart to become tasks", 20_000, async () => {
      const all = await listAllTasks(reader, 100).catch(() => []);
      return all.filter((t) => wanted.has(t.event!.deliveryId)).length >= queued.length ? all : undefined;
    });
    const counts = tasksPerDelivery(listed);
    expect(queued.filter((id) => counts.get(id) !== 1)).toEqual([]);
    // The forwarder acknowledges an entry after tasks answered it: the last one may still be on its way.
    await expect.poll(() => gateway.outbox.length(), { timeout: 5_000 }).toBe(0);
  });
});
