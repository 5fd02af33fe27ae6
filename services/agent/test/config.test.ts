import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "@hookmesh/kit";
import { testIdentities } from "@hookmesh/kit/testing";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";

/** The defaults need the development identities that `npm start` makes; tests have their own. */
const { env } = await testIdentities();

describe("agent loadConfig", () => {
  it("defaults to the port, tasks address and runner of ARCHITECTURE.md", () => {
    const config = loadConfig(env);
    expect(config).toMatchObject({
      port: 50052,
      host: "127.0.0.1",
      tasksUrl: "https://127.0.0.1:50051",
      identity: { insecure: false, id: "spiffe://hookmesh.local/agent" },
      defaultRunner: "command",
      agentCommand: undefined,
      claudeBin: "claude",
      concurrency: 2,
      maxRunTimeMs: 1_800_000,
      workdirRoot: join(tmpdir(), "hookmesh-runs"),
      killGraceMs: 5_000,
      outputChunkBytes: 4096,
      githubUrl: "https://127.0.0.1:50061",
      slackUrl: "https://127.0.0.1:50062",
      jiraUrl: "https://127.0.0.1:50063",
      sentryUrl: "https://127.0.0.1:50064",
      dashboardUrl: "http://127.0.0.1:8070",
      progressIntervalMs: 15_000,
      sandbox: { mode: "bwrap", bwrap: "/usr/bin/bwrap", readonlyPaths: [] },
    });
    expect(config.workerId).toMatch(new RegExp(`-${process.pid}-[0-9a-f]{6}$`));
    expect(loadConfig(env).workerId).not.toBe(config.workerId);
  });

  it("reads the runner settings", () => {
    expect(
      loadConfig({
        ...env,
        AGENT_RUNNER: "claude",
        AGENT_COMMAND: "my-agent --fast",
        CLAUDE_BIN: "/opt/claude",
        AGENT_ID: "w1",
      }),
    ).toMatchObject({
      defaultRunner: "claude",
      agentCommand: "my-agent --fast",
      claudeBin: "/opt/claude",
      workerId: "w1",
    });
  });

  it("reads the sandbox settings: bwrap (or on) by default, off only when asked", () => {
    expect(
      loadConfig({ ...env, AGENT_SANDBOX: "on", AGENT_SANDBOX_READONLY_PATHS: "/opt/claude, /srv/tools" }).sandbox,
    ).toEqual({ mode: "bwrap", bwrap: "/usr/bin/bwrap", readonlyPaths: ["/opt/claude", "/srv/tools"] });
    expect(loadConfig({ ...env, AGENT_SANDBOX: "off" }).sandbox.mode).toBe("off");
    expect(() => loadConfig({ ...env, AGENT_SANDBOX: "no" })).toThrow(/^AGENT_SANDBOX: /);
    expect(() => loadConfig({ ...env, AGENT_SANDBOX_READONLY_PATHS: "tools" })).toThrow(
      /^AGENT_SANDBOX_READONLY_PATHS: expected absolute paths/,
    );
  });

  it("reads the workspace settings: github.com, mirrors under the run directories, no bundles", () => {
    expect(loadConfig({ ...env, AGENT_WORKDIR: "/srv/runs" }).workspace).toEqual({
      gitUrl: "https://github.com",
      cacheDir: "/srv/runs/repos",
      cloneTimeoutMs: 600_000,
      maxRepoBytes: 2 * 1024 ** 3,
      maxCacheBytes: 20 * 1024 ** 3,
      configBundlesDir: undefined,
    });
    expect(
      loadConfig({
        ...env,
        GITHUB_GIT_URL: "https://ghe.example.com/",
        AGENT_REPO_CACHE: "/var/cache/hookmesh",
        AGENT_CONFIG_BUNDLES_DIR: "/etc/hookmesh/bundles",
      }).workspace,
    ).toMatchObject({
      gitUrl: "https://ghe.example.com",
      cacheDir: "/var/cache/hookmesh",
      configBundlesDir: "/etc/hookmesh/bundles",
    });
    expect(() => loadConfig({ ...env, GITHUB_GIT_URL: "https://x-access-token:ghs_x@github.com" })).toThrow(
      /^GITHUB_GIT_URL: must not hold credentials/,
    );
    expect(() => loadConfig({ ...env, AGENT_REPO_CACHE: "repos" })).toThrow(
      /^AGENT_REPO_CACHE: expected an absolute path/,
    );
    expect(() => loadConfig({ ...env, AGENT_CLONE_TIMEOUT_MS: "10" })).toThrow(/^AGENT_CLONE_TIMEOUT_MS: /);
  });

  it("reads the publishing commits' author: hookmesh's bot by default", () => {
    expect(loadConfig(env).gitAuthor).toEqual({
      name: "hookmesh[bot]",
      email: "hookmesh[bot]@users.noreply.github.com",
    });
    const custom = { ...env, AGENT_GIT_AUTHOR_NAME: "Acme Bot", AGENT_GIT_AUTHOR_EMAIL: "bot@acme.example" };
    expect(loadConfig(custom).gitAuthor).toEqual({ name: "Acme Bot", email: "bot@acme.example" });
    expect(() => loadConfig({ ...env, AGENT_GIT_AUTHOR_EMAIL: "not an address" })).toThrow(/AGENT_GIT_AUTHOR_EMAIL/);
    expect(() => loadConfig({ ...env, AGENT_GIT_AUTHOR_NAME: "Eve <e@x>" })).toThrow(/AGENT_GIT_AUTHOR_NAME/);
  });

  it("fails fast naming the variable to fix", () => {
    expect(() => loadConfig({ ...env, AGENT_RUNNER: "codex" })).toThrow(
      new ConfigError("AGENT_RUNNER", 'expected one of command, claude, got "codex"'),
    );
    expect(() => loadConfig({ ...env, AGENT_CONCURRENCY: "0" })).toThrow(/^AGENT_CONCURRENCY: /);
    expect(() => loadConfig({ ...env, AGENT_PORT: "x" })).toThrow(/^AGENT_PORT: /);
    expect(() => loadConfig({ ...env, TASKS_URL: "redis://x" })).toThrow(/^TASKS_URL: /);
    expect(() => loadConfig({ ...env, GITHUB_URL: "http://github:50061" })).toThrow(/^GITHUB_URL: calls go over mTLS/);
    expect(() => loadConfig({ HOOKMESH_INSECURE: "1", SLACK_URL: "http://slack:50062" })).toThrow(
      /^SLACK_URL: HOOKMESH_INSECURE=1 allows cleartext on loopback only/,
    );
    expect(() => loadConfig({ ...env, HOOKMESH_DASHBOARD_URL: "dash" })).toThrow(/^HOOKMESH_DASHBOARD_URL: /);
    expect(() => loadConfig({ ...env, AGENT_PROGRESS_INTERVAL_MS: "-1" })).toThrow(/^AGENT_PROGRESS_INTERVAL_MS: /);
    expect(() => loadConfig({ ...env, AGENT_MAX_RUN_TIME_MS: "0" })).toThrow(/^AGENT_MAX_RUN_TIME_MS: /);
    expect(() => loadConfig({ ...env, AGENT_TLS_CERT_FILE: "/nonexistent.pem" })).toThrow(/^AGENT_TLS_KEY_FILE: /);
  });
});
