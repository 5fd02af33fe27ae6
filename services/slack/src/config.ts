import { checkSecretSource, type Env, envIntegration, envUrl, type IntegrationConfig } from "@hookmesh/kit";

/** The variable that holds the bot token, `xoxb-…` (or, with `_FILE`, the file that does). */
export const TOKEN_VARIABLE = "SLACK_BOT_TOKEN";

/**
 * The Slack service's settings: those of every integration service (`SLACK_HOST`, `SLACK_PORT`
 * 50062, `SLACK_REDIS_PREFIX`, `SLACK_TIMEOUT_MS`, `SLACK_MAX_ATTEMPTS`, `SLACK_TLS_*`,
 * `REDIS_URL`, `HOOKMESH_DRY_RUN`, `SHUTDOWN_GRACE_MS`, `LOG_LEVEL`; see IntegrationConfig) and
 * Slack's API URL. The bot token, `SLACK_BOT_TOKEN` (or `_FILE`), is checked here and read by the
 * service's Credential.
 */
export interface SlackConfig extends IntegrationConfig {
  /** `SLACK_API_URL`: Slack's Web API root, e.g. https://slack.com/api, without a trailing slash. */
  apiUrl: string;
}

export function loadConfig(env: Env = process.env): SlackConfig {
  checkSecretSource(env, TOKEN_VARIABLE);
  return { ...envIntegration(env, "SLACK", 50062), apiUrl: envUrl(env, "SLACK_API_URL", "https://slack.com/api") };
}
