import { createHmac } from "node:crypto";
import { signGitHub } from "@hookmesh/kit/testing";
import { describe, expect, it } from "vitest";
import { GitHubProvider } from "../src/github/provider.js";
import { WebhookRejection } from "../src/http-errors.js";
import { incoming } from "./provider-helpers.js";

const github = new GitHubProvider();

/** Whether the GitHub provider takes `header` as the signature of `rawBody` with `secrets` configured. */
function verifyGitHubSignature(rawBody: Buffer, header: string | undefined, secrets: readonly string[]): boolean {
  try {
    github.verify(
      incoming(rawBody, header === undefined ? {} : { "x-hub-signature-256": header }, "application/json", new Date()),
      secrets,
    );
    return true;
  } catch (err) {
    if (err instanceof WebhookRejection && err.status === 401) return false;
    throw err;
  }
}

const SECRET = "It's a Secret to Everybody";
const body = Buffer.from('{"action":"created","comment":{"body":"hello"}}');

/** GitHub's own documented test vector for X-Hub-Signature-256. */
const GITHUB_VECTOR = {
  secret: "It's a Secret to Everybody",
  payload: "Hello, World!",
  signature: "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
};

describe("signGitHub, the tests' signer", () => {
  it("matches GitHub's documented test vector", () => {
    expect(signGitHub(GITHUB_VECTOR.payload, GITHUB_VECTOR.secret)).toBe(GITHUB_VECTOR.signature);
    expect(signGitHub(Buffer.from(GITHUB_VECTOR.payload), GITHUB_VECTOR.secret)).toBe(GITHUB_VECTOR.signature);
  });

  it("is sha256= followed by 64 lowercase hex digits", () => {
    expect(signGitHub(body, SECRET)).toMatch(/^sha256=[0-9a-f]{64}$/);
  });
});

describe("GitHubProvider.verify", () => {
  const valid = signGitHub(body, SECRET);
  const hex = valid.slice("sha256=".length);

  it("accepts the signature of the exact body", () => {
    expect(verifyGitHubSignature(body, valid, [SECRET])).toBe(true);
    expect(
      verifyGitHubSignature(Buffer.from(GITHUB_VECTOR.payload), GITHUB_VECTOR.signature, [GITHUB_VECTOR.secret]),
    ).toBe(true);
  });

  it("accepts a signature made with any configured secret (rotation)", () => {
    expect(verifyGitHubSignature(body, valid, ["old-secret", SECRET])).toBe(true);
    expect(verifyGitHubSignature(body, valid, [SECRET, "new-secret"])).toBe(true);
    expect(verifyGitHubSignature(body, signGitHub(body, "new-secret"), [SECRET, "new-secret"])).toBe(true);
  });

  it("rejects a signature made with another secret", () => {
    expect(verifyGitHubSignature(body, signGitHub(body, "wrong"), [SECRET])).toBe(false);
    expect(verifyGitHubSignature(body, signGitHub(body, "wrong"), [SECRET, "also-not-it"])).toBe(false);
  });

  it("rejects everything when no secret is configured", () => {
    expect(verifyGitHubSignature(body, valid, [])).toBe(false);
  });

  it("rejects a tampered body", () => {
    const tampered = Buffer.from(body);
    tampered[10] = tampered[10]! ^ 0x01;
    expect(verifyGitHubSignature(tampered, valid, [SECRET])).toBe(false);
    expect(verifyGitHubSignature(Buffer.concat([body, Buffer.from(" ")]), valid, [SECRET])).toBe(false);
    expect(verifyGitHubSignature(Buffer.alloc(0), valid, [SECRET])).toBe(false);
  });

  it("rejects a missing header or one without the sha256= prefix", () => {
    expect(verifyGitHubSignature(body, undefined, [SECRET])).toBe(false);
    expect(verifyGitHubSignature(body, "", [SECRET])).toBe(false);
    expect(verifyGitHubSignature(body, hex, [SECRET])).toBe(false);
    expect(verifyGitHubSignature(body, `SHA256=${hex}`, [SECRET])).toBe(false);
    expect(verifyGitHubSignature(body, ` sha256=${hex}`, [SECRET])).toBe(false);
    // The legacy SHA-1 header format is not accepted in place of SHA-256.
    const sha1 = createHmac("sha1", SECRET).update(body).digest("hex");
    expect(verifyGitHubSignature(body, `sha1=${sha1}`, [SECRET])).toBe(false);
  });

  it("rejects non-hex signatures without throwing", () => {
    expect(verifyGitHubSignature(body, "sha256=", [SECRET])).toBe(false);
    expect(verifyGitHubSignature(body, `sha256=${"z".repeat(64)}`, [SECRET])).toBe(false);
    // The right HMAC, base64-encoded instead of hex.
    const base64 = createHmac("sha256", SECRET).update(body).digest("base64");
    expect(verifyGitHubSignature(body, `sha256=${base64}`, [SECRET])).toBe(false);
    // One character of the valid signature replaced by a non-hex one.
    expect(verifyGitHubSignature(body, `sha256=${hex.slice(0, 20)}g${hex.slice(21)}`, [SECRET])).toBe(false);
  });

  it("rejects signatures of the wrong length without throwing", () => {
    expect(verifyGitHubSignature(body, `sha256=${hex.slice(0, 62)}`, [SECRET])).toBe(false);
    expect(verifyGitHubSignature(body, `sha256=${hex.slice(0, 63)}`, [SECRET])).toBe(false);
    expect(verifyGitHubSignature(body, `sha256=${hex}00`, [SECRET])).toBe(false);
    expect(verifyGitHubSignature(body, `sha256=${"0".repeat(128)}`, [SECRET])).toBe(false);
  });

  it("rejects the valid signature followed by anything", () => {
    // Buffer.from(hex, "hex") stops at the first non-hex character and drops an odd last
    // digit, so these decode to the right 32 bytes; the header as a whole is still malformed.
    expect(verifyGitHubSignature(body, `${valid}0`, [SECRET])).toBe(false);
    expect(verifyGitHubSignature(body, `${valid}zz`, [SECRET])).toBe(false);
    expect(verifyGitHubSignature(body, `${valid} `, [SECRET])).toBe(false);
    expect(verifyGitHubSignature(body, `${valid},sha256=${hex}`, [SECRET])).toBe(false);
  });

  it("accepts upper-case hex: the same digest, and hex is case-insensitive", () => {
    // GitHub sends lower case; a proxy or tool that upper-cases the digest still proves the
    // sender knows the secret, so refusing it would buy nothing.
    expect(verifyGitHubSignature(body, `sha256=${hex.toUpperCase()}`, [SECRET])).toBe(true);
  });

  it("treats secrets as exact strings (no trimming, case-sensitive)", () => {
    expect(verifyGitHubSignature(body, valid, [`${SECRET} `])).toBe(false);
    expect(verifyGitHubSignature(body, valid, [SECRET.toUpperCase()])).toBe(false);
  });
});
