import { createMeshServer, type HealthState, type Logger, type MeshServer, type TlsOptions } from "@hookmesh/kit";
import { mapError, routes } from "./routes.js";
import type { TaskStore } from "./task-store.js";

export interface TasksDeps {
  store: TaskStore;
  /** Readiness, kept by whoever watches the Redis connection. */
  health: HealthState;
  logger: Logger;
  tls?: TlsOptions;
}

/** Events carry raw webhook bodies, which GitHub allows up to 25 MB. */
const READ_MAX_BYTES = 32 * 1024 * 1024;

export function build(deps: TasksDeps): MeshServer {
  return createMeshServer({
    routes: routes(deps.store),
    health: deps.health,
    logger: deps.logger,
    mapError,
    readMaxBytes: READ_MAX_BYTES,
    tls: deps.tls,
  });
}
