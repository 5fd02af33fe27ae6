import { type Client, Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import {
  callError,
  memoryLogger,
  TEST_REDIS_URL,
  type TestRedis,
  testIdentities,
  testRedis,
} from "@hookmesh/kit/testing";
import { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { type TaskEvent, TaskStage } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { type RunningTasks, startTasks } from "../src/testing.js";
import { WatchQuota } from "../src/watches.js";
import { queuedEvent } from "./events.js";

const stageOf = (event: TaskEvent | undefined) => (event?.kind.case === "stage" ? event.kind.value.stage : undefined);

/**
 * A WatchTask stream read in the background: `opened` once its first event came (or the
 * stream's error, if it failed first), `done` with everything it saw.
 */
function watch(client: Client<typeof TaskService>, id: string, signal?: AbortSignal) {
  let opened: () => void = () => {};
  let failed: (err: unknown) => void = () => {};
  const first = new Promise<void>((resolve, reject) => {
    opened = resolve;
    failed = reject;
  });
  const done = (async () => {
    const seen: TaskEvent[] = [];
    for await (const res of client.watchTask({ id }, { signal })) {
      seen.push(res.event!);
      opened();
    }
    return seen;
  })();
  done.catch(failed);
  // Whoever waits for `done` sees its error; `opened` need not be awaited.
  first.catch(() => {});
  return { opened: first, done };
}

/** The test server's channels and, per channel, how many connections subscribe to it. */
async function subscribers(admin: Redis, prefix: string, ids: string[]): Promise<number[]> {
  const reply = (await admin.call("PUBSUB", "NUMSUB", ...ids.map((id) => `${prefix}events:${id}`))) as (
    | string
    | number
  )[];
  return reply.filter((_, i) => i % 2 === 1).map(Number);
}

/** The connections the test server named as its timeline subscriber, with their subscription counts. */
async function signalConnections(admin: Redis, prefix: string): Promise<{ id: string; sub: number }[]> {
  const list = (await admin.call("CLIENT", "LIST", "TYPE", "pubsub")) as string;
  return list
    .split("\n")
    .map((line) => Object.fromEntries(line.split(" ").map((field) => field.split("=", 2) as [string, string])))
    .filter((client) => client.name === `${prefix}watch`)
    .map((client) => ({ id: client.id!, sub: Number(client.sub) }));
}

describe("WatchTask on a real server", () => {
  let db: TestRedis;
  let admin: Redis;
  let tasks: RunningTasks;
  let sessions: Http2SessionManager;
  let client: Client<typeof TaskService>;

  async function start(env: Record<string, string>) {
    tasks = await startTasks(db, memoryLogger("tasks-watch").logger, { env });
    sessions = new Http2SessionManager(tasks.url);
    client = createClient(TaskService, createGrpcTransport({ baseUrl: tasks.url, sessionManager: sessions }));
  }

  beforeEach(async () => {
    db = await testRedis("tasks-watch");
    admin = new Redis(TEST_REDIS_URL);
  });
  afterEach(async () => {
    sessions?.abort();
    await tasks?.close();
    admin.disconnect();
    await db.cleanup();
  });

  it("serves 100 concurrent streams over one Redis subscription, and lets go of it when they end", async () => {
    await start({ TASKS_MAX_WATCHES_PER_CALLER: "100" });
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push((await client.submitEvent({ event: queuedEvent(`many-${i}`) })).task!.id);
    const streams = Array.from({ length: 100 }, (_, i) => watch(client, ids[i % ids.length]!));
    await Promise.all(streams.map((s) => s.opened));

    expect(await subscribers(admin, db.prefix, ids)).toEqual(ids.map(() => 1));
    // One channel per task, and the work bell's, which the connection carries too.
    expect(await signalConnections(admin, db.prefix)).toEqual([{ id: expect.any(String), sub: ids.length + 1 }]);

    // A stream ends when its task does.
    for (const id of ids) await client.cancelTask({ id, reason: "done watching" });
    for (const seen of await Promise.all(streams.map((s) => s.done))) {
      expect(seen.map(stageOf)).toEqual([
        TaskStage.RECEIVED,
        TaskStage.VERIFIED,
        TaskStage.ROUTED,
        TaskStage.QUEUED,
        TaskStage.CANCELED,
      ]);
    }
    await expect.poll(() => subscribers(admin, db.prefix, ids)).toEqual(ids.map(() => 0));
  });

  it("sees a task end that was signalled while its subscription was cut", async () => {
    await start({});
    const { task } = await client.submitEvent({ event: queuedEvent("reconnect") });
    const stream = watch(client, task!.id, AbortSignal.timeout(15_000));
    await stream.opened;
    const [connection] = await signalConnections(admin, db.prefix);
    await admin.call("CLIENT", "KILL", "ID", connection!.id);
    // Published while no subscriber listens: only the resubscription's wake-up can tell the stream.
    await client.cancelTask({ id: task!.id });
    expect((await stream.done).map(stageOf).at(-1)).toBe(TaskStage.CANCELED);

    const [again] = await signalConnections(admin, db.prefix);
    expect(again?.id).not.toBe(connection!.id);
    const { task: next } = await client.submitEvent({ event: queuedEvent("after-reconnect") });
    const after = watch(client, next!.id);
    await after.opened;
    await client.cancelTask({ id: next!.id });
    expect((await after.done).map(stageOf).at(-1)).toBe(TaskStage.CANCELED);
  });

  it("caps the streams of each caller identity, with ResourceExhausted past the cap", async () => {
    const identities = await testIdentities();
    await start({ ...identities.env, TASKS_MAX_WATCHES_PER_CALLER: "2" });
    const oneAttempt = { retry: { maxAttempts: 1 } };
    const operatorClients = identities.clients("operator", oneAttempt);
    const dashboardClients = identities.clients("dashboard", oneAttempt);
    const gatewayClients = identities.clients("gateway", oneAttempt);
    try {
      const operator = operatorClients.client(TaskService, tasks.url, "tasks");
      const dashboard = dashboardClients.client(TaskService, tasks.url, "tasks");
      const { task } = await gatewayClients
        .client(TaskService, tasks.url, "tasks")
        .submitEvent({ event: queuedEvent("capped") });
      const abort = new AbortController();
      const held = [watch(operator, task!.id, abort.signal), watch(operator, task!.id, abort.signal)];
      await Promise.all(held.map((s) => s.opened));

      const refused = await callError(watch(operator, task!.id).done);
      expect(refused.code).toBe(Code.ResourceExhausted);
      // Another identity has a budget of its own.
      const other = watch(dashboard, task!.id, abort.signal);
      await other.opened;

      abort.abort();
      await Promise.allSettled([...held, other].map((s) => s.done));
      // Slots come back when the server has seen the streams end, a moment after the client.
      const stop = new AbortController();
      await vi.waitFor(() => watch(operator, task!.id, stop.signal).opened, { timeout: 5_000, interval: 50 });
      stop.abort();
    } finally {
      operatorClients.close();
      dashboardClients.close();
      gatewayClients.close();
    }
  });
});

describe("WatchQuota", () => {
  it("counts per caller and in total, and takes each slot back once", () => {
    const quota = new WatchQuota({ method: "WatchTask", maxPerCaller: 2, maxTotal: 3 });
    const a1 = quota.admit("a");
    quota.admit("a");
    expect(() => quota.admit("a")).toThrow(/per caller/);
    quota.admit("b");
    expect(() => quota.admit("c")).toThrow(/most WatchTask streams \(3\)/);
    a1();
    a1();
    quota.admit("c");
    expect(() => quota.admit("a")).toThrow(/most WatchTask streams/);
  });
});
