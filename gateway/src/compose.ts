import { hostname } from "node:os";
import type { RedisClient } from "@hookmesh/kit";
import {
  type ClientFactoryOptions,
  createClientFactory,
  createServiceMetrics,
  type Env,
  type Logger,
  openIdentityAndRedis,
  type ServiceMetrics,
} from "@hookmesh/kit";
import { Health } from "../../gen/health/v1/health_pb.js";
import { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { clientAddress } from "./client-address.js";
import type { BuiltInProvider, GatewayConfig } from "./config.js";
import { CustomRouteNotFoundError } from "./custom/errors.js";
import { CustomProvider } from "./custom/provider.js";
import { CustomRouteStore } from "./custom/route-store.js";
import { splitSecrets } from "./custom/validate.js";
import { DeliveryDedup } from "./dedup.js";
import { DeliveryLog } from "./delivery-log.js";
import { Forwarder } from "./forwarder.js";
import { GitHubProvider } from "./github/provider.js";
import { Intake } from "./intake.js";
import { JiraProvider } from "./jira/provider.js";
import { gatewayMetrics } from "./metrics.js";
import { Outbox } from "./outbox.js";
import { type EndpointResolver, type ResolvedEndpoint, WebhookPipeline } from "./pipeline.js";
import { SharedRateLimiter } from "./rate-limit.js";
import { outboxReadiness } from "./readiness.js";
import { SentryProvider } from "./sentry/provider.js";
import { build, type Gateway } from "./server.js";
import { SlackProvider } from "./slack/provider.js";
import { TasksHealth } from "./tasks-health.js";
import type { WebhookProvider } from "./webhook-provider.js";

export interface GatewayDeps {
  logger: Logger;
  env: Env;
  /** Settings of the client of the tasks service; tests give its breaker a shorter reset. */
  clientOptions?: Omit<ClientFactoryOptions, "logger" | "identity" | "metrics">;
  /** The gateway's metrics; its own registry unless given. */
  metrics?: ServiceMetrics;
}

/** The gateway, built and connected, not yet listening. */
export interface ComposedGateway {
  server: Gateway;
  /** Served on the admin port's `/metrics`. */
  metrics: ServiceMetrics;
  pipeline: WebhookPipeline;
  deliveries: DeliveryLog;
  customWebhooks: CustomRouteStore;
  outbox: Outbox;
  tasksHealth: TasksHealth;
  /** The store's connection; `/readyz` answers whether it does. */
  redis: RedisClient;
  /** Starts watching the tasks service's health and forwarding the outbox to it. */
  start(): void;
  /** Stops serving (in-flight requests get the configured grace), then the forwarder and the store. */
  close(): Promise<void>;
}

/** Custom webhooks live under `/webhooks/custom/{name}`. */
const CUSTOM_PREFIX = "custom/";

export async function composeGateway(config: GatewayConfig, deps: GatewayDeps): Promise<ComposedGateway> {
  const { logger } = deps;
  const metrics = deps.metrics ?? createServiceMetrics("gateway");
  const { identity, redis } = await openIdentityAndRedis(config, logger);
  const clients = createClientFactory({ ...deps.clientOptions, logger, metrics, ...(identity && { identity }) });
  const keyPrefix = config.redis.keyPrefix;
  const builtIn: Record<BuiltInProvider, WebhookProvider> = {
    github: new GitHubProvider(config.maxBodyBytes.github),
    slack: new SlackProvider(config.maxBodyBytes.slack),
    jira: new JiraProvider(config.maxBodyBytes.jira),
    sentry: new SentryProvider(config.maxBodyBytes.sentry),
  };
  const customWebhooks = new CustomRouteStore(redis, { keyPrefix });
  const resolve: EndpointResolver = async (endpoint) => {
    if (endpoint.startsWith(CUSTOM_PREFIX)) {
      const stored = await customWebhooks.get(endpoint.slice(CUSTOM_PREFIX.length)).catch((err: unknown) => {
        if (err instanceof CustomRouteNotFoundError) return undefined;
        throw err;
      });
      return stored && { provider: new CustomProvider(stored), secrets: splitSecrets(stored.secret), unsigned: false };
    }
    if (!Object.hasOwn(builtIn, endpoint)) return undefined;
    const name = endpoint as BuiltInProvider;
    const secrets = config.secrets[name];
    return {
      provider: builtIn[name],
      secrets,
      unsigned: secrets.length === 0 && config.allowUnsigned.includes(name),
    } satisfies ResolvedEndpoint;
  };
  const tasks = clients.client(TaskService, config.tasksUrl, "tasks");
  const tasksHealth = new TasksHealth(clients.client(Health, config.tasksUrl, "tasks"), logger);
  const outbox = new Outbox(redis, { keyPrefix });
  const deliveries = new DeliveryLog(redis, {
    keyPrefix,
    retentionMs: config.deliveryRetentionMs,
    maxPerRoute: config.deliveryLogMaxPerRoute,
    maxBriefPerRoute: config.briefLogMaxPerRoute,
  });
  const dedup = new DeliveryDedup(redis, { keyPrefix, windowMs: config.dedupWindowMs });
  const pipeline = new WebhookPipeline({
    resolve,
    tasks,
    intake: new Intake(redis, { dedup, deliveries, outbox }, config.redis.waitReplicas),
    outbox,
    deliveries,
    rateLimiter: new SharedRateLimiter(
      redis,
      { perSecond: config.rateLimitPerSecond, burst: config.rateLimitBurst, keyPrefix },
      logger,
    ),
    clientAddress: (req) => clientAddress(req, config.trustedProxies),
    retryAfterSeconds: config.retryAfterSeconds,
    observe: gatewayMetrics(metrics, outbox, logger),
    logger,
  });
  const forwarder = new Forwarder({
    outbox,
    tasks,
    deliveries,
    dedup,
    tasksHealth,
    consumer: `${hostname()}-${process.pid}`,
    logger,
  });
  // The consumer group exists before the first delivery can be queued, so none is missed.
  await outbox.init().catch((err: unknown) => {
    redis.disconnect();
    clients.close();
    identity?.close();
    throw err;
  });
  const server = build({
    pipeline,
    deliveries,
    customWebhooks,
    ready: outboxReadiness(redis),
    logger,
    identity,
    tokens: config.operatorTokens,
    limits: config.limits,
    httpLimits: config.httpLimits,
    metrics,
  });
  return {
    server,
    metrics,
    pipeline,
    deliveries,
    customWebhooks,
    outbox,
    tasksHealth,
    redis,
    start() {
      tasksHealth.start();
      forwarder.start();
    },
    async close() {
      await server.close(config.shutdownGraceMs);
      await forwarder.stop();
      tasksHealth.stop();
      clients.close();
      redis.disconnect();
      identity?.close();
    },
  };
}
