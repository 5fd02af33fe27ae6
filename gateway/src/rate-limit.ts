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
 * clock matters. Takes up to ARGV[3] tokens at once (as many as the bucket holds); a bucket
 * expires once it would be full again, so idle sources leave nothing.
 * Returns the tokens taken and, when none could be, the whole seconds to wait.
 */
const TAKE_SCRIPT = `
local perSecond = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1]) or burst
local at = tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) / 1000 * perSecond)
local taken = 0
local wait = 0
if tokens >= 1 then
  taken = math.min(want, math.floor(tokens))
  tokens = tokens - taken
else
  wait = math.ceil((1 - tokens) / perSecond)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / perSecond * 1000) + 1000)
return {taken, wait}
`;

/** How long tokens taken ahead are held for their source before they lapse (ms). */
const HOLD_MS = 1_000;
/** The most tokens taken ahead at once: a tenth of a second of the rate, up to this. */
const MAX_TAKEN_AHEAD = 64;

/**
 * The gateway's rate limit, one for all its replicas: a token bucket per source in the
 * gateway's Redis. A source allowed many requests a second has a tenth of a second of them
 * taken at once and held here for a moment, so that most of its requests are answered without
 * a round trip; a replica never passes more than it took, so the sources' limits hold across
 * replicas, and tokens a replica took but did not use lapse (a sender spread over replicas
 * gets a little less, never more). A source limited to under 20 a second takes one token per
 * request. When Redis cannot be reached, each replica limits on its own (the in-memory
 * bucket) rather than not at all or refusing everything: the edge stays up for the fast path
 * to the tasks service (which needs no gateway Redis), and a flood is still held to the limit
 * times the number of replicas.
 */
export class SharedRateLimiter {
  private readonly local: RateLimiter;
  private readonly takenAhead: number;
  /** Tokens taken from the shared bucket and not yet spent, per source, least recently seen first. */
  private readonly held = new Map<string, { tokens: number; until: number }>();
  /** A source's take from the shared bucket in flight: its other requests wait for it. */
  private readonly taking = new Map<string, Promise<number>>();
  private warned = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly options: RateLimitOptions & { keyPrefix: string },
    private readonly logger: Logger,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.local = new RateLimiter(options);
    this.takenAhead = Math.max(1, Math.min(MAX_TAKEN_AHEAD, Math.floor(options.perSecond / 10)));
  }

  /** 0 if the request may pass, else the seconds until it would. */
  async take(source: string): Promise<number> {
    for (;;) {
      if (this.spendHeld(source)) return 0;
      let taking = this.taking.get(source);
      if (taking === undefined) {
        taking = this.takeShared(source).finally(() => this.taking.delete(source));
        this.taking.set(source, taking);
      }
      // Tokens taken go to whichever of the source's waiting requests comes first; one that
      // finds none left takes again (each take that passes holds at least one token).
      const wait = await taking;
      if (wait > 0) return wait;
    }
  }

  private spendHeld(source: string): boolean {
    const held = this.held.get(source);
    if (held === undefined) return false;
    if (held.tokens < 1 || held.until <= this.now()) {
      this.held.delete(source);
      return false;
    }
    held.tokens -= 1;
    return true;
  }

  /** Takes tokens ahead into `held`; resolves with 0 when some were taken, else the seconds to wait. */
  private async takeShared(source: string): Promise<number> {
    // Hashed: the route part is whatever path the sender asked for, and keys stay short.
    const key = `${this.options.keyPrefix}ratelimit:${createHash("sha256").update(source).digest("base64url")}`;
    let taken: number;
    let wait: number;
    try {
      [taken, wait] = (await storeCall(() =>
        runScript(this.redis, TAKE_SCRIPT, [key], [this.options.perSecond, this.options.burst, this.takenAhead]),
      )) as [number, number];
      this.warned = false;
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      if (!this.warned) {
        this.warned = true;
        this.logger.warn({ err: err.message }, "shared rate limit unavailable, limiting per gateway instance");
      }
      [taken, wait] = [0, this.local.take(source)];
      if (wait === 0) taken = 1;
    }
    if (taken > 0) {
      // Re-inserted, so the Map's order is least recently seen first.
      this.held.delete(source);
      this.held.set(source, { tokens: taken, until: this.now() + HOLD_MS });
      if (this.held.size > MAX_SOURCES) this.held.delete(this.held.keys().next().value!);
    }
    return Number(wait);
  }
}
