import { generateKeyPairSync, verify } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { parseAppPrivateKey, signAppJwt } from "../src/app-jwt.js";
import { githubErrorCode, githubRateLimit, SECONDARY_RATE_LIMIT_WAIT_MS, webOrigin } from "../src/upstream.js";
import { appKeys } from "./helpers.js";

const headers = (values: Record<string, string>) => new Headers(values);

describe("githubRateLimit", () => {
  const now = () => Math.floor(Date.now() / 1000);

  it("waits for X-RateLimit-Reset when the primary limit is used up (403 or 429)", () => {
    for (const status of [403, 429]) {
      const wait = githubRateLimit(
        status,
        headers({ "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(now() + 30) }),
        { message: "API rate limit exceeded" },
      )!;
      expect(wait).toBeGreaterThan(28_000);
      expect(wait).toBeLessThanOrEqual(30_000);
    }
    expect(
      githubRateLimit(403, headers({ "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(now() - 5) }), {}),
    ).toBe(0);
  });

  it("prefers Retry-After, and waits a minute on a secondary limit that names no wait", () => {
    const secondary = {
      message: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
    };
    expect(githubRateLimit(403, headers({ "retry-after": "7" }), secondary)).toBe(7_000);
    expect(githubRateLimit(429, headers({ "retry-after": "2" }), undefined)).toBe(2_000);
    expect(githubRateLimit(403, headers({}), secondary)).toBe(SECONDARY_RATE_LIMIT_WAIT_MS);
    expect(githubRateLimit(403, headers({}), { message: "You have triggered an abuse detection mechanism." })).toBe(
      60_000,
    );
    expect(githubRateLimit(429, headers({ "x-ratelimit-remaining": "4000" }), undefined)).toBe(60_000);
  });

  it("leaves refusals and other answers alone", () => {
    expect(
      githubRateLimit(403, headers({ "x-ratelimit-remaining": "4999" }), {
        message: "Resource not accessible by integration",
      }),
    ).toBeUndefined();
    expect(
      githubRateLimit(403, headers({ "retry-after": "5" }), { message: "Must have admin rights to Repository." }),
    ).toBeUndefined();
    expect(githubRateLimit(404, headers({ "x-ratelimit-remaining": "0" }), {})).toBeUndefined();
    expect(githubRateLimit(500, headers({ "retry-after": "1" }), {})).toBeUndefined();
    expect(githubRateLimit(201, headers({ "x-ratelimit-remaining": "0" }), {})).toBeUndefined();
  });
});

describe("githubErrorCode", () => {
  it("maps a locked issue to FailedPrecondition and leaves the rest to HTTP semantics", () => {
    expect(githubErrorCode(403, { message: "Unable to create comment because issue is locked." })).toBe(
      Code.FailedPrecondition,
    );
    expect(githubErrorCode(403, { message: "Resource not accessible by integration" })).toBeUndefined();
    expect(githubErrorCode(404, { message: "Not Found" })).toBeUndefined();
  });
});

describe("webOrigin", () => {
  it("is github.com for api.github.com, the server for GHES, and the tenant for ghe.com", () => {
    expect(webOrigin("https://api.github.com")).toEqual({ protocol: "https:", host: "github.com" });
    expect(webOrigin("https://ghe.example.com/api/v3")).toEqual({ protocol: "https:", host: "ghe.example.com" });
    expect(webOrigin("https://ghe.example.com:8443/api/v3")).toEqual({
      protocol: "https:",
      host: "ghe.example.com:8443",
    });
    expect(webOrigin("https://api.acme.ghe.com")).toEqual({ protocol: "https:", host: "acme.ghe.com" });
  });
});

describe("signAppJwt", () => {
  it("signs RS256 with iat = now − 60 s, exp = now + 9 min and iss = the App id", () => {
    const { privateKey, publicKey } = appKeys();
    const nowMs = Date.UTC(2026, 4, 1, 12, 0, 0);
    const jwt = signAppJwt("12345", privateKey, nowMs);
    const [header, payload, signature] = jwt.split(".") as [string, string, string];
    expect(JSON.parse(Buffer.from(header, "base64url").toString())).toEqual({ alg: "RS256", typ: "JWT" });
    const now = nowMs / 1000;
    expect(JSON.parse(Buffer.from(payload, "base64url").toString())).toEqual({
      iat: now - 60,
      exp: now + 540,
      iss: "12345",
    });
    expect(
      verify("RSA-SHA256", Buffer.from(`${header}.${payload}`), publicKey, Buffer.from(signature, "base64url")),
    ).toBe(true);
  });

  it("parses PKCS#1 and PKCS#8 RSA keys, and refuses other keys", () => {
    const { privateKey, pem } = appKeys();
    expect(parseAppPrivateKey(pem).asymmetricKeyType).toBe("rsa");
    expect(parseAppPrivateKey(privateKey.export({ type: "pkcs8", format: "pem" }).toString()).asymmetricKeyType).toBe(
      "rsa",
    );
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" })
      .privateKey.export({ type: "pkcs8", format: "pem" })
      .toString();
    expect(() => parseAppPrivateKey(ec)).toThrow("is a ec key; GitHub Apps sign with RSA");
    expect(() => parseAppPrivateKey("not a key")).toThrow("is not a PEM-encoded private key");
  });
});
