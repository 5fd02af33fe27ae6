import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Credential, HealthState, IdempotencyStore, ServingStatus, type Env, type Logger, type UpstreamClient, type UpstreamClientOptions } from "@hookmesh/kit";
import { memoryLogger, testRedis, type TestRedis } from "@hookmesh/kit/testing";
import { SentryService } from "../../../gen/hookmesh/sentry/v1/sentry_pb.js";
import { TOKEN_VARIABLE } from "../src/config.js";
import { SentryApi } from "../src/sentry-api.js";
import { build } from "../src/server.js";
import { sentryUpstream } from "../src/upstream.js";
import { FakeSentry } from "./fake-sentry.js";

export const TOKEN = "sntryu_test_token";

/** Small timeouts and waits, so retries and hangs take milliseconds. */
export const TEST_UPSTREAM = {
  attemptTimeoutMs: 300,
  maxAttempts: 3,
  baseDelayMs: 5,
  maxDelayMs: 20,
  maxRateLimitWaitMs: 3_000,
} satisfies Partial<UpstreamClientOptions>;

export interface Harness {
  fake: FakeSentry;
  api: SentryApi;
  upstream: UpstreamClient;
  token: Credential;
  db: TestRedis;
  logger: Logger;
  /** Every line the service logged. */
  lines: () => string[];
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** Where the token comes from; `SENTRY_AUTH_TOKEN` = TOKEN unless given. */
  env?: Env;
  dryRun?: boolean;
  upstream?: Partial<UpstreamClientOptions>;
  /** The store for keyed comments; a real Redis store under the test's prefix unless given. */
  idempotency?: IdempotencyStore;
}

/** The Sentry API wrapper against a fresh fake Sentry, over a real Redis prefix. */
export async function setup(options: HarnessOptions = {}): Promise<Harness> {
  const fake = await FakeSentry.start(TOKEN);
  const db = await testRedis("sentry");
  const { logger, lines } = memoryLogger("sentry-test");
  const token = new Credential(TOKEN_VARIABLE, options.env ?? { [TOKEN_VARIABLE]: TOKEN }, logger);
  const upstream = sentryUpstream(fake.url, logger, { ...TEST_UPSTREAM, ...options.upstream });
  const api = new SentryApi({
    upstream,
    token,
    idempotency: options.idempotency ?? new IdempotencyStore(db.redis, { keyPrefix: db.prefix, ttlMs: 60_000, lockMs: 5_000 }),
    dryRun: options.dryRun ?? false,
    logger,
  });
  return {
    fake,
    api,
    upstream,
    token,
    db,
    logger,
    lines,
    async close() {
      upstream.shutdown();
      await fake.close();
      await db.cleanup();
    },
  };
}

/** The real service (build + listen on port 0) over `h.api`, and a gRPC client for it. */
export async function serve(h: Harness): Promise<{ client: Client<typeof SentryService>; baseUrl: string; health: HealthState; close(): Promise<void> }> {
  const { logger } = h;
  const health = new HealthState([SentryService.typeName], ServingStatus.SERVING);
  const server = build({ api: h.api, health, logger });
  const { port } = await server.listen(0, "127.0.0.1");
  const baseUrl = `http://127.0.0.1:${port}`;
  return {
    client: createClient(SentryService, createGrpcTransport({ baseUrl })),
    baseUrl,
    health,
    close: () => server.close(0),
  };
}
