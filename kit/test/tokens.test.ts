import * as crypto from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it, vi } from "vitest";
import { createOperatorToken, envOperatorTokens, OperatorTokens } from "../src/auth/tokens.js";
import { ConfigError } from "../src/config.js";

// Spied on, so a test can see that token hashes are compared in constant time.
vi.mock("node:crypto", async (original) => {
  const actual = await original<typeof import("node:crypto")>();
  return { ...actual, timingSafeEqual: vi.fn(actual.timingSafeEqual) };
});

function tokenFile(text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), "hookmesh-tokens-")), "operator-tokens");
  writeFileSync(path, text);
  return path;
}

describe("createOperatorToken", () => {
  it("makes a 32-byte base64url token and the line that stores its hash", () => {
    const { token, line } = createOperatorToken("operator");
    expect(Buffer.from(token, "base64url")).toHaveLength(32);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(line).toBe(`operator:sha256:${crypto.createHash("sha256").update(token).digest("hex")}`);
    expect(line).not.toContain(token);
    expect(OperatorTokens.parse(line).identify(token)).toBe("operator");
  });

  it("makes a different token each time", () => {
    expect(createOperatorToken("dashboard").token).not.toBe(createOperatorToken("dashboard").token);
  });

  it("refuses a name the access option could not spell", () => {
    expect(() => createOperatorToken("Operator")).toThrow(/lowercase/);
    expect(() => createOperatorToken("ops:admin")).toThrow(/lowercase/);
  });
});

describe("OperatorTokens", () => {
  const operator = createOperatorToken("operator");
  const dashboard = createOperatorToken("dashboard");
  const rotated = createOperatorToken("operator");

  it("maps each stored token to its identity, several per name, skipping comments and blank lines", () => {
    const dashboardUppercaseHex = dashboard.line.replace(/[0-9a-f]{64}$/, (hex) => hex.toUpperCase());
    const tokens = OperatorTokens.parse(
      ["# issued 2026-01-01", operator.line, "", `  ${dashboardUppercaseHex}  `, rotated.line, ""].join("\r\n"),
    );
    expect(tokens.size).toBe(3);
    expect(tokens.identify(operator.token)).toBe("operator");
    expect(tokens.identify(rotated.token)).toBe("operator");
    expect(tokens.identify(dashboard.token)).toBe("dashboard");
  });

  it("knows no other token: a wrong one, a stored hash presented as a token, an empty one", () => {
    const tokens = OperatorTokens.parse(operator.line);
    expect(tokens.identify(dashboard.token)).toBeUndefined();
    expect(tokens.identify(operator.line.split(":")[2]!)).toBeUndefined();
    expect(tokens.identify("")).toBeUndefined();
    expect(OperatorTokens.none().identify(operator.token)).toBeUndefined();
  });

  it("compares the hash with every stored one in constant time, not stopping at a match", () => {
    const tokens = OperatorTokens.parse([operator.line, dashboard.line, rotated.line].join("\n"));
    const compare = vi.mocked(crypto.timingSafeEqual);
    compare.mockClear();
    expect(tokens.identify(operator.token)).toBe("operator");
    expect(compare).toHaveBeenCalledTimes(3);
    compare.mockClear();
    expect(tokens.identify("wrong")).toBeUndefined();
    expect(compare).toHaveBeenCalledTimes(3);
  });

  it.each([
    ["no hash", "operator", /line 2: expected name:sha256/],
    ["another algorithm", `operator:md5:${"a".repeat(32)}`, /line 2: expected name:sha256/],
    ["a short hash", `operator:sha256:${"a".repeat(63)}`, /line 2: expected name:sha256/],
    ["a raw token", createOperatorToken("operator").token, /line 2: expected name:sha256/],
    ["an uppercase name", `Operator:sha256:${"a".repeat(64)}`, /line 2: the identity name must be lowercase/],
    [
      "the same hash twice",
      `dashboard:sha256:${"a".repeat(64)}`,
      /line 2: the same token is already stored for "operator"/,
    ],
  ])("refuses %s, naming the line but not its text", (_, line, problem) => {
    const text = `operator:sha256:${"a".repeat(64)}\n${line}\n`;
    const err = (() => {
      try {
        OperatorTokens.parse(text);
      } catch (err) {
        return err as Error;
      }
      throw new Error("expected the file to be refused");
    })();
    expect(err.message).toMatch(problem);
    expect(err.message).not.toContain(line);
  });
});

describe("envOperatorTokens", () => {
  it("accepts no token when HOOKMESH_OPERATOR_TOKENS_FILE is unset", () => {
    expect(envOperatorTokens({}).size).toBe(0);
  });

  it("reads the file HOOKMESH_OPERATOR_TOKENS_FILE names", () => {
    const { token, line } = createOperatorToken("dashboard");
    const tokens = envOperatorTokens({ HOOKMESH_OPERATOR_TOKENS_FILE: tokenFile(`${line}\n`) });
    expect(tokens.identify(token)).toBe("dashboard");
  });

  it("names the variable when the file cannot be read or is malformed, never echoing its content", () => {
    const missing = () => envOperatorTokens({ HOOKMESH_OPERATOR_TOKENS_FILE: "/nonexistent/tokens" });
    expect(missing).toThrow(ConfigError);
    expect(missing).toThrow("HOOKMESH_OPERATOR_TOKENS_FILE: cannot read /nonexistent/tokens: ENOENT");
    const { token } = createOperatorToken("operator");
    const path = tokenFile(`${token}\n`);
    const malformed = () => envOperatorTokens({ HOOKMESH_OPERATOR_TOKENS_FILE: path });
    expect(malformed).toThrow(ConfigError);
    expect(malformed).toThrow(`HOOKMESH_OPERATOR_TOKENS_FILE: ${path}, line 1: expected name:sha256:<64 hex digits>`);
  });
});
