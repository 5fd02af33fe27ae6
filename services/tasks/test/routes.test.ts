import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Redis } from "ioredis";
import { create } from "@bufbuild/protobuf";
import { Code, createClient, createRouterTransport, type Client } from "@connectrpc/connect";
import { serverCallInterceptor } from "@hookmesh/kit";
import { memoryLogger, testRedis, TEST_REDIS_URL, type TestRedis } from "@hookmesh/kit/testing";
import { EventSchema, Provider, type Event } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { TaskState, TaskView } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { mapError, routes } from "../src/routes.js";
import { TaskStore } from "../src/task-store.js";
import { callError } from "@hookmesh/kit/testing";

const RAW = '{"action":"created","comment":{"body":"@agent fix it"}}';

function event(provider: Provider, deliveryId: string): Event {
  return create(EventSchema, {
    provider,
    deliveryId,
    eventType: "issue_comment",
    action: "created",
    rawBody: new TextEncoder().encode(RAW),
    contentType: "application/json",
  });
}

function clientFor(store: TaskStore) {
  const { logger, lines } = memoryLogger("tasks-routes-test");
  const transport = createRouterTransport(routes(store), {
    router: { interceptors: [serverCallInterceptor(logger, mapError)] },
  });
  return { client: createClient(TaskService, transport), lines };
}

describe("TaskService routes", () => {
  let db: TestRedis;
  let client: Client<typeof TaskService>;
  let lines: () => string[];

  beforeEach(async () => {
    db = await testRedis("tasks-routes");
    ({ client, lines } = clientFor(new TaskStore(db.redis, { keyPrefix: db.prefix, maxAttempts: 3 })));
  });
  afterEach(() => db.cleanup());

  async function submitMany(count: number, provider = Provider.GITHUB): Promise<string[]> {
    const ids: string[] = [];
    // One at a time: ids are UUIDv7, so creation order is id order.
    for (let i = 0; i < count; i++) ids.push((await client.submitEvent({ event: event(provider, `bulk-${provider}-${i}`) })).task!.id);
    return ids;
  }

  describe("SubmitEvent", () => {
    it("creates a queued task, then returns the same one for the same delivery", async () => {
      const first = await client.submitEvent({ event: event(Provider.GITHUB, "delivery-1") });
      expect(first.duplicate).toBe(false);
      expect(first.task).toMatchObject({
        state: TaskState.QUEUED,
        maxAttempts: 3,
        event: { provider: Provider.GITHUB, deliveryId: "delivery-1", eventType: "issue_comment" },
      });
      expect(first.task?.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(first.task?.transitions.map((t) => t.state)).toEqual([TaskState.QUEUED]);

      const again = await client.submitEvent({ event: event(Provider.GITHUB, "delivery-1") });
      expect(again.duplicate).toBe(true);
      expect(again.task?.id).toBe(first.task?.id);
      expect((await client.listTasks({})).tasks).toHaveLength(1);
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
    it("lists newest first without raw bodies by default, and with them in FULL view", async () => {
      const ids = await submitMany(3);
      const basic = await client.listTasks({});
      expect(basic.tasks.map((t) => t.id)).toEqual(ids.toReversed());
      expect(basic.nextPageToken).toBe("");
      for (const task of basic.tasks) expect(task.event?.rawBody).toHaveLength(0);
      const full = await client.listTasks({ view: TaskView.FULL });
      for (const task of full.tasks) expect(new TextDecoder().decode(task.event?.rawBody)).toBe(RAW);
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
      await submitMany(51);
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
      await submitMany(1, Provider.SLACK);
      const page = await client.listTasks({ provider: Provider.GITHUB });
      expect(page.tasks.map((t) => t.id)).toEqual(github.toReversed());
      const queued = await client.listTasks({ provider: Provider.GITHUB, state: TaskState.QUEUED });
      expect(queued.tasks.map((t) => t.id)).toEqual(github.toReversed());
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

  it("answers Unavailable when Redis cannot be reached, and logs the cause", async () => {
    const redis = new Redis(TEST_REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    await redis.connect();
    redis.disconnect();
    const { client: down, lines: logged } = clientFor(
      new TaskStore(redis, { keyPrefix: db.prefix, maxAttempts: 3 }),
    );
    const err = await callError(down.submitEvent({ event: event(Provider.GITHUB, "while-down") }));
    expect(err.code).toBe(Code.Unavailable);
    expect(err.rawMessage).toBe("task store unavailable");
    expect((await callError(down.getTask({ id: "x" }))).code).toBe(Code.Unavailable);
    expect((await callError(down.listTasks({}))).code).toBe(Code.Unavailable);
    expect(logged().at(0)).toContain('"code":"Unavailable"');
  });
});
