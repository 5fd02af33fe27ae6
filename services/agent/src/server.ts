import {
  createMeshServer,
  type HealthState,
  type Logger,
  type MeshServer,
  type SecurityOptions,
  type ServiceMetrics,
} from "@hookmesh/kit";
import type { WorkerPool } from "./pool.js";
import { routes } from "./routes.js";

export interface ServerDeps extends SecurityOptions {
  pool: WorkerPool;
  /** SERVING while the pool leases work, NOT_SERVING once it drains. */
  health: HealthState;
  /** How long a Drain call lets runs finish. */
  drainGraceMs: number;
  logger: Logger;
  /** Where the RPCs served are counted. */
  metrics?: ServiceMetrics;
}

export function build(deps: ServerDeps): MeshServer {
  return createMeshServer({
    routes: routes(deps.pool, deps.drainGraceMs),
    health: deps.health,
    logger: deps.logger,
    identity: deps.identity,
    tokens: deps.tokens,
    limits: deps.limits,
    ...(deps.metrics && { metrics: deps.metrics }),
  });
}
