import http2 from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Health } from "../../gen/health/v1/health_pb.js";
import { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import {
  type ClientFactory,
  type ClientFactoryOptions,
  callOptionsFrom,
  createClientFactory,
} from "../src/client/index.js";

interface TestServer {
  readonly url: string;
  /** HTTP/2 connections accepted so far, across restarts. */
  readonly connections: number;
  /** Listens again, on the same port. */
  start(): Promise<void>;
  /**
   * Stops listening and drops every connection without a GOAWAY, like a crashed process.
   * (A GOAWAY on an idle connection followed by a new call can raise an uncaught exception
   * in connect-node: connectrpc/connect-es#1768.)
   */
  stop(): Promise<void>;
}

const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  vi.restoreAllMocks();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function serve(routes: (router: ConnectRouter) => void): Promise<TestServer> {
  let port = 0;
  let connections = 0;
  let server: http2.Http2Server | undefined;
  const sockets = new Set<Socket>();
  const handle: TestServer = {
    get url() {
      return `http://127.0.0.1:${port}`;
    },
    get connections() {
      return connections;
    },
    async start() {
      const s = http2.createServer(connectNodeAdapter({ routes }));
      s.on("connection", (socket: Socket) => {
        connections++;
        sockets.add(socket);
        socket.on("close", () => sockets.delete(socket));
      });
      await new Promise<void>((resolve, reject) => {
        s.once("error", reject);
        s.listen(port, "127.0.0.1", resolve);
      });
      port = (s.address() as AddressInfo).port;
      server = s;
    },
    async stop() {
      const s = server;
      if (!s) return;
      server = undefined;
      const closed = new Promise<void>((resolve) => s.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
  await handle.start();
  cleanups.push(() => handle.stop());
  return handle;
}

function factory(options: Partial<ClientFactoryOptions> = {}): ClientFactory {
  const f = createClientFactory({ logger: pino({ level: "silent" }), ...options });
  cleanups.push(() => f.close());
  return f;
}

function captureLogs() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => lines.push(JSON.parse(line)) });
  return { logger, lines };
}

/** A unary handler that counts its calls and lets `respond` fail or delay the n-th one. */
function handler(respond: (call: number, ctx: HandlerContext) => Promise<void> | void = () => {}) {
  const counted = {
    calls: 0,
    fn: async (_req: unknown, ctx: HandlerContext) => {
      counted.calls++;
      await respond(counted.calls, ctx);
      return {};
    },
  };
  return counted;
}

function failFirst(times: number, code: Code) {
  return handler((call) => {
    if (call <= times) throw new ConnectError(`planned failure ${call}`, code);
  });
}

/** The error a call fails with. */
async function failureOf(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail");
}

/** Resolves once the call is canceled, by deadline or by the caller. */
function untilAborted(ctx: HandlerContext): Promise<void> {
  return new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve(), { once: true }));
}

/** Test-table rows that print as code names. */
function named(codes: Code[]): [string, Code][] {
  return codes.map((code) => [Code[code], code]);
}

const getTask = TaskService.method.getTask;

