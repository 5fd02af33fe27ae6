import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, DEFAULT_SERVER_LIMITS } from "@hookmesh/kit";
import { testIdentities } from "@hookmesh/kit/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { appKeys } from "./helpers.js";

/** The defaults need the development identities that `npm start` makes; tests have their own. */
const { env: identities } = await testIdentities();

/** The message a config error carries, or "" when there is none. */
function configError(env: Record<string, string>): string {
  try {
    loadConfig({ ...identities, ...env });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  return "";
}

describe("github loadConfig", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "hookmesh-github-config-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("defaults to the port of ARCHITECTURE.md, api.github.com and no dry run", () => {
    expect(loadConfig(identities)).toEqual({
      host: "127.0.0.1",
      port: 50061,
      redis: expect.objectContaining({ url: "redis://127.0.0.1:6379", keyPrefix: "hookmesh:github:" }),
      apiUrl: "https://api.github.com",
      dryRun: false,
      upstream: { attemptTimeoutMs: 10_000, maxAttempts: 4 },
      shutdownGraceMs: 10_000,
      logLevel: "info",
      identity: expect.objectContaining({ insecure: false, id: "spiffe://hookmesh.local/github" }),
      operatorTokens: expect.anything(),
      admin: { host: "127.0.0.1", port: 51061 },
      limits: DEFAULT_SERVER_LIMITS,
    });
  });

  it("takes a GitHub Enterprise Server API URL (trailing slash dropped), dry run, the service's own names and its call timings", () => {
    const config = loadConfig({
      ...identities,
      GITHUB_API_URL: "https://ghe.example.com/api/v3/",
      HOOKMESH_DRY_RUN: "1",
      GITHUB_PORT: "0",
      GITHUB_HOST: "127.0.0.1",
      GITHUB_REDIS_PREFIX: "x:",
      REDIS_URL: "rediss://redis.internal:6380",
      GITHUB_TIMEOUT_MS: "30000",
      GITHUB_MAX_ATTEMPTS: "2",
    });
    expect(config).toMatchObject({
      apiUrl: "https://ghe.example.com/api/v3",
      dryRun: true,
      port: 0,
      host: "127.0.0.1",
      redis: expect.objectContaining({ url: "rediss://redis.internal:6380", keyPrefix: "x:" }),
      upstream: { attemptTimeoutMs: 30_000, maxAttempts: 2 },
    });
  });

  it("turns on App auth with GITHUB_APP_ID and a private key, from the variable or a file", async () => {
    const { pem } = appKeys();
    expect(loadConfig({ ...identities, GITHUB_APP_ID: "12345", GITHUB_APP_PRIVATE_KEY: pem }).appId).toBe("12345");
    const file = join(dir, "app.pem");
    await writeFile(file, pem);
    expect(
      loadConfig({
        ...identities,
        GITHUB_APP_ID: "Iv23liAbCdEf",
        GITHUB_APP_PRIVATE_KEY_FILE: file,
        GITHUB_TOKEN: "ghp_x",
      }).appId,
    ).toBe("Iv23liAbCdEf");
    expect(loadConfig({ ...identities, GITHUB_TOKEN: "ghp_x" }).appId).toBeUndefined();
  });

  it("fails fast naming the variable to fix", () => {
    expect(() => loadConfig({ ...identities, GITHUB_PORT: "http" })).toThrow(
      new ConfigError("GITHUB_PORT", 'expected an integer from 0 to 65535, got "http"'),
    );
    expect(configError({ GITHUB_API_URL: "api.github.com" })).toMatch(/^GITHUB_API_URL: /);
    expect(configError({ GITHUB_API_URL: "ftp://ghe.example.com" })).toMatch(/^GITHUB_API_URL: /);
    expect(configError({ REDIS_URL: "http://localhost" })).toMatch(/^REDIS_URL: /);
    expect(configError({ HOOKMESH_DRY_RUN: "maybe" })).toMatch(/^HOOKMESH_DRY_RUN: /);
    expect(configError({ GITHUB_TLS_CERT_FILE: "/nonexistent.pem" })).toMatch(/^GITHUB_TLS_KEY_FILE: /);
    expect(configError({ SHUTDOWN_GRACE_MS: "-1" })).toMatch(/^SHUTDOWN_GRACE_MS: /);
    expect(configError({ GITHUB_TIMEOUT_MS: "0" })).toMatch(/^GITHUB_TIMEOUT_MS: /);
    expect(configError({ GITHUB_MAX_ATTEMPTS: "11" })).toMatch(/^GITHUB_MAX_ATTEMPTS: /);
  });

  it("refuses half an App, a bad App id, a key that is not one, and a secret set twice, without echoing secrets", async () => {
    const { pem } = appKeys();
    expect(configError({ GITHUB_APP_ID: "12345" })).toBe(
      "GITHUB_APP_PRIVATE_KEY: is required with GITHUB_APP_ID (or GITHUB_APP_PRIVATE_KEY_FILE)",
    );
    expect(configError({ GITHUB_APP_PRIVATE_KEY: pem })).toBe("GITHUB_APP_ID: is required with GITHUB_APP_PRIVATE_KEY");
    expect(configError({ GITHUB_APP_ID: "12 345", GITHUB_APP_PRIVATE_KEY: pem })).toMatch(
      /^GITHUB_APP_ID: expected the App's numeric id or its client id/,
    );
    const notAKey = "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0LXZhbHVl\n-----END RSA PRIVATE KEY-----";
    const message = configError({ GITHUB_APP_ID: "12345", GITHUB_APP_PRIVATE_KEY: notAKey });
    expect(message).toBe("GITHUB_APP_PRIVATE_KEY: is not a PEM-encoded private key");
    expect(configError({ GITHUB_TOKEN: "ghp_env", GITHUB_TOKEN_FILE: "/x" })).toBe(
      "GITHUB_TOKEN: set either GITHUB_TOKEN or GITHUB_TOKEN_FILE, not both",
    );
    expect(configError({ GITHUB_TOKEN_FILE: "/nonexistent/token" })).toBe(
      "GITHUB_TOKEN_FILE: cannot read /nonexistent/token: ENOENT",
    );
    const empty = join(dir, "empty");
    await writeFile(empty, "\n");
    expect(configError({ GITHUB_APP_ID: "1", GITHUB_APP_PRIVATE_KEY_FILE: empty })).toBe(
      `GITHUB_APP_PRIVATE_KEY_FILE: ${empty} is empty`,
    );
    const badFile = join(dir, "bad.pem");
    await writeFile(badFile, notAKey);
    expect(configError({ GITHUB_APP_ID: "1", GITHUB_APP_PRIVATE_KEY_FILE: badFile })).toBe(
      "GITHUB_APP_PRIVATE_KEY_FILE: is not a PEM-encoded private key",
    );
  });
});
