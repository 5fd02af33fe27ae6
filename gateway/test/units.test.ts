import { type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Provider } from "../../gen/hookmesh/events/v1/event_pb.js";
import { DeliveryStatus } from "../../gen/hookmesh/gateway/v1/delivery_pb.js";
import { DeliveryDedup } from "../src/dedup.js";
import { DeliveryLog, redactHeaders } from "../src/delivery-log.js";
import { RateLimiter } from "../src/rate-limit.js";

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

describe("DeliveryDedup", () => {
  let db: TestRedis;

  beforeEach(async () => {
    db = await testRedis("gateway-dedup");
  });
  afterEach(() => db.cleanup());

  it("lets the first claim through and answers later ones, with the task once settled", async () => {
    const dedup = new DeliveryDedup(db.redis, { keyPrefix: db.prefix, windowMs: 60_000 });
    const first = await dedup.claim("github", "109948940", "guid-1");
    expect(first).toEqual({ fresh: true, key: expect.stringMatching(new RegExp(`^${db.prefix}dedup:`)) });
    // Still being submitted: a duplicate, with no task yet.
    expect(await dedup.claim("github", "109948940", "guid-1")).toEqual({ fresh: false, taskId: "" });
    if (!first.fresh) throw new Error("unreachable");
    await dedup.settle(first.key, "task-1");
    expect(await dedup.claim("github", "109948940", "guid-1")).toEqual({ fresh: false, taskId: "task-1" });
    const ttl = await db.redis.pttl(first.key);
    expect(ttl).toBeGreaterThan(50_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
  });

  it("scopes a delivery id by provider and source, and no pair spells another's key", async () => {
    const dedup = new DeliveryDedup(db.redis, { keyPrefix: db.prefix, windowMs: 60_000 });
    expect((await dedup.claim("github", "1", "guid")).fresh).toBe(true);
    expect((await dedup.claim("github", "2", "guid")).fresh).toBe(true);
    expect((await dedup.claim("jira", "1", "guid")).fresh).toBe(true);
    expect((await dedup.claim("custom/x", "a:b", "c")).fresh).toBe(true);
    expect((await dedup.claim("custom/x", "a", "b:c")).fresh).toBe(true);
    expect((await dedup.claim("github", "1", "guid")).fresh).toBe(false);
  });

  it("releases a claim, so that the provider's retry is processed", async () => {
    const dedup = new DeliveryDedup(db.redis, { keyPrefix: db.prefix, windowMs: 60_000 });
    const claim = await dedup.claim("slack", "A1", "Ev1");
    if (!claim.fresh) throw new Error("expected a fresh claim");
    await dedup.release(claim.key);
    expect((await dedup.claim("slack", "A1", "Ev1")).fresh).toBe(true);
  });

  it("forgets a delivery after the window, and settling an expired claim does not revive it", async () => {
    const dedup = new DeliveryDedup(db.redis, { keyPrefix: db.prefix, windowMs: 40 });
    const claim = await dedup.claim("jira", "https://example.atlassian.net", "id-1");
    if (!claim.fresh) throw new Error("expected a fresh claim");
    await vi.waitFor(async () => expect(await db.redis.exists(claim.key)).toBe(0), { timeout: 5_000, interval: 10 });
    await dedup.settle(claim.key, "task-late");
    expect(await db.redis.exists(claim.key)).toBe(0);
    expect((await dedup.claim("jira", "https://example.atlassian.net", "id-1")).fresh).toBe(true);
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
    const log = new DeliveryLog(db.redis, { keyPrefix: db.prefix, retentionMs: 60_000 });
    const at = new Date();
    const recorded = [];
    for (let i = 0; i < 20; i++) {
      recorded.push(
        await log.record(
          {
            route: "github",
            provider: Provider.GITHUB,
            status: DeliveryStatus.REJECTED,
            httpStatus: 401,
            deliveryId: `d-${i}`,
            receivedAt: at,
            headers: {},
          },
          false,
        ),
      );
    }
    const ids = recorded.map((d) => d.id);
    expect([...ids].sort()).toEqual(ids);
    const { deliveries } = await log.list(50, {});
    expect(deliveries.map((d) => d.deliveryId)).toEqual(recorded.map((d) => d.deliveryId).reverse());
  });
});