describe("circuit breaker", () => {
  it("opens when the downstream goes away, fails fast while open, and closes after a successful trial", async () => {
    const impl = handler();
    const server = await serve((r) => r.service(TaskService, { getTask: impl.fn }));
    const { logger, lines } = captureLogs();
    const f = factory({
      logger,
      breaker: { volumeThreshold: 3, errorThresholdPercentage: 50, resetTimeoutMs: 500 },
      retry: { maxAttempts: 1 },
    });
    const client = f.client(TaskService, server.url);
    const state = () => f.breakerState(server.url, getTask);

    await client.getTask({});
    await server.stop();
    // A call racing the teardown may fail with Canceled, which does not count; the ones
    // after it find the connection refused.
    for (let i = 0; i < 5 && state() !== "open"; i++) {
      await expect(client.getTask({})).rejects.toBeInstanceOf(ConnectError);
    }
    expect(state()).toBe("open");
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 40,
        msg: expect.stringContaining("circuit opened"),
        downstream: server.url,
        procedure: "/hookmesh.tasks.v1.TaskService/GetTask",
      }),
    );

    // The trial call finds nothing listening, and the circuit opens again.
    await vi.waitFor(() => expect(state()).toBe("halfOpen"), { timeout: 3000, interval: 10 });
    await expect(client.getTask({})).rejects.toMatchObject({ code: Code.Unavailable });
    expect(state()).toBe("open");

    // Back on the same port, but the circuit is still open: no connection, no call.
    await server.start();
    const connections = server.connections;
    await expect(client.getTask({})).rejects.toMatchObject({
      code: Code.Unavailable,
      rawMessage: "circuit to /hookmesh.tasks.v1.TaskService/GetTask is open",
    });
    expect(server.connections).toBe(connections);
    expect(impl.calls).toBe(1);

    await vi.waitFor(() => expect(state()).toBe("halfOpen"), { timeout: 3000, interval: 10 });
    await client.getTask({});
    expect(state()).toBe("closed");
    expect(impl.calls).toBe(2);
    expect(lines).toContainEqual(expect.objectContaining({ level: 30, msg: "circuit closed", downstream: server.url }));
  });

  it.each(
    named([
      Code.Unavailable,
      Code.DeadlineExceeded,
      Code.ResourceExhausted,
      Code.Internal,
      Code.Unknown,
      Code.DataLoss,
    ]),
  )("counts %s as an outage", async (_, code) => {
    const impl = failFirst(Infinity, code);
    const server = await serve((r) => r.service(TaskService, { getTask: impl.fn }));
    const f = factory({ breaker: { volumeThreshold: 2 }, retry: { maxAttempts: 1 } });
    const client = f.client(TaskService, server.url);

    await expect(client.getTask({})).rejects.toMatchObject({ code });
    await expect(client.getTask({})).rejects.toMatchObject({ code });
    expect(f.breakerState(server.url, getTask)).toBe("open");
  });

  it("never opens on caller errors, however many", async () => {
    const callerCodes = [
      Code.InvalidArgument,
      Code.NotFound,
      Code.AlreadyExists,
      Code.PermissionDenied,
      Code.Unauthenticated,
      Code.FailedPrecondition,
      Code.OutOfRange,
      Code.Canceled,
      Code.Unimplemented,
    ];
    const impl = handler((call) => {
      throw new ConnectError("caller error", callerCodes[call % callerCodes.length]);
    });
    const server = await serve((r) => r.service(TaskService, { getTask: impl.fn }));
    const f = factory({ breaker: { volumeThreshold: 2, errorThresholdPercentage: 1 } });
    const client = f.client(TaskService, server.url);

    for (let i = 0; i < 30; i++) {
      await expect(client.getTask({})).rejects.toBeInstanceOf(ConnectError);
    }
    expect(impl.calls).toBe(30);
    expect(f.breakerState(server.url, getTask)).toBe("closed");
  });

  it("is one per downstream and method, and an open one ends the retries", async () => {
    const failing = failFirst(Infinity, Code.Unavailable);
    const listing = handler();
    const server = await serve((r) => r.service(TaskService, { getTask: failing.fn, listTasks: listing.fn }));
    const other = await serve((r) => r.service(TaskService, { getTask: handler().fn }));
    const f = factory({ breaker: { volumeThreshold: 2 }, retry: { maxAttempts: 5, baseDelayMs: 1 } });

    // The second attempt opens the circuit, so the third fails fast and is not retried.
    await expect(f.client(TaskService, server.url).getTask({})).rejects.toThrow(/circuit to .*GetTask is open/);
    expect(failing.calls).toBe(2);

    // Clients of the same downstream share its breakers, however the URL is spelled.
    await expect(f.client(TaskService, `${server.url}/`).getTask({})).rejects.toThrow(/is open/);
    expect(failing.calls).toBe(2);
    await f.client(TaskService, server.url).listTasks({});
    await f.client(TaskService, other.url).getTask({});
    expect(f.breakers()).toEqual(
      expect.arrayContaining([
        { downstream: server.url, procedure: "/hookmesh.tasks.v1.TaskService/GetTask", state: "open" },
        { downstream: server.url, procedure: "/hookmesh.tasks.v1.TaskService/ListTasks", state: "closed" },
        { downstream: other.url, procedure: "/hookmesh.tasks.v1.TaskService/GetTask", state: "closed" },
      ]),
    );
  });

  it("guards establishing a server stream", async () => {
    const server = await serve((r) => r.service(Health, {}));
    await server.stop();
    const f = factory({ breaker: { volumeThreshold: 2 } });
    const client = f.client(Health, server.url);
    const watch = async () => {
      for await (const _ of client.watch({})) return;
    };

    await expect(watch()).rejects.toMatchObject({ code: Code.Unavailable });
    await expect(watch()).rejects.toMatchObject({ code: Code.Unavailable });
    expect(f.breakerState(server.url, Health.method.watch)).toBe("open");
    await expect(watch()).rejects.toThrow(/circuit to \/grpc.health.v1.Health\/Watch is open/);
  });

  it("fails every call fast after close()", async () => {
    const impl = handler();
    const server = await serve((r) => r.service(TaskService, { getTask: impl.fn, listTasks: impl.fn }));
    const f = factory();
    const client = f.client(TaskService, server.url);
    await client.getTask({});

    f.close();
    await expect(client.getTask({})).rejects.toMatchObject({ code: Code.Unavailable });
    await expect(client.listTasks({})).rejects.toThrow(/circuit to .*ListTasks is shut down/);
    expect(impl.calls).toBe(1);
  });
});

