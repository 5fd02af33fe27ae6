import {
  ConfigError,
  checkSecretSource,
  type Env,
  envInt,
  envIntegration,
  envString,
  envUrl,
  type IntegrationConfig,
} from "@hookmesh/kit";

/** How the service signs its requests; the secret itself is read by a Credential, not here. */
export type JiraAuthMode =
  /** `JIRA_EMAIL` + `JIRA_API_TOKEN`: Basic base64(email:token) (Jira Cloud). */
  | "basic"
  /** `JIRA_BEARER_TOKEN`: a Data Center / Server personal access token. */
  | "bearer"
  /** No credentials configured: calls are dry runs or fail with FailedPrecondition. */
  | "none";

/** The variable that holds the secret of each way of signing in (or, with `_FILE`, the file that does). */
export const TOKEN_VARIABLES = { basic: "JIRA_API_TOKEN", bearer: "JIRA_BEARER_TOKEN" } as const;

/**
 * The Jira service's settings: those of every integration service (`JIRA_HOST`, `JIRA_PORT`
 * 50063, `JIRA_REDIS_PREFIX`, `JIRA_TIMEOUT_MS`, `JIRA_MAX_ATTEMPTS`, `JIRA_TLS_*`, `REDIS_URL`,
 * `HOOKMESH_DRY_RUN`, `SHUTDOWN_GRACE_MS`, `LOG_LEVEL`; see IntegrationConfig), where Jira is and
 * how to sign in. The secrets, `JIRA_API_TOKEN` or `JIRA_BEARER_TOKEN` (each also as `_FILE`), are
 * checked here and read by the service's Credential.
 */
export interface JiraConfig extends IntegrationConfig {
  /**
   * `JIRA_BASE_URL`, e.g. https://example.atlassian.net or https://jira.example.com/jira;
   * undefined when unset: every site has its own, so there is no default, and calls are dry runs
   * or fail naming it.
   */
  baseUrl: string | undefined;
  /** `JIRA_API_VERSION`: 3, Cloud REST v3 with Atlassian Document Format bodies; 2, Data Center / Server, wiki-markup strings. */
  apiVersion: 2 | 3;
  auth: JiraAuthMode;
  /** `JIRA_EMAIL`: the account of the API token (basic auth). */
  email: string | undefined;
}

export function loadConfig(env: Env = process.env): JiraConfig {
  const baseUrl = envString(env, "JIRA_BASE_URL", "");
  const email = envString(env, "JIRA_EMAIL", "");
  const apiToken = checkSecretSource(env, TOKEN_VARIABLES.basic) !== undefined;
  const bearerToken = checkSecretSource(env, TOKEN_VARIABLES.bearer) !== undefined;
  if (apiToken && bearerToken) {
    throw new ConfigError("JIRA_BEARER_TOKEN", "set either JIRA_BEARER_TOKEN or JIRA_EMAIL + JIRA_API_TOKEN, not both");
  }
  if (apiToken && email === "")
    throw new ConfigError("JIRA_EMAIL", "is required with JIRA_API_TOKEN (the token's account)");
  if (baseUrl !== "" && /^[a-z][a-z0-9+.-]*:\/\/[^/]*@/i.test(baseUrl)) {
    throw new ConfigError(
      "JIRA_BASE_URL",
      "must not contain credentials; set JIRA_EMAIL + JIRA_API_TOKEN or JIRA_BEARER_TOKEN",
    );
  }
  return {
    ...envIntegration(env, "JIRA", 50063),
    baseUrl: baseUrl === "" ? undefined : envUrl(env, "JIRA_BASE_URL", baseUrl),
    apiVersion: envInt(env, "JIRA_API_VERSION", 3, { min: 2, max: 3 }) as 2 | 3,
    auth: bearerToken ? "bearer" : apiToken || email !== "" ? "basic" : "none",
    email: email === "" ? undefined : email,
  };
}
