import { create } from "@bufbuild/protobuf";
import { TEST_REDIS_URL, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { Worker } from "bullmq";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { type Event, EventSchema, Provider, SubjectSchema } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { AgentProfileSchema, BudgetSchema, type Route, RouteSchema } from "../../../gen/hookmesh/tasks/v1/route_pb.js";
import {
  RunOutcome,
  type TaskEvent,
  TaskEventSchema,
  TaskResultSchema,
  TaskStage,
  TaskState,
  TaskView,
  UsageEventSchema,
} from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { RouteBudgets } from "../src/budgets.js";
import { type EngineOptions, type EventRouter, TaskEngine, type TaskObserver } from "../src/engine.js";
import { InvalidEventError, LeaseLostError, TaskStateError } from "../src/errors.js";
import { timelineKey } from "../src/keys.js";
import type { RouteDecision } from "../src/routing/router.js";
import { SubjectLocks } from "../src/subject-locks.js";
import { TaskStore } from "../src/task-store.js";
import { Timeline } from "../src/timeline.js";
import { TimelineSignals } from "../src/watches.js";
import { WorkBell } from "../src/work-bell.js";
import { WorkQueue } from "../src/work-queue.js";

/** The rules tests give a budget or a cost cap, by id; any other id is a rule without either. */
const routes = new Map<string, Route>();

/**
 * Routes every event whose text is not "ignore me"; the priority comes from the text "p=N",
 * the rule from "route=ID" (default `test-route`).
 */
const testRouter: EventRouter = {
  async routeAll(events) {
    return events.map(decide);
  },
};

function decide(event: Event): RouteDecision {
  if (event.text === "ignore me") return { matched: false, reason: "no rule matched" };
  const priority = Number(/p=(\d+)/.exec(event.text)?.[1] ?? 0);
  const id = /route=(\S+)/.exec(event.text)?.[1] ?? "test-route";
  const route = routes.get(id) ?? create(RouteSchema, { id });
  return {
    matched: true,
    route,
    prompt: `do: ${event.text}`,
    priority,
    profile: route.profile ?? create(AgentProfileSchema, { runner: "command" }),
    maxAttempts: 0,
  };
}

const OPTIONS: EngineOptions = {
  leaseMs: 5_000,
  defaultMaxAttempts: 2,
  retryBaseMs: 50,
  retryMaxMs: 100,
  subjectBusyDelayMs: 50,
  pollMs: 20,
  maxAttemptsCeiling: 10,
  maxLostLeases: 3,
  budgetRecheckMs: 20,
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

/** An observer that keeps what the engine told it, as the metrics would count it. */
function recorder() {
  const seen = {
    submitted: [] as string[],
    queuedSeconds: [] as number[],
    expired: 0,
    released: 0,
    ended: [] as TaskState[],
    budgetSpent: [] as string[],
  };
  const observer: TaskObserver = {
    submitted: (outcome) => seen.submitted.push(outcome),
    leased: (seconds) => seen.queuedSeconds.push(seconds),
    leaseExpired: () => seen.expired++,
    leaseReleased: () => seen.released++,
    ended: (state) => seen.ended.push(state),
    budgetSpent: (route) => seen.budgetSpent.push(route),
  };
  return { seen, observer };
}

const result = (outcome: RunOutcome, error = "") =>
  create(TaskResultSchema, { outcome, error, answer: "done", exitCode: error ? 1 : 0 });
const stages = (events: TaskEvent[]) => events.flatMap((e) => (e.kind.case === "stage" ? [e.kind.value.stage] : []));

/**
 * What `operation` sends on `connections`: its commands, and its round trips, a command sent
 * while none is in flight starting one (those sent before the replies come back join it).
 */
async function counted<T>(
  connections: Redis[],
  operation: () => Promise<T>,
): Promise<{ value: T; count: { roundTrips: number; commands: number } }> {
  const count = { roundTrips: 0, commands: 0 };
  let inFlight = 0;
  const spies = connections.map((connection) => {
    const send = connection.sendCommand.bind(connection);
    return vi.spyOn(connection, "sendCommand").mockImplementation((command, ...rest) => {
      if (inFlight++ === 0) count.roundTrips++;
      count.commands++;
      const settled = () => inFlight--;
      command.promise.then(settled, settled);
      return send(command, ...rest);
    });
  });
  try {
    return { value: await operation(), count };
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
}

describe("TaskEngine", () => {
  let db: TestRedis;
  let bull: Redis;
  let subscriber: Redis;
  let queue: WorkQueue;
  let store: TaskStore;
  let timeline: Timeline;
  let budgets: RouteBudgets;

  async function engine(options: Partial<EngineOptions> = {}) {
    const merged = { ...OPTIONS, ...options };
    budgets = new RouteBudgets(
      db.redis,
      { get: async (id) => routes.get(id) ?? create(RouteSchema, { id }) },
      { keyPrefix: db.prefix, defaultMaxCostUsd: 5, defaultDailyBudgetUsd: 50 },
    );
    const silent = pino({ level: "silent" });
    queue = new WorkQueue(
      bull,
      { keyPrefix: `${db.prefix}bull`, leaseMs: merged.leaseMs },
      silent,
      new WorkBell(db.redis, `${db.prefix}work-ready`, silent),
    );
    await queue.start();
    return new TaskEngine(
      store,
      timeline,
      queue,
      new SubjectLocks(db.redis, { keyPrefix: db.prefix, leaseMs: merged.leaseMs }),
      testRouter,
      budgets,
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
      changeLogMax: 1000,
      signals: new TimelineSignals(subscriber, (id) => timelineKey(db.prefix, id), pino({ level: "silent" })),
    });
  });

  afterEach(async () => {
    routes.clear();
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

  it("leases a task in four round trips, heartbeats in two and completes in four, counted in commands", async () => {
    // A lease long enough that the queue's stalled-job check sends nothing meanwhile.
    const tasks = await engine({ leaseMs: 60_000 });
    const cycle = async (subject: string) => {
      await tasks.submit(event("a", subject));
      const lease = await counted([db.redis, bull], () => tasks.lease("w1", 1, 0, never));
      const [grant] = lease.value;
      const heartbeat = await counted([db.redis, bull], () => tasks.heartbeat(grant!.task.id, grant!.leaseId));
      const done = create(TaskResultSchema, { outcome: RunOutcome.SUCCEEDED, costUsd: 0.5 });
      const complete = await counted([db.redis, bull], () => tasks.complete(grant!.task.id, grant!.leaseId, done));
      expect(complete.value.state).toBe(TaskState.SUCCEEDED);
      return { lease: lease.count, heartbeat: heartbeat.count, complete: complete.count };
    };
    // The first cycle may find this Redis without the scripts (NOSCRIPT, then their text).
    await cycle("github:o/r#count-1");
    expect(await cycle("github:o/r#count-2")).toEqual({
      // The routing rule comes from this test's stub; the service's store reads it with one
      // more command, in the same round trip as the day's spend and the subject's lock.
      lease: { roundTrips: 4, commands: 5 },
      heartbeat: { roundTrips: 2, commands: 3 },
      complete: { roundTrips: 4, commands: 8 },
    });
  });

  it("retries a retryable failure after a backoff, then dead-letters it", async () => {
    const { seen, observer } = recorder();
    const tasks = await engine({ observer });
    const { task } = await tasks.submit(event());
    await tasks.submit(event("ignore me"));
    const [first] = await tasks.lease("w1", 1, 0, never);
    const retried = await tasks.fail(task.id, first!.leaseId, result(RunOutcome.AGENT_ERROR, "exit 1"), true);
    expect(retried.state).toBe(TaskState.QUEUED);
    expect(retried.transitions.at(-1)?.reason).toMatch(/^attempt 1 failed: exit 1; retrying in/);

    const [second] = await tasks.lease("w2", 1, 2_000, never);
    expect(second?.task.attempt).toBe(2);
    const dead = await tasks.fail(task.id, second!.leaseId, result(RunOutcome.AGENT_ERROR, "exit 1"), true);
    expect(dead.state).toBe(TaskState.DEAD);
    expect(stages(await timeline.read(task.id)).slice(-3)).toEqual([
      TaskStage.LEASED,
      TaskStage.FAILED,
      TaskStage.DEAD,
    ]);
    expect(await queue.isQueued(task.id)).toBe(false);
    expect(seen).toMatchObject({ submitted: ["queued", "ignored"], ended: [TaskState.DEAD], expired: 0 });
    expect(seen.queuedSeconds).toHaveLength(2);
    for (const seconds of seen.queuedSeconds) expect(seconds).toBeGreaterThanOrEqual(0);

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
    const { seen, observer } = recorder();
    const tasks = await engine({ leaseMs: 600, observer });
    const { task } = await tasks.submit(event());
    const [lost] = await tasks.lease("w1", 1, 0, never);
    const [taken] = await tasks.lease("w2", 1, 5_000, never);
    expect(taken?.task).toMatchObject({ id: task.id, attempt: 2, workerId: "w2" });
    await expect(tasks.complete(task.id, lost!.leaseId, result(RunOutcome.SUCCEEDED))).rejects.toThrow(LeaseLostError);
    expect(stages(await timeline.read(task.id))).toContain(TaskStage.LEASE_EXPIRED);
    expect((await tasks.complete(task.id, taken!.leaseId, result(RunOutcome.SUCCEEDED))).state).toBe(
      TaskState.SUCCEEDED,
    );
    expect(seen).toMatchObject({ expired: 1, ended: [TaskState.SUCCEEDED] });
    expect(seen.queuedSeconds).toHaveLength(2);
  });

  describe("lost leases", () => {
    /** Leases long enough that only the checks these tests force return anything. */
    const LONG_LEASE_MS = 60_000;
    let checker: Worker;

    beforeEach(() => {
      checker = new Worker("tasks", null, {
        connection: bull,
        prefix: `${db.prefix}bull`,
        autorun: false,
        maxStalledCount: Number.MAX_SAFE_INTEGER,
      });
    });

    afterEach(async () => {
      await checker.close();
    });

    /** One run of BullMQ's stalled-job check, now, as its timer would run it. */
    async function stalledCheck(): Promise<void> {
      await bull.del(`${db.prefix}bull:tasks:stalled-check`);
      await (checker as unknown as { moveStalledJobsToWait(): Promise<void> }).moveStalledJobsToWait();
    }

    /**
     * The worker holding `taskId` dies: its lease's locks (the job's and the subject's, which
     * expire together) run out between two stalled checks.
     */
    async function workerDies(taskId: string): Promise<void> {
      await stalledCheck();
      await bull.del(`${db.prefix}bull:tasks:${taskId}:lock`, ...(await db.redis.keys(`${db.prefix}subject:*`)));
      await stalledCheck();
    }

    const details = async (id: string, kind: TaskStage) =>
      (await timeline.read(id)).flatMap((e) =>
        e.kind.case === "stage" && e.kind.value.stage === kind ? [e.kind.value.detail] : [],
      );

    it("runs a task again however many of its workers die, without counting their deaths as failed attempts", async () => {
      const tasks = await engine({ leaseMs: LONG_LEASE_MS, defaultMaxAttempts: 2, maxLostLeases: 3 });
      const { task } = await tasks.submit(event());
      const leases: string[] = [];
      for (const worker of ["w1", "w2", "w3"]) {
        const [grant] = await tasks.lease(worker, 1, 0, never);
        expect(grant?.task).toMatchObject({ id: task.id, workerId: worker });
        leases.push(grant!.leaseId);
        await workerDies(task.id);
      }
      const [last] = await tasks.lease("w4", 1, 0, never);
      expect(last?.task).toMatchObject({ attempt: 4, lostLeases: 3, maxAttempts: 2 });
      const done = await tasks.complete(task.id, last!.leaseId, result(RunOutcome.SUCCEEDED));
      expect(done.state).toBe(TaskState.SUCCEEDED);
      const expired = await details(task.id, TaskStage.LEASE_EXPIRED);
      expect(expired).toHaveLength(3);
      expect(expired[0]).toMatch(
        new RegExp(
          `^attempt 1 \\(lease ${leases[0]}\\) lost: worker w1 stopped heartbeating.*stalled-job check.*lost lease 1 of 3`,
        ),
      );
      expect(expired[2]).toContain(`attempt 3 (lease ${leases[2]}) lost: worker w3`);
    });

    it("never leases to a caller that has gone: a task whose worker died once runs again and succeeds", async () => {
      const tasks = await engine({ leaseMs: LONG_LEASE_MS, defaultMaxAttempts: 2 });
      const { task } = await tasks.submit(event());
      await tasks.lease("w1", 1, 0, never);
      await workerDies(task.id);
      const gone = new AbortController();
      gone.abort();
      expect(await tasks.lease("w-gone", 1, 0, gone.signal)).toEqual([]);
      const [next] = await tasks.lease("w2", 1, 0, never);
      expect(next?.task).toMatchObject({ attempt: 2, workerId: "w2" });
      expect((await tasks.complete(task.id, next!.leaseId, result(RunOutcome.SUCCEEDED))).state).toBe(
        TaskState.SUCCEEDED,
      );
    });

    it("gives back at once, uncounted, a task leased to a caller that went away meanwhile", async () => {
      const tasks = await engine({ leaseMs: LONG_LEASE_MS });
      const { task } = await tasks.submit(event("a", "github:o/r#given-back"));
      const gone = new AbortController();
      const update = store.update.bind(store);
      vi.spyOn(store, "update").mockImplementation(async (id, change, options) => {
        const updated = await update(id, change, options);
        // The caller goes once the task is RUNNING under its lease, before it is told.
        if (options?.lease) gone.abort();
        return updated;
      });
      expect(await tasks.lease("w-gone", 1, 5_000, gone.signal)).toEqual([]);
      expect(await store.get(task.id, TaskView.BASIC)).toMatchObject({ state: TaskState.QUEUED, attempt: 0 });
      expect((await details(task.id, TaskStage.QUEUED)).at(-1)).toMatch(/given back: worker w-gone went away/);
      const [next] = await tasks.lease("w2", 1, 2_000, never);
      expect(next?.task).toMatchObject({ id: task.id, attempt: 1, workerId: "w2" });
    });

    it("gives back the leases of an ended session, counted as lost, and none of another session's", async () => {
      const { seen, observer } = recorder();
      const tasks = await engine({ leaseMs: LONG_LEASE_MS, observer });
      const { task: mine } = await tasks.submit(event("a", "github:o/r#session-a"));
      const { task: theirs } = await tasks.submit(event("b", "github:o/r#session-b"));
      const [dead] = await tasks.lease("w-dead", 1, 0, never, "11111111-1111-1111-1111-111111111111");
      const [live] = await tasks.lease("w-live", 1, 0, never, "22222222-2222-2222-2222-222222222222");
      expect(dead?.task.id).toBe(mine.id);
      expect(live?.task.id).toBe(theirs.id);

      expect(await tasks.releaseSession("11111111-1111-1111-1111-111111111111", "w-dead")).toBe(1);
      expect(seen.released).toBe(1);
      expect(await store.get(mine.id, TaskView.BASIC)).toMatchObject({ state: TaskState.QUEUED, lostLeases: 1 });
      expect((await details(mine.id, TaskStage.LEASE_EXPIRED)).at(-1)).toMatch(/session of worker w-dead ended/);
      // The dead worker's lease is refused everywhere; the live one's is untouched.
      await expect(tasks.heartbeat(mine.id, dead!.leaseId)).rejects.toThrow(LeaseLostError);
      await expect(tasks.complete(mine.id, dead!.leaseId, result(RunOutcome.SUCCEEDED))).rejects.toThrow(
        LeaseLostError,
      );
      await tasks.heartbeat(theirs.id, live!.leaseId);
      // A second release of the same session finds nothing left.
      expect(await tasks.releaseSession("11111111-1111-1111-1111-111111111111", "w-dead")).toBe(0);
      const [again] = await tasks.lease("w2", 1, 2_000, never);
      expect(again?.task).toMatchObject({ id: mine.id, attempt: 2, workerId: "w2" });
    });

    it("leaves a live lease alone when a stalled check runs just after it was taken", async () => {
      const tasks = await engine({ leaseMs: LONG_LEASE_MS });
      const { task } = await tasks.submit(event());
      const [grant] = await tasks.lease("w1", 1, 0, never);
      await stalledCheck();
      await stalledCheck();
      await tasks.heartbeat(task.id, grant!.leaseId);
      await stalledCheck();
      expect(await tasks.lease("w2", 1, 0, never)).toEqual([]);
      expect((await tasks.complete(task.id, grant!.leaseId, result(RunOutcome.SUCCEEDED))).state).toBe(
        TaskState.SUCCEEDED,
      );
    });

    it("dead-letters a task that lost more leases than allowed, and says why", async () => {
      const tasks = await engine({ leaseMs: LONG_LEASE_MS, maxLostLeases: 1 });
      const { task } = await tasks.submit(event());
      for (const worker of ["w1", "w2"]) {
        await tasks.lease(worker, 1, 0, never);
        await workerDies(task.id);
      }
      expect(await tasks.lease("w3", 1, 0, never)).toEqual([]);
      const dead = await store.get(task.id, TaskView.BASIC);
      expect(dead).toMatchObject({ state: TaskState.DEAD, attempt: 2, lostLeases: 2 });
      expect(await details(task.id, TaskStage.DEAD)).toEqual([
        "lost its lease 2 times, last on attempt 2, more than the 1 allowed (TASKS_MAX_LOST_LEASES): " +
          "a task whose workers keep dying is not run again",
      ]);
    });

    it("says which attempt and lease failed last when failures dead-letter a task", async () => {
      const tasks = await engine({ leaseMs: LONG_LEASE_MS, defaultMaxAttempts: 1 });
      const { task } = await tasks.submit(event());
      await tasks.lease("w1", 1, 0, never);
      await workerDies(task.id);
      const [grant] = await tasks.lease("w2", 1, 0, never);
      const dead = await tasks.fail(task.id, grant!.leaseId, result(RunOutcome.AGENT_ERROR, "broken"), true);
      expect(dead.state).toBe(TaskState.DEAD);
      expect(await details(task.id, TaskStage.DEAD)).toEqual([
        `attempt 2 (lease ${grant!.leaseId}) failed: broken; 1 of 1 attempts failed (and 1 lost leases, which do not count), no attempts left`,
      ]);
    });
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

  it("runs a task an operator retried while its canceled attempt's job was still being ended", async () => {
    const tasks = await engine();
    const { task } = await tasks.submit(event());
    const [grant] = await tasks.lease("w1", 1, 0, never);
    await tasks.cancel(task.id, "operator");
    // The attempt's end held between its steps: the task is CANCELED (what an operator sees,
    // and may retry at once) while its job is still the lease's.
    const finish = queue.finish.bind(queue);
    let endJob!: () => void;
    const jobMayEnd = new Promise<void>((resolve) => {
      endJob = resolve;
    });
    vi.spyOn(queue, "finish").mockImplementationOnce(async (...args) => {
      await jobMayEnd;
      return finish(...args);
    });
    const ending = tasks.fail(task.id, grant!.leaseId, result(RunOutcome.CANCELED, "canceled"), false);
    await vi.waitFor(async () => expect((await store.get(task.id, TaskView.BASIC)).state).toBe(TaskState.CANCELED));
    const retried = tasks.retry(task.id);
    await new Promise((resolve) => setTimeout(resolve, 100));
    endJob();
    await ending;
    expect(await retried).toMatchObject({ state: TaskState.QUEUED });
    const [again] = await tasks.lease("w2", 1, 2_000, never);
    expect(again?.task).toMatchObject({ id: task.id, state: TaskState.RUNNING, attempt: 2 });
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

  describe("budgets and retry limits", () => {
    /** An hour before midnight UTC, so that a test can move to the next day. */
    let clock = 0;
    const now = () => clock;
    beforeEach(() => {
      clock = Date.parse("2026-11-30T23:00:00Z");
    });

    const usage = (costUsd: number): TaskEvent =>
      create(TaskEventSchema, { kind: { case: "usage", value: create(UsageEventSchema, { costUsd }) } });
    const costing = (costUsd: number) => create(TaskResultSchema, { outcome: RunOutcome.SUCCEEDED, costUsd });
    const budgetStages = async (taskId: string) =>
      (await timeline.read(taskId)).filter((e) => e.kind.case === "stage" && /daily budget/.test(e.kind.value.detail));

    function rule(id: string, init: Omit<Parameters<typeof create<typeof RouteSchema>>[1], "id"> = {}) {
      routes.set(id, create(RouteSchema, { id, ...init }));
    }

    it("gives each task the per-run cap in force: the profile's, the service default, or none when lifted", async () => {
      rule("capped", { profile: { maxCostUsd: 2 } });
      rule("uncapped", { budget: { unlimitedPerRun: true } });
      const tasks = await engine({ now });
      const cap = async (text: string) => (await tasks.submit(event(text))).task.profile?.maxCostUsd;
      expect(await cap("route=capped")).toBe(2);
      expect(await cap("route=anything")).toBe(5);
      expect(await cap("route=uncapped")).toBe(0);
    });

    it("counts a run's running totals once, however often and in whatever order they are reported", async () => {
      rule("metered", { budget: create(BudgetSchema, { maxCostUsdPerDay: 3 }) });
      const tasks = await engine({ now });
      const { task } = await tasks.submit(event("route=metered"));
      const [grant] = await tasks.lease("w1", 1, 0, never);
      await tasks.report(task.id, grant!.leaseId, [usage(0.5), usage(1)]);
      await tasks.report(task.id, grant!.leaseId, [usage(1)]);
      await tasks.report(task.id, grant!.leaseId, [usage(0.5), usage(2.25)]);
      expect(await budgets.spent("metered", clock)).toBeUndefined();
      await tasks.complete(task.id, grant!.leaseId, costing(3));
      await tasks.complete(task.id, grant!.leaseId, costing(3));
      expect(await budgets.spent("metered", clock)).toMatchObject({ spentUsd: 3, limitUsd: 3, day: "2026-11-30" });
    });

    it("leases nothing more of a rule whose daily budget is spent until the next UTC day; other rules go on", async () => {
      rule("small", { budget: { maxCostUsdPerDay: 1 } });
      const { seen, observer } = recorder();
      const tasks = await engine({ now, observer });
      const first = (await tasks.submit(event("route=small"))).task;
      const [grant] = await tasks.lease("w1", 1, 0, never);
      await tasks.report(first.id, grant!.leaseId, [usage(1.2)]);
      await tasks.complete(first.id, grant!.leaseId, costing(1.2));

      const waiting = (await tasks.submit(event("route=small p=900"))).task;
      const other = (await tasks.submit(event("route=other p=1"))).task;
      expect((await tasks.lease("w1", 5, 0, never)).map((g) => g.task.id)).toEqual([other.id]);
      // Looked at again every budgetRecheckMs meanwhile, and said why only once.
      expect(await tasks.lease("w1", 5, 300, never)).toEqual([]);
      expect((await store.get(waiting.id, TaskView.BASIC)).state).toBe(TaskState.QUEUED);
      const why = await budgetStages(waiting.id);
      expect(why.map((e) => e.kind.value)).toEqual([
        expect.objectContaining({
          stage: TaskStage.QUEUED,
          detail:
            "route small spent $1.20 of its $1.00 daily budget on 2026-11-30 (UTC); waiting for the next UTC day or a higher budget",
        }),
      ]);

      expect(seen.budgetSpent.length).toBeGreaterThanOrEqual(2);
      expect(new Set(seen.budgetSpent)).toEqual(new Set(["small"]));

      clock = Date.parse("2026-12-01T00:00:01Z");
      const [next] = await tasks.lease("w1", 1, 2_000, never);
      expect(next?.task).toMatchObject({ id: waiting.id, state: TaskState.RUNNING, attempt: 1 });
    });

    it("gives the subject's lock straight back when the rule's budget turns out spent", async () => {
      rule("small", { budget: { maxCostUsdPerDay: 1 } });
      const tasks = await engine({ now });
      const first = (await tasks.submit(event("route=small"))).task;
      const [grant] = await tasks.lease("w1", 1, 0, never);
      await tasks.complete(first.id, grant!.leaseId, costing(1.2));

      // The lock is taken while the budget is read; the subject's task of another rule runs.
      const waiting = (await tasks.submit(event("route=small p=900", "github:o/r#shared"))).task;
      const other = (await tasks.submit(event("route=other p=1", "github:o/r#shared"))).task;
      const leased = await tasks.lease("w1", 5, 0, never);
      expect(leased.map((g) => g.task.id)).toEqual([other.id]);
      expect(await db.redis.get(`${db.prefix}subject:github:o/r#shared`)).toBe(leased[0]!.leaseId);
      expect((await store.get(waiting.id, TaskView.BASIC)).state).toBe(TaskState.QUEUED);
    });

    it("queues again, without running it, the task of a dead worker whose rule spent its budget meanwhile", async () => {
      rule("small", { budget: { maxCostUsdPerDay: 1 } });
      const tasks = await engine({ now, leaseMs: 400 });
      const { task } = await tasks.submit(event("route=small"));
      const [lost] = await tasks.lease("w1", 1, 0, never);
      await tasks.report(task.id, lost!.leaseId, [usage(1.5)]);
      expect(await tasks.lease("w2", 1, 3_000, never)).toEqual([]);
      const waiting = await store.get(task.id, TaskView.BASIC);
      expect(waiting).toMatchObject({ state: TaskState.QUEUED, attempt: 1, workerId: "" });
      expect(waiting.transitions.at(-1)?.reason).toMatch(
        /^attempt 1 \(lease \S+\) lost: worker w1 stopped heartbeating/,
      );
      const [expired, queued] = (await timeline.read(task.id)).slice(-2);
      expect(expired?.kind.value).toMatchObject({ stage: TaskStage.LEASE_EXPIRED });
      expect(queued?.kind.value).toMatchObject({
        stage: TaskStage.QUEUED,
        detail: expect.stringMatching(/^route small spent \$1\.50 of its \$1\.00 daily budget/),
      });
    });

    it("leases a waiting task once its rule's budget is raised", async () => {
      rule("small", { budget: { maxCostUsdPerDay: 1 } });
      const tasks = await engine({ now });
      const first = (await tasks.submit(event("route=small"))).task;
      const [grant] = await tasks.lease("w1", 1, 0, never);
      await tasks.complete(first.id, grant!.leaseId, costing(1));
      const waiting = (await tasks.submit(event("route=small"))).task;
      expect(await tasks.lease("w1", 1, 100, never)).toEqual([]);
      rule("small", { budget: { maxCostUsdPerDay: 10 } });
      const [next] = await tasks.lease("w1", 1, 2_000, never);
      expect(next?.task.id).toBe(waiting.id);
    });

    it("does not retry a run that timed out or passed its cost cap, whatever the worker says", async () => {
      const tasks = await engine({ now });
      for (const outcome of [RunOutcome.TIMED_OUT, RunOutcome.COST_CAP]) {
        const { task } = await tasks.submit(event());
        const [grant] = await tasks.lease("w1", 1, 0, never);
        const failed = await tasks.fail(task.id, grant!.leaseId, result(outcome, "stopped"), true);
        expect(failed.state).toBe(TaskState.FAILED);
        expect(failed.transitions.at(-1)?.reason).toMatch(
          /^stopped; runs that (time out|pass their cost cap) are not retried$/,
        );
        expect(await queue.isQueued(task.id)).toBe(false);
      }
    });

    it("grants operator retries only up to the ceiling of attempts per task", async () => {
      const tasks = await engine({ now, defaultMaxAttempts: 2, maxAttemptsCeiling: 3 });
      const { task } = await tasks.submit(event());
      const runAndFail = async () => {
        const [grant] = await tasks.lease("w1", 1, 2_000, never);
        await tasks.fail(task.id, grant!.leaseId, result(RunOutcome.AGENT_ERROR, "broken"), false);
      };
      await runAndFail();
      expect(await tasks.retry(task.id)).toMatchObject({ attempt: 1, maxAttempts: 3 });
      await runAndFail();
      expect(await tasks.retry(task.id)).toMatchObject({ attempt: 2, maxAttempts: 3 });
      await runAndFail();
      await expect(tasks.retry(task.id)).rejects.toThrow(
        new TaskStateError(
          `task ${task.id} has run 3 attempts, the ceiling of 3 per task (TASKS_MAX_ATTEMPTS_CEILING)`,
        ),
      );
      expect((await store.get(task.id, TaskView.BASIC)).state).toBe(TaskState.FAILED);
    });
  });
});
