import { setTimeout as sleep } from "node:timers/promises";
import type { Redis } from "ioredis";
import { fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";

export interface IdempotencyOptions {
  /** The service's own key prefix. */
  keyPrefix: string;
  /** How long a result is remembered. */
  ttlMs: number;
  /** How long a call may hold its key before another caller may try again (a crashed caller). */
  lockMs: number;
}

const PENDING = "pending";

/**
 * Makes creating calls safe to retry: the first call with a key runs and its response is
 * stored (protobuf binary); a later call with the same key gets that response back without
 * running. A call made while the first is still running waits for its result.
 */
export class IdempotencyStore {
  constructor(
    private readonly redis: Redis,
    private readonly options: IdempotencyOptions,
  ) {}

  /** `run()`'s response, or the response stored for `key`; `replayed` says which. */
  async once<Desc extends DescMessage>(
    key: string,
    schema: Desc,
    run: () => Promise<MessageShape<Desc>>,
    signal?: AbortSignal,
  ): Promise<{ response: MessageShape<Desc>; replayed: boolean }> {
    const redisKey = `${this.options.keyPrefix}idempotency:${key}`;
    for (;;) {
      const claimed = await this.redis.set(redisKey, PENDING, "PX", this.options.lockMs, "NX");
      if (claimed === "OK") break;
      const stored = await this.redis.getBuffer(redisKey);
      if (stored !== null && stored.toString() !== PENDING) {
        return { response: fromBinary(schema, stored), replayed: true };
      }
      // Another call holds the key; its result (or its lock's expiry) is coming.
      await sleep(50, undefined, signal ? { signal } : undefined);
    }
    try {
      const response = await run();
      await this.redis.set(redisKey, Buffer.from(toBinary(schema, response)), "PX", this.options.ttlMs);
      return { response, replayed: false };
    } catch (err) {
      await this.redis.del(redisKey);
      throw err;
    }
  }
}
