import { readFile } from "node:fs/promises";
import type { RedisClient } from "@hookmesh/kit";
import {
  ConfigError,
  createClientFactory,
  createServiceMetrics,
  duplicateRedis,
  type Env,
  HealthState,
  type Logger,
  type MeshServer,
  openIdentityAndRedis,
  type ServiceMetrics,
  ServingStatus,
  waitForReplicas,
} from "@hookmesh/kit";
import { GitHubService } from "../../../gen/hookmesh/github/v1/github_pb.js";
import { JiraService } from "../../../gen/hookmesh/jira/v1/jira_pb.js";
import { RouteService } from "../../../gen/hookmesh/tasks/v1/route_service_pb.js";
import { TaskService } from "../../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { WorkerService } from "../../../gen/hookmesh/tasks/v1/worker_service_pb.js";
import { RouteBudgets } from "./budgets.js";
import { ChangeLog } from "./change-log.js";
import type { TasksConfig } from "./config.js";
import { TaskEngine } from "./engine.js";
import { storeCall } from "./errors.js";
import { timelineKey } from "./keys.js";
import { tasksMetrics } from "./metrics.js";
import { JiraGroups } from "./routing/jira-groups.js";
import { LabelerPermissions } from "./routing/labeler-permission.js";
import { Router } from "./routing/router.js";
import { RoutingRuleStore } from "./routing/routing-rule-store.js";
import { build } from "./server.js";
import { SubjectLocks } from "./subject-locks.js";
import { TaskStore } from "./task-store.js";
import { Timeline } from "./timeline.js";
import { TimelineSignals, WatchQuota } from "./watches.js";
import { WorkBell } from "./work-bell.js";
import { WorkQueue } from "./work-queue.js";
import { WorkerSessions } from "./worker-sessions.js";

export interface TasksDeps {
  logger: Logger;
  env: Env;
  /** How often a waiting LeaseTasks looks for work without a ring; tests set it long to see the bell alone. */
  leaseFallbackPollMs?: number;
  /** The service's metrics; its own registry unless given. */
  metrics?: ServiceMetrics;
}

/** The tasks service, built and connected, not yet listening. */
export interface ComposedTasks {
  server: MeshServer;
  /** Served on the admin port's `/metrics`. */
  metrics: ServiceMetrics;
  engine: TaskEngine;
  store: TaskStore;
  /** Every task's changes, which WatchChanges streams. */
  changeLog: ChangeLog;
  routingRules: RoutingRuleStore;
  /** The store's connection; serving follows it. */
  redis: RedisClient;
  /** Stops serving (in-flight calls get the configured grace), then the queue and the store. */
  close(): Promise<void>;
}

/**
 * How often a waiting LeaseTasks call looks for work on its own. The work bell wakes it at once
 * when any replica makes work ready; this only bounds the wait for a ring lost while the
 * subscriber reconnected, or for the delayed work of a replica that died.
 */
const LEASE_FALLBACK_POLL_MS = 1_000;
/** How long a task waits before another look when its subject is busy. */
const SUBJECT_BUSY_DELAY_MS = 1_000;
/**
 * How long a labeler's permission or a Jira account's groups are reused: a revoked right counts
 * for at most this long, and a burst of events by one person costs one question.
 */
const GATE_ANSWER_TTL_MS = 60_000;
/** What a gate's question to the github or jira service may take, within the gateway's submit deadline. */
const GATE_LOOKUP = { ttlMs: GATE_ANSWER_TTL_MS, maxEntries: 10_000, timeoutMs: 3_000 };
/** How long a task of a routing rule over its daily budget waits before another look. */
const BUDGET_RECHECK_MS = 60_000;
/** How often expired tasks are taken out of the listing indexes, by one replica at a time. */
const RETENTION_SWEEP_MS = 60_000;
/**
 * WatchChanges streams per caller and per process: each is woken by every change of every
 * task, and its consumers are read models (a dashboard replica holds one), not people.
 */
const CHANGE_STREAMS = { method: "WatchChanges", maxPerCaller: 8, maxTotal: 32 };

/**
 * Connects the store (serving follows the connection: without it no task can be made
 * durable), seeds the routing rules (the defaults once, then TASKS_ROUTES_FILE), starts the
 * queue's lease-expiry checks, re-queues what a crash left without a queue entry, and builds
 * the server.
 */
