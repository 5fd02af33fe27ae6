import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Credential, HealthState, IdempotencyStore, ServingStatus, type Env, type Logger, type UpstreamClient, type UpstreamClientOptions } from "@hookmesh/kit";
import { memoryLogger, testRedis, type TestRedis } from "@hookmesh/kit/testing";
import { GitHubService } from "../../../gen/hookmesh/github/v1/github_pb.js";
import { GitHubAuth } from "../src/auth.js";
import { APP_KEY_VARIABLE, TOKEN_VARIABLE } from "../src/config.js";
import { GitHubApi } from "../src/github-api.js";
import { build } from "../src/server.js";
import { githubUpstream } from "../src/upstream.js";
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

/** Small timeouts and waits, so retries and hangs take milliseconds. */
export const TEST_UPSTREAM = {
  attemptTimeoutMs: 300,
  maxAttempts: 3,
  baseDelayMs: 5,
  maxDelayMs: 20,
  maxRateLimitWaitMs: 3_000,
} satisfies Partial<UpstreamClientOptions>;

export interface Harness {
  fake: FakeGitHub;
  api: GitHubApi;
  auth: GitHubAuth;
  upstream: UpstreamClient;
  token: Credential;
  privateKey: Credential;
  db: TestRedis;
  logger: Logger;
  /** Every line the service logged. */
  lines: () => string[];
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** `token` (GITHUB_TOKEN = TOKEN, the default), `app` (GITHUB_APP_ID + key), `both`, or `none`. */
  auth?: "token" | "app" | "both" | "none";
  /** Where the credentials come from, instead of what `auth` says. */
  env?: Env;
  dryRun?: boolean;
  upstream?: Partial<UpstreamClientOptions>;
  fake?: FakeGitHubOptions;
  refreshMarginMs?: number;
  /** The store for keyed comments; a real Redis store under the test's prefix unless given. */
  idempotency?: IdempotencyStore;
}

/** The GitHub API wrapper against a fresh fake GitHub, over a real Redis prefix. */
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
  const env: Env = options.env ?? {
    ...((mode === "token" || mode === "both") && { [TOKEN_VARIABLE]: TOKEN }),
    ...((mode === "app" || mode === "both") && { GITHUB_APP_ID: APP_ID, [APP_KEY_VARIABLE]: pem }),
  };
  const token = new Credential(TOKEN_VARIABLE, env, logger);
  const privateKey = new Credential(APP_KEY_VARIABLE, env, logger);
  const upstream = githubUpstream(fake.url, logger, { ...TEST_UPSTREAM, ...options.upstream });
  const appId = env.GITHUB_APP_ID;
  const auth = new GitHubAuth({
    upstream,
    token,
    ...(appId !== undefined && { app: { id: appId, privateKey } }),
    logger,
    ...(options.refreshMarginMs !== undefined && { refreshMarginMs: options.refreshMarginMs }),
  });
  const api = new GitHubApi({
    upstream,
    auth,
    idempotency: options.idempotency ?? new IdempotencyStore(db.redis, { keyPrefix: db.prefix, ttlMs: 60_000, lockMs: 5_000 }),
    dryRun: options.dryRun ?? false,
    logger,
  });
  return {
    fake,
    api,
    auth,
    upstream,
    token,
    privateKey,
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

/** The repository of the tests, on the installation the fake App has. */
export const REPO = { owner: "acme", repo: "widgets", installationId: INSTALLATION };

/** The real service (build + listen on port 0) over `h.api`, and a gRPC client for it. */
export async function serve(h: Harness): Promise<{ client: Client<typeof GitHubService>; baseUrl: string; close(): Promise<void> }> {
  const health = new HealthState([GitHubService.typeName], ServingStatus.SERVING);
  const server = build({ api: h.api, health, logger: h.logger });
  const { port } = await server.listen(0, "127.0.0.1");
  const baseUrl = `http://127.0.0.1:${port}`;
  return {
    client: createClient(GitHubService, createGrpcTransport({ baseUrl })),
    baseUrl,
    close: () => server.close(0),
  };
}
