import {
  type IntegrationTestOptions,
  type IntegrationUnderTest,
  integrationUnderTest,
  serveForTest,
} from "@hookmesh/kit/testing";
import { SlackService } from "../../../gen/hookmesh/slack/v1/slack_pb.js";
import { composeSlack, type SlackIntegration } from "../src/compose.js";
import { loadConfig, TOKEN_VARIABLE } from "../src/config.js";
import { FakeSlack, TEST_TOKEN } from "./fake-slack.js";

export type Harness = IntegrationUnderTest<SlackIntegration, FakeSlack>;

export interface HarnessOptions extends IntegrationTestOptions {
  /** False: no SLACK_BOT_TOKEN (it is the fake workspace's otherwise). */
  token?: boolean;
}

/** The Slack service as `main` builds it, against a fresh fake Slack (see integrationUnderTest). */
export async function setup(options: HarnessOptions = {}): Promise<Harness> {
  const fake = await FakeSlack.start();
  const credentials = options.token === false ? {} : { [TOKEN_VARIABLE]: TEST_TOKEN };
  const timings = { baseDelayMs: 1, maxDelayMs: 5 };
  return integrationUnderTest(
    { prefix: "SLACK", urlVariable: "SLACK_API_URL", fake, credentials, timings, loadConfig, compose: composeSlack },
    options,
  );
}

/** The harness's server, listening on port 0, and a gRPC client for it. */
export const serve = (h: Harness) => serveForTest(h.server, SlackService);
