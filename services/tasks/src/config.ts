import { envInt, envPort, envString, envTls, envUrl, type Env, type TlsOptions } from "@hookmesh/kit";

export interface TasksConfig {
  host: string;
  port: number;
  redisUrl: string;
  redisKeyPrefix: string;
  maxAttempts: number;
  shutdownGraceMs: number;
  logLevel: string;
  tls?: TlsOptions;
}

export function loadConfig(env: Env = process.env): TasksConfig {
  return {
    host: envString(env, "TASKS_HOST", "0.0.0.0"),
    port: envPort(env, "TASKS_PORT", 50051),
    redisUrl: envUrl(env, "REDIS_URL", "redis://127.0.0.1:6379", ["redis:", "rediss:"]),
    redisKeyPrefix: envString(env, "TASKS_REDIS_PREFIX", "hookmesh:tasks:"),
    maxAttempts: envInt(env, "TASKS_MAX_ATTEMPTS", 3, { min: 1, max: 100 }),
    shutdownGraceMs: envInt(env, "SHUTDOWN_GRACE_MS", 10_000, { min: 0 }),
    logLevel: envString(env, "LOG_LEVEL", "info"),
    tls: envTls(env, "TASKS"),
  };
}
