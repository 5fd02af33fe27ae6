import * as http from "node:http";
import * as net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { protoPath as healthProtoPath } from "grpc-health-check";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ServerReflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { HealthState } from "../src/health.js";
import { createMeshServer, type MeshServer, type ServerOptions } from "../src/serve.js";
import { callError } from "../src/testing/errors.js";
import { memoryLogger } from "../src/testing/logger.js";

const SECRET_DETAIL = "redis://:hunter2@db refused";
const TASKS = TaskService.typeName;

/**
 * TaskService as a test double. GetTask's id says what to do: `slow:<ms>` answers after that
 * long (or fails when the call is cut), `boom` throws an unknown error, anything else echoes.
 */
function testRoutes(started: (id: string) => void = () => {}): ServerOptions["routes"] {
  return (router) =>
    router.service(TaskService, {
      async getTask(req, ctx) {
        started(req.id);
        if (req.id === "boom") throw new Error(SECRET_DETAIL);
        const slow = /^slow:(\d+)$/.exec(req.id);
        if (slow) await sleep(Number(slow[1]), undefined, { signal: ctx.signal });
        return { task: { id: req.id } };
      },
      submitEvent(req) {
        return { task: { id: req.event?.deliveryId ?? "" } };
      },
    });
}

interface Started {
  server: MeshServer;
  port: number;
  url: string;
  health: HealthState;
  lines: () => string[];
}

const servers: MeshServer[] = [];
const cleanups: (() => void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup();
  await Promise.all(servers.splice(0).map((server) => server.close(100)));
});

async function start(options: Partial<ServerOptions> = {}): Promise<Started> {
  const { logger, lines } = memoryLogger("serve-test");
  const health = options.health ?? new HealthState([TASKS], ServingStatus.SERVING);
  const server = createMeshServer({ routes: testRoutes(), health, logger, ...options });
  servers.push(server);
  const { port } = await server.listen(0, "127.0.0.1");
  return { server, port, url: `http://127.0.0.1:${port}`, health, lines };
}

function grpcTransport(url: string): Transport {
  return createGrpcTransport({ baseUrl: url });
}

/** Resolves with the error code of a fresh TCP connection attempt, or "connected". */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve("connected");
    });
    socket.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

/** A grpc-js client for grpc.health.v1.Health, from the proto that grpc-health-check ships. */
function grpcJsHealthClient(port: number): grpc.Client & Record<string, Function> {
  const definition = protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String, defaults: true });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  };
  const client = new loaded.grpc.health.v1.Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  cleanups.push(() => client.close());
  return client as grpc.Client & Record<string, Function>;
}

function grpcJsCheck(
  client: grpc.Client & Record<string, Function>,
  service: string,
): Promise<{ status: string } | grpc.ServiceError> {
  return new Promise((resolve) => {
    client.Check!({ service }, (err: grpc.ServiceError | null, res: { status: string }) => resolve(err ?? res));
  });
}

/** A Connect unary call over HTTP/1.1 with the global fetch, JSON both ways. */
async function connectJson(url: string, path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** Sends a raw HTTP/1.1 request on a fresh keep-alive connection; resolves with the agent once answered. */
function http1KeepAlive(port: number): Promise<{ agent: http.Agent; status: number }> {
  const agent = new http.Agent({ keepAlive: true });
  cleanups.push(() => agent.destroy());
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        method: "POST",
        path: "/grpc.health.v1.Health/Check",
        headers: { "content-type": "application/json" },
        agent,
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve({ agent, status: res.statusCode ?? 0 }));
      },
    );
    req.on("error", reject);
    req.end("{}");
  });
}

