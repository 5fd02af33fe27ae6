import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { testIdentities } from "@hookmesh/kit/testing";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";

/** The defaults need the development identities that `npm start` makes; tests have their own. */
const { env } = await testIdentities();

/** The message loadConfig throws for `env`; fails the test if it does not throw. */
function configError(overrides: Record<string, string>): string {
  try {
    loadConfig({ ...env, ...overrides });
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error(`expected loadConfig to refuse ${JSON.stringify(Object.keys(overrides))}`);
}

describe("gateway loadConfig", () => {
  it("defaults to the ports and addresses of ARCHITECTURE.md, no secrets, and nothing unsigned", () => {
    expect(loadConfig(env)).toMatchObject({
      host: "127.0.0.1",
      httpPort: 8080,
      port: 50050,
      tasksUrl: "https://127.0.0.1:50051",
      redis: { url: "redis://127.0.0.1:6379", keyPrefix: "hookmesh:gateway:" },
      identity: { insecure: false, id: "spiffe://hookmesh.local/gateway" },
      secrets: { github: [], slack: [], jira: [], sentry: [] },
      allowUnsigned: [],
      maxBodyBytes: { github: 25 * 1024 * 1024, slack: 1024 * 1024, jira: 10 * 1024 * 1024, sentry: 4 * 1024 * 1024 },
      deliveryRetentionMs: 7 * 24 * 3_600_000,
      deliveryLogMaxPerRoute: 10_000,
      briefLogMaxPerRoute: 500,
      // Jira retries for about 30 minutes: the default window outlasts that.
      dedupWindowMs: 24 * 3_600_000,
      rateLimitPerSecond: 50,
      rateLimitBurst: 100,
    });
    expect(loadConfig(env).dedupWindowMs).toBeGreaterThan(30 * 60_000);
    // No proxy is believed unless named.
    expect(loadConfig(env).trustedProxies.empty).toBe(true);
  });

  it("reads the trusted proxies as addresses and CIDR ranges, naming the variable for a bad one", () => {
    const { trustedProxies } = loadConfig({ ...env, GATEWAY_TRUSTED_PROXIES: "10.0.0.0/8, 192.0.2.1,fd00::/8" });
    expect([trustedProxies.has("10.9.9.9"), trustedProxies.has("192.0.2.1"), trustedProxies.has("fd00::5")]).toEqual([
      true,
      true,
      true,
    ]);
    expect(trustedProxies.has("192.0.2.2")).toBe(false);
    expect(configError({ GATEWAY_TRUSTED_PROXIES: "10.0.0.0/8,lb.internal" })).toMatch(
      /^GATEWAY_TRUSTED_PROXIES: "lb.internal" is not an IP address or CIDR range/,
    );
  });

  it("reads the delivery log's caps per route", () => {
    expect(
      loadConfig({ ...env, GATEWAY_DELIVERY_LOG_MAX_PER_ROUTE: "500", GATEWAY_BRIEF_LOG_MAX_PER_ROUTE: "50" }),
    ).toMatchObject({ deliveryLogMaxPerRoute: 500, briefLogMaxPerRoute: 50 });
    expect(configError({ GATEWAY_DELIVERY_LOG_MAX_PER_ROUTE: "0" })).toMatch(/^GATEWAY_DELIVERY_LOG_MAX_PER_ROUTE: /);
    expect(configError({ GATEWAY_BRIEF_LOG_MAX_PER_ROUTE: "x" })).toMatch(/^GATEWAY_BRIEF_LOG_MAX_PER_ROUTE: /);
  });

  it("reads each provider's secret from its variable", () => {
    const config = loadConfig({
      ...env,
      GITHUB_WEBHOOK_SECRET: "gh",
      SLACK_SIGNING_SECRET: "sl",
      JIRA_WEBHOOK_SECRET: "ji",
      SENTRY_CLIENT_SECRET: "se",
    });
    expect(config.secrets).toEqual({ github: ["gh"], slack: ["sl"], jira: ["ji"], sentry: ["se"] });
  });

  it("reads rotated secrets as a comma-separated list, from the variable or its _FILE", () => {
    expect(loadConfig({ ...env, GITHUB_WEBHOOK_SECRET: "new, old" }).secrets.github).toEqual(["new", "old"]);
    expect(loadConfig({ ...env, SLACK_SIGNING_SECRET: "a,,b ," }).secrets.slack).toEqual(["a", "b"]);
    const dir = mkdtempSync(join(tmpdir(), "gateway-config-"));
    writeFileSync(join(dir, "github"), "from-file\n");
    writeFileSync(join(dir, "sentry"), "one,two\n");
    expect(loadConfig({ ...env, GITHUB_WEBHOOK_SECRET_FILE: join(dir, "github") }).secrets.github).toEqual([
      "from-file",
    ]);
    expect(loadConfig({ ...env, SENTRY_CLIENT_SECRET_FILE: join(dir, "sentry") }).secrets.sentry).toEqual([
      "one",
      "two",
    ]);
    expect(configError({ JIRA_WEBHOOK_SECRET_FILE: join(dir, "missing") })).toMatch(/^JIRA_WEBHOOK_SECRET_FILE: /);
  });

  it("takes GATEWAY_ALLOW_UNSIGNED as a list of built-in providers", () => {
    expect(loadConfig({ ...env, GATEWAY_ALLOW_UNSIGNED: "sentry" }).allowUnsigned).toEqual(["sentry"]);
    expect(loadConfig({ ...env, GATEWAY_ALLOW_UNSIGNED: " sentry , jira " }).allowUnsigned).toEqual(["sentry", "jira"]);
    expect(loadConfig({ ...env, GATEWAY_ALLOW_UNSIGNED: "" }).allowUnsigned).toEqual([]);
  });

  it("refuses an unknown provider in GATEWAY_ALLOW_UNSIGNED, naming the variable and the known ones", () => {
    const message = configError({ GATEWAY_ALLOW_UNSIGNED: "sentry,gitlab" });
    expect(message).toMatch(/^GATEWAY_ALLOW_UNSIGNED: /);
    expect(message).toContain("gitlab");
    expect(message).toContain("github, slack, jira, sentry");
    expect(message).not.toMatch(/unknown provider sentry\b/);
    // Custom routes are always signed: they cannot be opened this way.
    expect(configError({ GATEWAY_ALLOW_UNSIGNED: "custom" })).toMatch(/^GATEWAY_ALLOW_UNSIGNED: /);
  });

  it("reads DELIVERY_RETENTION and GATEWAY_DEDUP_WINDOW as durations", () => {
    expect(loadConfig({ ...env, DELIVERY_RETENTION: "30d" }).deliveryRetentionMs).toBe(30 * 24 * 3_600_000);
    expect(loadConfig({ ...env, DELIVERY_RETENTION: "12h" }).deliveryRetentionMs).toBe(12 * 3_600_000);
    expect(loadConfig({ ...env, GATEWAY_DEDUP_WINDOW: "30m" }).dedupWindowMs).toBe(30 * 60_000);
    expect(loadConfig({ ...env, GATEWAY_DEDUP_WINDOW: "90s" }).dedupWindowMs).toBe(90_000);
    expect(loadConfig({ ...env, GATEWAY_DEDUP_WINDOW: "1500ms" }).dedupWindowMs).toBe(1_500);
    // A bare number is milliseconds.
    expect(loadConfig({ ...env, GATEWAY_DEDUP_WINDOW: "2500" }).dedupWindowMs).toBe(2_500);
  });

  it("refuses malformed or non-positive durations, naming the variable", () => {
    for (const value of ["7 days", "1w", "-5m", "abc", "m"]) {
      expect(configError({ DELIVERY_RETENTION: value })).toMatch(/^DELIVERY_RETENTION: expected a duration/);
      expect(configError({ GATEWAY_DEDUP_WINDOW: value })).toMatch(/^GATEWAY_DEDUP_WINDOW: expected a duration/);
    }
    expect(configError({ DELIVERY_RETENTION: "0d" })).toMatch(/^DELIVERY_RETENTION: expected a positive duration/);
    expect(configError({ GATEWAY_DEDUP_WINDOW: "0" })).toMatch(/^GATEWAY_DEDUP_WINDOW: expected a positive duration/);
  });

  it("reads the rate limit, with a burst of twice the rate unless set", () => {
    expect(loadConfig({ ...env, GATEWAY_RATE_LIMIT: "5" })).toMatchObject({
      rateLimitPerSecond: 5,
      rateLimitBurst: 10,
    });
    expect(loadConfig({ ...env, GATEWAY_RATE_LIMIT: "5", GATEWAY_RATE_BURST: "3" })).toMatchObject({
      rateLimitPerSecond: 5,
      rateLimitBurst: 3,
    });
    expect(loadConfig({ ...env, GATEWAY_RATE_BURST: "7" })).toMatchObject({
      rateLimitPerSecond: 50,
      rateLimitBurst: 7,
    });
    expect(configError({ GATEWAY_RATE_LIMIT: "0" })).toMatch(/^GATEWAY_RATE_LIMIT: /);
    expect(configError({ GATEWAY_RATE_LIMIT: "1.5" })).toMatch(/^GATEWAY_RATE_LIMIT: /);
    expect(configError({ GATEWAY_RATE_BURST: "0" })).toMatch(/^GATEWAY_RATE_BURST: /);
  });

  it("reads REDIS_URL and GATEWAY_REDIS_PREFIX", () => {
    expect(
      loadConfig({ ...env, REDIS_URL: "rediss://cache.internal:6380/2", GATEWAY_REDIS_PREFIX: "edge:" }),
    ).toMatchObject({
      redis: { url: "rediss://cache.internal:6380/2", keyPrefix: "edge:" },
    });
    expect(configError({ REDIS_URL: "http://127.0.0.1:6379" })).toMatch(/^REDIS_URL: /);
    expect(configError({ REDIS_URL: "127.0.0.1:6379" })).toMatch(/^REDIS_URL: /);
  });

  it("reads ports, the tasks address and each provider's body limit", () => {
    expect(
      loadConfig({
        ...env,
        GATEWAY_HTTP_PORT: "9090",
        GATEWAY_PORT: "0",
        TASKS_URL: "https://tasks:50051",
        GITHUB_MAX_BODY_BYTES: "65536",
        SLACK_MAX_BODY_BYTES: "2048",
        JIRA_MAX_BODY_BYTES: "4096",
        SENTRY_MAX_BODY_BYTES: "8192",
      }),
    ).toMatchObject({
      httpPort: 9090,
      port: 0,
      tasksUrl: "https://tasks:50051",
      maxBodyBytes: { github: 65_536, slack: 2048, jira: 4096, sentry: 8192 },
    });
  });

  it("calls tasks over mTLS, and in cleartext only on loopback when HOOKMESH_INSECURE=1 says so", () => {
    expect(configError({ TASKS_URL: "http://tasks:50051" })).toMatch(
      /^TASKS_URL: calls go over mTLS: expected an https:\/\/ URL/,
    );
    expect(loadConfig({ HOOKMESH_INSECURE: "1" })).toMatchObject({
      tasksUrl: "http://127.0.0.1:50051",
      identity: { insecure: true },
    });
    expect(() => loadConfig({ HOOKMESH_INSECURE: "1", TASKS_URL: "http://tasks:50051" })).toThrow(
      /^TASKS_URL: HOOKMESH_INSECURE=1 allows cleartext on loopback only/,
    );
    expect(() => loadConfig({ HOOKMESH_INSECURE: "1", GATEWAY_HOST: "0.0.0.0" })).toThrow(
      /^GATEWAY_HOST: HOOKMESH_INSECURE=1 allows cleartext on loopback only/,
    );
  });

  it("fails fast naming the variable to fix, never echoing a secret", () => {
    expect(configError({ TASKS_URL: "tasks:50051" })).toMatch(/^TASKS_URL: /);
    expect(configError({ GATEWAY_HTTP_PORT: "99999" })).toMatch(/^GATEWAY_HTTP_PORT: /);
    expect(configError({ GITHUB_MAX_BODY_BYTES: String(100 * 1024 * 1024) })).toMatch(/^GITHUB_MAX_BODY_BYTES: /);
    expect(configError({ SLACK_MAX_BODY_BYTES: "100" })).toMatch(/^SLACK_MAX_BODY_BYTES: /);
    for (const variable of [
      "GITHUB_WEBHOOK_SECRET",
      "SLACK_SIGNING_SECRET",
      "JIRA_WEBHOOK_SECRET",
      "SENTRY_CLIENT_SECRET",
    ]) {
      const message = configError({ [variable]: "s3cr3t-value", [`${variable}_FILE`]: "/x" });
      expect(message).toMatch(new RegExp(`^${variable}: `));
      expect(message).not.toContain("s3cr3t-value");
    }
  });
});
