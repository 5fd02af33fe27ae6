import {
  type IntegrationTestOptions,
  type IntegrationUnderTest,
  integrationUnderTest,
  serveForTest,
} from "@hookmesh/kit/testing";
import { SentryService } from "../../../gen/hookmesh/sentry/v1/sentry_pb.js";
import { composeSentry, type SentryIntegration } from "../src/compose.js";
import { loadConfig, TOKEN_VARIABLE } from "../src/config.js";
import { FakeSentry } from "./fake-sentry.js";

export const TOKEN = "sntryu_test_token";

export type Harness = IntegrationUnderTest<SentryIntegration, FakeSentry>;

export interface HarnessOptions extends IntegrationTestOptions {
  /** False: no SENTRY_AUTH_TOKEN (it is TOKEN otherwise). */
  token?: boolean;
}

/** The Sentry service as `main` builds it, against a fresh fake Sentry (see integrationUnderTest). */
export async function setup(options: HarnessOptions = {}): Promise<Harness> {
  const fake = await FakeSentry.start(TOKEN);
  const credentials = options.token === false ? {} : { [TOKEN_VARIABLE]: TOKEN };
  const timings = { baseDelayMs: 5, maxDelayMs: 20, maxRateLimitWaitMs: 3_000 };
  return integrationUnderTest(
    { prefix: "SENTRY", urlVariable: "SENTRY_API_URL", fake, credentials, timings, loadConfig, compose: composeSentry },
    options,
  );
}

/** The harness's server, listening on port 0, and a gRPC client for it. */
export const serve = (h: Harness) => serveForTest(h.server, SentryService);
