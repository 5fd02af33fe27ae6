import {
  createMeshServer,
  type HealthState,
  type Logger,
  type MeshServer,
  mapUpstreamError,
  type SecurityOptions,
} from "@hookmesh/kit";
import { routes } from "./routes.js";
import type { SentryApi } from "./sentry-api.js";

export interface SentryServerDeps extends SecurityOptions {
  api: SentryApi;
  /** Readiness, kept by whoever watches the Redis connection. */
  health: HealthState;
  logger: Logger;
}

/** Sentry has no errors of its own beyond those every integration service maps. */
export function build(deps: SentryServerDeps): MeshServer {
  return createMeshServer({
    routes: routes(deps.api),
    health: deps.health,
    logger: deps.logger,
    mapError: mapUpstreamError,
    identity: deps.identity,
    tokens: deps.tokens,
  });
}
