import type { Redis } from "ioredis";
import { Credential, IdempotencyStore, type Env, type Logger, type UpstreamClient } from "@hookmesh/kit";
import type { JiraConfig } from "./config.js";
import { DRY_RUN_BASE_URL, JiraApi, type JiraAuth } from "./jira-api.js";
import { createJiraUpstream, type JiraUpstreamOptions } from "./jira-upstream.js";

export type JiraSettings = Pick<
  JiraConfig,
  "redisKeyPrefix" | "baseUrl" | "apiVersion" | "auth" | "email" | "dryRun" | "timeoutMs" | "maxAttempts" | "idempotencyTtlMs"
>;

/** The Jira service's domain objects, as main and the tests use them. */
export interface JiraCore {
  api: JiraApi;
  upstream: UpstreamClient;
  /** The credential in use, if any is configured. */
  credential: Credential | undefined;
  /** Starts reloading the credential file on change and on SIGHUP; returns the function that stops it. */
  watch(): () => void;
  close(): void;
}

/** The longest a rate-limited call waits between attempts before it gives up. */
const MAX_RATE_LIMIT_WAIT_MS = 30_000;

export function composeJira(
  redis: Redis,
  settings: JiraSettings,
  env: Env,
  logger: Logger,
  /** Overrides for the client to Jira (backoff, breaker), for tests. */
  upstreamOptions: Partial<JiraUpstreamOptions> = {},
): JiraCore {
  const credential =
    settings.auth === "bearer"
      ? new Credential("JIRA_BEARER_TOKEN", env, logger)
      : settings.auth === "basic"
        ? new Credential("JIRA_API_TOKEN", env, logger)
        : undefined;
  const auth: JiraAuth | undefined =
    credential === undefined
      ? undefined
      : settings.auth === "bearer"
        ? { scheme: "bearer", token: credential }
        : { scheme: "basic", email: settings.email ?? "", token: credential };
  const upstream = createJiraUpstream({
    baseUrl: settings.baseUrl ?? DRY_RUN_BASE_URL,
    logger,
    attemptTimeoutMs: settings.timeoutMs,
    maxAttempts: settings.maxAttempts,
    maxRateLimitWaitMs: MAX_RATE_LIMIT_WAIT_MS,
    ...upstreamOptions,
  });
  const idempotency = new IdempotencyStore(redis, {
    keyPrefix: settings.redisKeyPrefix,
    ttlMs: settings.idempotencyTtlMs,
    // A call holds its key for at most every attempt plus one rate-limit wait; past that its
    // caller crashed and another may post.
    lockMs: settings.maxAttempts * settings.timeoutMs + MAX_RATE_LIMIT_WAIT_MS,
  });
  const api = new JiraApi({
    upstream,
    hasBaseUrl: settings.baseUrl !== undefined,
    apiVersion: settings.apiVersion,
    auth,
    dryRun: settings.dryRun,
    idempotency,
    logger,
  });
  return {
    api,
    upstream,
    credential,
    watch: () => credential?.watch() ?? (() => {}),
    close: () => upstream.shutdown(),
  };
}