describe("retries", () => {
  it("retry idempotent and side-effect-free methods on Unavailable and ResourceExhausted", async () => {
    const submit = failFirst(2, Code.Unavailable);
    const get = failFirst(2, Code.ResourceExhausted);
    const server = await serve((r) => r.service(TaskService, { submitEvent: submit.fn, getTask: get.fn }));
    const client = factory({ retry: { baseDelayMs: 1 } }).client(TaskService, server.url);

    await client.submitEvent({});
    await client.getTask({});
    expect(submit.calls).toBe(3);
    expect(get.calls).toBe(3);
  });

  it("give up after maxAttempts", async () => {
    const impl = failFirst(Infinity, Code.Unavailable);
    const server = await serve((r) => r.service(TaskService, { getTask: impl.fn }));
    const client = factory({ retry: { maxAttempts: 4, baseDelayMs: 1 } }).client(TaskService, server.url);

    await expect(client.getTask({})).rejects.toMatchObject({ code: Code.Unavailable });
    expect(impl.calls).toBe(4);
  });

  it.each(named([Code.NotFound, Code.Internal, Code.DeadlineExceeded, Code.Aborted]))(
    "do not retry %s",
    async (_, code) => {
      const impl = failFirst(1, code);
      const server = await serve((r) => r.service(TaskService, { getTask: impl.fn }));
      const client = factory({ retry: { baseDelayMs: 1 } }).client(TaskService, server.url);

      await expect(client.getTask({})).rejects.toMatchObject({ code });
      expect(impl.calls).toBe(1);
    },
  );

  it("do not retry a method without idempotency once the request was sent", async () => {
    const check = failFirst(1, Code.Unavailable);
    const server = await serve((r) => r.service(Health, { check: check.fn }));
    const client = factory({ retry: { baseDelayMs: 1 } }).client(Health, server.url);

    await expect(client.check({})).rejects.toMatchObject({ code: Code.Unavailable });
    expect(check.calls).toBe(1);
  });

  it("retry any method when the connection was refused, since nothing was sent", async () => {
    const check = handler();
    const server = await serve((r) => r.service(Health, { check: check.fn }));
    await server.stop();
    const { logger, lines } = captureLogs();
    const client = factory({
      logger,
      retry: { maxAttempts: 50, baseDelayMs: 20, maxDelayMs: 40 },
      retryBudget: { maxTokens: 1000 },
      breaker: { volumeThreshold: 1000 },
    }).client(Health, server.url);

    const restarted = new Promise((resolve) => setTimeout(resolve, 150)).then(() => server.start());
    await client.check({}, { timeoutMs: 5000 });
    await restarted;
    expect(check.calls).toBe(1);
    expect(lines).toContainEqual(expect.objectContaining({ msg: "retrying call", code: "Unavailable", attempt: 1 }));
  });
});

