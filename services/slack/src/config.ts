import { checkSecretSource, envLogLevel, type Env, type LogLevel, envBool, envInt, envPort, envString, envTls, envUrl, type TlsOptions } from "@hookmesh/kit";

/** The variable that holds the bot token, `xoxb-…` (or, with `_FILE`, the file that does). */
export const TOKEN_VARIABLE = "SLACK_BOT_TOKEN";

export interface SlackConfig {
  host: string;
  port: number;
  /** Where the idempotency store lives. */
  redisUrl: string;
  redisKeyPrefix: string;
  /** Slack's Web API root, e.g. https://slack.com/api, without a trailing slash. */
  apiUrl: string;
  /** Without a token, answer with the request that would have been sent instead of failing. */
  dryRun: boolean;
  /** How long an idempotency key remembers its message. */
  idempotencyTtlMs: number;
  /** How long a call may hold its key before a retry may post in its place (a crashed call). */
  idempotencyLockMs: number;
  /** Longest a call to Slack may take, retries and waits included; below the lock, so a key is never taken over mid-call. */
  callTimeoutMs: number;
  shutdownGraceMs: number;
  logLevel: LogLevel;
  tls?: TlsOptions;
}

const DAY_MS = 24 * 60 * 60_000;

export function loadConfig(env: Env = process.env): SlackConfig {
  checkSecretSource(env, TOKEN_VARIABLE);
  return {
    host: envString(env, "SLACK_HOST", "0.0.0.0"),
    port: envPort(env, "SLACK_PORT", 50062),
    redisUrl: envUrl(env, "REDIS_URL", "redis://127.0.0.1:6379", ["redis:", "rediss:"]),
    redisKeyPrefix: envString(env, "SLACK_REDIS_PREFIX", "hookmesh:slack:"),
    apiUrl: envUrl(env, "SLACK_API_URL", "https://slack.com/api"),
    dryRun: envBool(env, "HOOKMESH_DRY_RUN", false),
    // A task's retries (bounded attempts with backoff) all fall well within a day.
    idempotencyTtlMs: DAY_MS,
    idempotencyLockMs: 60_000,
    callTimeoutMs: 50_000,
    shutdownGraceMs: envInt(env, "SHUTDOWN_GRACE_MS", 10_000, { min: 0 }),
    logLevel: envLogLevel(env),
    tls: envTls(env, "SLACK"),
  };
}

