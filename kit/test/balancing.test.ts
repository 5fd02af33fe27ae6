import * as http2 from "node:http2";
import * as net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { RouteService } from "../../gen/hookmesh/tasks/v1/route_service_pb.js";
import { type ClientFactoryOptions, createClientFactory, type EndpointStatus } from "../src/client/index.js";
import { HealthState } from "../src/health.js";
import type { Identity } from "../src/identity/identity.js";
import { createServiceMetrics } from "../src/metrics/registry.js";
import { createMeshServer } from "../src/serve.js";
import { testIdentities } from "../src/testing/identities.js";
import { memoryLogger } from "../src/testing/logger.js";
import { metricValue, parsePrometheusText } from "../src/testing/prometheus.js";

const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Replica {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly url: string;
  /** Calls its GetRoute served. */
  readonly served: number;
  /** Connections open to it now. */
  readonly connections: number;
  /** Drops every connection and stops listening, as a SIGKILLed process does: no GOAWAY, no NOT_SERVING. */
  kill(): Promise<void>;
  /** Listens again on the same port. */
  restart(): Promise<void>;
  /** Stops passing bytes either way, on every connection old or new, closing nothing: a peer whose machine vanished, or a partition. */
  freeze(): void;
  /** Makes GetRoute answer Unavailable (a replica that is up but cannot serve). */
  failing: boolean;
}

/**
 * A kit server named `name`, reached through a TCP relay on `host` that can be killed and
 * restarted on the same port: from the client's side, a replica whose process dies and comes back.
 */
