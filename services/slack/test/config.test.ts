import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError } from "@hookmesh/kit";
import { loadConfig } from "../src/config.js";

describe("slack loadConfig", () => {
  it("defaults to the port of ARCHITECTURE.md, Slack's API and no dry run", () => {
    expect(loadConfig({})).toEqual({
      host: "0.0.0.0",
      port: 50062,
      redisUrl: "redis://127.0.0.1:6379",
      redisKeyPrefix: "hookmesh:slack:",
      apiUrl: "https://slack.com/api",
      dryRun: false,
      upstream: { attemptTimeoutMs: 10_000, maxAttempts: 4 },
      shutdownGraceMs: 10_000,
      logLevel: "info",
      tls: undefined,
    });
  });

  it("reads its variables", () => {
    expect(
      loadConfig({
        SLACK_HOST: "127.0.0.1",
        SLACK_PORT: "6000",
        REDIS_URL: "redis://redis:6379/2",
        SLACK_REDIS_PREFIX: "mesh:slack:",
        SLACK_API_URL: "http://127.0.0.1:9000/api/",
        HOOKMESH_DRY_RUN: "1",
        SHUTDOWN_GRACE_MS: "500",
        LOG_LEVEL: "debug",
        SLACK_TIMEOUT_MS: "20000",
        SLACK_MAX_ATTEMPTS: "5",
      }),
    ).toMatchObject({
      host: "127.0.0.1",
      port: 6000,
      redisUrl: "redis://redis:6379/2",
      redisKeyPrefix: "mesh:slack:",
      apiUrl: "http://127.0.0.1:9000/api",
      dryRun: true,
      shutdownGraceMs: 500,
      logLevel: "debug",
      upstream: { attemptTimeoutMs: 20_000, maxAttempts: 5 },
    });
  });

  it("fails fast naming the variable to fix", () => {
    expect(() => loadConfig({ SLACK_PORT: "70000" })).toThrow(/^SLACK_PORT: /);
    expect(() => loadConfig({ SLACK_API_URL: "slack.com/api" })).toThrow(/^SLACK_API_URL: /);
    expect(() => loadConfig({ REDIS_URL: "http://redis" })).toThrow(/^REDIS_URL: /);
    expect(() => loadConfig({ HOOKMESH_DRY_RUN: "maybe" })).toThrow(/^HOOKMESH_DRY_RUN: /);
    expect(() => loadConfig({ SHUTDOWN_GRACE_MS: "-1" })).toThrow(/^SHUTDOWN_GRACE_MS: /);
    expect(() => loadConfig({ SLACK_TLS_KEY_FILE: "/nonexistent.pem" })).toThrow(/^SLACK_TLS_CERT_FILE: /);
    expect(() => loadConfig({ SLACK_TIMEOUT_MS: "soon" })).toThrow(/^SLACK_TIMEOUT_MS: /);
    expect(() => loadConfig({ SLACK_MAX_ATTEMPTS: "0" })).toThrow(/^SLACK_MAX_ATTEMPTS: /);
  });

  it("checks the token's source without reading the token into the config", async () => {
    const dir = await mkdtemp(join(tmpdir(), "hookmesh-slack-config-"));
    try {
      const file = join(dir, "token");
      await writeFile(file, "xoxb-secret");
      expect(JSON.stringify(loadConfig({ SLACK_BOT_TOKEN_FILE: file }))).not.toContain("xoxb-secret");
      expect(() => loadConfig({ SLACK_BOT_TOKEN_FILE: join(dir, "missing") })).toThrow(
        new ConfigError("SLACK_BOT_TOKEN_FILE", `cannot read ${join(dir, "missing")}: ENOENT`),
      );
      expect(() => loadConfig({ SLACK_BOT_TOKEN: "xoxb-a", SLACK_BOT_TOKEN_FILE: file })).toThrow(
        new ConfigError("SLACK_BOT_TOKEN", "set either SLACK_BOT_TOKEN or SLACK_BOT_TOKEN_FILE, not both"),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
