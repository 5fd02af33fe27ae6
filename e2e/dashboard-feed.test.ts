import type { ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createLogger } from "@hookmesh/kit";
import { freePort, startService, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { type RunningTasks, startTasks } from "@hookmesh/tasks/testing";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { DashboardService } from "../gen/hookmesh/dashboard/v1/dashboard_pb.js";
import { Provider } from "../gen/hookmesh/events/v1/event_pb.js";
import { TaskService } from "../gen/hookmesh/tasks/v1/task_service_pb.js";

/**
 * The dashboard's read model against the real tasks service: a dashboard process (on PGlite,
 * as `npm start` runs it) follows TaskService.WatchChanges, is stopped while tasks are created,
 * and after its restart lists every task exactly once, each timeline without repeats.
 */
describe("the dashboard's feed", () => {
  let redis: TestRedis;
  let tasks: RunningTasks;
  let taskClient: Client<typeof TaskService>;
  let home: string;
  let dashboard: ChildProcess | undefined;
  let client: Client<typeof DashboardService>;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    redis = await testRedis("dashboard-feed");
    tasks = await startTasks(redis, createLogger({ service: "tasks", level: "silent" }));
    taskClient = createClient(TaskService, createGrpcTransport({ baseUrl: tasks.url }));
    home = mkdtempSync(join(tmpdir(), "hookmesh-dashboard-feed-"));
    const port = await freePort();
    client = createClient(DashboardService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
    env = {
      HOOKMESH_INSECURE: "1",
      HOOKMESH_HOME: home,
      TASKS_URL: tasks.url,
      DASHBOARD_PORT: String(port),
      DASHBOARD_HTTP_PORT: String(await freePort()),
      DASHBOARD_PROJECTOR_LEASE: "2s",
      LOG_LEVEL: "warn",
    };
  });

  afterAll(async () => {
    await stopDashboard();
    await tasks?.close();
    await redis?.cleanup();
    rmSync(home, { recursive: true, force: true });
  });

  async function startDashboard(): Promise<void> {
    dashboard = startService("@hookmesh/dashboard", env);
    // PGlite opens its files and migrates before the port listens: seconds on a busy machine.
    await vi.waitFor(() => client.listTasks({}), { timeout: 60_000, interval: 250 });
  }

  async function stopDashboard(): Promise<void> {
    if (!dashboard || dashboard.exitCode !== null || dashboard.signalCode !== null) return;
    const exited = once(dashboard, "exit");
    dashboard.kill("SIGTERM");
    await exited;
  }

  async function submit(count: number): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < count; i++) {
      const { task } = await taskClient.submitEvent({
        event: {
          provider: Provider.GITHUB,
          deliveryId: randomUUID(),
          eventType: "issue_comment",
          action: "created",
          text: `comment ${i}`,
          subject: { key: `github:octo/feed#${i}`, title: `Feed ${i}` },
        },
      });
      ids.push(task!.id);
    }
    return ids;
  }

  async function listed(): Promise<string[]> {
    const ids: string[] = [];
    let pageToken = "";
    do {
      const page = await client.listTasks({ pageSize: 3, pageToken });
      ids.push(...page.tasks.map((t) => t.id));
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    return ids;
  }

  it("lists every task once after being stopped while tasks were created", { timeout: 180_000 }, async () => {
    await startDashboard();
    const before = await submit(3);
    await vi.waitFor(async () => expect((await listed()).sort()).toEqual([...before].sort()), { timeout: 20_000 });

    await stopDashboard();
    const during = await submit(5);

    await startDashboard();
    const all = [...before, ...during].sort();
    await vi.waitFor(async () => expect((await listed()).sort()).toEqual(all), { timeout: 30_000 });
    expect((await client.listTasks({})).totalSize).toBe(BigInt(all.length));
    for (const id of all) {
      const { events } = await client.getTask({ id });
      const eventIds = events.map((e) => e.id);
      expect(eventIds.length).toBeGreaterThan(0);
      expect(new Set(eventIds).size).toBe(eventIds.length);
      // The same timeline as the tasks service's own, in its order.
      const source: string[] = [];
      for await (const res of taskClient.watchTask({ id })) source.push(res.event?.id ?? "");
      expect(eventIds).toEqual(source);
    }
  });
});
