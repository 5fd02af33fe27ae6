import type { Logger } from "@hookmesh/kit";
import { memoryLogger, testRedis, type TestRedis } from "@hookmesh/kit/testing";
import { composeJira, type JiraCore } from "../src/compose.js";
import { loadConfig, type JiraConfig } from "../src/config.js";
import type { JiraUpstreamOptions } from "../src/jira-upstream.js";
import { FakeJira } from "./fake-jira.js";

export const EMAIL = "dev@example.com";
export const API_TOKEN = "atl-api-token-5eCr3t";
export const BEARER_TOKEN = "dc-pat-MjA0OTk5-5eCr3t";
export const BASIC_AUTH = `Basic ${Buffer.from(`${EMAIL}:${API_TOKEN}`).toString("base64")}`;
/** Everything a log line or an error message must never contain. */
export const SECRETS = [API_TOKEN, BEARER_TOKEN, Buffer.from(`${EMAIL}:${API_TOKEN}`).toString("base64")];

export interface Harness {
  jira: FakeJira;
  db: TestRedis;
  config: JiraConfig;
  core: JiraCore;
  logger: Logger;
  lines: () => string[];
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** Set over the defaults (the fake's base URL, email + API token); undefined removes a variable. */
  env?: Record<string, string | undefined>;
  contextPath?: string;
  upstream?: Partial<JiraUpstreamOptions>;
}

/** The Jira service's domain over a fake Jira and a real Redis (own prefix), configured from an env. */
export async function harness(options: HarnessOptions = {}): Promise<Harness> {
  const jira = await new FakeJira(options.contextPath).start();
  jira.expectedAuth = BASIC_AUTH;
  const db = await testRedis("jira");
  const { logger, lines } = memoryLogger("jira-test");
  const env = withoutUnset({
    JIRA_BASE_URL: jira.baseUrl,
    JIRA_EMAIL: EMAIL,
    JIRA_API_TOKEN: API_TOKEN,
    JIRA_TIMEOUT_MS: "300",
    JIRA_MAX_ATTEMPTS: "3",
    JIRA_REDIS_PREFIX: db.prefix,
    ...options.env,
  });
  const config = loadConfig(env);
  const core = composeJira(db.redis, config, env, logger, { baseDelayMs: 5, maxDelayMs: 20, ...options.upstream });
  return {
    jira,
    db,
    config,
    core,
    logger,
    lines,
    async close() {
      core.close();
      await jira.close();
      await db.cleanup();
    },
  };
}

function withoutUnset(env: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined));
}

/** Fails if a secret appears in the text. */
export function expectNoSecrets(text: string): void {
  for (const secret of SECRETS) {
    if (text.includes(secret)) throw new Error(`a secret leaked into: ${text.slice(0, 300)}`);
  }
}