async function replica(name: string, options: { host?: string; port?: number; identity?: Identity } = {}) {
  const host = options.host ?? "127.0.0.1";
  let served = 0;
  const server = createMeshServer({
    routes: (router) =>
      router.service(RouteService, {
        getRoute() {
          if (handle.failing) throw new ConnectError("cannot serve", Code.Unavailable);
          served++;
          return { route: { id: name } };
        },
      }),
    health: new HealthState([RouteService.typeName], ServingStatus.SERVING),
    logger: memoryLogger(name).logger,
    ...(options.identity && { identity: options.identity }),
  });
  const backend = await server.listen(0, "127.0.0.1");
  cleanups.push(() => server.close(0));

  const sockets = new Set<net.Socket>();
  let relay: net.Server | undefined;
  let port = options.port ?? 0;
  let frozen = false;
  const listen = async () => {
    const s = net.createServer((downstream) => {
      if (frozen) {
        // Accepted, and then nothing: a black hole, like the connections made before.
        sockets.add(downstream);
        downstream.on("error", () => {});
        downstream.once("close", () => sockets.delete(downstream));
        return;
      }
      const upstream = net.connect(backend.port, "127.0.0.1");
      for (const socket of [downstream, upstream]) {
        sockets.add(socket);
        socket.on("error", () => {});
        socket.once("close", () => {
          sockets.delete(socket);
          downstream.destroy();
          upstream.destroy();
        });
      }
      downstream.pipe(upstream).pipe(downstream);
    });
    await new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      s.listen(port, host, resolve);
    });
    port = (s.address() as net.AddressInfo).port;
    relay = s;
  };
  const scheme = options.identity ? "https" : "http";
  const handle = {
    name,
    host,
    get port() {
      return port;
    },
    get url() {
      return `${scheme}://${host}:${port}`;
    },
    get served() {
      return served;
    },
    get connections() {
      return sockets.size / 2;
    },
    failing: false as boolean,
    async kill() {
      const s = relay;
      relay = undefined;
      if (!s) return;
      const closed = new Promise<void>((resolve) => s.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
    restart: listen,
    freeze() {
      frozen = true;
      for (const socket of sockets) {
        socket.unpipe();
        socket.pause();
      }
    },
  } satisfies Replica;
  await listen();
  cleanups.push(() => handle.kill());
  return handle;
}

function factory(options: Partial<ClientFactoryOptions> = {}) {
  const logs = memoryLogger("caller");
  const metrics = createServiceMetrics("caller");
  const made = createClientFactory({
    logger: logs.logger,
    metrics,
    ...options,
    balancing: { healthRetryMaxMs: 300, ...options.balancing },
  });
  cleanups.push(() => made.close());
  return { clients: made, logs, metrics };
}

/** Waits until `condition` holds, polling; fails after `timeoutMs`. */
async function until(condition: () => boolean, timeoutMs = 5_000, what = "condition"): Promise<number> {
  const started = performance.now();
  while (!condition()) {
    if (performance.now() - started > timeoutMs) throw new Error(`${what} did not hold within ${timeoutMs}ms`);
    await sleep(10);
  }
  return performance.now() - started;
}

function stateOf(endpoints: EndpointStatus[], url: string): string | undefined {
  return endpoints.find((endpoint) => endpoint.endpoint === url)?.state;
}

/** Who answered each of `count` calls made one after another. */
async function answers(client: { getRoute(req: object): Promise<{ route?: { id: string } }> }, count: number) {
  const names: string[] = [];
  for (let i = 0; i < count; i++) names.push((await client.getRoute({})).route!.id);
  return names;
}

const count = (names: string[], name: string) => names.filter((n) => n === name).length;

describe("a downstream of several endpoints", () => {
  it("spreads calls over every endpoint of a list, in turn", async () => {
    const [a, b] = await Promise.all([replica("a"), replica("b")]);
    const { clients } = factory();
    const client = clients.client(RouteService, `${a.url},${b.url}`);
    const names = await answers(client, 20);
    expect(count(names, "a")).toBe(10);
    expect(count(names, "b")).toBe(10);
    // Streams are balanced too.
    for await (const res of clients.client(Health, `${a.url},${b.url}`).watch({ service: "" })) {
      expect(res.status).toBe(ServingStatus.SERVING);
      break;
    }
    await until(() => clients.endpoints().every((endpoint) => endpoint.state === "serving"));
    expect(clients.endpoints().map(({ downstream, endpoint }) => ({ downstream, endpoint }))).toEqual([
      { downstream: `${a.url},${b.url}`, endpoint: a.url },
      { downstream: `${a.url},${b.url}`, endpoint: b.url },
    ]);
  });

  it("takes a killed endpoint out within a second, with no call failing, and back in once it listens again", async () => {
    const [a, b] = await Promise.all([replica("a"), replica("b")]);
    const { clients, logs, metrics } = factory();
    const client = clients.client(RouteService, `${a.url},${b.url}`);
    await answers(client, 4);

    // Callers keep calling throughout; whatever the kill cuts, retries must absorb.
    let calling = true;
    const failures: unknown[] = [];
    let made = 0;
    const callers = Array.from({ length: 4 }, async () => {
      while (calling) {
        await client.getRoute({}).catch((err: unknown) => failures.push(err));
        made++;
      }
    });
    await sleep(100);
    await a.kill();
    const outMs = await until(() => stateOf(clients.endpoints(), a.url) !== "serving", 1_000, "a out of rotation");
    const servedByB = b.served;
    await sleep(300);
    expect(b.served).toBeGreaterThan(servedByB);
    const servedByA = a.served;

    await a.restart();
    await until(() => stateOf(clients.endpoints(), a.url) === "serving", 5_000, "a back in rotation");
    await until(() => a.served > servedByA + 10, 5_000, "a serving again");
    calling = false;
    await Promise.all(callers);
    expect(failures).toEqual([]);
    expect(made).toBeGreaterThan(20);
    expect(outMs).toBeLessThan(1_000);
    expect(logs.lines().some((line) => line.includes("endpoint not serving") && line.includes(a.url))).toBe(true);
    const families = parsePrometheusText(await metrics.registry.metrics());
    const downstream = `${a.url},${b.url}`;
    expect(metricValue(families, "hookmesh_rpc_client_endpoints", { downstream, state: "serving" })).toBe(2);
  });

  it("takes out an endpoint gone silent (no FIN, no RST) once its keepalive ping goes unanswered", async () => {
    const [a, b] = await Promise.all([replica("a"), replica("b")]);
    const { clients } = factory({ keepalive: { intervalMs: 200, timeoutMs: 200 } });
    const client = clients.client(RouteService, `${a.url},${b.url}`);
    await answers(client, 4);
    await until(() => clients.endpoints().every((endpoint) => endpoint.state === "serving"));
    a.freeze();
    // Its health watch is an open stream with nothing to say: only the ping finds the peer gone.
    await until(() => stateOf(clients.endpoints(), a.url) !== "serving", 3_000, "a out of rotation");
    const names = await answers(client, 6);
    expect(count(names, "b")).toBe(6);
  });

  it("ejects an endpoint that answers Unavailable in a row though its health says SERVING, and returns it", async () => {
    const [a, b] = await Promise.all([replica("a"), replica("b")]);
    const { clients, logs, metrics } = factory();
    const client = clients.client(RouteService, `${a.url},${b.url}`);
    a.failing = true;
    // Each of a's Unavailable is retried on b: callers see only successes.
    const names = await answers(client, 12);
    expect(count(names, "b")).toBe(12);
    await until(() => stateOf(clients.endpoints(), a.url) === "ejected", 1_000, "a ejected");
    const families = parsePrometheusText(await metrics.registry.metrics());
    const downstream = `${a.url},${b.url}`;
    expect(metricValue(families, "hookmesh_rpc_client_ejections_total", { downstream, endpoint: a.url })).toBe(1);
    expect(metricValue(families, "hookmesh_rpc_client_endpoints", { downstream, state: "ejected" })).toBe(1);
    expect(logs.lines().some((line) => line.includes("endpoint ejected") && line.includes(a.url))).toBe(true);

    a.failing = false;
    await until(() => stateOf(clients.endpoints(), a.url) === "serving", 2_000, "a back after its ejection");
    await until(() => logs.lines().some((line) => line.includes("endpoint back in rotation")), 2_000, "return logged");
    expect(count(await answers(client, 10), "a")).toBe(5);
  });

  it("counts an endpoint without the health service as serving", async () => {
    const servers = await Promise.all(
      ["a", "b"].map(async (name) => {
        const server = http2.createServer(
          connectNodeAdapter({
            routes: (router) => router.service(RouteService, { getRoute: () => ({ route: { id: name } }) }),
          }),
        );
        await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
        const sessions = new Set<http2.ServerHttp2Session>();
        server.on("session", (session) => sessions.add(session));
        cleanups.push(() => {
          const closed = new Promise((resolve) => server.close(resolve));
          for (const session of sessions) session.destroy();
          return closed;
        });
        return `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
      }),
    );
    const { clients, logs } = factory();
    const client = clients.client(RouteService, servers.join(","));
    await until(() => logs.lines().filter((line) => line.includes("endpoint added")).length === 2);
    await sleep(300);
    expect(clients.endpoints().map((endpoint) => endpoint.state)).toEqual(["serving", "serving"]);
    const names = await answers(client, 4);
    expect([count(names, "a"), count(names, "b")]).toEqual([2, 2]);
    // Its Watch is asked again now and then (a new version may serve it), never marking it out.
    expect(logs.lines().some((line) => line.includes("endpoint not serving"))).toBe(false);
  });

  it("fails fast with Unavailable when every endpoint is down, so that the breaker sees it", async () => {
    const [a, b] = await Promise.all([replica("a"), replica("b")]);
    const { clients } = factory({ retry: { maxAttempts: 2 } });
    const client = clients.client(RouteService, `${a.url},${b.url}`);
    await answers(client, 2);
    await Promise.all([a.kill(), b.kill()]);
    const started = performance.now();
    const err = await client.getRoute({}).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.Unavailable);
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it("resolves a dns:/// target with the system resolver", async () => {
    const a = await replica("a");
    const { clients } = factory();
    const peer = `dns:///localhost:${a.port}`;
    const client = clients.client(RouteService, peer);
    // localhost may also resolve to ::1, where nothing listens: that endpoint fails, and retries absorb it.
    expect(count(await answers(client, 6), "a")).toBe(6);
    expect(clients.endpoints().map((endpoint) => endpoint.endpoint)).toContain(a.url);
  });

  it("follows a dns:/// target's addresses as they are added and removed", async () => {
    const a = await replica("a", { host: "127.0.0.1" });
    const b = await replica("b", { host: "127.0.0.2", port: a.port });
    let addresses = ["127.0.0.1"];
    const lookups: string[] = [];
    const { clients } = factory({
      balancing: {
        resolveIntervalMs: 100,
        lookup: async (host) => {
          lookups.push(host);
          return addresses;
        },
      },
    });
    const client = clients.client(RouteService, `dns:///replicas.test:${a.port}`);
    expect(count(await answers(client, 4), "a")).toBe(4);
    expect(lookups[0]).toBe("replicas.test");

    addresses = ["127.0.0.1", "127.0.0.2"];
    await until(() => clients.endpoints().length === 2, 2_000, "b added");
    const names = await answers(client, 10);
    expect(count(names, "a")).toBe(5);
    expect(count(names, "b")).toBe(5);

    addresses = ["127.0.0.2"];
    await until(() => clients.endpoints().length === 1, 2_000, "a removed");
    expect(count(await answers(client, 4), "b")).toBe(4);
    expect(b.served).toBe(9);
    // Its connection (calls and health watch alike) is closed once the calls on it are done.
    await until(() => a.connections === 0, 2_000, "a's connection closed");
  });

  it("resolves again soon after a failed connection, not only on its interval, and stops when closed", async () => {
    const a = await replica("a", { host: "127.0.0.1" });
    const lookups: number[] = [];
    const { clients } = factory({
      balancing: {
        resolveIntervalMs: 60_000,
        lookup: async () => {
          lookups.push(performance.now());
          // Nothing listens on 127.0.0.3: its connections fail.
          return ["127.0.0.1", "127.0.0.3"];
        },
      },
    });
    const client = clients.client(RouteService, `dns:///replicas.test:${a.port}`);
    expect(count(await answers(client, 6), "a")).toBe(6);
    await until(() => lookups.length >= 3, 5_000, "resolved again after failures");
    // At most once a second, however many failures ask for it.
    for (let i = 1; i < lookups.length; i++) expect(lookups[i]! - lookups[i - 1]!).toBeGreaterThanOrEqual(990);
    clients.close();
    const resolved = lookups.length;
    await sleep(1_500);
    expect(lookups.length).toBe(resolved);
  });

  it("balances over mTLS, each endpoint presenting the expected identity, and takes a killed one out", async () => {
    const identities = await testIdentities();
    const [a, b] = await Promise.all([
      replica("a", { identity: identities.identity("tasks") }),
      replica("b", { identity: identities.identity("tasks") }),
    ]);
    const { clients } = factory({ identity: identities.identity("dashboard") });
    const client = clients.client(RouteService, `${a.url},${b.url}`, "tasks");
    const names = await answers(client, 10);
    expect([count(names, "a"), count(names, "b")]).toEqual([5, 5]);
    await until(() => clients.endpoints().every((endpoint) => endpoint.state === "serving"));

    await a.kill();
    await until(() => stateOf(clients.endpoints(), a.url) !== "serving", 1_000, "a out of rotation");
    expect(count(await answers(client, 6), "b")).toBe(6);

    // A server presenting another identity is no endpoint of this downstream.
    const impostor = await replica("impostor", { identity: identities.identity("gateway") });
    const mixed = clients.client(RouteService, `${b.url},${impostor.url}`, "tasks");
    expect(count(await answers(mixed, 6), "b")).toBe(6);
    await until(() => stateOf(clients.endpoints(), impostor.url) === "not_serving", 2_000, "impostor refused");
  });
});
