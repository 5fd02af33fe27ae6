import { createHash } from "node:crypto";
import { type Logger, type RedisClient, runScript, StoreUnavailableError } from "@hookmesh/kit";
import { storeCall } from "./store-call.js";

/** Sources tracked at once; the least recently seen go first beyond it. */
const MAX_SOURCES = 10_000;

export interface RateLimitOptions {
  perSecond: number;
  burst: number;
}

/**
 * A token bucket per source (a provider route and the sender's address): `perSecond` requests
 * a second on average, bursts of up to `burst`. In memory, so per gateway instance: the
 * shared limiter's stand-in while Redis cannot be reached.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly options: RateLimitOptions,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** 0 if the request may pass, else the seconds until it would. */
  take(source: string): number {
    const now = this.now();
    const { perSecond, burst } = this.options;
    const bucket = this.buckets.get(source) ?? { tokens: burst, at: now };
    bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * perSecond);
    bucket.at = now;
    // Re-inserted, so the Map's order is least recently seen first.
    this.buckets.delete(source);
    this.buckets.set(source, bucket);
    if (this.buckets.size > MAX_SOURCES) this.buckets.delete(this.buckets.keys().next().value!);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - bucket.tokens) / perSecond);
  }
}

/**
 * The same token bucket in Redis, taken atomically, on Redis's clock (TIME), so that every
 * gateway replica behind a load balancer draws from one bucket per source and no replica's
 * clock matters. A bucket expires once it would be full again, so idle sources leave nothing.
 * Returns the whole seconds to wait, 0 to pass.
 */
const TAKE_SCRIPT = `
local perSecond = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1]) or burst
local at = tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) / 1000 * perSecond)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / perSecond)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / perSecond * 1000) + 1000)
return wait
`;

/**
 * The gateway's rate limit, one for all its replicas: a token bucket per source in the
 * gateway's Redis. When Redis cannot be reached, each replica limits on its own (the
 * in-memory bucket) rather than not at all or refusing everything: the edge stays up for the
 * fast path to the tasks service (which needs no gateway Redis), and a flood is still held to
 * the limit times the number of replicas.
 */
export class SharedRateLimiter {
  private readonly local: RateLimiter;
  private warned = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly options: RateLimitOptions & { keyPrefix: string },
    private readonly logger: Logger,
  ) {
    this.local = new RateLimiter(options);
  }

  /** 0 if the request may pass, else the seconds until it would. */
  async take(source: string): Promise<number> {
    // Hashed: the route part is whatever path the sender asked for, and keys stay short.
    const key = `${this.options.keyPrefix}ratelimit:${createHash("sha256").update(source).digest("base64url")}`;
    try {
      const wait = await storeCall(() =>
        runScript(this.redis, TAKE_SCRIPT, [key], [this.options.perSecond, this.options.burst]),
      );
      this.warned = false;
      return Number(wait);
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      if (!this.warned) {
        this.warned = true;
        this.logger.warn({ err: err.message }, "shared rate limit unavailable, limiting per gateway instance");
      }
      return this.local.take(source);
    }
  }
}
