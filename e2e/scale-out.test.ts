import type { ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { GATEWAY_TEST_ENV } from "@hookmesh/gateway/testing";
import {
  freePort,
  metricValue,
  parsePrometheusText,
  startService,
  TEST_REDIS_URL,
  type TestRedis,
  testRedis,
} from "@hookmesh/kit/testing";
import { TASKS_TEST_ENV } from "@hookmesh/tasks/testing";
import pg from "pg";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import {
  ActorSchema,
  EventSchema,
  GitHubSubjectSchema,
  Provider,
  SubjectSchema,
} from "../gen/hookmesh/events/v1/event_pb.js";
import { RouteSchema } from "../gen/hookmesh/tasks/v1/route_pb.js";
import { RouteService } from "../gen/hookmesh/tasks/v1/route_service_pb.js";
import { TaskState } from "../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../gen/hookmesh/tasks/v1/task_service_pb.js";
import { get, githubHeaders, post } from "./deliveries.js";

/**
 * Several replicas of a service, as `hookmesh start --replicas` runs them, sharing their
 * state: two gateways consuming one outbox never submit a delivery twice and hold a sender to
 * one rate limit; two dashboards project into one PostgreSQL one at a time; two tasks replicas
 * share one queue, its leases and subject locks, and behind one gateway (given both) and three
 * workers lose and repeat nothing while one of them is SIGKILLed and comes back. Real processes, Redis and PostgreSQL; cleartext on loopback (this is about
 * shared state, mTLS is every other end-to-end test's).
 */

const fixture = fileURLToPath(new URL("./fixtures/lifecycle-agent.sh", import.meta.url));
/** Distinct deliveries spread over the two gateways, and deliveries each sent to both. */
const SPREAD = 300;
const TWICE = 20;
/** The deliveries of the failover run; HOOKMESH_SCALE_OUT_DELIVERIES=100 for a quick one. */
const FAILOVER = Number(process.env.HOOKMESH_SCALE_OUT_DELIVERIES ?? 1_000);
const IN_FLIGHT = 16;
const POSTGRES = process.env.DASHBOARD_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432";

interface Running {
  child: ChildProcess;
  url: string;
  admin: string;
}

const children = new Set<ChildProcess>();

function run(packageName: string, env: NodeJS.ProcessEnv): ChildProcess {
  const child = startService(packageName, { LOG_LEVEL: "warn", ...env });
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

async function kill(child: ChildProcess, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill(signal);
  await exited;
}

async function ready(admin: string, timeoutMs = 60_000): Promise<void> {
  await vi.waitFor(
    async () => {
      if ((await get(admin, "/readyz")) !== 200) throw new Error(`${admin}/readyz is not 200 yet`);
    },
    { timeout: timeoutMs, interval: 100 },
  );
}

async function scrape(admin: string) {
  const res = await fetch(`${admin}/metrics`);
  return parsePrometheusText(await res.text());
}

async function startTasksReplica(db: TestRedis, port: number, adminPort: number): Promise<Running> {
  const child = run("@hookmesh/tasks", {
    ...TASKS_TEST_ENV,
    REDIS_URL: TEST_REDIS_URL,
    TASKS_REDIS_PREFIX: db.prefix,
    TASKS_PORT: String(port),
    TASKS_ADMIN_PORT: String(adminPort),
    TASKS_HOST: "127.0.0.1",
  });
  const replica = { child, url: `http://127.0.0.1:${port}`, admin: `http://127.0.0.1:${adminPort}` };
  await ready(replica.admin);
  return replica;
}

async function startGatewayReplica(
  db: TestRedis,
  tasksUrl: string,
  env: NodeJS.ProcessEnv = {},
): Promise<Running & { edge: string }> {
  const [port, httpPort, adminPort] = [await freePort(), await freePort(), await freePort()];
  const child = run("@hookmesh/gateway", {
    ...GATEWAY_TEST_ENV,
    REDIS_URL: TEST_REDIS_URL,
    GATEWAY_REDIS_PREFIX: `${db.prefix}gateway:`,
    TASKS_URL: tasksUrl,
    GATEWAY_PORT: String(port),
    GATEWAY_HTTP_PORT: String(httpPort),
    GATEWAY_ADMIN_PORT: String(adminPort),
    ...env,
  });
  const gateway = {
    child,
    url: `http://127.0.0.1:${port}`,
    admin: `http://127.0.0.1:${adminPort}`,
    edge: `http://127.0.0.1:${httpPort}`,
  };
  await ready(gateway.admin);
  return gateway;
}

/** A signed GitHub comment mentioning hookmesh, on an issue of its own (its own subject). */
function mention(issue: number): { body: string; headers: Record<string, string>; delivery: string } {
  const body = JSON.stringify({
    action: "created",
    issue: { number: issue, title: `scale-out ${issue}` },
    comment: { id: issue, body: "@hookmesh say hi", author_association: "OWNER" },
    repository: { name: "repo", owner: { login: "octo" } },
    sender: { id: 1, login: "octocat", type: "User" },
  });
  const delivery = randomUUID();
  return { body, headers: githubHeaders(body, { delivery }), delivery };
}

interface Acknowledged {
  delivery: string;
  status: number;
  taskId: string;
}

async function send(edge: string, delivery: ReturnType<typeof mention>): Promise<Acknowledged> {
  const reply = await post(edge, "github", delivery.body, delivery.headers);
  return { delivery: delivery.delivery, status: reply.status, taskId: String(reply.json.task_id ?? "") };
}

/** Sends `count` deliveries, `IN_FLIGHT` at a time, the i-th to `edgeOf(i)`; `each` after each answer. */
async function sendMany(
  count: number,
  edgeOf: (i: number) => string,
  first: number,
  each: (done: number) => Promise<void> = async () => {},
): Promise<Acknowledged[]> {
  const answers: Acknowledged[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < count) {
        const i = next++;
        answers.push(await send(edgeOf(i), mention(first + i)));
        await each(answers.length);
      }
    }),
  );
  return answers;
}

