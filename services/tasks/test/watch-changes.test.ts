import { type Client, Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { Env } from "@hookmesh/kit";
import { callError, memoryLogger, type TestRedis, testIdentities, testRedis } from "@hookmesh/kit/testing";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { TaskStage, TaskState } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { type TaskChange, TaskService } from "../../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { WorkerService } from "../../../gen/hookmesh/tasks/v1/worker_service_pb.js";
import { startTasks } from "../src/testing.js";
import { queuedEvent } from "./events.js";

const stageOf = (change: TaskChange) => (change.event?.kind.case === "stage" ? change.event.kind.value.stage : 0);
/** A change as these tests compare it: its task, its stage (0 for what a worker reports) and its task's state. */
const summary = (change: TaskChange) => [change.taskId, stageOf(change), change.task?.state];

/** A WatchChanges stream read in the background: what it saw so far, and `done` when it ends or `signal` hangs up. */
function follow(client: Client<typeof TaskService>, afterCursor: string, signal?: AbortSignal) {
  const seen: TaskChange[] = [];
  const done = (async () => {
    try {
      for await (const { change } of client.watchChanges({ afterCursor }, { signal })) seen.push(change!);
    } catch (err) {
      // Aborting is how these tests hang up; anything else is the stream's failure.
      if (!signal?.aborted) throw err;
    }
  })();
  // Whoever waits for `done` sees its error.
  done.catch(() => {});
  return { seen, done };
}

describe("WatchChanges on a real server", () => {
  let db: TestRedis;
  const cleanups: (() => unknown)[] = [];

  /** A tasks replica on the test's Redis prefix, with a cleartext client of each service. */
  async function replica(env: Env = {}) {
    const running = await startTasks(db, memoryLogger("tasks-changes").logger, { env });
    const sessions = new Http2SessionManager(running.url);
    const transport = createGrpcTransport({ baseUrl: running.url, sessionManager: sessions });
    let closing: Promise<void> | undefined;
    const close = () => {
      closing ??= running.close();
      return closing;
    };
    cleanups.push(close, () => sessions.abort());
    return {
      running,
      close,
      client: createClient(TaskService, transport),
      worker: createClient(WorkerService, transport),
    };
  }

  beforeEach(async () => {
    db = await testRedis("tasks-changes");
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    await db.cleanup();
  });

  it("resumes after a cursor with every later change once and in order, then goes on live", async () => {
    const { client } = await replica();
    const a = (await client.submitEvent({ event: queuedEvent("a") })).task!.id;
    await client.cancelTask({ id: a, reason: "enough" });
    const abort = new AbortController();
    const first = follow(client, "", abort.signal);
    await expect.poll(() => first.seen.length).toBe(5);
    expect(first.seen.map(summary)).toEqual([
      [a, TaskStage.RECEIVED, TaskState.QUEUED],
      [a, TaskStage.VERIFIED, undefined],
      [a, TaskStage.ROUTED, undefined],
      [a, TaskStage.QUEUED, undefined],
      [a, TaskStage.CANCELED, TaskState.CANCELED],
    ]);
    expect(first.seen.every((change) => !change.missed)).toBe(true);
    // The event ids are the ones WatchTask gives.
    const timeline: string[] = [];
    for await (const { event } of client.watchTask({ id: a })) timeline.push(event!.id);
    expect(first.seen.map((change) => change.event!.id)).toEqual(timeline);

    const resumed = follow(client, first.seen[1]!.cursor, abort.signal);
    await expect.poll(() => resumed.seen.length).toBe(3);
    const b = (await client.submitEvent({ event: queuedEvent("b") })).task!.id;
    await expect.poll(() => resumed.seen.length).toBe(7);
    await expect.poll(() => first.seen.length).toBe(9);
    abort.abort();
    await Promise.all([first.done, resumed.done]);

    expect(resumed.seen.map((change) => change.cursor)).toEqual(first.seen.slice(2).map((change) => change.cursor));
    expect(resumed.seen.slice(3).map(summary)).toEqual([
      [b, TaskStage.RECEIVED, TaskState.QUEUED],
      [b, TaskStage.VERIFIED, undefined],
      [b, TaskStage.ROUTED, undefined],
      [b, TaskStage.QUEUED, undefined],
    ]);
    // The BASIC view: no raw body.
    expect(resumed.seen[3]!.task?.event?.rawBody).toHaveLength(0);
  });

  it("gives the task after each change to its record, and none with what the agent reports", async () => {
    const { client, worker } = await replica();
    const id = (await client.submitEvent({ event: queuedEvent("run") })).task!.id;
    const [lease] = (await worker.leaseTasks({ workerId: "w1", maxTasks: 1 })).leases;
    await worker.reportEvents({
      taskId: id,
      leaseId: lease!.leaseId,
      events: [
        { kind: { case: "output", value: { text: "working" } } },
        { kind: { case: "usage", value: { costUsd: 0.25, inputTokens: 10n } } },
      ],
    });
    await worker.completeTask({ taskId: id, leaseId: lease!.leaseId, result: { costUsd: 0.5, answer: "done" } });

    const abort = new AbortController();
    const stream = follow(client, "", abort.signal);
    await expect.poll(() => stream.seen.length).toBe(8);
    abort.abort();
    await stream.done;
    const [leased, output, usage, completed] = stream.seen.slice(4);
    expect(leased!.task).toMatchObject({ id, state: TaskState.RUNNING, attempt: 1, workerId: "w1" });
    expect([output!.event?.kind.case, output!.task]).toEqual(["output", undefined]);
    expect([usage!.event?.kind.case, usage!.task]).toEqual(["usage", undefined]);
    expect(stageOf(completed!)).toBe(TaskStage.COMPLETED);
    expect(completed!.task).toMatchObject({ state: TaskState.SUCCEEDED, workerId: "", result: { answer: "done" } });
  });

  it("marks the first change after a cursor that fell out of the log as missed", async () => {
    const { client, worker } = await replica({ TASKS_CHANGE_LOG_MAX: "100" });
    const id = (await client.submitEvent({ event: queuedEvent("chatty") })).task!.id;
    const abort = new AbortController();
    const early = follow(client, "", abort.signal);
    await expect.poll(() => early.seen.length).toBe(4);
    abort.abort();
    await early.done;

    const [lease] = (await worker.leaseTasks({ workerId: "w1", maxTasks: 1 })).leases;
    await worker.reportEvents({
      taskId: id,
      leaseId: lease!.leaseId,
      events: Array.from({ length: 300 }, (_, i) => ({ kind: { case: "output" as const, value: { text: `${i}` } } })),
    });
    const hangUp = new AbortController();
    const late = follow(client, early.seen[0]!.cursor, hangUp.signal);
    await expect.poll(() => late.seen.length).toBeGreaterThan(0);
    // Between about 100 and 200 changes are kept; the first of them tells of the gap, the rest do not.
    expect(late.seen[0]!.missed).toBe(true);
    await expect.poll(() => late.seen.length).toBeGreaterThanOrEqual(100);
    expect(late.seen.slice(1).some((change) => change.missed)).toBe(false);
    hangUp.abort();
    await late.done;
  });

  it("streams from one replica the changes made through another", async () => {
    const one = await replica();
    const two = await replica();
    const abort = new AbortController();
    const stream = follow(two.client, "", abort.signal);
    // Subscribed once the stream's first read is done: wait for the server to see it.
    await vi.waitFor(async () => {
      const { task } = await one.client.submitEvent({ event: queuedEvent("first") });
      expect(stream.seen.some((change) => change.taskId === task!.id)).toBe(true);
    });
    const id = (await one.client.submitEvent({ event: queuedEvent("across") })).task!.id;
    await one.client.cancelTask({ id });
    await expect
      .poll(() => stream.seen.filter((change) => change.taskId === id).map(summary))
      .toEqual([
        [id, TaskStage.RECEIVED, TaskState.QUEUED],
        [id, TaskStage.VERIFIED, undefined],
        [id, TaskStage.ROUTED, undefined],
        [id, TaskStage.QUEUED, undefined],
        [id, TaskStage.CANCELED, TaskState.CANCELED],
      ]);
    abort.abort();
    await stream.done;
  });

  it("refuses a malformed cursor", async () => {
    const { client } = await replica();
    const err = await callError(follow(client, "not-a-cursor").done);
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(/after_cursor/);
  });

  it("ends its streams cleanly when the server drains, without waiting out the grace", async () => {
    const { close, client } = await replica({ SHUTDOWN_GRACE_MS: "30000" });
    await client.submitEvent({ event: queuedEvent("drain") });
    const stream = follow(client, "");
    await expect.poll(() => stream.seen.length).toBe(4);
    const started = Date.now();
    await close();
    await stream.done;
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("serves only the dashboard identity, and caps its streams with ResourceExhausted", async () => {
    const identities = await testIdentities();
    const { running } = await replica(identities.env);
    const oneAttempt = { retry: { maxAttempts: 1 } };
    const dashboardClients = identities.clients("dashboard", oneAttempt);
    const operatorClients = identities.clients("operator", oneAttempt);
    cleanups.push(
      () => dashboardClients.close(),
      () => operatorClients.close(),
    );
    const dashboard = dashboardClients.client(TaskService, running.url, "tasks");
    const operator = operatorClients.client(TaskService, running.url, "tasks");
    expect((await callError(follow(operator, "").done)).code).toBe(Code.PermissionDenied);

    const gateway = identities.clients("gateway", oneAttempt);
    cleanups.push(() => gateway.close());
    await gateway.client(TaskService, running.url, "tasks").submitEvent({ event: queuedEvent("capped") });
    const abort = new AbortController();
    const held = Array.from({ length: 8 }, () => follow(dashboard, "", abort.signal));
    await expect.poll(() => held.every((stream) => stream.seen.length === 4)).toBe(true);
    expect((await callError(follow(dashboard, "").done)).code).toBe(Code.ResourceExhausted);

    abort.abort();
    await Promise.all(held.map((stream) => stream.done));
    // Slots come back when the server has seen the streams end, a moment after the client.
    const stop = new AbortController();
    await vi.waitFor(
      async () => {
        const again = follow(dashboard, "", stop.signal);
        await expect.poll(() => again.seen.length, { timeout: 1_000 }).toBe(4);
      },
      { timeout: 5_000, interval: 50 },
    );
    stop.abort();
  });
});
