import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError } from "@hookmesh/kit";
import { loadConfig } from "../src/config.js";

describe("agent loadConfig", () => {
  it("defaults to the port, tasks address and runner of ARCHITECTURE.md", () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      port: 50052,
      tasksUrl: "http://127.0.0.1:50051",
      defaultRunner: "command",
      agentCommand: undefined,
      claudeBin: "claude",
      concurrency: 2,
      maxRunTimeMs: 1_800_000,
      workdirRoot: join(tmpdir(), "hookmesh-runs"),
      killGraceMs: 5_000,
      outputChunkBytes: 4096,
      tls: undefined,
      githubUrl: "http://127.0.0.1:50061",
      slackUrl: "http://127.0.0.1:50062",
      jiraUrl: "http://127.0.0.1:50063",
      sentryUrl: "http://127.0.0.1:50064",
      dashboardUrl: "http://127.0.0.1:8080",
      progressIntervalMs: 15_000,
    });
    expect(config.workerId).toMatch(new RegExp(`-${process.pid}-[0-9a-f]{6}$`));
    expect(loadConfig({}).workerId).not.toBe(config.workerId);
  });

  it("reads the runner settings", () => {
    expect(loadConfig({ AGENT_RUNNER: "claude", AGENT_COMMAND: "my-agent --fast", CLAUDE_BIN: "/opt/claude", AGENT_ID: "w1" })).toMatchObject({
      defaultRunner: "claude",
      agentCommand: "my-agent --fast",
      claudeBin: "/opt/claude",
      workerId: "w1",
    });
  });

  it("fails fast naming the variable to fix", () => {
    expect(() => loadConfig({ AGENT_RUNNER: "codex" })).toThrow(new ConfigError("AGENT_RUNNER", 'expected one of command, claude, got "codex"'));
    expect(() => loadConfig({ AGENT_CONCURRENCY: "0" })).toThrow(/^AGENT_CONCURRENCY: /);
    expect(() => loadConfig({ AGENT_PORT: "x" })).toThrow(/^AGENT_PORT: /);
    expect(() => loadConfig({ TASKS_URL: "redis://x" })).toThrow(/^TASKS_URL: /);
    expect(() => loadConfig({ HOOKMESH_DASHBOARD_URL: "dash" })).toThrow(/^HOOKMESH_DASHBOARD_URL: /);
    expect(() => loadConfig({ AGENT_PROGRESS_INTERVAL_MS: "-1" })).toThrow(/^AGENT_PROGRESS_INTERVAL_MS: /);
    expect(() => loadConfig({ AGENT_MAX_RUN_TIME_MS: "0" })).toThrow(/^AGENT_MAX_RUN_TIME_MS: /);
    expect(() => loadConfig({ AGENT_TLS_CERT_FILE: "/nonexistent.pem" })).toThrow(/^AGENT_TLS_KEY_FILE: /);
  });
});
