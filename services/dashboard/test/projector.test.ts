import { createClient, createRouterTransport } from "@connectrpc/connect";
import { memoryLogger } from "@hookmesh/kit/testing";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { TaskStage, TaskState } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { Notifier } from "../src/notifier.js";
import { Projector } from "../src/projector.js";
import { eventsAfter, getTask } from "../src/read-model.js";
import { DATABASE_KINDS, type TestDatabase, testDatabase } from "./databases.js";
import { FakeTasks } from "./fake-tasks.js";
import { outputEvent, stageEvent, T0, task } from "./fixtures.js";

describe.each(DATABASE_KINDS)("the projector on %s", (kind) => {
  let t: TestDatabase;
  let fake: FakeTasks;
  let notifier: Notifier;
  const running: Projector[] = [];

  beforeAll(async () => {
    t = await testDatabase(kind);
  }, 60_000);
  afterAll(() => t?.close());
  beforeEach(async () => {
    await t.reset();
    fake = new FakeTasks();
    notifier = new Notifier();
  });
  afterEach(async () => {
    await Promise.all(running.splice(0).map((p) => p.stop()));
  });

  function projector(holder = "replica-1", leaseMs = 3_000): Projector {
    const p = new Projector({
      db: t.db,
      tasks: createClient(TaskService, createRouterTransport(fake.routes)),
      notifier,
      logger: memoryLogger().logger,
      holder,
      leaseMs,
      backoff: { initialMs: 10, maxMs: 50 },
      timelineIdleMs: 200,
    });
    running.push(p);
    p.start();
    return p;
  }

  /** Three changes of one task: created (queued), started, some output. */
  function someChanges(id: string) {
    fake.change(id, stageEvent(`${id}-1`, TaskStage.QUEUED, T0), task({ id, updateMs: T0 }));
    fake.change(
      id,
      stageEvent(`${id}-2`, TaskStage.STARTED, T0 + 1000, 1),
      task({ id, state: TaskState.RUNNING, updateMs: T0 + 1000 }),
    );
    fake.change(id, outputEvent(`${id}-3`, "working", T0 + 1500));
  }

  const cursor = async () => (await t.db.query<{ cursor: string }>("SELECT cursor FROM projector"))[0]?.cursor;
  const eventIds = async (id: string) => (await eventsAfter(t.db, id)).map((e) => e.event.id);

  it("applies every change, stores the cursor, tells the watches, and follows new changes", async () => {
    someChanges("t1");
    const told = vi.fn();
    notifier.subscribe("t1", told);
    projector();
    await vi.waitFor(async () => expect(await cursor()).toBe("00000003"), { timeout: 10_000 });
    expect((await getTask(t.db, "t1"))?.task.state).toBe(TaskState.RUNNING);
    expect(await eventIds("t1")).toEqual(["t1-1", "t1-2", "t1-3"]);
    // One notice per task per committed batch.
    expect(told).toHaveBeenCalled();
    fake.change(
      "t1",
      stageEvent("t1-4", TaskStage.COMPLETED, T0 + 2000, 1),
      task({ id: "t1", state: TaskState.SUCCEEDED, updateMs: T0 + 2000 }),
    );
    await vi.waitFor(async () => expect((await getTask(t.db, "t1"))?.task.state).toBe(TaskState.SUCCEEDED), {
      timeout: 10_000,
    });
  });

  it("resumes from its cursor after a restart and after cut streams, applying each change once", async () => {
    someChanges("t1");
    const first = projector();
    await vi.waitFor(async () => expect(await cursor()).toBe("00000003"), { timeout: 10_000 });
    await first.stop();
    running.splice(running.indexOf(first), 1);
    someChanges("t2");
    fake.cutAfter = 1;
    fake.failNext = 2;
    projector();
    await vi.waitFor(async () => expect(await cursor()).toBe("00000006"), { timeout: 10_000 });
    // Two refused calls, then streams cut after each change, each resumed from the stored cursor.
    await vi.waitFor(() =>
      expect(fake.cursorsAsked).toEqual(["", "00000003", "00000003", "00000003", "00000004", "00000005"]),
    );
    expect(await eventIds("t2")).toEqual(["t2-1", "t2-2", "t2-3"]);
  });

  it("applies a change delivered twice once", async () => {
    someChanges("t1");
    const p = projector();
    await vi.waitFor(async () => expect(await cursor()).toBe("00000003"), { timeout: 10_000 });
    // At-least-once: the stream replays what was applied.
    for (const change of fake.log) await p.apply(change);
    expect(await eventIds("t1")).toEqual(["t1-1", "t1-2", "t1-3"]);
    const [rows] = await t.db.query<{ n: number }>("SELECT count(*)::int AS n FROM tasks");
    expect(rows?.n).toBe(1);
    expect((await getTask(t.db, "t1"))?.task.state).toBe(TaskState.RUNNING);
  });

  it("resynchronizes from the task list when its cursor fell out of the log", async () => {
    someChanges("t1");
    const first = projector();
    await vi.waitFor(async () => expect(await cursor()).toBe("00000003"), { timeout: 10_000 });
    await first.stop();
    running.splice(running.indexOf(first), 1);
    // While the dashboard was away: t1 ended and t2..t4 came and went through the log.
    fake.change(
      "t1",
      stageEvent("t1-4", TaskStage.COMPLETED, T0 + 2000, 1),
      task({ id: "t1", state: TaskState.SUCCEEDED, updateMs: T0 + 2000 }),
    );
    someChanges("t2");
    someChanges("t3");
    fake.change("t4", stageEvent("t4-1", TaskStage.QUEUED, T0), task({ id: "t4" }));
    fake.oldest = fake.log.length - 1;
    projector();
    await vi.waitFor(async () => expect(await cursor()).toBe(fake.log.at(-1)?.cursor), { timeout: 10_000 });
    expect((await getTask(t.db, "t1"))?.task.state).toBe(TaskState.SUCCEEDED);
    expect(await eventIds("t1")).toEqual(["t1-1", "t1-2", "t1-3", "t1-4"]);
    expect(await eventIds("t2")).toEqual(["t2-1", "t2-2", "t2-3"]);
    expect(await eventIds("t3")).toEqual(["t3-1", "t3-2", "t3-3"]);
    expect(await eventIds("t4")).toEqual(["t4-1"]);
  });

  it("projects on one replica at a time; another takes over when it stops", async () => {
    someChanges("t1");
    const a = projector("replica-a", 1_000);
    await vi.waitFor(async () => expect(await cursor()).toBe("00000003"), { timeout: 10_000 });
    const b = projector("replica-b", 1_000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(fake.cursorsAsked).toEqual([""]);
    const [holder] = await t.db.query<{ holder: string }>("SELECT holder FROM projector");
    expect(holder?.holder).toBe("replica-a");
    await a.stop();
    running.splice(running.indexOf(a), 1);
    someChanges("t2");
    await vi.waitFor(async () => expect(await cursor()).toBe("00000006"), { timeout: 10_000 });
    expect(fake.cursorsAsked).toEqual(["", "00000003"]);
    expect(running).toContain(b);
  });

  it("refuses to apply a change without the lease", async () => {
    someChanges("t1");
    const p = new Projector({
      db: t.db,
      tasks: createClient(TaskService, createRouterTransport(fake.routes)),
      notifier,
      logger: memoryLogger().logger,
      holder: "not-leader",
      leaseMs: 1000,
    });
    await expect(p.apply(fake.log[0]!)).rejects.toThrow(/lease/);
    expect(await getTask(t.db, "t1")).toBeUndefined();
  });
});
