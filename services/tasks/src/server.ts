import { createMeshServer, type HealthState, type Logger, type MeshServer, type TlsOptions } from "@hookmesh/kit";
import type { ConnectRouter } from "@connectrpc/connect";
import { mapRouteError, routeServiceRoutes } from "./route-routes.js";
import { mapTaskError, taskServiceRoutes } from "./routes.js";
import type { TasksCore } from "./compose.js";
import { workerServiceRoutes } from "./worker-routes.js";

export interface TasksDeps {
  core: Pick<TasksCore, "engine" | "store" | "routes">;
  leaseMs: number;
  /** Readiness, kept by whoever watches the Redis connection. */
  health: HealthState;
  logger: Logger;
  tls?: TlsOptions;
}

/** Events carry raw webhook bodies, which GitHub allows up to 25 MB. */
const READ_MAX_BYTES = 32 * 1024 * 1024;

export function build(deps: TasksDeps): MeshServer {
  const { engine, store, routes } = deps.core;
  return createMeshServer({
    routes: (router: ConnectRouter) => {
      taskServiceRoutes(engine, store)(router);
      workerServiceRoutes(engine, deps.leaseMs)(router);
      routeServiceRoutes(routes)(router);
    },
    health: deps.health,
    logger: deps.logger,
    mapError: (err) => mapTaskError(err) ?? mapRouteError(err),
    readMaxBytes: READ_MAX_BYTES,
    tls: deps.tls,
  });
}
