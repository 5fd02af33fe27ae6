import { randomUUID } from "node:crypto";
import type * as net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { DEFAULT_HTTP_LIMITS } from "@hookmesh/kit";
import {
  closedByServer,
  type IdleConnection,
  idleConnection,
  memoryLogger,
  refusedConnections,
  signGitHub,
  type TestRedis,
  testRedis,
} from "@hookmesh/kit/testing";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { exampleOf, type RunningGateway, startGateway, TEST_SECRETS } from "../src/testing.js";

/** A tasks URL nothing listens on: deliveries wait in the gateway's outbox, which is all these tests need. */
const NO_TASKS = "http://127.0.0.1:9";

/** Timeouts a test can wait out: the webhook edge's limits, shortened. */
const SHORT_LIMITS = {
  GATEWAY_HTTP_IDLE_TIMEOUT_MS: "400",
  GATEWAY_HTTP_HEADERS_TIMEOUT_MS: "300",
  GATEWAY_HTTP_REQUEST_TIMEOUT_MS: "2000",
  GATEWAY_HTTP_KEEP_ALIVE_TIMEOUT_MS: "200",
};

let db: TestRedis | undefined;
let gateway: RunningGateway | undefined;
const sockets: net.Socket[] = [];

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await gateway?.close();
  await db?.cleanup();
  gateway = undefined;
  db = undefined;
});

async function start(
  env: Record<string, string>,
): Promise<{ gateway: RunningGateway; port: number; lines: () => string[] }> {
  db = await testRedis("gateway-http-limits");
  const { logger, lines } = memoryLogger("gateway");
  gateway = await startGateway(db, NO_TASKS, logger, env);
  return { gateway, port: Number(new URL(gateway.base).port), lines };
}

/** A signed GitHub issue comment, as GitHub posts it. */
async function postWebhook(base: string): Promise<number> {
  const body = JSON.stringify(exampleOf("issue_comment", "created"));
  const res = await fetch(`${base}/webhooks/github`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-github-event": "issue_comment",
      "x-github-delivery": randomUUID(),
      "x-hub-signature-256": signGitHub(body, TEST_SECRETS.github),
    },
    body,
  });
  await res.arrayBuffer();
  return res.status;
}

/** A silent connection to `port`, destroyed after the test. */
async function connect(port: number, greeting?: string): Promise<IdleConnection> {
  const connection = await idleConnection(port, greeting);
  sockets.push(connection.socket);
  return connection;
}

describe("the webhook edge's connection limits", () => {
  it("reads GATEWAY_HTTP_* over the defaults", () => {
    const config = loadConfig({ HOOKMESH_INSECURE: "1", GATEWAY_HTTP_MAX_CONNECTIONS: "50" });
    expect(config.httpLimits).toEqual({ ...DEFAULT_HTTP_LIMITS, maxConnections: 50 });
    expect(() => loadConfig({ HOOKMESH_INSECURE: "1", GATEWAY_HTTP_IDLE_TIMEOUT_MS: "0" })).toThrow(
      /GATEWAY_HTTP_IDLE_TIMEOUT_MS/,
    );
  });

  it("closes 500 idle connections within the idle timeout while webhooks keep being taken", async () => {
    const { gateway, port } = await start(SHORT_LIMITS);
    const idle = [
      // Silent from the start.
      ...(await Promise.all(Array.from({ length: 450 }, () => connect(port)))),
      // Served once, then kept alive with no next request.
      ...(await Promise.all(
        Array.from({ length: 50 }, () => connect(port, "GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")),
      )),
    ];
    const allClosed = Promise.all(idle.map(({ socket }) => closedByServer(socket)));
    for (let i = 0; i < 5; i++) {
      expect(await postWebhook(gateway.base)).toBe(202);
      await sleep(100);
    }
    await allClosed;
    expect(idle.slice(450).every(({ received }) => received().startsWith("HTTP/1.1 200 "))).toBe(true);
    expect(await postWebhook(gateway.base)).toBe(202);
  });

  it("refuses connections beyond GATEWAY_HTTP_MAX_CONNECTIONS, logs it, and serves again when one closes", async () => {
    const { gateway, port, lines } = await start({ GATEWAY_HTTP_MAX_CONNECTIONS: "5" });
    const held = await Promise.all(Array.from({ length: 5 }, () => connect(port)));
    await refusedConnections(port, 3);
    expect(held.every(({ socket }) => !socket.destroyed)).toBe(true);
    expect(lines().filter((line) => line.includes("connection limit reached"))).toHaveLength(1);
    held[0]!.socket.destroy();
    await sleep(50);
    expect(await postWebhook(gateway.base)).toBe(202);
  });

  it("cuts a request whose headers trickle in byte by byte (slowloris) with 408", async () => {
    const { port } = await start({ ...SHORT_LIMITS, GATEWAY_HTTP_IDLE_TIMEOUT_MS: "60000" });
    const { socket, received } = await connect(port);
    const request = "POST /webhooks/github HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n";
    let sent = 0;
    const trickle = setInterval(() => {
      if (!socket.destroyed && sent < request.length) socket.write(request[sent++]!);
    }, 25);
    await closedByServer(socket);
    clearInterval(trickle);
    expect(sent).toBeLessThan(request.length);
    expect(received()).toMatch(/^HTTP\/1\.1 408 /);
  });

  it("answers 431 to more header fields than GATEWAY_HTTP_MAX_HEADERS instead of judging the first ones", async () => {
    const { port } = await start({});
    const body = JSON.stringify(exampleOf("issue_comment", "created"));
    const fillers = Array.from({ length: DEFAULT_HTTP_LIMITS.maxHeaders }, (_, i) => `X-Filler-${i}: 1\r\n`).join("");
    const { socket, received } = await connect(
      port,
      "POST /webhooks/github HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n" +
        `Content-Length: ${Buffer.byteLength(body)}\r\nX-GitHub-Event: issue_comment\r\n` +
        `X-GitHub-Delivery: ${randomUUID()}\r\nX-Hub-Signature-256: ${signGitHub(body, TEST_SECRETS.github)}\r\n` +
        // Past the count, a second signature: a parser that dropped it would judge the first alone.
        `${fillers}X-Hub-Signature-256: sha256=${"0".repeat(64)}\r\n\r\n${body}`,
    );
    await closedByServer(socket);
    expect(received()).toMatch(/^HTTP\/1\.1 431 /);
  });

  it("answers 431 to a header block over GATEWAY_HTTP_MAX_HEADER_BYTES", async () => {
    const { gateway, port } = await start({ GATEWAY_HTTP_MAX_HEADER_BYTES: "4096" });
    const { socket, received } = await connect(
      port,
      `GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Padding: ${"p".repeat(8192)}\r\n\r\n`,
    );
    await closedByServer(socket);
    expect(received()).toMatch(/^HTTP\/1\.1 431 /);
    expect(await postWebhook(gateway.base)).toBe(202);
  });
});
