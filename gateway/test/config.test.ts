import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";

describe("gateway loadConfig", () => {
  it("defaults to the ports of ARCHITECTURE.md and no GitHub secret", () => {
    expect(loadConfig({})).toMatchObject({
      httpPort: 8080,
      grpcPort: 50050,
      tasksUrl: "http://127.0.0.1:50051",
      githubWebhookSecrets: [],
      githubMaxBodyBytes: 25 * 1024 * 1024,
    });
  });

  it("reads rotated secrets from the variable or its _FILE", () => {
    expect(loadConfig({ GITHUB_WEBHOOK_SECRET: "new, old" }).githubWebhookSecrets).toEqual(["new", "old"]);
    const file = join(mkdtempSync(join(tmpdir(), "gateway-config-")), "secret");
    writeFileSync(file, "from-file\n");
    expect(loadConfig({ GITHUB_WEBHOOK_SECRET_FILE: file }).githubWebhookSecrets).toEqual(["from-file"]);
  });

  it("fails fast naming the variable to fix, never echoing a secret", () => {
    expect(() => loadConfig({ TASKS_URL: "tasks:50051" })).toThrow(/^TASKS_URL: /);
    expect(() => loadConfig({ GATEWAY_HTTP_PORT: "99999" })).toThrow(/^GATEWAY_HTTP_PORT: /);
    expect(() => loadConfig({ GITHUB_MAX_BODY_BYTES: String(100 * 1024 * 1024) })).toThrow(/^GITHUB_MAX_BODY_BYTES: /);
    let message = "";
    try {
      loadConfig({ GITHUB_WEBHOOK_SECRET: "s3cr3t-value", GITHUB_WEBHOOK_SECRET_FILE: "/x" });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/^GITHUB_WEBHOOK_SECRET: /);
    expect(message).not.toContain("s3cr3t-value");
  });
});
