import { envBool, envInt, envLogLevel, envPort, envString, envTls, envUrl, type Env, type LogLevel } from "../config.js";
import type { TlsOptions } from "../serve.js";
import { DEFAULT_ATTEMPT_TIMEOUT_MS, DEFAULT_MAX_ATTEMPTS } from "./client.js";

/** What every integration service configures the same way; each adds its provider's own settings. */
export interface IntegrationConfig {
  /** `{PREFIX}_HOST`, default 0.0.0.0. */
  host: string;
  /** `{PREFIX}_PORT`. */
  port: number;
  /** `REDIS_URL`: where idempotency keys live. */
  redisUrl: string;
  /** `{PREFIX}_REDIS_PREFIX`, default `hookmesh:{prefix}:`. */
  redisKeyPrefix: string;
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
  /** `{PREFIX}_TLS_CERT_FILE`, `{PREFIX}_TLS_KEY_FILE`, `{PREFIX}_TLS_CA_FILE`. */
  tls?: TlsOptions;
}

/** The settings every integration service reads the same way, from `{PREFIX}_…` variables and the shared ones. */
export function envIntegration(env: Env, prefix: string, defaultPort: number): IntegrationConfig {
  return {
    host: envString(env, `${prefix}_HOST`, "0.0.0.0"),
    port: envPort(env, `${prefix}_PORT`, defaultPort),
    redisUrl: envUrl(env, "REDIS_URL", "redis://127.0.0.1:6379", ["redis:", "rediss:"]),
    redisKeyPrefix: envString(env, `${prefix}_REDIS_PREFIX`, `hookmesh:${prefix.toLowerCase()}:`),
    dryRun: envBool(env, "HOOKMESH_DRY_RUN", false),
    upstream: {
      attemptTimeoutMs: envInt(env, `${prefix}_TIMEOUT_MS`, DEFAULT_ATTEMPT_TIMEOUT_MS, { min: 1 }),
      maxAttempts: envInt(env, `${prefix}_MAX_ATTEMPTS`, DEFAULT_MAX_ATTEMPTS, { min: 1, max: 10 }),
    },
    shutdownGraceMs: envInt(env, "SHUTDOWN_GRACE_MS", 10_000, { min: 0 }),
    logLevel: envLogLevel(env),
    tls: envTls(env, prefix),
  };
}
