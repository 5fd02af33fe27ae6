import { generateKeyPairSync, type KeyObject } from "node:crypto";
import {
  type IntegrationTestOptions,
  type IntegrationUnderTest,
  integrationUnderTest,
  serveForTest,
} from "@hookmesh/kit/testing";
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

export type Harness = IntegrationUnderTest<GitHubIntegration, FakeGitHub>;

export interface HarnessOptions extends IntegrationTestOptions {
  /** `token` (GITHUB_TOKEN = TOKEN, the default), `app` (GITHUB_APP_ID + key), `both`, or `none` (credentials of the test's own in `env`). */
  auth?: "token" | "app" | "both" | "none";
  fake?: FakeGitHubOptions;
}

/** The GitHub service as `main` builds it, against a fresh fake GitHub whose App has both installations (see integrationUnderTest). */
export async function setup(options: HarnessOptions = {}): Promise<Harness> {
  const mode = options.auth ?? "token";
  const { publicKey, pem } = appKeys();
  const fake = await FakeGitHub.start({
    tokens: [TOKEN],
    app: { id: APP_ID, publicKey, installations: [INSTALLATION, OTHER_INSTALLATION] },
    ...options.fake,
  });
  const credentials = {
    ...((mode === "token" || mode === "both") && { [TOKEN_VARIABLE]: TOKEN }),
    ...((mode === "app" || mode === "both") && { [APP_ID_VARIABLE]: APP_ID, [APP_KEY_VARIABLE]: pem }),
  };
  const timings = { baseDelayMs: 5, maxDelayMs: 20, maxRateLimitWaitMs: 3_000 };
  return integrationUnderTest(
    { prefix: "GITHUB", urlVariable: "GITHUB_API_URL", fake, credentials, timings, loadConfig, compose: composeGitHub },
    options,
  );
}

/** The repository of the tests, on the installation the fake App has. */
export const REPO = { owner: "acme", repo: "widgets", installationId: INSTALLATION };

/** The harness's server, listening on port 0, and a gRPC client for it. */
export const serve = (h: Harness) => serveForTest(h.server, GitHubService);
