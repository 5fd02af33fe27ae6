import type { AddressInfo } from "node:net";
import type { Env, Logger } from "@hookmesh/kit";
import { TEST_REDIS_URL, type TestRedis } from "@hookmesh/kit/testing";
import { type ComposedTasks, composeTasks, loadConfig, type TasksConfig } from "./index.js";

/**
 * What tests change from the production defaults, and why: leases and retries short enough
 * for a test to see them expire, a smaller timeline, and no drain wait at close; and cleartext
 * on loopback, because the service's own tests are about tasks: mTLS and the access policy
 * are kit's, tested there, and the end-to-end tests run the mesh under the defaults
 * (`testIdentities().env` turns them back on).
 */
export const TASKS_TEST_ENV: Env = {
  HOOKMESH_INSECURE: "1",
  TASKS_LEASE_MS: "5000",
  TASKS_RETRY_BASE_MS: "100",
  TASKS_RETRY_MAX_MS: "1000",
  TASKS_TIMELINE_MAX_EVENTS: "1000",
  SHUTDOWN_GRACE_MS: "0",
};

/** The configuration `loadConfig` makes of the test defaults and `env`, over the test's Redis prefix. */
export function tasksTestConfig(db: Pick<TestRedis, "prefix">, env: Env = {}): TasksConfig {
  return loadConfig({ REDIS_URL: TEST_REDIS_URL, TASKS_REDIS_PREFIX: db.prefix, ...TASKS_TEST_ENV, ...env });
}

export interface RunningTasks extends ComposedTasks {
  url: string;
  port: number;
}

/** The tasks service as production composes it, listening on 127.0.0.1 (port 0 unless given). */
export async function startTasks(
  db: Pick<TestRedis, "prefix">,
  logger: Logger,
  options: { port?: number; env?: Env; leaseFallbackPollMs?: number } = {},
): Promise<RunningTasks> {
  const config = tasksTestConfig(db, options.env);
  const service = await composeTasks(config, {
    logger,
    env: {},
    ...(options.leaseFallbackPollMs !== undefined && { leaseFallbackPollMs: options.leaseFallbackPollMs }),
  });
  const { port } = (await service.server.listen(options.port ?? 0, "127.0.0.1")) as AddressInfo;
  return Object.assign(service, { url: `${config.identity.insecure ? "http" : "https"}://127.0.0.1:${port}`, port });
}
