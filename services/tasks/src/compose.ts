import { Redis } from "ioredis";
import type { Logger } from "@hookmesh/kit";
import { TaskEngine } from "./engine.js";
import { RouteStore } from "./routing/route-store.js";
import { Router } from "./routing/router.js";
import { SubjectLocks } from "./subject-locks.js";
import { TaskStore } from "./task-store.js";
import { Timeline } from "./timeline.js";
import { WorkQueue } from "./work-queue.js";
import type { TasksConfig } from "./config.js";

export type TasksSettings = Pick<
  TasksConfig,
  | "redisKeyPrefix"
  | "maxAttempts"
  | "leaseMs"
  | "retryBaseMs"
  | "retryMaxMs"
  | "mention"
  | "botLogins"
  | "timelineMaxEvents"
  | "eventTextBytes"
>;

/** The tasks service's domain objects over one Redis connection, as main and the tests use them. */
export interface TasksCore {
  engine: TaskEngine;
  store: TaskStore;
  routes: RouteStore;
  /** Starts the lease-expiry checks and re-queues tasks a crash left without a queue entry. */
  start(): Promise<void>;
  close(): Promise<void>;
}

/** How often a waiting LeaseTasks call checks for work queued by another replica. */
const LEASE_POLL_MS = 250;
/** How long a task waits before another look when its subject is busy. */
const SUBJECT_BUSY_DELAY_MS = 1_000;

export function composeTasks(redis: Redis, settings: TasksSettings, logger: Logger): TasksCore {
  const keyPrefix = settings.redisKeyPrefix;
  // BullMQ blocks on its connection and wants it to retry forever; the shared one fails fast.
  const queueConnection = redis.duplicate({ maxRetriesPerRequest: null, enableOfflineQueue: true, lazyConnect: false });
  const queue = new WorkQueue(queueConnection, { keyPrefix: `${keyPrefix}queue`, leaseMs: settings.leaseMs }, logger);
  const store = new TaskStore(redis, { keyPrefix });
  const routes = new RouteStore(redis, { keyPrefix });
  const engine = new TaskEngine(
    store,
    new Timeline(redis, { keyPrefix, maxTextBytes: settings.eventTextBytes, maxEvents: settings.timelineMaxEvents }),
    queue,
    new SubjectLocks(redis, { keyPrefix, leaseMs: settings.leaseMs }),
    new Router(routes, { mention: settings.mention, botLogins: settings.botLogins }),
    {
      leaseMs: settings.leaseMs,
      defaultMaxAttempts: settings.maxAttempts,
      retryBaseMs: settings.retryBaseMs,
      retryMaxMs: settings.retryMaxMs,
      subjectBusyDelayMs: SUBJECT_BUSY_DELAY_MS,
      pollMs: LEASE_POLL_MS,
    },
    logger,
  );
  return {
    engine,
    store,
    routes,
    async start() {
      await routes.seedDefaults();
      await queue.start();
      await engine.reconcile();
    },
    async close() {
      await queue.close();
      queueConnection.disconnect();
    },
  };
}
