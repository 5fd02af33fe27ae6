import { describe, expect, it } from "vitest";
import { ConfigError } from "@hookmesh/kit";
import { loadConfig } from "../src/config.js";

describe("tasks loadConfig", () => {
  it("defaults to the ports and Redis of ARCHITECTURE.md", () => {
    expect(loadConfig({})).toMatchObject({
      port: 50051,
      redisUrl: "redis://127.0.0.1:6379",
      redisKeyPrefix: "hookmesh:tasks:",
      maxAttempts: 3,
      tls: undefined,
    });
  });

  it("fails fast naming the variable to fix", () => {
    expect(() => loadConfig({ TASKS_PORT: "http" })).toThrow(new ConfigError("TASKS_PORT", 'expected an integer from 0 to 65535, got "http"'));
    expect(() => loadConfig({ REDIS_URL: "http://localhost" })).toThrow(/^REDIS_URL: /);
    expect(() => loadConfig({ TASKS_MAX_ATTEMPTS: "0" })).toThrow(/^TASKS_MAX_ATTEMPTS: /);
    expect(() => loadConfig({ TASKS_TLS_CERT_FILE: "/nonexistent.pem" })).toThrow(/^TASKS_TLS_KEY_FILE: /);
  });
});
