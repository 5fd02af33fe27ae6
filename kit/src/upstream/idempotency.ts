import { setTimeout as sleep } from "node:timers/promises";
import { type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import type { RedisClient } from "../redis.js";

export interface IdempotencyOptions {
  /** The service's own key prefix. */
  keyPrefix: string;
  /** How long a result is remembered. */
  ttlMs: number;
  /** How long a call may hold its key before another caller may take it (the holder crashed). */
  lockMs: number;
}

/** What claiming a key gave: the response a completed call recorded, or the key, held until `lockedUntil` (ms since the epoch). */
export type Claim<Desc extends DescMessage> = { stored: MessageShape<Desc> } | { lockedUntil: number };

const PENDING = "pending";
/** How often a call waiting for another's result looks again. */
const WAIT_POLL_MS = 50;

/**
 * The Redis side of idempotency keys: a call claims its key (`SET NX` with a lock's expiry),
 * runs, and records its response (protobuf binary) under the key; a later call with the key
 * gets that response back instead of running. ProviderCalls drives it and decides what each
 * failure means.
 */
export class IdempotencyStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly options: IdempotencyOptions,
  ) {}

  /**
   * Takes `key` for a call about to run, or returns the response a completed call recorded
   * under it. While another call holds the key this waits for its result, or for its lock to
   * expire (the holder crashed) and then takes the key; `signal` ends the wait with its abort
   * reason. Store failures are thrown as they come.
   */
  async claim<Desc extends DescMessage>(key: string, schema: Desc, signal?: AbortSignal): Promise<Claim<Desc>> {
    const redisKey = this.redisKey(key);
    for (;;) {
      signal?.throwIfAborted();
      // Taken before the SET, so the lock is known to last at least until then.
      const lockedUntil = Date.now() + this.options.lockMs;
      if ((await this.redis.set(redisKey, PENDING, "PX", this.options.lockMs, "NX")) === "OK") return { lockedUntil };
      const stored = await this.redis.getBuffer(redisKey);
      if (stored !== null && stored.toString() !== PENDING) return { stored: fromBinary(schema, stored) };
      await sleep(WAIT_POLL_MS, undefined, signal ? { signal } : undefined);
    }
  }

  /** Records the response of the call that holds `key`, for the TTL. */
  async record<Desc extends DescMessage>(key: string, schema: Desc, response: MessageShape<Desc>): Promise<void> {
    await this.redis.set(this.redisKey(key), Buffer.from(toBinary(schema, response)), "PX", this.options.ttlMs);
  }

  /** Frees `key` after its call failed, so that a retry runs at once. */
  async release(key: string): Promise<void> {
    await this.redis.del(this.redisKey(key));
  }

  private redisKey(key: string): string {
    return `${this.options.keyPrefix}idempotency:${key}`;
  }
}
