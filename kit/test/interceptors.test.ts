import { Code, ConnectError, type ConnectRouter, createClient, createRouterTransport } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { type ErrorMapper, serverCallInterceptor, toWireError } from "../src/interceptors.js";
import { callError } from "../src/testing/errors.js";
import { memoryLogger } from "../src/testing/logger.js";

class QuotaError extends Error {
  override name = "QuotaError";
}

class StoreDown extends Error {
  override name = "StoreDown";
}

const mapError: ErrorMapper = (err) => {
  if (err instanceof QuotaError) return new ConnectError(err.message, Code.ResourceExhausted);
  if (err instanceof StoreDown)
    return new ConnectError("store unavailable", Code.Unavailable, undefined, undefined, err);
  return undefined;
};

const SECRET_DETAIL = "connection to redis://:hunter2@db failed";

/**
 * Health as a stand-in service: Check is the unary call and Watch the server stream. The
 * requested service name says how the handler behaves.
 */
function routes(router: ConnectRouter) {
  router.service(Health, {
    check(req) {
      switch (req.service) {
        case "boom":
          throw new Error(SECRET_DETAIL);
        case "quota":
          throw new QuotaError("quota exceeded for tenant t1");
        case "store-down":
          throw new StoreDown("ECONNREFUSED 127.0.0.1:6379");
        case "denied":
          throw new ConnectError("not for you", Code.PermissionDenied);
        case "thrown-string":
          throw "a string, not an Error";
        default:
          return { status: ServingStatus.SERVING };
      }
    },
    async *watch(req) {
      yield { status: ServingStatus.SERVING };
      if (req.service === "boom") throw new Error(SECRET_DETAIL);
      if (req.service === "quota") throw new QuotaError("quota exceeded mid-stream");
      yield { status: ServingStatus.NOT_SERVING };
    },
  });
}

function setup() {
  const { logger, lines } = memoryLogger("interceptor-test");
  const transport = createRouterTransport(routes, {
    router: { interceptors: [serverCallInterceptor(logger, mapError)] },
  });
  const client = createClient(Health, transport);
  const logged = () => lines().map((line) => JSON.parse(line) as Record<string, unknown>);
  return { client, logged };
}

async function drain<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const item of stream) all.push(item);
  return all;
}

describe("toWireError", () => {
  it("passes ConnectErrors through, maps domain errors, hides everything else", () => {
    const connect = new ConnectError("x", Code.NotFound);
    expect(toWireError(connect, mapError)).toBe(connect);
    expect(toWireError(new QuotaError("q"), mapError).code).toBe(Code.ResourceExhausted);
    const hidden = toWireError(new Error(SECRET_DETAIL), mapError);
    expect(hidden.code).toBe(Code.Internal);
    expect(hidden.rawMessage).toBe("internal error");
    expect((hidden.cause as Error).message).toBe(SECRET_DETAIL);
    expect(toWireError(new QuotaError("q")).code).toBe(Code.Internal);
  });
});

