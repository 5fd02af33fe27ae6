import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Credential, HealthState, IdempotencyStore, ServingStatus, type Env, type UpstreamClient, type UpstreamClientOptions } from "@hookmesh/kit";
import { memoryLogger, testRedis, type TestRedis } from "@hookmesh/kit/testing";
import type { Redis } from "ioredis";
import { SlackService } from "../../../gen/hookmesh/slack/v1/slack_pb.js";
import { TOKEN_VARIABLE } from "../src/config.js";
import { SlackMessages } from "../src/messages.js";
import { build } from "../src/server.js";
import { slackUpstream } from "../src/upstream.js";
import { FakeSlack, TEST_TOKEN } from "./fake-slack.js";

/** Small timeouts and waits, so that retries and hangs take milliseconds. */
export const TEST_UPSTREAM = { attemptTimeoutMs: 300, maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 5 } satisfies Partial<UpstreamClientOptions>;

export interface Setup {
  /** The environment the token comes from; default `SLACK_BOT_TOKEN` set to the fake's token. */
  env?: Env;
  dryRun?: boolean;
  upstream?: Partial<UpstreamClientOptions>;
  /** The Redis the idempotency store uses, given the test's (say, one that is down). */
  redis?: (redis: Redis) => Redis;
}

export interface SlackUnderTest {
  fake: FakeSlack;
  slack: SlackMessages;
  token: Credential;
  upstream: UpstreamClient;
  db: TestRedis;
  /** Every line logged by the service's pieces. */
  lines(): string[];
  logger: ReturnType<typeof memoryLogger>["logger"];
  close(): Promise<void>;
}

/** The Slack domain over a fresh fake Slack and a fresh Redis prefix. */
export async function slackUnderTest(label: string, setup: Setup = {}): Promise<SlackUnderTest> {
  const fake = await FakeSlack.start();
  const db = await testRedis(`slack-${label}`);
  const { logger, lines } = memoryLogger("slack-test");
  const token = new Credential(TOKEN_VARIABLE, setup.env ?? { [TOKEN_VARIABLE]: TEST_TOKEN }, logger);
  const upstream = slackUpstream(fake.url, logger, { ...TEST_UPSTREAM, ...setup.upstream });
  const slack = new SlackMessages({
    upstream,
    token,
    idempotency: new IdempotencyStore(setup.redis?.(db.redis) ?? db.redis, { keyPrefix: db.prefix, ttlMs: 60_000, lockMs: 5_000 }),
    dryRun: setup.dryRun ?? false,
    logger,
  });
  return {
    fake,
    slack,
    token,
    upstream,
    db,
    lines,
    logger,
    async close() {
      upstream.shutdown();
      await fake.close();
      await db.cleanup();
    },
  };
}

export interface Served {
  client: Client<typeof SlackService>;
  baseUrl: string;
  health: HealthState;
  close(): Promise<void>;
}

/** The real server over `under`, on 127.0.0.1 port 0, and a gRPC client for it. */
export async function serve(under: SlackUnderTest): Promise<Served> {
  const health = new HealthState([SlackService.typeName], ServingStatus.SERVING);
  const server = build({ slack: under.slack, health, logger: under.logger });
  const { port } = await server.listen(0, "127.0.0.1");
  const baseUrl = `http://127.0.0.1:${port}`;
  return {
    client: createClient(SlackService, createGrpcTransport({ baseUrl })),
    baseUrl,
    health,
    close: () => server.close(0),
  };
}