export async function composeTasks(config: TasksConfig, deps: TasksDeps): Promise<ComposedTasks> {
  const { logger } = deps;
  const metrics = deps.metrics ?? createServiceMetrics("tasks");
  const health = new HealthState([TaskService.typeName, WorkerService.typeName, RouteService.typeName]);
  const { identity, redis } = await openIdentityAndRedis(config, logger, (ready) =>
    health.setAll(ready ? ServingStatus.SERVING : ServingStatus.NOT_SERVING),
  );
  const keyPrefix = config.redis.keyPrefix;
  const waitReplicas = config.redis.waitReplicas;
  // BullMQ blocks on its connection and wants it to retry forever; the shared one fails fast.
  const queueConnection = duplicateRedis(redis, {
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
    lazyConnect: false,
  });
  // Every WatchTask and WatchChanges stream of this process, and its work bell, share this one
  // subscriber connection.
  const subscriber = duplicateRedis(redis, {
    lazyConnect: true,
    autoResubscribe: false,
    connectionName: `${keyPrefix}watch`,
  });
  const bell = new WorkBell(redis, `${keyPrefix}work-ready`, logger);
  const queue = new WorkQueue(
    queueConnection,
    { keyPrefix: `${keyPrefix}queue`, leaseMs: config.leaseMs },
    logger,
    bell,
  );
  const store = new TaskStore(redis, {
    keyPrefix,
    retentionMs: config.retentionMs,
    ignoredBodyRetentionMs: config.ignoredBodyRetentionMs,
  });
  const routingRules = new RoutingRuleStore(redis, { keyPrefix });
  const clients = createClientFactory({ logger, metrics, ...(identity && { identity }) });
  const gateLookups = {
    labelers: new LabelerPermissions(clients.client(GitHubService, config.githubUrl, "github"), GATE_LOOKUP, logger),
    jiraGroups: new JiraGroups(clients.client(JiraService, config.jiraUrl, "jira"), GATE_LOOKUP, logger),
  };
  const signals = new TimelineSignals(subscriber, (taskId) => timelineKey(keyPrefix, taskId), logger);
  const changeLog = new ChangeLog(redis, { keyPrefix, signals });
  const engine = new TaskEngine(
    store,
    new Timeline(redis, {
      keyPrefix,
      maxTextBytes: config.eventTextBytes,
      maxEvents: config.timelineMaxEvents,
      changeLogMax: config.changeLogMax,
      signals,
    }),
    queue,
    new SubjectLocks(redis, { keyPrefix, leaseMs: config.leaseMs }),
    new Router(routingRules, { mention: config.mention, botLogins: config.botLogins }, gateLookups),
    new RouteBudgets(redis, routingRules, {
      keyPrefix,
      defaultMaxCostUsd: config.budgets.defaultMaxCostUsd,
      defaultDailyBudgetUsd: config.budgets.defaultDailyBudgetUsd,
    }),
    {
      leaseMs: config.leaseMs,
      defaultMaxAttempts: config.maxAttempts,
      maxLostLeases: config.maxLostLeases,
      maxAttemptsCeiling: config.budgets.maxAttemptsCeiling,
      retryBaseMs: config.retryBaseMs,
      retryMaxMs: config.retryMaxMs,
      subjectBusyDelayMs: SUBJECT_BUSY_DELAY_MS,
      pollMs: deps.leaseFallbackPollMs ?? LEASE_FALLBACK_POLL_MS,
      budgetRecheckMs: BUDGET_RECHECK_MS,
      observer: tasksMetrics(metrics, { store, queue, routingRules }, logger),
      ...(waitReplicas && {
        // Both connections: a submission writes its task on one and its queue entry on the other.
        waitForReplicas: () =>
          storeCall(async () => {
            await Promise.all([
              waitForReplicas(redis, `${keyPrefix}task`, waitReplicas),
              waitForReplicas(queueConnection, `${keyPrefix}queue`, waitReplicas),
            ]);
          }),
      }),
    },
    logger,
  );
  const sessions = new WorkerSessions(
    redis,
    engine,
    { keyPrefix, pingMs: config.sessionPingMs, releaseAfterMs: config.sessionReleaseMs },
    logger,
  );
  const sweep = setInterval(() => {
    store
      .sweepExpired(RETENTION_SWEEP_MS)
      .catch((err: Error) => logger.warn({ err: err.message }, "sweeping expired tasks failed"));
    // Every replica trims: it is one idempotent command, cheap when there is nothing to drop.
    changeLog
      .trim(config.retentionMs)
      .catch((err: Error) => logger.warn({ err: err.message }, "trimming the change log failed"));
  }, RETENTION_SWEEP_MS).unref();
  const closeStore = async () => {
    clearInterval(sweep);
    sessions.close();
    await queue.close();
    subscriber.disconnect();
    queueConnection.disconnect();
    redis.disconnect();
    clients.close();
    identity?.close();
  };
  try {
    await storeCall(() => subscriber.connect());
    await bell.listen((channel, wake) => signals.listenTo(channel, wake));
    await routingRules.seedDefaults();
    if (config.routesFile) await seedRoutingRulesFile(routingRules, config.routesFile, logger);
    await queue.start();
    await engine.reconcile();
  } catch (err) {
    await closeStore();
    throw err;
  }
  const server = build({
    engine,
    store,
    routingRules,
    watches: new WatchQuota({
      method: "WatchTask",
      maxPerCaller: config.maxWatchesPerCaller,
      maxTotal: config.maxWatches,
    }),
    changes: { log: changeLog, quota: new WatchQuota(CHANGE_STREAMS), draining: health.stopping },
    leaseMs: config.leaseMs,
    sessions,
    health,
    logger,
    identity,
    tokens: config.operatorTokens,
    limits: config.limits,
    metrics,
  });
  return {
    server,
    metrics,
    engine,
    store,
    changeLog,
    routingRules,
    redis,
    async close() {
      await server.close(config.shutdownGraceMs);
      await closeStore();
    },
  };
}

/** Stores the file's routing rules over those of the same ids; a bad file names TASKS_ROUTES_FILE. */
async function seedRoutingRulesFile(routingRules: RoutingRuleStore, file: string, logger: Logger): Promise<void> {
  const seeded = await readFile(file, "utf8")
    .then((text) => routingRules.seedFromYaml(text))
    .catch((err: Error) => {
      throw new ConfigError("TASKS_ROUTES_FILE", `${file}: ${err.message}`);
    });
  logger.info({ routingRules: seeded.map((rule) => rule.id) }, "routing rules seeded from file");
}
