import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Env, Logger, UpstreamTimings } from "@hookmesh/kit";
import { memoryLogger, TEST_REDIS_URL, testRedis, type TestRedis } from "@hookmesh/kit/testing";
import { GitHubService } from "../../../gen/hookmesh/github/v1/github_pb.js";
import { composeGitHub, type GitHubIntegration } from "../src/compose.js";
import { APP_ID_VARIABLE, APP_KEY_VARIABLE, loadConfig, TOKEN_VARIABLE } from "../src/config.js";
import { FakeGitHub, type FakeGitHubOptions } from "./fake-github.js";

export const TOKEN = "ghp_personalTestToken0123456789abcdef";
export const APP_ID = "424242";
export const INSTALLATION = 777n;
export const OTHER_INSTALLATION = 778n;

/** The test App's key pair, made once per test file. */
let keys: { privateKey: KeyObject; publicKey: KeyObject; pem: string } | undefined;
export function appKeys(): { privateKey: KeyObject; publicKey: KeyObject; pem: string } {
  if (!keys) {
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    // PKCS#1, the form of the .pem GitHub hands out.
    keys = { privateKey, publicKey, pem: privateKey.export({ type: "pkcs1", format: "pem" }).toString() };
  }
  return keys;
}

/** Backoff and waits of milliseconds, so retries take no time; the attempts' timeout and count are configured (GITHUB_TIMEOUT_MS, GITHUB_MAX_ATTEMPTS). */
const TEST_TIMINGS = { baseDelayMs: 5, maxDelayMs: 20, maxRateLimitWaitMs: 3_000 } satisfies UpstreamTimings;

export interface Harness extends GitHubIntegration {
  fake: FakeGitHub;
  db: TestRedis;
  logger: Logger;
  /** Every line the service logged. */
  lines: () => string[];
}

export interface HarnessOptions {
  /** `token` (GITHUB_TOKEN = TOKEN, the default), `app` (GITHUB_APP_ID + key), `both`, or `none`. */
  auth?: "token" | "app" | "both" | "none";
  /** Variables set over the test's: attempts, dry run, or credentials of its own (with `auth: "none"`). */
  env?: Env;
  /** Timings beyond TEST_TIMINGS (a breaker that opens sooner, say). */
  upstream?: UpstreamTimings;
  fake?: FakeGitHubOptions;
}

/**
 * The GitHub service as `main` builds it (loadConfig, composeGitHub), not listening, against a
 * fresh fake GitHub and a real Redis under the test's own prefix. It differs from production
 * only by configuration (the fake's URL, 300 ms attempts, 3 of them, no shutdown grace) and by
 * TEST_TIMINGS.
 */
export async function setup(options: HarnessOptions = {}): Promise<Harness> {
  const mode = options.auth ?? "token";
  const { publicKey, pem } = appKeys();
  const fake = await FakeGitHub.start({
    tokens: [TOKEN],
    app: { id: APP_ID, publicKey, installations: [INSTALLATION, OTHER_INSTALLATION] },
    ...options.fake,
  });
  const db = await testRedis("github");
  const { logger, lines } = memoryLogger("github-test");
  const env: Env = {
    REDIS_URL: TEST_REDIS_URL,
    GITHUB_REDIS_PREFIX: db.prefix,
    GITHUB_API_URL: fake.url,
    GITHUB_TIMEOUT_MS: "300",
    GITHUB_MAX_ATTEMPTS: "3",
    SHUTDOWN_GRACE_MS: "0",
    ...((mode === "token" || mode === "both") && { [TOKEN_VARIABLE]: TOKEN }),
    ...((mode === "app" || mode === "both") && { [APP_ID_VARIABLE]: APP_ID, [APP_KEY_VARIABLE]: pem }),
    ...options.env,
  };
  const service = await composeGitHub(loadConfig(env), { logger, env, upstream: { ...TEST_TIMINGS, ...options.upstream } });
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

/** The repository of the tests, on the installation the fake App has. */
export const REPO = { owner: "acme", repo: "widgets", installationId: INSTALLATION };

/** The harness's server, listening on port 0, and a gRPC client for it. */
export async function serve(h: Harness): Promise<{ client: Client<typeof GitHubService>; baseUrl: string }> {
  const { port } = await h.server.listen(0, "127.0.0.1");
  const baseUrl = `http://127.0.0.1:${port}`;
  return { client: createClient(GitHubService, createGrpcTransport({ baseUrl })), baseUrl };
}
