import { randomBytes, randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { type RedisAclUser, redisAclRule } from "@hookmesh/kit";
import { memoryLogger, TEST_REDIS_URL, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EventSchema, Provider } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { TaskResultSchema, TaskStage, TaskState } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { composeTasks } from "../src/compose.js";
import { tasksTestConfig } from "../src/testing.js";

/**
 * The tasks service under the Redis ACL user `hookmesh redis-acl` makes for it: the rules
 * must let BullMQ, the stores' Lua scripts and the timelines do all they do, and nothing else.
 */
describe("tasks under its Redis ACL user", () => {
  let db: TestRedis;
  let user: RedisAclUser;
  const admin = new Redis(TEST_REDIS_URL, { lazyConnect: true });

  beforeAll(async () => {
    db = await testRedis("tasks-acl");
    user = {
      user: `hookmesh-test-tasks-${randomUUID()}`,
      keyPrefix: db.prefix,
      password: randomBytes(24).toString("base64url"),
    };
    await admin.connect();
    await admin.call("ACL", "SETUSER", ...redisAclRule(user));
  });

  afterAll(async () => {
    await admin.call("ACL", "DELUSER", user.user);
    admin.disconnect();
    await db.cleanup();
  });

  it("runs a task's whole life, and cannot read another service's keys", async () => {
    const url = new URL(TEST_REDIS_URL);
    url.username = user.user;
    const config = tasksTestConfig(db, { TASKS_REDIS_URL: url.toString(), TASKS_REDIS_PASSWORD: user.password });
    const { logger, lines } = memoryLogger("tasks");
    const tasks = await composeTasks(config, { logger, env: {} });
    try {
      const event = create(EventSchema, {
        provider: Provider.GITHUB,
        deliveryId: randomUUID(),
        eventType: "issue_comment",
        action: "created",
        text: "@hookmesh fix it",
        actor: { login: "octocat", association: "OWNER" },
        subject: { key: `test:${randomUUID()}` },
      });
      const { task } = await tasks.engine.submit(event);
      expect(task.state).toBe(TaskState.QUEUED);
      const watched = (async () => {
        const stages: number[] = [];
        for await (const e of await tasks.engine.watch(task.id, "", AbortSignal.timeout(10_000))) {
          if (e.kind.case === "stage") stages.push(e.kind.value.stage);
        }
        return stages;
      })();
      const [grant] = await tasks.engine.lease("worker-1", 1, 2_000, new AbortController().signal);
      expect(grant?.task.id).toBe(task.id);
      await tasks.engine.heartbeat(task.id, grant!.leaseId);
      const done = await tasks.engine.complete(task.id, grant!.leaseId, create(TaskResultSchema, { answer: "done" }));
      expect(done.state).toBe(TaskState.SUCCEEDED);
      // The watcher was woken through the shared subscription, and ended with the task.
      expect((await watched).at(-1)).toBe(TaskStage.COMPLETED);
      expect(await tasks.store.sweepExpired(1_000)).toBe(0);
      await expect(tasks.redis.get("hookmesh:gateway:delivery:1")).rejects.toThrow(/NOPERM/);
      // Nothing the service does in the background (BullMQ's stalled checks, reconciling) was refused.
      expect(lines().filter((line) => line.includes("NOPERM"))).toEqual([]);
    } finally {
      await tasks.close();
    }
  });
});
