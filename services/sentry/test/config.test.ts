import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError } from "@hookmesh/kit";
import { loadConfig } from "../src/config.js";

describe("sentry loadConfig", () => {
  it("defaults to the port of ARCHITECTURE.md, sentry.io and no dry run", () => {
    expect(loadConfig({})).toMatchObject({
      host: "0.0.0.0",
      port: 50064,
      redisUrl: "redis://127.0.0.1:6379",
      redisKeyPrefix: "hookmesh:sentry:",
      apiUrl: "https://sentry.io/api/0",
      dryRun: false,
      upstream: { attemptTimeoutMs: 10_000, maxAttempts: 4 },
      shutdownGraceMs: 10_000,
      logLevel: "info",
      tls: undefined,
    });
  });

  it("takes a self-hosted API URL (trailing slash dropped), dry run and the call timings", () => {
    const config = loadConfig({
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
      redisKeyPrefix: "x:",
      upstream: { attemptTimeoutMs: 20_000, maxAttempts: 2 },
    });
  });

  it("fails fast naming the variable to fix", () => {
    expect(() => loadConfig({ SENTRY_PORT: "http" })).toThrow(new ConfigError("SENTRY_PORT", 'expected an integer from 0 to 65535, got "http"'));
    expect(() => loadConfig({ SENTRY_API_URL: "sentry.io/api/0" })).toThrow(/^SENTRY_API_URL: /);
    expect(() => loadConfig({ SENTRY_API_URL: "ftp://sentry.io" })).toThrow(/^SENTRY_API_URL: /);
    expect(() => loadConfig({ REDIS_URL: "http://localhost" })).toThrow(/^REDIS_URL: /);
    expect(() => loadConfig({ HOOKMESH_DRY_RUN: "maybe" })).toThrow(/^HOOKMESH_DRY_RUN: /);
    expect(() => loadConfig({ SENTRY_TLS_CERT_FILE: "/nonexistent.pem" })).toThrow(/^SENTRY_TLS_KEY_FILE: /);
    expect(() => loadConfig({ SHUTDOWN_GRACE_MS: "-1" })).toThrow(/^SHUTDOWN_GRACE_MS: /);
    expect(() => loadConfig({ SENTRY_TIMEOUT_MS: "-5" })).toThrow(/^SENTRY_TIMEOUT_MS: /);
    expect(() => loadConfig({ SENTRY_MAX_ATTEMPTS: "x" })).toThrow(/^SENTRY_MAX_ATTEMPTS: /);
  });

  it("refuses an unreadable token file, and a token set twice, without echoing the token", async () => {
    expect(() => loadConfig({ SENTRY_AUTH_TOKEN_FILE: "/nonexistent/token" })).toThrow(
      new ConfigError("SENTRY_AUTH_TOKEN_FILE", "cannot read /nonexistent/token: ENOENT"),
    );
    const dir = await mkdtemp(join(tmpdir(), "hookmesh-sentry-config-"));
    try {
      const file = join(dir, "token");
      await writeFile(file, "sntryu_file");
      expect(loadConfig({ SENTRY_AUTH_TOKEN_FILE: file }).port).toBe(50064);
      let message = "";
      try {
        loadConfig({ SENTRY_AUTH_TOKEN_FILE: file, SENTRY_AUTH_TOKEN: "sntryu_env" });
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toBe("SENTRY_AUTH_TOKEN: set either SENTRY_AUTH_TOKEN or SENTRY_AUTH_TOKEN_FILE, not both");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
