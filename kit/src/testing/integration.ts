import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Env } from "../config.js";
import type { Logger } from "../logger.js";
import type { MeshServer } from "../serve.js";
import type { UpstreamTimings } from "../upstream/client.js";
import type { Integration, IntegrationDeps } from "../upstream/integration.js";
import type { FakeProvider } from "./fake-provider.js";
import { memoryLogger } from "./logger.js";
import { TEST_REDIS_URL, type TestRedis, testRedis } from "./redis.js";

/** An integration service under test, its fake provider, its Redis prefix and what it logged. */
export type IntegrationUnderTest<Service extends Integration, Fake extends FakeProvider> = Service & {
  fake: Fake;
  db: TestRedis;
  logger: Logger;
  /** Every line the service logged. */
  lines(): string[];
};

/** What a test changes in the service under test. */
export interface IntegrationTestOptions {
  /** Variables over the harness's: attempts, dry run, credentials; an undefined value unsets one. */
  env?: Env;
  /** Timings beyond the harness's (a breaker that opens sooner, say). */
  upstream?: UpstreamTimings;
}

/** How a service's harness builds it. */
export interface IntegrationHarness<Config, Service extends Integration, Fake extends FakeProvider> {
  /** The prefix of the service's own variables: `GITHUB`. */
  prefix: string;
  /** The variable that says where the provider's API is (`GITHUB_API_URL`); set to the fake's. */
  urlVariable: string;
  /** The fake provider, started; closed with the service. */
  fake: Fake;
  /** The credentials the harness configures unless the test says otherwise. */
  credentials: Env;
  /** Backoff and waits of milliseconds, so that retries take no time. */
  timings: UpstreamTimings;
  loadConfig(env: Env): Config;
  compose(config: Config, deps: IntegrationDeps): Promise<Service>;
}

/**
 * An integration service as its `main` builds it (loadConfig, then its compose function), not
 * listening, against a fake provider and a real Redis under a key prefix of its own. It differs
 * from production only by configuration (the fake's URL, attempts of 300 ms, three of them, no
 * shutdown grace, the harness's credentials, and the test's `env`) and by timings; and it
 * serves cleartext on loopback, because these tests are about the provider: mTLS and the access
 * policy are kit's, and the end-to-end tests run every service under the defaults.
 */
export async function integrationUnderTest<Config, Service extends Integration, Fake extends FakeProvider>(
  harness: IntegrationHarness<Config, Service, Fake>,
  test: IntegrationTestOptions = {},
): Promise<IntegrationUnderTest<Service, Fake>> {
  const { prefix, fake } = harness;
  const db = await testRedis(prefix.toLowerCase());
  const { logger, lines } = memoryLogger(`${prefix.toLowerCase()}-test`);
  const env: Env = {
    HOOKMESH_INSECURE: "1",
    REDIS_URL: TEST_REDIS_URL,
    [`${prefix}_REDIS_PREFIX`]: db.prefix,
    [harness.urlVariable]: fake.url,
    [`${prefix}_TIMEOUT_MS`]: "300",
    [`${prefix}_MAX_ATTEMPTS`]: "3",
    SHUTDOWN_GRACE_MS: "0",
    ...harness.credentials,
    ...test.env,
  };
  const service = await harness.compose(harness.loadConfig(env), {
    logger,
    env,
    upstream: { ...harness.timings, ...test.upstream },
  });
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

/** `server` listening on 127.0.0.1, port 0, and a gRPC client of `service` for it. */
export async function serveForTest<S extends DescService>(
  server: MeshServer,
  service: S,
): Promise<{ client: Client<S>; baseUrl: string }> {
  const { port } = await server.listen(0, "127.0.0.1");
  const baseUrl = `http://127.0.0.1:${port}`;
  return { client: createClient(service, createGrpcTransport({ baseUrl })), baseUrl };
}
