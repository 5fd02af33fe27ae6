import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import * as tls from "node:tls";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { createClientFactory } from "../src/client/index.js";
import { ConfigError } from "../src/config.js";
import { HealthState } from "../src/health.js";
import {
  DEFAULT_HTTP_LIMITS,
  DEFAULT_SERVER_LIMITS,
  envHttpLimits,
  envServerLimits,
  limitHttp1,
  refuseExcessHeaders,
  type ServerLimits,
} from "../src/limits.js";
import { envListen } from "../src/listen.js";
import { createMeshServer, type MeshServer, type ServerOptions } from "../src/serve.js";
import { type TestIdentities, testIdentities } from "../src/testing/identities.js";
import { memoryLogger } from "../src/testing/logger.js";
import { closedByServer, idleConnection, refusedConnections } from "../src/testing/net.js";

/** Short enough that a test waits for them, long enough that a busy machine makes a call within them. */
const LIMITS: ServerLimits = {
  ...DEFAULT_SERVER_LIMITS,
  idleTimeoutMs: 400,
  handshakeTimeoutMs: 400,
  headersTimeoutMs: 300,
  // Shorter than the streams the tests keep open: it bounds receiving a request, not answering it.
  requestTimeoutMs: 500,
  keepAliveTimeoutMs: 200,
};

/** The service Health.Watch watches: "" is the server as a whole. */
const WATCHED = "";

const servers: MeshServer[] = [];
const cleanups: (() => void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup();
  await Promise.all(servers.splice(0).map((server) => server.close(100)));
});

let identities: TestIdentities;
beforeAll(async () => {
  identities = await testIdentities();
});

interface Started {
  server: MeshServer;
  port: number;
  url: string;
  health: HealthState;
  lines: () => string[];
}

/** A server with only health and reflection, under `limits`, with the tasks identity when `secure`. */
async function start(limits: Partial<ServerLimits> = {}, secure = false): Promise<Started> {
  const { logger, lines } = memoryLogger("limits-test");
  const health = new HealthState([], ServingStatus.SERVING);
  const options: ServerOptions = { routes: () => {}, health, logger, limits: { ...LIMITS, ...limits } };
  const server = createMeshServer(secure ? { ...options, identity: identities.identity("tasks") } : options);
  servers.push(server);
  const { port } = await server.listen(0, "127.0.0.1");
  return { server, port, url: `${secure ? "https" : "http"}://127.0.0.1:${port}`, health, lines };
}

/**
 * A TCP relay in front of `port` that counts the connections through it, so that a test sees
 * when the server closed a client's connection and the client opened another.
 */
