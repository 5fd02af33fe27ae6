import { envInt, envPort, envSecrets, envString, envTls, envUrl, type Env, type TlsOptions } from "@hookmesh/kit";

export interface GatewayConfig {
  host: string;
  httpPort: number;
  grpcPort: number;
  tasksUrl: string;
  githubWebhookSecrets: string[];
  githubMaxBodyBytes: number;
  submitTimeoutMs: number;
  retryAfterSeconds: number;
  shutdownGraceMs: number;
  tls?: TlsOptions;
}

/** GitHub caps webhook payloads at 25 MB. */
const GITHUB_MAX_BODY_BYTES = 25 * 1024 * 1024;

export function loadConfig(env: Env = process.env): GatewayConfig {
  return {
    host: envString(env, "GATEWAY_HOST", "0.0.0.0"),
    httpPort: envPort(env, "GATEWAY_HTTP_PORT", 8080),
    grpcPort: envPort(env, "GATEWAY_PORT", 50050),
    tasksUrl: envUrl(env, "TASKS_URL", "http://127.0.0.1:50051"),
    githubWebhookSecrets: envSecrets(env, "GITHUB_WEBHOOK_SECRET"),
    githubMaxBodyBytes: envInt(env, "GITHUB_MAX_BODY_BYTES", GITHUB_MAX_BODY_BYTES, { min: 1024, max: GITHUB_MAX_BODY_BYTES }),
    submitTimeoutMs: envInt(env, "GATEWAY_SUBMIT_TIMEOUT_MS", 5_000, { min: 100 }),
    retryAfterSeconds: envInt(env, "GATEWAY_RETRY_AFTER_SECONDS", 30, { min: 1 }),
    shutdownGraceMs: envInt(env, "SHUTDOWN_GRACE_MS", 10_000, { min: 0 }),
    tls: envTls(env, "GATEWAY"),
  };
}
