import { ConfigError, envDuration, envInt, envList, envPort, envSecrets, envString, envTls, envUrl, envLogLevel, type Env, type LogLevel, type TlsOptions } from "@hookmesh/kit";
import { GITHUB_MAX_BODY_BYTES } from "./github/provider.js";

export const BUILT_IN_PROVIDERS = ["github", "slack", "jira", "sentry"] as const;
export type BuiltInProvider = (typeof BUILT_IN_PROVIDERS)[number];

export interface GatewayConfig {
  host: string;
  httpPort: number;
  grpcPort: number;
  tasksUrl: string;
  redisUrl: string;
  redisKeyPrefix: string;
  /** Accepted signing secrets per provider; an empty list closes its HTTP endpoint (404). */
  secrets: Record<BuiltInProvider, string[]>;
  /** Providers explicitly allowed to send unsigned requests when they have no secret. */
  allowUnsigned: BuiltInProvider[];
  githubMaxBodyBytes: number;
  deliveryRetentionMs: number;
  dedupWindowMs: number;
  rateLimitPerSecond: number;
  rateLimitBurst: number;
  retryAfterSeconds: number;
  shutdownGraceMs: number;
  logLevel: LogLevel;
  tls?: TlsOptions;
}

export function loadConfig(env: Env = process.env): GatewayConfig {
  const allowUnsigned = envList(env, "GATEWAY_ALLOW_UNSIGNED");
  const unknown = allowUnsigned.filter((name) => !(BUILT_IN_PROVIDERS as readonly string[]).includes(name));
  if (unknown.length > 0) {
    throw new ConfigError("GATEWAY_ALLOW_UNSIGNED", `unknown provider ${unknown.join(", ")}; known: ${BUILT_IN_PROVIDERS.join(", ")}`);
  }
  const rateLimitPerSecond = envInt(env, "GATEWAY_RATE_LIMIT", 50, { min: 1 });
  return {
    host: envString(env, "GATEWAY_HOST", "0.0.0.0"),
    httpPort: envPort(env, "GATEWAY_HTTP_PORT", 8080),
    grpcPort: envPort(env, "GATEWAY_PORT", 50050),
    tasksUrl: envUrl(env, "TASKS_URL", "http://127.0.0.1:50051"),
    redisUrl: envUrl(env, "REDIS_URL", "redis://127.0.0.1:6379", ["redis:", "rediss:"]),
    redisKeyPrefix: envString(env, "GATEWAY_REDIS_PREFIX", "hookmesh:gateway:"),
    secrets: {
      github: envSecrets(env, "GITHUB_WEBHOOK_SECRET"),
      slack: envSecrets(env, "SLACK_SIGNING_SECRET"),
      jira: envSecrets(env, "JIRA_WEBHOOK_SECRET"),
      sentry: envSecrets(env, "SENTRY_CLIENT_SECRET"),
    },
    allowUnsigned: allowUnsigned as BuiltInProvider[],
    githubMaxBodyBytes: envInt(env, "GITHUB_MAX_BODY_BYTES", GITHUB_MAX_BODY_BYTES, { min: 1024, max: GITHUB_MAX_BODY_BYTES }),
    deliveryRetentionMs: envDuration(env, "DELIVERY_RETENTION", "7d"),
    // Jira retries for about 30 minutes and GitHub redelivers by hand days later: a day covers both.
    dedupWindowMs: envDuration(env, "GATEWAY_DEDUP_WINDOW", "24h"),
    rateLimitPerSecond,
    rateLimitBurst: envInt(env, "GATEWAY_RATE_BURST", rateLimitPerSecond * 2, { min: 1 }),
    retryAfterSeconds: envInt(env, "GATEWAY_RETRY_AFTER_SECONDS", 30, { min: 1 }),
    shutdownGraceMs: envInt(env, "SHUTDOWN_GRACE_MS", 10_000, { min: 0 }),
    logLevel: envLogLevel(env),
    tls: envTls(env, "GATEWAY"),
  };
}
