import { createMeshServer, mapUpstreamError, type HealthState, type Logger, type MeshServer, type TlsOptions } from "@hookmesh/kit";
import type { SlackMessages } from "./messages.js";
import { routes } from "./routes.js";

export interface SlackServerDeps {
  slack: SlackMessages;
  /** Readiness, kept by whoever watches the Redis connection. */
  health: HealthState;
  logger: Logger;
  tls?: TlsOptions;
}

/** Slack has no errors of its own beyond those every integration service maps. */
export function build(deps: SlackServerDeps): MeshServer {
  return createMeshServer({ routes: routes(deps.slack), health: deps.health, logger: deps.logger, mapError: mapUpstreamError, tls: deps.tls });
}
