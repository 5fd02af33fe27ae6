import { ConfigError } from "@hookmesh/kit";
import { testIdentities } from "@hookmesh/kit/testing";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";

describe("tasks loadConfig", () => {
  it("defaults to ARCHITECTURE.md's port on loopback, mTLS as spiffe://hookmesh.local/tasks, and its own Redis prefix", async () => {
    const { env, home } = await testIdentities();
    expect(loadConfig(env)).toMatchObject({
      host: "127.0.0.1",
      port: 50051,
      redis: { url: "redis://127.0.0.1:6379", variable: "REDIS_URL", keyPrefix: "hookmesh:tasks:" },
      maxAttempts: 3,
      githubUrl: "https://127.0.0.1:50061",
      jiraUrl: "https://127.0.0.1:50063",
      budgets: { defaultMaxCostUsd: 5, defaultDailyBudgetUsd: 50, maxAttemptsCeiling: 10 },
      identity: { insecure: false, id: "spiffe://hookmesh.local/tasks", certFile: `${home}/tls/tasks.crt` },
    });
  });

  it("keeps ended tasks 30 days, ignored bodies an hour and 100,000 changes, and caps watchers, unless told otherwise", () => {
    expect(loadConfig({ HOOKMESH_INSECURE: "1" })).toMatchObject({
      retentionMs: 30 * 86_400_000,
      ignoredBodyRetentionMs: 3_600_000,
      maxWatchesPerCaller: 20,
      maxWatches: 1_000,
      changeLogMax: 100_000,
    });
    expect(loadConfig({ HOOKMESH_INSECURE: "1", TASKS_CHANGE_LOG_MAX: "5000" }).changeLogMax).toBe(5_000);
    expect(() => loadConfig({ HOOKMESH_INSECURE: "1", TASKS_CHANGE_LOG_MAX: "10" })).toThrow(/^TASKS_CHANGE_LOG_MAX: /);
    expect(
      loadConfig({ HOOKMESH_INSECURE: "1", TASKS_RETENTION: "12h", TASKS_IGNORED_BODY_RETENTION: "600000" }),
    ).toMatchObject({ retentionMs: 43_200_000, ignoredBodyRetentionMs: 600_000 });
    expect(() => loadConfig({ HOOKMESH_INSECURE: "1", TASKS_RETENTION: "forever" })).toThrow(/^TASKS_RETENTION: /);
    expect(() =>
      loadConfig({ HOOKMESH_INSECURE: "1", TASKS_RETENTION: "1h", TASKS_IGNORED_BODY_RETENTION: "2h" }),
    ).toThrow(/^TASKS_IGNORED_BODY_RETENTION: must not be longer than TASKS_RETENTION/);
    expect(() =>
      loadConfig({ HOOKMESH_INSECURE: "1", TASKS_MAX_WATCHES: "10", TASKS_MAX_WATCHES_PER_CALLER: "11" }),
    ).toThrow(/^TASKS_MAX_WATCHES_PER_CALLER: /);
  });

  it("runs cleartext only when told, and then only on loopback", () => {
    expect(loadConfig({ HOOKMESH_INSECURE: "1" })).toMatchObject({
      identity: { insecure: true },
      githubUrl: "http://127.0.0.1:50061",
    });
    expect(() => loadConfig({ HOOKMESH_INSECURE: "1", GITHUB_URL: "http://10.0.0.7:50061" })).toThrow(/^GITHUB_URL: /);
    expect(() => loadConfig({ HOOKMESH_INSECURE: "1", TASKS_HOST: "0.0.0.0" })).toThrow(
      /^TASKS_HOST: HOOKMESH_INSECURE=1 allows cleartext on loopback only/,
    );
  });

  it("fails fast naming the variable to fix", async () => {
    const { env } = await testIdentities();
    expect(() => loadConfig({ ...env, TASKS_PORT: "http" })).toThrow(
      new ConfigError("TASKS_PORT", 'expected an integer from 0 to 65535, got "http"'),
    );
    expect(() => loadConfig({ ...env, REDIS_URL: "http://localhost" })).toThrow(/^REDIS_URL: /);
    expect(() => loadConfig({ ...env, TASKS_MAX_ATTEMPTS: "0" })).toThrow(/^TASKS_MAX_ATTEMPTS: /);
    expect(() => loadConfig({ ...env, TASKS_DEFAULT_DAILY_BUDGET_USD: "-1" })).toThrow(
      /^TASKS_DEFAULT_DAILY_BUDGET_USD: /,
    );
    expect(() => loadConfig({ ...env, TASKS_MAX_ATTEMPTS: "5", TASKS_MAX_ATTEMPTS_CEILING: "4" })).toThrow(
      /^TASKS_MAX_ATTEMPTS_CEILING: expected an integer from 5 to 100/,
    );
    expect(() => loadConfig({ ...env, TASKS_TLS_CERT_FILE: "/nonexistent.pem" })).toThrow(/^TASKS_TLS_KEY_FILE: /);
    expect(() => loadConfig({ HOOKMESH_HOME: "/nonexistent" })).toThrow(
      /^TASKS_TLS_CERT_FILE: cannot read \/nonexistent\/tls\/tasks.crt: ENOENT; create development identities with `npx hookmesh certs`/,
    );
  });
});
