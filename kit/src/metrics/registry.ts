import { Registry } from "prom-client";
import { createRpcMetrics, type RpcMetrics } from "./rpc.js";

/**
 * One service's metrics: its own Prometheus registry, with every sample labelled
 * `service="<name>"`, and the chassis's own families (RPCs served and made, breakers, retries).
 * A service registers its domain metrics on `registry` beside them; its admin server serves it,
 * with the Node process's metrics added (see `startAdminServer`).
 */
export interface ServiceMetrics {
  readonly service: string;
  readonly registry: Registry;
  readonly rpc: RpcMetrics;
}

/** The metrics of the service called `service` (gateway, tasks, agent, github …), in a registry of its own. */
export function createServiceMetrics(service: string): ServiceMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  return { service, registry, rpc: createRpcMetrics(registry) };
}
