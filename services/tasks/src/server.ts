import type { ConnectRouter } from "@connectrpc/connect";
import {
  createMeshServer,
  type ErrorMapper,
  type HealthState,
  type Logger,
  type MeshServer,
  mapStoreError,
  type SecurityOptions,
  type ServiceMetrics,
} from "@hookmesh/kit";
import type { TaskEngine } from "./engine.js";
import { type ChangeStreams, mapTaskError, taskServiceRoutes } from "./routes.js";
import type { RoutingRuleStore } from "./routing/routing-rule-store.js";
import { mapRoutingRuleError, routeServiceRoutes } from "./routing-rule-routes.js";
import type { TaskStore } from "./task-store.js";
import type { WatchQuota } from "./watches.js";
import { workerServiceRoutes } from "./worker-routes.js";

export interface ServerDeps extends SecurityOptions {
  engine: TaskEngine;
  store: TaskStore;
  routingRules: RoutingRuleStore;
  watches: WatchQuota;
  changes: ChangeStreams;
  leaseMs: number;
  /** Readiness, kept by whoever watches the Redis connection. */
  health: HealthState;
  logger: Logger;
  /** Where the RPCs served are counted. */
  metrics?: ServiceMetrics;
}

/** Events carry raw webhook bodies, which GitHub allows up to 25 MB. */
const READ_MAX_BYTES = 32 * 1024 * 1024;

/** Every domain error the tasks service's RPCs can end in, as the wire error callers see. */
export const mapTasksError: ErrorMapper = (err) => mapTaskError(err) ?? mapRoutingRuleError(err) ?? mapStoreError(err);

export function build(deps: ServerDeps): MeshServer {
  const { engine, store, routingRules } = deps;
  return createMeshServer({
    routes: (router: ConnectRouter) => {
      taskServiceRoutes(engine, store, deps.watches, deps.changes)(router);
      workerServiceRoutes(engine, deps.leaseMs)(router);
      routeServiceRoutes(routingRules)(router);
    },
    health: deps.health,
    logger: deps.logger,
    mapError: mapTasksError,
    readMaxBytes: READ_MAX_BYTES,
    identity: deps.identity,
    tokens: deps.tokens,
    limits: deps.limits,
    ...(deps.metrics && { metrics: deps.metrics }),
  });
}
