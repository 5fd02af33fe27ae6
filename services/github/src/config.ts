import {
  ConfigError,
  checkSecretSource,
  type Env,
  envIntegration,
  envUrl,
  type IntegrationConfig,
} from "@hookmesh/kit";
import { parseAppPrivateKey } from "./app-jwt.js";

/** A personal access token (or `_FILE`): calls send `Authorization: Bearer {token}`. */
export const TOKEN_VARIABLE = "GITHUB_TOKEN";
/** The GitHub App's id (or client id). With the private key, App auth wins over GITHUB_TOKEN. */
export const APP_ID_VARIABLE = "GITHUB_APP_ID";
/** The GitHub App's private key, PEM (or `_FILE`, the .pem GitHub hands out). */
export const APP_KEY_VARIABLE = "GITHUB_APP_PRIVATE_KEY";

/**
 * The GitHub service's settings: those of every integration service (`GITHUB_HOST`,
 * `GITHUB_PORT` 50061, `GITHUB_REDIS_PREFIX`, `GITHUB_TIMEOUT_MS`, `GITHUB_MAX_ATTEMPTS`,
 * `GITHUB_TLS_*`, `REDIS_URL`, `HOOKMESH_DRY_RUN`, `SHUTDOWN_GRACE_MS`, `LOG_LEVEL`; see
 * IntegrationConfig), GitHub's API URL and the App's id. The credentials, `GITHUB_TOKEN` or
 * `GITHUB_APP_ID` + `GITHUB_APP_PRIVATE_KEY` (each also as `_FILE`), are checked here and read by
 * the service's Credentials.
 */
export interface GitHubConfig extends IntegrationConfig {
  /** `GITHUB_API_URL`: https://api.github.com, or https://{host}/api/v3 for GHES; without a trailing slash. */
  apiUrl: string;
  /** Set when GitHub App auth is configured (GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY); it then wins over GITHUB_TOKEN. */
  appId?: string;
}

export function loadConfig(env: Env = process.env): GitHubConfig {
  checkSecretSource(env, TOKEN_VARIABLE);
  const appKey = checkSecretSource(env, APP_KEY_VARIABLE);
  const appId = env[APP_ID_VARIABLE]?.trim() ?? "";
  if (appId !== "" && !/^[A-Za-z0-9.]+$/.test(appId)) {
    throw new ConfigError(
      APP_ID_VARIABLE,
      `expected the App's numeric id or its client id, got "${appId.slice(0, 64)}"`,
    );
  }
  if (appId !== "" && appKey === undefined) {
    throw new ConfigError(APP_KEY_VARIABLE, `is required with ${APP_ID_VARIABLE} (or ${APP_KEY_VARIABLE}_FILE)`);
  }
  if (appId === "" && appKey !== undefined)
    throw new ConfigError(APP_ID_VARIABLE, `is required with ${appKey.variable}`);
  if (appKey !== undefined) {
    if (appKey.value === "") throw new ConfigError(appKey.variable, `${env[appKey.variable] ?? ""} is empty`);
    try {
      parseAppPrivateKey(appKey.value);
    } catch (err) {
      throw new ConfigError(appKey.variable, (err as Error).message);
    }
  }
  return {
    ...envIntegration(env, "GITHUB", 50061),
    apiUrl: envUrl(env, "GITHUB_API_URL", "https://api.github.com"),
    ...(appId !== "" && { appId }),
  };
}
