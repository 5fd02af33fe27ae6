import { createMeshServer, type HealthState, type Logger, type MeshServer, type TlsOptions } from "@hookmesh/kit";
import type { JiraApi } from "./jira-api.js";
import { mapJiraError, routes } from "./routes.js";

export interface JiraDeps {
  api: JiraApi;
  /** Readiness, kept by whoever watches the Redis connection. */
  health: HealthState;
  logger: Logger;
  tls?: TlsOptions;
}

export function build(deps: JiraDeps): MeshServer {
  return createMeshServer({
    routes: routes(deps.api),
    health: deps.health,
    logger: deps.logger,
    mapError: mapJiraError,
    tls: deps.tls,
  });
}
