import { type IntegrationTestOptions, type IntegrationUnderTest, integrationUnderTest } from "@hookmesh/kit/testing";
import { composeJira, type JiraIntegration } from "../src/compose.js";
import { loadConfig } from "../src/config.js";
import { FakeJira } from "./fake-jira.js";

export const EMAIL = "dev@example.com";
export const API_TOKEN = "atl-api-token-5eCr3t";
export const BEARER_TOKEN = "dc-pat-MjA0OTk5-5eCr3t";
export const BASIC_AUTH = `Basic ${Buffer.from(`${EMAIL}:${API_TOKEN}`).toString("base64")}`;
/** Everything a log line or an error message must never contain. */
export const SECRETS = [API_TOKEN, BEARER_TOKEN, Buffer.from(`${EMAIL}:${API_TOKEN}`).toString("base64")];

export type Harness = IntegrationUnderTest<JiraIntegration, FakeJira>;

export interface HarnessOptions extends IntegrationTestOptions {
  /** Where a Data Center / Server instance lives on its host, e.g. `/jira`. */
  contextPath?: string;
}

/**
 * The Jira service as `main` builds it, against a fresh fake Jira (see integrationUnderTest),
 * signing in with email + API token unless the test's `env` unsets them.
 */
export async function setup(options: HarnessOptions = {}): Promise<Harness> {
  const fake = await new FakeJira(options.contextPath).start();
  fake.expectedAuth = BASIC_AUTH;
  const credentials = { JIRA_EMAIL: EMAIL, JIRA_API_TOKEN: API_TOKEN };
  const timings = { baseDelayMs: 5, maxDelayMs: 20 };
  return integrationUnderTest(
    { prefix: "JIRA", urlVariable: "JIRA_BASE_URL", fake, credentials, timings, loadConfig, compose: composeJira },
    options,
  );
}

/** Fails if a secret appears in the text. */
export function expectNoSecrets(text: string): void {
  for (const secret of SECRETS) {
    if (text.includes(secret)) throw new Error(`a secret leaked into: ${text.slice(0, 300)}`);
  }
}
