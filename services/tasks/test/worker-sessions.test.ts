import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { Env } from "@hookmesh/kit";
import { callError, memoryLogger, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { TaskState } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { type OpenSessionResponse, WorkerService } from "../../../gen/hookmesh/tasks/v1/worker_service_pb.js";
import { startTasks } from "../src/testing.js";
import { queuedEvent } from "./events.js";

/** A session stream held in the background: its first message, and `hangUp` to end it as a dying worker's does. */
async function openSession(worker: Client<typeof WorkerService>, workerId: string, sessionId = "") {
  const hangUp = new AbortController();
  const messages = worker.openSession({ workerId, sessionId }, { signal: hangUp.signal })[Symbol.asyncIterator]();
  const first = (await messages.next()).value as OpenSessionResponse;
  let pings = 0;
  const reading = (async () => {
    while (!(await messages.next()).done) pings++;
  })().catch(() => {});
  return {
    first,
    get pings() {
      return pings;
    },
    async hangUp() {
      hangUp.abort();
      await reading;
    },
  };
}

/** Leases LeaseTasks long enough that only a release (not an expiry) can hand the task on. */
const LONG_LEASE: Env = { TASKS_LEASE_MS: "60000", TASKS_SESSION_RELEASE_MS: "600" };

describe("worker leases on real servers", () => {
  let db: TestRedis;
  const cleanups: (() => unknown)[] = [];

  async function replica(env: Env = {}, leaseFallbackPollMs?: number) {
    const running = await startTasks(db, memoryLogger("tasks-sessions").logger, {
      env,
      ...(leaseFallbackPollMs !== undefined && { leaseFallbackPollMs }),
    });
    const sessions = new Http2SessionManager(running.url);
    const transport = createGrpcTransport({ baseUrl: running.url, sessionManager: sessions });
    cleanups.push(
      () => running.close(),
      () => sessions.abort(),
    );
    return { running, client: createClient(TaskService, transport), worker: createClient(WorkerService, transport) };
  }

  beforeEach(async () => {
    db = await testRedis("tasks-sessions");
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    await db.cleanup();
  });

  it("wakes a LeaseTasks waiting on one replica as soon as another replica queues a task", async () => {
    // Neither replica looks for work on its own within the test: only the bell can wake the wait.
    const a = await replica({}, 60_000);
    const b = await replica({}, 60_000);
    const waiting = a.worker.leaseTasks({ workerId: "w", maxTasks: 1, wait: durationFromMs(20_000) });
    // Long enough for the lease call to have looked once and gone to wait.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const submitted = Date.now();
    const { task } = await b.client.submitEvent({ event: queuedEvent("bell") });
    const { leases } = await waiting;
    expect(leases.map((lease) => lease.task?.id)).toEqual([task!.id]);
    // Far within the 20 s wait and the 60 s fallback: the ring woke it.
    expect(Date.now() - submitted).toBeLessThan(10_000);
  });

  it("wakes a waiting LeaseTasks when a failed task's retry falls due", async () => {
    const { client, worker } = await replica({}, 60_000);
    const { task } = await client.submitEvent({ event: queuedEvent("retry") });
    const [lease] = (await worker.leaseTasks({ workerId: "w", maxTasks: 1 })).leases;
    // TASKS_RETRY_BASE_MS is 100 in tests: the retry is due within 100 ms.
    await worker.failTask({ taskId: task!.id, leaseId: lease!.leaseId, result: { error: "flaky" }, retryable: true });
    const { leases } = await worker.leaseTasks({ workerId: "w", maxTasks: 1, wait: durationFromMs(20_000) });
    expect(leases.map((l) => l.task?.attempt)).toEqual([2]);
  });

  it("gives a dead worker's leases back when its session's stream ends, long before they expire", async () => {
    const a = await replica(LONG_LEASE);
    const b = await replica(LONG_LEASE);
    const session = await openSession(a.worker, "doomed");
    expect(session.first.resumed).toBe(false);
    expect(session.first.releaseAfter).toBeDefined();
    const { task } = await a.client.submitEvent({ event: queuedEvent("dies") });
    const [lease] = (await a.worker.leaseTasks({ workerId: "doomed", maxTasks: 1, sessionId: session.first.sessionId }))
      .leases;
    expect(lease!.leaseId.startsWith(`${session.first.sessionId}.`)).toBe(true);

    // The worker's process dies: its stream ends, and nobody opens the session again.
    await session.hangUp();
    const { leases } = await b.worker.leaseTasks({ workerId: "standby", maxTasks: 1, wait: durationFromMs(20_000) });
    expect(leases.map((l) => l.task?.id)).toEqual([task!.id]);
    const again = leases[0]!.task!;
    expect(again.attempt).toBe(2);
    expect(again.lostLeases).toBe(1);
    expect(again.transitions.at(-2)?.reason).toMatch(/session of worker doomed ended/);

    // Whatever the dead worker's lease still says is refused.
    const ids = { taskId: task!.id, leaseId: lease!.leaseId };
    for (const call of [
      () => a.worker.heartbeat(ids),
      () => a.worker.reportEvents({ ...ids, events: [] }),
      () => a.worker.completeTask(ids),
      () => a.worker.failTask({ ...ids, retryable: true }),
    ]) {
      expect((await callError(call())).code).toBe(Code.FailedPrecondition);
    }
  });

  it("keeps a live worker's leases through a blip: the session opened again in time is resumed, nothing runs twice", async () => {
    const { client, worker } = await replica(LONG_LEASE);
    const first = await openSession(worker, "alive");
    const sessionId = first.first.sessionId;
    const { task } = await client.submitEvent({ event: queuedEvent("blip") });
    const [lease] = (await worker.leaseTasks({ workerId: "alive", maxTasks: 1, sessionId })).leases;

    // The connection blips: the stream ends, and the worker opens its session again at once.
    await first.hangUp();
    const second = await openSession(worker, "alive", sessionId);
    expect(second.first).toMatchObject({ sessionId, resumed: true });

    // Past the release delay (600 ms), with pings still coming: the lease is the worker's.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(second.pings).toBeGreaterThan(0);
    const ids = { taskId: task!.id, leaseId: lease!.leaseId };
    await worker.heartbeat(ids);
    expect((await worker.leaseTasks({ workerId: "other", maxTasks: 1 })).leases).toEqual([]);
    expect((await client.getTask({ id: task!.id })).task).toMatchObject({ state: TaskState.RUNNING, attempt: 1 });
    await worker.completeTask(ids);
    expect((await client.getTask({ id: task!.id })).task?.state).toBe(TaskState.SUCCEEDED);
    await second.hangUp();
  });

  it("tells a worker whose session was released that it was not resumed, and fences its old lease", async () => {
    const { client, worker } = await replica(LONG_LEASE);
    const first = await openSession(worker, "slow");
    const sessionId = first.first.sessionId;
    const { task } = await client.submitEvent({ event: queuedEvent("late") });
    const [lease] = (await worker.leaseTasks({ workerId: "slow", maxTasks: 1, sessionId })).leases;
    await first.hangUp();
    // Back after the release: the task went back to the queue meanwhile.
    await waitFor(async () => (await client.getTask({ id: task!.id })).task?.state === TaskState.QUEUED);
    const second = await openSession(worker, "slow", sessionId);
    expect(second.first.resumed).toBe(false);
    expect(second.first.sessionId).not.toBe(sessionId);
    const error = await callError(worker.heartbeat({ taskId: task!.id, leaseId: lease!.leaseId }));
    expect(error.code).toBe(Code.FailedPrecondition);
    await second.hangUp();
  });

  it("releases nothing when the replica itself ends the stream: the worker opens its session elsewhere", async () => {
    const a = await replica(LONG_LEASE);
    const b = await replica(LONG_LEASE);
    const session = await openSession(a.worker, "kept");
    const sessionId = session.first.sessionId;
    const { task } = await a.client.submitEvent({ event: queuedEvent("kept") });
    const [lease] = (await a.worker.leaseTasks({ workerId: "kept", maxTasks: 1, sessionId })).leases;
    await a.running.close();
    await session.hangUp();
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    const resumed = await openSession(b.worker, "kept", sessionId);
    expect(resumed.first.resumed).toBe(true);
    await b.worker.heartbeat({ taskId: task!.id, leaseId: lease!.leaseId });
    expect((await b.client.getTask({ id: task!.id })).task?.state).toBe(TaskState.RUNNING);
    await resumed.hangUp();
  });

  it("refuses a session id it did not make", async () => {
    const { worker } = await replica();
    const error = await callError(openSession(worker, "w", "../../etc"));
    expect(error.code).toBe(Code.InvalidArgument);
    const lease = await callError(worker.leaseTasks({ workerId: "w", maxTasks: 1, sessionId: "x.y" }));
    expect(lease.code).toBe(Code.InvalidArgument);
  });
});

async function waitFor(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("timed out waiting");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
