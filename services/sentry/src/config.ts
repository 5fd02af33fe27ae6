import { checkSecretSource, envLogLevel, type Env, type LogLevel, envBool, envInt, envPort, envString, envTls, envUrl, type TlsOptions } from "@hookmesh/kit";

/** The variable that holds Sentry's auth token (or, with `_FILE`, the file that does). */
export const TOKEN_VARIABLE = "SENTRY_AUTH_TOKEN";

export interface SentryConfig {
  host: string;
  port: number;
  /** Where the idempotency store lives. */
  redisUrl: string;
  redisKeyPrefix: string;
  /** Sentry's API root, e.g. https://sentry.io/api/0, without a trailing slash. */
  apiUrl: string;
  /** Without a token, answer with the request that would have been sent instead of failing. */
  dryRun: boolean;
  /** How long an idempotency key remembers its comment. */
  idempotencyTtlMs: number;
  /** How long a call may hold its key before a retry may post in its place (a crashed call). */
  idempotencyLockMs: number;
  shutdownGraceMs: number;
  logLevel: LogLevel;
  tls?: TlsOptions;
}

const DAY_MS = 24 * 60 * 60_000;

export function loadConfig(env: Env = process.env): SentryConfig {
  checkSecretSource(env, TOKEN_VARIABLE);
  return {
    host: envString(env, "SENTRY_HOST", "0.0.0.0"),
    port: envPort(env, "SENTRY_PORT", 50064),
    redisUrl: envUrl(env, "REDIS_URL", "redis://127.0.0.1:6379", ["redis:", "rediss:"]),
    redisKeyPrefix: envString(env, "SENTRY_REDIS_PREFIX", "hookmesh:sentry:"),
    apiUrl: envUrl(env, "SENTRY_API_URL", "https://sentry.io/api/0"),
    dryRun: envBool(env, "HOOKMESH_DRY_RUN", false),
    // A task's retries (bounded attempts with backoff) all fall well within a day.
    idempotencyTtlMs: DAY_MS,
    // Longer than one call can take: four attempts of 10 s plus the waits between them.
    idempotencyLockMs: 60_000,
    shutdownGraceMs: envInt(env, "SHUTDOWN_GRACE_MS", 10_000, { min: 0 }),
    logLevel: envLogLevel(env),
    tls: envTls(env, "SENTRY"),
  };
}

