import { ConfigError, envBool, envInt, envPort, envString, envTls, envUrl, envLogLevel, type Env, type LogLevel, type TlsOptions } from "@hookmesh/kit";

/** How the service signs its requests; the secret itself is read by a Credential, not here. */
export type JiraAuthMode =
  /** `JIRA_EMAIL` + `JIRA_API_TOKEN`: Basic base64(email:token) (Jira Cloud). */
  | "basic"
  /** `JIRA_BEARER_TOKEN`: a Data Center / Server personal access token. */
  | "bearer"
  /** No credentials configured: calls are dry runs or fail with FailedPrecondition. */
  | "none";

export interface JiraConfig {
  host: string;
  port: number;
  redisUrl: string;
  redisKeyPrefix: string;
  /** e.g. https://example.atlassian.net or https://jira.example.com/jira; undefined when unset. */
  baseUrl: string | undefined;
  /** 3: Cloud REST v3 with Atlassian Document Format bodies; 2: Data Center / Server, wiki-markup strings. */
  apiVersion: 2 | 3;
  auth: JiraAuthMode;
  /** The account of the API token (basic auth). */
  email: string | undefined;
  /** Without credentials, answer with the request that would have been sent instead of failing. */
  dryRun: boolean;
  /** Per attempt of a call to Jira. */
  timeoutMs: number;
  /** Attempts per call to Jira, the first included. */
  maxAttempts: number;
  /** How long a created comment is remembered under its idempotency key. */
  idempotencyTtlMs: number;
  shutdownGraceMs: number;
  logLevel: LogLevel;
  tls?: TlsOptions;
}

export function loadConfig(env: Env = process.env): JiraConfig {
  const baseUrl = envString(env, "JIRA_BASE_URL", "");
  const email = envString(env, "JIRA_EMAIL", "");
  const apiToken = isSet(env, "JIRA_API_TOKEN");
  const bearerToken = isSet(env, "JIRA_BEARER_TOKEN");
  if (apiToken && bearerToken) {
    throw new ConfigError("JIRA_BEARER_TOKEN", "set either JIRA_BEARER_TOKEN or JIRA_EMAIL + JIRA_API_TOKEN, not both");
  }
  if (apiToken && email === "") throw new ConfigError("JIRA_EMAIL", "is required with JIRA_API_TOKEN (the token's account)");
  if (baseUrl !== "" && /^[a-z][a-z0-9+.-]*:\/\/[^/]*@/i.test(baseUrl)) {
    throw new ConfigError("JIRA_BASE_URL", "must not contain credentials; set JIRA_EMAIL + JIRA_API_TOKEN or JIRA_BEARER_TOKEN");
  }
  const apiVersion = envInt(env, "JIRA_API_VERSION", 3, { min: 2, max: 3 }) as 2 | 3;
  const timeoutMs = envInt(env, "JIRA_TIMEOUT_MS", 10_000, { min: 1 });
  return {
    host: envString(env, "JIRA_HOST", "0.0.0.0"),
    port: envPort(env, "JIRA_PORT", 50063),
    redisUrl: envUrl(env, "REDIS_URL", "redis://127.0.0.1:6379", ["redis:", "rediss:"]),
    redisKeyPrefix: envString(env, "JIRA_REDIS_PREFIX", "hookmesh:jira:"),
    baseUrl: baseUrl === "" ? undefined : envUrl(env, "JIRA_BASE_URL", baseUrl),
    apiVersion,
    auth: bearerToken ? "bearer" : apiToken || email !== "" ? "basic" : "none",
    email: email === "" ? undefined : email,
    dryRun: envBool(env, "HOOKMESH_DRY_RUN", false),
    timeoutMs,
    maxAttempts: envInt(env, "JIRA_MAX_ATTEMPTS", 4, { min: 1, max: 10 }),
    idempotencyTtlMs: envInt(env, "JIRA_IDEMPOTENCY_TTL_MS", 7 * 24 * 3_600_000, { min: 60_000 }),
    shutdownGraceMs: envInt(env, "SHUTDOWN_GRACE_MS", 10_000, { min: 0 }),
    logLevel: envLogLevel(env),
    tls: envTls(env, "JIRA"),
  };
}

/** Whether a secret is configured, directly or as a `_FILE`, without reading it. */
function isSet(env: Env, variable: string): boolean {
  return [variable, `${variable}_FILE`].some((name) => (env[name]?.trim() ?? "") !== "");
}
