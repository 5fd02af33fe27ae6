import { memoryLogger, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type RunningGateway, startGateway } from "../src/testing.js";

/** A tasks URL nothing listens on: readiness is the gateway's own store, whatever tasks does. */
const NO_TASKS = "http://127.0.0.1:9";

describe("the gateway's /healthz and /readyz", () => {
  let db: TestRedis;
  let gateway: RunningGateway;

  beforeEach(async () => {
    db = await testRedis("gateway-http-endpoints");
    gateway = await startGateway(db, NO_TASKS, memoryLogger("gateway").logger);
  });

  afterEach(async () => {
    await gateway?.close();
    await db?.cleanup();
  });

  it("is ready while its Redis answers, even with no tasks service to feed", async () => {
    const res = await fetch(`${gateway.base}/readyz`);
    expect([res.status, await res.json()]).toEqual([200, { status: "ready" }]);
  });

  it("is not ready when its Redis does not answer, and still alive", async () => {
    gateway.redis.disconnect();
    const gone = await fetch(`${gateway.base}/readyz`);
    expect([gone.status, await gone.json()]).toEqual([503, { status: "not ready" }]);
    expect((await fetch(`${gateway.base}/healthz`)).status).toBe(200);
    for (const method of ["POST", "HEAD"]) {
      const res = await fetch(`${gateway.base}/readyz`, { method });
      expect(res.status).toBe(405);
      expect(res.headers.get("allow")).toBe("GET");
    }
  });
});
