import { randomUUID } from "node:crypto";
import * as http from "node:http";
import type { Env } from "@hookmesh/kit";
import { memoryLogger, signGitHub, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { DeliveryStatus } from "../../gen/hookmesh/gateway/v1/delivery_pb.js";
import { exampleOf, type RunningGateway, startGateway, TEST_SECRETS } from "../src/testing.js";
import { FakeTasks } from "./fake-tasks.js";

/** A tasks URL nothing listens on: these requests never get as far as the tasks service. */
const NO_TASKS = "http://127.0.0.1:9";
const MiB = 1024 * 1024;

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** POSTs `body` to `/webhooks/{route}` over a connection of its own. */
function post(base: string, route: string, body: Buffer, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}/webhooks/${route}`, { method: "POST", headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () =>
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }),
      );
    });
    req.on("error", reject);
    req.end(body);
  });
}

function github(
  body: Buffer,
  { event = "issue_comment", delivery = randomUUID() as string, secret = TEST_SECRETS.github } = {},
) {
  return {
    "content-type": "application/json",
    "x-github-event": event,
    "x-github-delivery": delivery,
    "x-github-hook-id": "109948940",
    "x-hub-signature-256": signGitHub(body, secret),
  };
}

const ping = Buffer.from(JSON.stringify(exampleOf("ping")));

/** The bytes Redis holds under `prefix`: MEMORY USAGE summed over its keys. */
async function memoryUnder(db: TestRedis, prefix: string): Promise<number> {
  let bytes = 0;
  for await (const keys of db.redis.scanStream({ match: `${prefix}*`, count: 500 })) {
    for (const key of keys as string[]) bytes += Number((await db.redis.memory("USAGE", key)) ?? 0);
  }
  return bytes;
}

/** How long the forwarder may take to submit what was acknowledged, on a busy machine. */
const FORWARDED = { timeout: 15_000, interval: 20 };

describe("the gateway's edge limits", () => {
  let db: TestRedis;
  const gateways: RunningGateway[] = [];
  const closers: Array<() => Promise<void>> = [];

  beforeEach(async () => {
    db = await testRedis("gateway-edge-limits");
  });

  afterEach(async () => {
    for (const gateway of gateways.splice(0)) await gateway.close();
    for (const close of closers.splice(0)) await close();
    await db.cleanup();
  });

  async function start(env: Env = {}, tasksUrl = NO_TASKS): Promise<RunningGateway> {
    const gateway = await startGateway(db, tasksUrl, memoryLogger("gateway").logger, env);
    gateways.push(gateway);
    return gateway;
  }

  describe("refused requests", () => {
    it("1,000 unsigned 60 KB requests grow Redis by less than 1 MiB, each counted", async () => {
      const gateway = await start();
      const body = Buffer.from(JSON.stringify({ action: "created", padding: "x".repeat(60 * 1024) }));
      const headers = { ...github(body), "x-hub-signature-256": `sha256=${"0".repeat(64)}` };
      const before = await memoryUnder(db, db.prefix);
      const statuses: number[] = [];
      const sizes: number[] = [];
      for (let round = 0; round < 100; round++) {
        const answers = await Promise.all(
          Array.from({ length: 10 }, () => post(gateway.base, "github", body, headers)),
        );
        statuses.push(...answers.map((a) => a.status));
        if (round === 49) sizes.push(await memoryUnder(db, db.prefix));
      }
      expect(new Set(statuses)).toEqual(new Set([401]));
      sizes.push(await memoryUnder(db, db.prefix));
      const [half, all] = sizes.map((size) => size - before) as [number, number];
      console.info(`refused 60 KB requests grew Redis by ${half >> 10} KiB after 500, ${all >> 10} KiB after 1,000`);
      expect(all).toBeLessThan(MiB);
      // The per-route cap (500 by default) is full after the first 500: the rest replace entries, not add them.
      expect(all - half).toBeLessThan(64 * 1024);

      expect(await gateway.deliveries.rejections()).toEqual([{ route: "github", httpStatus: 401, count: 1000n }]);
      const [latest] = (await gateway.deliveries.list(1, { status: DeliveryStatus.REJECTED })).deliveries;
      const stored = await gateway.deliveries.get(latest!.id);
      expect(stored).toMatchObject({
        bodySize: BigInt(body.length),
        reason: expect.stringContaining("does not match"),
      });
      expect(stored.bodySha256).toMatch(/^[0-9a-f]{64}$/);
      expect(stored.rawBody).toHaveLength(0);
      expect(stored.headers).toEqual({
        "content-type": "application/json",
        "content-length": String(body.length),
        "x-github-event": "issue_comment",
        "x-github-delivery": headers["x-github-delivery"],
        "x-github-hook-id": "109948940",
      });
    });

    it("keeps at most the brief cap of refused and duplicate entries per route, and the full cap of the rest apart", async () => {
      const tasks = new FakeTasks();
      const server = await tasks.listen();
      closers.push(server.close);
      const gateway = await start(
        { GATEWAY_BRIEF_LOG_MAX_PER_ROUTE: "5", GATEWAY_DELIVERY_LOG_MAX_PER_ROUTE: "3" },
        server.url,
      );
      for (let i = 0; i < 12; i++) {
        const forged = await post(gateway.base, "github", ping, github(ping, { event: "ping", secret: "forged" }));
        expect(forged.status).toBe(401);
      }
      for (let i = 0; i < 4; i++) {
        const body = Buffer.from(JSON.stringify({ ...exampleOf("issue_comment", "created"), n: i }));
        expect((await post(gateway.base, "github", body, github(body))).status).toBe(202);
      }
      // QUEUED until the forwarder has submitted them, behind the acknowledgment.
      await vi.waitFor(async () => {
        const { deliveries } = await gateway.deliveries.list(100, {});
        expect(deliveries.map((d) => d.status)).toEqual([
          ...Array(3).fill(DeliveryStatus.ACCEPTED),
          ...Array(5).fill(DeliveryStatus.REJECTED),
        ]);
      }, FORWARDED);
      expect(await gateway.deliveries.rejections()).toEqual([{ route: "github", httpStatus: 401, count: 12n }]);
    });
  });

  describe("body limits", () => {
    /**
     * Streams `total` bytes (chunked, or under a Content-Length when `declared`) until the
     * gateway answers; resolves with the answer, how much was written by then, and once the
     * gateway has closed the connection.
     */
    function stream(base: string, route: string, headers: Record<string, string>, total: number, declared: boolean) {
      return new Promise<{ status: number; written: number; connection: string | undefined }>((resolve, reject) => {
        const req = http.request(`${base}/webhooks/${route}`, {
          method: "POST",
          headers: declared ? { ...headers, "content-length": String(total) } : headers,
          agent: false,
        });
        const chunk = Buffer.alloc(64 * 1024, "x");
        let written = 0;
        let answer: { status: number; connection: string | undefined } | undefined;
        req.on("response", (res) => {
          answer = { status: res.statusCode!, connection: res.headers.connection };
          res.resume();
        });
        // The gateway closes the connection after its answer; writes after that fail, which is the point.
        req.on("error", () => {});
        req.on("close", () =>
          answer ? resolve({ ...answer, written }) : reject(new Error("closed without an answer")),
        );
        const pump = () => {
          while (!answer && !req.destroyed && written < total) {
            written += chunk.length;
            if (!req.write(chunk)) return void req.once("drain", pump);
          }
          if (written >= total) req.end();
        };
        pump();
      });
    }

    it("answers a declared Content-Length over the provider's limit with 413 before reading any of it", async () => {
      const gateway = await start();
      const headers = { "content-type": "application/json", "x-github-event": "issue_comment" };
      const res = await stream(gateway.base, "github", headers, 100 * MiB, true);
      expect(res).toMatchObject({ status: 413, connection: "close" });
      expect(res.written).toBeLessThan(100 * MiB);
      const [refused] = (await gateway.deliveries.list(1, { status: DeliveryStatus.REJECTED })).deliveries;
      expect(refused).toMatchObject({ httpStatus: 413, bodySize: 0n, bodySha256: "" });
    });

    it("answers a streamed body with 413 once it passes the provider's limit, and closes the connection", async () => {
      const gateway = await start({ SLACK_MAX_BODY_BYTES: String(256 * 1024) });
      const headers = { "content-type": "application/json", "x-slack-request-timestamp": "1" };
      const res = await stream(gateway.base, "slack", headers, 100 * MiB, false);
      expect(res).toMatchObject({ status: 413, connection: "close" });
      expect(res.written).toBeLessThan(100 * MiB);
      const [refused] = (await gateway.deliveries.list(1, { status: DeliveryStatus.REJECTED })).deliveries;
      expect(refused!.httpStatus).toBe(413);
      // What was read: past the limit by at most the chunk that crossed it.
      expect(Number(refused!.bodySize)).toBeGreaterThan(256 * 1024);
      expect(Number(refused!.bodySize)).toBeLessThanOrEqual(256 * 1024 + 64 * 1024);
    });
  });

  describe("rate limit", () => {
    it("is one limit for every gateway on one Redis", async () => {
      const env = { GATEWAY_RATE_LIMIT: "1", GATEWAY_RATE_BURST: "3" };
      const [a, b] = [await start(env), await start(env)];
      const statuses = [];
      for (const gateway of [a, b, a, b]) {
        statuses.push((await post(gateway.base, "github", ping, github(ping, { event: "ping" }))).status);
      }
      expect(statuses).toEqual([200, 200, 200, 429]);
    });

    it("believes X-Forwarded-For only from a trusted proxy", async () => {
      const env = { GATEWAY_RATE_LIMIT: "1", GATEWAY_RATE_BURST: "1" };
      const send = (gateway: RunningGateway, client: string) =>
        post(gateway.base, "github", ping, { ...github(ping, { event: "ping" }), "x-forwarded-for": client }).then(
          (a) => a.status,
        );
      const behindProxy = await start({ ...env, GATEWAY_TRUSTED_PROXIES: "127.0.0.1/32" });
      expect([
        await send(behindProxy, "198.51.100.1"),
        await send(behindProxy, "198.51.100.2"),
        await send(behindProxy, "6.6.6.6, 198.51.100.1"),
      ]).toEqual([200, 200, 429]);

      const direct = await start(env);
      // The header is the sender's own words here: every request is the peer's.
      expect([await send(direct, "198.51.100.3"), await send(direct, "198.51.100.4")]).toEqual([200, 429]);
    });
  });

  describe("replays", () => {
    it("answers a GitHub body replayed under a new X-GitHub-Delivery as a duplicate and submits nothing", async () => {
      const tasks = new FakeTasks();
      const server = await tasks.listen();
      closers.push(server.close);
      const gateway = await start({}, server.url);
      const comment = exampleOf("issue_comment", "created");
      const body = Buffer.from(JSON.stringify(comment));
      const first = await post(gateway.base, "github", body, github(body, { delivery: "original" }));
      expect(first.status).toBe(202);
      const { task_id: taskId } = JSON.parse(first.body) as { task_id: string };

      const replay = await post(gateway.base, "github", body, github(body, { delivery: "forged-new-id" }));
      expect([replay.status, JSON.parse(replay.body)]).toEqual([202, { task_id: taskId, duplicate: true }]);
      // The task the first acknowledgment named, made behind it.
      await vi.waitFor(() => expect(tasks.tasks.map((t) => t.id)).toEqual([taskId]), FORWARDED);
      const [logged] = (await gateway.deliveries.list(1, {})).deliveries;
      expect(logged).toMatchObject({
        status: DeliveryStatus.DUPLICATE,
        deliveryId: "forged-new-id",
        taskId,
        reason: expect.stringContaining("delivery original"),
      });

      // A new event (another body) under any id is still a new delivery.
      const other = Buffer.from(JSON.stringify({ ...comment, comment: { ...(comment.comment as object), id: 1 } }));
      expect((await post(gateway.base, "github", other, github(other))).status).toBe(202);
      await vi.waitFor(() => expect(tasks.tasks).toHaveLength(2), FORWARDED);
    });
  });
});
