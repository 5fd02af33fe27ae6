import { setTimeout as sleep } from "node:timers/promises";
import { create, fromBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createLogger, type Logger } from "@hookmesh/kit";
import { type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { type Event, EventSchema, Provider } from "../../gen/hookmesh/events/v1/event_pb.js";
import { DeliverySchema, DeliveryStatus } from "../../gen/hookmesh/gateway/v1/delivery_pb.js";
import { DeliveryDedup } from "../src/dedup.js";
import { DeliveryLog } from "../src/delivery-log.js";
import { Forwarder } from "../src/forwarder.js";
import { Intake } from "../src/intake.js";
import { Outbox } from "../src/outbox.js";
import { FakeTasks } from "./fake-tasks.js";

const JSON_TYPE = "application/json";
const POLL = { timeout: 15_000, interval: 50 };

describe("outbox takeover and the forwarder, on their own", () => {
  let db: TestRedis;
  let keyPrefix: string;
  let outbox: Outbox;
  let deliveries: DeliveryLog;
  let dedup: DeliveryDedup;
  let tasks: FakeTasks;
  const closers: Array<() => void | Promise<void>> = [];
  const logger: Logger = createLogger({ service: "test", level: "silent" });

  beforeEach(async () => {
    db = await testRedis("gateway-forwarder");
    keyPrefix = `${db.prefix}gateway:`;
    outbox = new Outbox(db.redis, { keyPrefix });
    deliveries = new DeliveryLog(db.redis, {
      keyPrefix,
      retentionMs: 60_000,
      maxPerRoute: 100,
      maxBriefPerRoute: 100,
    });
    dedup = new DeliveryDedup(db.redis, { keyPrefix, windowMs: 60_000 });
    await outbox.init();
    tasks = new FakeTasks();
  });

  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
    await db.cleanup();
  });

  /** The "live" forwarder, over the fake tasks service, which is always serving. */
  function startForwarder(
    timing: { claimIdleMs?: number; pollMs: number; submitTimeoutMs?: number },
    consumer = "live",
    over = outbox,
  ): void {
    const forwarder = new Forwarder({
      outbox: over,
      tasks: tasks.client,
      deliveries,
      dedup,
      tasksHealth: { isServing: true, untilServing: async () => {} },
      consumer,
      logger,
      ...timing,
    });
    forwarder.start();
    closers.push(() => forwarder.stop());
  }

  function event(i: number): Event {
    const body = Buffer.from(JSON.stringify({ i }));
    return create(EventSchema, {
      provider: Provider.CUSTOM,
      deliveryId: `delivery-${i}`,
      sourceId: "crash-test",
      eventType: "thing.happened",
      rawBody: body,
      contentType: JSON_TYPE,
      receiveTime: timestampFromDate(new Date()),
    });
  }

  /** The signed content the pipeline would claim for `e` (any value unique per event does here). */
  function contentOf(e: Event) {
    return { route: "custom/crash-test", bodySha256: e.deliveryId };
  }

  /** Queues `n` events the way the pipeline does: a QUEUED log entry, a claim, an outbox entry. */
  async function queue(
    n: number,
    from = 0,
    over = outbox,
  ): Promise<Array<{ logId: string; key: string; deliveryId: string }>> {
    const queued = [];
    for (let i = from; i < from + n; i++) {
      const e = event(i);
      const claim = await dedup.claim("custom/crash-test", e.sourceId, e.deliveryId, contentOf(e));
      if (!claim.fresh) throw new Error("expected a fresh claim");
      const entry = await deliveries.record({
        route: "custom/crash-test",
        provider: Provider.CUSTOM,
        status: DeliveryStatus.QUEUED,
        httpStatus: 202,
        deliveryId: e.deliveryId,
        receivedAt: new Date(),
        headers: {},
        rawBody: Buffer.from(e.rawBody),
        bodySize: e.rawBody.length,
      });
      await over.add(e, entry.id, claim.key);
      queued.push({ logId: entry.id, key: claim.key, deliveryId: e.deliveryId });
    }
    return queued;
  }

  it("hands a consumer new entries once, its own unacknowledged ones again, and another's once idle", async () => {
    await queue(3);
    const dead = await outbox.takeNew("dead-consumer", 10);
    expect(dead.map((e) => e.event.deliveryId)).toEqual(["delivery-0", "delivery-1", "delivery-2"]);
    expect(await outbox.takeNew("dead-consumer", 10)).toEqual([]);
    // The dead consumer would get them again (its pending list) after a restart.
    expect((await outbox.takeOwn("dead-consumer", 10)).map((e) => e.id)).toEqual(dead.map((e) => e.id));

    // Not idle long enough: another consumer gets nothing yet.
    expect(await outbox.claimIdle("live", 10, 60_000)).toEqual([]);
    expect(await outbox.takeNew("live", 10)).toEqual([]);
    await vi.waitFor(async () => {
      const claimed = await outbox.claimIdle("live", 10, 20);
      expect(claimed.map((e) => e.id)).toEqual(dead.map((e) => e.id));
    }, POLL);
    const taken = await outbox.takeOwn("live", 10);
    expect(taken.map((e) => e.deliveryLogId)).toEqual(dead.map((e) => e.deliveryLogId));
    expect(taken[0]!.event.rawBody).toEqual(event(0).rawBody);
    expect(await outbox.takeOwn("dead-consumer", 10)).toEqual([]);

    await outbox.ack(taken[0]!.id);
    expect(await outbox.length()).toBe(2);
    expect((await outbox.takeOwn("live", 10)).map((e) => e.event.deliveryId)).toEqual(["delivery-1", "delivery-2"]);
  });

  it("keeps an acknowledged body once, in the outbox until forwarded and then in its log record, and the log returns it throughout", async () => {
    const intake = new Intake(db.redis, { dedup, deliveries, outbox });
    // Long enough that its length takes protobuf more than one byte to write.
    const body = Buffer.from(JSON.stringify({ text: "x".repeat(20_000), note: "Grüße 👋" }));
    const e = create(EventSchema, { ...event(7), rawBody: new Uint8Array(0) });
    const taskId = "01936f6e-0000-7000-8000-000000000007";
    const outcome = await intake.accept({
      provider: "custom/crash-test",
      sourceId: e.sourceId,
      deliveryId: e.deliveryId,
      content: contentOf(e),
      entry: {
        route: "custom/crash-test",
        provider: Provider.CUSTOM,
        status: DeliveryStatus.QUEUED,
        httpStatus: 202,
        deliveryId: e.deliveryId,
        taskId,
        receivedAt: new Date(),
        headers: {},
        rawBody: body,
        bodySize: body.length,
      },
      event: e,
      taskId,
    });
    if (!outcome.fresh) throw new Error("expected a fresh delivery");
    const { id } = outcome.delivery;
    const record = async () => fromBinary(DeliverySchema, (await db.redis.getBuffer(`${keyPrefix}delivery:${id}`))!);

    // Queued: the record has no body of its own, the outbox entry has it, and the log reads it there.
    expect((await record()).rawBody).toHaveLength(0);
    expect(Buffer.from((await deliveries.get(id)).rawBody)).toEqual(body);

    startForwarder({ pollMs: 20 });
    await vi.waitFor(async () => expect(await outbox.length()).toBe(0), POLL);
    expect(Buffer.from(tasks.tasks[0]!.event!.rawBody)).toEqual(body);
    const forwarded = await record();
    expect(forwarded).toMatchObject({ status: DeliveryStatus.ACCEPTED, taskId, bodySize: BigInt(body.length) });
    expect(Buffer.from(forwarded.rawBody)).toEqual(body);
    expect(await db.redis.exists(deliveries.queuedKey(id))).toBe(0);
    expect(Buffer.from((await deliveries.get(id)).rawBody)).toEqual(body);
  });

  it("forwards entries a crashed forwarder left pending, settling the log and the duplicate check", async () => {
    const queued = await queue(4);
    await outbox.takeNew("dead-consumer", 10);

    startForwarder({ claimIdleMs: 20, pollMs: 20 });

    await vi.waitFor(async () => expect(await outbox.length()).toBe(0), POLL);
    const created = tasks.tasks;
    expect(created.map((t) => t.event!.deliveryId).sort()).toEqual(queued.map((q) => q.deliveryId));
    const taskOf = new Map(created.map((t) => [t.event!.deliveryId, t]));
    for (const q of queued) {
      const task = taskOf.get(q.deliveryId)!;
      const logged = await deliveries.get(q.logId);
      expect(logged.taskId).toBe(task.id);
      expect(logged.status).toBe(DeliveryStatus.ACCEPTED);
      const claim = await dedup.claim("custom/crash-test", "crash-test", q.deliveryId, {
        route: "custom/crash-test",
        bodySha256: q.deliveryId,
      });
      expect(claim).toEqual({ fresh: false, taskId: task.id });
    }
  });

  it("sends an entry submitted before a crash but not acknowledged once more, and it stays one task", async () => {
    const [q] = await queue(1);
    // The crashed forwarder got as far as submitting it.
    const [entry] = await outbox.takeNew("dead-consumer", 10);
    const { task } = await tasks.client.submitEvent({ event: entry!.event });

    startForwarder({ claimIdleMs: 20, pollMs: 20 });
    await vi.waitFor(async () => expect(await outbox.length()).toBe(0), POLL);
    const logged = await deliveries.get(q!.logId);
    expect(logged).toMatchObject({ status: DeliveryStatus.DUPLICATE, taskId: task!.id });
    expect(tasks.tasks).toHaveLength(1);
  });

  it("drops an entry the tasks service refuses as invalid, recording why, and goes on to the next", async () => {
    tasks.refuse = (e) => (e.deliveryId === "invalid" ? "delivery_id: is not a valid delivery id" : undefined);
    const invalid = create(EventSchema, { ...event(0), deliveryId: "invalid" });
    const bad = await deliveries.record({
      route: "custom/crash-test",
      status: DeliveryStatus.QUEUED,
      httpStatus: 202,
      receivedAt: new Date(),
      headers: {},
      bodySize: 0,
    });
    await outbox.add(invalid, bad.id, "");
    const [good] = await queue(1);

    startForwarder({ pollMs: 20 });
    await vi.waitFor(async () => expect(await outbox.length()).toBe(0), POLL);
    const refused = await deliveries.get(bad.id);
    expect(refused.status).toBe(DeliveryStatus.REJECTED);
    expect(refused.reason).toMatch(/^tasks refused it: /);
    expect((await deliveries.get(good!.logId)).taskId).not.toBe("");
  });

  it("keeps entries while tasks is down, then submits them all in batches, each delivery once", async () => {
    tasks.unavailable = true;
    startForwarder({ pollMs: 20 });
    const queued = await queue(90);
    // Tried and refused: the entries stay, pending with the forwarder.
    await sleep(300);
    expect(tasks.tasks).toHaveLength(0);
    expect(await outbox.length()).toBe(90);

    tasks.unavailable = false;
    await vi.waitFor(async () => expect(await outbox.length()).toBe(0), POLL);
    expect(tasks.tasks).toHaveLength(90);
    expect([...tasks.submissions.values()].every((n) => n === 1)).toBe(true);
    // What accumulated went in batches, not one call per entry.
    expect(tasks.batches.length).toBeLessThan(10);
    for (const q of queued) expect((await deliveries.get(q.logId)).status).toBe(DeliveryStatus.ACCEPTED);
  });

  it("gathers what arrives while tasks is slow into the next batch, and submits each delivery once", async () => {
    tasks.delayMs = 150;
    startForwarder({ pollMs: 20 });
    for (let i = 0; i < 6; i++) {
      await queue(10, i * 10);
      await sleep(40);
    }
    await vi.waitFor(async () => expect(await outbox.length()).toBe(0), POLL);
    expect(tasks.tasks).toHaveLength(60);
    expect([...tasks.submissions.values()].every((n) => n === 1)).toBe(true);
    expect(Math.max(...tasks.batches)).toBeGreaterThan(1);
  });

  it("sends new batches while earlier ones are being answered, at most three at once, each delivery once", async () => {
    tasks.delayMs = 200;
    startForwarder({ pollMs: 20 });
    for (let i = 0; i < 10; i++) {
      await queue(5, i * 5);
      await sleep(30);
    }
    await vi.waitFor(async () => expect(await outbox.length()).toBe(0), POLL);
    expect(tasks.tasks).toHaveLength(50);
    expect([...tasks.submissions.values()].every((n) => n === 1)).toBe(true);
    expect(tasks.mostAtOnce).toBe(3);
  });

  it("sends a batch that failed among others in flight again, once they are answered: none lost, none doubled", async () => {
    tasks.delayMs = 100;
    tasks.failCalls = 2;
    startForwarder({ pollMs: 20 });
    const queued: Array<{ logId: string }> = [];
    for (let i = 0; i < 8; i++) {
      queued.push(...(await queue(5, i * 5)));
      await sleep(20);
    }
    await vi.waitFor(async () => expect(await outbox.length()).toBe(0), POLL);
    expect(tasks.failCalls).toBe(0);
    expect(tasks.tasks.map((t) => t.event!.deliveryId).sort()).toEqual(
      Array.from({ length: 40 }, (_, i) => `delivery-${i}`).sort(),
    );
    // Answered once each: a failed call's deliveries were not answered, and were sent again.
    expect([...tasks.submissions.values()].every((n) => n === 1)).toBe(true);
    expect(await db.redis.xpending(`${keyPrefix}outbox`, "forwarder")).toEqual([0, null, null, null]);
    for (const q of queued) expect((await deliveries.get(q.logId)).status).toBe(DeliveryStatus.ACCEPTED);
  });

  it("resubmits a batch tasks took too long to answer, and it stays one task per delivery", async () => {
    tasks.delayMs = 300;
    startForwarder({ pollMs: 20, submitTimeoutMs: 100 });
    await queue(5);
    await sleep(500);
    tasks.delayMs = 0;
    await vi.waitFor(async () => expect(await outbox.length()).toBe(0), POLL);
    expect(tasks.tasks.map((t) => t.event!.deliveryId).sort()).toEqual([0, 1, 2, 3, 4].map((i) => `delivery-${i}`));
  });

  it("shares one outbox between two gateways' forwarders: every delivery submitted once", async () => {
    tasks.delayMs = 10;
    const other = new Outbox(db.redis, { keyPrefix: `${db.prefix}gateway:` });
    startForwarder({ pollMs: 20 }, "gateway-a", outbox);
    startForwarder({ pollMs: 20 }, "gateway-b", other);
    for (let i = 0; i < 10; i++) {
      // Each gateway appends what it acknowledged to the one stream.
      await queue(10, i * 20, outbox);
      await queue(10, i * 20 + 10, other);
    }
    await vi.waitFor(async () => expect(await outbox.length()).toBe(0), POLL);
    expect(tasks.tasks).toHaveLength(200);
    expect(tasks.submissions.size).toBe(200);
    expect([...tasks.submissions.entries()].filter(([, n]) => n !== 1)).toEqual([]);
    const consumers = (await db.redis.xinfo("CONSUMERS", `${db.prefix}gateway:outbox`, "forwarder")) as unknown[][];
    expect(consumers.map((c) => c[1]).sort()).toEqual(["gateway-a", "gateway-b"]);
  });
});
