import { createClientFactory, createLogger, type ClientFactory, type Logger } from "@hookmesh/kit";
import type { TestRedis } from "@hookmesh/kit/testing";
import { startTasks, type RunningTasks } from "../../services/tasks/test/harness.js";
import { composeGateway, type GatewayCore, type GatewaySettings } from "../src/compose.js";
import { outboxReadiness } from "../src/readiness.js";
import { build, type Gateway } from "../src/server.js";

export const TEST_SECRETS = {
  github: ["github-test-secret"],
  slack: ["slack-test-secret"],
  jira: ["jira-test-secret"],
  sentry: ["sentry-test-secret"],
};

export interface RunningGateway {
  core: GatewayCore;
  server: Gateway;
  /** The webhook edge's base URL, e.g. `http://127.0.0.1:12345`. */
  base: string;
  /** The gateway's gRPC URL. */
  grpcUrl: string;
  clients: ClientFactory;
  close(): Promise<void>;
}

/** The real gateway on 127.0.0.1 (ports 0) over the test's Redis prefix, feeding `tasksUrl`. */
export async function startGateway(
  db: TestRedis,
  tasksUrl: string,
  logger: Logger,
  settings: Partial<GatewaySettings> = {},
): Promise<RunningGateway> {
  const clients = createClientFactory({ logger, breaker: { resetTimeoutMs: 500 } });
  const core = composeGateway(
    db.redis,
    clients,
    {
      tasksUrl,
      redisKeyPrefix: `${db.prefix}gateway:`,
      secrets: TEST_SECRETS,
      allowUnsigned: [],
      githubMaxBodyBytes: 25 * 1024 * 1024,
      deliveryRetentionMs: 60 * 60_000,
      dedupWindowMs: 60 * 60_000,
      rateLimitPerSecond: 10_000,
      rateLimitBurst: 10_000,
      retryAfterSeconds: 7,
      ...settings,
    },
    logger,
  );
  await core.start();
  const server = build({ core, ready: outboxReadiness(db.redis), logger });
  const { http, grpc } = await server.listen(0, 0, "127.0.0.1");
  return {
    core,
    server,
    base: `http://127.0.0.1:${http.port}`,
    grpcUrl: `http://127.0.0.1:${grpc.port}`,
    clients,
    async close() {
      await server.close(0);
      await core.close();
      clients.close();
    },
  };
}

/** The tasks service and a gateway in front of it, on one test Redis prefix. */
export async function startMesh(
  db: TestRedis,
  logger: Logger = createLogger({ service: "test", level: "silent" }),
  settings: Partial<GatewaySettings> = {},
): Promise<{ tasks: RunningTasks; gateway: RunningGateway; close(): Promise<void> }> {
  const tasks = await startTasks(db, logger);
  const gateway = await startGateway(db, tasks.url, logger, settings);
  return {
    tasks,
    gateway,
    async close() {
      await gateway.close();
      await tasks.close().catch(() => {});
    },
  };
}
