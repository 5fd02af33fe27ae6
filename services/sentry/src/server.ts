import { createMeshServer, type HealthState, type Logger, type MeshServer, type TlsOptions } from "@hookmesh/kit";
import { mapSentryError, routes } from "./routes.js";
import type { SentryApi } from "./sentry-api.js";

export interface SentryDeps {
  api: SentryApi;
  /** Readiness, kept by whoever watches the Redis connection. */
  health: HealthState;
  logger: Logger;
  tls?: TlsOptions;
}

export function build(deps: SentryDeps): MeshServer {
  return createMeshServer({
    routes: routes(deps.api),
    health: deps.health,
    logger: deps.logger,
    mapError: mapSentryError,
    tls: deps.tls,
  });
}