describe("retry budget", () => {
  it("stops retrying while the downstream keeps failing, and allows retries again after successes", async () => {
    let failing = true;
    const impl = handler(() => {
      if (failing) throw new ConnectError("down", Code.Unavailable);
    });
    const server = await serve((r) => r.service(TaskService, { getTask: impl.fn }));
    const client = factory({
      retry: { maxAttempts: 3, baseDelayMs: 1 },
      // Retries while more than 2 of 4 tokens remain; each success gives one back.
      retryBudget: { maxTokens: 4, tokenRatio: 1 },
      breaker: { volumeThreshold: 1000 },
    }).client(TaskService, server.url);
    const attemptsOfOneCall = async () => {
      const before = impl.calls;
      await client.getTask({}).catch(() => {});
      return impl.calls - before;
    };

    expect(await attemptsOfOneCall()).toBe(2); // 4 → 3 tokens, retry; 3 → 2, stop
    expect(await attemptsOfOneCall()).toBe(1);
    expect(await attemptsOfOneCall()).toBe(1);

    failing = false;
    for (let i = 0; i < 4; i++) await client.getTask({});
    failing = true;
    expect(await attemptsOfOneCall()).toBe(2);
  });

  it("is kept per downstream", async () => {
    const down = failFirst(Infinity, Code.Unavailable);
    const flaky = failFirst(1, Code.Unavailable);
    const a = await serve((r) => r.service(TaskService, { getTask: down.fn }));
    const b = await serve((r) => r.service(TaskService, { getTask: flaky.fn }));
    const f = factory({
      retry: { maxAttempts: 2, baseDelayMs: 1 },
      // Retries while more than 1.5 of 3 tokens remain.
      retryBudget: { maxTokens: 3 },
      breaker: { volumeThreshold: 1000 },
    });

    await expect(f.client(TaskService, a.url).getTask({})).rejects.toMatchObject({ code: Code.Unavailable });
    expect(down.calls).toBe(2); // 3 → 2 tokens, retry; 2 → 1
    await expect(f.client(TaskService, a.url).getTask({})).rejects.toMatchObject({ code: Code.Unavailable });
    expect(down.calls).toBe(3);
    await f.client(TaskService, b.url).getTask({});
    expect(flaky.calls).toBe(2);
  });
});

