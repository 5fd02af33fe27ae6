import {
  ConfigError,
  type Env,
  envDuration,
  envHttpLimits,
  envInt,
  envList,
  envListen,
  envLogLevel,
  envPeer,
  envPort,
  envRedis,
  envSecrets,
  type HttpLimits,
  type ListenConfig,
  type LogLevel,
  type RedisConfig,
} from "@hookmesh/kit";
import { TrustedProxies } from "./client-address.js";
import { GITHUB_MAX_BODY_BYTES } from "./github/provider.js";
import { JIRA_MAX_BODY_BYTES } from "./jira/provider.js";
import { SENTRY_MAX_BODY_BYTES } from "./sentry/provider.js";
import { SLACK_MAX_BODY_BYTES } from "./slack/provider.js";

export const BUILT_IN_PROVIDERS = ["github", "slack", "jira", "sentry"] as const;
export type BuiltInProvider = (typeof BUILT_IN_PROVIDERS)[number];

/**
 * `host` (GATEWAY_HOST) is where both ports listen; `port` (GATEWAY_PORT) is the gRPC port with
 * the delivery log and custom webhooks, under the gateway's identity.
 */
export interface GatewayConfig extends ListenConfig {
  /** The webhook edge: plain HTTP, because providers authenticate by signing each body. */
  httpPort: number;
  /** `GATEWAY_HTTP_<LIMIT>`: connections, timeouts and header sizes of the webhook edge. */
  httpLimits: HttpLimits;
  tasksUrl: string;
  redis: RedisConfig;
  /** Accepted signing secrets per provider; an empty list closes its HTTP endpoint (404). */
  secrets: Record<BuiltInProvider, string[]>;
  /** Providers explicitly allowed to send unsigned requests when they have no secret. */
  allowUnsigned: BuiltInProvider[];
  /** The largest body each provider's endpoint reads (`{PROVIDER}_MAX_BODY_BYTES`); larger is 413. */
  maxBodyBytes: Record<BuiltInProvider, number>;
  deliveryRetentionMs: number;
  /**
   * Delivery log entries kept per route, besides the retention: full ones (verified, with body),
   * and brief ones (refused, duplicate, answered at the edge) under their own, tighter cap.
   */
  deliveryLogMaxPerRoute: number;
  briefLogMaxPerRoute: number;
  dedupWindowMs: number;
  rateLimitPerSecond: number;
  rateLimitBurst: number;
  /** Peers whose X-Forwarded-For names the client (GATEWAY_TRUSTED_PROXIES); none by default. */
  trustedProxies: TrustedProxies;
  retryAfterSeconds: number;
  shutdownGraceMs: number;
  logLevel: LogLevel;
}

export function loadConfig(env: Env = process.env): GatewayConfig {
  const allowUnsigned = envList(env, "GATEWAY_ALLOW_UNSIGNED");
  const unknown = allowUnsigned.filter((name) => !(BUILT_IN_PROVIDERS as readonly string[]).includes(name));
  if (unknown.length > 0) {
    throw new ConfigError(
      "GATEWAY_ALLOW_UNSIGNED",
      `unknown provider ${unknown.join(", ")}; known: ${BUILT_IN_PROVIDERS.join(", ")}`,
    );
  }
  const rateLimitPerSecond = envInt(env, "GATEWAY_RATE_LIMIT", 50, { min: 1 });
  const tasksUrl = envPeer(env, "TASKS_URL", 50051);
  return {
    ...envListen(env, "gateway", 50050, { TASKS_URL: tasksUrl }),
    httpPort: envPort(env, "GATEWAY_HTTP_PORT", 8080),
    httpLimits: envHttpLimits(env, "GATEWAY_HTTP"),
    tasksUrl,
    redis: envRedis(env, "GATEWAY", "hookmesh:gateway:"),
    secrets: {
      github: envSecrets(env, "GITHUB_WEBHOOK_SECRET"),
      slack: envSecrets(env, "SLACK_SIGNING_SECRET"),
      jira: envSecrets(env, "JIRA_WEBHOOK_SECRET"),
      sentry: envSecrets(env, "SENTRY_CLIENT_SECRET"),
    },
    allowUnsigned: allowUnsigned as BuiltInProvider[],
    maxBodyBytes: {
      // GitHub never sends more than its own cap; the others may be raised up to it.
      github: envInt(env, "GITHUB_MAX_BODY_BYTES", GITHUB_MAX_BODY_BYTES, { min: 1024, max: GITHUB_MAX_BODY_BYTES }),
      slack: envInt(env, "SLACK_MAX_BODY_BYTES", SLACK_MAX_BODY_BYTES, { min: 1024, max: GITHUB_MAX_BODY_BYTES }),
      jira: envInt(env, "JIRA_MAX_BODY_BYTES", JIRA_MAX_BODY_BYTES, { min: 1024, max: GITHUB_MAX_BODY_BYTES }),
      sentry: envInt(env, "SENTRY_MAX_BODY_BYTES", SENTRY_MAX_BODY_BYTES, { min: 1024, max: GITHUB_MAX_BODY_BYTES }),
    },
    deliveryRetentionMs: envDuration(env, "DELIVERY_RETENTION", "7d"),
    deliveryLogMaxPerRoute: envInt(env, "GATEWAY_DELIVERY_LOG_MAX_PER_ROUTE", 10_000, { min: 1 }),
    // Brief entries are the sender's to multiply: enough to diagnose a misconfigured sender, at
    // a few hundred bytes each (no body, a few short headers), well under 1 MiB a route.
    briefLogMaxPerRoute: envInt(env, "GATEWAY_BRIEF_LOG_MAX_PER_ROUTE", 500, { min: 1 }),
    // Jira retries for about 30 minutes and GitHub redelivers by hand days later: a day covers both.
    dedupWindowMs: envDuration(env, "GATEWAY_DEDUP_WINDOW", "24h"),
    rateLimitPerSecond,
    rateLimitBurst: envInt(env, "GATEWAY_RATE_BURST", rateLimitPerSecond * 2, { min: 1 }),
    trustedProxies: trustedProxies(env),
    retryAfterSeconds: envInt(env, "GATEWAY_RETRY_AFTER_SECONDS", 30, { min: 1 }),
    shutdownGraceMs: envInt(env, "SHUTDOWN_GRACE_MS", 10_000, { min: 0 }),
    logLevel: envLogLevel(env),
  };
}

function trustedProxies(env: Env): TrustedProxies {
  try {
    return new TrustedProxies(envList(env, "GATEWAY_TRUSTED_PROXIES"));
  } catch (err) {
    throw new ConfigError("GATEWAY_TRUSTED_PROXIES", (err as Error).message);
  }
}
