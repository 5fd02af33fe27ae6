import { create } from "@bufbuild/protobuf";
import { TEST_REDIS_URL, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type Event, EventSchema, Provider, SubjectSchema } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { AgentProfileSchema, RouteSchema } from "../../../gen/hookmesh/tasks/v1/route_pb.js";
import {
  RunOutcome,
  type TaskEvent,
  TaskResultSchema,
  TaskStage,
  TaskState,
  TaskView,
} from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { type EngineOptions, type EventRouter, TaskEngine } from "../src/engine.js";
import { InvalidEventError, LeaseLostError, TaskStateError } from "../src/errors.js";
import { SubjectLocks } from "../src/subject-locks.js";
import { TaskStore, timelineKey } from "../src/task-store.js";
import { Timeline } from "../src/timeline.js";
import { TimelineSignals } from "../src/watches.js";
import { WorkQueue } from "../src/work-queue.js";

/** Routes every event whose text is not "ignore me"; the priority comes from the text "p=N". */
const testRouter: EventRouter = {
  async route(event) {
    if (event.text === "ignore me") return { matched: false, reason: "no rule matched" };
    const priority = Number(/p=(\d+)/.exec(event.text)?.[1] ?? 0);
    return {
      matched: true,
      route: create(RouteSchema, { id: "test-route" }),
      prompt: `do: ${event.text}`,
      priority,
      profile: create(AgentProfileSchema, { runner: "command" }),
      maxAttempts: 0,
    };
  },
};

const OPTIONS: EngineOptions = {
  leaseMs: 5_000,
  defaultMaxAttempts: 2,
  retryBaseMs: 50,
  retryMaxMs: 100,
  subjectBusyDelayMs: 50,
  pollMs: 20,
};

let deliveries = 0;
function event(text = "hello", subjectKey = `github:o/r#${++deliveries}`): Event {
  return create(EventSchema, {
    provider: Provider.GITHUB,
    deliveryId: `delivery-${++deliveries}`,
    eventType: "issue_comment",
    text,
    subject: create(SubjectSchema, { key: subjectKey }),
    rawBody: new TextEncoder().encode("{}"),
  });
}

const result = (outcome: RunOutcome, error = "") =>
  create(TaskResultSchema, { outcome, error, answer: "done", exitCode: error ? 1 : 0 });
const stages = (events: TaskEvent[]) => events.flatMap((e) => (e.kind.case === "stage" ? [e.kind.value.stage] : []));

