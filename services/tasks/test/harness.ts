import type { AddressInfo } from "node:net";
import { HealthState, ServingStatus, type Logger } from "@hookmesh/kit";
import type { TestRedis } from "@hookmesh/kit/testing";
import { RouteService } from "../../../gen/hookmesh/tasks/v1/route_service_pb.js";
import { TaskService } from "../../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { WorkerService } from "../../../gen/hookmesh/tasks/v1/worker_service_pb.js";
import { composeTasks, type TasksCore, type TasksSettings } from "../src/compose.js";
import { build } from "../src/server.js";

export const TEST_SETTINGS = {
  maxAttempts: 3,
  leaseMs: 5_000,
  retryBaseMs: 100,
  retryMaxMs: 1_000,
  mention: "@hookmesh",
  botLogins: ["hookmesh[bot]"],
  timelineMaxEvents: 1_000,
  eventTextBytes: 8_192,
} satisfies Omit<TasksSettings, "redisKeyPrefix">;

export interface RunningTasks {
  core: TasksCore;
  health: HealthState;
  url: string;
  port: number;
  /** Stops the server (with `graceMs` for in-flight calls) and the core. */
  close(graceMs?: number): Promise<void>;
}

/** The real tasks service on 127.0.0.1 (port 0 unless given), over the test's Redis prefix. */
export async function startTasks(
  db: TestRedis,
  logger: Logger,
  options: { port?: number; settings?: Partial<TasksSettings> } = {},
): Promise<RunningTasks> {
  const settings = { ...TEST_SETTINGS, redisKeyPrefix: db.prefix, ...options.settings };
  const core = composeTasks(db.redis, settings, logger);
  await core.start();
  const health = new HealthState([TaskService.typeName, WorkerService.typeName, RouteService.typeName], ServingStatus.SERVING);
  const server = build({ core, leaseMs: settings.leaseMs, health, logger });
  const { port } = (await server.listen(options.port ?? 0, "127.0.0.1")) as AddressInfo;
  return {
    core,
    health,
    url: `http://127.0.0.1:${port}`,
    port,
    async close(graceMs = 0) {
      await server.close(graceMs);
      await core.close();
    },
  };
}
