import { type Env, envBool, envInt, envLogLevel, envRedis, type LogLevel, type RedisConfig } from "../config.js";
import { envListen, type ListenConfig } from "../listen.js";
import { DEFAULT_ATTEMPT_TIMEOUT_MS, DEFAULT_MAX_ATTEMPTS } from "./client.js";

/** What every integration service configures the same way; each adds its provider's own settings. */
export interface IntegrationConfig extends ListenConfig {
  /** `{PREFIX}_REDIS_URL` or `REDIS_URL`, its user's password, `{PREFIX}_REDIS_PREFIX`: where idempotency keys live. */
  redis: RedisConfig;
  /** `HOOKMESH_DRY_RUN`: while a credential is missing, answer with the request that would have been sent instead of failing. */
  dryRun: boolean;
  /**
   * `{PREFIX}_TIMEOUT_MS` (per attempt, default 10 s) and `{PREFIX}_MAX_ATTEMPTS` (the first
   * included, default 4): a slow self-hosted provider may need more. They also bound how long a
   * call holds its idempotency key.
   */
  upstream: { attemptTimeoutMs: number; maxAttempts: number };
  /** `SHUTDOWN_GRACE_MS`: how long in-flight calls get at shutdown. */
  shutdownGraceMs: number;
  /** `LOG_LEVEL`. */
  logLevel: LogLevel;
}

/** The settings every integration service reads the same way, from `{PREFIX}_…` variables and the shared ones. */
export function envIntegration(env: Env, prefix: string, defaultPort: number): IntegrationConfig {
  return {
    ...envListen(env, prefix.toLowerCase(), defaultPort),
    redis: envRedis(env, prefix, `hookmesh:${prefix.toLowerCase()}:`),
    dryRun: envBool(env, "HOOKMESH_DRY_RUN", false),
    upstream: {
      attemptTimeoutMs: envInt(env, `${prefix}_TIMEOUT_MS`, DEFAULT_ATTEMPT_TIMEOUT_MS, { min: 1 }),
      maxAttempts: envInt(env, `${prefix}_MAX_ATTEMPTS`, DEFAULT_MAX_ATTEMPTS, { min: 1, max: 10 }),
    },
    shutdownGraceMs: envInt(env, "SHUTDOWN_GRACE_MS", 10_000, { min: 0 }),
    logLevel: envLogLevel(env),
  };
}
