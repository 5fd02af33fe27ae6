import { hostname } from "node:os";
import type { Redis } from "ioredis";
import type { ClientFactory, Logger } from "@hookmesh/kit";
import { Health } from "../../gen/health/v1/health_pb.js";
import { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import type { BuiltInProvider, GatewayConfig } from "./config.js";
import { CustomRouteNotFoundError } from "./custom/errors.js";
import { CustomProvider } from "./custom/provider.js";
import { CustomRouteStore } from "./custom/route-store.js";
import { splitSecrets } from "./custom/validate.js";
import { DeliveryDedup } from "./dedup.js";
import { DeliveryLog } from "./delivery-log.js";
import { Forwarder } from "./forwarder.js";
import { GitHubProvider } from "./github/provider.js";
import { JiraProvider } from "./jira/provider.js";
import { Outbox } from "./outbox.js";
import { WebhookPipeline, type ResolvedRoute, type RouteResolver } from "./pipeline.js";
import { RateLimiter } from "./rate-limit.js";
import { SentryProvider } from "./sentry/provider.js";
import { SlackProvider } from "./slack/provider.js";
import { TasksHealth } from "./tasks-health.js";
import type { WebhookProvider } from "./webhook-provider.js";

export type GatewaySettings = Pick<
  GatewayConfig,
  | "tasksUrl"
  | "redisKeyPrefix"
  | "secrets"
  | "allowUnsigned"
  | "githubMaxBodyBytes"
  | "deliveryRetentionMs"
  | "dedupWindowMs"
  | "rateLimitPerSecond"
  | "rateLimitBurst"
  | "retryAfterSeconds"
>;

/** The gateway's domain objects over one Redis connection, as main, the tests and the bench use them. */
export interface GatewayCore {
  pipeline: WebhookPipeline;
  deliveries: DeliveryLog;
  customRoutes: CustomRouteStore;
  outbox: Outbox;
  tasksHealth: TasksHealth;
  /** Creates the outbox's consumer group, starts watching tasks and forwarding the outbox. */
  start(): Promise<void>;
  close(): Promise<void>;
}

const CUSTOM_PREFIX = "custom/";

export function composeGateway(redis: Redis, clients: ClientFactory, settings: GatewaySettings, logger: Logger): GatewayCore {
  const keyPrefix = settings.redisKeyPrefix;
  const builtIn: Record<BuiltInProvider, WebhookProvider> = {
    github: new GitHubProvider(settings.githubMaxBodyBytes),
    slack: new SlackProvider(),
    jira: new JiraProvider(),
    sentry: new SentryProvider(),
  };
  const customRoutes = new CustomRouteStore(redis, { keyPrefix });
  const resolve: RouteResolver = async (route) => {
    if (route.startsWith(CUSTOM_PREFIX)) {
      const stored = await customRoutes.get(route.slice(CUSTOM_PREFIX.length)).catch((err: unknown) => {
        if (err instanceof CustomRouteNotFoundError) return undefined;
        throw err;
      });
      return stored && { provider: new CustomProvider(stored), secrets: splitSecrets(stored.secret), unsigned: false };
    }
    if (!Object.hasOwn(builtIn, route)) return undefined;
    const name = route as BuiltInProvider;
    const secrets = settings.secrets[name];
    return { provider: builtIn[name], secrets, unsigned: secrets.length === 0 && settings.allowUnsigned.includes(name) } satisfies ResolvedRoute;
  };
  const tasks = clients.client(TaskService, settings.tasksUrl);
  const tasksHealth = new TasksHealth(clients.client(Health, settings.tasksUrl), logger);
  const outbox = new Outbox(redis, { keyPrefix });
  const deliveries = new DeliveryLog(redis, { keyPrefix, retentionMs: settings.deliveryRetentionMs });
  const dedup = new DeliveryDedup(redis, { keyPrefix, windowMs: settings.dedupWindowMs });
  const pipeline = new WebhookPipeline({
    resolve,
    tasks,
    dedup,
    outbox,
    deliveries,
    rateLimiter: new RateLimiter({ perSecond: settings.rateLimitPerSecond, burst: settings.rateLimitBurst }),
    retryAfterSeconds: settings.retryAfterSeconds,
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
  return {
    pipeline,
    deliveries,
    customRoutes,
    outbox,
    tasksHealth,
    async start() {
      await outbox.init();
      tasksHealth.start();
      forwarder.start();
    },
    async close() {
      await forwarder.stop();
      tasksHealth.stop();
    },
  };
}
