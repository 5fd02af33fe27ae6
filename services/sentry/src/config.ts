import { checkSecretSource, type Env, envIntegration, envUrl, type IntegrationConfig } from "@hookmesh/kit";

/** The variable that holds Sentry's auth token (or, with `_FILE`, the file that does). */
export const TOKEN_VARIABLE = "SENTRY_AUTH_TOKEN";

/**
 * The Sentry service's settings: those of every integration service (`SENTRY_HOST`,
 * `SENTRY_PORT` 50064, `SENTRY_REDIS_PREFIX`, `SENTRY_TIMEOUT_MS`, `SENTRY_MAX_ATTEMPTS`,
 * `SENTRY_TLS_*`, `REDIS_URL`, `HOOKMESH_DRY_RUN`, `SHUTDOWN_GRACE_MS`, `LOG_LEVEL`; see
 * IntegrationConfig) and Sentry's API URL. The auth token, `SENTRY_AUTH_TOKEN` (or `_FILE`), is
 * checked here and read by the service's Credential.
 */
export interface SentryConfig extends IntegrationConfig {
  /** `SENTRY_API_URL`: Sentry's API root, e.g. https://sentry.io/api/0, without a trailing slash. */
  apiUrl: string;
}

export function loadConfig(env: Env = process.env): SentryConfig {
  checkSecretSource(env, TOKEN_VARIABLE);
  return { ...envIntegration(env, "SENTRY", 50064), apiUrl: envUrl(env, "SENTRY_API_URL", "https://sentry.io/api/0") };
}
