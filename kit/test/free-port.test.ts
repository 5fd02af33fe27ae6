import * as net from "node:net";
import { describe, expect, it } from "vitest";
import { freePort, freePortLadder } from "../src/testing/net.js";

/** Whether a server can listen on `port` on loopback now. */
function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

describe("freePort", () => {
  it("hands out free ports below the ephemeral range, never the same one twice", async () => {
    const ports = await Promise.all(Array.from({ length: 500 }, () => freePort()));
    expect(new Set(ports).size).toBe(ports.length);
    for (const port of ports) {
      expect(port).toBeGreaterThanOrEqual(20_000);
      expect(port).toBeLessThan(32_768);
    }
    expect(await Promise.all(ports.map(bindable))).toEqual(ports.map(() => true));
  });

  it("hands out a ladder of free ports, step apart, none of them handed out before", async () => {
    const single = await freePort();
    const base = await freePortLadder(100, 3);
    const rungs = [base, base + 100, base + 200];
    expect(rungs).not.toContain(single);
    expect(rungs[2]).toBeLessThan(32_768);
    expect(await Promise.all(rungs.map(bindable))).toEqual([true, true, true]);
  });
});