describe("createMeshServer protocols on one cleartext port", () => {
  it("speaks gRPC over h2c", async () => {
    const { url } = await start();
    const health = createClient(Health, grpcTransport(url));
    expect((await health.check({})).status).toBe(ServingStatus.SERVING);
    expect((await health.check({ service: TASKS })).status).toBe(ServingStatus.SERVING);
    const tasks = createClient(TaskService, grpcTransport(url));
    expect((await tasks.getTask({ id: "t-1" })).task?.id).toBe("t-1");
  });

  it("answers Check for an unknown service with NotFound", async () => {
    const { url } = await start();
    const err = await callError(createClient(Health, grpcTransport(url)).check({ service: "nope.Nope" }));
    expect(err.code).toBe(Code.NotFound);
  });

  it("serves an independent gRPC client (grpc-js)", async () => {
    const { port, health } = await start();
    const client = grpcJsHealthClient(port);
    expect(await grpcJsCheck(client, "")).toEqual({ status: "SERVING" });
    health.set(TASKS, ServingStatus.NOT_SERVING);
    expect(await grpcJsCheck(client, TASKS)).toEqual({ status: "NOT_SERVING" });
    const unknown = (await grpcJsCheck(client, "nope.Nope")) as grpc.ServiceError;
    expect(unknown.code).toBe(grpc.status.NOT_FOUND);
  });

  it("streams Watch to grpc-js", async () => {
    const { port, health } = await start();
    const client = grpcJsHealthClient(port);
    const call = client.Watch!({ service: TASKS }) as grpc.ClientReadableStream<{ status: string }>;
    const seen: string[] = [];
    const two = new Promise<void>((resolve, reject) => {
      call.on("data", (res: { status: string }) => {
        seen.push(res.status);
        if (seen.length === 1) health.set(TASKS, ServingStatus.NOT_SERVING);
        if (seen.length === 2) resolve();
      });
      call.on("error", (err: grpc.ServiceError) => (err.code === grpc.status.CANCELLED ? undefined : reject(err)));
    });
    await two;
    call.cancel();
    expect(seen).toEqual(["SERVING", "NOT_SERVING"]);
  });

  it("speaks Connect over HTTP/1.1 to plain fetch, echoing x-request-id", async () => {
    const { url } = await start();
    const ok = await connectJson(url, "/grpc.health.v1.Health/Check", {}, { "x-request-id": "fetch-1" });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.text)).toEqual({ status: "SERVING" });
    expect(ok.headers.get("x-request-id")).toBe("fetch-1");
    const missing = await connectJson(url, "/grpc.health.v1.Health/Check", { service: "nope.Nope" });
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.text)).toMatchObject({ code: "not_found" });
  });

  it("speaks Connect over HTTP/2 too", async () => {
    const { url } = await start();
    const transport = createConnectTransport({ baseUrl: url, httpVersion: "2" });
    expect((await createClient(Health, transport).check({})).status).toBe(ServingStatus.SERVING);
  });

  it.each(["1.1", "2"] as const)("speaks gRPC-Web over HTTP/%s", async (httpVersion) => {
    const { url } = await start();
    const transport = createGrpcWebTransport({ baseUrl: url, httpVersion });
    const health = createClient(Health, transport);
    expect((await health.check({ service: TASKS })).status).toBe(ServingStatus.SERVING);
    expect((await callError(health.check({ service: "nope.Nope" }))).code).toBe(Code.NotFound);
    expect((await createClient(TaskService, transport).getTask({ id: "w" })).task?.id).toBe("w");
  });

  it("streams Watch over gRPC: the current status, then each change", async () => {
    const { url, health } = await start();
    const abort = new AbortController();
    const watch = createClient(Health, grpcTransport(url)).watch({ service: TASKS }, { signal: abort.signal });
    const seen: ServingStatus[] = [];
    try {
      for await (const res of watch) {
        seen.push(res.status);
        if (seen.length === 1) health.set(TASKS, ServingStatus.NOT_SERVING);
        if (seen.length === 2) health.set(TASKS, ServingStatus.SERVING);
        if (seen.length === 3) break;
      }
    } finally {
      abort.abort();
    }
    expect(seen).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING, ServingStatus.SERVING]);
  });

  it("logs a Watch stream that the client abandons as Canceled", async () => {
    const { url, lines } = await start();
    const abort = new AbortController();
    const watch = createClient(Health, grpcTransport(url)).watch({ service: TASKS }, { signal: abort.signal });
    for await (const res of watch) {
      expect(res.status).toBe(ServingStatus.SERVING);
      abort.abort();
      break;
    }
    await vi.waitFor(() =>
      expect(lines().filter((l) => l.includes("/grpc.health.v1.Health/Watch"))).toEqual([
        expect.stringContaining('"code":"Canceled"'),
      ]),
    );
  });

  it("serves reflection for its services, health and reflection", async () => {
    const { url } = await start();
    const reflection = createClient(ServerReflection, grpcTransport(url));
    async function* one() {
      yield { messageRequest: { case: "listServices", value: "" } as const };
    }
    const names: string[] = [];
    for await (const res of reflection.serverReflectionInfo(one())) {
      if (res.messageResponse.case === "listServicesResponse") {
        names.push(...res.messageResponse.value.service.map((s) => s.name));
      }
    }
    expect(names).toEqual(
      expect.arrayContaining([TASKS, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]),
    );
  });

  it("never puts an unknown error's message on the wire, but logs it", async () => {
    const { url, lines } = await start();
    const res = await connectJson(url, "/hookmesh.tasks.v1.TaskService/GetTask", { id: "boom" });
    expect(res.status).toBe(500);
    expect(JSON.parse(res.text)).toEqual({ code: "internal", message: "internal error" });
    expect(res.text).not.toContain("hunter2");
    const err = await callError(createClient(TaskService, grpcTransport(url)).getTask({ id: "boom" }));
    expect(err.code).toBe(Code.Internal);
    expect(err.rawMessage).toBe("internal error");
    expect(lines().filter((l) => l.includes("rpc failed") && l.includes(SECRET_DETAIL))).toHaveLength(2);
  });

  it("applies extra interceptors after the call interceptor", async () => {
    const seen: string[] = [];
    const spy: Interceptor = (next) => async (req) => {
      seen.push(req.method.name);
      return next(req);
    };
    const { url } = await start({ interceptors: [spy] });
    await createClient(TaskService, grpcTransport(url)).getTask({ id: "i" });
    expect(seen).toEqual(["GetTask"]);
  });

  it("refuses requests larger than readMaxBytes", async () => {
    const { url } = await start({ readMaxBytes: 1024 });
    const tasks = createClient(TaskService, grpcTransport(url));
    expect((await tasks.submitEvent({ event: { deliveryId: "small" } })).task?.id).toBe("small");
    const err = await callError(tasks.submitEvent({ event: { deliveryId: "d", rawBody: new Uint8Array(4096) } }));
    expect(err.code).toBe(Code.ResourceExhausted);
  });
});

