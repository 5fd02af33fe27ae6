import { createMeshServer, type HealthState, type Logger, type MeshServer, type TlsOptions } from "@hookmesh/kit";
import type { WorkerPool } from "./pool.js";
import { routes } from "./routes.js";

export interface ServerDeps {
  pool: WorkerPool;
  /** SERVING while the pool leases work, NOT_SERVING once it drains. */
  health: HealthState;
  /** How long a Drain call lets runs finish. */
  drainGraceMs: number;
  logger: Logger;
  tls?: TlsOptions;
}

export function build(deps: ServerDeps): MeshServer {
  return createMeshServer({
    routes: routes(deps.pool, deps.drainGraceMs),
    health: deps.health,
    logger: deps.logger,
    tls: deps.tls,
  });
}