async function relay(
  port: number,
): Promise<{ url: (scheme: string) => string; accepted: () => number; open: () => number }> {
  let accepted = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((downstream) => {
    accepted++;
    const upstream = net.connect(port, "127.0.0.1");
    sockets.add(downstream);
    downstream.once("close", () => sockets.delete(downstream));
    downstream.pipe(upstream).pipe(downstream);
    upstream.on("error", () => downstream.destroy());
    downstream.on("error", () => upstream.destroy());
    upstream.once("close", () => downstream.destroy());
    downstream.once("close", () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  const { port: relayPort } = server.address() as net.AddressInfo;
  return { url: (scheme) => `${scheme}://127.0.0.1:${relayPort}`, accepted: () => accepted, open: () => sockets.size };
}

/** `count` silent connections to `port`, each sending `greeting` (if any), destroyed after the test. */
async function idleConnections(port: number, count: number, greeting?: string | Buffer): Promise<net.Socket[]> {
  const connections = await Promise.all(Array.from({ length: count }, () => idleConnection(port, greeting)));
  return connections.map(({ socket }) => {
    cleanups.push(() => socket.destroy());
    return socket;
  });
}

const HTTP2_PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/** An empty SETTINGS frame: with the preface, a complete HTTP/2 client greeting that opens no stream. */
const EMPTY_SETTINGS = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);

/** Health.Watch, read into `statuses`; resolves once its first status came. */
async function watchHealth(transport: Parameters<typeof createClient>[1], signal: AbortSignal) {
  const statuses: ServingStatus[] = [];
  let first!: () => void;
  const started = new Promise<void>((resolve) => (first = resolve));
  const done = (async () => {
    for await (const res of createClient(Health, transport).watch({ service: WATCHED }, { signal })) {
      statuses.push(res.status);
      first();
    }
  })().catch((err: unknown) => {
    if (!signal.aborted) throw err;
  });
  await started;
  return { statuses, done };
}

async function until(condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe("a cleartext mesh port", () => {
  it("closes 500 idle connections within its timeouts while unary calls and a longer stream keep working", async () => {
    const { port, url, health } = await start();
    const clients = createClientFactory({ logger: memoryLogger("client").logger });
    cleanups.push(() => clients.close());
    const check = () => clients.client(Health, url).check({});
    const watching = new AbortController();
    cleanups.push(() => watching.abort());
    const watch = await watchHealth(createConnectTransport({ baseUrl: url, httpVersion: "2" }), watching.signal);
    const watchOverHttp1 = await watchHealth(
      createConnectTransport({ baseUrl: url, httpVersion: "1.1" }),
      watching.signal,
    );

    const idle = [
      // Silent: never says which protocol it speaks.
      ...(await idleConnections(port, 300)),
      // HTTP/2 sessions that open no stream.
      ...(await idleConnections(port, 150, Buffer.concat([Buffer.from(HTTP2_PREFACE), EMPTY_SETTINGS]))),
      // HTTP/1.1 connections that began a request line and went quiet.
      ...(await idleConnections(port, 50, "GET /")),
    ];
    expect(idle).toHaveLength(500);
    const allClosed = Promise.all(idle.map((socket) => closedByServer(socket)));
    // Calls go on while the idle connections are open and being closed.
    for (let i = 0; i < 5; i++) {
      expect((await check()).status).toBe(ServingStatus.SERVING);
      await sleep(100);
    }
    await allClosed;

    // Both streams outlived every timeout (idle, keep-alive, request) and still deliver.
    health.set(WATCHED, ServingStatus.NOT_SERVING);
    await until(
      () =>
        watch.statuses.at(-1) === ServingStatus.NOT_SERVING &&
        watchOverHttp1.statuses.at(-1) === ServingStatus.NOT_SERVING,
      "both streams to see NOT_SERVING",
    );
    expect((await check()).status).toBe(ServingStatus.NOT_SERVING);
  });

  it("sends GOAWAY to an idle HTTP/2 session, and the mesh client's next call opens a new one", async () => {
    const { port } = await start();
    const through = await relay(port);
    const clients = createClientFactory({ logger: memoryLogger("client").logger });
    cleanups.push(() => clients.close());
    const health = clients.client(Health, through.url("http"));
    expect((await health.check({})).status).toBe(ServingStatus.SERVING);
    expect(through.accepted()).toBe(1);
    await until(() => through.open() === 0, "the server to close the idle session");
    expect((await health.check({})).status).toBe(ServingStatus.SERVING);
    expect(through.accepted()).toBe(2);
  });

  it("loses no call sent around the server's idle timeout, as the mesh client closes idle connections first", async () => {
    const { url } = await start({ idleTimeoutMs: 200 });
    // No retries: a call that crossed the server's GOAWAY would fail the test.
    const clients = createClientFactory({
      logger: memoryLogger("client").logger,
      idleTimeoutMs: 100,
      retry: { maxAttempts: 1 },
    });
    cleanups.push(() => clients.close());
    const health = clients.client(Health, url);
    for (let i = 0; i < 15; i++) {
      expect((await health.check({})).status).toBe(ServingStatus.SERVING);
      await sleep(190 + Math.random() * 20);
    }
  });

  it("keeps an HTTP/2 session whose only stream is quiet for longer than the idle timeout", async () => {
    const { port, health } = await start();
    const through = await relay(port);
    const clients = createClientFactory({ logger: memoryLogger("client").logger });
    cleanups.push(() => clients.close());
    const watching = new AbortController();
    cleanups.push(() => watching.abort());
    const transport = createConnectTransport({ baseUrl: through.url("http"), httpVersion: "2" });
    const watch = await watchHealth(transport, watching.signal);
    await sleep(LIMITS.idleTimeoutMs * 3);
    health.set(WATCHED, ServingStatus.NOT_SERVING);
    await until(() => watch.statuses.at(-1) === ServingStatus.NOT_SERVING, "the stream to see NOT_SERVING");
    expect([through.accepted(), through.open()]).toEqual([1, 1]);
    // Once its stream ends, the session is idle like any other.
    watching.abort();
    await watch.done;
    await until(() => through.open() === 0, "the server to close the session after its stream");
  });

  it("refuses connections beyond its cap at once, logs it once, and serves again when one closes", async () => {
    const { port, url, lines } = await start({ maxConnections: 5, handshakeTimeoutMs: 60_000, idleTimeoutMs: 60_000 });
    const held = await idleConnections(port, 5);
    // Node accepts each one beyond the cap and closes it at once, before it reads a byte.
    await refusedConnections(port, 3);
    expect(held.every((socket) => !socket.destroyed)).toBe(true);
    const refusals = lines().filter((line) => line.includes("connection limit reached"));
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toContain('"maxConnections":5');
    held[0]!.destroy();
    await sleep(50);
    const transport = createConnectTransport({ baseUrl: url, httpVersion: "1.1" });
    expect((await createClient(Health, transport).check({})).status).toBe(ServingStatus.SERVING);
  });

  it("closes a connection stuck in the middle of the HTTP/2 preface, and serves others meanwhile", async () => {
    const { port, url } = await start();
    // One byte that might begin the preface: the server must wait for more without spinning.
    const [partial] = await idleConnections(port, 1, "P");
    const transport = createConnectTransport({ baseUrl: url, httpVersion: "1.1" });
    expect((await createClient(Health, transport).check({})).status).toBe(ServingStatus.SERVING);
    await closedByServer(partial!);
  });

  it("cuts a request whose headers trickle in byte by byte (slowloris) with 408", async () => {
    const { port } = await start({ idleTimeoutMs: 60_000 });
    const socket = net.connect(port, "127.0.0.1");
    cleanups.push(() => socket.destroy());
    let reply = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => (reply += chunk));
    socket.on("error", () => {});
    const request = "POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
    let sent = 0;
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    const trickle = setInterval(() => {
      if (socket.destroyed || sent === request.length) return;
      socket.write(request[sent++]!);
    }, 25);
    cleanups.push(() => clearInterval(trickle));
    await closedByServer(socket);
    expect(sent).toBeLessThan(request.length);
    expect(reply).toMatch(/^HTTP\/1\.1 408 /);
  });

  it("holds HTTP/2 callers to its stream and header caps", async () => {
    const { url } = await start({ maxConcurrentStreams: 3, maxHeaderBytes: 1024 });
    const session = http2.connect(url);
    cleanups.push(() => session.destroy());
    await new Promise<void>((resolve) => session.once("remoteSettings", () => resolve()));
    expect(session.remoteSettings.maxConcurrentStreams).toBe(3);
    expect(session.remoteSettings.maxHeaderListSize).toBe(1024);
    const call = (extra: Record<string, string>) =>
      new Promise<{ status?: number; rstCode?: number }>((resolve) => {
        const stream = session.request({
          ":method": "POST",
          ":path": "/grpc.health.v1.Health/Check",
          "content-type": "application/json",
          ...extra,
        });
        stream.on("error", () => {});
        stream.end("{}");
        stream.once("response", (headers) => resolve({ status: headers[":status"] }));
        stream.once("close", () => resolve({ rstCode: stream.rstCode }));
      });
    // Too many header bytes or fields: the stream is reset before it reaches a handler; the session goes on.
    const refused = { rstCode: http2.constants.NGHTTP2_ENHANCE_YOUR_CALM };
    expect(await call({ "x-padding": "p".repeat(2048) })).toEqual(refused);
    expect(await call(Object.fromEntries(Array.from({ length: 150 }, (_, i) => [`x-extra-${i}`, "1"])))).toEqual(
      refused,
    );
    expect(await call({})).toEqual({ status: 200 });
  });
});

describe("a TLS mesh port", () => {
  it("closes connections that never finish the handshake, idle sessions and idle or kept-alive HTTPS/1.1 connections; mTLS calls reconnect", async () => {
    const { port } = await start({}, true);
    const clients = identities.clients("gateway");
    cleanups.push(() => clients.close());
    const meshClient = await relay(port);
    const health = clients.client(Health, meshClient.url("https"), "tasks");
    expect((await health.check({})).status).toBe(ServingStatus.SERVING);

    // Idle clients reach the server through a relay of their own, which sees the server close
    // a connection even when the client, which reads nothing, does not.
    const idleClients = await relay(port);
    const { port: idlePort } = new URL(idleClients.url("https"));
    const operator = identities.identity("operator").current();
    const handshake = (ALPNProtocols: string[], greeting?: string) =>
      new Promise<void>((resolve, reject) => {
        const socket = tls.connect({
          port: Number(idlePort),
          host: "127.0.0.1",
          ...operator,
          ALPNProtocols,
          rejectUnauthorized: false,
        });
        socket.on("error", () => {});
        socket.once("secureConnect", () => {
          if (greeting !== undefined) socket.write(greeting);
          resolve();
        });
        socket.once("close", () => reject(new Error("closed during the handshake")));
        cleanups.push(() => socket.destroy());
      });
    // TCP only: the TLS handshake never starts.
    await idleConnections(Number(idlePort), 20);
    // Handshaken, and then silent, as HTTP/2 and as HTTP/1.1.
    await Promise.all(Array.from({ length: 10 }, () => handshake(["h2"])));
    await Promise.all(Array.from({ length: 10 }, () => handshake(["http/1.1"])));
    // Served once over HTTPS/1.1, then kept alive with no next request.
    await Promise.all(
      Array.from({ length: 10 }, () => handshake(["http/1.1"], "GET /healthz HTTP/1.1\r\nHost: tasks\r\n\r\n")),
    );
    expect(idleClients.accepted()).toBe(50);
    await until(() => idleClients.open() === 0, "the server to close every idle connection");

    await until(() => meshClient.open() === 0, "the server to close the mesh client's idle session");
    expect((await health.check({})).status).toBe(ServingStatus.SERVING);
    expect(meshClient.accepted()).toBe(2);
  });
});

describe("limitHttp1 and refuseExcessHeaders on a plain HTTP server", () => {
  it("answers 431 to a request with more than maxHeaders header fields, and serves one with exactly that many", async () => {
    const limits = { ...DEFAULT_HTTP_LIMITS, maxHeaders: 10 };
    const server = http.createServer(
      refuseExcessHeaders(limits, (req: http.IncomingMessage, res: http.ServerResponse) =>
        res.end(String(req.rawHeaders.length / 2)),
      ),
    );
    limitHttp1(server, limits);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => server.close());
    const { port } = server.address() as net.AddressInfo;
    const fields = (count: number) => Array.from({ length: count }, (_, i) => `x-extra-${i}: 1\r\n`).join("");
    // Host and Connection are fields too: 8 more make 10.
    const within = await idleConnection(port, `GET / HTTP/1.1\r\nHost: x\r\n${fields(8)}Connection: close\r\n\r\n`);
    await closedByServer(within.socket);
    expect(within.received()).toMatch(/^HTTP\/1\.1 200 [\s\S]*\r\n\r\n10$/);
    const over = await idleConnection(port, `GET / HTTP/1.1\r\nHost: x\r\n${fields(30)}\r\n`);
    await closedByServer(over.socket);
    expect(over.received()).toMatch(/^HTTP\/1\.1 431 /);
  });
});

describe("envServerLimits", () => {
  it("reads a service's own variable over the mesh-wide one over the default, through envListen", () => {
    const env = {
      HOOKMESH_INSECURE: "1",
      HOOKMESH_SERVER_MAX_CONNECTIONS: "200",
      TASKS_SERVER_MAX_CONNECTIONS: "300",
      HOOKMESH_SERVER_IDLE_TIMEOUT_MS: "5000",
    };
    expect(envListen(env, "tasks", 50051).limits).toEqual({
      ...DEFAULT_SERVER_LIMITS,
      maxConnections: 300,
      idleTimeoutMs: 5_000,
    });
    expect(envServerLimits(env, "agent").maxConnections).toBe(200);
    expect(envServerLimits({}, "agent")).toEqual(DEFAULT_SERVER_LIMITS);
  });

  it("names the variable to fix", () => {
    expect(() => envServerLimits({ TASKS_SERVER_MAX_STREAMS: "0" }, "tasks")).toThrow(ConfigError);
    expect(() => envServerLimits({ TASKS_SERVER_MAX_STREAMS: "0" }, "tasks")).toThrow(/TASKS_SERVER_MAX_STREAMS/);
    expect(() => envServerLimits({ HOOKMESH_SERVER_IDLE_TIMEOUT_MS: "soon" }, "tasks")).toThrow(
      /HOOKMESH_SERVER_IDLE_TIMEOUT_MS/,
    );
    // A request cannot take less time than its own headers.
    expect(() =>
      envServerLimits(
        { HOOKMESH_SERVER_HEADERS_TIMEOUT_MS: "20000", HOOKMESH_SERVER_REQUEST_TIMEOUT_MS: "10000" },
        "x",
      ),
    ).toThrow(/HOOKMESH_SERVER_REQUEST_TIMEOUT_MS/);
  });
});

describe("envHttpLimits", () => {
  it("reads <PREFIX>_<LIMIT>", () => {
    expect(envHttpLimits({ GATEWAY_HTTP_MAX_HEADERS: "50" }, "GATEWAY_HTTP")).toEqual({
      ...DEFAULT_HTTP_LIMITS,
      maxHeaders: 50,
    });
    expect(() => envHttpLimits({ GATEWAY_HTTP_MAX_HEADER_BYTES: "10" }, "GATEWAY_HTTP")).toThrow(
      /GATEWAY_HTTP_MAX_HEADER_BYTES/,
    );
  });
});
