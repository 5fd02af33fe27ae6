import { collectDefaultMetrics, Registry } from "prom-client";
import { createRpcMetrics, type RpcMetrics } from "./rpc.js";

/**
 * One service's metrics: its own Prometheus registry, with every sample labelled
 * `service="<name>"`, the Node process metrics (CPU, memory, event loop lag, GC, handles), and
 * the chassis's own families (RPCs served and made, breakers, retries). A service registers its
 * domain metrics on `registry` beside them; the admin server's `/metrics` serves it.
 */
export interface ServiceMetrics {
  readonly service: string;
  readonly registry: Registry;
  readonly rpc: RpcMetrics;
}

export interface ServiceMetricsOptions {
  /**
   * The Node process metrics (prom-client's default metrics, under their standard names such as
   * `process_cpu_seconds_total` and `nodejs_eventloop_lag_seconds`, which the usual dashboards
   * know). Default true; a test that builds many services in one process may leave them out.
   */
  processMetrics?: boolean;
}

/** The metrics of the service called `service` (gateway, tasks, agent, github …), in a registry of its own. */
export function createServiceMetrics(service: string, options: ServiceMetricsOptions = {}): ServiceMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  return { service, registry, rpc: createRpcMetrics(registry) };
}
