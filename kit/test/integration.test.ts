import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { abortAfter } from "../src/abort.js";
import { ConfigError, checkSecretSource } from "../src/config.js";
import { IdempotencyUnavailableError, InvalidRequestError } from "../src/errors.js";
import { DEFAULT_SERVER_LIMITS } from "../src/limits.js";
import { memoryLogger } from "../src/testing/index.js";
import {
  envIntegration,
  MissingCredentialError,
  mapUpstreamError,
  UpstreamClient,
  UpstreamError,
} from "../src/upstream/index.js";

describe("envIntegration", () => {
  // Cleartext, because no identity named `acme` exists; the identity settings have tests of their own.
  const insecure = { HOOKMESH_INSECURE: "1" };

  it("reads what every integration service configures the same way, under its prefix", () => {
    expect(envIntegration(insecure, "ACME", 50070)).toEqual({
      host: "127.0.0.1",
      port: 50070,
      identity: { insecure: true },
      operatorTokens: expect.anything(),
      limits: DEFAULT_SERVER_LIMITS,
      admin: { host: "127.0.0.1", port: 51070 },
      redis: { url: "redis://127.0.0.1:6379", variable: "REDIS_URL", keyPrefix: "hookmesh:acme:" },
      dryRun: false,
      upstream: { attemptTimeoutMs: 10_000, maxAttempts: 4 },
      shutdownGraceMs: 10_000,
      logLevel: "info",
    });
    const env = {
      ...insecure,
      ACME_PORT: "0",
      ACME_REDIS_PREFIX: "x:",
      ACME_TIMEOUT_MS: "500",
      ACME_MAX_ATTEMPTS: "1",
      HOOKMESH_DRY_RUN: "yes",
    };
    expect(envIntegration(env, "ACME", 1)).toMatchObject({
      port: 0,
      redis: { keyPrefix: "x:" },
      upstream: { attemptTimeoutMs: 500, maxAttempts: 1 },
      dryRun: true,
    });
  });

  it.each([
    [{ ACME_TIMEOUT_MS: "0" }, "ACME_TIMEOUT_MS"],
    [{ ACME_MAX_ATTEMPTS: "11" }, "ACME_MAX_ATTEMPTS"],
    [{ ACME_PORT: "x" }, "ACME_PORT"],
    [{ REDIS_URL: "http://redis" }, "REDIS_URL"],
  ])("names the variable to fix: %j", (env, variable) => {
    expect(() => envIntegration({ ...insecure, ...env }, "ACME", 1)).toThrow(expect.objectContaining({ variable }));
  });
});

describe("checkSecretSource", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "hookmesh-secret-source-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("says where a secret comes from and its value now, or undefined when unset", async () => {
    const file = join(dir, "token");
    await writeFile(file, "s3cret\n");
    expect(checkSecretSource({}, "ACME_TOKEN")).toBeUndefined();
    expect(checkSecretSource({ ACME_TOKEN: " direct " }, "ACME_TOKEN")).toEqual({
      variable: "ACME_TOKEN",
      value: "direct",
    });
    expect(checkSecretSource({ ACME_TOKEN_FILE: file }, "ACME_TOKEN")).toEqual({
      variable: "ACME_TOKEN_FILE",
      value: "s3cret",
    });
    // An empty file is a credential still to come (a rotation fills it), not an error.
    await writeFile(file, "");
    expect(checkSecretSource({ ACME_TOKEN_FILE: file }, "ACME_TOKEN")).toEqual({
      variable: "ACME_TOKEN_FILE",
      value: "",
    });
  });

  it("refuses a secret set twice and a file it cannot read, without the secret in the message", () => {
    expect(() => checkSecretSource({ ACME_TOKEN: "s3cret", ACME_TOKEN_FILE: "/x" }, "ACME_TOKEN")).toThrow(
      new ConfigError("ACME_TOKEN", "set either ACME_TOKEN or ACME_TOKEN_FILE, not both"),
    );
    expect(() => checkSecretSource({ ACME_TOKEN_FILE: join(dir, "missing") }, "ACME_TOKEN")).toThrow(
      /^ACME_TOKEN_FILE: cannot read .*: ENOENT$/,
    );
  });
});

describe("mapUpstreamError", () => {
  it("gives every integration service's errors their codes, and leaves the rest", () => {
    const store = new IdempotencyUnavailableError(new Error("connection lost"));
    expect(mapUpstreamError(new UpstreamError(Code.NotFound, "acme answered 404", 404))).toMatchObject({
      code: Code.NotFound,
      rawMessage: "acme answered 404",
    });
    expect(mapUpstreamError(new MissingCredentialError("ACME_TOKEN"))).toMatchObject({
      code: Code.FailedPrecondition,
      rawMessage: "ACME_TOKEN is not set",
    });
    expect(mapUpstreamError(new InvalidRequestError("channel is required", "channel"))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "channel is required",
    });
    expect(mapUpstreamError(store)).toMatchObject({
      code: Code.Unavailable,
      rawMessage: "idempotency store unavailable; retry later",
      cause: store.cause,
    });
    expect(mapUpstreamError(new Error("boom"))).toBeUndefined();
  });
});

describe("the upstream client's bounds", () => {
  it("knows the longest a call can take: every attempt timing out, with the longest wait between them", () => {
    const { logger } = memoryLogger();
    const client = (timings: object) =>
      new UpstreamClient({ name: "acme", title: "Acme", baseUrl: "https://acme.test", logger, ...timings });
    const defaults = client({});
    const tuned = client({ attemptTimeoutMs: 2_000, maxAttempts: 3, maxRateLimitWaitMs: 1_000 });
    expect([defaults.longestCallMs, tuned.longestCallMs]).toEqual([4 * 10_000 + 3 * 30_000, 3 * 2_000 + 2 * 1_000]);
    defaults.shutdown();
    tuned.shutdown();
  });

  it("abortAfter aborts with a TimeoutError, or with the caller's reason, and not once cleared", async () => {
    const timedOut = abortAfter(undefined, 10);
    await expect.poll(() => timedOut.signal.aborted).toBe(true);
    expect((timedOut.signal.reason as Error).name).toBe("TimeoutError");

    const caller = new AbortController();
    const canceled = abortAfter(caller.signal, 60_000);
    caller.abort(new Error("caller gone"));
    expect(canceled.signal.reason).toEqual(new Error("caller gone"));
    canceled.clear();

    const cleared = abortAfter(undefined, 10);
    cleared.clear();
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(cleared.signal.aborted).toBe(false);
  });
});
