import type { Env, Logger, UpstreamTimings } from "@hookmesh/kit";
import { memoryLogger, TEST_REDIS_URL, testRedis, type TestRedis } from "@hookmesh/kit/testing";
import { composeJira, type JiraIntegration } from "../src/compose.js";
import { loadConfig } from "../src/config.js";
import { FakeJira } from "./fake-jira.js";

export const EMAIL = "dev@example.com";
export const API_TOKEN = "atl-api-token-5eCr3t";
export const BEARER_TOKEN = "dc-pat-MjA0OTk5-5eCr3t";
export const BASIC_AUTH = `Basic ${Buffer.from(`${EMAIL}:${API_TOKEN}`).toString("base64")}`;
/** Everything a log line or an error message must never contain. */
export const SECRETS = [API_TOKEN, BEARER_TOKEN, Buffer.from(`${EMAIL}:${API_TOKEN}`).toString("base64")];

/** Backoff of milliseconds, so retries take no time; the attempts' timeout and count are configured (JIRA_TIMEOUT_MS, JIRA_MAX_ATTEMPTS). */
const TEST_TIMINGS = { baseDelayMs: 5, maxDelayMs: 20 } satisfies UpstreamTimings;

export interface Harness extends JiraIntegration {
  jira: FakeJira;
  db: TestRedis;
  logger: Logger;
  lines: () => string[];
}

export interface HarnessOptions {
  /** Set over the test's (the fake's base URL, email + API token); undefined removes a variable. */
  env?: Record<string, string | undefined>;
  contextPath?: string;
  /** Timings beyond TEST_TIMINGS (a breaker that opens sooner, say). */
  upstream?: UpstreamTimings;
}

/**
 * The Jira service as `main` builds it (loadConfig, composeJira), not listening, against a fresh
 * fake Jira and a real Redis under the test's own prefix. It differs from production only by
 * configuration (the fake's URL, 300 ms attempts, 3 of them, no shutdown grace) and by
 * TEST_TIMINGS.
 */
export async function harness(options: HarnessOptions = {}): Promise<Harness> {
  const jira = await new FakeJira(options.contextPath).start();
  jira.expectedAuth = BASIC_AUTH;
  const db = await testRedis("jira");
  const { logger, lines } = memoryLogger("jira-test");
  const env = withoutUnset({
    REDIS_URL: TEST_REDIS_URL,
    JIRA_REDIS_PREFIX: db.prefix,
    JIRA_BASE_URL: jira.baseUrl,
    JIRA_EMAIL: EMAIL,
    JIRA_API_TOKEN: API_TOKEN,
    JIRA_TIMEOUT_MS: "300",
    JIRA_MAX_ATTEMPTS: "3",
    SHUTDOWN_GRACE_MS: "0",
    ...options.env,
  });
  const service = await composeJira(loadConfig(env), { logger, env, upstream: { ...TEST_TIMINGS, ...options.upstream } });
  return {
    ...service,
    jira,
    db,
    logger,
    lines,
    async close() {
      await service.close();
      await jira.close();
      await db.cleanup();
    },
  };
}

function withoutUnset(env: Record<string, string | undefined>): Env {
  return Object.fromEntries(Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined));
}

/** Fails if a secret appears in the text. */
export function expectNoSecrets(text: string): void {
  for (const secret of SECRETS) {
    if (text.includes(secret)) throw new Error(`a secret leaked into: ${text.slice(0, 300)}`);
  }
}
