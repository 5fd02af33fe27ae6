import { create } from "@bufbuild/protobuf";
import { TEST_REDIS_URL, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { Redis } from "ioredis";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Provider } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { TaskSchema, TaskStage, TaskState } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import type { TaskChange } from "../../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { ChangeLog, parseCursor } from "../src/change-log.js";
import { InvalidCursorError } from "../src/errors.js";
import { changeLogKey, timelineKey } from "../src/keys.js";
import { TaskStore } from "../src/task-store.js";
import { type NewTaskEvent, Timeline } from "../src/timeline.js";
import { TimelineSignals } from "../src/watches.js";

/** The smallest cap the configuration takes: one stream node's worth. */
const LOG_MAX = 100;

const stage = (kind: TaskStage, changedTask = false): NewTaskEvent => ({
  kind: { case: "stage", value: { stage: kind, detail: TaskStage[kind] } },
  changedTask,
});
const output = (text: string): NewTaskEvent => ({ kind: { case: "output", value: { text } } });
const textOf = (change: TaskChange) => (change.event?.kind.case === "output" ? change.event.kind.value.text : "");

describe("the change log", () => {
  let db: TestRedis;
  let subscriber: Redis;
  let store: TaskStore;
  let timeline: Timeline;
  let changes: ChangeLog;

  beforeEach(async () => {
    db = await testRedis("change-log");
    subscriber = new Redis(TEST_REDIS_URL, { autoResubscribe: false });
    const signals = new TimelineSignals(subscriber, (id) => timelineKey(db.prefix, id), pino({ level: "silent" }));
    store = new TaskStore(db.redis, { keyPrefix: db.prefix, retentionMs: 60_000, ignoredBodyRetentionMs: 1_000 });
    timeline = new Timeline(db.redis, {
      keyPrefix: db.prefix,
      maxTextBytes: 1024,
      maxEvents: 1000,
      changeLogMax: LOG_MAX,
      signals,
    });
    changes = new ChangeLog(db.redis, { keyPrefix: db.prefix, signals });
  });
  afterEach(async () => {
    subscriber.disconnect();
    await db.cleanup();
  });

  async function newTask(id: string, state = TaskState.QUEUED) {
    const task = create(TaskSchema, {
      id,
      state,
      event: { provider: Provider.GITHUB, deliveryId: id, rawBody: new TextEncoder().encode("a large body") },
    });
    await store.create(task);
    return task;
  }

  it("holds every appended event with its timeline id, and the stored task only on events that changed it", async () => {
    await newTask("t1");
    await timeline.append("t1", [stage(TaskStage.RECEIVED, true), stage(TaskStage.VERIFIED)]);
    await store.update("t1", (t) => {
      t.state = TaskState.RUNNING;
      t.attempt = 1;
    });
    await timeline.append("t1", [stage(TaskStage.LEASED, true), output("hello")]);
    // A task that does not exist gets neither timeline nor changes.
    await timeline.append("gone", [stage(TaskStage.RECEIVED, true)]);

    const log = await changes.read("");
    const events = await timeline.read("t1");
    expect(log.map((c) => c.event?.id)).toEqual(events.map((e) => e.id));
    expect(log.map((c) => c.taskId)).toEqual(["t1", "t1", "t1", "t1"]);
    expect(log.map((c) => c.task?.state)).toEqual([TaskState.QUEUED, undefined, TaskState.RUNNING, undefined]);
    expect(log[2]!.task).toMatchObject({ id: "t1", attempt: 1 });
    // The BASIC view: the raw body lies apart and stays there.
    expect(log[0]!.task?.event?.rawBody).toEqual(new Uint8Array(0));
    expect(log.map((c) => c.missed)).toEqual([false, false, false, false]);
    const cursors = log.map((c) => c.cursor);

    expect((await changes.read(cursors[1]!)).map((c) => c.cursor)).toEqual(cursors.slice(2));
    expect(await changes.read(cursors[3]!)).toEqual([]);
  });

  it("keeps about TASKS_CHANGE_LOG_MAX changes, and marks the first after a gap as missed", async () => {
    await newTask("t2");
    // Read as they are made, in batches smaller than the cap, so every cursor ever given is known.
    const given: string[] = [];
    for (let batch = 0; batch < 6; batch++) {
      await timeline.append(
        "t2",
        Array.from({ length: LOG_MAX / 2 }, (_, i) => output(`line ${batch * 50 + i}`)),
      );
      given.push(...(await changes.read(given.at(-1) ?? "", 1_000)).map((c) => c.cursor));
    }
    expect(given).toHaveLength(3 * LOG_MAX);
    const kept = await changes.read("", 1_000);
    // Trimmed a whole stream node at a time, never below the cap.
    expect(kept.length).toBeGreaterThanOrEqual(LOG_MAX);
    expect(kept.length).toBeLessThan(2 * LOG_MAX);
    expect(kept.map((c) => c.cursor)).toEqual(given.slice(-kept.length));

    // The cursor fell out of the log, and so did changes after it: the first change says so.
    const firstKept = given.length - kept.length;
    const resumed = await changes.read(given[firstKept - 2]!);
    expect(resumed[0]).toMatchObject({ cursor: kept[0]!.cursor, missed: true });
    expect(resumed.slice(1).some((c) => c.missed)).toBe(false);
    // So does a reader that starts from the beginning, which the log no longer holds.
    expect((await changes.read(""))[0]!.missed).toBe(true);
    // A reader whose last change was the last to go, or is still held, lost nothing.
    expect((await changes.read(given[firstKept - 1]!))[0]).toMatchObject({ cursor: kept[0]!.cursor, missed: false });
    expect((await changes.read(kept[0]!.cursor))[0]).toMatchObject({ cursor: kept[1]!.cursor, missed: false });
  });

  it("drops changes older than the retention, and a later change still follows the last one given out", async () => {
    await newTask("t3");
    await timeline.append("t3", [output("old 1"), output("old 2")]);
    const old = await changes.read("");
    expect(await changes.trim(60_000, Date.now() + 120_000)).toBe(2);
    expect(await changes.read("")).toEqual([]);

    await timeline.append("t3", [output("new")]);
    // Nothing between the reader's last change and the new one went missing.
    expect(await changes.read(old[1]!.cursor)).toMatchObject([{ missed: false }]);
    expect((await changes.read(old[0]!.cursor))[0]!.missed).toBe(true);
    expect(textOf((await changes.read(old[1]!.cursor))[0]!)).toBe("new");
  });

  it("tells a reader with a cursor that the log was lost", async () => {
    await newTask("t4");
    await timeline.append("t4", [output("before")]);
    const [before] = await changes.read("");
    await db.redis.del(changeLogKey(db.prefix));
    // A new log's ids start from the clock again; a lost one comes back at least a millisecond later.
    await new Promise((resolve) => setTimeout(resolve, 5));
    await timeline.append("t4", [output("after")]);
    expect(await changes.read(before!.cursor)).toMatchObject([{ missed: true }]);
    expect(await changes.read("")).toMatchObject([{ missed: false }]);
  });

  it("streams what it holds, then each change as it is appended, until aborted", async () => {
    await newTask("t5");
    await timeline.append("t5", [output("backlog")]);
    const abort = new AbortController();
    const seen: string[] = [];
    const done = (async () => {
      for await (const change of changes.watch("", abort.signal)) {
        seen.push(textOf(change));
        if (seen.length === 3) abort.abort();
      }
    })();
    await expect.poll(() => seen).toEqual(["backlog"]);
    await timeline.append("t5", [output("live 1")]);
    await timeline.append("t5", [output("live 2")]);
    await done;
    expect(seen).toEqual(["backlog", "live 1", "live 2"]);
    // The stream let go of its subscription.
    await expect
      .poll(async () => (await db.redis.call("PUBSUB", "NUMSUB", changeLogKey(db.prefix))) as unknown[])
      .toEqual([changeLogKey(db.prefix), 0]);
  });

  it("takes only the cursors it gives out", () => {
    expect(parseCursor("")).toBe("");
    expect(parseCursor("1764550000000-0")).toBe("1764550000000-0");
    for (const bad of ["1764550000000", "abc-1", "1-2-3", " 1-0", "18446744073709551616-0", "-1-0"]) {
      expect(() => parseCursor(bad), bad).toThrow(InvalidCursorError);
    }
  });
});