describe("createMeshServer graceful close", () => {
  it("lets an in-flight call finish, refuses new connections, then resolves", async () => {
    let onStarted!: () => void;
    const handlerStarted = new Promise<void>((resolve) => (onStarted = resolve));
    const { server, url, port } = await start({ routes: testRoutes(() => onStarted()) });
    const tasks = createClient(TaskService, grpcTransport(url));
    const call = tasks.getTask({ id: "slow:300" });
    await handlerStarted;
    const closing = server.close(5_000);
    expect(await tryConnect(port)).toBe("ECONNREFUSED");
    expect((await call).task?.id).toBe("slow:300");
    await closing;
    expect(await tryConnect(port)).toBe("ECONNREFUSED");
  });

  it("lets an in-flight HTTP/1.1 call finish and closes its connection promptly", async () => {
    let onStarted!: () => void;
    const handlerStarted = new Promise<void>((resolve) => (onStarted = resolve));
    const { server, url } = await start({ routes: testRoutes(() => onStarted()) });
    const call = connectJson(url, "/hookmesh.tasks.v1.TaskService/GetTask", { id: "slow:300" });
    await handlerStarted;
    const began = performance.now();
    const closing = server.close(5_000);
    const res = await call;
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text)).toEqual({ task: { id: "slow:300" } });
    await closing;
    // Well before the grace period: the keep-alive connection is closed once its call is done.
    expect(performance.now() - began).toBeLessThan(2_000);
  });

  it("closes idle HTTP/1.1 keep-alive connections at once instead of waiting out the grace period", async () => {
    const { server, port } = await start();
    const { status } = await http1KeepAlive(port);
    expect(status).toBe(200);
    const began = performance.now();
    await server.close(5_000);
    expect(performance.now() - began).toBeLessThan(2_000);
  });

  it("closes idle HTTP/2 connections at once", async () => {
    const { server, url, port } = await start();
    await createClient(Health, grpcTransport(url)).check({});
    const client = grpcJsHealthClient(port);
    await grpcJsCheck(client, "");
    const began = performance.now();
    await server.close(5_000);
    expect(performance.now() - began).toBeLessThan(2_000);
  });

  it("turns health NOT_SERVING as soon as close starts; Watch streams see it and end", async () => {
    const { server, url, health } = await start();
    const watch = createClient(Health, grpcTransport(url)).watch({ service: TASKS });
    const seen: ServingStatus[] = [];
    let closing: Promise<void> | undefined;
    let closeStarted = 0;
    for await (const res of watch) {
      seen.push(res.status);
      if (seen.length === 1) {
        closeStarted = performance.now();
        closing = server.close(5_000);
        expect(health.get(TASKS)).toBe(ServingStatus.NOT_SERVING);
        expect(health.get("")).toBe(ServingStatus.NOT_SERVING);
      }
    }
    expect(seen).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
    // The stream ended by itself, so the drain does not wait out the grace period for it.
    await closing;
    expect(performance.now() - closeStarted).toBeLessThan(2_000);
    health.setAll(ServingStatus.SERVING);
    expect(health.get(TASKS)).toBe(ServingStatus.NOT_SERVING);
  });

  it("cuts a call that outlasts the grace period", async () => {
    let onStarted!: () => void;
    const handlerStarted = new Promise<void>((resolve) => (onStarted = resolve));
    const { server, url, lines } = await start({ routes: testRoutes(() => onStarted()) });
    const call = callError(createClient(TaskService, grpcTransport(url)).getTask({ id: "slow:10000" }));
    await handlerStarted;
    const began = performance.now();
    await server.close(200);
    const elapsed = performance.now() - began;
    expect(elapsed).toBeGreaterThanOrEqual(190);
    expect(elapsed).toBeLessThan(2_000);
    const err = await call;
    expect([Code.Unavailable, Code.Canceled, Code.Internal, Code.Unknown]).toContain(err.code);
    expect(lines().some((l) => l.includes("grace period over"))).toBe(true);
  });

  it("resolves close on a server that never listened", async () => {
    const { logger } = memoryLogger();
    const server = createMeshServer({ routes: testRoutes(), health: new HealthState([]), logger });
    await server.close(100);
  });
});
