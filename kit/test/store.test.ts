import { inspect } from "node:util";
import { Code } from "@connectrpc/connect";
import { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mapStoreError, StoreUnavailableError, storeCaller } from "../src/store.js";
import { memoryLogger } from "../src/testing/logger.js";
import { TEST_REDIS_URL, type TestRedis, testRedis } from "../src/testing/redis.js";

/** What a webhook body may hold: it must never reach an error, a property of one, or a log line. */
const RAW_BODY = JSON.stringify({ comment: { body: "@hookmesh deploy" }, token: "ghp_rawBodySecret0123456789" });

const storeCall = storeCaller("test store");

/** The error `call` rejects with; fails the test if it resolves. */
async function thrown(call: Promise<unknown>): Promise<Error> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof Error)) throw new Error(`expected an Error, got ${String(err)}`);
  return err;
}

/** Every way the error could be printed: inspected in depth, as JSON, and through the logger. */
function everyRendering(err: Error): string {
  const { logger, lines } = memoryLogger();
  logger.error({ err }, "failed");
  return [
    inspect(err, { depth: 10, showHidden: true }),
    JSON.stringify(err),
    JSON.stringify({ ...err }),
    ...lines(),
  ].join("\n");
}

describe("storeCaller", () => {
  let db: TestRedis;
  beforeEach(async () => {
    db = await testRedis("kit-store");
  });
  afterEach(() => db.cleanup());

  it("passes results through", async () => {
    await db.redis.set(`${db.prefix}k`, "v");
    expect(await storeCall(() => db.redis.get(`${db.prefix}k`))).toBe("v");
  });

  it("keeps a reply error an error, without the command's arguments that carried a raw body", async () => {
    const key = `${db.prefix}string`;
    await db.redis.set(key, "not a hash");
    // The unscrubbed error does carry the body: the test would see it if it leaked.
    const raw = await thrown(db.redis.hset(key, "body", RAW_BODY));
    expect(inspect(raw, { depth: 10 })).toContain("rawBodySecret");

    const err = await thrown(storeCall(() => db.redis.hset(key, "body", RAW_BODY)));
    expect(err).not.toBeInstanceOf(StoreUnavailableError);
    expect(err.message).toMatch(/^WRONGTYPE/);
    expect(everyRendering(err)).not.toContain("rawBodySecret");
  });

  it("turns a lost connection into StoreUnavailableError naming the store, its cause scrubbed too", async () => {
    const redis = new Redis(TEST_REDIS_URL, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    await redis.connect();
    redis.disconnect();
    const err = await thrown(storeCall(() => redis.set(`${db.prefix}k`, RAW_BODY)));
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(err.message).toBe("test store unavailable");
    expect((err as StoreUnavailableError).store).toBe("test store");
    expect(everyRendering(err)).not.toContain("rawBodySecret");

    const wire = mapStoreError(err);
    expect(wire?.code).toBe(Code.Unavailable);
    expect(wire?.rawMessage).toBe("test store unavailable");
    expect(mapStoreError(new Error("other"))).toBeUndefined();
  });

  it("scrubs a cause given directly, as a failed pipeline's reply error is", () => {
    const cause = Object.assign(new Error("ERR something"), {
      code: "ERR",
      command: { name: "xadd", args: [RAW_BODY] },
    });
    const err = new StoreUnavailableError("test store", cause);
    expect((err.cause as { code?: string }).code).toBe("ERR");
    expect(everyRendering(err)).not.toContain("rawBodySecret");
  });
});
