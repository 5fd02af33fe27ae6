import { create, fromBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { TEST_REDIS_URL, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { Redis } from "ioredis";
import { pino } from "pino";
import { v7 as uuidv7 } from "uuid";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { EventSchema, Provider } from "../../../gen/hookmesh/events/v1/event_pb.js";
import {
  StateTransitionSchema,
  type Task,
  TaskSchema,
  TaskStage,
  TaskState,
  TaskView,
} from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { InvalidPageTokenError, TaskNotFoundError } from "../src/errors.js";
import { changeLogKey, timelineKey } from "../src/keys.js";
import { TaskStore } from "../src/task-store.js";
import { Timeline } from "../src/timeline.js";
import { TimelineSignals } from "../src/watches.js";

const RAW = '{"action":"created"}';

/** A task as the engine builds one: a fresh UUIDv7 id, its event, its first transition. */
function newTask(provider: Provider, deliveryId: string, state = TaskState.QUEUED): Task {
  const now = timestampNow();
  return create(TaskSchema, {
    id: uuidv7(),
    state,
    event: create(EventSchema, {
      provider,
      deliveryId,
      eventType: "issue_comment",
      action: "created",
      rawBody: new TextEncoder().encode(RAW),
      contentType: "application/json",
    }),
    createTime: now,
    updateTime: now,
    maxAttempts: 3,
    transitions: [create(StateTransitionSchema, { state, time: now, reason: "test" })],
  });
}

const raw = (task: Task | undefined) => new TextDecoder().decode(task?.event?.rawBody);

const RETENTION_MS = 86_400_000;
const IGNORED_BODY_RETENTION_MS = 3_600_000;

describe("TaskStore", () => {
  let db: TestRedis;
  let store: TaskStore;

  beforeEach(async () => {
    db = await testRedis("task-store");
    store = new TaskStore(db.redis, {
      keyPrefix: db.prefix,
      retentionMs: RETENTION_MS,
      ignoredBodyRetentionMs: IGNORED_BODY_RETENTION_MS,
    });
  });
  afterEach(() => db.cleanup());

  /** Milliseconds each of the task's keys has left: -1 for none, -2 for a key that is gone. */
  async function ttls(id: string, deliveryId: string, provider = Provider.GITHUB) {
    const key = (...parts: string[]) => db.prefix + parts.join(":");
    const keys = {
      task: key("task", id),
      raw: key("raw", id),
      timeline: timelineKey(db.prefix, id),
      lease: key("lease", id),
      delivery: key("delivery", String(provider), "", deliveryId),
    };
    const entries = await Promise.all(
      Object.entries(keys).map(async ([name, k]) => [name, await db.redis.pttl(k)] as const),
    );
    return Object.fromEntries(entries) as Record<keyof typeof keys, number>;
  }

  /** `ttl` is `ms`, less the little time the test took. */
  function expectTtl(ttl: number, ms: number) {
    expect(ttl).toBeGreaterThan(ms - 60_000);
    expect(ttl).toBeLessThanOrEqual(ms);
  }

  describe("create and get", () => {
    it("stores a task and reads it back, with its raw body only in FULL view", async () => {
      const task = newTask(Provider.GITHUB, "d-1");
      const { task: created, duplicate } = await store.create(task);
      expect(duplicate).toBe(false);
      expect(created.id).toBe(task.id);

      const full = await store.get(task.id);
      expect(full).toEqual(task);
      expect(raw(full)).toBe(RAW);
      expect(raw(await store.get(task.id, TaskView.FULL))).toBe(RAW);
      const basic = await store.get(task.id, TaskView.BASIC);
      expect(basic.event?.rawBody).toHaveLength(0);
      expect(basic.event?.deliveryId).toBe("d-1");
      expect(basic.transitions.map((t) => t.state)).toEqual([TaskState.QUEUED]);
    });

    it("returns the first task, unchanged, for a repeated delivery and creates nothing", async () => {
      const first = newTask(Provider.GITHUB, "d-1");
      await store.create(first);
      const second = newTask(Provider.GITHUB, "d-1", TaskState.IGNORED);
      const again = await store.create(second);
      expect(again.duplicate).toBe(true);
      expect(again.task).toEqual(first);
      await expect(store.get(second.id)).rejects.toThrow(TaskNotFoundError);
      const page = await store.list({ pageSize: 10 });
      expect(page.tasks.map((t) => t.id)).toEqual([first.id]);
      expect(await store.idsInState(TaskState.IGNORED)).toEqual([]);
    });

    it("keeps one task per delivery under concurrent creates", async () => {
      const results = await Promise.all(
        Array.from({ length: 20 }, () => store.create(newTask(Provider.SLACK, "same"))),
      );
      expect(new Set(results.map((r) => r.task.id)).size).toBe(1);
      expect(results.filter((r) => !r.duplicate)).toHaveLength(1);
      expect((await store.list({ pageSize: 50 })).tasks).toHaveLength(1);
      expect(await store.idsInState(TaskState.QUEUED)).toHaveLength(1);
    });

    it("scopes delivery ids by provider", async () => {
      const github = await store.create(newTask(Provider.GITHUB, "d-1"));
      const jira = await store.create(newTask(Provider.JIRA, "d-1"));
      expect(jira.duplicate).toBe(false);
      expect(jira.task.id).not.toBe(github.task.id);
    });

    it("reports a missing task", async () => {
      await expect(store.get("nope")).rejects.toThrow(TaskNotFoundError);
      await expect(store.get("nope", TaskView.BASIC)).rejects.toThrow(TaskNotFoundError);
    });
  });

  describe("list", () => {
    it("lists newest first across pages, filtered by provider and state, without raw bodies", async () => {
      const created: string[] = [];
      for (let i = 0; i < 7; i++) {
        const provider = i % 2 === 0 ? Provider.GITHUB : Provider.SLACK;
        created.push((await store.create(newTask(provider, `d-${i}`))).task.id);
      }
      const newestFirst = [...created].reverse();

      const seen: string[] = [];
      let pageToken: string | undefined;
      do {
        const page = await store.list({ pageSize: 3, pageToken });
        expect(page.tasks.length).toBeLessThanOrEqual(3);
        for (const task of page.tasks) expect(task.event?.rawBody).toHaveLength(0);
        seen.push(...page.tasks.map((t) => t.id));
        pageToken = page.nextPageToken || undefined;
      } while (pageToken);
      expect(seen).toEqual(newestFirst);

      const github = await store.list({ pageSize: 2, provider: Provider.GITHUB, state: TaskState.QUEUED });
      expect(github.tasks.map((t) => t.id)).toEqual(newestFirst.filter((_, i) => i % 2 === 0).slice(0, 2));
      const rest = await store.list({
        pageSize: 10,
        provider: Provider.GITHUB,
        state: TaskState.QUEUED,
        pageToken: github.nextPageToken,
      });
      expect(rest.tasks.map((t) => t.id)).toEqual(newestFirst.filter((_, i) => i % 2 === 0).slice(2));
      for (const task of rest.tasks) expect(task.event?.rawBody).toHaveLength(0);
      expect(rest.nextPageToken).toBe("");

      const slack = await store.list({ pageSize: 10, provider: Provider.SLACK });
      expect(slack.tasks.map((t) => t.id)).toEqual(newestFirst.filter((_, i) => i % 2 === 1));

      const none = await store.list({ pageSize: 10, state: TaskState.SUCCEEDED });
      expect(none).toEqual({ tasks: [], nextPageToken: "" });
    });

    it("lists by state, including ignored tasks", async () => {
      const queued = (await store.create(newTask(Provider.GITHUB, "q"))).task.id;
      const ignored = (await store.create(newTask(Provider.GITHUB, "i", TaskState.IGNORED))).task.id;
      const ids = async (state: TaskState) => (await store.list({ pageSize: 10, state })).tasks.map((t) => t.id);
      expect(await ids(TaskState.QUEUED)).toEqual([queued]);
      expect(await ids(TaskState.IGNORED)).toEqual([ignored]);
    });

    it("gives no next page token when the last page is exactly full", async () => {
      for (let i = 0; i < 4; i++) await store.create(newTask(Provider.GITHUB, `d-${i}`));
      const page = await store.list({ pageSize: 4 });
      expect(page.tasks).toHaveLength(4);
      expect(page.nextPageToken).toBe("");
      const half = await store.list({ pageSize: 2 });
      const last = await store.list({ pageSize: 2, pageToken: half.nextPageToken });
      expect(last.tasks).toHaveLength(2);
      expect(last.nextPageToken).toBe("");
    });

    it("rejects a page token issued for other filters, or not issued at all", async () => {
      for (let i = 0; i < 3; i++) await store.create(newTask(Provider.GITHUB, `d-${i}`));
      const page = await store.list({ pageSize: 1 });
      expect(page.nextPageToken).not.toBe("");
      await expect(
        store.list({ pageSize: 1, pageToken: page.nextPageToken, provider: Provider.GITHUB }),
      ).rejects.toThrow(InvalidPageTokenError);
      await expect(store.list({ pageSize: 1, pageToken: "garbage" })).rejects.toThrow(InvalidPageTokenError);
    });
  });

  describe("update", () => {
    it("applies a change, returns the stored task and moves it between state indexes", async () => {
      const { task } = await store.create(newTask(Provider.GITHUB, "u-1"));
      const updated = await store.update(task.id, (t) => {
        t.state = TaskState.RUNNING;
        t.attempt = 1;
        t.workerId = "w1";
      });
      expect(updated).toMatchObject({ id: task.id, state: TaskState.RUNNING, attempt: 1, workerId: "w1" });
      expect(updated.event?.rawBody).toHaveLength(0);

      // The raw body, stored apart, survives the rewrite.
      const read = await store.get(task.id);
      expect(read).toMatchObject({ state: TaskState.RUNNING, attempt: 1, workerId: "w1" });
      expect(raw(read)).toBe(RAW);

      const byState = async (state: TaskState) => (await store.list({ pageSize: 10, state })).tasks.map((t) => t.id);
      expect(await byState(TaskState.QUEUED)).toEqual([]);
      expect(await byState(TaskState.RUNNING)).toEqual([task.id]);
      expect(await store.idsInState(TaskState.QUEUED)).toEqual([]);
      expect(await store.idsInState(TaskState.RUNNING)).toEqual([task.id]);
      // Provider and all indexes are untouched.
      expect((await store.list({ pageSize: 10, provider: Provider.GITHUB })).tasks.map((t) => t.id)).toEqual([task.id]);

      // A change that keeps the state leaves the indexes as they are.
      await store.update(task.id, (t) => {
        t.cancelRequested = true;
      });
      expect(await byState(TaskState.RUNNING)).toEqual([task.id]);
      expect((await store.get(task.id, TaskView.BASIC)).cancelRequested).toBe(true);
    });

    it("applies every one of concurrent updates to the same task", async () => {
      const { task } = await store.create(newTask(Provider.GITHUB, "u-hot"));
      await Promise.all(
        Array.from({ length: 20 }, () =>
          store.update(task.id, (t) => {
            t.attempt += 1;
          }),
        ),
      );
      expect((await store.get(task.id, TaskView.BASIC)).attempt).toBe(20);
    });

    it("reports a missing task", async () => {
      await expect(store.update("nope", () => {})).rejects.toThrow(TaskNotFoundError);
    });

    it("leaves the task unchanged when the change throws", async () => {
      const { task } = await store.create(newTask(Provider.GITHUB, "u-refused"));
      const refusal = new Error("refused");
      await expect(
        store.update(task.id, (t) => {
          t.state = TaskState.CANCELED;
          t.attempt = 7;
          throw refusal;
        }),
      ).rejects.toBe(refusal);
      expect(await store.get(task.id)).toEqual(task);
      expect(await store.idsInState(TaskState.QUEUED)).toEqual([task.id]);
      expect(await store.idsInState(TaskState.CANCELED)).toEqual([]);
    });
  });

  describe("create and update with timeline events, and an update from a read with a lease", () => {
    let subscriber: Redis;
    let timeline: Timeline;

    beforeEach(() => {
      // Never connects: the signals serve watchers, and nothing here watches.
      subscriber = new Redis(TEST_REDIS_URL, { lazyConnect: true });
      timeline = new Timeline(db.redis, {
        keyPrefix: db.prefix,
        maxTextBytes: 1024,
        maxEvents: 100,
        changeLogMax: 100,
        signals: new TimelineSignals(subscriber, (id) => timelineKey(db.prefix, id), pino({ level: "silent" })),
      });
    });
    afterEach(() => subscriber.disconnect());

    const run = (t: Task) => {
      t.attempt += 1;
      t.state = TaskState.RUNNING;
    };
    const leased = (t: Task) =>
      timeline.prepare(t.id, [
        {
          attempt: t.attempt,
          kind: { case: "stage", value: { stage: TaskStage.LEASED, detail: "w" } },
          changedTask: true,
        },
      ]);
    const stagesOf = async (id: string) =>
      (await timeline.read(id)).map((e) => (e.kind.case === "stage" ? [e.kind.value.stage, e.attempt] : []));

    it("writes a new task's first timeline events with it, and none for a repeated delivery", async () => {
      const received = (t: Task) =>
        timeline.prepare(t.id, [
          { kind: { case: "stage", value: { stage: TaskStage.RECEIVED, detail: "" } }, changedTask: true },
          { kind: { case: "stage", value: { stage: TaskStage.QUEUED, detail: "" } } },
        ]);
      const first = newTask(Provider.GITHUB, "c-events");
      const scripts = vi.spyOn(db.redis, "evalsha");
      expect(await store.create(first, received(first))).toMatchObject({ duplicate: false });
      expect(scripts).toHaveBeenCalledTimes(1);
      expect(await stagesOf(first.id)).toEqual([
        [TaskStage.RECEIVED, 0],
        [TaskStage.QUEUED, 0],
      ]);
      // The change log's snapshot is the task as created.
      const [[, fields]] = (await db.redis.xrangeBuffer(changeLogKey(db.prefix), "-", "+")) as [[Buffer, Buffer[]]];
      const s = fields.findIndex((field) => field.toString() === "s");
      expect(fromBinary(TaskSchema, fields[s + 1]!).id).toBe(first.id);

      const repeated = newTask(Provider.GITHUB, "c-events");
      expect(await store.create(repeated, received(repeated))).toMatchObject({
        duplicate: true,
        task: { id: first.id },
      });
      expect(await db.redis.exists(timelineKey(db.prefix, repeated.id))).toBe(0);
      expect(await stagesOf(first.id)).toHaveLength(2);
    });

    it("reads a task with its stored bytes, and an update from them reads nothing more", async () => {
      const { task } = await store.create(newTask(Provider.GITHUB, "u-read"));
      const read = await store.read(task.id);
      expect(read.task).toEqual({ ...task, event: { ...task.event, rawBody: new Uint8Array(0) } });
      expect(read.bytes).toEqual(await db.redis.getBuffer(`${db.prefix}task:${task.id}`));
      const reads = vi.spyOn(db.redis, "getBuffer");
      const running = await store.update(task.id, run, { from: read, lease: "lease-1", append: leased });
      expect(reads).not.toHaveBeenCalled();
      expect(running).toMatchObject({ state: TaskState.RUNNING, attempt: 1 });
      expect(await store.get(task.id, TaskView.BASIC)).toEqual(running);
      expect(await store.leaseOf(task.id)).toBe("lease-1");
      expect(await stagesOf(task.id)).toEqual([[TaskStage.LEASED, 1]]);
      await expect(store.read("missing")).rejects.toThrow(TaskNotFoundError);
    });

    it("after a lost race writes nothing of the first try, then reads again and reapplies the change", async () => {
      const { task } = await store.create(newTask(Provider.GITHUB, "u-race"));
      const stale = await store.read(task.id);
      await store.update(task.id, (t) => {
        t.cancelRequested = true;
      });
      const seen: boolean[] = [];
      const running = await store.update(
        task.id,
        (t) => {
          seen.push(t.cancelRequested);
          run(t);
        },
        { from: stale, lease: "lease-1", append: leased },
      );
      // The first try compared against the stale bytes and lost; the second saw the cancel.
      expect(seen).toEqual([false, true]);
      expect(running).toMatchObject({ state: TaskState.RUNNING, attempt: 1, cancelRequested: true });
      expect(await store.get(task.id, TaskView.BASIC)).toEqual(running);
      expect(await stagesOf(task.id)).toEqual([[TaskStage.LEASED, 1]]);
    });

    it("leaves the lease and the timeline alone when the task changed and the change then refuses", async () => {
      const { task } = await store.create(newTask(Provider.GITHUB, "u-refused"));
      const stale = await store.read(task.id);
      await store.update(task.id, (t) => {
        t.state = TaskState.CANCELED;
      });
      const refusal = new Error("not queued any more");
      let tries = 0;
      await expect(
        store.update(
          task.id,
          (t) => {
            if (++tries > 1) throw refusal;
            run(t);
          },
          { from: stale, lease: "lease-1", append: leased },
        ),
      ).rejects.toBe(refusal);
      expect(tries).toBe(2);
      expect(await store.leaseOf(task.id)).toBeNull();
      expect(await timeline.read(task.id)).toEqual([]);
      expect((await store.get(task.id, TaskView.BASIC)).state).toBe(TaskState.CANCELED);
    });

    it("appends each update's events after it, in the order of the updates, with the task as it stands", async () => {
      const { task } = await store.create(newTask(Provider.GITHUB, "u-order"));
      const stage = (kind: TaskStage, t: Task) =>
        timeline.prepare(t.id, [
          { attempt: t.attempt, kind: { case: "stage", value: { stage: kind, detail: "" } }, changedTask: true },
        ]);
      await store.update(task.id, run, { lease: "lease-1", append: (t) => stage(TaskStage.LEASED, t) });
      await store.update(
        task.id,
        (t) => {
          t.state = TaskState.QUEUED;
        },
        { append: (t) => stage(TaskStage.LEASE_EXPIRED, t) },
      );
      await store.update(task.id, run, { lease: "lease-2", append: (t) => stage(TaskStage.LEASED, t) });
      expect(await stagesOf(task.id)).toEqual([
        [TaskStage.LEASED, 1],
        [TaskStage.LEASE_EXPIRED, 1],
        [TaskStage.LEASED, 2],
      ]);
      // Each change in the log carries the task as the update left it.
      const changes = await db.redis.xrangeBuffer(changeLogKey(db.prefix), "-", "+");
      const snapshots = changes.map(([, fields]) => {
        const s = fields.findIndex((field) => field.toString() === "s");
        return fromBinary(TaskSchema, fields[s + 1]!);
      });
      expect(snapshots.map((t) => [t.state, t.attempt])).toEqual([
        [TaskState.RUNNING, 1],
        [TaskState.QUEUED, 1],
        [TaskState.RUNNING, 2],
      ]);
    });
  });

  describe("leases and state ids", () => {
    it("records the lease holding a task with the update that runs it, and the latest one wins", async () => {
      const { task } = await store.create(newTask(Provider.GITHUB, "l-1"));
      expect(await store.leaseOf(task.id)).toBeNull();
      const run = (t: Task) => {
        t.state = TaskState.RUNNING;
        t.attempt += 1;
      };
      await store.update(task.id, run, { lease: "lease-1" });
      expect(await store.leaseOf(task.id)).toBe("lease-1");
      await store.update(task.id, (t) => {
        t.state = TaskState.QUEUED;
      });
      expect(await store.leaseOf(task.id)).toBe("lease-1");
      await store.update(task.id, run, { lease: "lease-2" });
      expect(await store.leaseOf(task.id)).toBe("lease-2");
      expect(await store.leaseOf("other")).toBeNull();
    });

    it("lists the ids of every task in a state, oldest first", async () => {
      const ids: string[] = [];
      for (let i = 0; i < 4; i++) ids.push((await store.create(newTask(Provider.GITHUB, `s-${i}`))).task.id);
      const ignored = (await store.create(newTask(Provider.SLACK, "s-ignored", TaskState.IGNORED))).task.id;
      expect(await store.idsInState(TaskState.QUEUED)).toEqual(ids);
      expect(await store.idsInState(TaskState.IGNORED)).toEqual([ignored]);
      expect(await store.idsInState(TaskState.SUCCEEDED)).toEqual([]);
      await store.update(ids[1]!, (t) => {
        t.state = TaskState.SUCCEEDED;
      });
      expect(await store.idsInState(TaskState.QUEUED)).toEqual([ids[0], ids[2], ids[3]]);
      expect(await store.idsInState(TaskState.SUCCEEDED)).toEqual([ids[1]]);
    });
  });

  describe("retention", () => {
    it("starts when a task ends, for every key of the task, and stops when an operator revives it", async () => {
      const { task } = await store.create(newTask(Provider.GITHUB, "r-1"));
      await db.redis.xadd(timelineKey(db.prefix, task.id), "*", "e", "x");
      await store.update(
        task.id,
        (t) => {
          t.state = TaskState.RUNNING;
        },
        { lease: "lease-1" },
      );
      expect(Object.values(await ttls(task.id, "r-1"))).toEqual([-1, -1, -1, -1, -1]);

      await store.update(task.id, (t) => {
        t.state = TaskState.FAILED;
      });
      const ended = await ttls(task.id, "r-1");
      for (const ttl of Object.values(ended)) expectTtl(ttl, RETENTION_MS);
      expect(await db.redis.zscore(`${db.prefix}index:expiry`, task.id)).not.toBeNull();

      // A change to an ended task keeps its deadline.
      await new Promise((r) => setTimeout(r, 20));
      await store.update(task.id, (t) => {
        t.cancelRequested = true;
      });
      expect((await ttls(task.id, "r-1")).task).toBeLessThan(ended.task);

      await store.update(task.id, (t) => {
        t.state = TaskState.QUEUED;
      });
      expect(Object.values(await ttls(task.id, "r-1"))).toEqual([-1, -1, -1, -1, -1]);
      expect(await db.redis.zscore(`${db.prefix}index:expiry`, task.id)).toBeNull();
    });

    it("gives an ignored task its deadline at once, and its raw body a much shorter one", async () => {
      const { task } = await store.create(newTask(Provider.SLACK, "r-ignored", TaskState.IGNORED));
      const left = await ttls(task.id, "r-ignored", Provider.SLACK);
      expectTtl(left.task, RETENTION_MS);
      expectTtl(left.delivery, RETENTION_MS);
      expectTtl(left.raw, IGNORED_BODY_RETENTION_MS);
      const queued = await store.create(newTask(Provider.SLACK, "r-queued"));
      expect((await ttls(queued.task.id, "r-queued", Provider.SLACK)).task).toBe(-1);
    });

    it("forgets ended tasks and their deliveries, takes them out of every index, and keeps the rest", async () => {
      const short = new TaskStore(db.redis, { keyPrefix: db.prefix, retentionMs: 50, ignoredBodyRetentionMs: 10 });
      const queued = (await short.create(newTask(Provider.GITHUB, "x-queued"))).task;
      const ignored = (await short.create(newTask(Provider.GITHUB, "x-ignored", TaskState.IGNORED))).task;
      const done = (await short.create(newTask(Provider.SLACK, "x-done"))).task;
      await short.update(done.id, (t) => {
        t.state = TaskState.SUCCEEDED;
      });
      await new Promise((r) => setTimeout(r, 120));

      await expect(short.get(ignored.id)).rejects.toThrow(TaskNotFoundError);
      await expect(short.get(done.id)).rejects.toThrow(TaskNotFoundError);
      // Before the sweep the indexes still name them, and a listing skips them.
      expect((await short.list({ pageSize: 10 })).tasks.map((t) => t.id)).toEqual([queued.id]);

      expect(await short.sweepExpired(60_000)).toBe(2);
      // One sweep per lock period, whichever replica takes it.
      expect(await short.sweepExpired(60_000)).toBe(0);
      const indexes = (await db.redis.keys(`${db.prefix}index:*`)).sort();
      for (const index of indexes) {
        const members = await db.redis.zrange(index, "0", "-1");
        expect(members).not.toContain(ignored.id);
        expect(members).not.toContain(done.id);
      }
      expect(await short.idsInState(TaskState.QUEUED)).toEqual([queued.id]);
      expect(await db.redis.pttl(`${db.prefix}task:${queued.id}`)).toBe(-1);

      // The delivery went with its task: submitted again, it makes a new one.
      const again = await short.create(newTask(Provider.GITHUB, "x-ignored", TaskState.IGNORED));
      expect(again.duplicate).toBe(false);
    });
  });

  it("lists tasks without reading a single raw body", async () => {
    for (let i = 0; i < 5; i++) await store.create(newTask(Provider.GITHUB, `b-${i}`));
    const touched: string[] = [];
    const send = db.redis.sendCommand.bind(db.redis);
    const spy = vi.spyOn(db.redis, "sendCommand").mockImplementation((command, stream) => {
      touched.push(...command.args.map(String));
      return send(command, stream);
    });
    try {
      const page = await store.list({ pageSize: 10 });
      expect(page.tasks).toHaveLength(5);
      expect(touched.some((arg) => arg.startsWith(`${db.prefix}task:`))).toBe(true);
      expect(touched.filter((arg) => arg.startsWith(`${db.prefix}raw:`))).toEqual([]);
      // The spy sees body reads where there are some.
      await store.get(page.tasks[0]!.id, TaskView.FULL);
      expect(touched.some((arg) => arg.startsWith(`${db.prefix}raw:`))).toBe(true);
    } finally {
      spy.mockRestore();
    }
  });
});
