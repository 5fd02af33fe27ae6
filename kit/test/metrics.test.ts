import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Health } from "../../gen/health/v1/health_pb.js";
import { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { startAdminServer } from "../src/admin.js";
import { type ClientFactoryOptions, createClientFactory } from "../src/client/index.js";
import { HealthState, ServingStatus } from "../src/health.js";
import { envListen } from "../src/listen.js";
import { providerMetrics } from "../src/metrics/provider.js";
import { createServiceMetrics, type ServiceMetrics } from "../src/metrics/registry.js";
import { scrapedGauge } from "../src/metrics/scraped.js";
import { createMeshServer } from "../src/serve.js";
import { metricValue, parsePrometheusText } from "../src/testing/prometheus.js";
import { UpstreamClient } from "../src/upstream/client.js";

const logger = pino({ level: "silent" });
const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const TASKS = { rpc_service: TaskService.typeName, rpc_method: "GetTask" };

/** A tasks server whose GetTask does what `getTask` says, counting on `metrics`. */
async function serveTasks(metrics: ServiceMetrics, getTask: (call: number) => void): Promise<string> {
  let calls = 0;
  const server = createMeshServer({
    routes: (router) =>
      router.service(TaskService, {
        getTask() {
          getTask(++calls);
          return {};
        },
      }),
    health: new HealthState([TaskService.typeName], ServingStatus.SERVING),
    logger,
    metrics,
  });
  const { port } = await server.listen(0);
  cleanups.push(() => server.close(100));
  return `http://127.0.0.1:${port}`;
}

function clientOf(url: string, metrics: ServiceMetrics, options: Partial<ClientFactoryOptions> = {}) {
  const factory = createClientFactory({ logger, metrics, ...options });
  cleanups.push(() => factory.close());
  return factory.client(TaskService, url);
}

async function scrape(metrics: ServiceMetrics) {
  return parsePrometheusText(await metrics.registry.metrics());
}

describe("RPC metrics", () => {
  it("count the calls served and made by method and code, and time them", async () => {
    const served = createServiceMetrics("tasks");
    const made = createServiceMetrics("gateway");
    const url = await serveTasks(served, (call) => {
      if (call > 1) throw new ConnectError("no such task", Code.NotFound);
    });
    const client = clientOf(url, made);

    await client.getTask({});
    await expect(client.getTask({})).rejects.toMatchObject({ code: Code.NotFound });
    await expect(client.getTask({})).rejects.toMatchObject({ code: Code.NotFound });

    const server = await scrape(served);
    expect(metricValue(server, "hookmesh_rpc_server_handled_total", { ...TASKS, code: "OK", service: "tasks" })).toBe(
      1,
    );
    expect(metricValue(server, "hookmesh_rpc_server_handled_total", { ...TASKS, code: "NotFound" })).toBe(2);
    expect(metricValue(server, "hookmesh_rpc_server_duration_seconds", TASKS)).toBe(3);
    const clientSide = await scrape(made);
    const downstream = { ...TASKS, downstream: url, service: "gateway" };
    expect(metricValue(clientSide, "hookmesh_rpc_client_handled_total", { ...downstream, code: "OK" })).toBe(1);
    expect(metricValue(clientSide, "hookmesh_rpc_client_handled_total", { ...downstream, code: "NotFound" })).toBe(2);
    expect(metricValue(clientSide, "hookmesh_rpc_client_duration_seconds", { ...downstream, code: "NotFound" })).toBe(
      2,
    );
  });

  it("count a call once with the code its caller got, its retries apart, and retries the budget refused", async () => {
    const made = createServiceMetrics("gateway");
    const url = await serveTasks(createServiceMetrics("tasks"), () => {
      throw new ConnectError("down", Code.Unavailable);
    });
    const client = clientOf(url, made, {
      retry: { maxAttempts: 3, baseDelayMs: 1 },
      // Retries while more than 2 of 4 tokens remain: the first call's first failure is retried
      // (4 → 3), its second is not (3 → 2), nor is the second call's.
      retryBudget: { maxTokens: 4, tokenRatio: 1 },
      breaker: { volumeThreshold: 1000 },
    });

    await expect(client.getTask({})).rejects.toMatchObject({ code: Code.Unavailable });
    await expect(client.getTask({})).rejects.toMatchObject({ code: Code.Unavailable });

    const families = await scrape(made);
    const labels = { ...TASKS, downstream: url };
    expect(metricValue(families, "hookmesh_rpc_client_handled_total", { ...labels, code: "Unavailable" })).toBe(2);
    expect(metricValue(families, "hookmesh_rpc_client_retries_total", { ...labels, code: "Unavailable" })).toBe(1);
    expect(metricValue(families, "hookmesh_rpc_client_retry_budget_exhausted_total", { downstream: url })).toBe(2);
  });
});

describe("RPC metrics of streams", () => {
  it("count a server stream when it ends, with the code it ended with, and do not time it", async () => {
    const served = createServiceMetrics("tasks");
    const health = new HealthState([TaskService.typeName], ServingStatus.SERVING);
    const server = createMeshServer({ routes: () => {}, health, logger, metrics: served });
    const { port } = await server.listen(0);
    cleanups.push(() => server.close(100));
    const client = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
    const watch = { rpc_service: "grpc.health.v1.Health", rpc_method: "Watch" };

    // The caller reads the current status and walks away: Canceled.
    const abort = new AbortController();
    for await (const _ of client.watch({ service: "" }, { signal: abort.signal })) break;
    abort.abort();
    await vi.waitFor(async () =>
      expect(
        metricValue(await scrape(served), "hookmesh_rpc_server_handled_total", { ...watch, code: "Canceled" }),
      ).toBe(1),
    );
    // The server shuts down: the stream ends with the last status, OK.
    const second = client.watch({ service: "" })[Symbol.asyncIterator]();
    expect((await second.next()).value).toMatchObject({ status: ServingStatus.SERVING });
    health.shutdown();
    while (!(await second.next()).done);
    await vi.waitFor(async () =>
      expect(metricValue(await scrape(served), "hookmesh_rpc_server_handled_total", { ...watch, code: "OK" })).toBe(1),
    );
    expect(metricValue(await scrape(served), "hookmesh_rpc_server_duration_seconds", watch)).toBe(0);
  });
});

describe("provider metrics", () => {
  it("count every attempt by status, time it, and keep the rate limit the provider says is left", async () => {
    const answers = [
      { status: 500, headers: {} },
      { status: 200, headers: { "x-ratelimit-remaining": "42" } },
      { status: 404, headers: { "x-ratelimit-remaining": "41" } },
    ];
    const provider = http.createServer((_req, res) => {
      const { status, headers } = answers.shift()!;
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end("{}");
    });
    await new Promise<void>((resolve) => provider.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise((resolve) => provider.close(resolve)));
    const metrics = createServiceMetrics("github");
    const upstream = new UpstreamClient({
      name: "acme",
      title: "Acme",
      baseUrl: `http://127.0.0.1:${(provider.address() as AddressInfo).port}`,
      logger,
      baseDelayMs: 1,
      metrics: providerMetrics(metrics.registry),
    });
    cleanups.push(() => upstream.shutdown());

    await upstream.request({ method: "GET", path: "/a", idempotent: true });
    await expect(upstream.request({ method: "GET", path: "/b", idempotent: true })).rejects.toMatchObject({
      code: Code.NotFound,
    });

    const families = await scrape(metrics);
    const calls = (status: string) =>
      metricValue(families, "hookmesh_provider_requests_total", { provider: "acme", method: "GET", status });
    expect([calls("500"), calls("200"), calls("404")]).toEqual([1, 1, 1]);
    expect(metricValue(families, "hookmesh_provider_request_duration_seconds", { provider: "acme" })).toBe(3);
    expect(metricValue(families, "hookmesh_provider_rate_limit_remaining", { provider: "acme" })).toBe(41);
    // One family per registry, however many clients ask for it.
    expect(providerMetrics(metrics.registry)).toBe(providerMetrics(metrics.registry));
  });
});

describe("breaker metrics", () => {
  it("show the state of each downstream's breaker and count its transitions and rejections", async () => {
    let failing = true;
    const made = createServiceMetrics("gateway");
    const url = await serveTasks(createServiceMetrics("tasks"), () => {
      if (failing) throw new ConnectError("down", Code.Unavailable);
    });
    const client = clientOf(url, made, {
      breaker: { volumeThreshold: 2, errorThresholdPercentage: 50, resetTimeoutMs: 200 },
      retry: { maxAttempts: 1 },
    });
    const labels = { ...TASKS, downstream: url };
    const state = async (name: string) =>
      metricValue(await scrape(made), "hookmesh_circuit_breaker_state", { ...labels, state: name });
    const transitions = async (name: string) =>
      metricValue(await scrape(made), "hookmesh_circuit_breaker_transitions_total", { ...labels, state: name });

    await expect(client.getTask({})).rejects.toMatchObject({ code: Code.Unavailable });
    expect(await state("closed")).toBe(1);
    await expect(client.getTask({})).rejects.toMatchObject({ code: Code.Unavailable });
    expect([await state("open"), await state("closed"), await state("half_open")]).toEqual([1, 0, 0]);
    expect(await transitions("open")).toBe(1);

    await expect(client.getTask({})).rejects.toMatchObject({ rawMessage: expect.stringContaining("is open") });
    expect(metricValue(await scrape(made), "hookmesh_circuit_breaker_rejected_total", labels)).toBe(1);

    failing = false;
    await vi.waitFor(async () => expect(await state("half_open")).toBe(1), { timeout: 3000, interval: 20 });
    await client.getTask({});
    expect([await state("open"), await state("closed"), await state("half_open")]).toEqual([0, 1, 0]);
    expect([await transitions("open"), await transitions("half_open"), await transitions("closed")]).toEqual([1, 1, 1]);
  });
});

describe("scraped gauges", () => {
  it("are read at scrape time; one that fails or hangs has no value, and the rest of the scrape is served", async () => {
    const metrics = createServiceMetrics("gateway");
    let depth = 3;
    scrapedGauge({
      name: "test_depth",
      help: "read each scrape",
      registry: metrics.registry,
      logger,
      read: async () => [{ value: depth }],
    });
    scrapedGauge({
      name: "test_hanging",
      help: "never answers",
      registry: metrics.registry,
      logger,
      timeoutMs: 50,
      read: (signal) =>
        new Promise<never>((_, reject) => signal.addEventListener("abort", () => reject(signal.reason))),
    });
    scrapedGauge({
      name: "test_failing",
      help: "labelled, fails",
      labelNames: ["state"],
      registry: metrics.registry,
      logger,
      read: async () => {
        throw new Error("Redis is down");
      },
    });

    expect(metricValue(await scrape(metrics), "test_depth")).toBe(3);
    depth = 5;
    const families = await scrape(metrics);
    expect(metricValue(families, "test_depth")).toBe(5);
    expect(families.get("test_hanging")?.samples.map((sample) => sample.value)).toEqual([Number.NaN]);
    expect(families.get("test_failing")?.samples).toEqual([]);
  });
});

describe("admin server", () => {
  async function admin(health: HealthState, metrics = createServiceMetrics("tasks")) {
    const server = await startAdminServer({ host: "127.0.0.1", port: 0, health, registry: metrics.registry, logger });
    cleanups.push(() => server.close());
    return server;
  }

  it("serves /metrics in the Prometheus text format, with the process metrics, and /livez", async () => {
    const metrics = createServiceMetrics("tasks");
    metrics.rpc.serverHandled.inc({ ...TASKS, code: "OK" });
    const { url } = await admin(new HealthState([]), metrics);

    const res = await fetch(`${url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const families = parsePrometheusText(await res.text());
    expect(metricValue(families, "hookmesh_rpc_server_handled_total", { ...TASKS, service: "tasks" })).toBe(1);
    expect(families.has("process_cpu_seconds_total")).toBe(true);
    expect(families.has("nodejs_eventloop_lag_seconds")).toBe(true);

    const live = await fetch(`${url}/livez`);
    expect([live.status, await live.text()]).toEqual([200, "ok\n"]);
  });

  it("answers /readyz 200 only while the service is SERVING, and 503 with the reason otherwise", async () => {
    const health = new HealthState([TaskService.typeName]);
    const { url } = await admin(health);
    const ready = async () => {
      const res = await fetch(`${url}/readyz`);
      return [res.status, await res.text()];
    };

    expect(await ready()).toEqual([503, "not ready: not serving\n"]);
    health.setAll(ServingStatus.SERVING);
    expect(await ready()).toEqual([200, "ready\n"]);
    health.setAll(ServingStatus.NOT_SERVING);
    expect(await ready()).toEqual([503, "not ready: not serving\n"]);
    health.setAll(ServingStatus.SERVING);
    health.shutdown();
    expect(await ready()).toEqual([503, "not ready: shutting down\n"]);
    // Liveness is the process's, whatever its readiness.
    expect((await fetch(`${url}/livez`)).status).toBe(200);
  });

  it("answers 404 for any other path and 405 for another method", async () => {
    const { url } = await admin(new HealthState([]));
    expect((await fetch(`${url}/`)).status).toBe(404);
    expect((await fetch(`${url}/metrics/x`)).status).toBe(404);
    const post = await fetch(`${url}/metrics`, { method: "POST", body: "x" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
    expect((await fetch(`${url}/readyz`, { method: "DELETE" })).status).toBe(405);
  });
});

describe("envListen's admin port", () => {
  it("is the service's port + 1000 on the service's host unless set; 0 picks a free port", () => {
    const insecure = { HOOKMESH_INSECURE: "1" };
    expect(envListen(insecure, "tasks", 50051).admin).toEqual({ host: "127.0.0.1", port: 51051 });
    expect(envListen({ ...insecure, TASKS_HOST: "::1" }, "tasks", 50051).admin).toEqual({ host: "::1", port: 51051 });
    expect(
      envListen({ ...insecure, AGENT_ADMIN_PORT: "0", AGENT_ADMIN_HOST: "0.0.0.0" }, "agent", 50052).admin,
    ).toEqual({
      host: "0.0.0.0",
      port: 0,
    });
    expect(() => envListen({ ...insecure, SLACK_ADMIN_PORT: "off" }, "slack", 50062)).toThrow(/SLACK_ADMIN_PORT/);
  });
});
