import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "@hookmesh/kit";
import { testIdentities } from "@hookmesh/kit/testing";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";

/** The defaults need the development identities that `npm start` makes; tests have their own. */
const { env: identities } = await testIdentities();

describe("sentry loadConfig", () => {
  it("defaults to the port of ARCHITECTURE.md, sentry.io and no dry run", () => {
    expect(loadConfig(identities)).toMatchObject({
      host: "127.0.0.1",
      port: 50064,
      redis: expect.objectContaining({ url: "redis://127.0.0.1:6379", keyPrefix: "hookmesh:sentry:" }),
      apiUrl: "https://sentry.io/api/0",
      dryRun: false,
      upstream: { attemptTimeoutMs: 10_000, maxAttempts: 4 },
      shutdownGraceMs: 10_000,
      logLevel: "info",
      identity: expect.objectContaining({ insecure: false, id: "spiffe://hookmesh.local/sentry" }),
      operatorTokens: expect.anything(),
      admin: { host: "127.0.0.1", port: 51064 },
    });
  });

  it("takes a self-hosted API URL (trailing slash dropped), dry run and the call timings", () => {
    const config = loadConfig({
      ...identities,
      SENTRY_API_URL: "https://sentry.example.com/api/0/",
      HOOKMESH_DRY_RUN: "1",
      SENTRY_PORT: "0",
      SENTRY_REDIS_PREFIX: "x:",
      SENTRY_TIMEOUT_MS: "20000",
      SENTRY_MAX_ATTEMPTS: "2",
    });
    expect(config).toMatchObject({
      apiUrl: "https://sentry.example.com/api/0",
      dryRun: true,
      port: 0,
      redis: expect.objectContaining({ keyPrefix: "x:" }),
      upstream: { attemptTimeoutMs: 20_000, maxAttempts: 2 },
    });
  });

  it("fails fast naming the variable to fix", () => {
    expect(() => loadConfig({ ...identities, SENTRY_PORT: "http" })).toThrow(
      new ConfigError("SENTRY_PORT", 'expected an integer from 0 to 65535, got "http"'),
    );
    expect(() => loadConfig({ ...identities, SENTRY_API_URL: "sentry.io/api/0" })).toThrow(/^SENTRY_API_URL: /);
    expect(() => loadConfig({ ...identities, SENTRY_API_URL: "ftp://sentry.io" })).toThrow(/^SENTRY_API_URL: /);
    expect(() => loadConfig({ ...identities, REDIS_URL: "http://localhost" })).toThrow(/^REDIS_URL: /);
    expect(() => loadConfig({ ...identities, HOOKMESH_DRY_RUN: "maybe" })).toThrow(/^HOOKMESH_DRY_RUN: /);
    expect(() => loadConfig({ ...identities, SENTRY_TLS_CERT_FILE: "/nonexistent.pem" })).toThrow(
      /^SENTRY_TLS_KEY_FILE: /,
    );
    expect(() => loadConfig({ ...identities, SHUTDOWN_GRACE_MS: "-1" })).toThrow(/^SHUTDOWN_GRACE_MS: /);
    expect(() => loadConfig({ ...identities, SENTRY_TIMEOUT_MS: "-5" })).toThrow(/^SENTRY_TIMEOUT_MS: /);
    expect(() => loadConfig({ ...identities, SENTRY_MAX_ATTEMPTS: "x" })).toThrow(/^SENTRY_MAX_ATTEMPTS: /);
  });

  it("refuses an unreadable token file, and a token set twice, without echoing the token", async () => {
    expect(() => loadConfig({ ...identities, SENTRY_AUTH_TOKEN_FILE: "/nonexistent/token" })).toThrow(
      new ConfigError("SENTRY_AUTH_TOKEN_FILE", "cannot read /nonexistent/token: ENOENT"),
    );
    const dir = await mkdtemp(join(tmpdir(), "hookmesh-sentry-config-"));
    try {
      const file = join(dir, "token");
      await writeFile(file, "sntryu_file");
      expect(loadConfig({ ...identities, SENTRY_AUTH_TOKEN_FILE: file }).port).toBe(50064);
      let message = "";
      try {
        loadConfig({ ...identities, SENTRY_AUTH_TOKEN_FILE: file, SENTRY_AUTH_TOKEN: "sntryu_env" });
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toBe("SENTRY_AUTH_TOKEN: set either SENTRY_AUTH_TOKEN or SENTRY_AUTH_TOKEN_FILE, not both");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