describe("serverCallInterceptor", () => {
  it("logs one line for a successful unary call and echoes the caller's request id", async () => {
    const { client, logged } = setup();
    let echoed: string | null = null;
    const res = await client.check(
      { service: "ok" },
      { headers: { "x-request-id": "req-123" }, onHeader: (h) => (echoed = h.get("x-request-id")) },
    );
    expect(res.status).toBe(ServingStatus.SERVING);
    expect(echoed).toBe("req-123");
    const lines = logged();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 30,
      msg: "rpc",
      service: "interceptor-test",
      procedure: "/grpc.health.v1.Health/Check",
      code: "OK",
      requestId: "req-123",
    });
    expect(lines[0]!.durationMs).toEqual(expect.any(Number));
  });

  it("makes up a request id when the caller sends none", async () => {
    const { client, logged } = setup();
    let echoed: string | null = null;
    await client.check({ service: "ok" }, { onHeader: (h) => (echoed = h.get("x-request-id")) });
    expect(echoed).toMatch(/^[0-9a-f-]{36}$/);
    expect(logged()[0]!.requestId).toBe(echoed);
  });

  it("turns an unknown error into Internal without its message on the wire, and logs the cause", async () => {
    const { client, logged } = setup();
    const err = await callError(client.check({ service: "boom" }, { headers: { "x-request-id": "req-boom" } }));
    expect(err.code).toBe(Code.Internal);
    expect(err.rawMessage).toBe("internal error");
    expect(JSON.stringify({ message: err.message, cause: String(err.cause) })).not.toContain("hunter2");
    expect(err.metadata.get("x-request-id")).toBe("req-boom");
    const lines = logged();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 50,
      msg: "rpc failed",
      procedure: "/grpc.health.v1.Health/Check",
      code: "Internal",
      requestId: "req-boom",
      err: { type: "Error", message: SECRET_DETAIL },
    });
    expect(lines[0]!.durationMs).toEqual(expect.any(Number));
  });

  it("hides non-Error throwables too", async () => {
    const { client, logged } = setup();
    const err = await callError(client.check({ service: "thrown-string" }));
    expect(err.code).toBe(Code.Internal);
    expect(err.rawMessage).toBe("internal error");
    expect(logged()[0]).toMatchObject({ msg: "rpc failed", code: "Internal" });
  });

  it("maps a domain error to its code and logs a warning", async () => {
    const { client, logged } = setup();
    const err = await callError(client.check({ service: "quota" }));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.rawMessage).toBe("quota exceeded for tenant t1");
    expect(logged()).toEqual([
      expect.objectContaining({
        level: 40,
        msg: "rpc error",
        code: "ResourceExhausted",
        error: "quota exceeded for tenant t1",
        procedure: "/grpc.health.v1.Health/Check",
      }),
    ]);
  });

  it("logs the cause of a mapped error, never sending it", async () => {
    const { client, logged } = setup();
    const err = await callError(client.check({ service: "store-down" }));
    expect(err.code).toBe(Code.Unavailable);
    expect(err.rawMessage).toBe("store unavailable");
    expect(logged()[0]).toMatchObject({ code: "Unavailable", err: { message: "ECONNREFUSED 127.0.0.1:6379" } });
  });

  it("passes a ConnectError through unchanged, with the request id", async () => {
    const { client, logged } = setup();
    const err = await callError(client.check({ service: "denied" }, { headers: { "x-request-id": "r-d" } }));
    expect(err.code).toBe(Code.PermissionDenied);
    expect(err.rawMessage).toBe("not for you");
    expect(err.metadata.get("x-request-id")).toBe("r-d");
    expect(logged()).toHaveLength(1);
    expect(logged()[0]).toMatchObject({ code: "PermissionDenied", requestId: "r-d", error: "not for you" });
  });

  it("logs a server stream once, when it ends", async () => {
    const { client, logged } = setup();
    let echoed: string | null = null;
    const statuses = await drain(
      client.watch(
        { service: "ok" },
        { headers: { "x-request-id": "s-1" }, onHeader: (h) => (echoed = h.get("x-request-id")) },
      ),
    );
    expect(statuses.map((s) => s.status)).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
    expect(echoed).toBe("s-1");
    expect(logged()).toEqual([
      expect.objectContaining({ msg: "rpc", procedure: "/grpc.health.v1.Health/Watch", code: "OK", requestId: "s-1" }),
    ]);
  });

  it("hides an unknown error thrown mid-stream, after the messages already sent", async () => {
    const { client, logged } = setup();
    const received: ServingStatus[] = [];
    const err = await callError(
      (async () => {
        for await (const res of client.watch({ service: "boom" })) received.push(res.status);
      })(),
    );
    expect(received).toEqual([ServingStatus.SERVING]);
    expect(err.code).toBe(Code.Internal);
    expect(err.rawMessage).toBe("internal error");
    const lines = logged();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      msg: "rpc failed",
      procedure: "/grpc.health.v1.Health/Watch",
      code: "Internal",
      err: { message: SECRET_DETAIL },
    });
  });

  it("maps a domain error thrown mid-stream", async () => {
    const { client, logged } = setup();
    const err = await callError(drain(client.watch({ service: "quota" })));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.rawMessage).toBe("quota exceeded mid-stream");
    expect(logged()).toEqual([expect.objectContaining({ msg: "rpc error", code: "ResourceExhausted" })]);
  });
});
