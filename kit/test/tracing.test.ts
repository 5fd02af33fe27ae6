import { Code, ConnectError } from "@connectrpc/connect";
import { context, SpanKind, trace } from "@opentelemetry/api";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Health } from "../../gen/health/v1/health_pb.js";
import { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { createClientFactory } from "../src/client/index.js";
import { ConfigError } from "../src/config.js";
import { HealthState } from "../src/health.js";
import { createMeshServer } from "../src/serve.js";
import { FakeProvider, type Reply } from "../src/testing/fake-provider.js";
import { memoryLogger } from "../src/testing/logger.js";
import { OtlpReceiver } from "../src/testing/otlp-receiver.js";
import {
  contextFromTraceparent,
  currentRequestId,
  inSpan,
  loadTracingConfig,
  startTracing,
  type Tracing,
  traceLogFields,
  traceparentOf,
  tracer,
  withRequestId,
} from "../src/tracing/index.js";
import { UpstreamClient } from "../src/upstream/client.js";

class FakeAcme extends FakeProvider {
  protected respond(): Reply {
    return { status: 200, body: { ok: true } };
  }
}

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID = "00f067aa0ba902b7";
const TRACEPARENT = `00-${TRACE_ID}-${PARENT_ID}-01`;

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function started(tracing: Tracing): Tracing {
  cleanups.push(() => tracing.shutdown());
  return tracing;
}

/** What the handlers saw of the context they ran in. */
interface Seen {
  requestId: string | undefined;
  log: { trace_id?: string; span_id?: string };
}

/** A mesh server with TaskService's GetTask (fails NotFound for `missing`) and WatchTask (two messages), and a client to it. */
async function mesh() {
  const { logger, lines } = memoryLogger("tracing-test");
  const seen: Seen[] = [];
  const look = () => seen.push({ requestId: currentRequestId(), log: traceLogFields() });
  const server = createMeshServer({
    routes: (router) =>
      router.service(TaskService, {
        async getTask(req) {
          look();
          logger.info("handling");
          if (req.id === "missing") throw new ConnectError("no such task", Code.NotFound);
          return { task: { id: req.id } };
        },
        async *watchTask() {
          look();
          yield {};
          look();
          yield {};
        },
      }),
    health: new HealthState([TaskService.typeName]),
    logger,
  });
  const { port } = await server.listen(0);
  const clients = createClientFactory({ logger });
  cleanups.push(
    () => server.close(0),
    () => clients.close(),
  );
  const client = clients.client(TaskService, `http://127.0.0.1:${port}`);
  const health = clients.client(Health, `http://127.0.0.1:${port}`);
  return { client, health, seen, lines };
}

describe("loadTracingConfig", () => {
  it("exports nothing unless an endpoint is named", () => {
    expect(loadTracingConfig("tasks", {})).toEqual({
      serviceName: "tasks",
      resourceAttributes: {},
      sampler: { name: "parentbased_always_on", ratio: 1 },
    });
  });

  it("appends /v1/traces to the OTLP endpoint, takes the traces endpoint as given, defaults to http/protobuf", () => {
    expect(loadTracingConfig("tasks", { OTEL_EXPORTER_OTLP_ENDPOINT: "http://jaeger:4318/" }).exporter).toEqual({
      url: "http://jaeger:4318/v1/traces",
      protocol: "http/protobuf",
    });
    const config = loadTracingConfig("tasks", {
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://ignored:4318",
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "https://collector.example/otlp/traces",
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_SERVICE_NAME: "tasks-eu",
      OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=prod,team=a%2Cb",
      OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
      OTEL_TRACES_SAMPLER_ARG: "0.25",
    });
    expect(config).toEqual({
      serviceName: "tasks-eu",
      resourceAttributes: { "deployment.environment": "prod", team: "a,b" },
      exporter: { url: "https://collector.example/otlp/traces", protocol: "http/json" },
      sampler: { name: "parentbased_traceidratio", ratio: 0.25 },
    });
  });

  it("turns the export off with OTEL_SDK_DISABLED or OTEL_TRACES_EXPORTER=none", () => {
    const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://jaeger:4318" };
    expect(loadTracingConfig("x", { ...endpoint, OTEL_SDK_DISABLED: "true" }).exporter).toBeUndefined();
    expect(loadTracingConfig("x", { ...endpoint, OTEL_TRACES_EXPORTER: "none" }).exporter).toBeUndefined();
  });

  it.each([
    [{ OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" }, "OTEL_EXPORTER_OTLP_PROTOCOL"],
    [{ OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "grpc" }, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: "jaeger:4318" }, "OTEL_EXPORTER_OTLP_ENDPOINT"],
    [{ OTEL_TRACES_SAMPLER: "sometimes" }, "OTEL_TRACES_SAMPLER"],
    [{ OTEL_TRACES_SAMPLER_ARG: "2" }, "OTEL_TRACES_SAMPLER_ARG"],
    [{ OTEL_TRACES_EXPORTER: "zipkin" }, "OTEL_TRACES_EXPORTER"],
    [{ OTEL_RESOURCE_ATTRIBUTES: "novalue" }, "OTEL_RESOURCE_ATTRIBUTES"],
  ])("refuses %j naming %s", (env, variable) => {
    expect(() => loadTracingConfig("x", env)).toThrow(ConfigError);
    expect(() => loadTracingConfig("x", env)).toThrow(new RegExp(`^${variable}: `));
  });
});

describe("without an exporter", () => {
  it("records no span but carries the caller's trace and request id through an RPC", async () => {
    const tracing = started(startTracing("test", {}));
    expect(tracing.exporting).toBe(false);
    expect(tracer().startSpan("anything").isRecording()).toBe(false);
    const { client, seen, lines } = await mesh();
    const ctx = withRequestId("request-1", contextFromTraceparent({ traceparent: TRACEPARENT }));
    await context.with(ctx, () => client.getTask({ id: "t1" }));
    expect(seen).toEqual([{ requestId: "request-1", log: { trace_id: TRACE_ID, span_id: PARENT_ID } }]);
    const logged = lines().map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(logged.find((line) => line.msg === "handling")).toMatchObject({ trace_id: TRACE_ID });
    expect(logged.find((line) => line.msg === "rpc")).toMatchObject({ trace_id: TRACE_ID, requestId: "request-1" });
  });

  it("gives a call without a trace a request id of its own, and its log lines no trace", async () => {
    started(startTracing("test", {}));
    const { client, seen, lines } = await mesh();
    await client.getTask({ id: "t1" });
    expect(seen[0]!.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen[0]!.log).toEqual({});
    const rpc = lines()
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .find((line) => line.msg === "rpc");
    expect(rpc).toMatchObject({ requestId: seen[0]!.requestId });
    expect(rpc).not.toHaveProperty("trace_id");
  });
});

describe("exporting over OTLP/HTTP", () => {
  async function receiver(): Promise<OtlpReceiver> {
    const r = await OtlpReceiver.start();
    cleanups.push(() => r.close());
    return r;
  }

  it("makes a client and a server span per RPC, the server's the child of the client's", async () => {
    const otlp = await receiver();
    const tracing = startTracing("test", {
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    });
    expect(tracing.exporting).toBe(true);
    const { client, seen } = await mesh();
    const parent = await inSpan("work", {}, async (span) => {
      await client.getTask({ id: "t1" });
      await expect(client.getTask({ id: "missing" })).rejects.toThrow(/no such task/);
      for await (const _ of client.watchTask({ id: "t1" })) {
        // Each message is produced within the server's span.
      }
      return span.spanContext();
    });
    await tracing.shutdown();
    expect(otlp.paths).toContain("/v1/traces");
    const spans = otlp.trace(parent.traceId);
    const named = (name: string, kind: number) => spans.filter((s) => s.name === name && s.kind === kind);
    const [getClient, missingClient] = named("hookmesh.tasks.v1.TaskService/GetTask", 3);
    const [getServer, missingServer] = named("hookmesh.tasks.v1.TaskService/GetTask", 2);
    expect(getClient).toMatchObject({ service: "test", parentSpanId: parent.spanId, statusCode: 0 });
    expect(getClient!.attributes).toMatchObject({
      "rpc.system": "grpc",
      "rpc.service": "hookmesh.tasks.v1.TaskService",
      "rpc.method": "GetTask",
      "rpc.grpc.status_code": 0,
      "server.address": "127.0.0.1",
    });
    expect(getServer).toMatchObject({ parentSpanId: getClient!.spanId, statusCode: 0 });
    expect(getServer!.attributes).toMatchObject({ "rpc.system": "grpc", "rpc.grpc.status_code": 0 });
    // NotFound is the caller's failure: an error on the client's span, not on the server's.
    expect(missingClient).toMatchObject({ statusCode: 2, attributes: { "rpc.grpc.status_code": Code.NotFound } });
    expect(missingServer).toMatchObject({
      parentSpanId: missingClient!.spanId,
      statusCode: 0,
      attributes: { "rpc.grpc.status_code": Code.NotFound },
    });
    const [watchClient] = named("hookmesh.tasks.v1.TaskService/WatchTask", 3);
    const [watchServer] = named("hookmesh.tasks.v1.TaskService/WatchTask", 2);
    expect(watchServer).toMatchObject({ parentSpanId: watchClient!.spanId });
    // Both of the stream's messages were made in its span, and the handlers saw it.
    expect(seen.map((s) => s.log.span_id)).toEqual([
      getServer!.spanId,
      missingServer!.spanId,
      watchServer!.spanId,
      watchServer!.spanId,
    ]);
  });

  it("makes no span of health checks", async () => {
    const otlp = await receiver();
    const tracing = startTracing("test", {
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    });
    const { client, health } = await mesh();
    await health.check({ service: "" });
    await client.getTask({ id: "t1" });
    await tracing.shutdown();
    expect(otlp.spans.map((span) => span.name)).toEqual([
      "hookmesh.tasks.v1.TaskService/GetTask",
      "hookmesh.tasks.v1.TaskService/GetTask",
    ]);
  });

  it("sends http/protobuf by default", async () => {
    const otlp = await receiver();
    const tracing = startTracing("test", { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${otlp.url}/custom/path` });
    const traceId = await inSpan("work", {}, async (span) => span.spanContext().traceId);
    await tracing.shutdown();
    expect(otlp.protobufExports).toHaveLength(1);
    expect(otlp.protobufExports[0]!.path).toBe("/custom/path");
    expect(otlp.protobufExports[0]!.body.includes(Buffer.from(traceId, "hex"))).toBe(true);
  });

  it("continues a stored traceparent, and stores the active span's", async () => {
    const otlp = await receiver();
    const tracing = startTracing("test", {
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    });
    const stored = await inSpan(
      "later",
      { parent: contextFromTraceparent({ traceparent: TRACEPARENT, tracestate: "vendor=1" }), kind: SpanKind.CONSUMER },
      async () => traceparentOf(),
    );
    await tracing.shutdown();
    const [span] = otlp.spans;
    expect(span).toMatchObject({ traceId: TRACE_ID, parentSpanId: PARENT_ID, kind: 5 });
    expect(stored).toEqual({ traceparent: `00-${TRACE_ID}-${span!.spanId}-01`, tracestate: "vendor=1" });
  });

  it("makes an HTTP client span per attempt at the provider, without the query", async () => {
    const otlp = await receiver();
    const tracing = startTracing("test", {
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    });
    const acme = await FakeAcme.start();
    cleanups.push(() => acme.close());
    acme.answer({ status: 503 });
    const { logger } = memoryLogger();
    const upstream = new UpstreamClient({ name: "acme", title: "Acme", baseUrl: acme.url, logger, baseDelayMs: 1 });
    cleanups.push(() => upstream.shutdown());
    const parent = await inSpan("call", {}, async (span) => {
      await upstream.request({ method: "GET", path: "/things/1?per_page=5", idempotent: true });
      return span.spanContext();
    });
    await tracing.shutdown();
    const attempts = otlp.trace(parent.traceId).filter((span) => span.name === "GET");
    expect(attempts.map((span) => [span.parentSpanId, span.kind, span.statusCode])).toEqual([
      [parent.spanId, 3, 2],
      [parent.spanId, 3, 0],
    ]);
    expect(attempts[0]!.attributes).toEqual({
      "http.request.method": "GET",
      "server.address": "127.0.0.1",
      "url.full": `${acme.origin}/things/1`,
      "hookmesh.provider": "acme",
      "http.response.status_code": 503,
    });
    expect(attempts[1]!.attributes).toMatchObject({ "http.response.status_code": 200, "http.request.resend_count": 1 });
  });

  it("does not fail the stop when the collector is down, and says the spans were lost", async () => {
    // The exporter reads its timeout from the process's environment, like its headers.
    vi.stubEnv("OTEL_EXPORTER_OTLP_TIMEOUT", "300");
    cleanups.push(() => vi.unstubAllEnvs());
    const otlp = await receiver();
    const url = otlp.url;
    await otlp.close();
    const { logger, lines } = memoryLogger();
    const tracing = startTracing(
      "test",
      { OTEL_EXPORTER_OTLP_ENDPOINT: url, OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" },
      logger,
    );
    await inSpan("lost", {}, async () => {});
    await expect(tracing.shutdown()).resolves.toBeUndefined();
    expect(lines().map((line) => JSON.parse(line) as Record<string, unknown>)).toContainEqual(
      expect.objectContaining({ level: 40, msg: "could not export the last spans" }),
    );
  });

  it("marks a span whose work throws as an error", async () => {
    const otlp = await receiver();
    const tracing = startTracing("test", {
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    });
    await expect(
      inSpan("fails", {}, async () => {
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    await tracing.shutdown();
    expect(otlp.spans[0]).toMatchObject({ name: "fails", statusCode: 2 });
  });
});

describe("the log mixin", () => {
  it("names the active span's trace and span on every line, and nothing outside a span", async () => {
    const otlp = await OtlpReceiver.start();
    cleanups.push(() => otlp.close());
    started(startTracing("test", { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url }));
    const { logger, lines } = memoryLogger();
    logger.info("before");
    const ids = await inSpan("work", {}, async (span) => {
      logger.child({ part: "child" }).info("inside");
      return span.spanContext();
    });
    logger.info("after");
    const [before, inside, after] = lines().map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(before).not.toHaveProperty("trace_id");
    expect(inside).toMatchObject({ trace_id: ids.traceId, span_id: ids.spanId, part: "child" });
    expect(after).not.toHaveProperty("trace_id");
  });
});

describe("stored trace contexts", () => {
  it("are the root context when absent or malformed", () => {
    started(startTracing("test", {}));
    expect(trace.getSpanContext(contextFromTraceparent(undefined))).toBeUndefined();
    expect(trace.getSpanContext(contextFromTraceparent({ traceparent: "00-zz-yy-01" }))).toBeUndefined();
  });
});
