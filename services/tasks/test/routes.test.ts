import { create } from "@bufbuild/protobuf";
import { type Client, Code, createClient, createRouterTransport } from "@connectrpc/connect";
import { serverCallInterceptor } from "@hookmesh/kit";
import { callError, memoryLogger, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { type Event, EventSchema, Provider } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { type TaskEvent, TaskStage, TaskState, TaskView } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { type ComposedTasks, composeTasks } from "../src/compose.js";
import { taskServiceRoutes } from "../src/routes.js";
import { mapTasksError } from "../src/server.js";
import { tasksTestConfig } from "../src/testing.js";
import { WatchQuota } from "../src/watches.js";

const TEXT = "@hookmesh fix it";
const RAW = JSON.stringify({ action: "created", comment: { body: TEXT, author_association: "OWNER" } });

/**
 * An issue comment by the repository owner that mentions hookmesh: on GitHub the default rules
 * queue it. Other providers get the same (GitHub-shaped) event, which no default rule matches.
 */
function event(provider: Provider, deliveryId: string, text = TEXT): Event {
  return create(EventSchema, {
    provider,
    deliveryId,
    eventType: "issue_comment",
    action: "created",
    text,
    actor: { login: "octocat", association: "OWNER" },
    subject: { key: `test:${deliveryId}` },
    rawBody: new TextEncoder().encode(RAW),
    contentType: "application/json",
  });
}

/** Streams one caller may hold in these tests. */
const MAX_WATCHES_PER_CALLER = 3;

function clientFor(core: ComposedTasks) {
  const { logger, lines } = memoryLogger("tasks-routes-test");
  const watches = new WatchQuota({ method: "WatchTask", maxPerCaller: MAX_WATCHES_PER_CALLER, maxTotal: 100 });
  const changes = {
    log: core.changeLog,
    quota: new WatchQuota({ method: "WatchChanges", maxPerCaller: MAX_WATCHES_PER_CALLER, maxTotal: 100 }),
    draining: new AbortController().signal,
  };
  const transport = createRouterTransport(taskServiceRoutes(core.engine, core.store, watches, changes), {
    router: { interceptors: [serverCallInterceptor(logger, mapTasksError)] },
  });
  return { client: createClient(TaskService, transport), lines, logger };
}

const stageOf = (event: TaskEvent | undefined) => (event?.kind.case === "stage" ? event.kind.value.stage : undefined);

describe("TaskService routes", () => {
  let db: TestRedis;
  let core: ComposedTasks;
  let client: Client<typeof TaskService>;
  let lines: () => string[];

  beforeEach(async () => {
    db = await testRedis("tasks-routes");
    const { logger, lines: logged } = memoryLogger("tasks-routes-core");
    core = await composeTasks(tasksTestConfig(db), { logger, env: {} });
    ({ client, lines } = clientFor(core));
    expect(logged()).toEqual([]);
  });
  afterEach(async () => {
    await core?.close();
    await db?.cleanup();
  });

  async function submitMany(count: number, provider = Provider.GITHUB): Promise<string[]> {
    const ids: string[] = [];
    // One at a time: ids are UUIDv7, so creation order is id order.
    for (let i = 0; i < count; i++)
      ids.push((await client.submitEvent({ event: event(provider, `bulk-${provider}-${i}`) })).task!.id);
    return ids;
  }

  describe("SubmitEvent", () => {
    it("creates a queued task, then returns the same one for the same delivery", async () => {
      const first = await client.submitEvent({ event: event(Provider.GITHUB, "delivery-1") });
      expect(first.duplicate).toBe(false);
      expect(first.task).toMatchObject({
        state: TaskState.QUEUED,
        maxAttempts: 3,
        routeId: "github-mention",
        event: { provider: Provider.GITHUB, deliveryId: "delivery-1", eventType: "issue_comment" },
      });
      expect(first.task?.prompt).toContain("fix it");
      expect(first.task?.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(first.task?.transitions.map((t) => t.state)).toEqual([TaskState.QUEUED]);

      const again = await client.submitEvent({ event: event(Provider.GITHUB, "delivery-1") });
      expect(again.duplicate).toBe(true);
      expect(again.task?.id).toBe(first.task?.id);
      expect(again.task?.state).toBe(TaskState.QUEUED);
      expect((await client.listTasks({})).tasks).toHaveLength(1);
    });

    it("records an event no rule matches as an ignored task, with the reason", async () => {
      const plain = await client.submitEvent({ event: event(Provider.GITHUB, "no-mention", "just a comment") });
      expect(plain.duplicate).toBe(false);
      expect(plain.task).toMatchObject({ state: TaskState.IGNORED, routeId: "", maxAttempts: 0 });
      expect(plain.task?.transitions.map((t) => t.state)).toEqual([TaskState.IGNORED]);
      expect(plain.task?.transitions[0]?.reason).toBe("no rule matched");

      const stranger = event(Provider.GITHUB, "stranger");
      stranger.actor!.association = "NONE";
      const refused = await client.submitEvent({ event: stranger });
      expect(refused.task?.state).toBe(TaskState.IGNORED);
      expect(refused.task?.transitions[0]?.reason).toContain("author association NONE");

      const ignored = await client.listTasks({ state: TaskState.IGNORED });
      expect(ignored.tasks.map((t) => t.id)).toEqual([refused.task!.id, plain.task!.id]);
      expect((await client.listTasks({ state: TaskState.QUEUED })).tasks).toEqual([]);
    });

    it("keys deliveries by provider", async () => {
      const github = await client.submitEvent({ event: event(Provider.GITHUB, "same") });
      const slack = await client.submitEvent({ event: event(Provider.SLACK, "same") });
      expect(slack.duplicate).toBe(false);
      expect(slack.task?.id).not.toBe(github.task?.id);
    });

    it.each<[string, Event | undefined, string]>([
      ["no event", undefined, "event: is required"],
      ["no provider", event(Provider.UNSPECIFIED, "d"), "event.provider"],
      ["an unknown provider", event(99 as Provider, "d"), "event.provider"],
      ["no delivery id", event(Provider.GITHUB, ""), "event.delivery_id: is required"],
      ["an overlong delivery id", event(Provider.GITHUB, "x".repeat(257)), "event.delivery_id"],
    ])("rejects %s with InvalidArgument naming the field", async (_, ev, field) => {
      const err = await callError(client.submitEvent({ event: ev }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toContain(field);
      expect(lines().at(-1)).toContain('"code":"InvalidArgument"');
      expect((await client.listTasks({})).tasks).toEqual([]);
    });

    it("accepts a delivery id of exactly 256 characters", async () => {
      const res = await client.submitEvent({ event: event(Provider.GITHUB, "x".repeat(256)) });
      expect(res.task?.event?.deliveryId).toHaveLength(256);
    });
  });

  describe("SubmitEvents", () => {
    it("answers each item in order: new, duplicate, ignored or refused, and makes the valid ones regardless", async () => {
      const before = await client.submitEvent({ event: event(Provider.GITHUB, "seen-before") });
      const named = "01900000-0000-7000-8000-000000000001";
      const { results } = await client.submitEvents({
        items: [
          { event: event(Provider.GITHUB, "batch-new"), taskId: named },
          { event: event(Provider.GITHUB, "seen-before"), taskId: "01900000-0000-7000-8000-000000000002" },
          { event: event(Provider.GITHUB, "") },
          { event: event(Provider.GITHUB, "batch-plain", "just a comment") },
          { event: event(Provider.GITHUB, "batch-bad-id"), taskId: "not-a-uuid" },
          { event: event(Provider.GITHUB, "batch-new"), taskId: "01900000-0000-7000-8000-000000000003" },
          {},
        ],
      });
      expect(results).toHaveLength(7);
      expect(results[0]).toMatchObject({ duplicate: false, error: "", task: { id: named, state: TaskState.QUEUED } });
      expect(results[1]).toMatchObject({ duplicate: true, error: "", task: { id: before.task!.id } });
      expect(results[2]).toMatchObject({ error: expect.stringContaining("delivery_id") });
      expect(results[2]!.task).toBeUndefined();
      expect(results[3]).toMatchObject({ duplicate: false, task: { state: TaskState.IGNORED } });
      expect(results[4]).toMatchObject({ error: expect.stringContaining("task_id") });
      expect(results[4]!.task).toBeUndefined();
      // The same delivery twice in one batch is one task.
      expect(results[5]).toMatchObject({ task: { id: named } });
      expect(results[6]).toMatchObject({ error: expect.stringContaining("event") });

      const listed = (await client.listTasks({})).tasks.map((t) => t.event!.deliveryId).sort();
      expect(listed).toEqual(["batch-new", "batch-plain", "seen-before"]);
      const created = await client.getTask({ id: named });
      expect(created.task?.transitions.map((t) => t.state)).toEqual([TaskState.QUEUED]);
    });

    it("refuses an empty batch and one over 500 items", async () => {
      await expect(client.submitEvents({ items: [] })).rejects.toMatchObject({ code: Code.InvalidArgument });
      const items = Array.from({ length: 501 }, (_, i) => ({ event: event(Provider.GITHUB, `over-${i}`) }));
      await expect(client.submitEvents({ items })).rejects.toMatchObject({ code: Code.InvalidArgument });
      expect((await client.listTasks({})).tasks).toHaveLength(0);
    });
  });

  describe("GetTask", () => {
    it("returns the full task by default and without the raw body in BASIC view", async () => {
      const { task } = await client.submitEvent({ event: event(Provider.JIRA, "g-1") });
      const full = await client.getTask({ id: task!.id });
      expect(full.task?.id).toBe(task!.id);
      expect(new TextDecoder().decode(full.task?.event?.rawBody)).toBe(RAW);
      const explicit = await client.getTask({ id: task!.id, view: TaskView.FULL });
      expect(new TextDecoder().decode(explicit.task?.event?.rawBody)).toBe(RAW);
      const basic = await client.getTask({ id: task!.id, view: TaskView.BASIC });
      expect(basic.task?.event?.rawBody).toHaveLength(0);
      expect(basic.task?.event?.deliveryId).toBe("g-1");
    });

    it("answers an unknown id with NotFound", async () => {
      const err = await callError(client.getTask({ id: "00000000-0000-7000-8000-000000000000" }));
      expect(err.code).toBe(Code.NotFound);
      expect(err.rawMessage).toBe("task 00000000-0000-7000-8000-000000000000 not found");
      const empty = await callError(client.getTask({ id: "" }));
      expect(empty.code).toBe(Code.NotFound);
    });
  });

  describe("ListTasks", () => {
    it("lists newest first without raw bodies, and refuses the FULL view, which is GetTask's", async () => {
      const ids = await submitMany(3);
      for (const view of [TaskView.UNSPECIFIED, TaskView.BASIC]) {
        const basic = await client.listTasks({ view });
        expect(basic.tasks.map((t) => t.id)).toEqual(ids.toReversed());
        expect(basic.nextPageToken).toBe("");
        for (const task of basic.tasks) expect(task.event?.rawBody).toHaveLength(0);
      }
      const err = await callError(client.listTasks({ view: TaskView.FULL }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toMatch(/^view: .*GetTask/);
    });

    it("pages with next_page_token until the end", async () => {
      const ids = await submitMany(5);
      const seen: string[] = [];
      let pageToken = "";
      let pages = 0;
      do {
        const page = await client.listTasks({ pageSize: 2, pageToken });
        seen.push(...page.tasks.map((t) => t.id));
        pageToken = page.nextPageToken;
        pages++;
      } while (pageToken !== "");
      expect(pages).toBe(3);
      expect(seen).toEqual(ids.toReversed());
    });

    it("treats page_size 0 as 50", async () => {
      await submitMany(51, Provider.SENTRY);
      const page = await client.listTasks({ pageSize: 0 });
      expect(page.tasks).toHaveLength(50);
      expect(page.nextPageToken).not.toBe("");
      const rest = await client.listTasks({ pageToken: page.nextPageToken });
      expect(rest.tasks).toHaveLength(1);
      expect(rest.nextPageToken).toBe("");
    });

    it("lowers a page_size above 500 to 500", async () => {
      await Promise.all(
        Array.from({ length: 501 }, (_, i) => client.submitEvent({ event: event(Provider.SENTRY, `many-${i}`) })),
      );
      const page = await client.listTasks({ pageSize: 10_000 });
      expect(page.tasks).toHaveLength(500);
      expect(page.nextPageToken).not.toBe("");
    });

    it("filters by provider and state", async () => {
      const github = await submitMany(2, Provider.GITHUB);
      const slack = await submitMany(1, Provider.SLACK);
      const page = await client.listTasks({ provider: Provider.GITHUB });
      expect(page.tasks.map((t) => t.id)).toEqual(github.toReversed());
      const queued = await client.listTasks({ provider: Provider.GITHUB, state: TaskState.QUEUED });
      expect(queued.tasks.map((t) => t.id)).toEqual(github.toReversed());
      const ignored = await client.listTasks({ provider: Provider.SLACK, state: TaskState.IGNORED });
      expect(ignored.tasks.map((t) => t.id)).toEqual(slack);
      expect((await client.listTasks({ provider: Provider.SLACK, state: TaskState.QUEUED })).tasks).toEqual([]);
      expect((await client.listTasks({ state: TaskState.RUNNING })).tasks).toEqual([]);
    });

    it("rejects a negative page_size with InvalidArgument", async () => {
      const err = await callError(client.listTasks({ pageSize: -1 }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toContain("page_size");
    });

    it("rejects a malformed page token, or one issued for other filters, with InvalidArgument", async () => {
      await submitMany(3);
      const garbage = await callError(client.listTasks({ pageToken: "not-a-token" }));
      expect(garbage.code).toBe(Code.InvalidArgument);
      expect(garbage.rawMessage).toContain("page_token");
      const page = await client.listTasks({ pageSize: 1 });
      const other = await callError(client.listTasks({ pageToken: page.nextPageToken, provider: Provider.GITHUB }));
      expect(other.code).toBe(Code.InvalidArgument);
    });
  });

  describe("CancelTask and RetryTask", () => {
    it("cancels a queued task at once, and retries it into the queue again", async () => {
      const { task } = await client.submitEvent({ event: event(Provider.GITHUB, "cancel-me") });
      expect(task?.state).toBe(TaskState.QUEUED);
      const canceled = await client.cancelTask({ id: task!.id, reason: "not needed" });
      expect(canceled.task?.state).toBe(TaskState.CANCELED);
      expect(canceled.task?.transitions.at(-1)).toMatchObject({ state: TaskState.CANCELED, reason: "not needed" });
      expect((await client.getTask({ id: task!.id })).task?.state).toBe(TaskState.CANCELED);
      expect((await client.listTasks({ state: TaskState.CANCELED })).tasks.map((t) => t.id)).toEqual([task!.id]);
      expect((await client.listTasks({ state: TaskState.QUEUED })).tasks).toEqual([]);
      // Canceling again is a no-op.
      expect((await client.cancelTask({ id: task!.id })).task?.state).toBe(TaskState.CANCELED);

      const retried = await client.retryTask({ id: task!.id });
      expect(retried.task?.state).toBe(TaskState.QUEUED);
      expect(retried.task?.transitions.map((t) => t.state)).toEqual([
        TaskState.QUEUED,
        TaskState.CANCELED,
        TaskState.QUEUED,
      ]);
    });

    it("answers a cancel of an unknown id with NotFound", async () => {
      const err = await callError(client.cancelTask({ id: "00000000-0000-7000-8000-000000000000" }));
      expect(err.code).toBe(Code.NotFound);
    });

    it("refuses to cancel an ignored task, and to retry a queued one, with FailedPrecondition", async () => {
      const { task: queued } = await client.submitEvent({ event: event(Provider.GITHUB, "retry-queued") });
      const retry = await callError(client.retryTask({ id: queued!.id }));
      expect(retry.code).toBe(Code.FailedPrecondition);
      expect(retry.rawMessage).toContain("QUEUED");
      expect((await client.getTask({ id: queued!.id })).task?.transitions).toHaveLength(1);

      const { task: ignored } = await client.submitEvent({
        event: event(Provider.GITHUB, "cancel-ignored", "no mention"),
      });
      expect(ignored?.state).toBe(TaskState.IGNORED);
      expect((await callError(client.cancelTask({ id: ignored!.id }))).code).toBe(Code.FailedPrecondition);
    });

    it("answers a retry of an unknown id with NotFound", async () => {
      expect((await callError(client.retryTask({ id: "nope" }))).code).toBe(Code.NotFound);
    });
  });

  describe("WatchTask", () => {
    it("streams how a new task was received, verified, routed and queued", async () => {
      const { task } = await client.submitEvent({ event: event(Provider.GITHUB, "watch-1") });
      const abort = new AbortController();
      const seen: TaskEvent[] = [];
      try {
        for await (const res of client.watchTask({ id: task!.id }, { signal: abort.signal })) {
          seen.push(res.event!);
          if (seen.length === 4) abort.abort();
        }
      } catch (err) {
        if (!abort.signal.aborted) throw err;
      }
      expect(seen.map(stageOf)).toEqual([TaskStage.RECEIVED, TaskStage.VERIFIED, TaskStage.ROUTED, TaskStage.QUEUED]);
      expect(new Set(seen.map((e) => e.id)).size).toBe(4);

      // Resuming after the second event gives the rest.
      const resumed = new AbortController();
      const rest: TaskEvent[] = [];
      try {
        for await (const res of client.watchTask(
          { id: task!.id, afterEventId: seen[1]!.id },
          { signal: resumed.signal },
        )) {
          rest.push(res.event!);
          if (rest.length === 2) resumed.abort();
        }
      } catch (err) {
        if (!resumed.signal.aborted) throw err;
      }
      expect(rest.map((e) => e.id)).toEqual(seen.slice(2).map((e) => e.id));
    });

    it("ends the stream of an ignored task, which is final, after its timeline", async () => {
      const { task } = await client.submitEvent({ event: event(Provider.GITHUB, "watch-ignored", "nothing to do") });
      const seen: TaskEvent[] = [];
      for await (const res of client.watchTask({ id: task!.id }, { timeoutMs: 5_000 })) seen.push(res.event!);
      expect(seen.map(stageOf)).toEqual([TaskStage.RECEIVED, TaskStage.VERIFIED, TaskStage.IGNORED]);
    });

    it("gives a caller past its share of streams ResourceExhausted, and the slot back when one ends", async () => {
      const { task } = await client.submitEvent({ event: event(Provider.GITHUB, "watch-cap") });
      const abort = new AbortController();
      const firstEvent: Promise<void>[] = [];
      const streams = Array.from({ length: MAX_WATCHES_PER_CALLER }, () => {
        let opened: () => void = () => {};
        firstEvent.push(new Promise<void>((resolve) => (opened = resolve)));
        return (async () => {
          for await (const _ of client.watchTask({ id: task!.id }, { signal: abort.signal })) opened();
        })().catch(() => {});
      });
      await Promise.all(firstEvent);
      const watchOneEvent = async () => {
        for await (const _ of client.watchTask({ id: task!.id })) return;
      };
      const err = await callError(watchOneEvent());
      expect(err.code).toBe(Code.ResourceExhausted);
      abort.abort();
      await Promise.all(streams);
      // The handler gives its slot back once it has seen the abort, a moment after the client.
      await vi.waitFor(watchOneEvent, { timeout: 5_000, interval: 50 });
    });

    it("answers an unknown id with NotFound", async () => {
      const watch = async () => {
        for await (const _ of client.watchTask({ id: "00000000-0000-7000-8000-000000000000" })) {
          // Nothing is expected.
        }
      };
      const err = await callError(watch());
      expect(err.code).toBe(Code.NotFound);
    });
  });

  it("answers Unavailable when Redis cannot be reached, and logs the cause", async () => {
    const { logger } = memoryLogger("tasks-routes-down");
    const down = await composeTasks(tasksTestConfig(db), { logger, env: {} });
    down.redis.disconnect();
    try {
      const { client: downClient, lines: logged } = clientFor(down);
      const err = await callError(downClient.submitEvent({ event: event(Provider.GITHUB, "while-down") }));
      expect(err.code).toBe(Code.Unavailable);
      expect(err.rawMessage).toBe("task store unavailable");
      expect((await callError(downClient.getTask({ id: "x" }))).code).toBe(Code.Unavailable);
      expect((await callError(downClient.listTasks({}))).code).toBe(Code.Unavailable);
      expect(logged().at(0)).toContain('"code":"Unavailable"');
    } finally {
      await down.close();
    }
  });
});
