import { readFileSync } from "node:fs";
import { ConfigError, envBool, envInt, envPort, envString, envTls, envUrl, envLogLevel, type Env, type LogLevel, type TlsOptions } from "@hookmesh/kit";
import { parseAppPrivateKey } from "./app-jwt.js";

/** A personal access token (or `_FILE`): calls send `Authorization: Bearer {token}`. */
export const TOKEN_VARIABLE = "GITHUB_TOKEN";
/** The GitHub App's id (or client id). With the private key, App auth wins over GITHUB_TOKEN. */
export const APP_ID_VARIABLE = "GITHUB_APP_ID";
/** The GitHub App's private key, PEM (or `_FILE`, the .pem GitHub hands out). */
export const APP_KEY_VARIABLE = "GITHUB_APP_PRIVATE_KEY";

export interface GitHubConfig {
  host: string;
  port: number;
  /** Where the idempotency store lives. */
  redisUrl: string;
  redisKeyPrefix: string;
  /** GitHub's REST API root (https://api.github.com, or https://{host}/api/v3 for GHES), without a trailing slash. */
  apiUrl: string;
  /** Set when GitHub App auth is configured (GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY); it then wins over GITHUB_TOKEN. */
  appId?: string;
  /** Without credentials, answer with the request that would have been sent instead of failing. */
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

export function loadConfig(env: Env = process.env): GitHubConfig {
  checkSecretSource(env, TOKEN_VARIABLE);
  const appKey = checkSecretSource(env, APP_KEY_VARIABLE);
  const appId = env[APP_ID_VARIABLE]?.trim() ?? "";
  if (appId !== "" && !/^[A-Za-z0-9.]+$/.test(appId)) {
    throw new ConfigError(APP_ID_VARIABLE, `expected the App's numeric id or its client id, got "${appId.slice(0, 64)}"`);
  }
  if (appId !== "" && appKey === undefined) {
    throw new ConfigError(APP_KEY_VARIABLE, `is required with ${APP_ID_VARIABLE} (or ${APP_KEY_VARIABLE}_FILE)`);
  }
  if (appId === "" && appKey !== undefined) throw new ConfigError(APP_ID_VARIABLE, `is required with ${appKey.variable}`);
  if (appKey !== undefined) {
    try {
      parseAppPrivateKey(appKey.value);
    } catch (err) {
      throw new ConfigError(appKey.variable, (err as Error).message);
    }
  }
  return {
    host: envString(env, "GITHUB_HOST", "0.0.0.0"),
    port: envPort(env, "GITHUB_PORT", 50061),
    redisUrl: envUrl(env, "REDIS_URL", "redis://127.0.0.1:6379", ["redis:", "rediss:"]),
    redisKeyPrefix: envString(env, "GITHUB_REDIS_PREFIX", "hookmesh:github:"),
    apiUrl: envUrl(env, "GITHUB_API_URL", "https://api.github.com"),
    ...(appId !== "" && { appId }),
    dryRun: envBool(env, "HOOKMESH_DRY_RUN", false),
    // A task's retries (bounded attempts with backoff) all fall well within a day.
    idempotencyTtlMs: DAY_MS,
    // Longer than one call can take: a token request and four attempts of 10 s plus the waits.
    idempotencyLockMs: 90_000,
    shutdownGraceMs: envInt(env, "SHUTDOWN_GRACE_MS", 10_000, { min: 0 }),
    logLevel: envLogLevel(env),
    tls: envTls(env, "GITHUB"),
  };
}

/**
 * The secret itself is read (and re-read) by the service's Credential; what is checked here is
 * that its source makes sense, so that a mistyped file path fails the start instead of turning
 * into a silent dry run. Returns the value and the variable it came from, when set.
 */
function checkSecretSource(env: Env, variable: string): { value: string; variable: string } | undefined {
  const fileVariable = `${variable}_FILE`;
  const file = env[fileVariable]?.trim();
  const direct = env[variable]?.trim();
  if (file && direct) throw new ConfigError(variable, `set either ${variable} or ${fileVariable}, not both`);
  if (direct) return { value: direct, variable };
  if (!file) return undefined;
  let value: string;
  try {
    value = readFileSync(file, "utf8").trim();
  } catch (err) {
    throw new ConfigError(fileVariable, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? "error"}`);
  }
  if (value === "") throw new ConfigError(fileVariable, `${file} is empty`);
  return { value, variable: fileVariable };
}