describe("deadlines", () => {
  it("ends a slow call at the caller's deadline, with DeadlineExceeded, and cancels it downstream", async () => {
    let serverCanceled = false;
    const impl = handler(async (_, ctx) => {
      await untilAborted(ctx);
      serverCanceled = true;
    });
    const server = await serve((r) => r.service(TaskService, { listTasks: impl.fn }));
    const client = factory().client(TaskService, server.url);

    const started = performance.now();
    await expect(client.listTasks({}, { timeoutMs: 300 })).rejects.toMatchObject({ code: Code.DeadlineExceeded });
    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(2000);
    expect(impl.calls).toBe(1);
    await vi.waitFor(() => expect(serverCanceled).toBe(true));
  });

  it("applies defaultTimeoutMs when the caller gives no deadline", async () => {
    const seen: (number | undefined)[] = [];
    const impl = handler((_, ctx) => {
      seen.push(ctx.timeoutMs());
    });
    const server = await serve((r) => r.service(TaskService, { getTask: impl.fn }));
    const client = factory({ defaultTimeoutMs: 700 }).client(TaskService, server.url);

    await client.getTask({});
    await client.getTask({}, { timeoutMs: 5000 });
    expect(seen[0]).toBeGreaterThan(0);
    expect(seen[0]).toBeLessThanOrEqual(700);
    expect(seen[1]).toBeGreaterThan(700);
  });

  it("sends each retry with the time that is left, and never retries past the deadline", async () => {
    const seen: number[] = [];
    const impl = handler(async (_, ctx) => {
      seen.push(ctx.timeoutMs() ?? Infinity);
      await new Promise((resolve) => setTimeout(resolve, 100));
      throw new ConnectError("down", Code.Unavailable);
    });
    const server = await serve((r) => r.service(TaskService, { getTask: impl.fn }));
    const client = factory({ retry: { maxAttempts: 100, baseDelayMs: 1, maxDelayMs: 1 } }).client(
      TaskService,
      server.url,
    );

    const started = performance.now();
    const err = await failureOf(client.getTask({}, { timeoutMs: 450 }));
    expect(performance.now() - started).toBeLessThan(1500);
    expect([Code.DeadlineExceeded, Code.Unavailable]).toContain(err.code);
    expect(impl.calls).toBeGreaterThanOrEqual(2);
    expect(impl.calls).toBeLessThanOrEqual(5);
    expect(seen[0]).toBeLessThanOrEqual(450);
    for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeLessThan(seen[i - 1] - 50);
  });

  it("does not start a retry whose delay would outlast the deadline", async () => {
    vi.spyOn(Math, "random").mockReturnValue(0.99);
    const impl = failFirst(Infinity, Code.Unavailable);
    const server = await serve((r) => r.service(TaskService, { getTask: impl.fn }));
    const client = factory({ retry: { baseDelayMs: 5000, maxDelayMs: 5000 } }).client(TaskService, server.url);

    const started = performance.now();
    await expect(client.getTask({}, { timeoutMs: 2000 })).rejects.toMatchObject({ code: Code.Unavailable });
    expect(performance.now() - started).toBeLessThan(1000);
    expect(impl.calls).toBe(1);
  });

  it("cancels the downstream call when the caller aborts", async () => {
    let serverCanceled = false;
    const impl = handler(async (_, ctx) => {
      await untilAborted(ctx);
      serverCanceled = true;
    });
    const server = await serve((r) => r.service(TaskService, { listTasks: impl.fn }));
    const client = factory().client(TaskService, server.url);
    const controller = new AbortController();

    const call = client.listTasks({}, { signal: controller.signal });
    await vi.waitFor(() => expect(impl.calls).toBe(1));
    controller.abort();
    await expect(call).rejects.toMatchObject({ code: Code.Canceled });
    await vi.waitFor(() => expect(serverCanceled).toBe(true));
    expect(impl.calls).toBe(1);
  });

  it("cancels a retry that is waiting for its backoff when the caller aborts", async () => {
    const impl = failFirst(Infinity, Code.Unavailable);
    const server = await serve((r) => r.service(TaskService, { getTask: impl.fn }));
    const client = factory({ defaultTimeoutMs: 120_000, retry: { baseDelayMs: 60_000, maxDelayMs: 60_000 } }).client(
      TaskService,
      server.url,
    );
    vi.spyOn(Math, "random").mockReturnValue(0.99);
    const controller = new AbortController();

    const call = client.getTask({}, { signal: controller.signal });
    await vi.waitFor(() => expect(impl.calls).toBe(1));
    controller.abort();
    await expect(call).rejects.toMatchObject({ code: Code.Canceled });
    expect(impl.calls).toBe(1);
  });

  it("callOptionsFrom hands a handler's deadline and cancellation to its downstream calls", async () => {
    const seen: (number | undefined)[] = [];
    let backendStarted = false;
    let backendCanceled = false;
    const backend = await serve((r) =>
      r.service(TaskService, {
        getTask: async (_req, ctx) => {
          seen.push(ctx.timeoutMs());
          return {};
        },
        listTasks: async (_req, ctx) => {
          backendStarted = true;
          await untilAborted(ctx);
          backendCanceled = true;
          return {};
        },
      }),
    );
    const f = factory({ defaultTimeoutMs: 60_000 });
    const downstream = f.client(TaskService, backend.url);
    const frontend = await serve((r) =>
      r.service(TaskService, {
        getTask: (req, ctx) => downstream.getTask(req, callOptionsFrom(ctx)),
        listTasks: (req, ctx) => downstream.listTasks(req, callOptionsFrom(ctx)),
      }),
    );
    const client = f.client(TaskService, frontend.url);

    await client.getTask({}, { timeoutMs: 800 });
    expect(seen[0]).toBeGreaterThan(0);
    expect(seen[0]).toBeLessThanOrEqual(800);

    const controller = new AbortController();
    const call = client.listTasks({}, { signal: controller.signal });
    await vi.waitFor(() => expect(backendStarted).toBe(true));
    controller.abort();
    await expect(call).rejects.toMatchObject({ code: Code.Canceled });
    await vi.waitFor(() => expect(backendCanceled).toBe(true));
  });
});
