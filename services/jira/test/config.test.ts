import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, DEFAULT_SERVER_LIMITS } from "@hookmesh/kit";
import { testIdentities } from "@hookmesh/kit/testing";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";

/** The defaults need the development identities that `npm start` makes; tests have their own. */
const { env: identities } = await testIdentities();

describe("loadConfig", () => {
  it("has defaults that run without any Jira configured", () => {
    expect(loadConfig(identities)).toEqual({
      host: "127.0.0.1",
      port: 50063,
      redis: expect.objectContaining({ url: "redis://127.0.0.1:6379", keyPrefix: "hookmesh:jira:" }),
      baseUrl: undefined,
      apiVersion: 3,
      auth: "none",
      email: undefined,
      dryRun: false,
      upstream: { attemptTimeoutMs: 10_000, maxAttempts: 4 },
      shutdownGraceMs: 10_000,
      logLevel: "info",
      identity: expect.objectContaining({ insecure: false, id: "spiffe://hookmesh.local/jira" }),
      operatorTokens: expect.anything(),
      admin: { host: "127.0.0.1", port: 51063 },
      limits: DEFAULT_SERVER_LIMITS,
    });
  });

  it("reads Jira Cloud basic auth, Data Center bearer auth, the API version and the call timings", async () => {
    const cloud = loadConfig({
      ...identities,
      JIRA_BASE_URL: "https://example.atlassian.net/",
      JIRA_EMAIL: "dev@example.com",
      JIRA_API_TOKEN: "t",
      HOOKMESH_DRY_RUN: "1",
      JIRA_PORT: "6000",
      JIRA_TIMEOUT_MS: "30000",
      JIRA_MAX_ATTEMPTS: "2",
    });
    expect(cloud).toMatchObject({
      baseUrl: "https://example.atlassian.net",
      auth: "basic",
      email: "dev@example.com",
      dryRun: true,
      port: 6000,
      upstream: { attemptTimeoutMs: 30_000, maxAttempts: 2 },
    });
    const dir = await mkdtemp(join(tmpdir(), "hookmesh-jira-config-"));
    try {
      const file = join(dir, "token");
      await writeFile(file, "dc-pat");
      const dc = loadConfig({
        ...identities,
        JIRA_BASE_URL: "https://jira.example.com/jira",
        JIRA_BEARER_TOKEN_FILE: file,
        JIRA_API_VERSION: "2",
      });
      expect(dc).toMatchObject({ baseUrl: "https://jira.example.com/jira", auth: "bearer", apiVersion: 2 });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("never keeps a secret's value, nor puts one in an error", () => {
    expect(
      JSON.stringify(loadConfig({ ...identities, JIRA_EMAIL: "a@b.c", JIRA_API_TOKEN: "s3cr3t-value" })),
    ).not.toContain("s3cr3t-value");
    expect(() => loadConfig({ ...identities, JIRA_BASE_URL: "https://me:s3cr3t-value@example.atlassian.net" })).toThrow(
      /^JIRA_BASE_URL: must not contain credentials/,
    );
    try {
      loadConfig({ ...identities, JIRA_BASE_URL: "https://me:s3cr3t-value@example.atlassian.net" });
    } catch (err) {
      expect((err as Error).message).not.toContain("s3cr3t-value");
    }
  });

  it.each([
    [{ JIRA_BASE_URL: "jira.example.com" }, "JIRA_BASE_URL"],
    [{ JIRA_BASE_URL: "ftp://jira.example.com" }, "JIRA_BASE_URL"],
    [{ JIRA_BASE_URL: "https://me:s3cret@example.atlassian.net" }, "JIRA_BASE_URL"],
    [{ JIRA_API_TOKEN: "t" }, "JIRA_EMAIL"],
    [{ JIRA_EMAIL: "a@b.c", JIRA_API_TOKEN: "t", JIRA_BEARER_TOKEN: "b" }, "JIRA_BEARER_TOKEN"],
    [{ JIRA_API_VERSION: "4" }, "JIRA_API_VERSION"],
    [{ JIRA_PORT: "70000" }, "JIRA_PORT"],
    [{ HOOKMESH_DRY_RUN: "maybe" }, "HOOKMESH_DRY_RUN"],
    [{ JIRA_TIMEOUT_MS: "0" }, "JIRA_TIMEOUT_MS"],
    [{ JIRA_MAX_ATTEMPTS: "11" }, "JIRA_MAX_ATTEMPTS"],
    [{ JIRA_BEARER_TOKEN_FILE: "/nonexistent/jira-token" }, "JIRA_BEARER_TOKEN_FILE"],
    [{ JIRA_API_TOKEN: "t", JIRA_API_TOKEN_FILE: "/x", JIRA_EMAIL: "a@b.c" }, "JIRA_API_TOKEN"],
    [{ REDIS_URL: "http://localhost" }, "REDIS_URL"],
  ])("fails fast naming the variable: %j", (env, variable) => {
    let error: unknown;
    try {
      loadConfig({ ...identities, ...env });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).variable).toBe(variable);
  });
});