/** Outranks the default mention rule: lets the agent write its log, where each run's start and end show. */
async function upsertLoggingRoute(tasksUrl: string): Promise<void> {
  const routes = createClient(RouteService, createGrpcTransport({ baseUrl: tasksUrl }));
  await routes.upsertRoute({
    route: create(RouteSchema, {
      id: "scale-out",
      provider: Provider.GITHUB,
      eventTypes: ["issue_comment"],
      trigger: { kind: { case: "mention", value: { mention: "" } } },
      priority: 900,
      profile: { runner: "command", maxRunTime: durationFromMs(60_000), allowedEnv: ["HOOKMESH_TEST_LOG"] },
    }),
  });
}

function newLog(dir: string): string {
  const log = join(dir, `${randomUUID()}.log`);
  writeFileSync(log, "");
  return log;
}

/** An agent worker process running the lifecycle fixture, which logs each run's start and end to `log`. */
function startWorker(tasksUrl: string, id: string, dir: string, log: string): ChildProcess {
  return run("@hookmesh/agent", {
    HOOKMESH_INSECURE: "1",
    TASKS_URL: tasksUrl,
    AGENT_ID: `scale-out-${id}`,
    AGENT_PORT: "0",
    AGENT_HOST: "127.0.0.1",
    AGENT_RUNNER: "command",
    AGENT_COMMAND: fixture,
    AGENT_CONCURRENCY: "4",
    AGENT_WORKDIR: join(dir, `agent-${id}`),
    // Unsandboxed: the fixture writes its log outside its run directory.
    AGENT_SANDBOX: "off",
    SHUTDOWN_GRACE_MS: "1000",
    HOOKMESH_TEST_LOG: log,
    // No GitHub service runs here, so every run's reply fails and the agent warns; the runs go on.
    LOG_LEVEL: "error",
  });
}

interface Run {
  kind: "start" | "end";
  taskId: string;
  ns: bigint;
}

function runsIn(log: string): Run[] {
  return readFileSync(log, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const [kind, taskId, , ns] = line.split(" ");
      return { kind: kind as Run["kind"], taskId: taskId!, ns: BigInt(ns!) };
    });
}

/** A GitHub comment mentioning hookmesh on `subject`, as the gateway submits it. */
function mentionEvent(subject: string, text: string) {
  return create(EventSchema, {
    provider: Provider.GITHUB,
    deliveryId: randomUUID(),
    eventType: "issue_comment",
    action: "created",
    actor: create(ActorSchema, { id: "1", login: "octocat", association: "OWNER" }),
    subject: create(SubjectSchema, {
      key: subject,
      ref: { case: "github", value: create(GitHubSubjectSchema, { owner: "octo", repo: "repo" }) },
    }),
    text: `@hookmesh ${text}`,
  });
}

const submitted = { rpc_service: TaskService.typeName, rpc_method: "SubmitEvents", code: "OK" };

