import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  ConfigError,
  type Env,
  envBool,
  envInt,
  envLogLevel,
  envNumber,
  envPort,
  envRedis,
  envSecrets,
  envString,
  envUrl,
} from "../src/config.js";

const dir = mkdtempSync(join(tmpdir(), "hookmesh-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

/** Runs `fn`, expecting a ConfigError, and returns it. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("envString", () => {
  it("returns the value, trimmed", () => {
    expect(envString({ A: "  x  " }, "A", "d")).toBe("x");
  });

  it.each<[string, Env]>([
    ["unset", {}],
    ["empty", { A: "" }],
    ["blank", { A: "   " }],
  ])("falls back when %s", (_, env) => {
    expect(envString(env, "A", "d")).toBe("d");
  });
});

describe("envInt", () => {
  it("parses integers and falls back when unset", () => {
    expect(envInt({ N: "42" }, "N", 1)).toBe(42);
    expect(envInt({ N: "-7" }, "N", 1)).toBe(-7);
    expect(envInt({}, "N", 1)).toBe(1);
    expect(envInt({ N: " " }, "N", 1)).toBe(1);
  });

  it.each(["abc", "1.5", "12abc", "1e400", "NaN", "Infinity"])("rejects %j, naming the variable", (raw) => {
    const err = configError(() => envInt({ MY_INT: raw }, "MY_INT", 1));
    expect(err.variable).toBe("MY_INT");
    expect(err.message).toMatch(/^MY_INT: /);
    expect(err.name).toBe("ConfigError");
  });

  it("enforces the range, inclusive", () => {
    expect(envInt({ N: "1" }, "N", 5, { min: 1, max: 10 })).toBe(1);
    expect(envInt({ N: "10" }, "N", 5, { min: 1, max: 10 })).toBe(10);
    expect(configError(() => envInt({ N: "0" }, "N", 5, { min: 1, max: 10 })).message).toBe(
      'N: expected an integer from 1 to 10, got "0"',
    );
    expect(() => envInt({ N: "11" }, "N", 5, { min: 1, max: 10 })).toThrow(ConfigError);
  });
});

describe("envNumber", () => {
  it("parses decimals within the range and falls back when unset", () => {
    expect(envNumber({ USD: "2.5" }, "USD", 5, { min: 0, max: 10 })).toBe(2.5);
    expect(envNumber({}, "USD", 5, { min: 0, max: 10 })).toBe(5);
  });

  it.each(["abc", "-1", "11", "NaN", "Infinity"])("rejects %j, naming the variable", (raw) => {
    expect(configError(() => envNumber({ USD: raw }, "USD", 5, { min: 0, max: 10 })).message).toBe(
      `USD: expected a number from 0 to 10, got "${raw}"`,
    );
  });
});

describe("envPort", () => {
  it("accepts 0 to 65535", () => {
    expect(envPort({ P: "0" }, "P", 1)).toBe(0);
    expect(envPort({ P: "65535" }, "P", 1)).toBe(65535);
    expect(envPort({}, "P", 50051)).toBe(50051);
  });

  it.each(["-1", "65536", "http"])("rejects %j", (raw) => {
    expect(configError(() => envPort({ TASKS_PORT: raw }, "TASKS_PORT", 1)).variable).toBe("TASKS_PORT");
  });
});

describe("envUrl", () => {
  it("returns the URL without trailing slashes", () => {
    expect(envUrl({ U: "http://127.0.0.1:50051/" }, "U", "http://x")).toBe("http://127.0.0.1:50051");
    expect(envUrl({ U: "https://example.com/api//" }, "U", "http://x")).toBe("https://example.com/api");
    expect(envUrl({}, "U", "http://fallback:1")).toBe("http://fallback:1");
  });

  it("accepts the given protocols only", () => {
    const redis = ["redis:", "rediss:"];
    expect(envUrl({ R: "rediss://h:6380" }, "R", "redis://x", redis)).toBe("rediss://h:6380");
    const err = configError(() => envUrl({ R: "http://h" }, "R", "redis://x", redis));
    expect(err.variable).toBe("R");
    expect(err.message).toContain("redis: or rediss:");
    expect(() => envUrl({ U: "ftp://h" }, "U", "http://x")).toThrow(ConfigError);
  });

  it("rejects relative or malformed URLs", () => {
    expect(configError(() => envUrl({ TASKS_URL: "localhost:50051/x" }, "TASKS_URL", "http://x")).variable).toBe(
      "TASKS_URL",
    );
    expect(configError(() => envUrl({ TASKS_URL: "/path" }, "TASKS_URL", "http://x")).message).toMatch(
      /^TASKS_URL: expected an absolute URL/,
    );
  });
});

describe("envRedis", () => {
  it("falls back to REDIS_URL and the default prefix", () => {
    expect(envRedis({}, "TASKS", "hookmesh:tasks:")).toEqual({
      url: "redis://127.0.0.1:6379",
      variable: "REDIS_URL",
      keyPrefix: "hookmesh:tasks:",
    });
    expect(envRedis({ REDIS_URL: "redis://r:6379/2" }, "TASKS", "hookmesh:tasks:").url).toBe("redis://r:6379/2");
  });

  it("prefers the service's own URL, password (or its file) and prefix", () => {
    const env = {
      REDIS_URL: "redis://shared:6379",
      TASKS_REDIS_URL: "redis://hookmesh-tasks@own:6379",
      TASKS_REDIS_PASSWORD_FILE: file("redis-password", "s3cret\n"),
      TASKS_REDIS_PREFIX: "t:",
    };
    expect(envRedis(env, "TASKS", "hookmesh:tasks:")).toEqual({
      url: "redis://hookmesh-tasks@own:6379",
      variable: "TASKS_REDIS_URL",
      keyPrefix: "t:",
      password: "s3cret",
    });
  });

  it("refuses a password in two places and a prefix that would widen an ACL pattern", () => {
    expect(() => envRedis({ TASKS_REDIS_URL: "redis://u:p@h:6379", TASKS_REDIS_PASSWORD: "q" }, "TASKS", "x:")).toThrow(
      /TASKS_REDIS_PASSWORD: TASKS_REDIS_URL has a password already/,
    );
    expect(() => envRedis({ TASKS_REDIS_PREFIX: "hookmesh:*" }, "TASKS", "x:")).toThrow(
      /TASKS_REDIS_PREFIX: must not contain glob/,
    );
  });
});

describe("envLogLevel", () => {
  it("defaults to info and accepts pino's levels in any case", () => {
    expect(envLogLevel({})).toBe("info");
    expect(envLogLevel({ LOG_LEVEL: "DEBUG" })).toBe("debug");
    expect(envLogLevel({ LOG_LEVEL: "silent" })).toBe("silent");
  });

  it("names the variable for a level pino does not know", () => {
    expect(() => envLogLevel({ LOG_LEVEL: "verbose" })).toThrow(
      /LOG_LEVEL: expected one of fatal, error, warn, info, debug, trace, silent, got "verbose"/,
    );
  });
});

describe("envBool", () => {
  it.each([
    ["1", true],
    ["true", true],
    ["TRUE", true],
    ["yes", true],
    ["0", false],
    ["false", false],
    ["No", false],
  ])("reads %j as %s", (raw, expected) => {
    expect(envBool({ B: raw }, "B", !expected)).toBe(expected);
  });

  it("falls back when unset, rejects anything else", () => {
    expect(envBool({}, "B", true)).toBe(true);
    expect(envBool({ B: "" }, "B", false)).toBe(false);
    expect(configError(() => envBool({ DEBUG: "maybe" }, "DEBUG", false)).variable).toBe("DEBUG");
  });
});

describe("envSecrets", () => {
  const secret = "s3cr3t-value-never-logged";

  it("reads one secret from the variable", () => {
    expect(envSecrets({ HOOK_SECRET: secret }, "HOOK_SECRET")).toEqual([secret]);
  });

  it("splits a comma-separated rotation list, dropping blanks", () => {
    expect(envSecrets({ HOOK_SECRET: " new-one , old-one ,, " }, "HOOK_SECRET")).toEqual(["new-one", "old-one"]);
  });

  it("is empty when unset", () => {
    expect(envSecrets({}, "HOOK_SECRET")).toEqual([]);
    expect(envSecrets({ HOOK_SECRET: " " }, "HOOK_SECRET")).toEqual([]);
  });

  it("reads the file named by NAME_FILE, trimming the trailing newline", () => {
    const path = file("one-secret", `${secret}\n`);
    expect(envSecrets({ HOOK_SECRET_FILE: path }, "HOOK_SECRET")).toEqual([secret]);
  });

  it("reads a rotation list from the file", () => {
    const path = file("two-secrets", "new-one,old-one\n");
    expect(envSecrets({ HOOK_SECRET_FILE: path }, "HOOK_SECRET")).toEqual(["new-one", "old-one"]);
  });

  it("refuses both NAME and NAME_FILE, without echoing the secret", () => {
    const path = file("both", secret);
    const err = configError(() => envSecrets({ HOOK_SECRET: secret, HOOK_SECRET_FILE: path }, "HOOK_SECRET"));
    expect(err.variable).toBe("HOOK_SECRET");
    expect(err.message).toContain("HOOK_SECRET_FILE");
    expect(err.message).not.toContain(secret);
    expect(String(err.stack)).not.toContain(secret);
  });

  it("names NAME_FILE when the file cannot be read", () => {
    const missing = join(dir, "does-not-exist");
    const err = configError(() => envSecrets({ HOOK_SECRET_FILE: missing }, "HOOK_SECRET"));
    expect(err.variable).toBe("HOOK_SECRET_FILE");
    expect(err.message).toContain("ENOENT");
  });
});
