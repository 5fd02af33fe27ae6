import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { testRedis, type TestRedis } from "@hookmesh/kit/testing";
import { EventSchema, Provider } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { TaskState, TaskView } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { InvalidEventError, InvalidPageTokenError, TaskNotFoundError } from "../src/errors.js";
import { TaskStore } from "../src/task-store.js";

function event(provider: Provider, deliveryId: string) {
  return create(EventSchema, {
    provider,
    deliveryId,
    eventType: "issue_comment",
    rawBody: new TextEncoder().encode('{"action":"created"}'),
    contentType: "application/json",
  });
}

describe("TaskStore", () => {
  let db: TestRedis;
  let store: TaskStore;

  beforeEach(async () => {
    db = await testRedis("task-store");
    store = new TaskStore(db.redis, { keyPrefix: db.prefix, maxAttempts: 3 });
  });
  afterEach(() => db.cleanup());

  it("creates a queued task and reads it back", async () => {
    const { task, duplicate } = await store.submit(event(Provider.GITHUB, "d-1"));
    expect(duplicate).toBe(false);
    expect(task.state).toBe(TaskState.QUEUED);
    expect(task.maxAttempts).toBe(3);
    expect(task.transitions.map((t) => t.state)).toEqual([TaskState.QUEUED]);
    const read = await store.get(task.id);
    expect(read.id).toBe(task.id);
    expect(new TextDecoder().decode(read.event?.rawBody)).toBe('{"action":"created"}');
  });

  it("returns the first task for a repeated delivery and creates nothing", async () => {
    const first = await store.submit(event(Provider.GITHUB, "d-1"));
    const again = await store.submit(event(Provider.GITHUB, "d-1"));
    expect(again.duplicate).toBe(true);
    expect(again.task.id).toBe(first.task.id);
    const page = await store.list({ pageSize: 10, view: TaskView.BASIC });
    expect(page.tasks).toHaveLength(1);
  });

  it("keeps one task per delivery under concurrent submissions", async () => {
    const results = await Promise.all(Array.from({ length: 20 }, () => store.submit(event(Provider.SLACK, "same"))));
    expect(new Set(results.map((r) => r.task.id)).size).toBe(1);
    expect(results.filter((r) => !r.duplicate)).toHaveLength(1);
  });

  it("scopes delivery ids by provider", async () => {
    const github = await store.submit(event(Provider.GITHUB, "d-1"));
    const jira = await store.submit(event(Provider.JIRA, "d-1"));
    expect(jira.duplicate).toBe(false);
    expect(jira.task.id).not.toBe(github.task.id);
  });

  it("rejects events without provider or delivery id, naming the field", async () => {
    await expect(store.submit(undefined)).rejects.toThrow(InvalidEventError);
    await expect(store.submit(event(Provider.UNSPECIFIED, "x"))).rejects.toThrow("event.provider");
    await expect(store.submit(event(Provider.GITHUB, ""))).rejects.toThrow("event.delivery_id");
    await expect(store.submit(event(Provider.GITHUB, "x".repeat(300)))).rejects.toThrow("event.delivery_id");
  });

  it("reports a missing task", async () => {
    await expect(store.get("nope")).rejects.toThrow(TaskNotFoundError);
  });

  it("lists newest first across pages, filtered by provider and state, without raw bodies by default", async () => {
    const created: string[] = [];
    for (let i = 0; i < 7; i++) {
      const provider = i % 2 === 0 ? Provider.GITHUB : Provider.SLACK;
      created.push((await store.submit(event(provider, `d-${i}`))).task.id);
    }
    const newestFirst = [...created].reverse();

    const seen: string[] = [];
    let pageToken: string | undefined;
    do {
      const page = await store.list({ pageSize: 3, pageToken, view: TaskView.BASIC });
      expect(page.tasks.length).toBeLessThanOrEqual(3);
      for (const task of page.tasks) expect(task.event?.rawBody).toHaveLength(0);
      seen.push(...page.tasks.map((t) => t.id));
      pageToken = page.nextPageToken || undefined;
    } while (pageToken);
    expect(seen).toEqual(newestFirst);

    const github = await store.list({ pageSize: 2, provider: Provider.GITHUB, state: TaskState.QUEUED, view: TaskView.FULL });
    expect(github.tasks.map((t) => t.id)).toEqual(newestFirst.filter((_, i) => i % 2 === 0).slice(0, 2));
    expect(github.tasks[0]?.event?.rawBody.length).toBeGreaterThan(0);
    const rest = await store.list({ pageSize: 10, provider: Provider.GITHUB, state: TaskState.QUEUED, pageToken: github.nextPageToken, view: TaskView.BASIC });
    expect(rest.tasks).toHaveLength(2);
    expect(rest.nextPageToken).toBe("");

    const none = await store.list({ pageSize: 10, state: TaskState.SUCCEEDED, view: TaskView.BASIC });
    expect(none.tasks).toEqual([]);
  });

  it("gives no next page token when the last page is exactly full", async () => {
    for (let i = 0; i < 4; i++) await store.submit(event(Provider.GITHUB, `d-${i}`));
    const page = await store.list({ pageSize: 4, view: TaskView.BASIC });
    expect(page.tasks).toHaveLength(4);
    expect(page.nextPageToken).toBe("");
  });

  it("rejects a page token issued for other filters", async () => {
    for (let i = 0; i < 3; i++) await store.submit(event(Provider.GITHUB, `d-${i}`));
    const page = await store.list({ pageSize: 1, view: TaskView.BASIC });
    await expect(store.list({ pageSize: 1, pageToken: page.nextPageToken, provider: Provider.GITHUB, view: TaskView.BASIC })).rejects.toThrow(InvalidPageTokenError);
    await expect(store.list({ pageSize: 1, pageToken: "garbage", view: TaskView.BASIC })).rejects.toThrow(InvalidPageTokenError);
  });
});