describe("replicas share their state", () => {
  let db: TestRedis;
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "hookmesh-scale-out-"));
  });

  // A key prefix per test: its services' state, deleted after it.
  beforeEach(async () => {
    db = await testRedis("scale-out");
  });

  afterEach(async () => {
    await Promise.all([...children].map((child) => kill(child)));
    await db.cleanup();
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("two gateways on one outbox: every delivery acknowledged is submitted once, whichever edge got it, however often", async () => {
    const tasks = await startTasksReplica(db, await freePort(), await freePort());
    const gateways = [await startGatewayReplica(db, tasks.url), await startGatewayReplica(db, tasks.url)];

    const spread = await sendMany(SPREAD, (i) => gateways[i % 2]!.edge, 1);
    // The same delivery to both edges at once: one claim wins, the other answers with its task.
    const twice = await Promise.all(
      Array.from({ length: TWICE }, async (_, i) => {
        const delivery = mention(SPREAD + 1 + i);
        return Promise.all(gateways.map((gateway) => send(gateway.edge, delivery)));
      }),
    );
    const answers = [...spread, ...twice.flat()];
    expect(answers.every((a) => a.status === 202 && a.taskId !== "")).toBe(true);
    for (const [first, second] of twice) expect(second!.taskId).toBe(first!.taskId);
    const taskOf = new Map(answers.map((a) => [a.delivery, a.taskId]));
    expect(taskOf.size).toBe(SPREAD + TWICE);
    expect(new Set(taskOf.values()).size).toBe(SPREAD + TWICE);

    // Both forwarders drain the one outbox (its consumer group gives each entry to one of them).
    await vi.waitFor(
      async () => {
        const taskSide = await scrape(tasks.admin);
        expect(metricValue(taskSide, "hookmesh_tasks_submitted_total", { outcome: "queued" })).toBe(SPREAD + TWICE);
        for (const gateway of gateways) {
          expect(metricValue(await scrape(gateway.admin), "hookmesh_gateway_outbox_length")).toBe(0);
        }
      },
      { timeout: 60_000, interval: 250 },
    );
    const taskSide = await scrape(tasks.admin);
    expect(metricValue(taskSide, "hookmesh_tasks_submitted_total", { outcome: "duplicate" })).toBe(0);
    expect(metricValue(taskSide, "hookmesh_tasks_submitted_total", { outcome: "ignored" })).toBe(0);
    for (const gateway of gateways) {
      const gatewaySide = await scrape(gateway.admin);
      expect(metricValue(gatewaySide, "hookmesh_rpc_client_handled_total", submitted)).toBeGreaterThan(0);
      expect(metricValue(gatewaySide, "hookmesh_gateway_deliveries_total", { outcome: "queued" })).toBeGreaterThan(0);
    }

    // Each acknowledged delivery is the task its answer named, made of that delivery.
    const client = createClient(TaskService, createGrpcTransport({ baseUrl: tasks.url }));
    for (const [delivery, taskId] of taskOf) {
      const { task } = await client.getTask({ id: taskId });
      expect(task?.event?.deliveryId).toBe(delivery);
    }
  }, 180_000);

  it("two gateways hold a sender to one rate limit between them", async () => {
    const tasks = await startTasksReplica(db, await freePort(), await freePort());
    const limit = { GATEWAY_RATE_LIMIT: "1", GATEWAY_RATE_BURST: "10" };
    const gateways = [await startGatewayReplica(db, tasks.url, limit), await startGatewayReplica(db, tasks.url, limit)];
    const started = performance.now();
    const answers: { edge: number; status: number }[] = [];
    for (let i = 0; i < 40; i++) {
      const delivery = mention(10_000 + i);
      answers.push({ edge: i % 2, status: (await send(gateways[i % 2]!.edge, delivery)).status });
    }
    const elapsedS = (performance.now() - started) / 1000;
    const accepted = answers.filter((a) => a.status === 202).length;
    // One bucket for both: the burst and what refilled meanwhile, not a burst per gateway.
    expect(accepted).toBeGreaterThanOrEqual(10);
    expect(accepted).toBeLessThanOrEqual(10 + Math.ceil(elapsedS) + 1);
    expect(accepted).toBeLessThan(20);
    for (const edge of [0, 1]) {
      expect(answers.filter((a) => a.edge === edge && a.status === 429).length).toBeGreaterThan(0);
    }
    expect(answers.every((a) => a.status === 202 || a.status === 429)).toBe(true);
  }, 120_000);

  it("two dashboards on one PostgreSQL: one projects at a time, the other takes over when it is killed", async () => {
    const tasks = await startTasksReplica(db, await freePort(), await freePort());
    const database = `hookmesh_scale_out_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
    const admin = new pg.Client({ connectionString: `${POSTGRES}/postgres` });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${database}`);
    const readModel = new pg.Client({ connectionString: `${POSTGRES}/${database}` });
    try {
      // Started together, as `hookmesh start --replicas dashboard=2` starts them: they take turns migrating.
      const dashboards = await Promise.all(
        [0, 1].map(async () => {
          const adminPort = await freePort();
          const child = run("@hookmesh/dashboard", {
            HOOKMESH_INSECURE: "1",
            DASHBOARD_PORT: String(await freePort()),
            DASHBOARD_HOST: "127.0.0.1",
            DASHBOARD_HTTP_PORT: String(await freePort()),
            DASHBOARD_ADMIN_PORT: String(adminPort),
            DASHBOARD_DATABASE_URL: `${POSTGRES}/${database}`,
            DASHBOARD_PROJECTOR_LEASE: "2s",
            TASKS_URL: tasks.url,
            SHUTDOWN_GRACE_MS: "0",
          });
          await ready(`http://127.0.0.1:${adminPort}`);
          return child;
        }),
      );
      await readModel.connect();
      const client = createClient(TaskService, createGrpcTransport({ baseUrl: tasks.url }));
      const submit = async (issue: number) => {
        const { task } = await client.submitEvent({ event: mentionEvent(`github:octo/repo#${issue}`, "say hi") });
        expect(task?.state).toBe(TaskState.QUEUED);
        return task!.id;
      };
      const projected = (id: string) =>
        vi.waitFor(
          async () => {
            const { rows } = await readModel.query("SELECT id FROM tasks WHERE id = $1", [id]);
            expect(rows).toHaveLength(1);
          },
          { timeout: 20_000, interval: 100 },
        );
      const holderPid = async () => {
        const { rows } = await readModel.query<{ holder: string | null }>("SELECT holder FROM projector");
        expect(rows).toHaveLength(1);
        return dashboards.find((child) => rows[0]!.holder?.includes(`-${child.pid}-`));
      };

      await projected(await submit(1));
      const first = await holderPid();
      expect(first).toBeDefined();
      await kill(first!);
      await projected(await submit(2));
      const second = await holderPid();
      expect(second).toBeDefined();
      expect(second).not.toBe(first);
    } finally {
      await readModel.end().catch(() => {});
      await Promise.all([...children].map((child) => kill(child)));
      await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      await admin.end();
    }
  }, 120_000);

  it("two tasks replicas on one Redis: one queue, each task leased and run once, one run per subject at a time, whichever replica a worker asks", async () => {
    const replicas = [
      await startTasksReplica(db, await freePort(), await freePort()),
      await startTasksReplica(db, await freePort(), await freePort()),
    ];
    await upsertLoggingRoute(replicas[0]!.url);
    const log = newLog(dir);
    // Each worker asks one replica; every task is submitted through the first.
    for (const [i, replica] of replicas.entries()) startWorker(replica.url, `replica-${i}`, dir, log);
    const subjects = Array.from({ length: 20 }, (_, i) => `github:octo/repo#${i + 1}`);
    const client = createClient(TaskService, createGrpcTransport({ baseUrl: replicas[0]!.url }));
    const submitted = await Promise.all(
      Array.from({ length: 80 }, async (_, i) => {
        const subject = subjects[i % subjects.length]!;
        const { task } = await client.submitEvent({ event: mentionEvent(subject, `sleep=0.0${i % 5}`) });
        return { id: task!.id, subject };
      }),
    );
    await vi.waitFor(
      async () =>
        expect(metricValue(await scrape(replicas[1]!.admin), "hookmesh_tasks", { state: "succeeded" })).toBe(80),
      { timeout: 120_000, interval: 250 },
    );
    const other = createClient(TaskService, createGrpcTransport({ baseUrl: replicas[1]!.url }));
    for (const { id } of submitted) expect((await other.getTask({ id })).task?.state).toBe(TaskState.SUCCEEDED);
    for (const replica of replicas) {
      expect(metricValue(await scrape(replica.admin), "hookmesh_tasks_leases_granted_total")).toBeGreaterThan(0);
    }

    const runs = runsIn(log);
    const starts = runs.filter((r) => r.kind === "start");
    expect(starts).toHaveLength(80);
    expect(new Set(starts.map((r) => r.taskId))).toEqual(new Set(submitted.map((t) => t.id)));
    const subjectOf = new Map(submitted.map((t) => [t.id, t.subject]));
    const ends = new Map(runs.filter((r) => r.kind === "end").map((r) => [r.taskId, r.ns]));
    for (const subject of subjects) {
      const ofSubject = starts
        .filter((r) => subjectOf.get(r.taskId) === subject)
        .toSorted((a, b) => (a.ns < b.ns ? -1 : 1));
      for (let i = 1; i < ofSubject.length; i++) {
        expect(ofSubject[i]!.ns).toBeGreaterThan(ends.get(ofSubject[i - 1]!.taskId)!);
      }
    }
  }, 180_000);

  it(`two tasks replicas behind one gateway and three workers: ${FAILOVER} deliveries while one replica is SIGKILLed and restarted, each one task that SUCCEEDED once`, async () => {
    const [portA, portB] = [await freePort(), await freePort()];
    const [adminA, adminB] = [await freePort(), await freePort()];
    const replicaA = await startTasksReplica(db, portA, adminA);
    let replicaB = await startTasksReplica(db, portB, adminB);
    const tasksUrl = `${replicaA.url},${replicaB.url}`;
    await upsertLoggingRoute(replicaA.url);
    const log = newLog(dir);
    const gateway = await startGatewayReplica(db, tasksUrl);
    for (let i = 0; i < 3; i++) startWorker(tasksUrl, String(i), dir, log);
    const endpoints = async (state: string) =>
      metricValue(await scrape(gateway.admin), "hookmesh_rpc_client_endpoints", { state });
    const served = async (admin: string) =>
      metricValue(await scrape(admin), "hookmesh_rpc_server_handled_total", { code: "OK" });

    // A third of the deliveries with both replicas up, a third with B killed, the rest after its restart.
    const third = Math.ceil(FAILOVER / 3);
    const before = await sendMany(third, () => gateway.edge, 1);
    await vi.waitFor(async () => expect(await served(replicaB.admin)).toBeGreaterThan(0), {
      timeout: 30_000,
      interval: 100,
    });
    expect(await served(replicaA.admin)).toBeGreaterThan(0);

    await vi.waitFor(async () => expect(await endpoints("serving")).toBe(2), { timeout: 10_000, interval: 100 });
    const killedAt = performance.now();
    await kill(replicaB.child);
    await vi.waitFor(async () => expect(await endpoints("serving")).toBe(1), { timeout: 10_000, interval: 20 });
    const noticedMs = performance.now() - killedAt;
    const during = await sendMany(third, () => gateway.edge, 1 + third);

    replicaB = await startTasksReplica(db, portB, adminB);
    await vi.waitFor(async () => expect(await endpoints("serving")).toBe(2), { timeout: 30_000, interval: 100 });
    const after = await sendMany(FAILOVER - 2 * third, () => gateway.edge, 1 + 2 * third);
    const answers = [...before, ...during, ...after];
    expect(answers.filter((a) => a.status !== 202)).toEqual([]);
    const acknowledged = new Set(answers.map((a) => a.taskId));
    expect(acknowledged.size).toBe(FAILOVER);

    const client = createClient(TaskService, createGrpcTransport({ baseUrl: replicaA.url }));
    await vi.waitFor(
      async () => {
        const depth = metricValue(await scrape(replicaA.admin), "hookmesh_tasks", { state: "succeeded" });
        expect(depth).toBe(FAILOVER);
      },
      { timeout: 150_000, interval: 500 },
    );
    for (const id of acknowledged) {
      const { task } = await client.getTask({ id });
      expect(task?.state, id).toBe(TaskState.SUCCEEDED);
    }
    // One run per task: none lost with B's connections, none run again.
    const runs = runsIn(log);
    const started = runs.filter((r) => r.kind === "start").map((r) => r.taskId);
    expect(started.length).toBe(FAILOVER);
    expect(new Set(started)).toEqual(acknowledged);
    expect(runs.filter((r) => r.kind === "end").length).toBe(FAILOVER);
    // The restarted B serves again, and the gateway noticed B's death within a second.
    await vi.waitFor(async () => expect(await served(replicaB.admin)).toBeGreaterThan(0), {
      timeout: 30_000,
      interval: 100,
    });
    expect(noticedMs).toBeLessThan(1_000);
  }, 180_000);
});
