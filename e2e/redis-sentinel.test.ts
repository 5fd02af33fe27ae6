/**
 * The gateway and the tasks service behind Redis Sentinel (a master, a replica and three
 * sentinels, their own processes on loopback): the master is killed while deliveries keep
 * coming; the services follow the sentinels to the promoted replica, and every delivery
 * acknowledged (202, after a replica had it: `REDIS_WAIT_REPLICAS=1`) becomes exactly one task.
 */
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { type RunningGateway, startGateway } from "@hookmesh/gateway/testing";
import { createLogger, type Env } from "@hookmesh/kit";
import { startRedisSentinel, type TestRedisSentinel } from "@hookmesh/kit/testing";
import { type RunningTasks, startTasks } from "@hookmesh/tasks/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskService } from "../gen/hookmesh/tasks/v1/task_service_pb.js";
import { githubMention, sendContinuously } from "./deliveries.js";
import { listAllTasks, tasksPerDelivery } from "./tasks.js";

const POLL = { timeout: 40_000, interval: 100 };

describe("the gateway and tasks behind Redis Sentinel", () => {
  let sentinel: TestRedisSentinel;
  let tasks: RunningTasks;
  let gateway: RunningGateway;
  let sessions: Http2SessionManager;
  let taskClient: Client<typeof TaskService>;
  const logger = createLogger({ service: "test", level: "silent" });

  beforeAll(async () => {
    sentinel = await startRedisSentinel();
    const env: Env = {
      REDIS_SENTINELS: sentinel.sentinels,
      REDIS_SENTINEL_NAME: sentinel.name,
      REDIS_WAIT_REPLICAS: "1",
      REDIS_WAIT_TIMEOUT_MS: "500",
    };
    // The Redis is the test's own: each service keeps its default prefix.
    const own = { prefix: "unused:" };
    tasks = await startTasks(own, logger, { env: { ...env, TASKS_REDIS_PREFIX: "hookmesh:tasks:" } });
    gateway = await startGateway(own, tasks.url, logger, { ...env, GATEWAY_REDIS_PREFIX: "hookmesh:gateway:" });
    sessions = new Http2SessionManager(tasks.url);
    taskClient = createClient(TaskService, createGrpcTransport({ baseUrl: tasks.url, sessionManager: sessions }));
  }, 60_000);

  afterAll(async () => {
    sessions?.abort();
    await gateway?.close().catch(() => {});
    await tasks?.close().catch(() => {});
    await sentinel?.stop();
  });

  it("recovers after a failover and keeps every acknowledged delivery, once", async () => {
    const senders = sendContinuously(gateway.base, (id) => githubMention(`look ${id}`), { idPrefix: "sentinel-" });
    const { acknowledged, answers } = senders;
    try {
      await expect.poll(() => acknowledged.size, POLL).toBeGreaterThan(20);
      const old = await sentinel.master();
      sentinel.kill(old);
      await expect.poll(() => sentinel.master(), POLL).not.toBe(old);
      // The old master comes back, and the sentinels make it the new master's replica: until
      // then nothing could be acknowledged, as no replica would hold it.
      await sentinel.restart(old);
      const after = acknowledged.size;
      await expect.poll(() => acknowledged.size, POLL).toBeGreaterThan(after + 20);
    } finally {
      await senders.stop();
    }
    await gateway.forwarded(30_000);
    const counts = async () => tasksPerDelivery(await listAllTasks(taskClient));
    await expect
      .poll(async () => {
        const perDelivery = await counts();
        return [...acknowledged].filter((id) => !perDelivery.has(id)).length;
      }, POLL)
      .toBe(0);
    const doubled = [...(await counts())].filter(([, count]) => count > 1);
    expect(doubled).toEqual([]);
    console.info(
      `sentinel failover: ${acknowledged.size} acknowledged, answers ${JSON.stringify(Object.fromEntries(answers))}`,
    );
  }, 90_000);
});
