import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { create } from "@bufbuild/protobuf";
import { createLogger } from "@hookmesh/kit";
import { TEST_REDIS_URL, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { EventSchema, Provider } from "../../gen/hookmesh/events/v1/event_pb.js";
import { DeliveryStatus } from "../../gen/hookmesh/gateway/v1/delivery_pb.js";
import { clientAddress, TrustedProxies } from "../src/client-address.js";
import { DeliveryDedup, type SignedContent } from "../src/dedup.js";
import { DeliveryLog, DeliveryNotFoundError, OrderedUuids, redactHeaders } from "../src/delivery-log.js";
import { Intake } from "../src/intake.js";
import { Outbox } from "../src/outbox.js";
import { RandomPool } from "../src/random-pool.js";
import { RateLimiter, SharedRateLimiter } from "../src/rate-limit.js";

/** A clock the test moves by hand, in milliseconds. */
function manualClock(start = 1_000_000) {
  let now = start;
  return {
    now: () => now,
    advance(ms: number) {
      now += ms;
    },
  };
}

describe("RateLimiter", () => {
  it("lets a burst through at once, then one request per refilled token", () => {
    const clock = manualClock();
    const limiter = new RateLimiter({ perSecond: 2, burst: 3 }, clock.now);
    expect([limiter.take("a"), limiter.take("a"), limiter.take("a")]).toEqual([0, 0, 0]);
    expect(limiter.take("a")).toBeGreaterThan(0);
    clock.advance(499);
    expect(limiter.take("a")).toBeGreaterThan(0);
    clock.advance(1);
    // 500 ms at 2 a second is one token.
    expect(limiter.take("a")).toBe(0);
    expect(limiter.take("a")).toBeGreaterThan(0);
  });

  it("never holds more than the burst, however long a source was quiet", () => {
    const clock = manualClock();
    const limiter = new RateLimiter({ perSecond: 5, burst: 2 }, clock.now);
    limiter.take("a");
    clock.advance(3_600_000);
    expect([limiter.take("a"), limiter.take("a")]).toEqual([0, 0]);
    expect(limiter.take("a")).toBeGreaterThan(0);
  });

  it("answers with the whole seconds until the next token, for Retry-After", () => {
    const clock = manualClock();
    const slow = new RateLimiter({ perSecond: 0.1, burst: 1 }, clock.now);
    expect(slow.take("a")).toBe(0);
    expect(slow.take("a")).toBe(10);
    clock.advance(5_000);
    expect(slow.take("a")).toBe(5);
    // A refused request costs nothing: the wait keeps shrinking.
    clock.advance(4_100);
    expect(slow.take("a")).toBe(1);
    clock.advance(1_000);
    expect(slow.take("a")).toBe(0);

    const fast = new RateLimiter({ perSecond: 1, burst: 1 }, clock.now);
    fast.take("b");
    expect(fast.take("b")).toBe(1);
    clock.advance(999);
    expect(fast.take("b")).toBe(1);
  });

  it("keeps a bucket per source", () => {
    const clock = manualClock();
    const limiter = new RateLimiter({ perSecond: 1, burst: 1 }, clock.now);
    expect(limiter.take("github|10.0.0.1")).toBe(0);
    expect(limiter.take("github|10.0.0.1")).toBe(1);
    expect(limiter.take("github|10.0.0.2")).toBe(0);
    expect(limiter.take("slack|10.0.0.1")).toBe(0);
  });

  it("forgets the least recently seen source beyond 10,000", () => {
    const clock = manualClock();
    const limiter = new RateLimiter({ perSecond: 1, burst: 1 }, clock.now);
    for (let i = 0; i < 10_000; i++) expect(limiter.take(`s${i}`)).toBe(0);
    // Seen again: now the most recent, and still limited.
    expect(limiter.take("s0")).toBe(1);
    // One source too many: s1, the least recently seen, is forgotten ...
    expect(limiter.take("new")).toBe(0);
    expect(limiter.take("s1")).toBe(0);
    // ... while s0 and the newest are still tracked and limited.
    expect(limiter.take("s0")).toBe(1);
    expect(limiter.take("new")).toBe(1);
    expect(limiter.take("s9999")).toBe(1);
  });
});

/** Signed content unique to `text`, on the GitHub route. */
function body(text: string, route = "github"): SignedContent {
  return { route, bodySha256: createHash("sha256").update(text).digest("hex") };
}

describe("DeliveryDedup", () => {
  let db: TestRedis;

  beforeEach(async () => {
    db = await testRedis("gateway-dedup");
  });
  afterEach(() => db.cleanup());

  it("lets the first claim through and answers later ones, with the task once settled", async () => {
    const dedup = new DeliveryDedup(db.redis, { keyPrefix: db.prefix, windowMs: 60_000 });
    const first = await dedup.claim("github", "109948940", "guid-1", body("a"));
    expect(first).toEqual({ fresh: true, key: expect.stringMatching(new RegExp(`^${db.prefix}dedup:`)) });
    // Still being submitted: a duplicate, with no task yet.
    expect(await dedup.claim("github", "109948940", "guid-1", body("a"))).toEqual({ fresh: false, taskId: "" });
    if (!first.fresh) throw new Error("unreachable");
    await dedup.settle(first.key, "task-1");
    expect(await dedup.claim("github", "109948940", "guid-1", body("a"))).toEqual({ fresh: false, taskId: "task-1" });
    const ttl = await db.redis.pttl(first.key);
    expect(ttl).toBeGreaterThan(50_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
  });

  it("scopes a delivery id by provider and source, and no pair spells another's key", async () => {
    const dedup = new DeliveryDedup(db.redis, { keyPrefix: db.prefix, windowMs: 60_000 });
    expect((await dedup.claim("github", "1", "guid", body("github, 1, guid"))).fresh).toBe(true);
    expect((await dedup.claim("github", "2", "guid", body("github, 2, guid"))).fresh).toBe(true);
    expect((await dedup.claim("jira", "1", "guid", body("jira, 1, guid"))).fresh).toBe(true);
    expect((await dedup.claim("custom/x", "a:b", "c", body("custom/x, a:b, c"))).fresh).toBe(true);
    expect((await dedup.claim("custom/x", "a", "b:c", body("custom/x, a, b:c"))).fresh).toBe(true);
    expect((await dedup.claim("github", "1", "guid", body("github, 1, guid"))).fresh).toBe(false);
  });

  it("processes the provider's retry once a claim is gone", async () => {
    const dedup = new DeliveryDedup(db.redis, { keyPrefix: db.prefix, windowMs: 60_000 });
    const claim = await dedup.claim("slack", "A1", "Ev1", body("slack, A1, Ev1"));
    if (!claim.fresh) throw new Error("expected a fresh claim");
    await db.redis.del(claim.key);
    expect((await dedup.claim("slack", "A1", "Ev1", body("slack, A1, Ev1"))).fresh).toBe(true);
  });

  it("forgets a delivery after the window, and settling an expired claim does not revive it", async () => {
    const dedup = new DeliveryDedup(db.redis, { keyPrefix: db.prefix, windowMs: 40 });
    const claim = await dedup.claim(
      "jira",
      "https://example.atlassian.net",
      "id-1",
      body("jira, https://example.atlassian.net, id-1"),
    );
    if (!claim.fresh) throw new Error("expected a fresh claim");
    await vi.waitFor(async () => expect(await db.redis.exists(claim.key)).toBe(0), { timeout: 5_000, interval: 10 });
    await dedup.settle(claim.key, "task-late");
    expect(await db.redis.exists(claim.key)).toBe(0);
    expect(
      (
        await dedup.claim(
          "jira",
          "https://example.atlassian.net",
          "id-1",
          body("jira, https://example.atlassian.net, id-1"),
        )
      ).fresh,
    ).toBe(true);
  });
});

describe("DeliveryDedup replays", () => {
  let db: TestRedis;

  beforeEach(async () => {
    db = await testRedis("gateway-replay");
  });
  afterEach(() => db.cleanup());

  it("answers the same signed content under a new delivery id as a duplicate of the first", async () => {
    const dedup = new DeliveryDedup(db.redis, { keyPrefix: db.prefix, windowMs: 60_000 });
    const first = await dedup.claim("github", "1", "guid-1", body("payload"));
    if (!first.fresh) throw new Error("expected a fresh claim");
    expect(await dedup.claim("github", "1", "guid-2", body("payload"))).toEqual({
      fresh: false,
      taskId: "",
      replayOf: "guid-1",
    });
    await dedup.settle(first.key, "task-1");
    // Another hook id (it is not signed) changes nothing either.
    expect(await dedup.claim("github", "2", "guid-3", body("payload"))).toEqual({
      fresh: false,
      taskId: "task-1",
      replayOf: "guid-1",
    });
    // Other content, or the same on another route, is new.
    expect((await dedup.claim("github", "1", "guid-4", body("other"))).fresh).toBe(true);
    expect((await dedup.claim("custom/x", "x", "guid-5", body("payload", "custom/x"))).fresh).toBe(true);
  });

  it("tells contents apart by their signed timestamp", async () => {
    const dedup = new DeliveryDedup(db.redis, { keyPrefix: db.prefix, windowMs: 60_000 });
    const content = body("same", "slack");
    expect((await dedup.claim("slack", "T1", "Ev1", { ...content, timestamp: "1700000000" })).fresh).toBe(true);
    expect((await dedup.claim("slack", "T1", "Ev2", { ...content, timestamp: "1700000001" })).fresh).toBe(true);
    expect(await dedup.claim("slack", "T1", "Ev3", { ...content, timestamp: "1700000000" })).toMatchObject({
      fresh: false,
      replayOf: "Ev1",
    });
  });

  it("frees the content with a claim that is gone, so that the provider's retry under a new id is processed", async () => {
    const dedup = new DeliveryDedup(db.redis, { keyPrefix: db.prefix, windowMs: 60_000 });
    const claim = await dedup.claim("sentry", "acme", "r-1", body("issue"));
    if (!claim.fresh) throw new Error("expected a fresh claim");
    await db.redis.del(claim.key);
    expect((await dedup.claim("sentry", "acme", "r-2", body("issue"))).fresh).toBe(true);
    expect(await dedup.claim("sentry", "acme", "r-3", body("issue"))).toMatchObject({ fresh: false, replayOf: "r-2" });
  });
});

describe("Intake", () => {
  let db: TestRedis;

  beforeEach(async () => {
    db = await testRedis("gateway-intake");
  });
  afterEach(() => db.cleanup());

  function parts() {
    const keyPrefix = db.prefix;
    const dedup = new DeliveryDedup(db.redis, { keyPrefix, windowMs: 60_000 });
    const deliveries = new DeliveryLog(db.redis, {
      keyPrefix,
      retentionMs: 60_000,
      maxPerRoute: 10,
      maxBriefPerRoute: 10,
    });
    const outbox = new Outbox(db.redis, { keyPrefix });
    return { dedup, deliveries, outbox, intake: new Intake(db.redis, { dedup, deliveries, outbox }) };
  }

  function request(deliveryId: string, taskId: string, bytes = `{"id":"${deliveryId}"}`) {
    const rawBody = Buffer.from(bytes);
    return {
      provider: "github",
      sourceId: "hook-1",
      deliveryId,
      content: { route: "github", bodySha256: createHash("sha256").update(rawBody).digest("hex") },
      entry: {
        route: "github",
        provider: Provider.GITHUB,
        status: DeliveryStatus.QUEUED,
        httpStatus: 202,
        deliveryId,
        taskId,
        receivedAt: new Date(),
        headers: { "x-github-delivery": deliveryId },
        rawBody,
        bodySize: rawBody.length,
      },
      event: create(EventSchema, { provider: Provider.GITHUB, sourceId: "hook-1", deliveryId, rawBody }),
      taskId,
    };
  }

  it("claims, logs and appends in one step, naming the task; a repeat writes nothing and names the same task", async () => {
    const { intake, deliveries, outbox } = parts();
    await outbox.init();
    const first = await intake.accept(request("d-1", "01900000-0000-7000-8000-000000000001"));
    if (!first.fresh) throw new Error("expected a fresh delivery");
    expect(await deliveries.get(first.delivery.id)).toMatchObject({
      status: DeliveryStatus.QUEUED,
      taskId: "01900000-0000-7000-8000-000000000001",
    });
    const [entry] = await outbox.takeNew("test", 10);
    expect(entry).toMatchObject({
      deliveryLogId: first.delivery.id,
      taskId: "01900000-0000-7000-8000-000000000001",
      event: { deliveryId: "d-1" },
    });

    // The provider's retry, and a replay of the same body under another id.
    expect(await intake.accept(request("d-1", "01900000-0000-7000-8000-000000000002"))).toEqual({
      fresh: false,
      claim: { fresh: false, taskId: "01900000-0000-7000-8000-000000000001" },
    });
    expect(await intake.accept(request("d-2", "01900000-0000-7000-8000-000000000003", '{"id":"d-1"}'))).toEqual({
      fresh: false,
      claim: { fresh: false, taskId: "01900000-0000-7000-8000-000000000001", replayOf: "d-1" },
    });
    expect(await outbox.length()).toBe(1);
    expect((await deliveries.list(10, {})).deliveries).toHaveLength(1);
  });

  it("records what a forwarded batch became by appending to each log record, keeping its body", async () => {
    const { intake, deliveries } = parts();
    const accepted = await intake.accept(request("d-3", "01900000-0000-7000-8000-000000000004"));
    if (!accepted.fresh) throw new Error("expected a fresh delivery");
    await deliveries.settleAll([
      { id: accepted.delivery.id, status: DeliveryStatus.IGNORED, taskId: "01900000-0000-7000-8000-000000000004" },
      // Gone (expired, or dropped past the cap): nothing is written for it.
      { id: "01900000-0000-7000-8000-0000000000ff", status: DeliveryStatus.ACCEPTED, taskId: "x" },
    ]);
    const logged = await deliveries.get(accepted.delivery.id);
    expect(logged).toMatchObject({ status: DeliveryStatus.IGNORED, deliveryId: "d-3" });
    expect(Buffer.from(logged.rawBody).toString()).toBe('{"id":"d-3"}');
    expect(await db.redis.exists(`${db.prefix}delivery:01900000-0000-7000-8000-0000000000ff`)).toBe(0);
    expect(await db.redis.pttl(`${db.prefix}delivery:${accepted.delivery.id}`)).toBeGreaterThan(0);
  });
});

describe("DeliveryLog caps", () => {
  let db: TestRedis;

  beforeEach(async () => {
    db = await testRedis("gateway-delivery-cap");
  });
  afterEach(() => db.cleanup());

  function entry(route: string, status: DeliveryStatus, i: number) {
    return {
      route,
      provider: Provider.GITHUB,
      status,
      httpStatus: status === DeliveryStatus.REJECTED ? 401 : 202,
      deliveryId: `${route}-${i}`,
      receivedAt: new Date(),
      headers: { "content-type": "application/json", "x-github-delivery": `${route}-${i}` },
      rawBody: Buffer.from(`{"i":${i}}`),
      bodySize: 7,
      bodySha256: "ab".repeat(32),
    };
  }

  it("keeps the newest entries of each route and kind up to its cap, dropping the oldest records too", async () => {
    const log = new DeliveryLog(db.redis, {
      keyPrefix: db.prefix,
      retentionMs: 60_000,
      maxPerRoute: 5,
      maxBriefPerRoute: 3,
    });
    const accepted = [];
    for (let i = 0; i < 8; i++) accepted.push(await log.record(entry("github", DeliveryStatus.ACCEPTED, i)));
    for (let i = 0; i < 6; i++) await log.record(entry("github", DeliveryStatus.REJECTED, i));
    for (let i = 0; i < 2; i++) await log.record(entry("custom/x", DeliveryStatus.REJECTED, i));
    const { deliveries } = await log.list(100, {});
    expect(deliveries.map((d) => d.deliveryId)).toEqual([
      "custom/x-1",
      "custom/x-0",
      "github-5",
      "github-4",
      "github-3",
      "github-7",
      "github-6",
      "github-5",
      "github-4",
      "github-3",
    ]);
    await expect(log.get(accepted[2]!.id)).rejects.toThrow(DeliveryNotFoundError);
    expect(await db.redis.zcard(`${db.prefix}deliveries`)).toBe(10);
    const records = await db.redis.keys(`${db.prefix}delivery:*`);
    expect(records).toHaveLength(10);
  });

  it("keeps no body of a refused request, only its size, digest and a few short headers, and counts it", async () => {
    const log = new DeliveryLog(db.redis, {
      keyPrefix: db.prefix,
      retentionMs: 60_000,
      maxPerRoute: 5,
      maxBriefPerRoute: 1,
    });
    const refused = await log.record({
      ...entry("github", DeliveryStatus.REJECTED, 0),
      headers: {
        "content-type": "application/json",
        "user-agent": "x".repeat(1000),
        "x-hub-signature-256": "sha256=abc",
        "x-anything": "y".repeat(10_000),
      },
    });
    const stored = await log.get(refused.id);
    expect(stored.rawBody).toHaveLength(0);
    expect(stored).toMatchObject({ bodySize: 7n, bodySha256: "ab".repeat(32) });
    expect(stored.headers).toEqual({ "content-type": "application/json", "user-agent": "x".repeat(128) });
    await log.record({ ...entry("github", DeliveryStatus.REJECTED, 1), httpStatus: 413 });
    await log.record({ ...entry("github", DeliveryStatus.REJECTED, 2), httpStatus: 413 });
    await log.record(entry("slack", DeliveryStatus.REJECTED, 0));
    await log.record(entry("github", DeliveryStatus.ACCEPTED, 3));
    // Counted, also those the cap no longer keeps.
    expect(await log.rejections()).toEqual([
      { route: "github", httpStatus: 413, count: 2n },
      { route: "github", httpStatus: 401, count: 1n },
      { route: "slack", httpStatus: 401, count: 1n },
    ]);
    const duplicate = await log.record({ ...entry("github", DeliveryStatus.DUPLICATE, 4), headers: { cookie: "x" } });
    expect(await log.get(duplicate.id)).toMatchObject({ rawBody: new Uint8Array(0), headers: {} });
    const accepted = (await log.list(10, { status: DeliveryStatus.ACCEPTED })).deliveries[0]!;
    expect(Buffer.from((await log.get(accepted.id)).rawBody).toString()).toBe('{"i":3}');
  });
});

describe("clientAddress", () => {
  function request(peer: string, forwardedFor?: string | string[]): IncomingMessage {
    return {
      socket: { remoteAddress: peer },
      headers: forwardedFor === undefined ? {} : { "x-forwarded-for": forwardedFor },
    } as unknown as IncomingMessage;
  }

  it("is the peer unless the peer is a trusted proxy", () => {
    const none = new TrustedProxies([]);
    expect(clientAddress(request("203.0.113.9", "198.51.100.1"), none)).toBe("203.0.113.9");
    const trusted = new TrustedProxies(["10.0.0.0/8", "fd00::/8", "192.0.2.1"]);
    expect(clientAddress(request("203.0.113.9", "198.51.100.1"), trusted)).toBe("203.0.113.9");
    expect(clientAddress(request("::ffff:203.0.113.9", "198.51.100.1"), trusted)).toBe("203.0.113.9");
  });

  it("takes the rightmost forwarded hop that is not a trusted proxy", () => {
    const trusted = new TrustedProxies(["10.0.0.0/8", "fd00::/8", "192.0.2.1"]);
    expect(clientAddress(request("10.1.2.3", "6.6.6.6, 198.51.100.7, 10.0.0.5"), trusted)).toBe("198.51.100.7");
    expect(clientAddress(request("::ffff:10.1.2.3", ["6.6.6.6", "198.51.100.7"]), trusted)).toBe("198.51.100.7");
    expect(clientAddress(request("fd00::1", "2001:db8::7"), trusted)).toBe("2001:db8::7");
    expect(clientAddress(request("192.0.2.1", "10.0.0.9, 10.0.0.8"), trusted)).toBe("10.0.0.9");
    // No header, or garbage where the proxy's entry should be: the proxy itself.
    expect(clientAddress(request("10.1.2.3"), trusted)).toBe("10.1.2.3");
    expect(clientAddress(request("10.1.2.3", "198.51.100.7, not-an-ip"), trusted)).toBe("10.1.2.3");
  });

  it("refuses entries that are neither addresses nor CIDR ranges", () => {
    for (const bad of ["10.0.0.0/33", "fd00::/129", "example.com", "10.0.0.1/8/8", "10.0.0.0/x"]) {
      expect(() => new TrustedProxies([bad])).toThrow(bad);
    }
  });
});

describe("SharedRateLimiter", () => {
  let db: TestRedis;
  const logger = createLogger({ service: "test", level: "silent" });

  beforeEach(async () => {
    db = await testRedis("gateway-rate-limit");
  });
  afterEach(() => db.cleanup());

  it("is one bucket per source for every limiter on one Redis, expiring when idle", async () => {
    const options = { perSecond: 0.01, burst: 3, keyPrefix: db.prefix };
    const a = new SharedRateLimiter(db.redis, options, logger);
    const b = new SharedRateLimiter(db.redis, options, logger);
    expect([await a.take("github|1.2.3.4"), await b.take("github|1.2.3.4"), await a.take("github|1.2.3.4")]).toEqual([
      0, 0, 0,
    ]);
    expect(await b.take("github|1.2.3.4")).toBe(100);
    expect(await a.take("github|5.6.7.8")).toBe(0);
    const [key] = await db.redis.keys(`${db.prefix}ratelimit:*`);
    expect(await db.redis.pttl(key!)).toBeGreaterThan(0);
  });

  it("takes a tenth of a second of a fast source's rate at once, and answers the rest without Redis", async () => {
    const limiter = new SharedRateLimiter(db.redis, { perSecond: 500, burst: 1_000, keyPrefix: db.prefix }, logger);
    const shared = vi.spyOn(db.redis, "evalsha");
    // 50 at once: the first takes 50 tokens ahead and the others wait for that one take.
    expect(await Promise.all(Array.from({ length: 50 }, () => limiter.take("github|1.2.3.4")))).toEqual(
      Array(50).fill(0),
    );
    for (let i = 0; i < 60; i++) expect(await limiter.take("github|1.2.3.4")).toBe(0);
    // 110 requests, 50 tokens a take: three takes.
    expect(shared).toHaveBeenCalledTimes(3);
  });

  it("passes no more than the shared bucket holds, however the requests spread over replicas", async () => {
    const options = { perSecond: 200, burst: 30, keyPrefix: db.prefix };
    const replicas = [0, 1, 2].map(() => new SharedRateLimiter(db.redis, options, logger));
    const started = performance.now();
    const waits = await Promise.all(Array.from({ length: 150 }, (_, i) => replicas[i % 3]!.take("s")));
    const elapsedS = (performance.now() - started) / 1000;
    const passed = waits.filter((wait) => wait === 0).length;
    expect(passed).toBeGreaterThanOrEqual(30);
    expect(passed).toBeLessThanOrEqual(30 + Math.ceil(elapsedS * options.perSecond));
    expect(waits.filter((wait) => wait > 0).every((wait) => wait === 1)).toBe(true);
  });

  it("lets tokens taken ahead lapse, so that a replica does not hold them for later", async () => {
    const clock = manualClock();
    const options = { perSecond: 100, burst: 10, keyPrefix: db.prefix };
    const a = new SharedRateLimiter(db.redis, options, logger, clock.now);
    const b = new SharedRateLimiter(db.redis, options, logger, clock.now);
    // a takes the bucket's 10 tokens ahead (a tenth of a second at 100/s) and spends one.
    expect(await a.take("s")).toBe(0);
    expect(await b.take("s")).toBe(1);
    clock.advance(1_000);
    // Its nine left lapsed; Redis's clock refilled the bucket meanwhile only if a second passed there.
    const shared = vi.spyOn(db.redis, "evalsha");
    await a.take("s");
    expect(shared).toHaveBeenCalledTimes(1);
  });

  it("limits per instance while Redis cannot be reached", async () => {
    const offline = new Redis(TEST_REDIS_URL, { lazyConnect: true, enableOfflineQueue: false });
    const limiter = new SharedRateLimiter(offline, { perSecond: 1, burst: 1, keyPrefix: db.prefix }, logger);
    expect(await limiter.take("s")).toBe(0);
    expect(await limiter.take("s")).toBe(1);
  });
});

describe("redactHeaders", () => {
  it("replaces signatures, credentials and cookies, and keeps the rest as single strings", () => {
    expect(
      redactHeaders({
        "x-hub-signature-256": "sha256=abc",
        "x-hub-signature": "sha256=def",
        "x-slack-signature": "v0=123",
        "sentry-hook-signature": "456",
        authorization: "Bearer t0ken",
        "proxy-authorization": "Basic xyz",
        cookie: "session=1",
        "x-gitlab-token": "glt",
        "x-api-key": "k",
        "x-webhook-secret": "s",
        "content-type": "application/json",
        "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "x-slack-request-timestamp": "1531420618",
        "request-id": "r-1",
        "x-forwarded-for": ["10.0.0.1", "10.0.0.2"],
        "content-length": undefined,
      }),
    ).toEqual({
      "x-hub-signature-256": "[redacted]",
      "x-hub-signature": "[redacted]",
      "x-slack-signature": "[redacted]",
      "sentry-hook-signature": "[redacted]",
      authorization: "[redacted]",
      "proxy-authorization": "[redacted]",
      cookie: "[redacted]",
      "x-gitlab-token": "[redacted]",
      "x-api-key": "[redacted]",
      "x-webhook-secret": "[redacted]",
      "content-type": "application/json",
      "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
      "x-slack-request-timestamp": "1531420618",
      "request-id": "r-1",
      "x-forwarded-for": "10.0.0.1, 10.0.0.2",
    });
  });

  it("redacts by name whatever the case, and extra names it is given", () => {
    expect(redactHeaders({ "X-Hub-Signature-256": "sha256=abc", Authorization: "x" })).toEqual({
      "X-Hub-Signature-256": "[redacted]",
      Authorization: "[redacted]",
    });
    expect(redactHeaders({ "x-acme-hmac": "sha256=abc", "x-acme-event": "build" }, ["X-Acme-Hmac"])).toEqual({
      "x-acme-hmac": "[redacted]",
      "x-acme-event": "build",
    });
  });
});

describe("DeliveryLog ids", () => {
  let db: TestRedis;

  beforeEach(async () => {
    db = await testRedis("gateway-delivery-log");
  });
  afterEach(() => db.cleanup());

  it("sort by arrival, also within one millisecond", async () => {
    const log = new DeliveryLog(db.redis, {
      keyPrefix: db.prefix,
      retentionMs: 60_000,
      maxPerRoute: 100,
      maxBriefPerRoute: 100,
    });
    const at = new Date();
    const recorded = [];
    for (let i = 0; i < 20; i++) {
      recorded.push(
        await log.record({
          route: "github",
          provider: Provider.GITHUB,
          status: DeliveryStatus.REJECTED,
          httpStatus: 401,
          deliveryId: `d-${i}`,
          receivedAt: at,
          headers: {},
          bodySize: 0,
        }),
      );
    }
    const ids = recorded.map((d) => d.id);
    expect([...ids].sort()).toEqual(ids);
    const { deliveries } = await log.list(50, {});
    expect(deliveries.map((d) => d.deliveryId)).toEqual(recorded.map((d) => d.deliveryId).reverse());
  });

  it("makes task ids as UUIDv7s in the order they are made, distinct past the random pool's refills", () => {
    const uuids = new OrderedUuids();
    // More ids than one 4 KB pool holds (256), most of them within one millisecond.
    const ids = Array.from({ length: 1_000 }, () => uuids.next());
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});

describe("RandomPool", () => {
  it("hands out fresh bytes across refills, never the same ones twice", () => {
    const pool = new RandomPool();
    // Three 4 KB pools' worth of trace ids: copies, so a refill does not change those handed out.
    const ids = Array.from({ length: 800 }, () => pool.hex(16));
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(pool.bytes(4096)).toHaveLength(4096);
  });
});
