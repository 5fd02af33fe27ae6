import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Env, Logger, UpstreamTimings } from "@hookmesh/kit";
import { memoryLogger, TEST_REDIS_URL, testRedis, type TestRedis } from "@hookmesh/kit/testing";
import { SlackService } from "../../../gen/hookmesh/slack/v1/slack_pb.js";
import { composeSlack, type SlackIntegration } from "../src/compose.js";
import { loadConfig, TOKEN_VARIABLE } from "../src/config.js";
import { FakeSlack, TEST_TOKEN } from "./fake-slack.js";

/** Backoff of milliseconds, so retries take no time; the attempts' timeout and count are configured (SLACK_TIMEOUT_MS, SLACK_MAX_ATTEMPTS). */
const TEST_TIMINGS = { baseDelayMs: 1, maxDelayMs: 5 } satisfies UpstreamTimings;

export interface Setup {
  /** Variables set over the test's: attempts, dry run, or the token's source (`SLACK_BOT_TOKEN` is the fake's token unless `token: false`). */
  env?: Env;
  /** False: no SLACK_BOT_TOKEN. */
  token?: boolean;
  /** Timings beyond TEST_TIMINGS (a breaker that opens sooner, say). */
  upstream?: UpstreamTimings;
}

export interface SlackUnderTest extends SlackIntegration {
  fake: FakeSlack;
  db: TestRedis;
  logger: Logger;
  /** Every line logged by the service. */
  lines(): string[];
}

/**
 * The Slack service as `main` builds it (loadConfig, composeSlack), not listening, against a
 * fresh fake Slack and a real Redis under the test's own prefix. It differs from production only
 * by configuration (the fake's URL, 300 ms attempts, 3 of them, no shutdown grace) and by
 * TEST_TIMINGS.
 */
export async function slackUnderTest(label: string, setup: Setup = {}): Promise<SlackUnderTest> {
  const fake = await FakeSlack.start();
  const db = await testRedis(`slack-${label}`);
  const { logger, lines } = memoryLogger("slack-test");
  const env: Env = {
    REDIS_URL: TEST_REDIS_URL,
    SLACK_REDIS_PREFIX: db.prefix,
    SLACK_API_URL: fake.url,
    SLACK_TIMEOUT_MS: "300",
    SLACK_MAX_ATTEMPTS: "3",
    SHUTDOWN_GRACE_MS: "0",
    ...(setup.token !== false && { [TOKEN_VARIABLE]: TEST_TOKEN }),
    ...setup.env,
  };
  const service = await composeSlack(loadConfig(env), { logger, env, upstream: { ...TEST_TIMINGS, ...setup.upstream } });
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

/** The service's server, listening on 127.0.0.1 port 0, and a gRPC client for it. */
export async function serve(under: SlackUnderTest): Promise<{ client: Client<typeof SlackService>; baseUrl: string }> {
  const { port } = await under.server.listen(0, "127.0.0.1");
  const baseUrl = `http://127.0.0.1:${port}`;
  return { client: createClient(SlackService, createGrpcTransport({ baseUrl })), baseUrl };
}
