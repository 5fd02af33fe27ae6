import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Env, Logger, UpstreamTimings } from "@hookmesh/kit";
import { memoryLogger, TEST_REDIS_URL, testRedis, type TestRedis } from "@hookmesh/kit/testing";
import { SentryService } from "../../../gen/hookmesh/sentry/v1/sentry_pb.js";
import { composeSentry, type SentryIntegration } from "../src/compose.js";
import { loadConfig, TOKEN_VARIABLE } from "../src/config.js";
import { FakeSentry } from "./fake-sentry.js";

export const TOKEN = "sntryu_test_token";

/** Backoff and waits of milliseconds, so retries take no time; the attempts' timeout and count are configured (SENTRY_TIMEOUT_MS, SENTRY_MAX_ATTEMPTS). */
const TEST_TIMINGS = { baseDelayMs: 5, maxDelayMs: 20, maxRateLimitWaitMs: 3_000 } satisfies UpstreamTimings;

export interface Harness extends SentryIntegration {
  fake: FakeSentry;
  db: TestRedis;
  logger: Logger;
  /** Every line the service logged. */
  lines: () => string[];
}

export interface HarnessOptions {
  /** Variables set over the test's: attempts, dry run, or the token's source (`SENTRY_AUTH_TOKEN` is TOKEN unless `token: false`). */
  env?: Env;
  /** False: no SENTRY_AUTH_TOKEN. */
  token?: boolean;
  /** Timings beyond TEST_TIMINGS (a breaker that opens sooner, say). */
  upstream?: UpstreamTimings;
}

/**
 * The Sentry service as `main` builds it (loadConfig, composeSentry), not listening, against a
 * fresh fake Sentry and a real Redis under the test's own prefix. It differs from production
 * only by configuration (the fake's URL, 300 ms attempts, 3 of them, no shutdown grace) and by
 * TEST_TIMINGS.
 */
export async function setup(options: HarnessOptions = {}): Promise<Harness> {
  const fake = await FakeSentry.start(TOKEN);
  const db = await testRedis("sentry");
  const { logger, lines } = memoryLogger("sentry-test");
  const env: Env = {
    REDIS_URL: TEST_REDIS_URL,
    SENTRY_REDIS_PREFIX: db.prefix,
    SENTRY_API_URL: fake.url,
    SENTRY_TIMEOUT_MS: "300",
    SENTRY_MAX_ATTEMPTS: "3",
    SHUTDOWN_GRACE_MS: "0",
    ...(options.token !== false && { [TOKEN_VARIABLE]: TOKEN }),
    ...options.env,
  };
  const service = await composeSentry(loadConfig(env), { logger, env, upstream: { ...TEST_TIMINGS, ...options.upstream } });
  return {
    ...service,
    fake,
    db,
    logger,
    lines,
    async close() {
      await service.close();
      await fake.close();
      await db.cleanup();
    },
  };
}

/** The harness's server, listening on port 0, and a gRPC client for it. */
export async function serve(h: Harness): Promise<{ client: Client<typeof SentryService>; baseUrl: string }> {
  const { port } = await h.server.listen(0, "127.0.0.1");
  const baseUrl = `http://127.0.0.1:${port}`;
  return { client: createClient(SentryService, createGrpcTransport({ baseUrl })), baseUrl };
}