describe("TaskEngine", () => {
  let db: TestRedis;
  let bull: Redis;
  let subscriber: Redis;
  let queue: WorkQueue;
  let store: TaskStore;
  let timeline: Timeline;

  async function engine(options: Partial<EngineOptions> = {}) {
    const merged = { ...OPTIONS, ...options };
    queue = new WorkQueue(bull, { keyPrefix: `${db.prefix}bull`, leaseMs: merged.leaseMs }, pino({ level: "silent" }));
    await queue.start();
    return new TaskEngine(
      store,
      timeline,
      queue,
      new SubjectLocks(db.redis, { keyPrefix: db.prefix, leaseMs: merged.leaseMs }),
      testRouter,
      merged,
      pino({ level: "silent" }),
    );
  }

  beforeEach(async () => {
    db = await testRedis("engine");
    bull = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    subscriber = new Redis(TEST_REDIS_URL, { autoResubscribe: false });
    store = new TaskStore(db.redis, { keyPrefix: db.prefix, retentionMs: 60_000, ignoredBodyRetentionMs: 1_000 });
    timeline = new Timeline(db.redis, {
      keyPrefix: db.prefix,
      maxTextBytes: 64,
      maxEvents: 1000,
      signals: new TimelineSignals(subscriber, (id) => timelineKey(db.prefix, id), pino({ level: "silent" })),
    });
  });

  afterEach(async () => {
    await queue?.close();
    bull.disconnect();
    subscriber.disconnect();
    await db.cleanup();
  });

  const never = new AbortController().signal;

  it("queues a routed event and records its way in the timeline", async () => {
    const tasks = await engine();
    const { task, duplicate } = await tasks.submit(event("p=5 please"));
    expect(duplicate).toBe(false);
    expect(task).toMatchObject({
      state: TaskState.QUEUED,
      routeId: "test-route",
      prompt: "do: p=5 please",
      priority: 5,
      maxAttempts: 2,
    });
    expect(stages(await timeline.read(task.id))).toEqual([
      TaskStage.RECEIVED,
      TaskStage.VERIFIED,
      TaskStage.ROUTED,
      TaskStage.QUEUED,
    ]);
    expect(await queue.isQueued(task.id)).toBe(true);
  });

  it("records an unrouted event as ignored, with the reason, and queues nothing", async () => {
    const tasks = await engine();
    const { task } = await tasks.submit(event("ignore me"));
    expect(task.state).toBe(TaskState.IGNORED);
    expect(task.transitions.at(-1)?.reason).toBe("no rule matched");
    expect(stages(await timeline.read(task.id))).toEqual([TaskStage.RECEIVED, TaskStage.VERIFIED, TaskStage.IGNORED]);
    expect(await queue.isQueued(task.id)).toBe(false);
  });

  it("rejects an event without delivery id", async () => {
    const tasks = await engine();
    await expect(tasks.submit(create(EventSchema, { provider: Provider.GITHUB }))).rejects.toThrow(InvalidEventError);
  });

  it("leases, heartbeats and completes a task once; a repeated completion changes nothing", async () => {
    const tasks = await engine();
    const { task } = await tasks.submit(event());
    const [grant] = await tasks.lease("w1", 5, 0, never);
    expect(grant?.task).toMatchObject({ id: task.id, state: TaskState.RUNNING, attempt: 1, workerId: "w1" });
    expect(await tasks.lease("w2", 5, 0, never)).toEqual([]);
    expect((await tasks.heartbeat(task.id, grant!.leaseId)).cancelRequested).toBe(false);
    await expect(tasks.heartbeat(task.id, "someone-else")).rejects.toThrow(LeaseLostError);

    const done = await tasks.complete(task.id, grant!.leaseId, result(RunOutcome.SUCCEEDED));
    expect(done).toMatchObject({ state: TaskState.SUCCEEDED, workerId: "", result: { answer: "done" } });
    expect((await tasks.complete(task.id, grant!.leaseId, result(RunOutcome.SUCCEEDED))).state).toBe(
      TaskState.SUCCEEDED,
    );
    await expect(tasks.heartbeat(task.id, grant!.leaseId)).rejects.toThrow(LeaseLostError);
    expect(await queue.isQueued(task.id)).toBe(false);
    expect(stages(await timeline.read(task.id)).slice(-2)).toEqual([TaskStage.LEASED, TaskStage.COMPLETED]);
    expect((await store.get(task.id, TaskView.BASIC)).transitions.map((t) => t.state)).toEqual([
      TaskState.QUEUED,
      TaskState.RUNNING,
      TaskState.SUCCEEDED,
    ]);
  });

  it("retries a retryable failure after a backoff, then dead-letters it", async () => {
    const tasks = await engine();
    const { task } = await tasks.submit(event());
    const [first] = await tasks.lease("w1", 1, 0, never);
    const retried = await tasks.fail(task.id, first!.leaseId, result(RunOutcome.AGENT_ERROR, "exit 1"), true);
    expect(retried.state).toBe(TaskState.QUEUED);
    expect(retried.transitions.at(-1)?.reason).toMatch(/^attempt 1 failed: exit 1; retrying in/);

    const [second] = await tasks.lease("w2", 1, 2_000, never);
    expect(second?.task.attempt).toBe(2);
    const dead = await tasks.fail(task.id, second!.leaseId, result(RunOutcome.TIMED_OUT, "timed out"), true);
    expect(dead.state).toBe(TaskState.DEAD);
    expect(stages(await timeline.read(task.id)).slice(-3)).toEqual([
      TaskStage.LEASED,
      TaskStage.FAILED,
      TaskStage.DEAD,
    ]);
    expect(await queue.isQueued(task.id)).toBe(false);

    const again = await tasks.retry(task.id);
    expect(again).toMatchObject({ state: TaskState.QUEUED, maxAttempts: 4 });
    const [third] = await tasks.lease("w3", 1, 1_000, never);
    expect(third?.task.attempt).toBe(3);
  });

  it("fails a non-retryable failure for good", async () => {
    const tasks = await engine();
    const { task } = await tasks.submit(event());
    const [grant] = await tasks.lease("w1", 1, 0, never);
    const failed = await tasks.fail(task.id, grant!.leaseId, result(RunOutcome.COST_CAP, "cost cap"), false);
    expect(failed.state).toBe(TaskState.FAILED);
    expect(failed.result?.outcome).toBe(RunOutcome.COST_CAP);
    await expect(tasks.retry((await tasks.submit(event())).task.id)).rejects.toThrow(TaskStateError);
  });

  it("gives the task of a worker that stopped heartbeating to another worker", async () => {
    const tasks = await engine({ leaseMs: 600 });
    const { task } = await tasks.submit(event());
    const [lost] = await tasks.lease("w1", 1, 0, never);
    const [taken] = await tasks.lease("w2", 1, 5_000, never);
    expect(taken?.task).toMatchObject({ id: task.id, attempt: 2, workerId: "w2" });
    await expect(tasks.complete(task.id, lost!.leaseId, result(RunOutcome.SUCCEEDED))).rejects.toThrow(LeaseLostError);
    expect(stages(await timeline.read(task.id))).toContain(TaskStage.LEASE_EXPIRED);
    expect((await tasks.complete(task.id, taken!.leaseId, result(RunOutcome.SUCCEEDED))).state).toBe(
      TaskState.SUCCEEDED,
    );
  });

  it("dead-letters a task whose leases keep expiring", async () => {
    const tasks = await engine({ leaseMs: 400 });
    const { task } = await tasks.submit(event());
    await tasks.lease("w1", 1, 0, never);
    await tasks.lease("w2", 1, 5_000, never);
    expect(await tasks.lease("w3", 1, 3_000, never)).toEqual([]);
    expect((await store.get(task.id)).state).toBe(TaskState.DEAD);
  });

  it("runs one task per subject at a time", async () => {
    const tasks = await engine();
    const a = (await tasks.submit(event("a", "github:o/r#7"))).task;
    const b = (await tasks.submit(event("b", "github:o/r#7"))).task;
    const grants = await tasks.lease("w1", 5, 0, never);
    expect(grants.map((g) => g.task.id)).toEqual([a.id]);
    expect(await tasks.lease("w2", 5, 200, never)).toEqual([]);
    await tasks.complete(a.id, grants[0]!.leaseId, result(RunOutcome.SUCCEEDED));
    const [next] = await tasks.lease("w2", 5, 2_000, never);
    expect(next?.task.id).toBe(b.id);
  });

  it("leases higher priorities first, and equal priorities in arrival order", async () => {
    const tasks = await engine();
    const low = (await tasks.submit(event("p=1"))).task;
    const high = (await tasks.submit(event("p=900"))).task;
    const lowToo = (await tasks.submit(event("p=1"))).task;
    const grants = await tasks.lease("w1", 3, 0, never);
    expect(grants.map((g) => g.task.id)).toEqual([high.id, low.id, lowToo.id]);
  });

  it("wakes a waiting lease as soon as a task is queued", async () => {
    const tasks = await engine({ pollMs: 10_000 });
    const waiting = tasks.lease("w1", 1, 5_000, never);
    const started = Date.now();
    const { task } = await tasks.submit(event());
    expect((await waiting).map((g) => g.task.id)).toEqual([task.id]);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it("cancels a queued task at once", async () => {
    const tasks = await engine();
    const { task } = await tasks.submit(event());
    expect((await tasks.cancel(task.id, "not needed")).state).toBe(TaskState.CANCELED);
    expect(await tasks.lease("w1", 1, 0, never)).toEqual([]);
    expect((await tasks.cancel(task.id, "again")).state).toBe(TaskState.CANCELED);
  });

  it("asks the worker of a running task to stop, and cancels it when the worker gives up", async () => {
    const tasks = await engine();
    const { task } = await tasks.submit(event());
    const [grant] = await tasks.lease("w1", 1, 0, never);
    expect((await tasks.cancel(task.id, "operator")).cancelRequested).toBe(true);
    expect((await tasks.heartbeat(task.id, grant!.leaseId)).cancelRequested).toBe(true);
    const canceled = await tasks.fail(task.id, grant!.leaseId, result(RunOutcome.CANCELED, "canceled"), false);
    expect(canceled.state).toBe(TaskState.CANCELED);
    await expect(
      tasks.cancel((await tasks.complete(task.id, grant!.leaseId, undefined)).id, "late"),
    ).resolves.toMatchObject({
      state: TaskState.CANCELED,
    });
  });

  it("refuses to cancel a task that already ended", async () => {
    const tasks = await engine();
    const { task } = await tasks.submit(event());
    const [grant] = await tasks.lease("w1", 1, 0, never);
    await tasks.complete(task.id, grant!.leaseId, result(RunOutcome.SUCCEEDED));
    await expect(tasks.cancel(task.id, "too late")).rejects.toThrow(TaskStateError);
  });

  it("streams the timeline live, resumes after an event id, and ends with the task", async () => {
    const tasks = await engine();
    const { task } = await tasks.submit(event());
    const seen: TaskEvent[] = [];
    const abort = new AbortController();
    const watching = (async () => {
      for await (const e of await tasks.watch(task.id, "", abort.signal)) seen.push(e);
    })();
    const [grant] = await tasks.lease("w1", 1, 0, never);
    await tasks.report(task.id, grant!.leaseId, [
      {
        $typeName: "hookmesh.tasks.v1.TaskEvent",
        id: "",
        attempt: 0,
        kind: {
          case: "output",
          value: { $typeName: "hookmesh.tasks.v1.OutputEvent", stream: 1, text: "x".repeat(100), truncated: false },
        },
      },
    ]);
    await tasks.complete(task.id, grant!.leaseId, result(RunOutcome.SUCCEEDED));
    await watching;
    expect(stages(seen)).toEqual([
      TaskStage.RECEIVED,
      TaskStage.VERIFIED,
      TaskStage.ROUTED,
      TaskStage.QUEUED,
      TaskStage.LEASED,
      TaskStage.COMPLETED,
    ]);
    const output = seen.find((e) => e.kind.case === "output");
    expect(output?.kind.value).toMatchObject({ text: "x".repeat(64), truncated: true });
    expect(output?.attempt).toBe(1);

    const resumed: TaskEvent[] = [];
    for await (const e of await tasks.watch(task.id, seen[4]!.id, abort.signal)) resumed.push(e);
    expect(resumed.map((e) => e.id)).toEqual(seen.slice(5).map((e) => e.id));
  });

  it("stops watching when the caller goes away", async () => {
    const tasks = await engine();
    const { task } = await tasks.submit(event());
    const abort = new AbortController();
    const seen: TaskEvent[] = [];
    const watching = (async () => {
      for await (const e of await tasks.watch(task.id, "", abort.signal)) seen.push(e);
    })();
    await new Promise((r) => setTimeout(r, 100));
    abort.abort();
    await watching;
    expect(stages(seen)).toEqual([TaskStage.RECEIVED, TaskStage.VERIFIED, TaskStage.ROUTED, TaskStage.QUEUED]);
  });

  it("re-queues a queued task that lost its queue entry, on reconcile and on a repeated submission", async () => {
    const tasks = await engine();
    const first = (await tasks.submit(event())).task;
    const e = event();
    const second = (await tasks.submit(e)).task;
    await queue.removeWaiting(first.id);
    await queue.removeWaiting(second.id);
    expect((await tasks.submit(e)).duplicate).toBe(true);
    expect(await queue.isQueued(second.id)).toBe(true);
    expect(await tasks.reconcile()).toBe(1);
    expect(await queue.isQueued(first.id)).toBe(true);
  });
});
