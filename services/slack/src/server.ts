import { createMeshServer, mapUpstreamError, type HealthState, type Logger, type MeshServer, type TlsOptions } from "@hookmesh/kit";
import { mapSlackError } from "./errors.js";
import type { SlackMessages } from "./messages.js";
import { routes } from "./routes.js";

export interface SlackDeps {
  slack: SlackMessages;
  /** Readiness, kept by whoever watches the Redis connection. */
  health: HealthState;
  logger: Logger;
  tls?: TlsOptions;
}

export function build(deps: SlackDeps): MeshServer {
  return createMeshServer({
    routes: routes(deps.slack),
    health: deps.health,
    logger: deps.logger,
    mapError: (err) => mapUpstreamError(err) ?? mapSlackError(err),
    tls: deps.tls,
  });
}
