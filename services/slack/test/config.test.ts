import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, DEFAULT_SERVER_LIMITS } from "@hookmesh/kit";
import { testIdentities } from "@hookmesh/kit/testing";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";

/** The defaults need the development identities that `npm start` makes; tests have their own. */
const { env: identities } = await testIdentities();

describe("slack loadConfig", () => {
  it("defaults to the port of ARCHITECTURE.md, Slack's API and no dry run", () => {
    expect(loadConfig(identities)).toEqual({
      host: "127.0.0.1",
      port: 50062,
      redis: expect.objectContaining({ url: "redis://127.0.0.1:6379", keyPrefix: "hookmesh:slack:" }),
      apiUrl: "https://slack.com/api",
      dryRun: false,
      upstream: { attemptTimeoutMs: 10_000, maxAttempts: 4 },
      shutdownGraceMs: 10_000,
      logLevel: "info",
      identity: expect.objectContaining({ insecure: false, id: "spiffe://hookmesh.local/slack" }),
      operatorTokens: expect.anything(),
      admin: { host: "127.0.0.1", port: 51062 },
      limits: DEFAULT_SERVER_LIMITS,
    });
  });

  it("reads its variables", () => {
    expect(
      loadConfig({
        ...identities,
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
      redis: expect.objectContaining({ url: "redis://redis:6379/2", keyPrefix: "mesh:slack:" }),
      apiUrl: "http://127.0.0.1:9000/api",
      dryRun: true,
      shutdownGraceMs: 500,
      logLevel: "debug",
      upstream: { attemptTimeoutMs: 20_000, maxAttempts: 5 },
    });
  });

  it("fails fast naming the variable to fix", () => {
    expect(() => loadConfig({ ...identities, SLACK_PORT: "70000" })).toThrow(/^SLACK_PORT: /);
    expect(() => loadConfig({ ...identities, SLACK_API_URL: "slack.com/api" })).toThrow(/^SLACK_API_URL: /);
    expect(() => loadConfig({ ...identities, REDIS_URL: "http://redis" })).toThrow(/^REDIS_URL: /);
    expect(() => loadConfig({ ...identities, HOOKMESH_DRY_RUN: "maybe" })).toThrow(/^HOOKMESH_DRY_RUN: /);
    expect(() => loadConfig({ ...identities, SHUTDOWN_GRACE_MS: "-1" })).toThrow(/^SHUTDOWN_GRACE_MS: /);
    expect(() => loadConfig({ ...identities, SLACK_TLS_KEY_FILE: "/nonexistent.pem" })).toThrow(
      /^SLACK_TLS_CERT_FILE: /,
    );
    expect(() => loadConfig({ ...identities, SLACK_TIMEOUT_MS: "soon" })).toThrow(/^SLACK_TIMEOUT_MS: /);
    expect(() => loadConfig({ ...identities, SLACK_MAX_ATTEMPTS: "0" })).toThrow(/^SLACK_MAX_ATTEMPTS: /);
  });

  it("checks the token's source without reading the token into the config", async () => {
    const dir = await mkdtemp(join(tmpdir(), "hookmesh-slack-config-"));
    try {
      const file = join(dir, "token");
      await writeFile(file, "xoxb-secret");
      expect(JSON.stringify(loadConfig({ ...identities, SLACK_BOT_TOKEN_FILE: file }))).not.toContain("xoxb-secret");
      expect(() => loadConfig({ ...identities, SLACK_BOT_TOKEN_FILE: join(dir, "missing") })).toThrow(
        new ConfigError("SLACK_BOT_TOKEN_FILE", `cannot read ${join(dir, "missing")}: ENOENT`),
      );
      expect(() => loadConfig({ ...identities, SLACK_BOT_TOKEN: "xoxb-a", SLACK_BOT_TOKEN_FILE: file })).toThrow(
        new ConfigError("SLACK_BOT_TOKEN", "set either SLACK_BOT_TOKEN or SLACK_BOT_TOKEN_FILE, not both"),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
