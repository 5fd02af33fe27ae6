import type * as http from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, type Registry } from "prom-client";
import { type HealthState, ServingStatus } from "./health.js";
import { createLimitedHttpServer, type HttpLimits, listenHttp } from "./limits.js";
import type { Logger } from "./logger.js";

/**
 * An admin port's callers are a Prometheus scraper and the probes of an orchestrator: a few
 * short requests, answered from memory (a scrape may read Redis for a second).
 */
export const DEFAULT_ADMIN_LIMITS: Readonly<HttpLimits> = {
  maxConnections: 64,
  idleTimeoutMs: 30_000,
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  maxHeaderBytes: 8 * 1024,
  maxHeaders: 50,
};

export interface AdminServerOptions {
  /** `<NAME>_ADMIN_HOST`: the service's own host unless set. */
  host: string;
  /** `<NAME>_ADMIN_PORT`: the gRPC port + 1000 unless set; 0 picks a free port. */
  port: number;
  /** The service's health: `/readyz` answers 200 only while the whole server ("") is SERVING. */
  health: HealthState;
  /**
   * What `/metrics` serves: the service's registry (`ServiceMetrics.registry`), to which the
   * Node process's metrics are added, under their standard names (`process_cpu_seconds_total`,
   * `nodejs_eventloop_lag_seconds` …) that the usual dashboards know. They are added here, by
   * the process that serves them, rather than with the registry: each set samples the event
   * loop on a timer, which a test building many services in one process should not pay for.
   */
  registry: Registry;
  logger: Logger;
  limits?: HttpLimits;
}

export interface AdminServer {
  /** `http://host:port`, with the port actually bound. */
  readonly url: string;
  readonly address: AddressInfo;
  close(): Promise<void>;
}

/**
 * Starts a service's admin port: cleartext HTTP/1.1 for Prometheus and for orchestrators'
 * probes, which speak neither gRPC nor mTLS. `GET /metrics` is the Prometheus text format,
 * `GET /livez` answers 200 while the process runs, `GET /readyz` 200 while the service is
 * SERVING and 503 with the reason otherwise (starting, a lost Redis, draining, shutting down).
 * Nothing on it changes state or tells a secret.
 */
export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const { health, registry, logger } = options;
  const limits = options.limits ?? DEFAULT_ADMIN_LIMITS;
  if (registry.getSingleMetric(PROCESS_METRIC) === undefined) collectDefaultMetrics({ register: registry });
  const server = createLimitedHttpServer(limits, logger, (req, res) => {
    answer(req, health, registry).then(
      ({ status, type = "text/plain; charset=utf-8", body, headers }) => {
        res.writeHead(status, { "content-type": type, "cache-control": "no-store", ...headers });
        res.end(req.method === "HEAD" ? undefined : body);
      },
      (err: unknown) => {
        logger.error({ err, path: req.url }, "admin request failed");
        if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
        res.end("internal error\n");
      },
    );
  });
  const address = await listenHttp(server, options.port, options.host);
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  logger.info({ port: address.port, host: address.address }, "admin port listening (/metrics, /livez, /readyz)");
  return {
    url,
    address,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Nothing on this port is worth waiting for at shutdown: a scrape is retried.
      server.closeAllConnections();
      await closed;
    },
  };
}

/** One of the Node process metrics, whose presence says they were added to a registry already. */
const PROCESS_METRIC = "process_cpu_user_seconds_total";

interface Answer {
  status: number;
  body: string;
  type?: string;
  headers?: Record<string, string>;
}

const ROUTES: Record<string, (health: HealthState, registry: Registry) => Answer | Promise<Answer>> = {
  "/livez": () => ({ status: 200, body: "ok\n" }),
  "/readyz": (health) => {
    const reason = notReady(health);
    return reason === undefined ? { status: 200, body: "ready\n" } : { status: 503, body: `not ready: ${reason}\n` };
  },
  "/metrics": async (_, registry) => ({ status: 200, type: registry.contentType, body: await registry.metrics() }),
};

async function answer(req: http.IncomingMessage, health: HealthState, registry: Registry): Promise<Answer> {
  const route = Object.hasOwn(ROUTES, pathOf(req.url)) ? ROUTES[pathOf(req.url)] : undefined;
  if (route === undefined) return { status: 404, body: "not found\n" };
  if (req.method !== "GET" && req.method !== "HEAD") {
    return { status: 405, body: "method not allowed\n", headers: { allow: "GET, HEAD" } };
  }
  return route(health, registry);
}

/** Why the service should get no traffic now, or undefined when it should. */
function notReady(health: HealthState): string | undefined {
  if (health.stopping.aborted) return "shutting down";
  const status = health.get("");
  if (status === ServingStatus.SERVING) return undefined;
  return ServingStatus[status ?? ServingStatus.UNKNOWN].toLowerCase().replace(/_/g, " ");
}

/** The request target's path; "" (which no route matches) for one that is not a URL. */
function pathOf(url: string | undefined): string {
  try {
    return new URL(url ?? "/", "http://admin").pathname;
  } catch {
    return "";
  }
}
